//! Webhook replays (`webhooks::replay`): one item per replay in its endpoint's partition
//! (`MERCHANT#<mer>#WEBHOOK#<we>`, `REPLAY#<whr>`), with where its walk through the merchant's
//! events stands (`cursor`: the last event read) and how many steps it has taken (`step`).
//!
//! While it runs, the item sits in the timer index (GSI3, partition `WEBHOOK_REPLAYS`), sorted
//! by when it was last stepped, so that the dispatcher takes the replays in turn. A **step**
//! creates the deliveries of the next page of events (idempotently: each delivery's id is the
//! (replay, event, endpoint) triple's), then moves the cursor on, conditioned on the step number
//! it read: two dispatcher runs that step the same replay at once make its deliveries once
//! (the same ids) and move the cursor once, and a step whose answer was lost is seen in the item
//! on the next read (its cursor moved on: nothing is created twice, nothing is skipped).

use super::deliveries::DELIVERY_LOG_RETENTION;
use super::events::EventPosition;
use super::keys::{self, GSI3PK, GSI3SK, PK, SK};
use super::{classify, decode, encode, s, DueBatch, DueCursor, Item, Store, StoreError};
use crate::domain::{MerchantId, PaymentId, Timestamp, WebhookEndpointId, WebhookReplayId};
use crate::webhooks::delivery::Delivery;
use crate::webhooks::replay::{ReplayStatus, WebhookReplay};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use serde::Deserialize;

/// A stored replay with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRecord {
    pub merchant: MerchantId,
    pub replay: WebhookReplay,
    /// The last event read; the next step reads the events after it. `None` before the first.
    pub cursor: Option<EventPosition>,
    /// Steps taken; each step's write is conditioned on it.
    pub step: u64,
}

impl ReplayRecord {
    /// The replay after one more step: `read` events read (the last of them is the new cursor),
    /// `created` deliveries made, and whether the range is exhausted.
    pub fn stepped(&self, read: Option<EventPosition>, created: u64, exhausted: bool) -> Self {
        let mut next = self.clone();
        next.step += 1;
        if read.is_some() {
            next.cursor = read;
        }
        next.replay.events += created;
        if exhausted {
            next.replay.status = ReplayStatus::Done;
        }
        next
    }
}

#[derive(Deserialize)]
struct Extras {
    merchant_id: MerchantId,
    #[serde(default)]
    cursor: Option<String>,
    step: u64,
}

/// A running replay found in the timer index (what GSI3 projects of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DueReplay {
    #[serde(rename = "merchant_id")]
    pub merchant: MerchantId,
    #[serde(rename = "endpoint_id")]
    pub endpoint: WebhookEndpointId,
    #[serde(rename = "id")]
    pub replay: WebhookReplayId,
}

/// A new delivery a step creates, with where its event is.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedDelivery {
    pub delivery: Delivery,
    pub payment: PaymentId,
    pub event_sequence: u64,
}

fn replay_item(record: &ReplayRecord, at: Timestamp) -> Result<Item, StoreError> {
    let ReplayRecord {
        merchant,
        replay,
        cursor,
        step,
    } = record;
    let mut item = encode(replay)?;
    item.insert(
        PK.into(),
        s(keys::endpoint_pk(merchant, &replay.endpoint_id)),
    );
    item.insert(SK.into(), s(keys::replay_sk(&replay.id)));
    item.insert("merchant_id".into(), s(merchant.as_str()));
    item.insert("step".into(), AttributeValue::N(step.to_string()));
    if let Some(cursor) = cursor {
        item.insert("cursor".into(), s(cursor.to_string()));
    }
    match replay.status {
        // Sparse: only a running replay is in the index, sorted by when it was last stepped.
        ReplayStatus::Running => {
            item.insert(GSI3PK.into(), s(keys::REPLAYS_GSI));
            item.insert(GSI3SK.into(), s(at.to_string()));
        }
        // A finished replay stays readable as long as the deliveries it made.
        ReplayStatus::Done => {
            let expires = at.as_datetime() + DELIVERY_LOG_RETENTION;
            item.insert(
                super::schema::TABLE.ttl_attribute.into(),
                AttributeValue::N(expires.unix_timestamp().to_string()),
            );
        }
    }
    Ok(item)
}

fn record_of(item: Item) -> Result<ReplayRecord, StoreError> {
    let extras: Extras = decode(item.clone())?;
    let cursor = extras
        .cursor
        .map(|text| EventPosition::parse(&text))
        .transpose()
        .map_err(|e| StoreError::Internal(format!("replay cursor: {e}")))?;
    Ok(ReplayRecord {
        merchant: extras.merchant_id,
        replay: decode(item)?,
        cursor,
        step: extras.step,
    })
}

impl Store {
    /// Stores a new replay, running and due at once, with the idempotency `completion` in the
    /// same transaction. A lost answer is recognised by reading the replay back.
    pub async fn create_replay(
        &self,
        merchant: &MerchantId,
        replay: &WebhookReplay,
        completion: Option<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let record = ReplayRecord {
            merchant: merchant.clone(),
            replay: replay.clone(),
            cursor: None,
            step: 0,
        };
        let item = replay_item(&record, replay.created_at)?;
        self.transact_recognising(
            vec![super::put_new(self.table(), item)?],
            completion,
            keys::endpoint_pk(merchant, &replay.endpoint_id),
            &keys::replay_sk(&replay.id),
            replay.id.as_str(),
        )
        .await
    }

    /// The replay, read consistently. Another merchant's or endpoint's is not found: the key
    /// holds both.
    pub async fn get_replay(
        &self,
        merchant: &MerchantId,
        endpoint: &WebhookEndpointId,
        id: &WebhookReplayId,
    ) -> Result<Option<ReplayRecord>, StoreError> {
        self.get_item(keys::endpoint_pk(merchant, endpoint), &keys::replay_sk(id))
            .await?
            .map(record_of)
            .transpose()
    }

    /// Up to `limit` running replays last stepped at or before `now`, the longest waiting first.
    pub async fn due_replays(
        &self,
        now: Timestamp,
        limit: usize,
        after: Option<DueCursor>,
    ) -> Result<DueBatch<DueReplay>, StoreError> {
        self.due_in(keys::REPLAYS_GSI.to_owned(), now, limit, after)
            .await
    }

    /// Takes one step of a replay: creates `deliveries` (each idempotently, by its id: the
    /// (replay, event, endpoint) triple's), then writes `next` (from [`ReplayRecord::stepped`],
    /// at `now`) conditioned on the replay still being at the step `seen` read. `Ok(false)`:
    /// another run took this step first (its deliveries are the same ones, made once).
    ///
    /// Plain conditional puts, not a transaction (the dispatcher links no transaction code, and
    /// its zip stays in budget): a run that dies between the deliveries and the cursor leaves the
    /// step to be taken again, which finds those deliveries made (`create_delivery` says so)
    /// and creates the rest; an error on the cursor's write may hide a committed step, which the
    /// next read of the replay shows (its step and cursor moved on). Nothing is made twice,
    /// nothing skipped.
    pub async fn step_replay(
        &self,
        seen: &ReplayRecord,
        next: &ReplayRecord,
        deliveries: &[ReplayedDelivery],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        for made in deliveries {
            self.create_delivery(
                &seen.merchant,
                &made.delivery,
                (&made.payment, made.event_sequence),
            )
            .await?;
        }
        let written = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(replay_item(next, now)?))
            .condition_expression("#step = :step")
            .expression_attribute_names("#step", "step")
            .expression_attribute_values(":step", AttributeValue::N(seen.step.to_string()))
            .send()
            .await
            .map_err(classify);
        match written {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
