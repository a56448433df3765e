//! `0001`: authorizations stored before authorization expiry existed (commit d715663 and
//! earlier) have no `capture_before` and no timer-index keys, so they never lapse. Each gets
//! `capture_before` = its authorization time (the create: the sandbox decided it there) + the
//! deployment's validity, and the expiry index keys that time gives it; one already past it is
//! then expired by the next sweep, as any lapsed authorization.
//!
//! Guarded by the payment's version and status and by `capture_before` being absent: a capture,
//! cancel or expiry that commits first changes the version (the runner re-reads, and the payment
//! is not `requires_capture` any more: nothing to do). The version is not moved on (the next
//! change's event keeps its place in the audit trail); a change that read the payment before the
//! migration wrote it rewrites the whole item from what it read, which is right, because every
//! change out of `requires_capture` leaves `capture_before` unset.

use super::{text, Change, Context, Guard, Migration};
use crate::domain::{Payment, PaymentStatus, Timestamp};
use crate::store::{keys, Item};
use aws_sdk_dynamodb::types::AttributeValue;

pub const MIGRATION: Migration = Migration {
    id: "0001-authorization-expiry",
    purpose: "authorizations from before expiry get capture_before and their expiry index keys",
    meanwhile: "an authorization not migrated yet has no deadline: it stays capturable and no \
                sweep finds it, as before the upgrade, until the migration (run right after the \
                deploy) gives it one",
    concerns,
    rewrite,
};

fn concerns(item: &Item) -> bool {
    text(item, keys::SK) == Some(keys::PAYMENT_SK)
        && text(item, "status") == Some(PaymentStatus::RequiresCapture.as_str())
        && !item.contains_key("capture_before")
}

fn rewrite(item: &Item, context: &Context) -> Result<Option<Change>, String> {
    let version = item
        .get("version")
        .cloned()
        .ok_or("a payment without a version")?;
    let mut payment: Payment =
        serde_dynamo::from_item(item.clone()).map_err(|e| format!("not a payment: {e}"))?;
    if payment.status != PaymentStatus::RequiresCapture || payment.capture_before.is_some() {
        return Ok(None);
    }
    let lapses = Timestamp::from_datetime(
        payment.created_at.as_datetime() + context.deadlines.authorization,
    );
    payment.capture_before = Some(lapses);
    let mut set = vec![("capture_before", AttributeValue::S(lapses.to_string()))];
    for (name, value) in crate::store::expiry::index_keys(&payment)
        .into_iter()
        .flatten()
    {
        set.push((name, AttributeValue::S(value)));
    }
    Ok(Some(Change {
        set,
        remove: vec![],
        guards: vec![
            Guard::Absent("capture_before"),
            Guard::Equals("version", version),
            Guard::Equals(
                "status",
                AttributeValue::S(PaymentStatus::RequiresCapture.as_str().into()),
            ),
        ],
    }))
}
