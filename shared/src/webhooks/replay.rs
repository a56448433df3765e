//! A replay (the `webhook_replay` object): the merchant's events created in `[since, until)`
//! that one endpoint subscribes to, delivered to it again, oldest first, each as a new delivery
//! (API.md, "Resend and replay"). The request only records the replay; the dispatcher
//! (`webhook_delivery::replay`) walks the events a page at a time, and only while the endpoint
//! has few deliveries due, so a replay of months never delays anyone's deliveries, its own
//! endpoint's new ones included.

use crate::domain::{ParseError, Timestamp, WebhookEndpointId, WebhookReplayId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The longest range one replay may cover.
pub const MAX_RANGE: time::Duration = time::Duration::days(90);

/// Deliveries one step of a replay creates, at most: also how many of an endpoint's deliveries
/// may be due before its replay waits (`webhook_delivery::replay`).
pub const DELIVERIES_PER_STEP: usize = 20;

/// Events one step reads, at most (those the endpoint does not subscribe to are passed over).
pub const EVENTS_PER_STEP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStatus {
    /// Events of the range are still to be read.
    Running,
    /// Every event of the range was read (or the endpoint was deleted): nothing more to create.
    Done,
}

/// `[since, until)`, at most [`MAX_RANGE`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRange {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl ReplayRange {
    /// From the request's `since` and optional `until` ([`instant`]s; `until` defaults to
    /// `now`). The error names the field at fault.
    pub fn new(
        since: Timestamp,
        until: Option<Timestamp>,
        now: OffsetDateTime,
    ) -> Result<Self, (&'static str, ParseError)> {
        let until = until.unwrap_or_else(|| Timestamp::from_datetime(now));
        if since >= until {
            return Err(("since", ParseError::new("must be before until")));
        }
        if until.as_datetime() - since.as_datetime() > MAX_RANGE {
            return Err((
                "since",
                ParseError::new(
                    "a replay covers at most 90 days: since and until are further apart",
                ),
            ));
        }
        Ok(Self { since, until })
    }
}

/// An end of a range: an RFC 3339 date-time string, any offset, kept to the millisecond.
pub fn instant(value: &Value) -> Result<Timestamp, ParseError> {
    let text = value
        .as_str()
        .ok_or_else(|| ParseError::new("must be an RFC 3339 date-time string"))?;
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ParseError::new("must be an RFC 3339 date-time, like 2026-12-01T00:00:00Z"))?;
    if at.year() < 1970 || at.year() > 9999 {
        return Err(ParseError::new("must be between 1970 and 9999"));
    }
    Ok(Timestamp::from_datetime(at))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReplay {
    pub id: WebhookReplayId,
    pub endpoint_id: WebhookEndpointId,
    pub since: Timestamp,
    pub until: Timestamp,
    pub status: ReplayStatus,
    /// Deliveries created so far (one per subscribed event of the range).
    pub events: u64,
    pub created_at: Timestamp,
}

impl WebhookReplay {
    /// A replay just asked for: running, nothing delivered yet.
    pub fn new(
        id: WebhookReplayId,
        endpoint: &WebhookEndpointId,
        range: ReplayRange,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            endpoint_id: endpoint.clone(),
            since: range.since,
            until: range.until,
            status: ReplayStatus::Running,
            events: 0,
            created_at: Timestamp::from_datetime(now),
        }
    }

    /// The API's `webhook_replay` object.
    pub fn resource(&self) -> Value {
        let mut json = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(map) = json.as_object_mut() {
            map.insert("object".to_owned(), "webhook_replay".into());
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00:00 UTC);

    /// As the handler reads a request: each end, then the range.
    fn parse(since: Value, until: Option<Value>) -> Result<ReplayRange, (&'static str, String)> {
        let since = instant(&since).map_err(|e| ("since", e.to_string()))?;
        let until = until
            .map(|until| instant(&until).map_err(|e| ("until", e.to_string())))
            .transpose()?;
        ReplayRange::new(since, until, NOW).map_err(|(f, e)| (f, e.to_string()))
    }

    #[test]
    fn a_range_is_since_to_until_or_now_at_most_ninety_days() {
        let range = parse(json!("2026-12-01T00:00:00Z"), None).unwrap();
        assert_eq!(range.since.to_string(), "2026-12-01T00:00:00.000Z");
        assert_eq!(range.until, Timestamp::from_datetime(NOW));
        let offset = parse(
            json!("2026-12-01T02:00:00+02:00"),
            Some(json!("2026-12-01T00:00:01.5Z")),
        )
        .unwrap();
        assert_eq!(offset.since.to_string(), "2026-12-01T00:00:00.000Z");
        assert_eq!(offset.until.to_string(), "2026-12-01T00:00:01.500Z");
        // Exactly 90 days is allowed, a millisecond more is not.
        assert!(parse(json!("2026-09-05T12:00:00Z"), None).is_ok());
        assert_eq!(
            parse(json!("2026-09-05T11:59:59.999Z"), None)
                .unwrap_err()
                .0,
            "since"
        );
    }

    #[test]
    fn bad_ends_are_refused_naming_the_field() {
        for (since, until, field) in [
            (
                json!("2026-12-02T00:00:00Z"),
                Some(json!("2026-12-02T00:00:00Z")),
                "since",
            ),
            (
                json!("2026-12-02T00:00:00Z"),
                Some(json!("2026-12-01T00:00:00Z")),
                "since",
            ),
            (json!("yesterday"), None, "since"),
            (json!(1_764_547_200), None, "since"),
            (json!("2026-12-01"), None, "since"),
            (json!("2026-12-01T00:00:00Z"), Some(json!("soon")), "until"),
            (
                json!("1969-12-31T23:59:59Z"),
                Some(json!("1970-01-01T00:00:01Z")),
                "since",
            ),
        ] {
            assert_eq!(
                parse(since.clone(), until.clone()).unwrap_err().0,
                field,
                "{since} {until:?}"
            );
        }
    }

    #[test]
    fn the_object_says_what_it_is_and_how_far_it_got() {
        let range = parse(json!("2026-12-01T00:00:00Z"), None).unwrap();
        let replay = WebhookReplay::new(
            WebhookReplayId::generate(NOW),
            &WebhookEndpointId::generate(NOW),
            range,
            NOW,
        );
        let json = replay.resource();
        assert_eq!(json["object"], "webhook_replay");
        assert_eq!(json["status"], "running");
        assert_eq!(json["events"], 0);
        assert_eq!(json["since"], "2026-12-01T00:00:00.000Z");
        assert!(json["id"].as_str().unwrap().starts_with("whr_"));
    }
}
