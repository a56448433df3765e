//! `POST /payments` through the Stripe connector against localstripe: the PaymentIntent's id is
//! stored before its confirm (`shared::store::authorizing`), so that an attempt that died after
//! confirming is never charged again under a new intent, whatever Stripe remembers of
//! idempotency keys (localstripe remembers none).

use crate::create_payment;
use lambda_http::{Body, Response};
use serde_json::Value;
use shared::clock::Clock;
use shared::domain::{
    Amount, CaptureMethod, Currency, Event, Metadata, NewPayment, Payment, PaymentId, ProcessorRef,
};
use shared::idempotency::{self, Begin, IdempotencyKey};
use shared::processor::stripe::StripeProcessor;
use shared::testing::localstripe::Localstripe;
use shared::testing::{parts, request, TestApp, TestMerchant};
use std::sync::Arc;
use time::Duration;

const BODY: &str = r#"{"amount":2500,"currency":"eur","payment_method":"pm_card_visa"}"#;

async fn on_stripe(local: &Localstripe) -> (TestApp, TestMerchant, Arc<StripeProcessor>) {
    let mut t = TestApp::new().await;
    let stripe = Arc::new(local.processor());
    t.app.processor = stripe.clone();
    let m = t.merchant("acme").await;
    (t, m, stripe)
}

fn keyed(m: &TestMerchant, key: &str) -> lambda_http::Request {
    request("create-payment")
        .bearer(&m.key)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .raw_body(BODY)
        .build()
}

/// `BODY`, validated.
fn visa() -> NewPayment {
    NewPayment {
        amount: Amount::parse(2500).unwrap(),
        currency: Currency::parse("eur").unwrap(),
        payment_method: "pm_card_visa".into(),
        capture_method: CaptureMethod::Automatic,
        description: None,
        metadata: Metadata::default(),
        return_url: None,
    }
}

async fn post(t: &TestApp, req: lambda_http::Request) -> (u16, Value) {
    let response: Response<Body> = create_payment(&t.app, req).await;
    parts(&response)
}

/// What a first attempt did before its function died: claimed the key, created the
/// PaymentIntent and stored its id, and (when `confirmed`) confirmed it. Answers the payment id.
async fn died_after(t: &TestApp, m: &TestMerchant, key: &str, confirmed: bool) -> PaymentId {
    let req = keyed(m, key);
    let now = t.clock.now();
    let hex = shared::domain::ids::time_ordered_hex(now);
    let begun = idempotency::begin(
        t.store(),
        shared::idempotency::Caller {
            merchant: &m.id,
            api_key: &m.key,
        },
        &IdempotencyKey::parse(key).unwrap(),
        &idempotency::fingerprint(&req),
        now,
        t.app.idempotency_lock,
        &hex,
    )
    .await
    .unwrap();
    assert!(matches!(begun, Begin::Proceed(_)));
    let id = PaymentId::from_time_ordered_hex(&hex).unwrap();
    t.authorization_in_flight(m, &id, visa(), confirmed).await;
    id
}

#[tokio::test]
async fn a_payment_is_one_confirmed_intent_and_leaves_no_record_in_flight() {
    let local = Localstripe::start();
    let (t, m, _) = on_stripe(&local).await;
    let (status, payment) = post(&t, keyed(&m, "order-1")).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["processor"]["name"], "stripe");
    let reference = payment["processor"]["reference"].as_str().unwrap();
    let id = payment["id"].as_str().unwrap();
    let held = local.intents_for(id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"], reference);
    assert_eq!(
        (held[0]["status"].as_str(), held[0]["amount"].as_i64()),
        (Some("succeeded"), Some(2500))
    );
    let started = t
        .store()
        .started(&m.id, &PaymentId::parse(id).unwrap())
        .await
        .unwrap();
    assert!(started.payment.is_some());
    assert_eq!(
        started.authorizing, None,
        "resolved with the payment's write"
    );
}

#[tokio::test]
async fn a_retry_after_an_attempt_died_having_charged_confirms_the_same_intent() {
    let local = Localstripe::start();
    let (t, m, _) = on_stripe(&local).await;
    let id = died_after(&t, &m, "died-1", true).await;
    let charged = local.intents_for(id.as_str()).await;
    assert_eq!(charged.len(), 1);
    assert_eq!(charged[0]["status"], "succeeded", "the card was charged");

    t.clock
        .advance(t.app.idempotency_lock + Duration::milliseconds(1));
    let (status, payment) = post(&t, keyed(&m, "died-1")).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["id"], id.as_str());
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["processor"]["reference"], charged[0]["id"]);
    assert_eq!(
        local.intents_for(id.as_str()).await.len(),
        1,
        "no second intent, no second charge"
    );
    let started = t.store().started(&m.id, &id).await.unwrap();
    assert_eq!(started.authorizing, None);
    assert_eq!(t.event_types(&m, &id).await, ["payment.succeeded"]);
}

#[tokio::test]
async fn a_retry_after_reconciliation_recorded_the_payment_answers_it_and_charges_nothing() {
    let local = Localstripe::start();
    let (t, m, _) = on_stripe(&local).await;
    let id = died_after(&t, &m, "died-2", true).await;
    let record = t
        .store()
        .started(&m.id, &id)
        .await
        .unwrap()
        .authorizing
        .expect("stored before the confirm");
    // What reconciliation records for it (`reconcile-payments`, `in_flight`).
    let now = t.clock.now();
    let payment = Payment::create(
        id.clone(),
        record.request,
        ProcessorRef::new(record.processor, record.reference.clone()),
        shared::domain::Authorization::Approved,
        now,
        &t.app.deadlines(),
    );
    let event = Event::status_change(&payment, now);
    t.store()
        .create_payment(&m.id, &payment, &event, true, None)
        .await
        .unwrap();

    t.clock
        .advance(t.app.idempotency_lock + Duration::milliseconds(1));
    let (status, answered) = post(&t, keyed(&m, "died-2")).await;
    assert_eq!(status, 201, "{answered}");
    assert_eq!(answered["id"], id.as_str());
    assert_eq!(
        answered["processor"]["reference"],
        record.reference.as_str()
    );
    assert_eq!(local.intents_for(id.as_str()).await.len(), 1);
    // The answer is stored: the next retry replays it.
    let response = create_payment(&t.app, keyed(&m, "died-2")).await;
    assert_eq!(response.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_retry_after_an_attempt_died_before_confirming_confirms_the_stored_intent() {
    let local = Localstripe::start();
    let (t, m, _) = on_stripe(&local).await;
    let id = died_after(&t, &m, "died-3", false).await;
    let created = local.intents_for(id.as_str()).await;
    assert_eq!(created[0]["status"], "requires_confirmation");
    t.clock
        .advance(t.app.idempotency_lock + Duration::milliseconds(1));
    let (status, payment) = post(&t, keyed(&m, "died-3")).await;
    assert_eq!(
        (status, payment["status"].as_str()),
        (201, Some("succeeded"))
    );
    let held = local.intents_for(id.as_str()).await;
    assert_eq!(held.len(), 1, "the stored intent, not a new one");
    assert_eq!(held[0]["status"], "succeeded");
}

#[tokio::test]
async fn a_lost_answer_to_storing_the_intent_id_is_read_back_and_charges_once() {
    use shared::testing::{Fault, Rule};
    let local = Localstripe::start();
    let (mut t, proxy) = TestApp::with_faults().await;
    t.app.processor = Arc::new(local.processor());
    let m = t.merchant("acme").await;
    proxy.inject(
        Rule::on("PutItem", Fault::DropResponse)
            .when_body_contains("PAYMENT#AUTHORIZING")
            .times(1),
    );
    let (status, payment) = post(&t, keyed(&m, "lost-put")).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(proxy.faulted("PutItem"), 1, "the fault was met");
    assert_eq!(payment["status"], "succeeded");
    let held = local.intents_for(payment["id"].as_str().unwrap()).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["id"], payment["processor"]["reference"]);
}
