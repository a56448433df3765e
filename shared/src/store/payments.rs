//! Payments, their refunds and their events.
//!
//! Every state change is one `TransactWriteItems`: the payment (conditioned on the version that
//! was read, so a concurrent change makes it fail rather than be overwritten), the event, and for
//! a refund the refund item. The audit trail can never miss or invent a change, and two racing
//! changes can never both apply. Lists fetch one item more than asked (across as many DynamoDB
//! pages as that takes), so `has_more` is exact and the last page says so.

use super::keys::{self, GSI1PK, GSI1SK, GSI2PK, GSI2SK, PK, SK};
use super::schema::{GSI1, GSI2};
use super::{classify, classify_transaction, decode, encode, put_new, s, Item, Store, StoreError};
use crate::domain::{Event, MerchantId, Payment, PaymentId, PaymentStatus, Refund, RefundId};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use std::collections::HashMap;

/// The refund item a change writes: a reservation creates it (at the version the change
/// produces), a settlement replaces it at the position it was created at.
#[derive(Debug, Clone, Copy)]
pub enum RefundWrite<'a> {
    Reserve(&'a Refund),
    Settle(&'a Refund, u64),
}

/// Which payments a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFilter {
    All,
    Status(PaymentStatus),
}

/// A payment as stored, with the version its next change must be conditioned on.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub item: T,
    pub version: u64,
}

/// One page of a list: the items, each with its position (what a cursor continues after), and
/// whether more follow the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `positions[i]` is where the list continues after `items[i]`.
    pub positions: Vec<String>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The page of up to `limit` of `fetched` (`limit + 1` were asked for: one more says that
    /// more follow).
    pub(crate) fn of(mut fetched: Vec<(String, T)>, limit: usize) -> Self {
        let has_more = fetched.len() > limit;
        fetched.truncate(limit);
        let (positions, items) = fetched.into_iter().unzip();
        Self {
            items,
            positions,
            has_more,
        }
    }

    /// Where the next page starts, if there is one.
    pub fn continue_after(&self) -> Option<&str> {
        self.positions
            .last()
            .filter(|_| self.has_more)
            .map(String::as_str)
    }
}

/// A partition of one of the list indexes: GSI1 (everything of a kind, by id) or GSI2 (the same
/// narrowed by a filter: a payment status, an event type).
#[derive(Debug, Clone)]
pub(crate) struct ListIndex {
    name: &'static str,
    pk: &'static str,
    sk: &'static str,
    partition: String,
}

impl ListIndex {
    pub(crate) fn all(partition: String) -> Self {
        Self {
            name: GSI1,
            pk: GSI1PK,
            sk: GSI1SK,
            partition,
        }
    }

    pub(crate) fn filtered(partition: String) -> Self {
        Self {
            name: GSI2,
            pk: GSI2PK,
            sk: GSI2SK,
            partition,
        }
    }
}

/// An item's full key as an index query resumes from it: its table key and its index sort key.
#[derive(Debug, Clone)]
pub(crate) struct ItemKey {
    pub pk: String,
    pub sk: String,
    pub index_sk: String,
}

/// Tries of a create's (or delete's) transaction that met another transaction on one of its
/// items; a conflict applied nothing.
pub(crate) const CONFLICT_ATTEMPTS: u32 = 8;

fn payment_item(
    merchant: &MerchantId,
    payment: &Payment,
    version: u64,
) -> Result<Item, StoreError> {
    let mut item = encode(payment)?;
    let id = payment.id.as_str();
    item.insert(PK.into(), s(keys::payment_pk(merchant, &payment.id)));
    item.insert(SK.into(), s(keys::PAYMENT_SK));
    item.insert(GSI1PK.into(), s(keys::merchant_payments_gsi(merchant)));
    item.insert(GSI1SK.into(), s(id));
    item.insert(
        GSI2PK.into(),
        s(keys::merchant_payments_by_status_gsi(
            merchant,
            payment.status,
        )),
    );
    item.insert(GSI2SK.into(), s(id));
    for (name, value) in super::expiry::index_keys(payment).into_iter().flatten() {
        item.insert(name.into(), s(value));
    }
    item.insert("merchant_id".into(), s(merchant.as_str()));
    item.insert("version".into(), AttributeValue::N(version.to_string()));
    Ok(item)
}

fn refund_item(merchant: &MerchantId, refund: &Refund, sequence: u64) -> Result<Item, StoreError> {
    let mut item = encode(refund)?;
    item.insert(PK.into(), s(keys::payment_pk(merchant, &refund.payment_id)));
    item.insert(
        SK.into(),
        s(keys::child_sk(keys::REFUND_SK_PREFIX, sequence)),
    );
    Ok(item)
}

fn event_item(merchant: &MerchantId, event: &Event, sequence: u64) -> Result<Item, StoreError> {
    let mut item = encode(event)?;
    item.insert(PK.into(), s(keys::payment_pk(merchant, &event.payment_id)));
    item.insert(
        SK.into(),
        s(keys::child_sk(keys::EVENT_SK_PREFIX, sequence)),
    );
    for (name, value) in super::events::index_keys(merchant, event) {
        item.insert(name.into(), s(value));
    }
    // The webhook relay reads the event from the table's stream: this says whose it is.
    item.insert("merchant_id".into(), s(merchant.as_str()));
    Ok(item)
}

impl Store {
    /// Stores a new payment together with the event of its first status (and, when the request
    /// carried an idempotency key, the completion of its record), atomically.
    ///
    /// `in_flight`: the authorization's reference was stored before it was made
    /// (`store::authorizing`); the same transaction resolves that record.
    ///
    /// Committed but the answer lost: the payment is read back by its id (ours alone), so that
    /// is `Ok`. A transaction conflict (the idempotency record was being written by a retry of
    /// the same request) applied nothing and is tried again.
    pub async fn create_payment(
        &self,
        merchant: &MerchantId,
        payment: &Payment,
        event: &Event,
        in_flight: bool,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let mut items = vec![
            put_new(self.table(), payment_item(merchant, payment, 1)?)?,
            put_new(self.table(), event_item(merchant, event, 1)?)?,
        ];
        if in_flight {
            items.push(super::authorizing::resolve(
                self.table(),
                merchant,
                &payment.id,
            )?);
        }
        let pk = keys::payment_pk(merchant, &payment.id);
        self.transact_recognising(items, completion, pk, keys::PAYMENT_SK, payment.id.as_str())
            .await
    }

    /// Replaces the payment with `after` if it is still at `version`, and stores `event` (and
    /// the refund's write, and the idempotency completion, if any) with it, atomically.
    /// `ConditionFailed` when someone else changed the payment first, `Conflict` when another
    /// transaction held it at that moment: re-read and decide again.
    ///
    /// Committed but the answer lost (or the SDK's retry of a committed transaction refused by
    /// the version it moved on itself): the event at `version + 1` is ours, so that is `Ok`.
    pub async fn change_payment(
        &self,
        merchant: &MerchantId,
        version: u64,
        after: &Payment,
        event: &Event,
        refund: Option<RefundWrite<'_>>,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let payment = Put::builder()
            .table_name(self.table())
            .set_item(Some(payment_item(merchant, after, version + 1)?))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        // The payment must stay first: `classify_transaction` reads a failure of item 0 as a
        // lost race and a failure of the last as a lost idempotency claim.
        let mut items = vec![
            TransactWriteItem::builder().put(payment).build(),
            put_new(self.table(), event_item(merchant, event, version + 1)?)?,
        ];
        // A refund is created (its reservation, `pending`) and replaced once by its settled
        // self, at the position it was created at; the payment's version guards both.
        match refund {
            Some(RefundWrite::Reserve(refund)) => items.push(put_new(
                self.table(),
                refund_item(merchant, refund, version + 1)?,
            )?),
            Some(RefundWrite::Settle(refund, sequence)) => {
                let put = Put::builder()
                    .table_name(self.table())
                    .set_item(Some(refund_item(merchant, refund, sequence)?))
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            None => {}
        }
        match self.transact(items, completion).await {
            Err(err @ (StoreError::Unavailable(_) | StoreError::ConditionFailed)) => {
                let pk = keys::payment_pk(merchant, &after.id);
                let sk = keys::child_sk(keys::EVENT_SK_PREFIX, version + 1);
                self.recognise(pk, &sk, event.id.as_str(), err).await
            }
            other => other,
        }
    }

    /// Replaces the payment with `after` if it is still at `version`, with no event: a change
    /// of the system's own bookkeeping alone (reconciliation's next lookup time), which no
    /// client sees. `ConditionFailed` if another change came first.
    ///
    /// Committed but the answer lost: nothing depends on it — the next reconciliation run reads
    /// whichever version is stored and decides again — so the error is simply returned.
    pub async fn reschedule_payment(
        &self,
        merchant: &MerchantId,
        version: u64,
        after: &Payment,
    ) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(payment_item(merchant, after, version + 1)?))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The transaction step that records processor event `event_id` as applied to the
    /// merchant's payment `payment`: it fails if the event was applied before, so that a change
    /// carrying it commits at most once (`settlement`). It goes last in the transaction, where
    /// the idempotency completion would: its failure is reported as `ClaimLost`.
    pub fn processor_event_record(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        processor: &str,
        event_id: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Item::new();
        item.insert(PK.into(), s(keys::payment_pk(merchant, payment)));
        item.insert(SK.into(), s(keys::processor_event_sk(processor, event_id)));
        item.insert("id".into(), s(event_id));
        put_new(self.table(), item)
    }

    /// After a write that failed with `err`: if the item it would have created is there with
    /// our id, the write committed and only its answer was lost, so it succeeded. Otherwise
    /// `err` stands (for `Unavailable`: the outcome is still unknown, and the caller answers
    /// 503; a keyed request's release then fences the write off, see `idempotency`).
    pub(crate) async fn recognise(
        &self,
        pk: String,
        sk: &str,
        id: &str,
        err: StoreError,
    ) -> Result<(), StoreError> {
        match self.get_item(pk, sk).await {
            Ok(Some(item))
                if item
                    .get("id")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(id) =>
            {
                tracing::warn!(id, error = %err, "a write committed though its answer was lost; recognised by its id");
                Ok(())
            }
            Ok(_) => Err(err),
            Err(read) => {
                tracing::warn!(id, error = %err, read_error = %read, "outcome of a write unknown: it could not be read back");
                Err(err)
            }
        }
    }

    /// Creates with `items` (and `completion`) in one transaction, tried again after a
    /// conflict (which applied nothing); after an unknown outcome (or a refusal that an SDK
    /// retry of our own committed write would meet), the item `pk`/`sk` with our `id` means it
    /// committed.
    pub(crate) async fn transact_recognising(
        &self,
        items: Vec<TransactWriteItem>,
        completion: Option<TransactWriteItem>,
        pk: String,
        sk: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            match self.transact(items.clone(), completion.clone()).await {
                Err(StoreError::Conflict) if attempt + 1 < CONFLICT_ATTEMPTS => {
                    crate::backoff::wait(attempt).await;
                    attempt += 1;
                }
                Err(err @ (StoreError::Unavailable(_) | StoreError::ConditionFailed)) => {
                    return self.recognise(pk, sk, id, err).await;
                }
                other => return other,
            }
        }
    }

    /// Writes `items` and, last, the idempotency `completion` in one transaction.
    pub(crate) async fn transact(
        &self,
        mut items: Vec<TransactWriteItem>,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let has_completion = completion.is_some();
        items.extend(completion);
        self.client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|err| classify_transaction(err, has_completion))?;
        Ok(())
    }

    /// The payment with its version, for a change conditioned on it.
    pub async fn get_payment_versioned(
        &self,
        merchant: &MerchantId,
        id: &PaymentId,
    ) -> Result<Option<Versioned<Payment>>, StoreError> {
        self.get_versioned(keys::payment_pk(merchant, id), keys::PAYMENT_SK)
            .await
    }

    /// The merchant's payment with this id, if there is one. Another merchant's payment is
    /// simply not found: the key includes the merchant.
    pub async fn get_payment(
        &self,
        merchant: &MerchantId,
        id: &PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        self.get(keys::payment_pk(merchant, id), keys::PAYMENT_SK)
            .await
    }

    /// A page of the merchant's payments, newest first, starting after `after` (a payment id
    /// from a previous page's `continue_after`).
    pub async fn list_payments(
        &self,
        merchant: &MerchantId,
        filter: PaymentFilter,
        limit: usize,
        after: Option<&PaymentId>,
    ) -> Result<Page<Payment>, StoreError> {
        let index = match filter {
            PaymentFilter::All => ListIndex::all(keys::merchant_payments_gsi(merchant)),
            PaymentFilter::Status(status) => {
                ListIndex::filtered(keys::merchant_payments_by_status_gsi(merchant, status))
            }
        };
        let start = after.map(|id| ItemKey {
            pk: keys::payment_pk(merchant, id),
            sk: keys::PAYMENT_SK.to_owned(),
            index_sk: id.to_string(),
        });
        let fetched = self
            .newest_first(&index, start, limit + 1)
            .await?
            .into_iter()
            .map(|item| decode::<Payment>(item).map(|p| (p.id.to_string(), p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(fetched, limit))
    }

    /// Up to `want` items of one partition of a list index, newest first (descending sort key),
    /// after the item `after`.
    pub(crate) async fn newest_first(
        &self,
        index: &ListIndex,
        after: Option<ItemKey>,
        want: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let start_key = after.map(|key| {
            HashMap::from([
                (PK.to_owned(), s(key.pk)),
                (SK.to_owned(), s(key.sk)),
                (index.pk.to_owned(), s(index.partition.clone())),
                (index.sk.to_owned(), s(key.index_sk)),
            ])
        });
        let query = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(index.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", index.pk)
            .expression_attribute_values(":pk", s(index.partition.clone()))
            .scan_index_forward(false);
        self.query_items(query, start_key, want).await
    }

    /// Up to `want` items of `query`, from `start` on. DynamoDB ends a page at 1 MB of data
    /// whatever its `Limit`, so one call can come back short with a `LastEvaluatedKey`; this
    /// goes on from there until it has `want` items or the key range is exhausted. (Counting
    /// only the first page's items once made a merchant with large metadata see a list that
    /// ended early, with `has_more: false`.)
    pub(crate) async fn query_items(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        mut start: Option<Item>,
        want: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        loop {
            let missing = want - items.len();
            let output = query
                .clone()
                .limit(i32::try_from(missing).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if items.len() >= want || start.is_none() {
                items.truncate(want);
                return Ok(items);
            }
        }
    }

    /// A page of a payment's audit trail, oldest first, after position `after` (a previous
    /// page's `continue_after`).
    pub async fn list_events(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Page<Event>, StoreError> {
        self.list_under_payment(merchant, payment, keys::EVENT_SK_PREFIX, true, limit, after)
            .await
    }

    /// A page of a payment's refunds, newest first, after position `after`.
    pub async fn list_refunds(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Page<Refund>, StoreError> {
        self.list_under_payment(
            merchant,
            payment,
            keys::REFUND_SK_PREFIX,
            false,
            limit,
            after,
        )
        .await
    }

    /// The payment's refund `id` with its position (sequence), read consistently, newest
    /// first: a refund still being settled is among the latest.
    pub async fn find_refund(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        id: &RefundId,
    ) -> Result<Option<(u64, Refund)>, StoreError> {
        let mut after = None;
        loop {
            let page = self.list_refunds(merchant, payment, 100, after).await?;
            let found = page
                .items
                .iter()
                .zip(&page.positions)
                .find(|(r, _)| &r.id == id);
            if let Some((refund, position)) = found {
                let sequence = position.parse().map_err(|_| {
                    StoreError::Internal("refund position is not a sequence".into())
                })?;
                return Ok(Some((sequence, refund.clone())));
            }
            match page.continue_after() {
                Some(position) => {
                    after = Some(position.parse().map_err(|_| {
                        StoreError::Internal("refund position is not a sequence".into())
                    })?)
                }
                None => return Ok(None),
            }
        }
    }

    /// Items of one kind (`sk_prefix`) in a payment's partition, one page at a time. A position
    /// is the item's sequence number (see `keys::child_sk`).
    async fn list_under_payment<T: serde::de::DeserializeOwned>(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
        sk_prefix: &str,
        oldest_first: bool,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Page<T>, StoreError> {
        let pk = keys::payment_pk(merchant, payment);
        let start_key = after.map(|sequence| {
            HashMap::from([
                (PK.to_owned(), s(pk.clone())),
                (SK.to_owned(), s(keys::child_sk(sk_prefix, sequence))),
            ])
        });
        let query = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(sk_prefix))
            .scan_index_forward(oldest_first)
            .consistent_read(true);
        let fetched = self
            .query_items(query, start_key, limit + 1)
            .await?
            .into_iter()
            .map(|item| {
                let sequence = item
                    .get(SK)
                    .and_then(|sk| sk.as_s().ok())
                    .and_then(|sk| sk.strip_prefix(sk_prefix))
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        StoreError::Internal("child item without a sequence key".into())
                    })?;
                Ok((sequence.to_string(), decode(item)?))
            })
            .collect::<Result<Vec<(String, T)>, StoreError>>()?;
        Ok(Page::of(fetched, limit))
    }
}
