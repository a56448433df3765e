//! A lost answer on each call that moves money through Stripe, made through the real handler
//! with the fault proxy between the connector and localstripe, then settled by reconciliation:
//! localstripe holds exactly one charge, capture or refund for it, and our payment agrees.

use crate::{reconcile, LIMITS};
use serde_json::{json, Value};
use shared::domain::{PaymentId, PaymentStatus};
use shared::processor::stripe::StripeProcessor;
use shared::testing::localstripe::{test_keys, Localstripe};
use shared::testing::{parts, request, Fault, FaultProxy, Rule, TestApp, TestMerchant};
use std::sync::Arc;
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(60);

async fn through_faults(local: &Localstripe) -> (TestApp, TestMerchant, FaultProxy) {
    let proxy = FaultProxy::start(local.addr).await;
    let mut t = TestApp::new().await;
    t.app.processor = Arc::new(StripeProcessor::new(proxy.endpoint(), test_keys()));
    let m = t.merchant("acme").await;
    (t, m, proxy)
}

async fn create(t: &TestApp, m: &TestMerchant, body: Value) -> (u16, Value) {
    let req = request("create-payment").bearer(&m.key).json(&body).build();
    parts(&create_payment::create_payment(&t.app, req).await)
}

async fn reconciled(t: &TestApp) {
    t.clock.advance(t.app.reconcile_after);
    let run = reconcile(&t.app, LIMITS, BUDGET).await;
    assert_eq!(run.failed, 0, "{run:?}");
}

async fn payment(t: &TestApp, m: &TestMerchant, id: &str) -> shared::domain::Payment {
    let id = PaymentId::parse(id).unwrap();
    t.store().get_payment(&m.id, &id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_lost_confirm_is_one_charge_found_by_reconciliation() {
    let local = Localstripe::start();
    let (t, m, proxy) = through_faults(&local).await;
    proxy.inject(Rule::on("POST /v1/payment_intents/{id}/confirm", Fault::DropResponse).times(1));
    let (status, created) = create(
        &t,
        &m,
        json!({"amount": 2500, "currency": "eur", "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(
        (status, created["status"].as_str()),
        (201, Some("processing"))
    );
    assert_eq!(proxy.faulted("POST /v1/payment_intents/{id}/confirm"), 1);
    let id = created["id"].as_str().unwrap();

    reconciled(&t).await;
    let settled = payment(&t, &m, id).await;
    assert_eq!(
        (settled.status, settled.amount_captured),
        (PaymentStatus::Succeeded, 2500)
    );
    let held = local.intents_for(id).await;
    assert_eq!(held.len(), 1, "one intent");
    assert_eq!(held[0]["status"], "succeeded", "charged once");
}

#[tokio::test]
async fn a_lost_capture_is_one_capture_and_reconciliation_records_it() {
    let local = Localstripe::start();
    let (t, m, proxy) = through_faults(&local).await;
    let (_, created) = create(
        &t,
        &m,
        json!({"amount": 3000, "currency": "eur", "payment_method": "pm_card_visa",
            "capture_method": "manual"}),
    )
    .await;
    assert_eq!(created["status"], "requires_capture");
    let id = created["id"].as_str().unwrap().to_owned();
    proxy.inject(Rule::on("POST /v1/payment_intents/{id}/capture", Fault::DropResponse).times(1));
    let req = request("capture-payment")
        .bearer(&m.key)
        .path_id(&id)
        .json(&json!({"amount": 2000}))
        .build();
    let (status, answer) = parts(&capture_payment::capture_payment(&t.app, req).await);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(proxy.faulted("POST /v1/payment_intents/{id}/capture"), 1);
    assert_eq!(
        payment(&t, &m, &id).await.status,
        PaymentStatus::RequiresCapture,
        "nothing the client sees changed"
    );

    reconciled(&t).await;
    let settled = payment(&t, &m, &id).await;
    assert_eq!(
        (settled.status, settled.amount_captured),
        (PaymentStatus::Succeeded, 2000)
    );
    assert!(settled.invariants_hold());
    let held = local.intents_for(&id).await;
    assert_eq!(
        (held.len(), held[0]["status"].as_str()),
        (1, Some("succeeded"))
    );
}

#[tokio::test]
async fn a_lost_refund_is_one_refund_at_stripe_and_settles_once() {
    let local = Localstripe::start();
    let (t, m, proxy) = through_faults(&local).await;
    let (_, created) = create(
        &t,
        &m,
        json!({"amount": 4000, "currency": "eur", "payment_method": "pm_card_visa"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = created["processor"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.inject(Rule::on("POST /v1/refunds", Fault::DropResponse).times(1));
    let req = request("create-refund")
        .bearer(&m.key)
        .path_id(&id)
        .json(&json!({"amount": 1500}))
        .build();
    let (status, refund) = parts(&create_refund::create_refund(&t.app, req).await);
    assert_eq!(proxy.faulted("POST /v1/refunds"), 1);
    // Reserved before the call, so it is recorded and counted while its outcome is unknown.
    assert_eq!(
        (status, refund["status"].as_str()),
        (201, Some("pending")),
        "{refund}"
    );
    assert_eq!(payment(&t, &m, &id).await.amount_refunded, 1500);

    reconciled(&t).await;
    let settled = payment(&t, &m, &id).await;
    assert_eq!(settled.amount_refunded, 1500, "{settled:?}");
    assert!(settled.pending_refunds.is_empty());
    assert!(settled.invariants_hold());
    let refunds = local
        .get(&format!("/v1/refunds?payment_intent={reference}&limit=100"))
        .await;
    let ours: Vec<&Value> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["metadata"]["refund_id"].is_null())
        .collect();
    assert_eq!(ours.len(), 1, "one refund at Stripe: {refunds}");
    assert_eq!(ours[0]["amount"], 1500);
}
