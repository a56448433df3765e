//! `POST /processor_events/{processor}`: verify the processor's signature over the raw body,
//! read the event, and apply it once (`shared::settlement`). Answers 200 `{"received": true}`
//! to everything it verified — applied, stale, repeated, or about a reference we do not hold —
//! since any other answer only makes the processor send it again; a bad signature is 400
//! `invalid_signature` with nothing applied; a processor this deployment does not use is 404.

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::config;
use shared::domain::ProcessorName;
use shared::http::request::{body_bytes, path_param};
use shared::http::{ApiError, ApiResponse};
use shared::processor::events::{
    EventFormatError, ProcessorEvent, SandboxEvent, SANDBOX_SIGNATURE_HEADER,
};
use shared::processor::signature;
use shared::processor::stripe::events::{
    self as stripe_events, StripeEvent, STRIPE_SIGNATURE_HEADER,
};
use shared::processor::stripe::keys::Keys;
use shared::store::{DeploymentSecret, LazySecret};
use shared::App;

/// This deployment's processor and its signing secret, read on its first event in a container
/// (the sandbox's from the table, Stripe's webhook secret from the Stripe keys' secret).
#[derive(Debug)]
pub struct Verifier {
    processor: ProcessorName,
    sandbox: LazySecret,
    stripe: Option<Keys>,
}

impl Default for Verifier {
    /// The sandbox's.
    fn default() -> Self {
        Self {
            processor: ProcessorName::Sandbox,
            sandbox: LazySecret::new(DeploymentSecret::Sandbox),
            stripe: None,
        }
    }
}

impl Verifier {
    /// Stripe's, with these keys.
    pub fn stripe(keys: Keys) -> Self {
        Self {
            processor: ProcessorName::Stripe,
            stripe: Some(keys),
            ..Self::default()
        }
    }

    /// The deployment's (`PROCESSOR`; with Stripe, the keys in `STRIPE_SECRET_ARN`).
    pub fn from_env(lookup: config::Lookup) -> Result<Self, config::ConfigError> {
        Ok(match shared::processor::configured_name(lookup)? {
            ProcessorName::Sandbox => Self::default(),
            ProcessorName::Stripe => Self::stripe(Keys::from_env(lookup)?),
        })
    }
}

pub async fn processor_events(app: &App, verifier: &Verifier, req: Request) -> Response<Body> {
    app.respond_unauthenticated(&req, receive(app, verifier, &req))
        .await
}

async fn receive(app: &App, verifier: &Verifier, req: &Request) -> Result<ApiResponse, ApiError> {
    let processor = path_param(req, "processor", ProcessorName::parse)?;
    if processor != verifier.processor {
        return Err(ApiError::NotFound);
    }
    let event = match verified(app, verifier, req, processor).await? {
        Some(event) => event,
        None => return Ok(ApiResponse::ok(json!({"received": true}))),
    };
    let outcome =
        shared::settlement::apply_event(&app.store, app.clock.as_ref(), &app.deadlines(), &event)
            .await?;
    tracing::info!(
        processor = processor.as_str(),
        event_id = event.id,
        reference = event.reference,
        payment_id = %event.payment,
        outcome = outcome.as_str(),
        "processor event"
    );
    Ok(ApiResponse::ok(json!({"received": true})))
}

/// The event, if its signature holds (`None`: signed, but about nothing of ours).
async fn verified(
    app: &App,
    verifier: &Verifier,
    req: &Request,
    processor: ProcessorName,
) -> Result<Option<ProcessorEvent>, ApiError> {
    let body = body_bytes(req.body());
    let refused = |refused: signature::SignatureError| {
        tracing::warn!(processor = processor.as_str(), reason = %refused, "processor event refused");
        ApiError::InvalidSignature(refused.to_string())
    };
    let unreadable = |unreadable: EventFormatError| {
        tracing::warn!(processor = processor.as_str(), error = %unreadable, "processor event unreadable");
        ApiError::validation("body", "is not an event this API reads")
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    match processor {
        ProcessorName::Sandbox => {
            let secret = verifier.sandbox.get(&app.store).await?;
            signature::verify(
                secret,
                header(SANDBOX_SIGNATURE_HEADER),
                body,
                app.clock.now(),
            )
            .map_err(refused)?;
            SandboxEvent::parse(body).map(Some).map_err(unreadable)
        }
        ProcessorName::Stripe => {
            let keys = verifier.stripe.as_ref().ok_or(ApiError::NotFound)?;
            let keys = keys.get().await.map_err(|err| {
                tracing::error!(error = %err, "the Stripe webhook secret could not be read");
                ApiError::ServiceUnavailable(err.to_string())
            })?;
            // Stripe signs with the whole `whsec_…` string as the key.
            signature::verify(
                keys.webhook_secret.as_bytes(),
                header(STRIPE_SIGNATURE_HEADER),
                body,
                app.clock.now(),
            )
            .map_err(refused)?;
            match stripe_events::parse(body).map_err(unreadable)? {
                StripeEvent::Ours(event) => Ok(Some(event)),
                StripeEvent::NotOurs { id, kind } => {
                    tracing::info!(
                        processor = processor.as_str(),
                        event_id = id,
                        kind,
                        "processor event about nothing of ours; acknowledged"
                    );
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::clock::Clock;
    use shared::domain::{CaptureMethod, Payment, PaymentStatus, Settlement};
    use shared::processor::sandbox::{authentication_failed, reference_for};
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn acting(t: &TestApp, m: &TestMerchant, capture: CaptureMethod) -> Payment {
        let p = t
            .payment(m, 1000, capture, "pm_card_authentication_required")
            .await;
        assert_eq!(p.status, PaymentStatus::RequiresAction);
        p
    }

    fn event_for(m: &TestMerchant, p: &Payment, settlement: &Settlement, t: &TestApp) -> Vec<u8> {
        let created = t.clock.now().unix_timestamp();
        let event = SandboxEvent::settled(&reference_for(&p.id), &m.id, &p.id, settlement, created);
        serde_json::to_vec(&event).unwrap()
    }

    async fn send(t: &TestApp, body: &[u8], signature: Option<String>) -> (u16, Value) {
        let verifier = Verifier::default();
        let mut req = request("processor-events")
            .path_param("processor", "sandbox")
            .raw_body(std::str::from_utf8(body).unwrap());
        req = match signature {
            Some(signature) => req.header(SANDBOX_SIGNATURE_HEADER, &signature),
            None => req.without_header(SANDBOX_SIGNATURE_HEADER),
        };
        parts(&processor_events(&t.app, &verifier, req.build()).await)
    }

    async fn signed(t: &TestApp, body: &[u8]) -> (u16, Value) {
        let secret = t.store().secret(DeploymentSecret::Sandbox).await.unwrap();
        send(t, body, Some(signature::sign(&secret, body, t.clock.now()))).await
    }

    async fn stored(t: &TestApp, m: &TestMerchant, p: &Payment) -> Payment {
        t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn an_approval_settles_the_payment_once_however_often_it_comes() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = acting(&t, &m, CaptureMethod::Manual).await;
        let body = event_for(&m, &p, &Settlement::Approved, &t);
        for _ in 0..3 {
            assert_eq!(signed(&t, &body).await, (200, json!({"received": true})));
        }
        let after = stored(&t, &m, &p).await;
        assert_eq!(after.status, PaymentStatus::RequiresCapture);
        assert_eq!(after.amount_capturable, 1000);
        assert!(after.capture_before.is_some() && after.next_action.is_none());
        assert!(after.invariants_hold());
        assert_eq!(
            t.event_types(&m, &p.id).await,
            ["payment.requires_action", "payment.requires_capture"]
        );
    }

    #[tokio::test]
    async fn the_first_outcome_wins_and_a_late_contrary_one_is_ignored() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let declined = Settlement::Declined(authentication_failed());
        for (first, second, status) in [
            (
                Settlement::Approved,
                declined.clone(),
                PaymentStatus::Succeeded,
            ),
            (
                declined.clone(),
                Settlement::Approved,
                PaymentStatus::Failed,
            ),
        ] {
            let p = acting(&t, &m, CaptureMethod::Automatic).await;
            assert_eq!(signed(&t, &event_for(&m, &p, &first, &t)).await.0, 200);
            assert_eq!(signed(&t, &event_for(&m, &p, &second, &t)).await.0, 200);
            let after = stored(&t, &m, &p).await;
            assert_eq!(after.status, status);
            assert_eq!(
                t.event_types(&m, &p.id).await.len(),
                2,
                "one settlement only"
            );
        }
    }

    #[tokio::test]
    async fn a_bad_signature_is_refused_and_changes_nothing() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = acting(&t, &m, CaptureMethod::Automatic).await;
        let body = event_for(&m, &p, &Settlement::Approved, &t);
        let secret = t.store().secret(DeploymentSecret::Sandbox).await.unwrap();
        let now = t.clock.now();
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("approved", "declined");
        for (body, header) in [
            (body.clone(), None),
            (
                body.clone(),
                Some(signature::sign(b"not the secret", &body, now)),
            ),
            (
                body.clone(),
                Some(signature::sign(
                    &secret,
                    &body,
                    now - time::Duration::minutes(6),
                )),
            ),
            (
                tampered.into_bytes(),
                Some(signature::sign(&secret, &body, now)),
            ),
        ] {
            let (status, problem) = send(&t, &body, header).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (400, Some("invalid_signature"))
            );
        }
        assert_eq!(stored(&t, &m, &p).await, p);
        assert_eq!(t.event_types(&m, &p.id).await, ["payment.requires_action"]);
    }

    #[tokio::test]
    async fn an_event_changes_only_the_payment_held_under_its_reference() {
        let t = TestApp::new().await;
        let a = t.merchant("a").await;
        let b = t.merchant("b").await;
        let theirs = acting(&t, &a, CaptureMethod::Automatic).await;
        let mine = acting(&t, &b, CaptureMethod::Automatic).await;
        // B's payment named with A's reference, A's payment named as B's, and a payment
        // that does not exist: acknowledged, nothing changed.
        let created = t.clock.now().unix_timestamp();
        let approved = Settlement::Approved;
        for event in [
            SandboxEvent::settled(
                &reference_for(&theirs.id),
                &b.id,
                &mine.id,
                &approved,
                created,
            ),
            SandboxEvent::settled(
                &reference_for(&theirs.id),
                &b.id,
                &theirs.id,
                &approved,
                created,
            ),
            SandboxEvent::settled(
                "sbx_unknown",
                &a.id,
                &shared::domain::PaymentId::generate(t.clock.now()),
                &approved,
                created,
            ),
        ] {
            let body = serde_json::to_vec(&event).unwrap();
            assert_eq!(signed(&t, &body).await.0, 200);
        }
        assert_eq!(stored(&t, &a, &theirs).await, theirs);
        assert_eq!(stored(&t, &b, &mine).await, mine);
    }

    #[tokio::test]
    async fn a_processor_this_deployment_does_not_use_is_not_found() {
        let t = TestApp::new().await;
        let verifier = Verifier::default();
        for processor in ["stripe", "paypal", ""] {
            let req = request("processor-events")
                .path_param("processor", processor)
                .build();
            let (status, problem) = parts(&processor_events(&t.app, &verifier, req).await);
            assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        }
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_an_event_is_a_validation_error() {
        let t = TestApp::new().await;
        let (status, problem) = signed(&t, br#"{"id":"sbxevt_1"}"#).await;
        assert_eq!(
            (status, problem["code"].as_str(), problem["param"].as_str()),
            (400, Some("validation_error"), Some("body"))
        );
    }
}
