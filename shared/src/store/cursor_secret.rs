//! The secret list cursors are signed with (`http::cursor`), kept in the table instead of the
//! functions' environment, where anyone allowed `lambda:GetFunctionConfiguration` would read it.
//! IAM lets only the list functions read its item, and no function write it (template.yaml,
//! `CursorSecretUnreadable`); they load it on their first list request and keep it for the
//! container's life (`http::cursor::Cursors`), so no other function's init or request pays.
//!
//! The admin CLI makes it ([`Store::ensure_cursor_secret`]) when it creates a merchant (and
//! `payments-admin cursor-secret ensure` on its own), so a deployment has it before any request
//! could be authenticated: 32 random bytes, stored with a condition that no item exists. Two
//! ensures at once both propose; one condition holds, and both then answer with what is stored.
//! A proposal whose answer was lost may have committed, so the generated value is only used
//! once a consistent read shows it stored: nothing ever signs with a secret only it knows.
//! Keeping the write out of the functions keeps `PutItem` out of the list functions' code and
//! their IAM grants.

use super::keys::{CURSOR_SECRET_PK, CURSOR_SECRET_SK, PK, SK};
use super::{classify, s, Store, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;

/// Bytes of randomness in a generated secret (HMAC-SHA256's block is 64; its output 32).
const SECRET_BYTES: usize = 32;

impl Store {
    /// The stored cursor secret (a list function's first list request). None stored is a
    /// deployment that skipped the admin CLI: an internal error that says what to run.
    pub async fn cursor_secret(&self) -> Result<Vec<u8>, StoreError> {
        self.stored_cursor_secret().await?.ok_or_else(|| {
            StoreError::Internal(
                "no cursor secret in the table: run `payments-admin cursor-secret ensure`".into(),
            )
        })
    }

    /// The stored cursor secret, made and stored first if there is none (the admin CLI; see
    /// the module docs).
    pub async fn ensure_cursor_secret(&self) -> Result<Vec<u8>, StoreError> {
        if let Some(secret) = self.stored_cursor_secret().await? {
            return Ok(secret);
        }
        let mut proposal = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut proposal).map_err(|e| {
            StoreError::Internal(format!("no randomness for the cursor secret: {e}"))
        })?;
        let proposed = self
            .client()
            .put_item()
            .table_name(self.table())
            .item(PK, s(CURSOR_SECRET_PK))
            .item(SK, s(CURSOR_SECRET_SK))
            .item("secret", AttributeValue::B(proposal.into()))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(classify);
        match proposed {
            // Stored, or another container's was first (or ours was, and the SDK's retry after
            // a lost answer met it): either way the stored one is the secret.
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            // Unknown outcome: it may have committed. The read below decides; if it cannot,
            // the request fails (503) and the next one tries again.
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(error = %reason, "cursor secret proposal: outcome unknown, reading it back");
            }
            Err(err) => return Err(err),
        }
        self.stored_cursor_secret()
            .await?
            .ok_or_else(|| StoreError::Unavailable("cursor secret not stored yet".into()))
    }

    async fn stored_cursor_secret(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(item) = self
            .get_item(CURSOR_SECRET_PK.to_owned(), CURSOR_SECRET_SK)
            .await?
        else {
            return Ok(None);
        };
        match item.get("secret") {
            Some(AttributeValue::B(blob)) if blob.as_ref().len() >= SECRET_BYTES => {
                Ok(Some(blob.as_ref().to_vec()))
            }
            _ => Err(StoreError::Internal(
                "the cursor secret item has no secret of 32 bytes or more".into(),
            )),
        }
    }
}
