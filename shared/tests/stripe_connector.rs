//! The Stripe connector (`shared::processor::stripe`) against localstripe, over HTTP: each trait
//! call, and that what localstripe holds afterwards agrees with what the connector answered
//! (the test reads localstripe's own API).

use shared::domain::{
    Amount, Authorization, CaptureMethod, Currency, MerchantId, NextAction, PaymentId, RefundId,
    RefundStatus, Settlement,
};
use shared::processor::events::EventChange;
use shared::processor::signature;
use shared::processor::stripe::events::{self as stripe_events, StripeEvent};
use shared::processor::stripe::keys::Keys;
use shared::processor::stripe::StripeProcessor;
use shared::processor::{
    AuthorizationRequest, Held, Lookup, PaymentProcessor, ProcessorError, RefundCall,
};
use shared::testing::local_secrets::LocalSecrets;
use shared::testing::localstripe::{test_keys, Localstripe, TEST_SECRET_KEY, TEST_WEBHOOK_SECRET};
use shared::testing::{Fault, FaultProxy, Rule};
use time::OffsetDateTime;

fn stripe(local: &Localstripe) -> StripeProcessor {
    local.processor()
}

fn request(method: &str, amount: i64, capture: CaptureMethod) -> AuthorizationRequest {
    let now = OffsetDateTime::now_utc();
    AuthorizationRequest {
        payment: PaymentId::generate(now),
        merchant: MerchantId::generate(now),
        payment_method: method.to_owned(),
        amount: Amount::parse(amount).unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        capture_method: capture,
        return_url: None,
        api_base: "https://api.example".to_owned(),
    }
}

fn refund(payment: &AuthorizationRequest, reference: &str, amount: i64) -> RefundCall {
    RefundCall {
        refund: RefundId::generate(OffsetDateTime::now_utc()),
        payment: payment.payment.clone(),
        merchant: payment.merchant.clone(),
        reference: reference.to_owned(),
        amount: Amount::parse(amount).unwrap(),
        currency: payment.currency,
        reason: None,
    }
}

/// What the create path does (`create-payment`, with the reference stored between the two
/// steps): the PaymentIntent's id, and what its confirm answered.
#[derive(Debug)]
struct Authorized {
    reference: String,
    outcome: Authorization,
}

async fn authorize(
    stripe: &StripeProcessor,
    request: &AuthorizationRequest,
) -> Result<Authorized, ProcessorError> {
    let reference = stripe.prepare(request).await?;
    let outcome = stripe.authorize(request, &reference).await?;
    Ok(Authorized { reference, outcome })
}

fn amount(v: i64) -> Amount {
    Amount::parse(v).unwrap()
}

#[tokio::test]
async fn an_approved_automatic_payment_is_one_succeeded_intent_carrying_our_ids() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let req = request("pm_card_visa", 2500, CaptureMethod::Automatic);
    let authorized = authorize(&stripe, &req).await.unwrap();
    assert_eq!(authorized.outcome, Authorization::Approved);
    assert!(authorized.reference.starts_with("pi_"));

    let intent = local
        .get(&format!("/v1/payment_intents/{}", authorized.reference))
        .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(
        (intent["amount"].as_i64(), intent["currency"].as_str()),
        (Some(2500), Some("eur"))
    );
    assert_eq!(intent["metadata"]["payment_id"], req.payment.as_str());
    assert_eq!(intent["metadata"]["merchant_id"], req.merchant.as_str());
    let listed = local.get("/v1/payment_intents?limit=100").await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "one intent, no other"
    );

    assert_eq!(
        stripe.lookup(&authorized.reference).await.unwrap(),
        Lookup::Settled(Settlement::Approved)
    );
    assert_eq!(
        stripe.held(&authorized.reference).await.unwrap(),
        Held::Captured(amount(2500))
    );
}

#[tokio::test]
async fn a_manual_payment_is_held_then_partly_captured_once() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let req = request("pm_card_visa", 1000, CaptureMethod::Manual);
    let authorized = authorize(&stripe, &req).await.unwrap();
    assert_eq!(authorized.outcome, Authorization::Approved);
    let reference = authorized.reference;
    assert_eq!(stripe.held(&reference).await.unwrap(), Held::Authorized);

    stripe.capture(&reference, amount(600)).await.unwrap();
    assert_eq!(
        stripe.held(&reference).await.unwrap(),
        Held::Captured(amount(600))
    );
    // A repeat (our answer was lost) is recognised, not refused, and captures nothing more.
    stripe.capture(&reference, amount(600)).await.unwrap();
    assert_eq!(
        stripe.held(&reference).await.unwrap(),
        Held::Captured(amount(600))
    );
    // The other operation lost the race at Stripe.
    assert!(matches!(
        stripe.cancel(&reference).await,
        Err(ProcessorError::Refused(_))
    ));
    let intent = local.get(&format!("/v1/payment_intents/{reference}")).await;
    assert_eq!(intent["status"], "succeeded");
}

#[tokio::test]
async fn a_canceled_authorization_stays_canceled_and_refuses_a_capture() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let req = request("pm_card_visa", 700, CaptureMethod::Manual);
    let reference = authorize(&stripe, &req).await.unwrap().reference;
    stripe.cancel(&reference).await.unwrap();
    stripe.cancel(&reference).await.unwrap();
    assert_eq!(stripe.held(&reference).await.unwrap(), Held::Canceled);
    assert!(matches!(
        stripe.capture(&reference, amount(700)).await,
        Err(ProcessorError::Refused(_))
    ));
    let intent = local.get(&format!("/v1/payment_intents/{reference}")).await;
    assert_eq!(intent["status"], "canceled");
}

#[tokio::test]
async fn a_decline_is_an_answer_with_stripes_code() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let req = request("pm_card_chargeCustomerFail", 500, CaptureMethod::Automatic);
    let authorized = authorize(&stripe, &req).await.unwrap();
    match &authorized.outcome {
        Authorization::Declined(failure) => assert_eq!(failure.code, "card_declined"),
        other => panic!("{other:?}"),
    }
    match stripe.lookup(&authorized.reference).await.unwrap() {
        Lookup::Settled(Settlement::Declined(failure)) => assert_eq!(failure.code, "card_declined"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_payment_method_is_the_clients_error() {
    let local = Localstripe::start();
    let err = authorize(
        &stripe(&local),
        &request("pm_nothing_like_it", 500, CaptureMethod::Automatic),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ProcessorError::UnknownPaymentMethod),
        "{err:?}"
    );
}

#[tokio::test]
async fn three_d_secure_waits_for_the_customer_then_settles_on_lookup() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let method = local.three_d_secure_method().await;
    let req = request(&method, 1200, CaptureMethod::Automatic);
    let authorized = authorize(&stripe, &req).await.unwrap();
    let secret = match &authorized.outcome {
        Authorization::RequiresAction(NextAction::UseStripeSdk { client_secret }) => {
            client_secret.clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(secret.starts_with(&authorized.reference));
    assert_eq!(
        stripe.lookup(&authorized.reference).await.unwrap(),
        Lookup::Pending
    );

    let done = local
        .post(
            &format!("/v1/payment_intents/{}/_authenticate", authorized.reference),
            &format!("client_secret={secret}&success=true"),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        stripe.lookup(&authorized.reference).await.unwrap(),
        Lookup::Settled(Settlement::Approved)
    );
}

#[tokio::test]
async fn a_refund_sent_twice_is_one_refund_at_stripe() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let req = request("pm_card_visa", 1000, CaptureMethod::Automatic);
    let reference = authorize(&stripe, &req).await.unwrap().reference;

    let first = refund(&req, &reference, 300);
    assert_eq!(
        stripe.refund(&first).await.unwrap(),
        RefundStatus::Succeeded
    );
    // The same refund id again (a lost answer, or reconciliation): answered, not repeated.
    assert_eq!(
        stripe.refund(&first).await.unwrap(),
        RefundStatus::Succeeded
    );
    let second = refund(&req, &reference, 700);
    assert_eq!(
        stripe.refund(&second).await.unwrap(),
        RefundStatus::Succeeded
    );

    let refunds = local
        .get(&format!("/v1/refunds?payment_intent={reference}&limit=100"))
        .await;
    let mut at_stripe: Vec<(String, i64)> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["refund_id"].as_str().unwrap().to_owned(),
                r["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    at_stripe.sort();
    let mut ours = vec![
        (first.refund.to_string(), 300),
        (second.refund.to_string(), 700),
    ];
    ours.sort();
    assert_eq!(at_stripe, ours);
}

#[tokio::test]
async fn an_intent_whose_confirm_never_arrived_is_canceled_and_reported_failed() {
    let local = Localstripe::start();
    let stripe = stripe(&local);
    let created = local
        .post(
            "/v1/payment_intents",
            "amount=800&currency=eur&payment_method=pm_card_visa&capture_method=manual",
        )
        .await;
    let reference = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "requires_confirmation");
    assert!(matches!(
        stripe.lookup(&reference).await.unwrap(),
        Lookup::Settled(Settlement::Declined(_))
    ));
    let intent = local.get(&format!("/v1/payment_intents/{reference}")).await;
    assert_eq!(
        intent["status"], "canceled",
        "no late confirm can charge it"
    );
}

/// The connector through the fault proxy, to the same localstripe.
async fn through_faults(local: &Localstripe) -> (StripeProcessor, FaultProxy) {
    let proxy = FaultProxy::start(local.addr).await;
    (StripeProcessor::new(proxy.endpoint(), test_keys()), proxy)
}

async fn intents(local: &Localstripe) -> Vec<serde_json::Value> {
    local.get("/v1/payment_intents?limit=100").await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_lost_create_moved_no_money_and_says_so() {
    let local = Localstripe::start();
    let (stripe, proxy) = through_faults(&local).await;
    proxy.inject(Rule::on("POST /v1/payment_intents", Fault::DropResponse).times(1));
    let err = authorize(
        &stripe,
        &request("pm_card_visa", 900, CaptureMethod::Automatic),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProcessorError::Unavailable(_)), "{err:?}");
    let held = intents(&local).await;
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0]["status"], "requires_confirmation",
        "created, never confirmed"
    );
}

#[tokio::test]
async fn a_lost_confirm_is_unknown_and_lookup_finds_the_one_charge() {
    let local = Localstripe::start();
    let (stripe, proxy) = through_faults(&local).await;
    proxy.inject(Rule::on("POST /v1/payment_intents/{id}/confirm", Fault::DropResponse).times(1));
    let authorized = authorize(
        &stripe,
        &request("pm_card_visa", 1500, CaptureMethod::Automatic),
    )
    .await
    .unwrap();
    assert_eq!(authorized.outcome, Authorization::Unknown);
    assert_eq!(proxy.faulted("POST /v1/payment_intents/{id}/confirm"), 1);
    assert_eq!(
        stripe.lookup(&authorized.reference).await.unwrap(),
        Lookup::Settled(Settlement::Approved)
    );
    let held = intents(&local).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["id"], authorized.reference.as_str());
    assert_eq!(held[0]["status"], "succeeded", "charged once, and found");
}

#[tokio::test]
async fn a_confirm_answered_500_after_charging_is_unknown_not_declined() {
    let local = Localstripe::start();
    let (stripe, proxy) = through_faults(&local).await;
    proxy.inject(
        Rule::on(
            "POST /v1/payment_intents/{id}/confirm",
            Fault::ErrorAfterCommit,
        )
        .times(1),
    );
    let authorized = authorize(
        &stripe,
        &request("pm_card_visa", 1500, CaptureMethod::Manual),
    )
    .await
    .unwrap();
    assert_eq!(authorized.outcome, Authorization::Unknown);
    assert_eq!(
        stripe.held(&authorized.reference).await.unwrap(),
        Held::Authorized
    );
}

#[tokio::test]
async fn a_lost_capture_is_unknown_and_its_repeat_captures_nothing_more() {
    let local = Localstripe::start();
    let (stripe, proxy) = through_faults(&local).await;
    let reference = authorize(
        &stripe,
        &request("pm_card_visa", 1000, CaptureMethod::Manual),
    )
    .await
    .unwrap()
    .reference;
    proxy.inject(Rule::on("POST /v1/payment_intents/{id}/capture", Fault::DropResponse).times(1));
    let err = stripe.capture(&reference, amount(400)).await.unwrap_err();
    assert!(matches!(err, ProcessorError::Unknown(_)), "{err:?}");
    assert_eq!(
        stripe.held(&reference).await.unwrap(),
        Held::Captured(amount(400))
    );
    stripe.capture(&reference, amount(400)).await.unwrap();
    assert_eq!(
        stripe.held(&reference).await.unwrap(),
        Held::Captured(amount(400))
    );
}

#[tokio::test]
async fn a_lost_refund_is_unknown_and_sending_it_again_makes_no_second() {
    let local = Localstripe::start();
    let (stripe, proxy) = through_faults(&local).await;
    let req = request("pm_card_visa", 1000, CaptureMethod::Automatic);
    let reference = authorize(&stripe, &req).await.unwrap().reference;
    let call = refund(&req, &reference, 250);
    proxy.inject(Rule::on("POST /v1/refunds", Fault::DropResponse).times(1));
    let err = stripe.refund(&call).await.unwrap_err();
    assert!(matches!(err, ProcessorError::Unknown(_)), "{err:?}");
    assert_eq!(stripe.refund(&call).await.unwrap(), RefundStatus::Succeeded);
    let refunds = local
        .get(&format!("/v1/refunds?payment_intent={reference}&limit=100"))
        .await;
    let amounts: Vec<i64> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![250], "exactly one refund at Stripe");
}

#[tokio::test]
async fn localstripes_signed_webhook_verifies_and_names_our_payment() {
    let local = Localstripe::start();
    let mut inbox = local.webhooks().await;
    let secret = TEST_WEBHOOK_SECRET;
    let req = request("pm_card_visa", 2100, CaptureMethod::Automatic);
    let reference = authorize(&stripe(&local), &req).await.unwrap().reference;

    let (signature, body) = inbox.next().await;
    let now = OffsetDateTime::now_utc();
    signature::verify(secret.as_bytes(), signature.as_deref(), &body, now).unwrap();
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert!(signature::verify(secret.as_bytes(), signature.as_deref(), &tampered, now).is_err());
    assert!(signature::verify(b"another secret", signature.as_deref(), &body, now).is_err());

    let StripeEvent::Ours(event) = stripe_events::parse(&body).unwrap() else {
        panic!("the event names our payment")
    };
    assert_eq!(event.reference, reference);
    assert_eq!(
        (&event.payment, &event.merchant),
        (&req.payment, &req.merchant)
    );
    assert_eq!(event.change, EventChange::Settled(Settlement::Approved));
    assert!(event.id.starts_with("evt_"));
}

/// The deployment's way to the keys: `STRIPE_SECRET_ARN` in a (local) Secrets Manager.
fn secrets_env(secrets: &LocalSecrets) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        Some(match name {
            "AWS_REGION" => "us-east-1".to_owned(),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => "local".to_owned(),
            "STRIPE_SECRET_ARN" => secrets.arn.clone(),
            "AWS_ENDPOINT_URL_SECRETS_MANAGER" => secrets.endpoint.clone(),
            _ => return None,
        })
    }
}

#[tokio::test]
async fn the_keys_are_read_from_secrets_manager_on_first_use_and_kept() {
    let local = Localstripe::start();
    let secrets = LocalSecrets::start(&format!(
        r#"{{"secret_key": "{TEST_SECRET_KEY}", "webhook_secret": "whsec_from_the_secret"}}"#
    ));
    let keys = Keys::from_env(&secrets_env(&secrets)).unwrap();
    let stripe = StripeProcessor::new(local.api_base(), keys);
    let authorized = authorize(
        &stripe,
        &request("pm_card_visa", 1200, CaptureMethod::Automatic),
    )
    .await
    .unwrap();
    assert_eq!(authorized.outcome, Authorization::Approved);

    let keys = Keys::from_env(&secrets_env(&secrets)).unwrap();
    assert_eq!(
        keys.get().await.unwrap().webhook_secret,
        "whsec_from_the_secret"
    );
    drop(secrets);
    assert_eq!(
        keys.get().await.unwrap().secret_key,
        TEST_SECRET_KEY,
        "read once, kept for the container's life"
    );
}

#[tokio::test]
async fn a_secret_that_is_not_the_keys_is_refused_without_quoting_it() {
    let secrets = LocalSecrets::start(r#"{"secret_key": "sk_test_only_one_key"}"#);
    let keys = Keys::from_env(&secrets_env(&secrets)).unwrap();
    let err = keys.get().await.unwrap_err().to_string();
    assert!(err.contains("webhook_secret"), "{err}");
    assert!(!err.contains("sk_test_only_one_key"), "{err}");
}

#[tokio::test]
async fn an_unreadable_secret_is_unavailable_and_asked_again_next_time() {
    let secrets = LocalSecrets::start(r#"{"secret_key": "sk_x", "webhook_secret": "whsec_x"}"#);
    let env = secrets_env(&secrets);
    let wrong = |name: &str| match name {
        "STRIPE_SECRET_ARN" => Some(format!("{}-missing", secrets.arn)),
        other => env(other),
    };
    let keys = Keys::from_env(&wrong).unwrap();
    let err = keys.get().await.unwrap_err().to_string();
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    // Through the connector: nothing was sent to Stripe.
    let stripe = StripeProcessor::new("http://127.0.0.1:9", Keys::from_env(&wrong).unwrap());
    let refused = authorize(
        &stripe,
        &request("pm_card_visa", 100, CaptureMethod::Automatic),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, ProcessorError::Unavailable(_)),
        "{refused:?}"
    );
}
