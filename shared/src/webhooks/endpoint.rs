//! A merchant's webhook endpoint as the API shows it (the `webhook_endpoint` object, without
//! its secret: secrets live apart, see `store::webhooks`), and which events it receives.

use super::destination::WebhookUrl;
use crate::domain::{Description, EventType, Metadata, ParseError, Timestamp, WebhookEndpointId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The most endpoints a merchant may have.
pub const MAX_ENDPOINTS_PER_MERCHANT: usize = 16;

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        match input {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            _ => Err(ParseError::new("must be 'enabled' or 'disabled'")),
        }
    }
}

/// The event types an endpoint subscribes to: all (`["*"]`) or some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub enum EnabledEvents {
    All,
    Only(BTreeSet<EventType>),
}

impl EnabledEvents {
    /// A non-empty list of event types, or `["*"]` alone.
    pub fn parse(types: &[&str]) -> Result<Self, ParseError> {
        match types {
            [] => Err(ParseError::new(
                "must name at least one event type, or \"*\"",
            )),
            ["*"] => Ok(Self::All),
            _ if types.contains(&"*") => Err(ParseError::new("\"*\" stands alone")),
            _ => types
                .iter()
                .map(|name| EventType::parse(name))
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Self::Only),
        }
    }

    pub fn includes(&self, kind: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&kind),
        }
    }
}

impl TryFrom<Vec<String>> for EnabledEvents {
    type Error = ParseError;
    fn try_from(names: Vec<String>) -> Result<Self, ParseError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::parse(&names)
    }
}

impl From<EnabledEvents> for Vec<String> {
    fn from(events: EnabledEvents) -> Self {
        match events {
            EnabledEvents::All => vec!["*".to_owned()],
            EnabledEvents::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }
}

/// The request fields of an endpoint, parsed from JSON (create and update read them alike).
pub mod fields {
    use super::*;
    use crate::http::request::json;
    use serde_json::Value;

    pub fn url(value: &Value, allow_local: bool) -> Result<WebhookUrl, ParseError> {
        WebhookUrl::parse(json::string(value)?, allow_local)
    }

    pub fn enabled_events(value: &Value) -> Result<EnabledEvents, ParseError> {
        EnabledEvents::parse(&json::strings(value)?)
    }

    pub fn description(value: &Value) -> Result<Description, ParseError> {
        Description::parse(json::string(value)?)
    }

    pub fn metadata(value: &Value) -> Result<Metadata, ParseError> {
        Metadata::parse(json::string_map(value)?)
    }

    pub fn status(value: &Value) -> Result<EndpointStatus, ParseError> {
        EndpointStatus::parse(json::string(value)?)
    }
}

/// A validated `POST /webhook_endpoints` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    pub url: WebhookUrl,
    pub enabled_events: EnabledEvents,
    pub description: Option<Description>,
    pub metadata: Metadata,
}

/// An endpoint, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    pub enabled_events: EnabledEvents,
    pub status: EndpointStatus,
    pub description: Option<Description>,
    pub metadata: Metadata,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    pub fn create(id: WebhookEndpointId, request: NewEndpoint, now: OffsetDateTime) -> Self {
        let at = Timestamp::from_datetime(now);
        Self {
            id,
            url: request.url.as_str().to_owned(),
            enabled_events: request.enabled_events,
            status: EndpointStatus::Enabled,
            description: request.description,
            metadata: request.metadata,
            created_at: at,
            updated_at: at,
        }
    }

    /// Whether an event of `kind` is delivered to this endpoint now.
    pub fn receives(&self, kind: EventType) -> bool {
        self.status == EndpointStatus::Enabled && self.enabled_events.includes(kind)
    }

    /// The API's `webhook_endpoint` object (never with the secret).
    pub fn resource(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = json.as_object_mut() {
            map.insert("object".to_owned(), "webhook_endpoint".into());
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_events_are_some_known_types_or_all() {
        assert_eq!(EnabledEvents::parse(&["*"]).unwrap(), EnabledEvents::All);
        let some = EnabledEvents::parse(&["payment.refunded", "payment.succeeded"]).unwrap();
        assert!(some.includes(EventType::PaymentRefunded));
        assert!(!some.includes(EventType::PaymentFailed));
        assert!(EnabledEvents::All.includes(EventType::PaymentFailed));
        for bad in [
            &[][..],
            &["*", "payment.failed"],
            &["payment.exploded"],
            &[""],
        ] {
            assert!(EnabledEvents::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_value(&some).unwrap();
        assert_eq!(
            json,
            serde_json::json!(["payment.succeeded", "payment.refunded"])
        );
        assert_eq!(serde_json::from_value::<EnabledEvents>(json).unwrap(), some);
    }

    #[test]
    fn a_disabled_endpoint_receives_nothing_and_the_object_has_no_secret() {
        let now = OffsetDateTime::now_utc();
        let request = NewEndpoint {
            url: WebhookUrl::parse("https://example.com/hooks", false).unwrap(),
            enabled_events: EnabledEvents::parse(&["payment.succeeded"]).unwrap(),
            description: None,
            metadata: Metadata::default(),
        };
        let mut endpoint = WebhookEndpoint::create(WebhookEndpointId::generate(now), request, now);
        assert!(endpoint.receives(EventType::PaymentSucceeded));
        assert!(!endpoint.receives(EventType::PaymentRefunded));
        endpoint.status = EndpointStatus::Disabled;
        assert!(!endpoint.receives(EventType::PaymentSucceeded));
        let json = endpoint.resource();
        assert_eq!(json["object"], "webhook_endpoint");
        assert_eq!(json["status"], "disabled");
        assert_eq!(
            json["enabled_events"],
            serde_json::json!(["payment.succeeded"])
        );
        let mut members: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            [
                "created_at",
                "description",
                "enabled_events",
                "id",
                "metadata",
                "object",
                "status",
                "updated_at",
                "url"
            ]
        );
    }
}
