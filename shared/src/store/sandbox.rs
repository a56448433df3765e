//! The sandbox processor's own records (`processor::sandbox`), one item per authorization whose
//! outcome comes later, keyed by the sandbox's reference (`SANDBOX#<reference>`), outside every
//! merchant's partitions: it is the processor's side, not ours.
//!
//! Writes answer the unknown-outcome question as the rest of the store does: a record is
//! created only where none exists, and a create whose answer was lost (or a retry that meets
//! the first attempt's record) is answered with what is stored; a decision moves only a waiting
//! record on (`requires_action` by the page, `processing` by the settle sweep), so a repeated
//! answer is recognised, never applied twice.
//!
//! What the sandbox did after an approval is recorded the same way, once: its capture or cancel
//! of an authorization (`SANDBOX#<reference>`, `OUTCOME`: whichever came first wins, as at a real
//! processor) and each refund (`SANDBOX#<refund id>`, `REFUND`).
//!
//! A `processing` record is in the timer index (GSI3, `SANDBOX_SETTLE#<shard>`, sorted by
//! `settle_at`) until its decision has been reported; the settle sweep finds it there.

use super::expiry::{DueBatch, DueCursor};
use super::keys::{self, GSI3PK, GSI3SK, PK, SK};
use super::{classify, decode, encode, s, Store, StoreError};
use crate::domain::{Failure, RefundId, Timestamp};
use crate::processor::sandbox::{
    SandboxAuthorization, SandboxOutcome, SandboxRefund, SandboxState,
};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

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
        if let Some(settle_at) = record.settle_at {
            let shard = keys::sandbox_settle_shard(&record.reference);
            item.insert(GSI3PK.into(), s(keys::sandbox_settle_shard_gsi(shard)));
            item.insert(GSI3SK.into(), s(settle_at.to_string()));
            // What the index projects besides its keys (schema::GSI3).
            item.insert("id".into(), s(&record.reference));
        }
        self.record_once(item, record).await
    }

    /// Records what the sandbox did with an approved authorization (captured or canceled)
    /// unless it did something already, and answers with what it did.
    pub async fn record_sandbox_outcome(
        &self,
        outcome: &SandboxOutcome,
    ) -> Result<SandboxOutcome, StoreError> {
        let mut item = encode(outcome)?;
        item.insert(
            PK.into(),
            s(keys::sandbox_authorization_pk(&outcome.reference)),
        );
        item.insert(SK.into(), s(keys::SANDBOX_OUTCOME_SK));
        self.record_once(item, outcome).await
    }

    /// What the sandbox did with the authorization `reference`, if anything, read consistently.
    pub async fn sandbox_outcome(
        &self,
        reference: &str,
    ) -> Result<Option<SandboxOutcome>, StoreError> {
        self.get_item(
            keys::sandbox_authorization_pk(reference),
            keys::SANDBOX_OUTCOME_SK,
        )
        .await?
        .map(decode)
        .transpose()
    }

    /// Records a refund the sandbox made unless one is recorded under its id, and answers with
    /// the stored one.
    pub async fn record_sandbox_refund(
        &self,
        refund: &SandboxRefund,
    ) -> Result<SandboxRefund, StoreError> {
        let mut item = encode(refund)?;
        item.insert(
            PK.into(),
            s(keys::sandbox_authorization_pk(refund.refund_id.as_str())),
        );
        item.insert(SK.into(), s(keys::SANDBOX_REFUND_SK));
        self.record_once(item, refund).await
    }

    /// The sandbox's refund under our refund id `id`, read consistently.
    pub async fn sandbox_refund(&self, id: &RefundId) -> Result<Option<SandboxRefund>, StoreError> {
        self.get_item(
            keys::sandbox_authorization_pk(id.as_str()),
            keys::SANDBOX_REFUND_SK,
        )
        .await?
        .map(decode)
        .transpose()
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

    /// Decides a record waiting in `from`: `approved`, or `declined` with `failure`. Answers the
    /// record as it stands afterwards: decided by this call, by an earlier one (the same answer
    /// sent twice, or a lost answer of ours), or differently by another — the caller compares.
    /// `None` if there is no such record.
    pub async fn decide_sandbox_authorization(
        &self,
        reference: &str,
        from: SandboxState,
        state: SandboxState,
        failure: Option<&Failure>,
    ) -> Result<Option<SandboxAuthorization>, StoreError> {
        let waiting = serde_dynamo::to_attribute_value(from)
            .map_err(|e| StoreError::Internal(format!("state could not be encoded: {e}")))?;
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
            .expression_attribute_values(":waiting", waiting)
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

    /// Up to `limit` of the sandbox's `processing` records of shard `shard` due to be decided
    /// at or before `now`, continuing after `after`.
    pub async fn due_sandbox_settlements(
        &self,
        shard: u8,
        now: Timestamp,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DueBatch<DueSettlement>, StoreError> {
        self.due_in(keys::sandbox_settle_shard_gsi(shard), now, limit, after)
            .await
    }

    /// Takes a decided record out of the settle index, once its decision has been reported.
    /// Conditioned on its being decided, so a record still `processing` can never leave it.
    /// A lost answer: it is still there (the next sweep reports again, the same event, applied
    /// once) or gone; either is right.
    pub async fn settled_sandbox_reported(&self, reference: &str) -> Result<(), StoreError> {
        let processing = serde_dynamo::to_attribute_value(SandboxState::Processing)
            .map_err(|e| StoreError::Internal(format!("state could not be encoded: {e}")))?;
        self.client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::sandbox_authorization_pk(reference)))
            .key(SK, s(keys::SANDBOX_AUTHORIZATION_SK))
            .update_expression("REMOVE #gsi3pk, #gsi3sk")
            .condition_expression("attribute_exists(#state) AND #state <> :processing")
            .expression_attribute_names("#gsi3pk", GSI3PK)
            .expression_attribute_names("#gsi3sk", GSI3SK)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":processing", processing)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// A sandbox record due to be decided, as the settle index gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DueSettlement {
    #[serde(rename = "id")]
    pub reference: String,
}
