//! Object ids: a type prefix and 32 lowercase hex digits of a UUIDv7.
//!
//! UUIDv7 starts with the creation time in milliseconds, so ids sort by creation time as plain
//! strings; the store uses that to list newest first without a separate sort attribute. An id
//! that does not have exactly this shape cannot name anything we stored, so the HTTP layer
//! answers 404 for it, never 400.

use super::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use uuid::{NoContext, Timestamp, Uuid};

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id whose time part is `now`.
            pub fn generate(now: OffsetDateTime) -> Self {
                Self(format!("{}{}", $prefix, time_ordered_hex(now)))
            }

            pub fn parse(input: &str) -> Result<Self, ParseError> {
                if is_prefixed_hex(input, $prefix) {
                    Ok(Self(input.to_owned()))
                } else {
                    Err(ParseError::new(format!("not a valid {} id", $prefix.trim_end_matches('_'))))
                }
            }

            /// The id whose time-ordered part is `hex` ([`time_ordered_hex`]): how a keyed
            /// request's object gets the id its idempotency record keeps for every retry.
            pub fn from_time_ordered_hex(hex: &str) -> Result<Self, ParseError> {
                Self::parse(&format!("{}{hex}", $prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// A payment (`pay_…`).
    PaymentId,
    "pay_"
);
prefixed_id!(
    /// A merchant, the tenant that owns payments and API keys (`mer_…`).
    MerchantId,
    "mer_"
);
prefixed_id!(
    /// An audit-trail event (`evt_…`).
    EventId,
    "evt_"
);

prefixed_id!(
    /// A refund (`re_…`).
    RefundId,
    "re_"
);

prefixed_id!(
    /// A merchant's webhook endpoint (`we_…`).
    WebhookEndpointId,
    "we_"
);

prefixed_id!(
    /// One event's delivery to one webhook endpoint (`whd_…`).
    WebhookDeliveryId,
    "whd_"
);

impl WebhookDeliveryId {
    /// The delivery of `event` to `endpoint`: the same pair always gives the same id, so a
    /// relay that sees an event twice (a stream retry) finds the delivery it made, instead of
    /// making a second. The first half is the event id's time-ordered half (lists of deliveries
    /// sort by event time); the second, a hash of the pair.
    pub fn for_event(event: &EventId, endpoint: &WebhookEndpointId) -> Self {
        use sha2::{Digest, Sha256};
        let time_half = &event.as_str()[EventId::PREFIX.len()..][..HEX_LEN / 2];
        let digest = Sha256::digest(format!("{event} {endpoint}").as_bytes());
        let pair_half = hex::encode(&digest[..HEX_LEN / 4]);
        Self(format!("{}{time_half}{pair_half}", Self::PREFIX))
    }
}

prefixed_id!(
    /// A replay of a time range of a merchant's events to one webhook endpoint (`whr_…`).
    WebhookReplayId,
    "whr_"
);

impl WebhookDeliveryId {
    /// The delivery of `event` to `endpoint` that `replay` makes: a new delivery beside the
    /// event's first one (and beside other replays'), and the same one every time this replay
    /// reaches this event, so that a replay page written twice (overlapping dispatcher runs, a
    /// lost answer) makes it once. The first half is the event's time, as in [`Self::for_event`].
    pub fn for_replay(
        replay: &WebhookReplayId,
        event: &EventId,
        endpoint: &WebhookEndpointId,
    ) -> Self {
        use sha2::{Digest, Sha256};
        let time_half = &event.as_str()[EventId::PREFIX.len()..][..HEX_LEN / 2];
        let digest = Sha256::digest(format!("{replay} {event} {endpoint}").as_bytes());
        let pair_half = hex::encode(&digest[..HEX_LEN / 4]);
        Self(format!("{}{time_half}{pair_half}", Self::PREFIX))
    }
}

impl EventId {
    /// The least event id whose time part is at or after `at` (whole milliseconds): event ids
    /// of `[since, until)` are those from `EventId::lower_bound(since)` up to, not including,
    /// `EventId::lower_bound(until)`, in string order (UUIDv7 starts with the time in ms).
    pub fn lower_bound(at: super::Timestamp) -> String {
        let ms = at.as_datetime().unix_timestamp_nanos() / 1_000_000;
        format!("{}{:012x}", Self::PREFIX, ms.max(0))
    }
}

const HEX_LEN: usize = 32;

/// 32 lowercase hex digits of a UUIDv7 made at `now`: the part of every id after its prefix.
pub fn time_ordered_hex(now: OffsetDateTime) -> String {
    let nanos = now.unix_timestamp_nanos();
    let secs = u64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(NoContext, secs, subsec))
        .simple()
        .to_string()
}

fn is_prefixed_hex(input: &str, prefix: &str) -> bool {
    input.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == HEX_LEN && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn generated_ids_parse_and_carry_their_prefix() {
        let id = PaymentId::generate(OffsetDateTime::now_utc());
        assert!(id.as_str().starts_with("pay_"));
        assert_eq!(PaymentId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn event_ids_of_a_range_lie_between_the_bounds_of_its_ends() {
        use crate::domain::Timestamp;
        let since = Timestamp::from_datetime(datetime!(2026-11-23 19:00:00.005 UTC));
        let until = Timestamp::from_datetime(datetime!(2026-11-23 19:00:00.007 UTC));
        let (low, high) = (EventId::lower_bound(since), EventId::lower_bound(until));
        let at = |ms: u16| {
            EventId::generate(
                datetime!(2026-11-23 19:00:00 UTC) + time::Duration::milliseconds(ms.into()),
            )
            .to_string()
        };
        let inside = |id: &String| low.as_str() <= id.as_str() && id.as_str() < high.as_str();
        assert!(inside(&at(5)), "the first millisecond is in");
        assert!(inside(&at(6)));
        assert!(!inside(&at(7)), "until is not");
        assert!(!inside(&at(4)));
        assert!(
            EventId::lower_bound(Timestamp::from_datetime(datetime!(1960-01-01 0:00 UTC))) <= at(0)
        );
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let earlier = PaymentId::generate(datetime!(2026-11-23 19:00:00.001 UTC));
        let later = PaymentId::generate(datetime!(2026-11-23 19:00:00.002 UTC));
        assert!(earlier < later);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let valid = PaymentId::generate(OffsetDateTime::now_utc()).to_string();
        let wrong_prefix = valid.replacen("pay_", "mer_", 1);
        let upper = valid.to_uppercase();
        for bad in [
            "",
            "pay_",
            "pay_123",
            &wrong_prefix,
            &upper,
            "pay_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert!(PaymentId::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(MerchantId::parse(&wrong_prefix).is_ok());
    }
}
