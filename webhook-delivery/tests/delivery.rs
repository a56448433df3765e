//! The delivery path against DynamoDB Local and real HTTP receivers on 127.0.0.1: the relay fed
//! the stream records Lambda would hand it (built from the event items the changes wrote), the
//! dispatcher's passes with the test's clock, isolation from slow and hostile endpoints, and
//! the crash cases (faults between the SDK client and DynamoDB Local, and attempts whose holder
//! dies).

mod receiver;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use receiver::{Received, Receiver};
use shared::clock::Clock;
use shared::domain::{CaptureMethod, Event, PaymentId, Timestamp, WebhookEndpointId};
use shared::metrics::{measure, Counter};
use shared::store::{DeliveryRecord, Store};
use shared::testing::faults::{Fault, Rule};
use shared::testing::{TestApp, TestMerchant};
use shared::webhooks::delivery::{Delivery, DeliveryStatus};
use shared::webhooks::endpoint::{EnabledEvents, EndpointStatus, WebhookEndpoint};
use shared::webhooks::signing::SigningSecret;
use time::Duration;
use webhook_delivery::retry::{RetryReport, PER_ENDPOINT};
use webhook_delivery::{relay, retry, Deliverer, Outcome, Sender, LEASE};

fn deliverer(t: &TestApp) -> Deliverer {
    Deliverer {
        store: t.store().clone(),
        sender: Sender::new(true).unwrap(),
        clock: t.clock.clone(),
    }
}

/// The relay as the stream invokes it: creates the batch's deliveries, attempts none.
async fn relay_only(t: &TestApp, batch: StreamEvent) -> DynamoDbEventResponse {
    relay(t.store(), t.clock.as_ref(), batch).await
}

/// The whole path for one batch: the relay creates its deliveries (due at once), then one
/// dispatcher pass makes their first attempts.
async fn deliver(
    t: &TestApp,
    d: &Deliverer,
    batch: StreamEvent,
) -> (DynamoDbEventResponse, RetryReport) {
    let response = relay_only(t, batch).await;
    (response, retry::pass(d).await)
}

/// The stream batch Lambda would hand the relay for the event at `sequence` of `payment`: the
/// item as stored, as a NEW_IMAGE INSERT record (the JSON shape Lambda sends).
async fn stream_batch(
    store: &Store,
    merchant: &TestMerchant,
    payment: &PaymentId,
    sequence: u64,
) -> StreamEvent {
    let key = |pk: String, sk: String| {
        std::collections::HashMap::from([
            (
                "PK".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::S(pk),
            ),
            (
                "SK".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::S(sk),
            ),
        ])
    };
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .set_key(Some(key(
            format!("MERCHANT#{}#PAYMENT#{payment}", merchant.id),
            format!("EVENT#{sequence:020}"),
        )))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the event item");
    let image: serde_dynamo::Item = item.into();
    let record = serde_json::json!({
        "eventID": format!("{payment}-{sequence}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_795_460_400,
            "NewImage": image,
            "SequenceNumber": format!("{sequence}00000000000000000000"),
            "SizeBytes": 800,
            "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/payments/stream/2026-11-23T19:00:00.000"
    });
    serde_json::from_value(serde_json::json!({ "Records": [record] })).expect("a stream event")
}

/// A payment whose first event (payment.succeeded) is the one to deliver.
async fn succeeded_payment(t: &TestApp, m: &TestMerchant) -> (PaymentId, Event) {
    let p = t
        .payment(m, 2000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let event = t
        .store()
        .list_events(&m.id, &p.id, 1, None)
        .await
        .unwrap()
        .items
        .remove(0);
    (p.id, event)
}

async fn endpoint_for(
    t: &TestApp,
    m: &TestMerchant,
    url: &str,
    events: EnabledEvents,
) -> (WebhookEndpoint, SigningSecret) {
    let (mut endpoint, secret) = t.new_endpoint(url);
    endpoint.enabled_events = events;
    t.store()
        .create_endpoint(&m.id, &endpoint, &secret, None)
        .await
        .unwrap();
    (endpoint, secret)
}

async fn deliveries_of(
    t: &TestApp,
    m: &TestMerchant,
    endpoint: &WebhookEndpointId,
) -> Vec<Delivery> {
    t.store()
        .list_deliveries(&m.id, endpoint, None, 100, None)
        .await
        .unwrap()
        .items
}

/// Checks one received request against the contract: headers, body = the event as the API
/// shows it, and one `v1,` signature per secret.
fn assert_signed(got: &Received, event: &Event, secrets: &[&SigningSecret]) {
    assert_eq!(got.id, event.id.as_str());
    assert_eq!(got.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body, event.resource());
    let timestamp: i64 = got.timestamp.parse().expect("unix seconds");
    let signatures: Vec<&str> = got.signature.split(' ').collect();
    let expected: Vec<String> = secrets
        .iter()
        .map(|s| s.sign(&got.id, timestamp, got.body.as_bytes()))
        .collect();
    assert_eq!(signatures, expected, "one signature per secret, in order");
}

#[tokio::test]
async fn the_relay_delivers_each_event_once_to_every_subscribed_enabled_endpoint_of_its_merchant() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let all = Receiver::start(&[]).await;
    let refunds_only = Receiver::start(&[]).await;
    let disabled = Receiver::start(&[]).await;
    let others = Receiver::start(&[]).await;
    let (all_ep, all_secret) = endpoint_for(&t, &m, &all.url, EnabledEvents::All).await;
    endpoint_for(
        &t,
        &m,
        &refunds_only.url,
        EnabledEvents::parse(&["payment.refunded"]).unwrap(),
    )
    .await;
    let (mut off, _) = endpoint_for(&t, &m, &disabled.url, EnabledEvents::All).await;
    off.status = EndpointStatus::Disabled;
    t.store()
        .replace_endpoint(&m.id, 1, &off, None)
        .await
        .unwrap();
    endpoint_for(&t, &other, &others.url, EnabledEvents::All).await;

    let (payment, event) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    let (response, first) = deliver(&t, &d, batch.clone()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((first.due, first.succeeded), (1, 1), "{first:?}");

    let got = all.received();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], &event, &[&all_secret]);
    assert!(
        refunds_only.received().is_empty(),
        "not subscribed to the type"
    );
    assert!(
        disabled.received().is_empty(),
        "a disabled endpoint gets nothing"
    );
    assert!(
        others.received().is_empty(),
        "another merchant's endpoint gets nothing"
    );

    let log = deliveries_of(&t, &m, &all_ep.id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, DeliveryStatus::Succeeded);
    assert_eq!(
        (log[0].attempts, log[0].last_response_status),
        (1, Some(200))
    );
    assert_eq!(log[0].event_id, event.id);
    assert!(
        deliveries_of(&t, &other, &all_ep.id).await.is_empty(),
        "the log is the merchant's"
    );

    // The stream hands the same record again (a retry of the batch): nothing is sent twice.
    let (again, second) = deliver(&t, &d, batch).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(second.due, 0);
    assert_eq!(all.received().len(), 1);
    assert_eq!(deliveries_of(&t, &m, &all_ep.id).await.len(), 1);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_5_s_later_with_the_same_webhook_id() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[500]).await;
    let (endpoint, secret) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, event) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    let (response, relayed) = measure(relay_only(&t, batch)).await;
    assert!(response.batch_item_failures.is_empty());
    // The relay makes no attempt: its metrics line counts none.
    assert_eq!(relayed.counts.get(&Counter::WebhookAttempts), None);
    let (_, relayed) = measure(retry::pass(&d)).await;
    // The first pass's metrics line: one attempt, failed.
    assert_eq!(relayed.counts.get(&Counter::WebhookAttempts), Some(&1));
    assert_eq!(
        relayed.counts.get(&Counter::WebhookAttemptsFailed),
        Some(&1)
    );
    assert_eq!(relayed.counts.get(&Counter::WebhookAttemptsSucceeded), None);

    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(log[0].status, DeliveryStatus::Pending);
    assert_eq!(log[0].last_response_status, Some(500));
    let first_at = log[0].last_attempt_at.unwrap().as_datetime();
    assert_eq!(
        log[0].next_attempt_at.unwrap().as_datetime(),
        first_at + Duration::seconds(5)
    );

    // Not due yet: nothing is sent.
    t.clock.advance(Duration::seconds(4));
    let early = retry::pass(&d).await;
    assert_eq!((early.due, receiver.received().len()), (0, 1));

    t.clock.advance(Duration::seconds(1));
    let (report, swept) = measure(retry::pass(&d)).await;
    assert_eq!((report.due, report.succeeded, report.errors), (1, 1, 0));
    assert_eq!(swept.counts.get(&Counter::WebhookAttempts), Some(&1));
    assert_eq!(
        swept.counts.get(&Counter::WebhookAttemptsSucceeded),
        Some(&1)
    );
    assert_eq!(swept.counts.get(&Counter::WebhookAttemptsFailed), None);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, got[1].id, "the same webhook-id on every attempt");
    assert_signed(&got[1], &event, &[&secret]);
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].attempts),
        (DeliveryStatus::Succeeded, 2)
    );
    assert_eq!(log[0].next_attempt_at, None);

    // Done: later passes find nothing.
    t.clock.advance(Duration::hours(30));
    assert_eq!(retry::pass(&d).await.due, 0);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn every_attempt_failing_follows_the_schedule_to_failed() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[503; 10]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &payment, 1).await).await;
    let mut given_up = 0;
    for wait in shared::webhooks::schedule::RETRY_DELAYS {
        t.clock.advance(wait);
        let (report, swept) = measure(retry::pass(&d)).await;
        assert_eq!(report.due, 1, "due after {wait}");
        given_up += swept
            .counts
            .get(&Counter::WebhookDeliveriesFailed)
            .copied()
            .unwrap_or(0);
    }
    assert_eq!(
        given_up, 1,
        "the last attempt's sweep counts the failed delivery, once"
    );
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].attempts),
        (DeliveryStatus::Failed, 10)
    );
    assert_eq!(receiver.received().len(), 10);
    t.clock.advance(Duration::days(2));
    assert_eq!(retry::pass(&d).await.due, 0);
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_a_disabled_or_deleted_endpoint_gets_nothing() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let gone = Receiver::start(&[410]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &gone.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &payment, 1).await).await;
    let stored = t
        .store()
        .get_endpoint(&m.id, &endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, EndpointStatus::Disabled);
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].last_response_status),
        (DeliveryStatus::Failed, Some(410))
    );

    // Disabled: the next event makes no delivery at all.
    let (payment2, _) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &payment2, 1).await).await;
    assert_eq!(gone.received().len(), 1);
    assert_eq!(deliveries_of(&t, &m, &endpoint.id).await.len(), 1);

    // Enabled again (the update moved the version: the disable moved it to 2), it receives.
    let mut enabled = stored.clone();
    enabled.status = EndpointStatus::Enabled;
    t.store()
        .replace_endpoint(&m.id, 2, &enabled, None)
        .await
        .unwrap();
    let (payment3, _) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &payment3, 1).await).await;
    assert_eq!(gone.received().len(), 2);

    // A pending retry whose endpoint is deleted before it is due: given up, nothing sent.
    let failing = Receiver::start(&[500]).await;
    let (doomed, _) = endpoint_for(&t, &m, &failing.url, EnabledEvents::All).await;
    let (payment4, _) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &payment4, 1).await).await;
    assert_eq!(failing.received().len(), 1);
    assert!(t.store().delete_endpoint(&m.id, &doomed.id).await.unwrap());
    t.clock.advance(Duration::seconds(5));
    let report = retry::pass(&d).await;
    assert_eq!((report.due, report.abandoned), (1, 1));
    assert_eq!(failing.received().len(), 1);
}

/// Relays a new payment's payment.succeeded and makes its delivery's first attempt, and only
/// that one (no pass: other due deliveries are left as they are).
async fn attempt_new(t: &TestApp, d: &Deliverer, m: &TestMerchant, endpoint: &WebhookEndpoint) {
    let (payment, event) = succeeded_payment(t, m).await;
    relay_only(t, stream_batch(t.store(), m, &payment, 1).await).await;
    let id = Delivery::new(&event, &endpoint.id, t.clock.now()).id;
    let record = t
        .store()
        .get_delivery(&m.id, &endpoint.id, &id)
        .await
        .unwrap()
        .expect("the relay made the delivery");
    let claim = d.claim();
    assert!(t.store().claim_delivery(&record, &claim).await.unwrap());
    d.attempt(&record, Some(&event), &claim).await.unwrap();
}

#[tokio::test]
async fn five_days_of_failures_disable_the_endpoint_and_a_success_resets_the_count() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[500, 500, 200, 500, 500]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let status = |t: &TestApp| {
        let (store, merchant, id) = (t.store().clone(), m.id.clone(), endpoint.id.clone());
        async move {
            store
                .get_endpoint(&merchant, &id)
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };

    // Each new payment's delivery is attempted alone (the earlier ones' retries, due by
    // then, would take the script's answers).
    attempt_new(&t, &d, &m, &endpoint).await; // fails: the count starts
    t.clock.advance(Duration::days(3));
    attempt_new(&t, &d, &m, &endpoint).await; // fails, 3 days in
    assert_eq!(status(&t).await, EndpointStatus::Enabled);
    attempt_new(&t, &d, &m, &endpoint).await; // succeeds: the count ends
    t.clock.advance(Duration::days(3));
    attempt_new(&t, &d, &m, &endpoint).await; // fails: a new count starts
    assert_eq!(
        status(&t).await,
        EndpointStatus::Enabled,
        "6 days since the first failure, but a success between"
    );
    t.clock.advance(Duration::days(5));
    attempt_new(&t, &d, &m, &endpoint).await; // fails, 5 days into the count
    assert_eq!(status(&t).await, EndpointStatus::Disabled);
    assert_eq!(receiver.received().len(), 5);
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_24_h_only_the_new_one() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, old) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (new, _) = SigningSecret::generate().unwrap();
    let now = Timestamp::from_datetime(t.clock.now());
    assert!(t
        .store()
        .rotate_secret(&m.id, &endpoint.id, &new, now, None)
        .await
        .unwrap());

    let (p1, e1) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &p1, 1).await).await;
    assert_signed(&receiver.received()[0], &e1, &[&new, &old]);

    t.clock.advance(Duration::hours(24));
    let (p2, e2) = succeeded_payment(&t, &m).await;
    deliver(&t, &d, stream_batch(t.store(), &m, &p2, 1).await).await;
    assert_signed(&receiver.received()[1], &e2, &[&new]);
}

#[tokio::test]
async fn a_dispatcher_that_dies_after_claiming_leaves_the_delivery_to_the_next_pass() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, secret) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, event) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    assert!(relay_only(&t, batch.clone())
        .await
        .batch_item_failures
        .is_empty());
    // What a pass does before its attempt, and then its invocation dies.
    let delivery = Delivery::new(&event, &endpoint.id, t.clock.now());
    let created = t
        .store()
        .get_delivery(&m.id, &endpoint.id, &delivery.id)
        .await
        .unwrap()
        .expect("the relay made the delivery");
    assert!(t
        .store()
        .claim_delivery(&created, &d.claim())
        .await
        .unwrap());

    // Under its claim: not taken before the lease ends, even though the delivery was due.
    assert_eq!(retry::pass(&d).await.due, 0);
    // The stream retries the record: the delivery exists and is not made twice.
    let (_, again) = deliver(&t, &d, batch).await;
    assert_eq!(again.due, 0);
    assert!(receiver.received().is_empty());

    t.clock.advance(LEASE);
    let report = retry::pass(&d).await;
    assert_eq!((report.due, report.succeeded), (1, 1));
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], &event, &[&secret]);
}

#[tokio::test]
async fn an_attempt_whose_answer_was_never_recorded_is_made_again_after_its_lease() {
    // The receiver got the POST, but recording it never reached DynamoDB (the holder died
    // mid-way): the delivery stays claimed, and the sweep makes it again when the claim ends.
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, event) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    proxy.inject(Rule::on("PutItem", Fault::Refuse).when_body_contains("attempt_token"));
    let (response, first) = deliver(&t, &d, batch).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the delivery exists: not a record failure"
    );
    assert_eq!((first.succeeded, first.errors), (0, 1), "{first:?}");
    assert_eq!(receiver.received().len(), 1);
    proxy.heal();
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].attempts),
        (DeliveryStatus::Pending, 0)
    );

    t.clock.advance(LEASE);
    let report = retry::pass(&d).await;
    assert_eq!(report.succeeded, 1);
    let got = receiver.received();
    assert_eq!(
        got.len(),
        2,
        "delivered again: at least once, never dropped"
    );
    assert_eq!(got[1].id, event.id.as_str());
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].attempts),
        (DeliveryStatus::Succeeded, 1)
    );
}

#[tokio::test]
async fn lost_answers_on_the_delivery_writes_are_recognised() {
    // Every write of the path commits but its answer is lost (the SDK retries and is refused by
    // the write's own condition): each is recognised by its token, one POST, recorded once.
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[500]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    proxy.inject(
        Rule::on("PutItem", Fault::DropResponse)
            .when_body_contains("attribute_not_exists(#pk)")
            .times(1),
    );
    proxy.inject(
        Rule::on("PutItem", Fault::DropResponse)
            .when_body_contains("attempt_token")
            .times(1),
    );
    deliver(&t, &d, batch).await;
    assert_eq!(
        proxy.faulted("PutItem"),
        2,
        "create and record both lost their answers"
    );
    assert_eq!(receiver.received().len(), 1);
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].attempts),
        (DeliveryStatus::Pending, 1)
    );

    t.clock.advance(Duration::seconds(5));
    proxy.inject(
        Rule::on("UpdateItem", Fault::DropResponse)
            .when_body_contains("claim")
            .times(1),
    );
    let report = retry::pass(&d).await;
    assert_eq!((report.succeeded, report.errors), (1, 0), "{report:?}");
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn a_record_whose_deliveries_cannot_be_created_is_failed_for_the_stream_to_retry() {
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    let sequence = batch.records[0].change.sequence_number.clone();

    proxy.inject(Rule::on("Query", Fault::Throttle));
    let response = relay_only(&t, batch.clone()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, sequence);
    assert!(receiver.received().is_empty());

    proxy.heal();
    let (response, _) = deliver(&t, &d, batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn two_sweeps_at_once_attempt_each_due_delivery_once() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[500; 12]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    for _ in 0..12 {
        let (payment, _) = succeeded_payment(&t, &m).await;
        deliver(&t, &d, stream_batch(t.store(), &m, &payment, 1).await).await;
    }
    assert_eq!(receiver.received().len(), 12);
    t.clock.advance(Duration::seconds(5));
    // One endpoint: each pass holds at most PER_ENDPOINT of its attempts in flight and
    // defers the rest, so the retries may take several rounds of two passes at once.
    let mut succeeded = 0;
    for _ in 0..12 {
        let (a, b) = tokio::join!(retry::pass(&d), retry::pass(&d));
        succeeded += a.succeeded + b.succeeded;
        if a.due == 0 && b.due == 0 {
            break;
        }
    }
    assert_eq!(succeeded, 12);
    assert_eq!(receiver.received().len(), 24, "each retried once");
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert!(log
        .iter()
        .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts == 2));
}

#[tokio::test]
async fn the_sample_stream_event_is_a_relayable_event() {
    let text = std::fs::read_to_string(
        shared::testing::workspace_root().join("events/relay-webhook-events.json"),
    )
    .unwrap();
    let batch: StreamEvent = serde_json::from_str(&text).unwrap();
    let image = batch.records[0].change.new_image.clone();
    let outbox = shared::store::OutboxEvent::from_image(image.into())
        .unwrap()
        .expect("an event");
    assert_eq!(outbox.sequence, 1);
    assert_eq!(outbox.event.event_type.as_str(), "payment.succeeded");
    assert_eq!(
        outbox.merchant.as_str(),
        "mer_019ab2c3d4e57f00a1b2c3d4e5f60001"
    );
}

#[tokio::test]
async fn an_attempt_that_outlived_its_claim_does_not_overwrite_the_next_holders_answer() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, event) = succeeded_payment(&t, &m).await;
    let delivery = Delivery::new(&event, &endpoint.id, t.clock.now());
    assert!(t
        .store()
        .create_delivery(&m.id, &delivery, (&payment, 1))
        .await
        .unwrap());
    let slow = d.claim();
    let record = |t: &TestApp| {
        let (store, merchant, ep, id) = (
            t.store().clone(),
            m.id.clone(),
            endpoint.id.clone(),
            delivery.id.clone(),
        );
        async move {
            store
                .get_delivery(&merchant, &ep, &id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let as_created: DeliveryRecord = record(&t).await;
    // A pass claims it, and its attempt is slow.
    assert!(t.store().claim_delivery(&as_created, &slow).await.unwrap());
    let claimed = record(&t).await;
    // The lease ends; the sweep takes over and delivers.
    t.clock.advance(LEASE);
    assert_eq!(retry::pass(&d).await.succeeded, 1);
    // The first holder's attempt comes back late: refused, the sweep's answer stands.
    let late = d.attempt(&claimed, Some(&event), &slow).await.unwrap();
    assert_eq!(late, Outcome::Superseded);
    let now = record(&t).await;
    assert_eq!(
        (now.delivery.status, now.delivery.attempts),
        (DeliveryStatus::Succeeded, 1)
    );
}

/// `n` payments of `m` whose payment.succeeded the relay has turned into deliveries.
async fn relayed_deliveries(t: &TestApp, m: &TestMerchant, n: usize) {
    for _ in 0..n {
        let (payment, _) = succeeded_payment(t, m).await;
        let response = relay_only(t, stream_batch(t.store(), m, &payment, 1).await).await;
        assert!(response.batch_item_failures.is_empty());
    }
}

/// `per_shard` entries of every retry shard that do not decode (an item of another version, or a
/// broken write: none of the ids a due entry carries), due long ago: ahead of everything.
async fn broken_index_entries(t: &TestApp, per_shard: usize) {
    for shard in 0..shared::store::RETRY_SHARDS {
        for i in 0..per_shard {
            t.store()
                .client()
                .put_item()
                .table_name(t.store().table())
                .item("PK", AttributeValue::S(format!("BROKEN#{shard}#{i}")))
                .item("SK", AttributeValue::S("BROKEN".into()))
                .item(
                    "GSI3PK",
                    AttributeValue::S(format!("WEBHOOK_RETRY#{shard:02}")),
                )
                .item(
                    "GSI3SK",
                    AttributeValue::S("2000-01-01T00:00:00.000Z".into()),
                )
                .send()
                .await
                .unwrap();
        }
    }
}

/// Polls `done` every 10 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not within 5 s: {what}");
}

#[tokio::test]
async fn a_hanging_endpoint_holds_at_most_its_share_and_another_merchants_delivery_goes_out_meanwhile(
) {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let slow_merchant = t.merchant("slow").await;
    let quick_merchant = t.merchant("quick").await;
    let hanging = Receiver::holding().await;
    let quick = Receiver::start(&[]).await;
    let (slow_ep, _) = endpoint_for(&t, &slow_merchant, &hanging.url, EnabledEvents::All).await;
    endpoint_for(&t, &quick_merchant, &quick.url, EnabledEvents::All).await;
    let held = PER_ENDPOINT + 2;
    relayed_deliveries(&t, &slow_merchant, held).await;
    relayed_deliveries(&t, &quick_merchant, 1).await;

    let (report, ()) = tokio::join!(retry::pass(&d), async {
        // The quick merchant's delivery is made while the hanging endpoint holds its
        // attempts open: the pass never waits for one endpoint before starting another's.
        eventually("the quick endpoint got its webhook", || {
            quick.received().len() == 1
        })
        .await;
        eventually("the hanging endpoint holds its share", || {
            hanging.open() == PER_ENDPOINT
        })
        .await;
        assert_eq!(
            hanging.most_open(),
            PER_ENDPOINT,
            "never more than its share"
        );
        hanging.release();
    });
    assert_eq!(
        (report.due, report.succeeded, report.deferred),
        (held + 1, PER_ENDPOINT + 1, 2),
        "{report:?}"
    );
    assert_eq!(hanging.received().len(), PER_ENDPOINT);

    // The deferred two are still due, and the next pass makes them.
    let next = retry::pass(&d).await;
    assert_eq!(
        (next.due, next.succeeded, next.deferred),
        (2, 2, 0),
        "{next:?}"
    );
    assert_eq!(hanging.received().len(), held);
    assert!(deliveries_of(&t, &slow_merchant, &slow_ep.id)
        .await
        .iter()
        .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts == 1));
}

#[tokio::test]
async fn an_answer_that_never_ends_is_read_only_so_far_and_the_delivery_succeeds() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let endless = Receiver::endless().await;
    let (endpoint, _) = endpoint_for(&t, &m, &endless.url, EnabledEvents::All).await;
    relayed_deliveries(&t, &m, 1).await;

    let report = retry::pass(&d).await;
    assert_eq!((report.due, report.succeeded), (1, 1), "{report:?}");
    let log = deliveries_of(&t, &m, &endpoint.id).await;
    assert_eq!(
        (log[0].status, log[0].last_response_status),
        (DeliveryStatus::Succeeded, Some(200))
    );
    // The dispatcher hung up after its 64 KiB: the connection ended long before the receiver's
    // 1 GiB (what it handed over is the socket buffers' worth).
    eventually("the connection closed", || {
        endless.closed_connections() >= 1
    })
    .await;
    let sent = endless.sent_bytes();
    assert!(sent < 16 << 20, "{sent} bytes sent");
}

#[tokio::test]
async fn an_index_entry_that_does_not_decode_is_skipped_and_counted_and_the_rest_is_delivered() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    // One broken entry ahead of everything in every shard: an item of another version,
    // without the ids a due entry carries.
    let shards = shared::store::RETRY_SHARDS;
    broken_index_entries(&t, 1).await;
    relayed_deliveries(&t, &m, 1).await;

    let (report, counted) = measure(retry::pass(&d)).await;
    assert_eq!(report.poison, usize::from(shards), "{report:?}");
    assert_eq!((report.due, report.succeeded), (1, 1), "{report:?}");
    assert_eq!(
        counted.counts.get(&Counter::TimerIndexPoison),
        Some(&u64::from(shards))
    );
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        deliveries_of(&t, &m, &endpoint.id).await[0].status,
        DeliveryStatus::Succeeded
    );
}

#[tokio::test]
async fn a_stream_record_that_is_not_a_readable_event_is_failed_and_the_rest_of_the_batch_relayed()
{
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    let good = stream_batch(t.store(), &m, &payment, 1).await;
    // The same record with only its keys and merchant left: an event item the code cannot
    // read (another version's, or a broken write).
    let mut value = serde_json::to_value(&good).unwrap();
    let mut record = value["Records"][0].clone();
    let image = record["dynamodb"]["NewImage"].as_object_mut().unwrap();
    image.retain(|name, _| ["PK", "SK", "merchant_id"].contains(&name.as_str()));
    record["dynamodb"]["SequenceNumber"] = serde_json::json!("99900000000000000000");
    value["Records"].as_array_mut().unwrap().insert(0, record);
    let batch: StreamEvent = serde_json::from_value(value).unwrap();

    let response = relay_only(&t, batch).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec![Some("99900000000000000000".to_owned())]);
    assert_eq!(
        deliveries_of(&t, &m, &endpoint.id).await.len(),
        1,
        "the readable record is relayed"
    );
}

#[tokio::test]
async fn a_pending_delivery_never_expires_and_a_finished_one_does() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[500]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    relayed_deliveries(&t, &m, 1).await;
    let id = deliveries_of(&t, &m, &endpoint.id).await[0].id.clone();
    let ttl = || async {
        let item = t
            .store()
            .client()
            .get_item()
            .table_name(t.store().table())
            .key(
                "PK",
                AttributeValue::S(format!("MERCHANT#{}#WEBHOOK#{}", m.id, endpoint.id)),
            )
            .key("SK", AttributeValue::S(format!("DELIVERY#{id}")))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("the delivery item");
        item.get("expires_at").map(|v| v.as_n().unwrap().clone())
    };
    assert_eq!(ttl().await, None, "created: pending, no TTL");
    assert_eq!(retry::pass(&d).await.pending, 1);
    assert_eq!(ttl().await, None, "retrying: still no TTL");
    t.clock.advance(Duration::seconds(5));
    assert_eq!(retry::pass(&d).await.succeeded, 1);
    let expires: i64 = ttl().await.expect("finished: a TTL").parse().unwrap();
    let created = deliveries_of(&t, &m, &endpoint.id).await[0]
        .created_at
        .as_datetime();
    assert_eq!(
        expires,
        (created + shared::store::deliveries::DELIVERY_LOG_RETENTION).unix_timestamp()
    );
}

#[tokio::test]
async fn a_delivery_created_by_a_relay_that_then_failed_is_made_once() {
    // The put commits and the relay sees an error: it reports the record failed, the stream
    // hands it again, and the retry finds the delivery made. It is attempted once, by a pass.
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (payment, _) = succeeded_payment(&t, &m).await;
    let batch = stream_batch(t.store(), &m, &payment, 1).await;
    proxy.inject(
        Rule::on("PutItem", Fault::ErrorAfterCommit)
            .when_body_contains("attribute_not_exists(#pk)")
            .times(5),
    );
    let response = relay_only(&t, batch.clone()).await;
    assert_eq!(response.batch_item_failures.len(), 1, "reported failed");
    proxy.heal();
    assert_eq!(
        deliveries_of(&t, &m, &endpoint.id).await.len(),
        1,
        "but made"
    );
    let (again, report) = deliver(&t, &d, batch).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!((report.due, report.succeeded), (1, 1), "{report:?}");
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(deliveries_of(&t, &m, &endpoint.id).await.len(), 1);
}

#[tokio::test]
async fn a_run_out_of_time_mid_shard_leaves_the_rest_due_and_nothing_is_attempted_twice() {
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    // Every shard two pages long: a page of entries that do not decode ahead of the real ones.
    let shards = shared::store::RETRY_SHARDS;
    broken_index_entries(&t, retry::BATCH).await;
    let total = 20;
    relayed_deliveries(&t, &m, total).await;

    // Each page of the index takes 400 ms, and the run's budget leaves 1 s to start attempts:
    // it stops after a few pages, in the middle of a shard or between two.
    proxy.inject(
        Rule::on("Query", Fault::Delay(std::time::Duration::from_millis(400)))
            .when_body_contains("WEBHOOK_RETRY"),
    );
    let budget = retry::ATTEMPT_TAIL + std::time::Duration::from_secs(1);
    let cut = retry::run(&d, std::time::Duration::ZERO, budget).await;
    assert!(cut.poison < usize::from(shards) * retry::BATCH, "{cut:?}");
    assert!(cut.due < total, "the run stopped early: {cut:?}");
    assert_eq!(
        cut.succeeded,
        cut.due - cut.deferred,
        "what it started it made: {cut:?}"
    );

    proxy.heal();
    // The rest is still due; one endpoint takes PER_ENDPOINT at a time, so a few passes.
    let first = retry::pass(&d).await;
    assert_eq!(
        first.due,
        total - cut.succeeded,
        "the rest was left due: {first:?}"
    );
    let mut succeeded = cut.succeeded + first.succeeded;
    for _ in 0..total {
        let next = retry::pass(&d).await;
        succeeded += next.succeeded;
        if next.due == 0 {
            break;
        }
    }
    assert_eq!(succeeded, total);
    assert_eq!(receiver.received().len(), total, "each delivery sent once");
    assert!(deliveries_of(&t, &m, &endpoint.id)
        .await
        .iter()
        .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts == 1));
}
