//! Data migrations: how a deployed table's items are brought to the shape the current code
//! writes, in place (API.md, "Upgrades and data migrations"; the Axum + Postgres service we
//! replace ran `sqlx::migrate!` at start-up, this is our equivalent for DynamoDB).
//!
//! A [`Migration`] is an id (ordered: `0001-…`), a one-line purpose, which items it concerns, and
//! the function that decides one item's [`Change`]: attributes to set or remove, applied by one
//! conditional `UpdateItem` whose [`Guard`]s say what the decision was made from (the attribute
//! still absent, the version still the one read). So each migration is
//! - **idempotent**: an item already migrated is not concerned any more, or fails its guard;
//! - **conditional**: it never overwrites a newer write. When a guard fails (a capture committed
//!   between the scan and the write), the runner reads the item again, consistently, and
//!   decides again: the migration loses the race, never the change;
//! - **resumable**: the runner (`runner`) checkpoints each scan segment's position in the table
//!   after every page, under a lease that lets one run at a time.
//!
//! Between the deploy and the end of a migration, the new code reads items of the old shape
//! correctly (expand, migrate, then contract): each migration says how in [`Migration::meanwhile`].

pub mod runner;

mod m0001_authorization_expiry;
mod m0002_event_index;
mod m0003_pending_delivery_ttl;

use crate::domain::Deadlines;
use crate::store::Item;
use aws_sdk_dynamodb::types::AttributeValue;

/// Every migration, in the order they run. A new one goes at the end, with the change that
/// makes the new shape, and is never renumbered or removed once released.
pub const ALL: &[Migration] = &[
    m0001_authorization_expiry::MIGRATION,
    m0002_event_index::MIGRATION,
    m0003_pending_delivery_ttl::MIGRATION,
];

/// What the rewrites may depend on: the deployment's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub deadlines: Deadlines,
}

/// One data migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// `NNNN-name`: sorted by the number, which is also the order in [`ALL`].
    pub id: &'static str,
    /// One line, for `migrate status`.
    pub purpose: &'static str,
    /// How the current code reads the items before they are migrated.
    pub meanwhile: &'static str,
    /// Whether a scanned item may need this migration (cheap: its key and a few attributes).
    pub concerns: fn(&Item) -> bool,
    /// What to change in an item it concerns; `Ok(None)`: nothing (migrated already). An error
    /// says the item is not readable as what it claims to be (logged, counted, left as it is).
    pub rewrite: fn(&Item, &Context) -> Result<Option<Change>, String>,
}

/// An item's new attributes, applied with `UpdateItem` under its guards.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub set: Vec<(&'static str, AttributeValue)>,
    pub remove: Vec<&'static str>,
    pub guards: Vec<Guard>,
}

/// A condition the item must still meet when the change is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// The attribute is still absent (the migration has not been applied).
    Absent(&'static str),
    /// The attribute is still present.
    Present(&'static str),
    /// The attribute still has this value (a payment's `version`, a delivery's `status`).
    Equals(&'static str, AttributeValue),
}

/// A string attribute of `item`.
pub(crate) fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_numbered_in_order() {
        let numbers: Vec<u32> = ALL
            .iter()
            .map(|m| m.id[..4].parse().expect("NNNN-"))
            .collect();
        let expected: Vec<u32> = (1..=ALL.len() as u32).collect();
        assert_eq!(numbers, expected);
        for m in ALL {
            assert_eq!(&m.id[4..5], "-", "{}", m.id);
            assert!(!m.purpose.is_empty() && !m.meanwhile.is_empty(), "{}", m.id);
        }
    }
}
