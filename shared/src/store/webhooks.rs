//! Webhook endpoints and their signing secrets.
//!
//! An endpoint is one item in its own partition (`MERCHANT#<mer>#WEBHOOK#<we>`), listed through
//! GSI1 (`MERCHANT#<mer>#WEBHOOKS`, by id). Its secrets are a second item outside every
//! `MERCHANT#` partition (`keys::endpoint_secret_pk`), read only by the delivery path. The
//! 16-endpoint limit is a counter in the merchant's partition, moved in the same transaction that
//! creates or deletes an endpoint, under the condition that it stays within the limit: two
//! concurrent creates can never make a 17th.

use super::keys::{self, GSI1PK, GSI1SK, PK, SK};
use super::payments::{ItemKey, ListIndex, Page, Versioned, CONFLICT_ATTEMPTS};
use super::{classify_transaction, decode, encode, put_new, s, Item, Store, StoreError};
use crate::domain::{MerchantId, Timestamp, WebhookEndpointId};
use crate::webhooks::endpoint::{WebhookEndpoint, MAX_ENDPOINTS_PER_MERCHANT};
use crate::webhooks::signing::SigningSecret;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

/// An endpoint's secrets: the current one and, for [`ROTATION_OVERLAP`] after a rotation, the
/// previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SecretsItem {
    current: String,
    #[serde(default)]
    previous: Option<String>,
    #[serde(default)]
    previous_until: Option<Timestamp>,
}

fn endpoint_item(
    merchant: &MerchantId,
    endpoint: &WebhookEndpoint,
    version: u64,
) -> Result<Item, StoreError> {
    let mut item = encode(endpoint)?;
    item.insert("version".into(), AttributeValue::N(version.to_string()));
    item.insert(PK.into(), s(keys::endpoint_pk(merchant, &endpoint.id)));
    item.insert(SK.into(), s(keys::ENDPOINT_SK));
    item.insert(GSI1PK.into(), s(keys::merchant_endpoints_gsi(merchant)));
    item.insert(GSI1SK.into(), s(endpoint.id.as_str()));
    item.insert("merchant_id".into(), s(merchant.as_str()));
    Ok(item)
}

fn internal(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(err.to_string())
}

impl Store {
    /// Stores a new endpoint with its first secret, unless the merchant has
    /// [`MAX_ENDPOINTS_PER_MERCHANT`] already (`ConditionFailed`), atomically with the
    /// idempotency `completion`, if any.
    ///
    /// Committed but the answer lost: the endpoint is read back by its id (ours alone), so that
    /// is `Ok`.
    pub async fn create_endpoint(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpoint,
        secret: &SigningSecret,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let count = Update::builder()
            .table_name(self.table())
            .key(PK, s(keys::merchant_pk(merchant)))
            .key(SK, s(keys::ENDPOINT_COUNT_SK))
            .update_expression("SET #count = if_not_exists(#count, :zero) + :one")
            .condition_expression("attribute_not_exists(#count) OR #count < :max")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":max",
                AttributeValue::N(MAX_ENDPOINTS_PER_MERCHANT.to_string()),
            )
            .build()
            .map_err(internal)?;
        let mut secrets = encode(&SecretsItem {
            current: secret.expose(),
            previous: None,
            previous_until: None,
        })?;
        secrets.insert(
            PK.into(),
            s(keys::endpoint_secret_pk(merchant, &endpoint.id)),
        );
        secrets.insert(SK.into(), s(keys::ENDPOINT_SECRET_SK));
        // The counter first: `classify_transaction` reads its failure as ConditionFailed.
        let items = vec![
            TransactWriteItem::builder().update(count).build(),
            put_new(self.table(), endpoint_item(merchant, endpoint, 1)?)?,
            put_new(self.table(), secrets)?,
        ];
        let pk = keys::endpoint_pk(merchant, &endpoint.id);
        self.transact_recognising(
            items,
            completion,
            pk,
            keys::ENDPOINT_SK,
            endpoint.id.as_str(),
        )
        .await
    }

    /// Deletes the endpoint and its secrets and frees its place under the limit, atomically.
    /// `Ok(false)` if there is no such endpoint (nothing changed).
    pub async fn delete_endpoint(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
    ) -> Result<bool, StoreError> {
        let endpoint = Delete::builder()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_pk(merchant, id)))
            .key(SK, s(keys::ENDPOINT_SK))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(internal)?;
        let secrets = Delete::builder()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_secret_pk(merchant, id)))
            .key(SK, s(keys::ENDPOINT_SECRET_SK))
            .build()
            .map_err(internal)?;
        let count = Update::builder()
            .table_name(self.table())
            .key(PK, s(keys::merchant_pk(merchant)))
            .key(SK, s(keys::ENDPOINT_COUNT_SK))
            .update_expression("SET #count = #count - :one")
            // Never below zero, and refused (not a validation error) where there is no counter.
            .condition_expression("#count > :zero")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .build()
            .map_err(internal)?;
        let items = vec![
            TransactWriteItem::builder().delete(endpoint).build(),
            TransactWriteItem::builder().delete(secrets).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        let mut attempt = 0;
        loop {
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
                .map_err(|err| classify_transaction(err, false));
            match sent {
                Ok(_) => return Ok(true),
                // Gone already: by us (an SDK retry of our committed delete) or by another.
                Err(StoreError::ConditionFailed) => return Ok(false),
                Err(StoreError::Conflict) if attempt + 1 < CONFLICT_ATTEMPTS => {
                    crate::backoff::wait(attempt).await;
                    attempt += 1;
                }
                // Unknown outcome: if the endpoint is gone, the delete committed.
                Err(err @ StoreError::Unavailable(_)) => {
                    return match self.get_endpoint(merchant, id).await {
                        Ok(None) => Ok(true),
                        _ => Err(err),
                    };
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The merchant's endpoint with this id (without its secret).
    pub async fn get_endpoint(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.get(keys::endpoint_pk(merchant, id), keys::ENDPOINT_SK)
            .await
    }

    /// The endpoint with its version, for a change conditioned on it.
    pub async fn get_endpoint_versioned(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
    ) -> Result<Option<Versioned<WebhookEndpoint>>, StoreError> {
        self.get_versioned(keys::endpoint_pk(merchant, id), keys::ENDPOINT_SK)
            .await
    }

    /// Replaces the endpoint with `after` if it is still at `version` (`ConditionFailed`
    /// otherwise: someone else changed it; read again and decide again), atomically with the
    /// idempotency `completion`, if any.
    ///
    /// Committed but the answer lost (or an SDK retry of it refused by the version it moved):
    /// the endpoint at `version + 1` equal to `after` is ours, so that is `Ok`.
    pub async fn replace_endpoint(
        &self,
        merchant: &MerchantId,
        version: u64,
        after: &WebhookEndpoint,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(self.table())
            .set_item(Some(endpoint_item(merchant, after, version + 1)?))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .build()
            .map_err(internal)?;
        let written = self
            .transact(
                vec![TransactWriteItem::builder().put(put).build()],
                completion,
            )
            .await;
        match written {
            Err(err @ (StoreError::Unavailable(_) | StoreError::ConditionFailed)) => {
                match self.get_endpoint_versioned(merchant, &after.id).await {
                    Ok(Some(now)) if now.version == version + 1 && now.item == *after => Ok(()),
                    _ => Err(err),
                }
            }
            other => other,
        }
    }

    /// A page of the merchant's endpoints, newest first, after `after`.
    pub async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        limit: usize,
        after: Option<&WebhookEndpointId>,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let index = ListIndex::all(keys::merchant_endpoints_gsi(merchant));
        let start = after.map(|id| ItemKey {
            pk: keys::endpoint_pk(merchant, id),
            sk: keys::ENDPOINT_SK.to_owned(),
            index_sk: id.to_string(),
        });
        let fetched = self
            .newest_first(&index, start, limit + 1)
            .await?
            .into_iter()
            .map(|item| decode::<WebhookEndpoint>(item).map(|e| (e.id.to_string(), e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(fetched, limit))
    }

    /// The secrets that sign a delivery to the endpoint at `now`: the current one, and the
    /// previous one until its `until` (24 h after a rotation). The delivery path alone calls
    /// this.
    pub async fn endpoint_secrets(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
        now: Timestamp,
    ) -> Result<Vec<SigningSecret>, StoreError> {
        let item: Option<SecretsItem> = self
            .get(
                keys::endpoint_secret_pk(merchant, id),
                keys::ENDPOINT_SECRET_SK,
            )
            .await?;
        let Some(item) = item else {
            return Ok(Vec::new());
        };
        let previous = item
            .previous
            .filter(|_| item.previous_until.is_some_and(|until| now < until));
        std::iter::once(item.current)
            .chain(previous)
            .map(|text| SigningSecret::parse(&text).map_err(|e| internal(e.0)))
            .collect()
    }

    /// Makes `new` the endpoint's current secret; the current one keeps signing beside it for
    /// [`ROTATION_OVERLAP`]. Only writes, never reads the secrets (the caller may write them,
    /// not read them): DynamoDB evaluates every `SET` with the item's values before the update.
    /// `Ok(false)` if there is no such endpoint.
    ///
    /// Applied but the answer lost: a retry would move `new` into `previous` and lose the old
    /// secret, so the update is conditioned on `current` not being `new` already. That refusal
    /// (or the check after an unknown outcome) means our rotation committed; `new` is random,
    /// nobody else can have written it.
    pub async fn rotate_secret(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
        new: &SigningSecret,
        now: Timestamp,
        completion: Option<TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        let until = Timestamp::from_datetime(now.as_datetime() + ROTATION_OVERLAP);
        let update = Update::builder()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_secret_pk(merchant, id)))
            .key(SK, s(keys::ENDPOINT_SECRET_SK))
            .update_expression("SET #previous = #current, #until = :until, #current = :new")
            .condition_expression("attribute_exists(#current) AND #current <> :new")
            .expression_attribute_names("#current", "current")
            .expression_attribute_names("#previous", "previous")
            .expression_attribute_names("#until", "previous_until")
            .expression_attribute_values(":new", s(new.expose()))
            .expression_attribute_values(":until", s(until.to_string()))
            .build()
            .map_err(internal)?;
        // In a transaction with the idempotency completion: a keyed retry after a crash
        // replays the secret that was made, instead of rotating once more (which would end the
        // original secret's 24 hours at once).
        let sent = self
            .transact(
                vec![TransactWriteItem::builder().update(update).build()],
                completion,
            )
            .await;
        match sent {
            Ok(_) => Ok(true),
            // No secrets item: no such endpoint; or `current` is `new`: ours committed.
            Err(StoreError::ConditionFailed) => self.secret_is_current(merchant, id, new).await,
            Err(err @ StoreError::Unavailable(_)) => {
                match self.secret_is_current(merchant, id, new).await {
                    Ok(true) => Ok(true),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Whether `secret` is the endpoint's current one, found without reading the secrets: a
    /// write that changes nothing, conditioned on it.
    async fn secret_is_current(
        &self,
        merchant: &MerchantId,
        id: &WebhookEndpointId,
        secret: &SigningSecret,
    ) -> Result<bool, StoreError> {
        let confirmed = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_secret_pk(merchant, id)))
            .key(SK, s(keys::ENDPOINT_SECRET_SK))
            .update_expression("SET #current = :secret")
            .condition_expression("#current = :secret")
            .expression_attribute_names("#current", "current")
            .expression_attribute_values(":secret", s(secret.expose()))
            .send()
            .await
            .map_err(super::classify);
        match confirmed {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
