//! Contention as DynamoDB really has it: requests racing on one payment through the real
//! handlers, in parallel against DynamoDB Local, which (unlike moto) runs transactions
//! concurrently and cancels the loser of a collision with `TransactionConflict`. Asserted are the
//! invariants, never timings: every answer is a documented one (never a 5xx), the money adds up,
//! and the audit trail is exactly the changes that were answered as applied.

use serde_json::{json, Value};
use shared::domain::{CaptureMethod, Payment, PaymentId, PaymentStatus};
use shared::testing::{parts, request, TestApp, TestMerchant};
use std::sync::Arc;

async fn trail(t: &TestApp, m: &TestMerchant, id: &PaymentId) -> Vec<String> {
    t.store()
        .list_events(&m.id, id, 100, None)
        .await
        .expect("list events")
        .items
        .iter()
        .map(|e| e.resource()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn refund(
    t: Arc<TestApp>,
    key: String,
    id: String,
    body: Value,
    idem: Option<String>,
) -> (u16, Value) {
    let mut req = request("create-refund")
        .bearer(&key)
        .path_id(&id)
        .json(&body);
    if let Some(idem) = idem {
        req = req.header("idempotency-key", &idem);
    }
    parts(&create_refund::create_refund(&t.app, req.build()).await)
}

/// Twenty partial refunds at once, which together refund exactly the payment: every one of them
/// applies (each lost race is decided again from the fresh state). Each carries its own
/// Idempotency-Key, as a client's would: on a machine loaded enough that a request runs out of
/// its time budget, the answer is the documented 503 (`service_unavailable`, outcome unknown),
/// and the client's retry with the same key (after the key's lock, if it is still held)
/// completes it exactly once. Any other 5xx fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_partial_refunds_all_apply() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let p = t
        .payment(&m, 2000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
            tokio::spawn(async move {
                let idem = format!("partial-refund-{i}");
                for _ in 0..10 {
                    let (status, body) = refund(
                        t.clone(),
                        key.clone(),
                        id.clone(),
                        json!({"amount": 100}),
                        Some(idem.clone()),
                    )
                    .await;
                    match (status, body["code"].as_str()) {
                        (503, Some("service_unavailable")) => {}
                        // The unknown outcome keeps the key locked until the function timeout
                        // after it (nothing that may have committed is released): the client
                        // retries after that; here the test's clock moves past it.
                        (409, Some("idempotency_in_progress")) => {
                            t.clock.advance(time::Duration::seconds(11))
                        }
                        _ => return (status, body),
                    }
                }
                (503, Value::Null)
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let after = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
    assert_eq!(after.amount_refunded, 2000);
    let refunds = t
        .store()
        .list_refunds(&m.id, &p.id, 100, None)
        .await
        .unwrap()
        .items;
    assert_eq!(refunds.len(), 20);
    assert!(refunds
        .iter()
        .all(|r| r.status == shared::domain::RefundStatus::Succeeded));
    // Each refund's reservation and its settlement, interleaved as the races fell: twenty of
    // each, and each settlement after its own reservation.
    let events = t
        .store()
        .list_events(&m.id, &p.id, 100, None)
        .await
        .unwrap()
        .items;
    assert_eq!(events[0].event_type.as_str(), "payment.succeeded");
    let mut reserved = std::collections::BTreeSet::new();
    let mut settled = 0;
    for event in &events[1..] {
        let id = event.data["refund"]["id"].as_str().unwrap().to_owned();
        match event.event_type.as_str() {
            "payment.refunded" => assert!(reserved.insert(id), "reserved twice"),
            "payment.refund_updated" => {
                assert!(reserved.contains(&id), "settled before its reservation");
                settled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((reserved.len(), settled), (20, 20));
}

/// The same keyed refund sent ten times at once (a client retrying impatiently): it applies
/// once; every other answer is the replay of it or 409 `idempotency_in_progress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_retries_of_one_keyed_refund_apply_once() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let p = t
        .payment(&m, 2000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(refund(
                t.clone(),
                m.key.clone(),
                p.id.to_string(),
                json!({"amount": 300}),
                Some("refund-once".into()),
            ))
        })
        .collect();
    let mut refund_ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => {
                refund_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["code"], "idempotency_in_progress", "{body}"),
            other => panic!("undocumented {other}: {body}"),
        }
    }
    assert!(refund_ids.len() <= 1, "{refund_ids:?}");
    // Whatever the racers saw, the key now answers with the one refund.
    let (status, body) = refund(
        t.clone(),
        m.key.clone(),
        p.id.to_string(),
        json!({"amount": 300}),
        Some("refund-once".into()),
    )
    .await;
    assert_eq!(status, 201);
    if let Some(id) = refund_ids.iter().next() {
        assert_eq!(body["id"], id.as_str());
    }
    let after = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
    assert_eq!(after.amount_refunded, 300);
    assert_eq!(
        trail(&t, &m, &p.id).await,
        [
            "payment.succeeded",
            "payment.refunded",
            "payment.refund_updated"
        ]
    );
}

/// Capture, cancel and a refund of one authorized payment, all at once, twenty times: capture
/// and cancel have exactly one winner; the refund applies only if the capture won and came
/// first; every loser gets the contract's 409; the trail is the winners, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_cancel_and_refund_race_without_a_5xx() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let (mut captures, mut cancels, mut refunds) = (0, 0, 0);
    for _ in 0..20 {
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let id = p.id.to_string();
        let capture = {
            let (t, key, id) = (t.clone(), m.key.clone(), id.clone());
            tokio::spawn(async move {
                let req = request("capture-payment")
                    .bearer(&key)
                    .path_id(&id)
                    .json(&json!({}))
                    .build();
                parts(&capture_payment::capture_payment(&t.app, req).await)
            })
        };
        let cancel = {
            let (t, key, id) = (t.clone(), m.key.clone(), id.clone());
            tokio::spawn(async move {
                let req = request("cancel-payment")
                    .bearer(&key)
                    .path_id(&id)
                    .json(&json!({}))
                    .build();
                parts(&cancel_payment::cancel_payment(&t.app, req).await)
            })
        };
        let refunded = tokio::spawn(refund(
            t.clone(),
            m.key.clone(),
            id.clone(),
            json!({"amount": 250}),
            None,
        ));
        let (captured, canceled, refunded) = (
            capture.await.unwrap(),
            cancel.await.unwrap(),
            refunded.await.unwrap(),
        );
        for (status, body) in [&captured, &canceled, &refunded] {
            assert!(
                matches!(status, 200 | 201) || (*status == 409 && body["code"] == "invalid_state"),
                "undocumented {status}: {body}"
            );
        }
        let stored: Payment = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert!(stored.invariants_hold(), "{stored:?}");
        let mut expected = vec!["payment.requires_capture".to_owned()];
        match (captured.0, canceled.0) {
            (200, 409) => {
                captures += 1;
                expected.push("payment.succeeded".into());
                assert_eq!(stored.status, PaymentStatus::Succeeded);
            }
            (409, 200) => {
                cancels += 1;
                expected.push("payment.canceled".into());
                assert_eq!(stored.status, PaymentStatus::Canceled);
            }
            other => panic!("expected exactly one of capture and cancel, got {other:?}"),
        }
        if refunded.0 == 201 {
            refunds += 1;
            assert_eq!(stored.status, PaymentStatus::Succeeded);
            expected.push("payment.refunded".into());
            expected.push("payment.refund_updated".into());
        }
        assert_eq!(
            stored.amount_refunded,
            if refunded.0 == 201 { 250 } else { 0 }
        );
        assert_eq!(trail(&t, &m, &p.id).await, expected);
    }
    assert_eq!(captures + cancels, 20);
    assert!(refunds <= captures);
}
