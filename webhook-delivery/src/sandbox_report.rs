//! The sandbox processor's outbound half: how it reports an outcome to this API's
//! `POST /processor_events/sandbox`, as a real processor calls us — a signed event
//! (`shared::processor::events::SandboxEvent`, Stripe's signature scheme with the deployment's
//! sandbox secret) over HTTPS through the same client as webhook deliveries. Used by the
//! sandbox's authentication page (the customer's answer) and its settle sweep (the delayed
//! outcome of `pm_card_processing`). Here because this crate holds the outbound HTTP client;
//! only the sandbox's functions link this module's callers.

use crate::Sender;
use async_trait::async_trait;
use shared::domain::Settlement;
use shared::http::ApiError;
use shared::processor::events::{SandboxEvent, SANDBOX_SIGNATURE_HEADER};
use shared::processor::sandbox::SandboxAuthorization;
use shared::processor::signature;
use shared::store::{DeploymentSecret, LazySecret, Store};
use std::sync::Arc;
use time::OffsetDateTime;

/// Where the sandbox's events go.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Delivers a signed event body to the processor-event route at `url`; `Err` says why it
    /// was not accepted (for the log).
    async fn deliver(&self, url: &str, signature: &str, body: &str) -> Result<(), String>;
}

/// Over HTTPS, as a processor calls us.
pub struct HttpSink(Sender);

impl HttpSink {
    /// `allow_local`: the local stack's switch (the API on 127.0.0.1).
    pub fn new(allow_local: bool) -> Result<Self, crate::sender::SenderError> {
        Ok(Self(Sender::new(allow_local)?))
    }
}

#[async_trait]
impl EventSink for HttpSink {
    async fn deliver(&self, url: &str, signature: &str, body: &str) -> Result<(), String> {
        let headers = [(SANDBOX_SIGNATURE_HEADER, signature.to_owned())];
        let answer = self.0.post_json(url, &headers, body, "sandbox-event").await;
        if answer.is_success() {
            Ok(())
        } else {
            Err(format!("the processor-event route answered {answer:?}"))
        }
    }
}

/// Signs and sends the sandbox's events: the secret (read on the first event of a container)
/// and where they go.
pub struct Reporter {
    secret: LazySecret,
    sink: Arc<dyn EventSink>,
}

impl Reporter {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            secret: LazySecret::new(DeploymentSecret::Sandbox),
            sink,
        }
    }

    /// Reports `settlement` of `record` to the processor-event route under `api_base`, stamped
    /// `now`. The event's id is derived from the reference and the outcome, so a report sent
    /// again is the same event, applied once.
    pub async fn report(
        &self,
        store: &Store,
        api_base: &str,
        record: &SandboxAuthorization,
        settlement: &Settlement,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let event = SandboxEvent::settled(
            &record.reference,
            &record.merchant_id,
            &record.payment_id,
            settlement,
            now.unix_timestamp(),
        );
        let body = serde_json::to_string(&event)
            .map_err(|e| ApiError::Internal(format!("sandbox event: {e}")))?;
        let secret = self.secret.get(store).await?;
        let signature = signature::sign(secret, body.as_bytes(), now);
        let url = format!("{api_base}/processor_events/sandbox");
        self.sink
            .deliver(&url, &signature, &body)
            .await
            .map_err(|why| {
                ApiError::ServiceUnavailable(format!("sandbox event not delivered: {why}"))
            })
    }
}
