//! Webhook deliveries: one item per (event, endpoint) in the endpoint's partition
//! (`MERCHANT#<mer>#WEBHOOK#<we>`, `DELIVERY#<whd>`), listed through GSI1 (all of an endpoint's)
//! and GSI2 (by status), both sorted by id (= the event's time).
//!
//! A pending delivery also sits in a retry shard of GSI3 (the timer index), sorted by when it is
//! next due; the dispatcher (`webhook_delivery::retry`) reads only due entries. Every attempt is made under a **claim**: a
//! conditional write that moves the due time to the end of a lease and records a token. Whoever
//! holds the claim attempts; recording the answer is conditioned on the token. So:
//! - a crash before, during or after an attempt leaves the delivery pending and due at the end
//!   of the lease: the sweep attempts it then (at least once, never dropped);
//! - two sweepers never both hold one delivery; an attempt outliving its lease can be repeated by
//!   the next holder (a duplicate, which the contract allows), and its late answer is refused.
//!
//! The event itself is not copied: the item says where it is (`payment_id`, `event_sequence`),
//! and an attempt reads it, so the body is the event exactly as `GET /events/{id}` shows it.

use super::keys::{self, GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK, PK, SK};
use super::payments::{ItemKey, ListIndex, Page};
use super::{classify, decode, encode, s, Item, Store, StoreError};
use crate::domain::{
    Event, MerchantId, PaymentId, Timestamp, WebhookDeliveryId, WebhookEndpointId,
};
use crate::webhooks::delivery::{Delivery, DeliveryStatus};
use crate::webhooks::endpoint::EndpointStatus;
use crate::webhooks::schedule::DISABLE_AFTER;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use serde::Deserialize;

/// How long a finished delivery stays in the log after it was created (DynamoDB's TTL then
/// removes it, within a few days of that). A pending delivery has no TTL at all.
pub const DELIVERY_LOG_RETENTION: time::Duration = time::Duration::days(30);

/// The least time a finished delivery stays in the log after its last attempt.
pub const KEPT_AFTER_LAST_ATTEMPT: time::Duration = time::Duration::days(7);

/// A right to make the next attempt of one delivery, until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub token: String,
    pub until: Timestamp,
}

/// A stored delivery with what the delivery path needs beside the API object.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub merchant: MerchantId,
    pub delivery: Delivery,
    /// Where its event is: the payment's partition and the event's sequence in it.
    pub payment: PaymentId,
    pub event_sequence: u64,
    /// When the sweep should next look at it (the due time, or the end of a claim's lease);
    /// `None` once it is no longer pending.
    pub due: Option<Timestamp>,
    /// The token of the claim it is under, if any.
    pub claim: Option<String>,
    /// The claim whose attempt was recorded last (recognises our own write after a lost answer).
    pub attempt_token: Option<String>,
}

impl DeliveryRecord {
    /// Whether an attempt holds it right now: claimed, and the claim's lease not over.
    pub fn in_flight(&self, now: Timestamp) -> bool {
        self.delivery.status == DeliveryStatus::Pending
            && self.claim.is_some()
            && self.due.is_some_and(|due| due > now)
    }
}

#[derive(Deserialize)]
struct Extras {
    merchant_id: MerchantId,
    payment_id: PaymentId,
    event_sequence: u64,
    #[serde(rename = "GSI3SK", default)]
    due: Option<Timestamp>,
    #[serde(default)]
    claim: Option<String>,
    #[serde(default)]
    attempt_token: Option<String>,
}

/// A pending delivery found due in the retry index (what GSI3 projects of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DueDelivery {
    #[serde(rename = "merchant_id")]
    pub merchant: MerchantId,
    #[serde(rename = "endpoint_id")]
    pub endpoint: WebhookEndpointId,
    #[serde(rename = "id")]
    pub delivery: WebhookDeliveryId,
    /// When it became due (its index sort key): how long it has waited.
    #[serde(rename = "GSI3SK")]
    pub due: Timestamp,
}

fn delivery_item(record: &DeliveryRecord) -> Result<Item, StoreError> {
    let DeliveryRecord {
        merchant, delivery, ..
    } = record;
    let mut item = encode(delivery)?;
    let id = delivery.id.as_str();
    item.insert(
        PK.into(),
        s(keys::endpoint_pk(merchant, &delivery.endpoint_id)),
    );
    item.insert(SK.into(), s(keys::delivery_sk(&delivery.id)));
    item.insert(
        GSI1PK.into(),
        s(keys::endpoint_deliveries_gsi(
            merchant,
            &delivery.endpoint_id,
        )),
    );
    item.insert(GSI1SK.into(), s(id));
    item.insert(
        GSI2PK.into(),
        s(keys::endpoint_deliveries_by_status_gsi(
            merchant,
            &delivery.endpoint_id,
            delivery.status,
        )),
    );
    item.insert(GSI2SK.into(), s(id));
    // Sparse: only a pending delivery is in the retry index.
    if let (DeliveryStatus::Pending, Some(due)) = (delivery.status, record.due) {
        item.insert(
            GSI3PK.into(),
            s(keys::retry_shard_gsi(keys::retry_shard(&delivery.id))),
        );
        item.insert(GSI3SK.into(), s(due.to_string()));
    }
    item.insert("merchant_id".into(), s(merchant.as_str()));
    // Only a finished delivery can expire: TTL never removes one that is still to be made,
    // however late the dispatcher is. A resend makes it pending again (no TTL until it ends).
    if delivery.status != DeliveryStatus::Pending {
        item.insert(
            super::schema::TABLE.ttl_attribute.into(),
            AttributeValue::N(expires_at(delivery).unix_timestamp().to_string()),
        );
    }
    item.insert("payment_id".into(), s(record.payment.as_str()));
    item.insert(
        "event_sequence".into(),
        AttributeValue::N(record.event_sequence.to_string()),
    );
    if let Some(claim) = &record.claim {
        item.insert("claim".into(), s(claim));
    }
    if let Some(token) = &record.attempt_token {
        item.insert("attempt_token".into(), s(token));
    }
    Ok(item)
}

/// When a finished delivery leaves the log: [`DELIVERY_LOG_RETENTION`] after it was created,
/// and never sooner than [`KEPT_AFTER_LAST_ATTEMPT`] after its last attempt (one that ended
/// late, behind a backlog, stays readable for a while).
fn expires_at(delivery: &Delivery) -> time::OffsetDateTime {
    let created = delivery.created_at.as_datetime() + DELIVERY_LOG_RETENTION;
    let last = delivery
        .last_attempt_at
        .map(|at| at.as_datetime() + KEPT_AFTER_LAST_ATTEMPT);
    last.map_or(created, |last| last.max(created))
}

fn record_of(item: Item) -> Result<DeliveryRecord, StoreError> {
    let extras: Extras = decode(item.clone())?;
    Ok(DeliveryRecord {
        merchant: extras.merchant_id,
        delivery: decode(item)?,
        payment: extras.payment_id,
        event_sequence: extras.event_sequence,
        due: extras.due,
        claim: extras.claim,
        attempt_token: extras.attempt_token,
    })
}

impl Store {
    /// Stores a new delivery, pending and due at once (`delivery.created_at`), under no claim:
    /// the dispatcher (`webhook_delivery::retry`) claims and attempts it. `Ok(false)` if it
    /// exists: the relay saw this event before (a stream retry), or this is the SDK's retry of
    /// our own put after a lost answer — either way the delivery is made, and never twice
    /// (its id is the (event, endpoint) pair's).
    pub async fn create_delivery(
        &self,
        merchant: &MerchantId,
        delivery: &Delivery,
        event: (&PaymentId, u64),
    ) -> Result<bool, StoreError> {
        let record = DeliveryRecord {
            merchant: merchant.clone(),
            delivery: delivery.clone(),
            payment: event.0.clone(),
            event_sequence: event.1,
            due: Some(delivery.created_at),
            claim: None,
            attempt_token: None,
        };
        let sent = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(delivery_item(&record)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(classify);
        match sent {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            // May have committed: the caller reports the record failed, and the stream's retry
            // finds the delivery made (`Ok(false)`) or makes it.
            Err(err) => Err(err),
        }
    }

    async fn holds(
        &self,
        merchant: &MerchantId,
        delivery: &Delivery,
        token: &str,
    ) -> Result<bool, StoreError> {
        let found = self
            .get_delivery(merchant, &delivery.endpoint_id, &delivery.id)
            .await?;
        Ok(found.is_some_and(|record| record.claim.as_deref() == Some(token)))
    }

    /// The delivery, read consistently.
    pub async fn get_delivery(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
        id: &WebhookDeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get_item(
            keys::endpoint_pk(merchant, endpoint),
            &keys::delivery_sk(id),
        )
        .await?
        .map(record_of)
        .transpose()
    }

    /// Takes `claim` on a pending delivery that is due at `record.due`, as read. `Ok(false)`: it
    /// changed since (someone else claimed it, or it was recorded): leave it.
    ///
    /// Committed but the answer lost (or refused on the SDK's retry by our own write): read
    /// back, our token in `claim` says it is ours.
    pub async fn claim_delivery(
        &self,
        record: &DeliveryRecord,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        let Some(seen) = record.due else {
            return Ok(false);
        };
        let delivery = &record.delivery;
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(
                PK,
                s(keys::endpoint_pk(&record.merchant, &delivery.endpoint_id)),
            )
            .key(SK, s(keys::delivery_sk(&delivery.id)))
            .update_expression("SET #due = :until, #claim = :token")
            .condition_expression("#status = :pending AND #due = :seen")
            .expression_attribute_names("#due", GSI3SK)
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", s(claim.until.to_string()))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":pending", s(DeliveryStatus::Pending.as_str()))
            .expression_attribute_values(":seen", s(seen.to_string()))
            .send()
            .await
            .map_err(classify);
        match sent {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => {
                self.holds(&record.merchant, delivery, &claim.token).await
            }
            Err(err @ StoreError::Unavailable(_)) => {
                match self.holds(&record.merchant, delivery, &claim.token).await {
                    Ok(true) => Ok(true),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Records the attempt made under `claim`: `after` replaces the delivery if the claim is
    /// still ours. `ConditionFailed`: it is not (our attempt outlived the lease and another
    /// holder took over; its answer counts, ours is dropped).
    ///
    /// Committed but the answer lost: read back, `attempt_token` = our token says it is ours.
    pub async fn record_attempt(
        &self,
        record: &DeliveryRecord,
        after: &Delivery,
        claim: &Claim,
    ) -> Result<(), StoreError> {
        let written = DeliveryRecord {
            delivery: after.clone(),
            due: after.next_attempt_at,
            claim: None,
            attempt_token: Some(claim.token.clone()),
            ..record.clone()
        };
        let sent = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(delivery_item(&written)?))
            .condition_expression("#claim = :token")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_values(":token", s(&claim.token))
            .send()
            .await
            .map_err(classify);
        match sent {
            Ok(_) => Ok(()),
            Err(err @ (StoreError::ConditionFailed | StoreError::Unavailable(_))) => {
                let now = self
                    .get_delivery(&record.merchant, &after.endpoint_id, &after.id)
                    .await;
                match now {
                    Ok(Some(now)) if now.attempt_token.as_deref() == Some(&claim.token) => Ok(()),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Makes the delivery pending and due at `now`, whatever its status (a resend: the
    /// dispatcher's next pass attempts it), with the idempotency `completion` in the same
    /// transaction. Its attempts count on: a `failed` delivery resent gets one attempt more
    /// (its schedule is over), a pending one is attempted now rather than at its next retry.
    ///
    /// Conditioned on the delivery being as read and held by no attempt: `Ok(None)` when it
    /// changed since (an attempt claimed or recorded it meanwhile; read it again). The caller
    /// does not resend one [`DeliveryRecord::in_flight`]: that attempt is under way already.
    ///
    /// Committed but the answer lost: read back, the delivery due at our `now`, unclaimed and
    /// with the attempts we saw, is ours.
    pub async fn resend_delivery(
        &self,
        record: &DeliveryRecord,
        now: Timestamp,
        completion: Option<TransactWriteItem>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let seen = &record.delivery;
        let written = DeliveryRecord {
            delivery: Delivery {
                status: DeliveryStatus::Pending,
                next_attempt_at: Some(now),
                ..seen.clone()
            },
            due: Some(now),
            claim: None,
            attempt_token: None,
            ..record.clone()
        };
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(delivery_item(&written)?))
            .condition_expression(
                "#status = :status AND #attempts = :attempts \
                 AND (attribute_not_exists(#claim) OR #due <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_names("#due", GSI3SK)
            .expression_attribute_values(":status", s(seen.status.as_str()))
            .expression_attribute_values(":attempts", AttributeValue::N(seen.attempts.to_string()))
            .expression_attribute_values(":now", s(now.to_string()))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let sent = self
            .transact(
                vec![TransactWriteItem::builder().put(put).build()],
                completion,
            )
            .await;
        match sent {
            Ok(()) => Ok(Some(written)),
            Err(err @ (StoreError::ConditionFailed | StoreError::Unavailable(_))) => {
                let now_stored = self
                    .get_delivery(&record.merchant, &seen.endpoint_id, &seen.id)
                    .await?;
                match now_stored {
                    Some(stored) if stored == written => Ok(Some(written)),
                    _ if matches!(err, StoreError::ConditionFailed) => Ok(None),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Up to `limit` pending deliveries of retry shard `shard` due at or before `now`.
    pub async fn due_deliveries(
        &self,
        shard: u8,
        now: Timestamp,
        limit: usize,
        after: Option<super::DueCursor>,
    ) -> Result<super::DueBatch<DueDelivery>, StoreError> {
        self.due_in(keys::retry_shard_gsi(shard), now, limit, after)
            .await
    }

    /// A page of the endpoint's deliveries, newest first, optionally in one status, after
    /// `after`.
    pub async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
        status: Option<DeliveryStatus>,
        limit: usize,
        after: Option<&WebhookDeliveryId>,
    ) -> Result<Page<Delivery>, StoreError> {
        let index = match status {
            None => ListIndex::all(keys::endpoint_deliveries_gsi(merchant, endpoint)),
            Some(status) => ListIndex::filtered(keys::endpoint_deliveries_by_status_gsi(
                merchant, endpoint, status,
            )),
        };
        let start = after.map(|id| ItemKey {
            pk: keys::endpoint_pk(merchant, endpoint),
            sk: keys::delivery_sk(id),
            index_sk: id.to_string(),
        });
        let fetched = self
            .newest_first(&index, start, limit + 1)
            .await?
            .into_iter()
            .map(|item| decode::<Delivery>(item).map(|d| (d.id.to_string(), d)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(fetched, limit))
    }

    /// The event a delivery carries, read consistently from its payment's partition.
    pub async fn event_at(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        sequence: u64,
    ) -> Result<Option<Event>, StoreError> {
        self.get(
            keys::payment_pk(merchant, payment),
            &keys::child_sk(keys::EVENT_SK_PREFIX, sequence),
        )
        .await
    }

    /// Notes a failed attempt to the endpoint: the first failure since its last success starts
    /// its failing time (`failing_since`); once that is [`DISABLE_AFTER`] old, the endpoint is
    /// disabled. Returns whether this disabled it. Each write is idempotent (`if_not_exists`,
    /// a conditioned disable), so a retry after a lost answer changes nothing more.
    pub async fn note_endpoint_failure(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let noted = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_pk(merchant, endpoint)))
            .key(SK, s(keys::ENDPOINT_SK))
            .update_expression("SET #since = if_not_exists(#since, :now)")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#since", "failing_since")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":now", s(now.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(classify);
        let attributes = match noted {
            Ok(output) => output.attributes.unwrap_or_default(),
            // Deleted meanwhile: nothing to disable.
            Err(StoreError::ConditionFailed) => return Ok(false),
            Err(err) => return Err(err),
        };
        let since = attributes
            .get("failing_since")
            .and_then(|v| v.as_s().ok())
            .and_then(|text| Timestamp::try_from(text.clone()).ok());
        match since {
            Some(since) if now.as_datetime() - since.as_datetime() >= DISABLE_AFTER => {
                self.disable_endpoint(merchant, endpoint, now).await
            }
            _ => Ok(false),
        }
    }

    /// Ends the endpoint's failing time after a successful attempt (a no-op when it had none).
    pub async fn note_endpoint_success(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
    ) -> Result<(), StoreError> {
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_pk(merchant, endpoint)))
            .key(SK, s(keys::ENDPOINT_SK))
            .update_expression("REMOVE #since")
            .condition_expression("attribute_exists(#since)")
            .expression_attribute_names("#since", "failing_since")
            .send()
            .await
            .map_err(classify);
        match sent {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Disables an enabled endpoint (410, or 5 days of failures), moving its version so that an
    /// update decided from the enabled endpoint is refused and decided again. `Ok(false)`: it
    /// was not enabled (or is gone). Idempotent: a retry finds it disabled.
    pub async fn disable_endpoint(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::endpoint_pk(merchant, endpoint)))
            .key(SK, s(keys::ENDPOINT_SK))
            .update_expression(
                "SET #status = :disabled, #updated = :now, #version = #version + :one",
            )
            .condition_expression("#status = :enabled")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":disabled", s(EndpointStatus::Disabled.as_str()))
            .expression_attribute_values(":enabled", s(EndpointStatus::Enabled.as_str()))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(classify);
        match sent {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
