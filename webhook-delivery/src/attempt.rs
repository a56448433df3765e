//! One attempt of one delivery, made under a claim (`shared::store::deliveries`): read the
//! endpoint (a deleted or disabled one gets nothing: the delivery is given up), read its
//! secrets, sign the event as `GET /events/{id}` shows it, POST it, record the answer, then keep
//! the endpoint's books (410 disables it at once; 5 days of failures disable it).
//!
//! A crash anywhere in here leaves the delivery pending under a claim that ends [`LEASE`] after
//! it was taken; the dispatcher's next pass attempts it then. Recording is conditioned on the claim, so an
//! attempt that outlived its lease cannot overwrite the next holder's answer.

use crate::sender::{Sender, Signed};
use shared::clock::Clock;
use shared::domain::ids::time_ordered_hex;
use shared::domain::{Event, Timestamp};
use shared::metrics::{self, Counter};
use shared::store::{Claim, DeliveryRecord, Store, StoreError};
use shared::webhooks::delivery::{Answer, Delivery, DeliveryStatus};
use shared::webhooks::endpoint::EndpointStatus;
use shared::webhooks::signing::signature_header;
use std::sync::Arc;
use time::Duration;

/// How long a claim holds a delivery: well over what an attempt takes (the 10 s limit, plus
/// reading and recording), so that only a holder that died loses it.
pub const LEASE: Duration = Duration::seconds(30);

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded; the delivery is now in this status.
    Recorded(DeliveryStatus, Answer),
    /// Nothing sent: the endpoint is deleted or disabled; the delivery is given up.
    Abandoned,
    /// Sent, but the claim had passed to another holder: its answer is the one recorded.
    Superseded,
}

/// The delivery path's parts: the store, the HTTP client, the clock. Built once per container.
#[derive(Clone)]
pub struct Deliverer {
    pub store: Store,
    pub sender: Sender,
    pub clock: Arc<dyn Clock>,
}

/// Why the delivery path could not be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    #[error(transparent)]
    Sender(#[from] crate::sender::SenderError),
}

impl Deliverer {
    /// The production wiring: the table and client from the environment, the webhook client
    /// (local URLs only under `WEBHOOK_ALLOW_LOCAL_URLS=true`), the system clock.
    pub fn from_env() -> Result<Self, WiringError> {
        Ok(Self {
            store: Store::from_env()?,
            sender: Sender::new(shared::config::webhook_allow_local_urls(
                &shared::config::env,
            ))?,
            clock: Arc::new(shared::clock::SystemClock),
        })
    }

    /// A new claim, from now until [`LEASE`] later.
    pub fn claim(&self) -> Claim {
        let now = self.clock.now();
        Claim {
            token: time_ordered_hex(now),
            until: Timestamp::from_datetime(now + LEASE),
        }
    }

    /// Makes the attempt of `record` under `claim` (taken already). `event`: the delivery's event
    /// if the caller has it (the relay, from the stream); read from the table otherwise.
    pub async fn attempt(
        &self,
        record: &DeliveryRecord,
        event: Option<&Event>,
        claim: &Claim,
    ) -> Result<Outcome, StoreError> {
        let delivery = &record.delivery;
        let merchant = &record.merchant;
        let endpoint = self
            .store
            .get_endpoint(merchant, &delivery.endpoint_id)
            .await?;
        let Some(endpoint) = endpoint.filter(|e| e.status == EndpointStatus::Enabled) else {
            return self.abandon(record, claim).await;
        };
        let event = match event {
            Some(event) => event.clone(),
            None => self
                .store
                .event_at(merchant, &record.payment, record.event_sequence)
                .await?
                .ok_or_else(|| StoreError::Internal("a delivery's event is missing".into()))?,
        };
        let body = event.resource().to_string();
        let now = self.clock.now();
        let secrets = self
            .store
            .endpoint_secrets(merchant, &endpoint.id, Timestamp::from_datetime(now))
            .await?;
        if secrets.is_empty() {
            // The endpoint was deleted between the two reads.
            return self.abandon(record, claim).await;
        }
        let timestamp = now.unix_timestamp();
        let signed = Signed {
            webhook_id: event.id.as_str(),
            timestamp,
            signature: signature_header(&secrets, event.id.as_str(), timestamp, body.as_bytes()),
            body: &body,
        };
        let answer = self.sender.post(&endpoint.url, &signed).await;
        metrics::count(Counter::WebhookAttempts);
        metrics::count(if answer.is_success() {
            Counter::WebhookAttemptsSucceeded
        } else {
            Counter::WebhookAttemptsFailed
        });
        let after = delivery.after_attempt(answer, self.clock.now());
        match self.store.record_attempt(record, &after, claim).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => {
                tracing::warn!(delivery_id = %delivery.id, "attempt outlived its claim; the next holder's answer stands");
                return Ok(Outcome::Superseded);
            }
            Err(err) => return Err(err),
        }
        if after.status == DeliveryStatus::Failed {
            metrics::count(Counter::WebhookDeliveriesFailed);
        }
        log_attempt(&after, answer);
        self.keep_books(record, &after, answer).await;
        Ok(Outcome::Recorded(after.status, answer))
    }

    async fn abandon(&self, record: &DeliveryRecord, claim: &Claim) -> Result<Outcome, StoreError> {
        let after = record.delivery.abandoned();
        match self.store.record_attempt(record, &after, claim).await {
            Ok(()) => {
                metrics::count(Counter::WebhookDeliveriesAbandoned);
                tracing::info!(delivery_id = %after.id, endpoint_id = %after.endpoint_id, event_id = %after.event_id, "delivery given up: the endpoint is disabled or deleted");
                Ok(Outcome::Abandoned)
            }
            Err(StoreError::ConditionFailed) => Ok(Outcome::Superseded),
            Err(err) => Err(err),
        }
    }

    /// The endpoint's side of an answer. A failure here leaves the delivery recorded as it is;
    /// the next answer from the endpoint does the same bookkeeping again.
    async fn keep_books(&self, record: &DeliveryRecord, after: &Delivery, answer: Answer) {
        let (merchant, endpoint) = (&record.merchant, &after.endpoint_id);
        let now = Timestamp::from_datetime(self.clock.now());
        let kept = if answer.is_gone() {
            self.store
                .disable_endpoint(merchant, endpoint, now)
                .await
                .map(|disabled| (disabled, "the endpoint answered 410 Gone"))
        } else if answer.is_success() {
            self.store
                .note_endpoint_success(merchant, endpoint)
                .await
                .map(|()| (false, ""))
        } else {
            self.store
                .note_endpoint_failure(merchant, endpoint, now)
                .await
                .map(|disabled| (disabled, "every delivery failed for 5 days"))
        };
        match kept {
            Ok((true, why)) => {
                tracing::warn!(merchant_id = %merchant, endpoint_id = %endpoint, reason = why, "webhook endpoint disabled")
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(merchant_id = %merchant, endpoint_id = %endpoint, error = %err, "could not update the endpoint after an attempt")
            }
        }
    }
}

fn log_attempt(after: &Delivery, answer: Answer) {
    let status = match answer {
        Answer::Status(status) => Some(status),
        Answer::None => None,
    };
    tracing::info!(
        delivery_id = %after.id,
        endpoint_id = %after.endpoint_id,
        event_id = %after.event_id,
        attempt = after.attempts,
        response_status = status,
        delivery_status = after.status.as_str(),
        next_attempt_at = after.next_attempt_at.map(|t| t.to_string()),
        "webhook attempt"
    );
}
