//! One event's delivery to one endpoint (the `webhook_delivery` object) and how an attempt's
//! answer moves it on: 2xx → `succeeded`; `410 Gone` → `failed` (and the endpoint is disabled);
//! anything else → `pending` with the next attempt per `schedule`, or `failed` after the last.

use super::schedule;
use crate::domain::{
    Event, EventId, EventType, ParseError, Timestamp, WebhookDeliveryId, WebhookEndpointId,
    WebhookReplayId,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; an attempt is due at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Given up: every attempt failed, the endpoint answered 410, or it was disabled or deleted
    /// before the delivery was made.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Succeeded, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == input)
            .ok_or_else(|| ParseError::new("must be one of pending, succeeded, failed"))
    }
}

/// What an attempt got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status, whole answer received within the timeout.
    Status(u16),
    /// No HTTP answer: timeout, connection refused or reset, TLS failure, refused address.
    None,
}

impl Answer {
    pub fn is_success(self) -> bool {
        matches!(self, Self::Status(200..=299))
    }

    /// `410 Gone`: the receiver asks for nothing more to be sent.
    pub fn is_gone(self) -> bool {
        self == Self::Status(410)
    }

    fn status(self) -> Option<u16> {
        match self {
            Self::Status(status) => Some(status),
            Self::None => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_attempt_at: Option<Timestamp>,
    /// `None` when the last attempt had no HTTP answer (or there was none yet).
    pub last_response_status: Option<u16>,
    /// When the next attempt is due; `None` once the delivery is no longer pending.
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Delivery {
    /// A new delivery of `event` to `endpoint`, due at once.
    pub fn new(event: &Event, endpoint: &WebhookEndpointId, now: OffsetDateTime) -> Self {
        let at = Timestamp::from_datetime(now);
        Self {
            id: WebhookDeliveryId::for_event(&event.id, endpoint),
            endpoint_id: endpoint.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_attempt_at: None,
            last_response_status: None,
            next_attempt_at: Some(at),
            created_at: at,
        }
    }

    /// A new delivery of `event` to `endpoint` made by `replay`, due at once: beside the
    /// event's first delivery, with an id of its own (the same `webhook-id`, the event's id).
    pub fn replayed(
        event: &Event,
        endpoint: &WebhookEndpointId,
        replay: &WebhookReplayId,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: WebhookDeliveryId::for_replay(replay, &event.id, endpoint),
            ..Self::new(event, endpoint, now)
        }
    }

    /// The delivery after an attempt made at `at` got `answer`.
    pub fn after_attempt(&self, answer: Answer, at: OffsetDateTime) -> Self {
        let attempts = self.attempts.saturating_add(1);
        let retry = if answer.is_success() || answer.is_gone() {
            None
        } else {
            usize::try_from(attempts)
                .ok()
                .and_then(schedule::retry_after)
        };
        let status = match (answer.is_success(), retry) {
            (true, _) => DeliveryStatus::Succeeded,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        Self {
            status,
            attempts,
            last_attempt_at: Some(Timestamp::from_datetime(at)),
            last_response_status: answer.status(),
            next_attempt_at: retry.map(|wait| Timestamp::from_datetime(at + wait)),
            ..self.clone()
        }
    }

    /// The delivery given up without an attempt: its endpoint was disabled or deleted first.
    pub fn abandoned(&self) -> Self {
        Self {
            status: DeliveryStatus::Failed,
            next_attempt_at: None,
            ..self.clone()
        }
    }

    /// The API's `webhook_delivery` object.
    pub fn resource(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = json.as_object_mut() {
            map.insert("object".to_owned(), "webhook_delivery".into());
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PaymentId;
    use time::Duration;

    fn delivery(now: OffsetDateTime) -> Delivery {
        let event = Event {
            id: EventId::generate(now),
            event_type: EventType::PaymentSucceeded,
            payment_id: PaymentId::generate(now),
            created_at: Timestamp::from_datetime(now),
            data: serde_json::json!({}),
        };
        Delivery::new(&event, &WebhookEndpointId::generate(now), now)
    }

    #[test]
    fn a_new_delivery_is_pending_and_due_now() {
        let now = OffsetDateTime::now_utc();
        let d = delivery(now);
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 0);
        assert_eq!(d.next_attempt_at, Some(Timestamp::from_datetime(now)));
        let json = d.resource();
        assert_eq!(json["object"], "webhook_delivery");
        assert_eq!(json["status"], "pending");
        assert!(json["last_response_status"].is_null());
        assert!(json["id"].as_str().unwrap().starts_with("whd_"));
    }

    #[test]
    fn the_id_belongs_to_the_pair() {
        let now = OffsetDateTime::now_utc();
        let event = EventId::generate(now);
        let (a, b) = (
            WebhookEndpointId::generate(now),
            WebhookEndpointId::generate(now),
        );
        let id = WebhookDeliveryId::for_event(&event, &a);
        assert_eq!(id, WebhookDeliveryId::for_event(&event, &a));
        assert_ne!(id, WebhookDeliveryId::for_event(&event, &b));
        assert_ne!(
            id,
            WebhookDeliveryId::for_event(&EventId::generate(now), &a)
        );
        assert!(WebhookDeliveryId::parse(id.as_str()).is_ok());
        // Later events' deliveries sort after earlier ones'.
        let later = EventId::generate(now + Duration::seconds(1));
        assert!(WebhookDeliveryId::for_event(&later, &a).as_str() > id.as_str());
    }

    #[test]
    fn a_replay_makes_a_delivery_of_its_own_once_per_event() {
        let now = OffsetDateTime::now_utc();
        let first = delivery(now);
        let event = Event {
            id: first.event_id.clone(),
            event_type: first.event_type,
            payment_id: PaymentId::generate(now),
            created_at: first.created_at,
            data: serde_json::json!({}),
        };
        let (r1, r2) = (
            WebhookReplayId::generate(now),
            WebhookReplayId::generate(now),
        );
        let replayed = Delivery::replayed(&event, &first.endpoint_id, &r1, now);
        assert_ne!(replayed.id, first.id, "a new delivery");
        assert_eq!(replayed.event_id, first.event_id, "of the same event");
        assert_eq!(
            replayed.id,
            Delivery::replayed(&event, &first.endpoint_id, &r1, now).id
        );
        assert_ne!(
            replayed.id,
            Delivery::replayed(&event, &first.endpoint_id, &r2, now).id,
            "another replay's is another"
        );
        assert_eq!(replayed.status, DeliveryStatus::Pending);
        assert_eq!(
            replayed.id.as_str()[..20],
            first.id.as_str()[..20],
            "sorted by the event's time"
        );
    }

    #[test]
    fn answers_move_the_delivery_along_the_schedule() {
        let now = OffsetDateTime::now_utc();
        let d = delivery(now);

        let ok = d.after_attempt(Answer::Status(204), now);
        assert_eq!(ok.status, DeliveryStatus::Succeeded);
        assert_eq!(
            (ok.attempts, ok.next_attempt_at, ok.last_response_status),
            (1, None, Some(204))
        );

        let failed = d.after_attempt(Answer::Status(500), now);
        assert_eq!(failed.status, DeliveryStatus::Pending);
        assert_eq!(
            failed.next_attempt_at,
            Some(Timestamp::from_datetime(now + Duration::seconds(5)))
        );
        let timed_out = failed.after_attempt(Answer::None, now);
        assert_eq!(timed_out.last_response_status, None);
        assert_eq!(
            timed_out.next_attempt_at,
            Some(Timestamp::from_datetime(now + Duration::minutes(5)))
        );

        // Redirects count as failures: nothing is followed.
        assert_eq!(
            d.after_attempt(Answer::Status(301), now).status,
            DeliveryStatus::Pending
        );

        let gone = d.after_attempt(Answer::Status(410), now);
        assert_eq!(gone.status, DeliveryStatus::Failed);
        assert_eq!(gone.next_attempt_at, None);

        // The tenth failure is final.
        let mut last = d.clone();
        for _ in 0..schedule::MAX_ATTEMPTS {
            assert_eq!(last.status, DeliveryStatus::Pending);
            last = last.after_attempt(Answer::Status(503), now);
        }
        assert_eq!(last.status, DeliveryStatus::Failed);
        assert_eq!(last.attempts, 10);
        assert_eq!(last.next_attempt_at, None);
    }

    #[test]
    fn statuses_parse_from_their_names_only() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()).unwrap(), status);
        }
        assert!(DeliveryStatus::parse("Pending").is_err());
        assert!(DeliveryStatus::parse("").is_err());
    }
}
