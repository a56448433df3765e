//! The deployment's own secrets, kept in the table instead of the functions' environment, where
//! anyone allowed `lambda:GetFunctionConfiguration` would read them. Each lives in a partition
//! of its own ([`DeploymentSecret::partition`]), so that IAM (`dynamodb:LeadingKeys`) lets only
//! the functions that use it read it, and no function write it (template.yaml,
//! `CursorSecretUnreadable`, `SandboxSecretUnreadable`):
//! - the cursor secret signs list cursors (`http::cursor`); the list functions load it on their
//!   first list request and keep it for the container's life (`http::cursor::Cursors`);
//! - the sandbox secret signs the sandbox processor's events (`processor::sandbox`), as Stripe's
//!   webhook signing secret signs Stripe's: the sandbox's functions sign, the processor-event
//!   route verifies.
//!
//! The admin CLI makes them ([`Store::ensure_secret`]) when it creates a merchant (and
//! `payments-admin cursor-secret ensure` on its own), so a deployment has them before any
//! request could be authenticated: 32 random bytes, stored with a condition that no item exists.
//! Two ensures at once both propose; one condition holds, and both then answer with what is
//! stored. A proposal whose answer was lost may have committed, so the generated value is only
//! used once a consistent read shows it stored: nothing ever signs with a secret only it knows.
//! Keeping the write out of the functions keeps `PutItem` out of their code and IAM grants.

use super::keys::{PK, SECRET_SK, SK};
use super::{classify, s, Store, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;

/// Bytes of randomness in a generated secret (HMAC-SHA256's block is 64; its output 32).
const SECRET_BYTES: usize = 32;

/// One of the deployment's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentSecret {
    /// Signs list cursors.
    Cursor,
    /// Signs the sandbox processor's events.
    Sandbox,
}

impl DeploymentSecret {
    pub const ALL: [DeploymentSecret; 2] = [DeploymentSecret::Cursor, DeploymentSecret::Sandbox];

    /// The partition key of its item (template.yaml's IAM conditions name these).
    pub fn partition(self) -> &'static str {
        match self {
            DeploymentSecret::Cursor => "CURSOR_SECRET",
            DeploymentSecret::Sandbox => "SANDBOX_SECRET",
        }
    }

    fn name(self) -> &'static str {
        match self {
            DeploymentSecret::Cursor => "cursor",
            DeploymentSecret::Sandbox => "sandbox",
        }
    }
}

impl Store {
    /// The stored secret `kind` (a function's first use of it). None stored is a deployment
    /// that skipped the admin CLI: an internal error that says what to run.
    pub async fn secret(&self, kind: DeploymentSecret) -> Result<Vec<u8>, StoreError> {
        self.stored_secret(kind).await?.ok_or_else(|| {
            StoreError::Internal(format!(
                "no {} secret in the table: run `payments-admin cursor-secret ensure`",
                kind.name()
            ))
        })
    }

    /// The stored secret `kind`, made and stored first if there is none (the admin CLI; see
    /// the module docs).
    pub async fn ensure_secret(&self, kind: DeploymentSecret) -> Result<Vec<u8>, StoreError> {
        if let Some(secret) = self.stored_secret(kind).await? {
            return Ok(secret);
        }
        let mut proposal = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut proposal).map_err(|e| {
            StoreError::Internal(format!("no randomness for the {} secret: {e}", kind.name()))
        })?;
        let proposed = self
            .client()
            .put_item()
            .table_name(self.table())
            .item(PK, s(kind.partition()))
            .item(SK, s(SECRET_SK))
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
                tracing::warn!(secret = kind.name(), error = %reason, "secret proposal: outcome unknown, reading it back");
            }
            Err(err) => return Err(err),
        }
        self.stored_secret(kind).await?.ok_or_else(|| {
            StoreError::Unavailable(format!("{} secret not stored yet", kind.name()))
        })
    }

    /// Every deployment secret, made where missing (the admin CLI).
    pub async fn ensure_secrets(&self) -> Result<(), StoreError> {
        for kind in DeploymentSecret::ALL {
            self.ensure_secret(kind).await?;
        }
        Ok(())
    }

    async fn stored_secret(&self, kind: DeploymentSecret) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(item) = self
            .get_item(kind.partition().to_owned(), SECRET_SK)
            .await?
        else {
            return Ok(None);
        };
        match item.get("secret") {
            Some(AttributeValue::B(blob)) if blob.as_ref().len() >= SECRET_BYTES => {
                Ok(Some(blob.as_ref().to_vec()))
            }
            _ => Err(StoreError::Internal(format!(
                "the {} secret item has no secret of 32 bytes or more",
                kind.name()
            ))),
        }
    }
}

/// A deployment secret loaded on its first use in a container and kept for the container's life
/// (no function reads one at init: API.md, and the init budget). A failed load is the store's
/// error; the next use tries again.
#[derive(Debug)]
pub struct LazySecret {
    kind: DeploymentSecret,
    loaded: std::sync::OnceLock<Vec<u8>>,
}

impl LazySecret {
    pub fn new(kind: DeploymentSecret) -> Self {
        Self {
            kind,
            loaded: std::sync::OnceLock::new(),
        }
    }

    pub async fn get(&self, store: &Store) -> Result<&[u8], StoreError> {
        if let Some(secret) = self.loaded.get() {
            return Ok(secret);
        }
        let secret = store.secret(self.kind).await?;
        // Two loads at once in one container both read the same stored secret.
        Ok(self.loaded.get_or_init(|| secret))
    }
}
