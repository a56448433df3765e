//! Reconciliation of authorizations in flight (`shared::store::authorizing`) through the Stripe
//! connector against localstripe: a create that stored its PaymentIntent's id and then died is
//! recorded as the payment Stripe says it is, once, and a never-confirmed intent is canceled
//! before it is recorded as failed, so no late confirm can charge.

use crate::{reconcile, LIMITS};
use shared::clock::Clock;
use shared::domain::{
    Amount, CaptureMethod, Currency, Metadata, NewPayment, PaymentId, PaymentStatus,
};
use shared::store::authorizing::STALE_AFTER;
use shared::testing::localstripe::Localstripe;
use shared::testing::{TestApp, TestMerchant};
use std::sync::Arc;
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(60);

async fn on_stripe(local: &Localstripe) -> (TestApp, TestMerchant) {
    let mut t = TestApp::new().await;
    t.app.processor = Arc::new(local.processor());
    let m = t.merchant("acme").await;
    (t, m)
}

fn new_payment(amount: i64, capture: CaptureMethod) -> NewPayment {
    NewPayment {
        amount: Amount::parse(amount).unwrap(),
        currency: Currency::parse("eur").unwrap(),
        payment_method: "pm_card_visa".into(),
        capture_method: capture,
        description: None,
        metadata: Metadata::default(),
        return_url: None,
    }
}

#[tokio::test]
async fn a_charge_whose_create_died_is_recorded_once_when_its_record_is_stale() {
    let local = Localstripe::start();
    let (t, m) = on_stripe(&local).await;
    let auto = PaymentId::generate(t.clock.now());
    let manual = PaymentId::generate(t.clock.now());
    let charged = t
        .authorization_in_flight(&m, &auto, new_payment(2500, CaptureMethod::Automatic), true)
        .await;
    let held = t
        .authorization_in_flight(&m, &manual, new_payment(900, CaptureMethod::Manual), true)
        .await;

    // Its own request (or a keyed retry) may still come: nothing is done yet.
    let early = reconcile(&t.app, LIMITS, BUDGET).await;
    assert_eq!(early.due, 0, "{early:?}");

    t.clock.advance(STALE_AFTER);
    let run = reconcile(&t.app, LIMITS, BUDGET).await;
    assert_eq!((run.due, run.settled, run.failed), (2, 2, 0), "{run:?}");
    let paid = t.store().get_payment(&m.id, &auto).await.unwrap().unwrap();
    assert_eq!(
        (paid.status, paid.amount_captured),
        (PaymentStatus::Succeeded, 2500)
    );
    assert_eq!(
        paid.processor.reference.as_deref(),
        Some(charged.reference.as_str())
    );
    assert_eq!(
        paid.created_at, charged.created_at,
        "made when it was asked"
    );
    assert!(paid.invariants_hold());
    let authorized = t
        .store()
        .get_payment(&m.id, &manual)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(authorized.status, PaymentStatus::RequiresCapture);
    assert!(authorized.capture_before.is_some());
    assert_eq!(
        authorized.processor.reference.as_deref(),
        Some(held.reference.as_str())
    );
    assert_eq!(t.event_types(&m, &auto).await, ["payment.succeeded"]);
    for id in [&auto, &manual] {
        let started = t.store().started(&m.id, id).await.unwrap();
        assert_eq!(started.authorizing, None, "resolved with the payment");
    }

    // Resolved: later runs find nothing, and nothing is recorded twice.
    t.clock.advance(time::Duration::hours(1));
    let again = reconcile(&t.app, LIMITS, BUDGET).await;
    assert_eq!(again.due, 0, "{again:?}");
    assert_eq!(t.event_types(&m, &auto).await.len(), 1);
}

#[tokio::test]
async fn an_intent_whose_confirm_never_came_is_canceled_and_recorded_failed() {
    let local = Localstripe::start();
    let (t, m) = on_stripe(&local).await;
    let id = PaymentId::generate(t.clock.now());
    let record = t
        .authorization_in_flight(&m, &id, new_payment(700, CaptureMethod::Automatic), false)
        .await;
    t.clock.advance(STALE_AFTER);
    let run = reconcile(&t.app, LIMITS, BUDGET).await;
    assert_eq!((run.due, run.settled), (1, 1), "{run:?}");
    let payment = t.store().get_payment(&m.id, &id).await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(payment.amount_captured, 0);
    let intent = local
        .get(&format!("/v1/payment_intents/{}", record.reference))
        .await;
    assert_eq!(
        intent["status"], "canceled",
        "no late confirm can charge it"
    );
}
