//! Cancels a `requires_capture` payment at the processor, releasing its authorization, then
//! records it (or a `requires_action` one whose customer has not authenticated). Every other
//! status is final for a cancel: 409 `invalid_state`.

use lambda_http::{Body, Request, Response};
use shared::domain::{CancellationReason, MerchantId, Payment, PaymentId};
use shared::http::request::{json, path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::lifecycle::{change_payment, Applied};
use shared::{processor_calls, App};
use std::sync::Arc;

const FIELDS: &[&str] = &["cancellation_reason"];

pub async fn cancel_payment(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| cancel(app, &req, merchant, commit))
        .await
}

async fn cancel(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, PaymentId::parse)?;
    let body = JsonBody::parse(req, false, FIELDS)?;
    let reason = body.optional("cancellation_reason", |v| {
        CancellationReason::parse(json::string(v)?)
    })?;
    // The processor cancels first; only what it confirmed is written (a lost answer: 503, and
    // the payment is unchanged for the client: see `shared::processor_calls`).
    processor_calls::cancel(app, &merchant, &id, reason).await?;
    let decide = |payment: &Payment, now| Ok((payment.confirm_cancel(reason, now)?, None));
    let render = |applied: &Applied| ApiResponse::ok(applied.payment.resource());
    let (_, response) = change_payment(app, &merchant, &id, &commit, decide, render).await?;
    tracing::info!(payment_id = %id, "payment canceled");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn post(t: &TestApp, m: &TestMerchant, id: &str, body: Value) -> (u16, Value) {
        let req = request("cancel-payment")
            .bearer(&m.key)
            .path_id(id)
            .json(&body)
            .build();
        parts(&cancel_payment(&t.app, req).await)
    }

    #[tokio::test]
    async fn cancels_an_authorized_payment_once() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let (status, body) = post(
            &t,
            &m,
            p.id.as_str(),
            json!({"cancellation_reason": "requested_by_customer"}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "canceled");
        assert_eq!(body["amount_capturable"], 0);
        assert_eq!(body["cancellation_reason"], "requested_by_customer");
        let events = t
            .store()
            .list_events(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(
            events.last().unwrap().resource()["type"],
            "payment.canceled"
        );
        assert_eq!(events.last().unwrap().data, body);
        let (status, problem) = post(&t, &m, p.id.as_str(), json!({})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_state"))
        );
    }

    #[tokio::test]
    async fn refused_cancels_get_the_documented_problem() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let succeeded = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let failed = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_expired")
            .await;
        let manual = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let cases = [
            (
                &m,
                succeeded.id.as_str(),
                json!({}),
                409,
                "invalid_state",
                None,
            ),
            (
                &m,
                failed.id.as_str(),
                json!({}),
                409,
                "invalid_state",
                None,
            ),
            (
                &m,
                manual.id.as_str(),
                json!({"cancellation_reason": "bored"}),
                400,
                "validation_error",
                Some("cancellation_reason"),
            ),
            (
                &m,
                manual.id.as_str(),
                json!({"cancellation_reason": "expired"}),
                400,
                "validation_error",
                Some("cancellation_reason"),
            ),
            (
                &m,
                manual.id.as_str(),
                json!({"reason": "duplicate"}),
                400,
                "unknown_field",
                Some("reason"),
            ),
            (
                &other,
                manual.id.as_str(),
                json!({}),
                404,
                "not_found",
                None,
            ),
        ];
        for (merchant, id, body, expected, code, param) in cases {
            let (status, problem) = post(&t, merchant, id, body.clone()).await;
            assert_eq!(
                (status, problem["code"].as_str(), problem["param"].as_str()),
                (expected, Some(code), param),
                "{body}"
            );
        }
        let still = t
            .store()
            .get_payment(&m.id, &manual.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(still.status, shared::domain::PaymentStatus::RequiresCapture);

        // From capture_before on, a cancel is refused too (only the expiry ends it now).
        t.clock.advance(t.app.authorization_validity);
        let (status, problem) = post(&t, &m, manual.id.as_str(), json!({})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_state"))
        );
    }

    /// The processor canceled but its answer was lost: 503 with nothing changed for the
    /// client; the retry asks with the same reference and the cancel is recorded once.
    #[tokio::test]
    async fn a_cancel_whose_answer_is_lost_is_503_with_nothing_changed_and_a_retry_cancels_once() {
        use shared::testing::{Call, ProcessorFault};
        let mut t = TestApp::new().await;
        let faults = t.with_processor_faults();
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        faults.inject(Call::Cancel, ProcessorFault::AfterActing, 1);
        let body = json!({"cancellation_reason": "duplicate"});
        let (status, _) = post(&t, &m, p.id.as_str(), body.clone()).await;
        assert_eq!(status, 503);
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            stored.resource(),
            p.resource(),
            "nothing changed for the client"
        );
        assert_eq!(
            t.event_types(&m, &p.id).await,
            vec!["payment.requires_capture"]
        );

        let (status, answer) = post(&t, &m, p.id.as_str(), body).await;
        assert_eq!(
            (
                status,
                answer["status"].as_str(),
                answer["cancellation_reason"].as_str()
            ),
            (200, Some("canceled"), Some("duplicate"))
        );
        let reference = p.processor.reference.clone().unwrap();
        assert_eq!(
            faults.keys(Call::Cancel),
            vec![reference.clone(), reference]
        );
        assert_eq!(
            t.event_types(&m, &p.id).await,
            vec!["payment.requires_capture", "payment.canceled"]
        );
    }

    /// A capture that won at the processor makes a cancel our side still allowed 409.
    #[tokio::test]
    async fn a_cancel_after_the_processor_captured_is_refused() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let reference = p.processor.reference.clone().unwrap();
        let amount = shared::domain::Amount::parse(1000).unwrap();
        t.app.processor.capture(&reference, amount).await.unwrap();
        let (status, body) = post(&t, &m, p.id.as_str(), json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("invalid_state"))
        );
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(stored, p, "nothing written");
    }
}
