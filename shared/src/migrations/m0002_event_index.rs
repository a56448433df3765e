//! `0002`: events stored before the merchant-wide event index (commit d715663 and earlier) have
//! no index keys, so `GET /events` and `GET /events/{id}` never show them. Each gets the keys the
//! current code writes with every event (`store::events::index_keys`), and `merchant_id`, which
//! new events carry for the webhook relay. Events never change, so the only guard is the index
//! key being absent. Updating an event is a stream `MODIFY`, which the relay ignores (only new
//! events are delivered): migrating sends no webhook.

use super::{text, Change, Guard, Migration};
use crate::domain::{Event, MerchantId};
use crate::store::{keys, Item};
use aws_sdk_dynamodb::types::AttributeValue;

pub const MIGRATION: Migration = Migration {
    id: "0002-event-index",
    purpose: "events from before the merchant-wide event index get its keys",
    meanwhile: "an event not migrated yet is in its payment's audit trail \
                (GET /payments/{id}/events reads the payment's partition) but not yet in \
                GET /events or GET /events/{id}",
    concerns,
    rewrite: |item, _| rewrite(item),
};

fn concerns(item: &Item) -> bool {
    text(item, keys::SK).is_some_and(|sk| sk.starts_with(keys::EVENT_SK_PREFIX))
        && !item.contains_key(keys::GSI1PK)
}

fn rewrite(item: &Item) -> Result<Option<Change>, String> {
    if item.contains_key(keys::GSI1PK) {
        return Ok(None);
    }
    // `MERCHANT#<mer>#PAYMENT#<pay>`: whose event it is.
    let merchant = text(item, keys::PK)
        .and_then(|pk| pk.strip_prefix("MERCHANT#"))
        .and_then(|rest| rest.split_once("#PAYMENT#"))
        .and_then(|(merchant, _)| MerchantId::parse(merchant).ok())
        .ok_or("an event outside a payment's partition")?;
    let event: Event =
        serde_dynamo::from_item(item.clone()).map_err(|e| format!("not an event: {e}"))?;
    let mut set: Vec<(&'static str, AttributeValue)> =
        crate::store::events::index_keys(&merchant, &event)
            .into_iter()
            .map(|(name, value)| (name, AttributeValue::S(value)))
            .collect();
    if !item.contains_key("merchant_id") {
        set.push(("merchant_id", AttributeValue::S(merchant.to_string())));
    }
    Ok(Some(Change {
        set,
        remove: vec![],
        guards: vec![Guard::Absent(keys::GSI1PK)],
    }))
}
