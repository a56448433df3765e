//! Merchants (tenants) and their API keys.
//!
//! A key is stored only as its SHA-256 hash, under `APIKEY#<hash>`, so authenticating a request
//! is one `GetItem`. Keys are also indexed by merchant and prefix (GSI1) so the admin CLI can
//! revoke one by the first characters the merchant shows us, without a scan.

use super::keys::{self, GSI1PK, GSI1SK, PK, SK};
use super::schema::GSI1;
use super::{classify, decode, encode, put_new, s, Item, Store, StoreError};
use crate::domain::{MerchantId, Timestamp};
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
use serde::{Deserialize, Serialize};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub merchant_id: MerchantId,
    pub name: String,
    pub created_at: Timestamp,
}

/// What we keep of an API key: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_hash: String,
    pub key_prefix: String,
    pub merchant_id: MerchantId,
    pub created_at: Timestamp,
    /// Absent (not NULL) until revoked, so that revocation can use `if_not_exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// Why a key could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no key of this merchant starts with that prefix")]
    NotFound,
    #[error("more than one key of this merchant starts with that prefix")]
    Ambiguous,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn merchant_item(merchant: &Merchant) -> Result<Item, StoreError> {
    let mut item = encode(merchant)?;
    item.insert(PK.into(), s(keys::merchant_pk(&merchant.merchant_id)));
    item.insert(SK.into(), s(keys::MERCHANT_SK));
    Ok(item)
}

fn key_item(key: &ApiKeyRecord) -> Result<Item, StoreError> {
    let mut item = encode(key)?;
    item.insert(PK.into(), s(keys::api_key_pk(&key.key_hash)));
    item.insert(SK.into(), s(keys::API_KEY_SK));
    item.insert(GSI1PK.into(), s(keys::merchant_keys_gsi(&key.merchant_id)));
    item.insert(GSI1SK.into(), s(&key.key_prefix));
    Ok(item)
}

impl Store {
    /// Stores a new merchant and its first key together. Committed but the answer lost: the
    /// key (its hash is ours alone) is read back, so that is `Ok` and the operator is shown the
    /// key that works, not told to try again and get a second merchant.
    pub async fn create_merchant(
        &self,
        merchant: &Merchant,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        let written = self
            .client()
            .transact_write_items()
            .transact_items(put_new(self.table(), merchant_item(merchant)?)?)
            .transact_items(put_new(self.table(), key_item(key)?)?)
            .send()
            .await
            .map_err(classify);
        self.settle_key_write(written, key).await
    }

    /// The outcome of a write that created `key`: an unknown one (`Unavailable`) is decided by
    /// reading the key back.
    async fn settle_key_write<T>(
        &self,
        written: Result<T, StoreError>,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        match written {
            Ok(_) => Ok(()),
            Err(StoreError::Unavailable(text)) => match self.find_api_key(&key.key_hash).await {
                Ok(Some(found)) if found.merchant_id == key.merchant_id => {
                    tracing::warn!(error = %text, "a key write committed though its answer was lost");
                    Ok(())
                }
                _ => Err(StoreError::Unavailable(text)),
            },
            Err(err) => Err(err),
        }
    }

    pub async fn get_merchant(
        &self,
        merchant: &MerchantId,
    ) -> Result<Option<Merchant>, StoreError> {
        self.get(keys::merchant_pk(merchant), keys::MERCHANT_SK)
            .await
    }

    /// Adds a key to an existing merchant; `ConditionFailed` when the merchant does not exist.
    /// An unknown outcome is settled like `create_merchant`'s.
    pub async fn add_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let merchant_exists = ConditionCheck::builder()
            .table_name(self.table())
            .key(PK, s(keys::merchant_pk(&key.merchant_id)))
            .key(SK, s(keys::MERCHANT_SK))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(merchant_exists)
                    .build(),
            )
            .transact_items(put_new(self.table(), key_item(key)?)?)
            .send()
            .await;
        let written = match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(err) => Err(classify(err)),
        };
        self.settle_key_write(written, key).await
    }

    /// The key record for this hash, revoked or not.
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.get(keys::api_key_pk(key_hash), keys::API_KEY_SK).await
    }

    /// Marks the merchant's key that starts with `prefix` revoked (keeping the first revocation
    /// time if it was revoked already) and returns it. Idempotent, so an unknown outcome
    /// (`Unavailable`) is settled by running it again.
    pub async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        prefix: &str,
        at: Timestamp,
    ) -> Result<ApiKeyRecord, RevokeError> {
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_names("#sk", GSI1SK)
            .expression_attribute_values(":pk", s(keys::merchant_keys_gsi(merchant)))
            .expression_attribute_values(":prefix", s(prefix))
            .limit(2)
            .send()
            .await
            .map_err(classify)?;
        let mut found: Vec<ApiKeyRecord> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect::<Result<_, _>>()?;
        let key = match found.len() {
            0 => return Err(RevokeError::NotFound),
            1 => found.remove(0),
            _ => return Err(RevokeError::Ambiguous),
        };
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::api_key_pk(&key.key_hash)))
            .key(SK, s(keys::API_KEY_SK))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":at", s(at.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(classify)?;
        let attributes = output.attributes.unwrap_or_default();
        Ok(decode(attributes)?)
    }
}
