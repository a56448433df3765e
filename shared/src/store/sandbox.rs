//! The sandbox processor's own records (`processor::sandbox`), one item per authorization whose
//! outcome comes later, keyed by the sandbox's reference (`SANDBOX#<reference>`), outside every
//! merchant's partitions: it is the processor's side, not ours.
//!
//! Writes answer the unknown-outcome question as the rest of the store does: a record is
//! created only where none exists, and a create whose answer was lost (or a retry that meets
//! the first attempt's record) is answered with what is stored; a decision moves only
//! `requires_action` on, so a repeated answer on the page is recognised, never applied twice.

use super::keys::{self, PK, SK};
use super::{classify, decode, encode, s, Store, StoreError};
use crate::domain::Failure;
use crate::processor::sandbox::{SandboxAuthorization, SandboxState};
use aws_sdk_dynamodb::types::AttributeValue;

impl Store {
    /// Stores `record` unless the sandbox has one under its reference, and answers with the
    /// stored one (the first attempt's, for a retry).
    pub async fn record_sandbox_authorization(
        &self,
        record: &SandboxAuthorization,
    ) -> Result<SandboxAuthorization, StoreError> {
        let mut item = encode(record)?;
        item.insert(
            PK.into(),
            s(keys::sandbox_authorization_pk(&record.reference)),
        );
        item.insert(SK.into(), s(keys::SANDBOX_AUTHORIZATION_SK));
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(classify);
        match put {
            Ok(_) => return Ok(record.clone()),
            Err(StoreError::ConditionFailed) => {}
            // It may have committed: what is stored decides.
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(reference = record.reference, error = %reason, "sandbox record: outcome unknown, reading it back");
            }
            Err(err) => return Err(err),
        }
        self.sandbox_authorization(&record.reference)
            .await?
            .ok_or_else(|| StoreError::Unavailable("sandbox record not stored".into()))
    }

    /// The sandbox's record under `reference`, read consistently.
    pub async fn sandbox_authorization(
        &self,
        reference: &str,
    ) -> Result<Option<SandboxAuthorization>, StoreError> {
        self.get_item(
            keys::sandbox_authorization_pk(reference),
            keys::SANDBOX_AUTHORIZATION_SK,
        )
        .await?
        .map(decode)
        .transpose()
    }

    /// Decides a `requires_action` record: `approved`, or `declined` with `failure`. Answers the
    /// record as it stands afterwards: decided by this call, by an earlier one (the same answer
    /// sent twice, or a lost answer of ours), or differently by another — the caller compares.
    /// `None` if there is no such record.
    pub async fn decide_sandbox_authorization(
        &self,
        reference: &str,
        state: SandboxState,
        failure: Option<&Failure>,
    ) -> Result<Option<SandboxAuthorization>, StoreError> {
        let failure = match failure {
            Some(failure) => serde_dynamo::to_attribute_value(failure)
                .map_err(|e| StoreError::Internal(format!("failure could not be encoded: {e}")))?,
            None => AttributeValue::Null(true),
        };
        let state_value = serde_dynamo::to_attribute_value(state)
            .map_err(|e| StoreError::Internal(format!("state could not be encoded: {e}")))?;
        let update = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::sandbox_authorization_pk(reference)))
            .key(SK, s(keys::SANDBOX_AUTHORIZATION_SK))
            .update_expression("SET #state = :state, #failure = :failure")
            .condition_expression("#state = :waiting")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#failure", "failure")
            .expression_attribute_values(":state", state_value)
            .expression_attribute_values(":failure", failure)
            .expression_attribute_values(":waiting", s("requires_action"))
            .send()
            .await
            .map_err(classify);
        match update {
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(reference, error = %reason, "sandbox decision: outcome unknown, reading it back");
            }
            Err(err) => return Err(err),
        }
        self.sandbox_authorization(reference).await
    }
}
