//! Authorizations in flight: the processor's reference for a payment that is not recorded yet.
//!
//! A processor that creates its object for an authorization before confirming it (Stripe's
//! PaymentIntent, `processor::Reference::Created`) hands us an id before any money can move. It
//! is stored here, in the payment's own partition (`SK = PAYMENT#AUTHORIZING`), before the
//! confirm, with the request it was made for, so that a confirm whose answer was lost (or whose
//! function died) is never repeated under a new object:
//! - a keyed retry finds the record (the same payment id, `idempotency`) and confirms the same
//!   object again, which the processor answers with what became of the first confirm;
//! - the transaction that records the payment resolves the record (marked `resolved`, out of
//!   the timer index: records are never deleted), `Store::create_payment`;
//! - a record nobody came back for is in the timer index (GSI3, the payment's reconciliation
//!   shard, due [`STALE_AFTER`] after it was made), and reconciliation records the payment from
//!   what the processor says of the object, so a charge is never left unrecorded;
//! - a keyed retry that comes after reconciliation finds the payment itself and answers with it.
//!
//! The sandbox derives its references from our payment id and never stores one here.

use super::keys::{self, GSI3PK, GSI3SK, PK, SK};
use super::{classify, decode, encode, s, Item, Store, StoreError};
use crate::domain::{MerchantId, NewPayment, Payment, PaymentId, ProcessorName, Timestamp};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use time::Duration;

/// How long a record waits for its own request (or a keyed retry) before reconciliation
/// resolves it: well past any function's timeout, so a first attempt still running is not raced.
pub const STALE_AFTER: Duration = Duration::minutes(5);

/// One authorization in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorizing {
    /// Our payment id (also what the timer index projects).
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub processor: ProcessorName,
    /// The processor's object for the authorization.
    pub reference: String,
    /// The request, as validated: what the payment is recorded from.
    pub request: NewPayment,
    pub created_at: Timestamp,
}

/// What a payment id has in the table when a create starts or retries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Started {
    /// The payment, if a create (or reconciliation) recorded it already.
    pub payment: Option<Payment>,
    /// The authorization in flight, if one was stored and not resolved.
    pub authorizing: Option<Authorizing>,
}

/// The attribute that marks a record resolved (the payment is recorded, or the processor had
/// nothing under it). Records are marked, never deleted: nothing here removes an item.
const RESOLVED: &str = "resolved";

/// The update that resolves a payment's in-flight record, for the transaction that records the
/// payment: marked resolved and out of the timer index. Conditioned on the record being there,
/// so that it never makes one.
pub(crate) fn resolve(
    table: &str,
    merchant: &MerchantId,
    payment: &PaymentId,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .key(PK, s(keys::payment_pk(merchant, payment)))
        .key(SK, s(keys::AUTHORIZING_SK))
        .update_expression("SET #resolved = :true REMOVE #gsi3pk, #gsi3sk")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#resolved", RESOLVED)
        .expression_attribute_names("#gsi3pk", GSI3PK)
        .expression_attribute_names("#gsi3sk", GSI3SK)
        .expression_attribute_names("#pk", PK)
        .expression_attribute_values(":true", AttributeValue::Bool(true))
        .build()
        .map_err(|err| StoreError::Internal(err.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

impl Store {
    /// Stores `record` unless one is stored for its payment, and answers with the stored one
    /// (ours, or a concurrent attempt's, whose reference the caller then uses). A put whose
    /// answer was lost is read back.
    pub async fn record_authorizing(
        &self,
        record: &Authorizing,
    ) -> Result<Authorizing, StoreError> {
        let pk = keys::payment_pk(&record.merchant_id, &record.id);
        let mut item = encode(record)?;
        item.insert(PK.into(), s(&pk));
        item.insert(SK.into(), s(keys::AUTHORIZING_SK));
        let shard = keys::expiry_shard(&record.id);
        let due = Timestamp::from_datetime(record.created_at.as_datetime() + STALE_AFTER);
        item.insert(GSI3PK.into(), s(keys::reconcile_shard_gsi(shard)));
        item.insert(GSI3SK.into(), s(due.to_string()));
        self.record_once(item, record).await
    }

    /// The payment `id` and its in-flight authorization, as stored now (one consistent query
    /// of the two items, which sort next to each other).
    pub async fn started(
        &self,
        merchant: &MerchantId,
        id: &PaymentId,
    ) -> Result<Started, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :payment)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(keys::payment_pk(merchant, id)))
            .expression_attribute_values(":payment", s(keys::PAYMENT_SK))
            .send()
            .await
            .map_err(classify)?;
        let mut started = Started::default();
        for item in out.items.unwrap_or_default() {
            match sort_key(&item) {
                Some(keys::PAYMENT_SK) => started.payment = Some(decode(item)?),
                Some(keys::AUTHORIZING_SK) if !item.contains_key(RESOLVED) => {
                    started.authorizing = Some(decode(item)?)
                }
                _ => {}
            }
        }
        Ok(started)
    }

    /// Resolves an in-flight record that reconciliation found the processor has nothing for.
    /// Conditioned on its reference, so that a newer record is never touched; a repeat (the
    /// first answer was lost) finds it resolved already, which is what it wanted.
    pub async fn forget_authorizing(&self, record: &Authorizing) -> Result<(), StoreError> {
        let resolved = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::payment_pk(&record.merchant_id, &record.id)))
            .key(SK, s(keys::AUTHORIZING_SK))
            .update_expression("SET #resolved = :true REMOVE #gsi3pk, #gsi3sk")
            .condition_expression("#reference = :reference")
            .expression_attribute_names("#resolved", RESOLVED)
            .expression_attribute_names("#gsi3pk", GSI3PK)
            .expression_attribute_names("#gsi3sk", GSI3SK)
            .expression_attribute_names("#reference", "reference")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":reference", s(&record.reference))
            .send()
            .await
            .map_err(classify);
        match resolved {
            // Gone already: nothing stored under it any more that could be resolved.
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

fn sort_key(item: &Item) -> Option<&str> {
    item.get(SK)
        .and_then(|v: &AttributeValue| v.as_s().ok())
        .map(String::as_str)
}
