//! `0003`: webhook deliveries written before the dispatcher (commit befd724) carried the log's
//! TTL (`expires_at`, 30 days after creation) while still pending, so a delivery waiting behind
//! a backlog could be deleted before it was made. The current code gives only a finished
//! delivery a TTL; a pending one written earlier loses its `expires_at`. Guarded by the status
//! still being `pending`: an attempt that finishes it first writes the whole item, with the TTL
//! a finished delivery has (the runner re-reads it, and it is not concerned any more).

use super::{text, Change, Guard, Migration};
use crate::store::{keys, schema::TABLE, Item};
use aws_sdk_dynamodb::types::AttributeValue;

pub const MIGRATION: Migration = Migration {
    id: "0003-pending-delivery-ttl",
    purpose: "pending webhook deliveries lose the TTL older code gave them",
    meanwhile: "a pending delivery not migrated yet is attempted as any other; only its TTL \
                could remove it, 30 days after it was created, so the migration runs at once",
    concerns,
    rewrite: |item, _| Ok(concerns(item).then(change)),
};

fn concerns(item: &Item) -> bool {
    text(item, keys::SK).is_some_and(|sk| sk.starts_with("DELIVERY#"))
        && text(item, "status") == Some("pending")
        && item.contains_key(TABLE.ttl_attribute)
}

fn change() -> Change {
    Change {
        set: vec![],
        remove: vec![TABLE.ttl_attribute],
        guards: vec![
            Guard::Equals("status", AttributeValue::S("pending".into())),
            Guard::Present(TABLE.ttl_attribute),
        ],
    }
}
