//! What a processor answers, and what a payment carries because of it: which processor holds it
//! and under which reference (`processor`), what the customer must do (`next_action`), where the
//! customer lands afterwards (`return_url`), and the two timers of the asynchronous statuses
//! (`requires_action` lapses, `processing` is looked up). The transitions they drive are in
//! `payment.rs`; this module owns the values.
//!
//! Shaped after Stripe's PaymentIntents (the next processor): `next_action` is Stripe's object
//! (`redirect_to_url` with `url` and `return_url`, or `use_stripe_sdk`), and a reference is the
//! processor's own id (`pi_…` for Stripe).

use super::{ParseError, Timestamp};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use url::{Host, Url};

/// The processor a deployment uses (template parameter `Processor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessorName {
    #[default]
    Sandbox,
    Stripe,
}

impl ProcessorName {
    /// The wire name, also the last segment of `POST /processor_events/{processor}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessorName::Sandbox => "sandbox",
            ProcessorName::Stripe => "stripe",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        match input {
            "sandbox" => Ok(Self::Sandbox),
            "stripe" => Ok(Self::Stripe),
            _ => Err(ParseError::new("must be 'sandbox' or 'stripe'")),
        }
    }
}

/// Which processor holds a payment, and its id there. The reference is known before money can
/// move (the sandbox derives it from our payment id; Stripe's PaymentIntent is created
/// unconfirmed first), so an unknown outcome is resolved by looking it up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessorRef {
    pub name: ProcessorName,
    /// `None` only on payments stored before processors had references (they were all decided
    /// synchronously by the sandbox).
    pub reference: Option<String>,
}

impl ProcessorRef {
    pub fn new(name: ProcessorName, reference: impl Into<String>) -> Self {
        Self {
            name,
            reference: Some(reference.into()),
        }
    }
}

/// What the customer must do before a `requires_action` payment can move on (Stripe's
/// `next_action`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// Send the customer's browser to `redirect_to_url.url`; it comes back to `return_url`.
    RedirectToUrl { redirect_to_url: RedirectToUrl },
    /// Stripe.js completes it in the customer's browser with the PaymentIntent's secret.
    UseStripeSdk { client_secret: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectToUrl {
    pub url: String,
    pub return_url: Option<ReturnUrl>,
}

/// The longest `return_url`, in characters (as for webhook endpoints).
pub const MAX_RETURN_URL_CHARS: usize = 2048;

/// Where the customer lands after authenticating: an absolute `https://` URL; the local stack
/// (`allow_local`) also takes `http://127.0.0.1:…` and `http://localhost:…`. It is only ever a
/// redirect target for the customer's browser — nothing of ours connects to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReturnUrl(String);

impl ReturnUrl {
    pub fn parse(input: &str, allow_local: bool) -> Result<Self, ParseError> {
        if input.chars().count() > MAX_RETURN_URL_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {MAX_RETURN_URL_CHARS} characters"
            )));
        }
        let url = Url::parse(input).map_err(|_| ParseError::new("must be an absolute URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ParseError::new("must not carry credentials"));
        }
        let loopback = match url.host() {
            Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            _ => false,
        };
        match url.scheme() {
            // (An `https` URL always has a host: the parser refuses one without.)
            "https" => Ok(Self(input.to_owned())),
            "http" if allow_local && loopback => Ok(Self(input.to_owned())),
            _ => Err(ParseError::new("must be an https:// URL")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReturnUrl {
    type Error = ParseError;
    /// Stored values were checked when they were taken; reading them back only re-checks the
    /// shape (the local switch then was what it was).
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value, true)
    }
}

impl From<ReturnUrl> for String {
    fn from(url: ReturnUrl) -> String {
        url.0
    }
}

/// The processor's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Approved,
    Declined(super::Failure),
    /// The customer must authenticate first (3-D Secure).
    RequiresAction(NextAction),
    /// The processor took the request and will decide later (it sends an event).
    Processing,
    /// Our call ended without an answer (a timeout, a lost connection after sending): the
    /// processor may have acted. Never guessed: reconciliation asks it.
    Unknown,
}

/// A final answer about an authorization that was pending (`requires_action` or `processing`):
/// what a processor event or a reconciliation lookup reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Approved,
    Declined(super::Failure),
}

/// When a `processing` payment is next looked up at the processor, and how many lookups have
/// learnt nothing so far (the back-off grows with them). Internal: not part of the payment object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    pub at: Timestamp,
    pub attempts: u32,
    /// Since when the processor's answer has been awaited (what the unknown-outcome alarm
    /// measures). `None` on items stored before it was kept: the payment's creation is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl Reconcile {
    /// The first lookup of something awaited from `now` on.
    pub fn first(now: OffsetDateTime, deadlines: &Deadlines) -> Self {
        Self {
            at: Deadlines::after(now, deadlines.reconcile),
            attempts: 0,
            since: Some(Timestamp::from_datetime(now)),
        }
    }
}

/// A capture or cancel sent to the processor whose answer never came (internal, stored on the
/// payment until reconciliation learns what the processor did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unconfirmed {
    Capture {
        amount: super::Amount,
    },
    Cancel {
        reason: Option<super::CancellationReason>,
    },
}

/// How long the pending states last: the deployment's configuration, as the status machine
/// needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// An uncaptured authorization's life (`capture_before`).
    pub authorization: Duration,
    /// How long the customer has to complete `next_action` (then `canceled`, `abandoned`).
    pub action: Duration,
    /// The first reconciliation lookup of a `processing` payment, after its create.
    pub reconcile: Duration,
}

impl Deadlines {
    /// `now + by`, in the stored precision.
    pub(crate) fn after(now: OffsetDateTime, by: Duration) -> Timestamp {
        Timestamp::from_datetime(Timestamp::from_datetime(now).as_datetime() + by)
    }
}

impl Default for Deadlines {
    /// The deployed defaults (template.yaml): 7 days, 24 hours, one minute.
    fn default() -> Self {
        Self {
            authorization: Duration::hours(168),
            action: Duration::hours(24),
            reconcile: Duration::minutes(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_action_has_stripes_shape() {
        let action = NextAction::RedirectToUrl {
            redirect_to_url: RedirectToUrl {
                url: "https://api.example/sandbox/authenticate/pay_1?token=t".into(),
                return_url: Some(ReturnUrl::parse("https://shop.example/done", false).unwrap()),
            },
        };
        let json = serde_json::to_value(&action).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "redirect_to_url", "redirect_to_url": {
                "url": "https://api.example/sandbox/authenticate/pay_1?token=t",
                "return_url": "https://shop.example/done"}})
        );
        assert_eq!(serde_json::from_value::<NextAction>(json).unwrap(), action);
        let sdk = serde_json::to_value(NextAction::UseStripeSdk {
            client_secret: "pi_1_secret_2".into(),
        })
        .unwrap();
        assert_eq!(
            sdk,
            serde_json::json!({"type": "use_stripe_sdk", "client_secret": "pi_1_secret_2"})
        );
    }

    #[test]
    fn return_urls_are_https_or_the_local_stacks_loopback() {
        for good in ["https://shop.example/done?order=1", "https://10.0.0.1/x"] {
            let url = ReturnUrl::parse(good, false).unwrap();
            assert_eq!(url.as_str(), good, "kept exactly as given");
            assert_eq!(String::from(url), good);
        }
        for local in ["http://127.0.0.1:8080/back", "http://localhost:3000/"] {
            assert!(ReturnUrl::parse(local, true).is_ok(), "{local}");
            assert!(ReturnUrl::parse(local, false).is_err(), "{local}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(MAX_RETURN_URL_CHARS));
        for bad in [
            "/relative",
            "shop.example/done",
            "http://shop.example/",
            "ftp://shop.example/",
            "https://user:pw@shop.example/",
            "https://user@shop.example/",
            "https://:pw@shop.example/",
            "javascript:alert(1)",
            "https://",
            long.as_str(),
        ] {
            assert!(ReturnUrl::parse(bad, true).is_err(), "{bad}");
        }
        let exactly = format!("https://s.io/{}", "a".repeat(MAX_RETURN_URL_CHARS - 13));
        assert_eq!(exactly.chars().count(), MAX_RETURN_URL_CHARS);
        assert!(ReturnUrl::parse(&exactly, false).is_ok());
    }

    #[test]
    fn processor_names_round_trip() {
        for name in [ProcessorName::Sandbox, ProcessorName::Stripe] {
            assert_eq!(ProcessorName::parse(name.as_str()).unwrap(), name);
            assert_eq!(serde_json::to_value(name).unwrap(), name.as_str());
        }
        assert!(ProcessorName::parse("Stripe").is_err());
    }
}
