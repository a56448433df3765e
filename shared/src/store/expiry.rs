//! The timer index (GSI3): which `requires_capture` payments lapse when (`capture_before`),
//! which `requires_action` ones are abandoned when (their customer's time runs out), and, in
//! shards of their own, when each `processing` payment is next looked up at its processor
//! (`reconcile.at`), so that the sweeper and reconciliation find due payments with a Query per
//! shard — never a Scan of the table. The same index
//! holds, in shards of their own, the webhook deliveries waiting for an attempt
//! (`store::deliveries`); `due_in` reads either.
//!
//! Sparse: a payment item carries the index keys only while it is `requires_capture` or
//! `requires_action` (see [`index_keys`]); every change writes the whole item, so leaving that
//! status (capture, cancel, settlement, expiry) removes the entry in the same transaction that
//! makes the change. Write-sharded over
//! `keys::EXPIRY_SHARDS` partitions, sorted by `capture_before` (fixed-width RFC 3339, so text
//! order is time order).
//!
//! The index is eventually consistent: an entry can outlive its payment's capture by a moment.
//! So an entry only says where to look; the sweeper reads the payment consistently and lets the
//! status machine decide (`Payment::expire`).

use super::keys::{self, GSI3PK, GSI3SK};
use super::schema::GSI3;
use super::{classify, decode, s, Item, Store, StoreError};
use crate::domain::{MerchantId, Payment, PaymentId, Timestamp};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The GSI3 key attributes for `payment`, if it waits for its processor (`reconcile`: a
/// `processing` payment, a `pending` refund, an unconfirmed capture or cancel), for capture, or
/// for its customer.
pub(crate) fn index_keys(payment: &Payment) -> Option<[(&'static str, String); 2]> {
    let shard = keys::expiry_shard(&payment.id);
    // Reconciliation first: while a capture or cancel is unconfirmed, the payment's deadline
    // waits until the processor has said what it did (reconciliation then puts it back).
    let (partition, due) = match (
        payment.reconcile,
        payment.capture_before.or(payment.action_before),
    ) {
        (Some(reconcile), _) => (keys::reconcile_shard_gsi(shard), reconcile.at),
        (None, Some(deadline)) => (keys::expiry_shard_gsi(shard), deadline),
        (None, None) => return None,
    };
    Some([(GSI3PK, partition), (GSI3SK, due.to_string())])
}

/// A payment whose authorization was due when the index was read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DueAuthorization {
    #[serde(rename = "merchant_id")]
    pub merchant: MerchantId,
    #[serde(rename = "id")]
    pub payment: PaymentId,
}

/// Where a shard's reading continues (DynamoDB's `LastEvaluatedKey`).
#[derive(Debug, Clone, PartialEq)]
pub struct DueCursor(Item);

/// One batch of a shard's due entries, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DueBatch<T> {
    pub due: Vec<T>,
    /// Entries of the batch that do not decode (a poison entry: an item of another version or
    /// a broken write), each named by its table key (`PK`/`SK`) for the log. Skipped, not
    /// fatal: the rest of the batch and of the shard is still read.
    pub unreadable: Vec<String>,
    /// `Some` when the shard may hold more due entries after this batch.
    pub next: Option<DueCursor>,
}

/// The two kinds of payment timers in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentTimer {
    /// `capture_before` (lapsing authorizations) and `action_before` (abandoned actions): the
    /// expiry sweeper's.
    Expiry,
    /// `reconcile.at` (processing payments to look up): reconciliation's.
    Reconcile,
}

impl Store {
    /// Up to `limit` payments of `timer`'s shard `shard` due at or before `now`, continuing
    /// after `after`.
    pub async fn due_payments(
        &self,
        timer: PaymentTimer,
        shard: u8,
        now: Timestamp,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DueBatch<DueAuthorization>, StoreError> {
        let partition = match timer {
            PaymentTimer::Expiry => keys::expiry_shard_gsi(shard),
            PaymentTimer::Reconcile => keys::reconcile_shard_gsi(shard),
        };
        self.due_in(partition, now, limit, after).await
    }

    /// Up to `limit` entries of the GSI3 partition `partition` (a shard of expiries or of
    /// delivery retries) due at or before `now`, continuing after `after`. One Query on the
    /// index's key: it reads only due entries (the sort key condition), at most `limit`.
    pub(crate) async fn due_in<T: DeserializeOwned>(
        &self,
        partition: String,
        now: Timestamp,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DueBatch<T>, StoreError> {
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI3)
            .key_condition_expression("#shard = :shard AND #deadline <= :now")
            .expression_attribute_names("#shard", GSI3PK)
            .expression_attribute_names("#deadline", GSI3SK)
            .expression_attribute_values(":shard", s(partition))
            .expression_attribute_values(":now", s(now.to_string()))
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|cursor| cursor.0))
            .send()
            .await
            .map_err(classify)?;
        let mut due = Vec::new();
        let mut unreadable = Vec::new();
        for item in output.items.unwrap_or_default() {
            let key = entry_key(&item);
            match decode(item) {
                Ok(entry) => due.push(entry),
                Err(err) => {
                    tracing::error!(entry = %key, error = %err, "timer index entry does not decode; skipped");
                    unreadable.push(key);
                }
            }
        }
        let next = output
            .last_evaluated_key
            .filter(|key| !key.is_empty())
            .map(DueCursor);
        Ok(DueBatch {
            due,
            unreadable,
            next,
        })
    }
}

/// An index entry's table key, as text for a log line (the keys hold ids, never a secret).
fn entry_key(item: &Item) -> String {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str)
            .to_owned()
    };
    format!("{}|{}", text(keys::PK), text(keys::SK))
}
