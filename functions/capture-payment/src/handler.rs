//! Captures all or part of a `requires_capture` payment at the processor, then records it. One
//! capture per payment: the rest of the authorization is released (`amount_capturable` becomes
//! 0).

use lambda_http::{Body, Request, Response};
use shared::domain::{Amount, MerchantId, Payment, PaymentId};
use shared::http::request::{json, path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::lifecycle::{change_payment, Applied};
use shared::{processor_calls, App};
use std::sync::Arc;

const FIELDS: &[&str] = &["amount"];

pub async fn capture_payment(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| {
        capture(app, &req, merchant, commit)
    })
    .await
}

async fn capture(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, PaymentId::parse)?;
    let body = JsonBody::parse(req, false, FIELDS)?;
    let amount = body.optional("amount", |v| Amount::parse(json::integer(v)?))?;
    // The processor captures first; only what it confirmed is written (a lost answer: 503, and
    // the payment is unchanged for the client: see `shared::processor_calls`).
    let amount = processor_calls::capture(app, &merchant, &id, amount).await?;
    let decide = |payment: &Payment, now| Ok((payment.confirm_capture(amount, now)?, None));
    let render = |applied: &Applied| ApiResponse::ok(applied.payment.resource());
    let (applied, response) = change_payment(app, &merchant, &id, &commit, decide, render).await?;
    tracing::info!(payment_id = %id, amount_captured = applied.payment.amount_captured, "payment captured");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use std::sync::Arc;

    async fn post(t: &TestApp, m: &TestMerchant, id: &str, body: Option<Value>) -> (u16, Value) {
        let req = request("capture-payment").bearer(&m.key).path_id(id);
        let req = match body {
            Some(body) => req.json(&body),
            None => req.without_header("content-type").raw_body(""),
        };
        parts(&capture_payment(&t.app, req.build()).await)
    }

    #[tokio::test]
    async fn full_and_partial_capture_release_the_rest_and_write_one_event() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let full = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let (status, body) = post(&t, &m, full.id.as_str(), None).await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                body["status"].as_str(),
                body["amount_captured"].as_i64(),
                body["amount_capturable"].as_i64()
            ),
            (Some("succeeded"), Some(1000), Some(0))
        );

        let partial = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let (status, body) = post(&t, &m, partial.id.as_str(), Some(json!({"amount": 400}))).await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                body["amount_captured"].as_i64(),
                body["amount_capturable"].as_i64()
            ),
            (Some(400), Some(0))
        );
        let events = t
            .store()
            .list_events(&m.id, &partial.id, 100, None)
            .await
            .unwrap()
            .items;
        let types: Vec<Value> = events
            .iter()
            .map(|e| e.resource()["type"].clone())
            .collect();
        assert_eq!(
            types,
            vec![
                json!("payment.requires_capture"),
                json!("payment.succeeded")
            ]
        );
        assert_eq!(events[1].data, body);
    }

    #[tokio::test]
    async fn refused_captures_get_the_documented_problem() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let automatic = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let failed = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_declined")
            .await;
        let manual = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let cases = [
            (automatic.id.as_str(), None, 409, "invalid_state", None),
            (failed.id.as_str(), None, 409, "invalid_state", None),
            (
                manual.id.as_str(),
                Some(json!({"amount": 1001})),
                400,
                "amount_too_large",
                Some("amount"),
            ),
            (
                manual.id.as_str(),
                Some(json!({"amount": 0})),
                400,
                "validation_error",
                Some("amount"),
            ),
            (
                manual.id.as_str(),
                Some(json!({"amount": "5"})),
                400,
                "validation_error",
                Some("amount"),
            ),
            (
                manual.id.as_str(),
                Some(json!({"amount_to_capture": 5})),
                400,
                "unknown_field",
                Some("amount_to_capture"),
            ),
            ("pay_123", None, 404, "not_found", None),
        ];
        for (id, body, expected, code, param) in cases {
            let (status, problem) = post(&t, &m, id, body.clone()).await;
            assert_eq!(
                (status, problem["code"].as_str(), problem["param"].as_str()),
                (expected, Some(code), param),
                "{body:?}"
            );
        }
        // None of them changed the payment: it can still be captured in full.
        let (status, body) = post(&t, &m, manual.id.as_str(), None).await;
        assert_eq!(
            (status, body["amount_captured"].as_i64()),
            (200, Some(1000))
        );
        // A second capture is refused.
        assert_eq!(post(&t, &m, manual.id.as_str(), None).await.0, 409);
    }

    #[tokio::test]
    async fn a_lapsed_authorization_cannot_be_captured_though_not_yet_expired() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        t.clock.advance(t.app.authorization_validity);
        let (status, problem) = post(&t, &m, p.id.as_str(), None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_state"))
        );
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("capture_before"));
        let still = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(still, p, "nothing written: the sweeper has not reached it");
    }

    #[tokio::test]
    async fn another_merchants_payment_is_not_found() {
        let t = TestApp::new().await;
        let a = t.merchant("a").await;
        let b = t.merchant("b").await;
        let theirs = t
            .payment(&a, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let (status, problem) = post(&t, &b, theirs.id.as_str(), None).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        let after = t
            .store()
            .get_payment(&a.id, &theirs.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.status, shared::domain::PaymentStatus::RequiresCapture);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_concurrent_captures_exactly_one_wins() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let payment = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (t, key, id) = (t.clone(), m.key.clone(), payment.id.to_string());
                tokio::spawn(async move {
                    let req = request("capture-payment")
                        .bearer(&key)
                        .path_id(&id)
                        .without_header("content-type")
                        .raw_body("")
                        .build();
                    parts(&capture_payment(&t.app, req).await)
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            if status != 200 {
                assert_eq!(
                    (status, body["code"].as_str()),
                    (409, Some("invalid_state"))
                );
            }
            statuses.push(status);
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        let events = t
            .store()
            .list_events(&m.id, &payment.id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(
            events.len(),
            2,
            "one creation and exactly one capture event"
        );
    }

    /// A capture that met another transaction on its payment decides again: one lost race in
    /// its metrics, and the payment it reports is the captured one.
    #[tokio::test]
    async fn a_lost_race_is_counted_and_the_capture_still_applies() {
        use shared::metrics::{measure, Counter};
        use shared::testing::{Fault, Rule};
        let (t, proxy) = TestApp::with_faults().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 800, CaptureMethod::Manual, "pm_card_visa")
            .await;
        proxy.inject(Rule::on("TransactWriteItems", Fault::TransactionConflict).times(1));
        let ((status, body), invocation) = measure(post(&t, &m, p.id.as_str(), None)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("succeeded")));
        assert_eq!(invocation.counts.get(&Counter::LostRaces), Some(&1));
        let payment = invocation.payment.expect("the captured payment");
        assert_eq!((payment.outcome, payment.amount), ("succeeded", 800));
    }

    /// The processor captured but its answer was lost: 503, the payment unchanged for the
    /// client (no event, the same object), marked for reconciliation; the retry asks with the
    /// same reference, the sandbox recognises its own capture, and exactly one capture is
    /// recorded on each side.
    #[tokio::test]
    async fn a_capture_whose_answer_is_lost_is_503_with_nothing_changed_and_a_retry_captures_once()
    {
        use shared::testing::{Call, ProcessorFault};
        let mut t = TestApp::new().await;
        let faults = t.with_processor_faults();
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        faults.inject(Call::Capture, ProcessorFault::AfterActing, 1);

        let (status, body) = post(&t, &m, p.id.as_str(), Some(json!({"amount": 700}))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("service_unavailable"))
        );
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            stored.resource(),
            p.resource(),
            "nothing changed for the client"
        );
        assert!(stored.unconfirmed.is_some() && stored.reconcile.is_some());
        assert_eq!(
            t.event_types(&m, &p.id).await,
            vec!["payment.requires_capture"]
        );
        let reference = p.processor.reference.clone().unwrap();
        let held = t
            .store()
            .sandbox_outcome(&reference)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            held.amount.map(|a| a.minor_units()),
            Some(700),
            "the sandbox did capture"
        );

        let (status, body) = post(&t, &m, p.id.as_str(), Some(json!({"amount": 700}))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["amount_captured"].as_i64()),
            (Some("succeeded"), Some(700))
        );
        assert_eq!(
            faults.keys(Call::Capture),
            vec![reference.clone(), reference]
        );
        assert_eq!(
            t.event_types(&m, &p.id).await,
            vec!["payment.requires_capture", "payment.succeeded"]
        );
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!((stored.unconfirmed, stored.reconcile), (None, None));
        assert!(stored.invariants_hold());
    }

    /// The processor was never reached: 503, nothing captured anywhere; a retry captures.
    #[tokio::test]
    async fn a_capture_that_never_reached_the_processor_is_503_and_can_be_retried() {
        use shared::testing::{Call, ProcessorFault};
        let mut t = TestApp::new().await;
        let faults = t.with_processor_faults();
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        faults.inject(Call::Capture, ProcessorFault::BeforeActing, 1);
        let (status, _) = post(&t, &m, p.id.as_str(), None).await;
        assert_eq!(status, 503);
        let reference = p.processor.reference.clone().unwrap();
        assert_eq!(t.store().sandbox_outcome(&reference).await.unwrap(), None);
        let (status, body) = post(&t, &m, p.id.as_str(), None).await;
        assert_eq!(
            (status, body["amount_captured"].as_i64()),
            (200, Some(1000))
        );
    }

    /// A cancel that won at the processor makes a capture that our side still allowed 409:
    /// the processor's state decides which of two racing operations happened.
    #[tokio::test]
    async fn a_capture_after_the_processor_canceled_is_refused() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let reference = p.processor.reference.clone().unwrap();
        t.app.processor.cancel(&reference).await.unwrap();
        let (status, body) = post(&t, &m, p.id.as_str(), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("invalid_state"))
        );
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(stored, p, "nothing written");
    }
}
