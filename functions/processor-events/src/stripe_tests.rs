//! `POST /processor_events/stripe` with the events localstripe really sends (captured by a
//! receiver registered as its webhook endpoint, then handed to the route), signed with the
//! test webhook secret: verified, applied once in any order, and refused when the signature is
//! wrong or too old.

use crate::{processor_events, Verifier};
use serde_json::{json, Value};
use shared::clock::Clock;
use shared::domain::{CaptureMethod, Payment, PaymentStatus};
use shared::processor::signature;
use shared::processor::stripe::events::STRIPE_SIGNATURE_HEADER;
use shared::testing::localstripe::{test_keys, Localstripe, TEST_WEBHOOK_SECRET};
use shared::testing::{parts, request, TestApp, TestMerchant};
use std::sync::Arc;
use time::Duration;

async fn on_stripe(local: &Localstripe) -> (TestApp, TestMerchant) {
    let mut t = TestApp::new().await;
    t.app.processor = Arc::new(local.processor());
    let m = t.merchant("acme").await;
    (t, m)
}

async fn send(t: &TestApp, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let verifier = Verifier::stripe(test_keys());
    let mut req = request("processor-events")
        .path_param("processor", "stripe")
        .raw_body(std::str::from_utf8(body).unwrap());
    req = match signature {
        Some(signature) => req.header(STRIPE_SIGNATURE_HEADER, signature),
        None => req.without_header(STRIPE_SIGNATURE_HEADER),
    };
    parts(&processor_events(&t.app, &verifier, req.build()).await)
}

/// A payment waiting for 3-D Secure (localstripe's test card), and the customer's
/// authentication of it at localstripe.
async fn authenticated(local: &Localstripe, t: &TestApp, m: &TestMerchant) -> Payment {
    let method = local.three_d_secure_method().await;
    let p = t.payment(m, 1200, CaptureMethod::Automatic, &method).await;
    assert_eq!(p.status, PaymentStatus::RequiresAction);
    let reference = p.processor.reference.clone().unwrap();
    let intent = local.get(&format!("/v1/payment_intents/{reference}")).await;
    let secret = intent["client_secret"].as_str().unwrap();
    local
        .post(
            &format!("/v1/payment_intents/{reference}/_authenticate"),
            &format!("client_secret={secret}&success=true"),
        )
        .await;
    p
}

async fn stored(t: &TestApp, m: &TestMerchant, p: &Payment) -> Payment {
    t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn stripes_event_settles_the_payment_once_however_often_it_comes() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let (t, m) = on_stripe(&local).await;
    let p = authenticated(&local, &t, &m).await;
    let (signature, body) = inbox.next().await;
    for _ in 0..3 {
        assert_eq!(
            send(&t, &body, signature.as_deref()).await,
            (200, json!({"received": true}))
        );
    }
    let after = stored(&t, &m, &p).await;
    assert_eq!(
        (after.status, after.amount_captured),
        (PaymentStatus::Succeeded, 1200)
    );
    assert_eq!(
        t.event_types(&m, &p.id).await,
        ["payment.requires_action", "payment.succeeded"]
    );
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_400_and_changes_nothing() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let (t, m) = on_stripe(&local).await;
    let p = authenticated(&local, &t, &m).await;
    let (signature, body) = inbox.next().await;
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let forged = signature::sign(b"whsec_someone_else", &body, t.clock.now());
    for (what, body, signature) in [
        ("tampered body", &tampered, signature.clone()),
        ("another secret", &body, Some(forged)),
        ("no signature", &body, None),
    ] {
        let (status, problem) = send(&t, body, signature.as_deref()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_signature")),
            "{what}"
        );
    }
    assert_eq!(
        stored(&t, &m, &p).await.status,
        PaymentStatus::RequiresAction
    );
}

#[tokio::test]
async fn a_signature_older_than_the_tolerance_is_400() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let (t, m) = on_stripe(&local).await;
    let p = authenticated(&local, &t, &m).await;
    let (signature, body) = inbox.next().await;
    // The same signed event, replayed past Stripe's five-minute tolerance.
    t.clock
        .advance(signature::TOLERANCE + Duration::seconds(10));
    let (status, problem) = send(&t, &body, signature.as_deref()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    assert_eq!(
        stored(&t, &m, &p).await.status,
        PaymentStatus::RequiresAction
    );
}

#[tokio::test]
async fn an_older_event_after_a_newer_one_changes_nothing() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let (t, m) = on_stripe(&local).await;
    let p = authenticated(&local, &t, &m).await;
    let (signature, succeeded) = inbox.next().await;
    assert_eq!(send(&t, &succeeded, signature.as_deref()).await.0, 200);
    // What Stripe sent before the customer authenticated, delivered late: localstripe does not
    // send `requires_action` events, so it is written here in Stripe's shape and signed with
    // the endpoint's secret, as Stripe would.
    let mut older: Value = serde_json::from_slice(&succeeded).unwrap();
    older["id"] = json!("evt_requires_action_late");
    older["type"] = json!("payment_intent.requires_action");
    older["data"]["object"]["status"] = json!("requires_action");
    let older = serde_json::to_vec(&older).unwrap();
    let signed = signature::sign(TEST_WEBHOOK_SECRET.as_bytes(), &older, t.clock.now());
    assert_eq!(
        send(&t, &older, Some(&signed)).await,
        (200, json!({"received": true}))
    );
    assert_eq!(stored(&t, &m, &p).await.status, PaymentStatus::Succeeded);
    assert_eq!(t.event_types(&m, &p.id).await.len(), 2);
}

#[tokio::test]
async fn an_event_about_an_intent_that_is_not_ours_is_acknowledged() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let (t, _) = on_stripe(&local).await;
    // Another integration on the same Stripe account: no metadata of ours.
    let intent = local
        .post(
            "/v1/payment_intents",
            "amount=500&currency=eur&payment_method=pm_card_visa&payment_method_types[0]=card",
        )
        .await;
    let id = intent["id"].as_str().unwrap();
    local
        .post(&format!("/v1/payment_intents/{id}/confirm"), "")
        .await;
    let (signature, body) = inbox.next().await;
    assert_eq!(
        send(&t, &body, signature.as_deref()).await,
        (200, json!({"received": true}))
    );
}

#[tokio::test]
async fn a_stripe_deployment_has_no_sandbox_route() {
    let local = Localstripe::start();
    let (t, _) = on_stripe(&local).await;
    let req = request("processor-events")
        .path_param("processor", "sandbox")
        .raw_body("{}")
        .build();
    let verifier = Verifier::stripe(test_keys());
    let (status, _) = parts(&processor_events(&t.app, &verifier, req).await);
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_refund_event_settles_the_refund_a_lost_answer_left_pending_once() {
    use shared::testing::{Fault, FaultProxy, Rule};
    let local = Localstripe::start();
    let proxy = FaultProxy::start(local.addr).await;
    let mut t = TestApp::new().await;
    t.app.processor = Arc::new(shared::processor::stripe::StripeProcessor::new(
        proxy.endpoint(),
        test_keys(),
    ));
    let m = t.merchant("acme").await;
    let p = t
        .payment(&m, 3000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    assert_eq!(p.status, PaymentStatus::Succeeded);
    proxy.inject(Rule::on("POST /v1/refunds", Fault::DropResponse).times(1));
    let req = request("create-refund")
        .bearer(&m.key)
        .path_id(p.id.as_str())
        .json(&json!({"amount": 1200}))
        .build();
    let (status, refund) = parts(&create_refund::create_refund(&t.app, req).await);
    assert_eq!((status, refund["status"].as_str()), (201, Some("pending")));

    // What Stripe sends once the refund is decided: the Refund object localstripe holds, in a
    // `charge.refund.updated` event (localstripe itself sends only PaymentIntent events).
    let reference = p.processor.reference.clone().unwrap();
    let listed = local
        .get(&format!("/v1/refunds?payment_intent={reference}"))
        .await;
    let mut object = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["refund_id"] == refund["id"])
        .expect("the refund reached localstripe")
        .clone();
    // Stripe's Refund names its PaymentIntent; localstripe's names only the charge.
    object["payment_intent"] = json!(reference);
    let event = serde_json::to_vec(&json!({"id": "evt_refund_updated", "object": "event",
        "type": "charge.refund.updated", "created": t.clock.now().unix_timestamp(),
        "data": {"object": object}}))
    .unwrap();
    let signed = signature::sign(TEST_WEBHOOK_SECRET.as_bytes(), &event, t.clock.now());
    for _ in 0..2 {
        assert_eq!(
            send(&t, &event, Some(&signed)).await,
            (200, json!({"received": true}))
        );
    }
    let after = stored(&t, &m, &p).await;
    assert!(after.pending_refunds.is_empty(), "{after:?}");
    assert_eq!(after.amount_refunded, 1200);
    assert!(after.invariants_hold());
    let refunds = t
        .store()
        .list_refunds(&m.id, &p.id, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].status, shared::domain::RefundStatus::Succeeded);
    assert_eq!(
        t.event_types(&m, &p.id)
            .await
            .iter()
            .filter(|e| *e == "payment.refund_updated")
            .count(),
        1,
        "settled once"
    );
}

#[tokio::test]
async fn an_intent_canceled_at_stripe_fails_a_payment_still_waiting_and_not_an_approved_one() {
    let local = Localstripe::start();
    let (t, m) = on_stripe(&local).await;
    let method = local.three_d_secure_method().await;
    let waiting = t.payment(&m, 800, CaptureMethod::Automatic, &method).await;
    let held = t
        .payment(&m, 900, CaptureMethod::Manual, "pm_card_visa")
        .await;
    assert_eq!(
        (waiting.status, held.status),
        (
            PaymentStatus::RequiresAction,
            PaymentStatus::RequiresCapture
        )
    );
    for (n, p) in [&waiting, &held].into_iter().enumerate() {
        // Canceled at Stripe (its dashboard, say): the event carries the canceled intent.
        let reference = p.processor.reference.clone().unwrap();
        let intent = local
            .post(&format!("/v1/payment_intents/{reference}/cancel"), "")
            .await;
        assert_eq!(intent["status"], "canceled");
        let event = serde_json::to_vec(&json!({"id": format!("evt_canceled_{n}"),
            "object": "event", "type": "payment_intent.canceled",
            "created": t.clock.now().unix_timestamp(), "data": {"object": intent}}))
        .unwrap();
        let signed = signature::sign(TEST_WEBHOOK_SECRET.as_bytes(), &event, t.clock.now());
        assert_eq!(
            send(&t, &event, Some(&signed)).await,
            (200, json!({"received": true}))
        );
    }
    let failed = stored(&t, &m, &waiting).await;
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(failed.failure.map(|f| f.code).as_deref(), Some("canceled"));
    assert_eq!(
        stored(&t, &m, &held).await.status,
        PaymentStatus::RequiresCapture,
        "only we cancel an approved authorization"
    );
}
