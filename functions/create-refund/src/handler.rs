//! Refunds part or all of what is left of a `succeeded` payment: reserved first (the `pending`
//! refund, the raised `amount_refunded` and the `payment.refunded` event in one transaction, so
//! concurrent refunds can never together exceed what was captured), then sent to the processor
//! and settled (`payment.refund_updated`), or left `pending` for reconciliation when no answer
//! comes (`shared::processor_calls`).

use lambda_http::{Body, Request, Response};
use shared::domain::{
    Amount, MerchantId, Metadata, PaymentId, RefundId, RefundReason, RefundRequest,
};
use shared::http::request::{json, path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::{processor_calls, App};
use std::sync::Arc;

const FIELDS: &[&str] = &["amount", "reason", "metadata"];

pub async fn create_refund(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| refund(app, &req, merchant, commit))
        .await
}

fn parse(req: &Request) -> Result<RefundRequest, ApiError> {
    let body = JsonBody::parse(req, false, FIELDS)?;
    Ok(RefundRequest {
        amount: body.optional("amount", |v| Amount::parse(json::integer(v)?))?,
        reason: body.optional("reason", |v| RefundReason::parse(json::string(v)?))?,
        metadata: body
            .optional("metadata", |v| Metadata::parse(json::string_map(v)?))?
            .unwrap_or_default(),
    })
}

async fn refund(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, PaymentId::parse)?;
    let request = parse(req)?;
    // The same id on every retry of a keyed request: the reservation is found again, and the
    // processor sees one refund.
    let refund_id = commit.new_id(RefundId::from_time_ordered_hex, || {
        RefundId::generate(app.clock.now())
    })?;
    let keyed = commit.resource_id().is_some();
    let refund = processor_calls::refund(app, &merchant, &id, refund_id, request, keyed).await?;
    tracing::info!(payment_id = %id, refund_id = %refund.id, amount = refund.amount.minor_units(), status = ?refund.status, "refund answered");
    // The idempotency record is completed with this answer after the operation (`App`): the
    // reservation and the settlement are two writes, and only this is the answer.
    Ok(ApiResponse::created(refund.resource()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use std::sync::Arc;

    async fn post(t: &TestApp, m: &TestMerchant, id: &str, body: Value) -> (u16, Value) {
        let req = request("create-refund")
            .bearer(&m.key)
            .path_id(id)
            .json(&body)
            .build();
        parts(&create_refund(&t.app, req).await)
    }

    #[tokio::test]
    async fn partial_then_remaining_refund() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let (status, refund) = post(
            &t,
            &m,
            p.id.as_str(),
            json!({"amount": 300, "reason": "requested_by_customer", "metadata": {"ticket": "42"}}),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(refund["object"], "refund");
        assert!(refund["id"].as_str().unwrap().starts_with("re_"));
        assert_eq!(
            (refund["amount"].as_i64(), refund["currency"].as_str()),
            (Some(300), Some("USD"))
        );
        assert_eq!(refund["payment_id"], p.id.as_str());
        assert_eq!(
            (refund["reason"].as_str(), refund["status"].as_str()),
            (Some("requested_by_customer"), Some("succeeded"))
        );
        assert_eq!(refund["metadata"], json!({"ticket": "42"}));

        let (status, rest) = post(&t, &m, p.id.as_str(), json!({})).await;
        assert_eq!(
            (status, rest["amount"].as_i64(), rest["reason"].clone()),
            (201, Some(700), Value::Null)
        );
        let after = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            (after.amount_refunded, after.status),
            (1000, shared::domain::PaymentStatus::Succeeded)
        );

        let events = t
            .store()
            .list_events(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        // Each refund: its reservation, then its settlement, which carries the answer.
        let refunded: Vec<_> = events
            .iter()
            .filter(|e| e.resource()["type"] == "payment.refunded")
            .collect();
        assert_eq!(refunded.len(), 2);
        assert_eq!(refunded[1].data["refund"]["status"], "pending");
        let settled: Vec<_> = events
            .iter()
            .filter(|e| e.resource()["type"] == "payment.refund_updated")
            .collect();
        assert_eq!(settled.len(), 2);
        assert_eq!(settled[1].data["refund"], rest);
        assert_eq!(settled[1].data["amount_refunded"], 1000);

        let (status, problem) = post(&t, &m, p.id.as_str(), json!({"amount": 1})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_state"))
        );
    }

    #[tokio::test]
    async fn refused_refunds_get_the_documented_problem() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let succeeded = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let requires_capture = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let failed = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_declined")
            .await;
        let canceled = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        t.store()
            .change_payment(
                &m.id,
                1,
                &canceled
                    .cancel(None, time::OffsetDateTime::now_utc())
                    .unwrap(),
                &shared::domain::Event::status_change(&canceled, time::OffsetDateTime::now_utc()),
                None,
                None,
            )
            .await
            .unwrap();
        let cases = [
            (
                &m,
                requires_capture.id.as_str(),
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
                canceled.id.as_str(),
                json!({}),
                409,
                "invalid_state",
                None,
            ),
            (
                &m,
                succeeded.id.as_str(),
                json!({"amount": 1001}),
                400,
                "amount_too_large",
                Some("amount"),
            ),
            (
                &m,
                succeeded.id.as_str(),
                json!({"amount": -5}),
                400,
                "validation_error",
                Some("amount"),
            ),
            (
                &m,
                succeeded.id.as_str(),
                json!({"reason": "changed_mind"}),
                400,
                "validation_error",
                Some("reason"),
            ),
            (
                &m,
                succeeded.id.as_str(),
                json!({"metadata": {"k": 1}}),
                400,
                "validation_error",
                Some("metadata"),
            ),
            (
                &m,
                succeeded.id.as_str(),
                json!({"currency": "usd"}),
                400,
                "unknown_field",
                Some("currency"),
            ),
            (
                &other,
                succeeded.id.as_str(),
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
        let untouched = t
            .store()
            .get_payment(&m.id, &succeeded.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(untouched.amount_refunded, 0);
    }

    /// Ten concurrent refunds of a fifth each: exactly five succeed, the rest are refused with a
    /// documented 4xx, and the payment, the refunds and the events agree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn ten_concurrent_fifth_refunds_exactly_five_succeed() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 5000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
                tokio::spawn(async move {
                    let req = request("create-refund")
                        .bearer(&key)
                        .path_id(&id)
                        .json(&json!({"amount": 1000}))
                        .build();
                    parts(&create_refund(&t.app, req).await)
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                201 => created += 1,
                409 => assert_eq!(body["code"], "invalid_state"),
                400 => assert_eq!(body["code"], "amount_too_large"),
                other => panic!("undocumented outcome {other}: {body}"),
            }
        }
        assert_eq!(created, 5);
        let after = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(after.amount_refunded, after.amount_captured);
        let refunds = t
            .store()
            .list_refunds(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(refunds.len(), 5);
        let events = t
            .store()
            .list_events(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        let refunded = events
            .iter()
            .filter(|e| e.resource()["type"] == "payment.refunded")
            .count();
        assert_eq!(refunded, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_refunds_with_distinct_keys_keep_the_invariants_and_replay() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 5000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let send = |t: Arc<TestApp>, key: String, id: String, api_key: String| async move {
            let req = request("create-refund")
                .bearer(&api_key)
                .header("idempotency-key", &key)
                .path_id(&id)
                .json(&json!({"amount": 1000}))
                .build();
            let response = create_refund(&t.app, req).await;
            let replayed = response.headers().contains_key("idempotent-replayed");
            (parts(&response), replayed)
        };
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                tokio::spawn(send(
                    t.clone(),
                    format!("refund-{i}"),
                    p.id.to_string(),
                    m.key.clone(),
                ))
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            let ((status, body), replayed) = task.await.unwrap();
            assert!(!replayed);
            outcomes.push((status, body));
        }
        // On a loaded machine a request can run out of its time budget: 503, outcome unknown.
        // A client retries it with its key once the key's lock has passed; the money must
        // still add up exactly (at most 5 refunds of 1000 from 5000, each key decided once).
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            for _ in 0..10 {
                if outcome.0 != 503 {
                    break;
                }
                t.clock.advance(time::Duration::seconds(11));
                let key = format!("refund-{i}");
                let ((status, body), _) =
                    send(t.clone(), key, p.id.to_string(), m.key.clone()).await;
                *outcome = (status, body);
            }
        }
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 201).count(), 5);
        for (status, body) in &outcomes {
            assert!(
                *status == 201
                    || (*status == 409 && body["code"] == "invalid_state")
                    || (*status == 400 && body["code"] == "amount_too_large"),
                "{status} {body}"
            );
        }
        let after = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(after.amount_refunded, after.amount_captured);

        // Each key replays its own decided outcome, 409s included, and writes nothing new.
        for (i, (status, body)) in outcomes.iter().enumerate() {
            let ((again_status, again_body), replayed) = send(
                t.clone(),
                format!("refund-{i}"),
                p.id.to_string(),
                m.key.clone(),
            )
            .await;
            assert!(replayed);
            assert_eq!((&again_status, &again_body["id"]), (status, &body["id"]));
        }
        assert_eq!(
            t.store()
                .list_refunds(&m.id, &p.id, 100, None)
                .await
                .unwrap()
                .items
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn a_refund_is_counted_with_its_amount_and_currency() {
        use shared::metrics::measure;
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let ((status, _), invocation) =
            measure(post(&t, &m, p.id.as_str(), json!({"amount": 250}))).await;
        assert_eq!(status, 201);
        let refund = invocation.refund.expect("the refund is recorded");
        assert_eq!((refund.amount, refund.currency.code()), (250, "USD"));
        assert_eq!(
            invocation.payment, None,
            "a refund is not counted as a payment"
        );
        // More than is left: refused, nothing counted.
        let ((status, _), invocation) =
            measure(post(&t, &m, p.id.as_str(), json!({"amount": 900}))).await;
        assert_eq!(status, 400);
        assert_eq!(invocation.refund, None);
    }

    /// The refund is reserved before the processor is called and settled by its answer: the
    /// trail shows the reservation (`pending`) and the settlement, the processor one refund.
    #[tokio::test]
    async fn a_refund_is_reserved_then_settled_and_made_once_at_the_processor() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let (status, refund) = post(&t, &m, p.id.as_str(), json!({"amount": 300})).await;
        assert_eq!(
            (status, refund["status"].as_str()),
            (201, Some("succeeded"))
        );
        let events = t
            .store()
            .list_events(&m.id, &p.id, 10, None)
            .await
            .unwrap()
            .items;
        let seen: Vec<(&str, Value)> = events
            .iter()
            .map(|e| (e.event_type.as_str(), e.data["refund"]["status"].clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("payment.succeeded", Value::Null),
                ("payment.refunded", json!("pending")),
                ("payment.refund_updated", json!("succeeded")),
            ]
        );
        let id = shared::domain::RefundId::parse(refund["id"].as_str().unwrap()).unwrap();
        let made = t.store().sandbox_refund(&id).await.unwrap().unwrap();
        assert_eq!(made.amount.minor_units(), 300);
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(stored.amount_refunded, 300);
        assert!(stored.pending_refunds.is_empty() && stored.reconcile.is_none());
    }

    /// The processor refunded but its answer was lost (or it was never reached): 201 with the
    /// refund `pending`, counted in `amount_refunded` so no later refund can exceed what is
    /// left; reconciliation sends it again under the same refund id and settles it once.
    #[tokio::test]
    async fn a_refund_without_an_answer_stays_pending_until_reconciliation_settles_it_once() {
        use shared::testing::{Call, ProcessorFault};
        for fault in [ProcessorFault::AfterActing, ProcessorFault::BeforeActing] {
            let mut t = TestApp::new().await;
            let faults = t.with_processor_faults();
            let m = t.merchant("acme").await;
            let p = t
                .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
                .await;
            faults.inject(Call::Refund, fault, 1);
            let (status, refund) = post(&t, &m, p.id.as_str(), json!({"amount": 600})).await;
            assert_eq!(
                (status, refund["status"].as_str()),
                (201, Some("pending")),
                "{fault:?}"
            );
            let (status, over) = post(&t, &m, p.id.as_str(), json!({"amount": 500})).await;
            assert_eq!(
                (status, over["code"].as_str()),
                (400, Some("amount_too_large")),
                "the pending refund is counted"
            );
            let id = shared::domain::RefundId::parse(refund["id"].as_str().unwrap()).unwrap();
            let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
            assert_eq!(stored.amount_refunded, 600);
            assert_eq!(stored.pending_refunds.len(), 1);
            assert!(stored.invariants_hold());

            // Reconciliation's own step for a pending refund: the same call again.
            let sent = shared::processor_calls::send_pending(
                t.store(),
                t.app.processor.as_ref(),
                t.clock.as_ref(),
                &m.id,
                &stored,
                &stored.pending_refunds[0],
            )
            .await
            .unwrap();
            assert_eq!(sent.status, shared::domain::RefundStatus::Succeeded);
            assert_eq!(
                faults.keys(Call::Refund),
                vec![id.to_string(), id.to_string()]
            );
            let made = t.store().sandbox_refund(&id).await.unwrap().unwrap();
            assert_eq!(made.amount.minor_units(), 600, "{fault:?}: refunded once");
            let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
            assert_eq!(stored.amount_refunded, 600);
            assert!(stored.pending_refunds.is_empty() && stored.reconcile.is_none());
            let listed = t
                .store()
                .list_refunds(&m.id, &p.id, 10, None)
                .await
                .unwrap()
                .items;
            assert_eq!(
                listed.len(),
                1,
                "the settled refund replaced its reservation"
            );
            assert_eq!(listed[0].status, shared::domain::RefundStatus::Succeeded);
            assert_eq!(
                t.event_types(&m, &p.id).await,
                vec![
                    "payment.succeeded",
                    "payment.refunded",
                    "payment.refund_updated"
                ]
            );
        }
    }
}
