//! The merchant's events across all its payments (`GET /events`, `GET /events/{id}`), through
//! the list indexes: an event item carries `GSI1PK = MERCHANT#<mer>#EVENTS` and
//! `GSI2PK = MERCHANT#<mer>#EVENTS#<type>`, both sorted by the event id (time-ordered), beside
//! its place in its payment's partition. Written with the event, in the change's transaction.

use super::keys::{self, GSI1PK, GSI1SK, GSI2PK, GSI2SK, SK};
use super::payments::{ItemKey, ListIndex, Page};
use super::schema::GSI1;
use super::{classify, decode, s, Item, Store, StoreError};
use crate::domain::{Event, EventId, EventType, MerchantId, ParseError, PaymentId};
use std::fmt;

/// Which events a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Type(EventType),
}

/// The index attributes of `event`.
pub(crate) fn index_keys(merchant: &MerchantId, event: &Event) -> [(&'static str, String); 4] {
    let id = event.id.as_str().to_owned();
    [
        (GSI1PK, keys::merchant_events_gsi(merchant)),
        (GSI1SK, id.clone()),
        (
            GSI2PK,
            keys::merchant_events_by_type_gsi(merchant, event.event_type),
        ),
        (GSI2SK, id),
    ]
}

/// Where an events list continues: the last event's id and its key in its payment's partition
/// (an index query resumes from the item's full key). Written as `<evt> <pay> <sequence>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPosition {
    pub event: EventId,
    pub payment: PaymentId,
    pub sequence: u64,
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.event, self.payment, self.sequence)
    }
}

impl EventPosition {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut parts = text.split(' ');
        let (Some(event), Some(payment), Some(sequence), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::new("not an event position"));
        };
        Ok(Self {
            event: EventId::parse(event)?,
            payment: PaymentId::parse(payment)?,
            sequence: sequence
                .parse()
                .map_err(|_| ParseError::new("not a sequence number"))?,
        })
    }
}

/// An event as the table's stream shows it (the outbox the webhook relay reads): whose it is,
/// where it sits in its payment's partition, and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub merchant: MerchantId,
    pub sequence: u64,
    pub event: Event,
}

impl OutboxEvent {
    /// From a stream record's new image. `Ok(None)`: the item is not an event (the stream's
    /// filter lets only events through; anything else is skipped, not failed).
    pub fn from_image(image: Item) -> Result<Option<Self>, StoreError> {
        let is_event = image
            .get(SK)
            .and_then(|sk| sk.as_s().ok())
            .is_some_and(|sk| sk.starts_with(keys::EVENT_SK_PREFIX));
        if !is_event {
            return Ok(None);
        }
        let sequence = sequence_of(&image)?;
        let merchant = image
            .get("merchant_id")
            .and_then(|m| m.as_s().ok())
            .and_then(|m| MerchantId::parse(m).ok())
            .ok_or_else(|| StoreError::Internal("event item without a merchant".into()))?;
        Ok(Some(Self {
            merchant,
            sequence,
            event: decode(image)?,
        }))
    }
}

/// An event item as the event and where it sits (where a list or a replay goes on from).
fn positioned(item: Item) -> Result<(EventPosition, Event), StoreError> {
    let sequence = sequence_of(&item)?;
    let event: Event = decode(item)?;
    let position = EventPosition {
        event: event.id.clone(),
        payment: event.payment_id.clone(),
        sequence,
    };
    Ok((position, event))
}

fn sequence_of(item: &Item) -> Result<u64, StoreError> {
    item.get(SK)
        .and_then(|sk| sk.as_s().ok())
        .and_then(|sk| sk.strip_prefix(keys::EVENT_SK_PREFIX))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Internal("event item without a sequence key".into()))
}

impl Store {
    /// A page of the merchant's events, newest first, optionally of one type, after `after`.
    pub async fn list_merchant_events(
        &self,
        merchant: &MerchantId,
        filter: EventFilter,
        limit: usize,
        after: Option<&EventPosition>,
    ) -> Result<Page<Event>, StoreError> {
        let index = match filter {
            EventFilter::All => ListIndex::all(keys::merchant_events_gsi(merchant)),
            EventFilter::Type(kind) => {
                ListIndex::filtered(keys::merchant_events_by_type_gsi(merchant, kind))
            }
        };
        let start = after.map(|position| ItemKey {
            pk: keys::payment_pk(merchant, &position.payment),
            sk: keys::child_sk(keys::EVENT_SK_PREFIX, position.sequence),
            index_sk: position.event.to_string(),
        });
        let fetched = self
            .newest_first(&index, start, limit + 1)
            .await?
            .into_iter()
            .map(|item| positioned(item).map(|(position, event)| (position.to_string(), event)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::of(fetched, limit))
    }

    /// Up to `limit` of the merchant's events whose ids lie in `[low, high)` (see
    /// [`EventId::lower_bound`]), oldest first, after `after`; each with its position (where
    /// the next page starts). One Query of the merchant's event index, bounded by the range.
    pub async fn events_in_range(
        &self,
        merchant: &MerchantId,
        (low, high): (&str, &str),
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Vec<(EventPosition, Event)>, StoreError> {
        let start = after.map(|position| {
            Item::from([
                (
                    keys::PK.to_owned(),
                    s(keys::payment_pk(merchant, &position.payment)),
                ),
                (
                    SK.to_owned(),
                    s(keys::child_sk(keys::EVENT_SK_PREFIX, position.sequence)),
                ),
                (GSI1PK.to_owned(), s(keys::merchant_events_gsi(merchant))),
                (GSI1SK.to_owned(), s(position.event.as_str())),
            ])
        });
        // No id equals a bound (a bound has 12 hex digits, an id 32), so BETWEEN is [low, high).
        let query = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_names("#sk", GSI1SK)
            .expression_attribute_values(":pk", s(keys::merchant_events_gsi(merchant)))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high))
            .scan_index_forward(true);
        self.query_items(query, start, limit)
            .await?
            .into_iter()
            .map(positioned)
            .collect()
    }

    /// The merchant's event with this id. Another merchant's event is not found: the index
    /// partition is the merchant's.
    pub async fn get_event(
        &self,
        merchant: &MerchantId,
        id: &EventId,
    ) -> Result<Option<Event>, StoreError> {
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk AND #sk = :id")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_names("#sk", GSI1SK)
            .expression_attribute_values(":pk", s(keys::merchant_events_gsi(merchant)))
            .expression_attribute_values(":id", s(id.as_str()))
            .send()
            .await
            .map_err(classify)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(decode)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_refuse_anything_else() {
        let now = time::OffsetDateTime::now_utc();
        let position = EventPosition {
            event: EventId::generate(now),
            payment: PaymentId::generate(now),
            sequence: 42,
        };
        assert_eq!(
            EventPosition::parse(&position.to_string()).unwrap(),
            position
        );
        let text = position.to_string();
        for bad in [
            "".to_owned(),
            text.replace(' ', ""),
            format!("{text} 1"),
            text.replace("42", "-1"),
            text.replace("evt_", "pay_"),
        ] {
            assert!(EventPosition::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
