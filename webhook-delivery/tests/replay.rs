//! Replays against DynamoDB Local and a real HTTP receiver on 127.0.0.1: the dispatcher's passes
//! (with the test's clock) step a replay through the merchant's events of its range and attempt
//! what it creates; two runs at once, a lost answer, a busy, disabled or deleted endpoint.

// Shared with `delivery.rs`, which uses all of it; these tests only count what arrives.
#[allow(dead_code)]
mod receiver;

use receiver::Receiver;
use shared::clock::Clock;
use shared::domain::{CaptureMethod, EventId, EventType, Timestamp, WebhookReplayId};
use shared::store::ReplayRecord;
use shared::testing::faults::{Fault, Rule};
use shared::testing::{TestApp, TestMerchant};
use shared::webhooks::delivery::{Delivery, DeliveryStatus};
use shared::webhooks::endpoint::{EnabledEvents, EndpointStatus, WebhookEndpoint};
use shared::webhooks::replay::{ReplayRange, ReplayStatus, WebhookReplay, DELIVERIES_PER_STEP};
use std::collections::BTreeSet;
use std::time::{Duration as StdDuration, Instant};
use time::Duration;
use webhook_delivery::{replay, retry, Deliverer, Sender};

fn deliverer(t: &TestApp) -> Deliverer {
    Deliverer {
        store: t.store().clone(),
        sender: Sender::new(true).unwrap(),
        clock: t.clock.clone(),
    }
}

fn now(t: &TestApp) -> Timestamp {
    Timestamp::from_datetime(t.clock.now())
}

async fn endpoint_for(
    t: &TestApp,
    m: &TestMerchant,
    url: &str,
    events: EnabledEvents,
) -> WebhookEndpoint {
    let (mut endpoint, secret) = t.new_endpoint(url);
    endpoint.enabled_events = events;
    t.store()
        .create_endpoint(&m.id, &endpoint, &secret, None)
        .await
        .unwrap();
    endpoint
}

/// A payment of `m` a second after the last: its first event's id (payment.succeeded for
/// automatic capture, payment.requires_capture for manual).
async fn payment(t: &TestApp, m: &TestMerchant, capture: CaptureMethod) -> EventId {
    t.clock.advance(Duration::seconds(1));
    let p = t.payment(m, 1500, capture, "pm_card_visa").await;
    let events = t.store().list_events(&m.id, &p.id, 1, None).await.unwrap();
    events.items[0].id.clone()
}

/// The history the tests replay: before the range, in it (succeeded and requires_capture, in
/// turns), after it; and another merchant's payments in the range. Returns the replay's range
/// and the ids of the in-range payment.succeeded events, oldest first.
async fn history(
    t: &TestApp,
    m: &TestMerchant,
    other: &TestMerchant,
    succeeded_in_range: usize,
) -> (ReplayRange, Vec<EventId>) {
    for _ in 0..2 {
        payment(t, m, CaptureMethod::Automatic).await;
    }
    t.clock.advance(Duration::milliseconds(500));
    let since = now(t);
    let mut expected = Vec::new();
    for i in 0..succeeded_in_range {
        expected.push(payment(t, m, CaptureMethod::Automatic).await);
        if i % 5 == 0 {
            payment(t, m, CaptureMethod::Manual).await;
            payment(t, other, CaptureMethod::Automatic).await;
        }
    }
    t.clock.advance(Duration::milliseconds(500));
    let until = now(t);
    for _ in 0..2 {
        payment(t, m, CaptureMethod::Automatic).await;
    }
    let range = ReplayRange::new(since, Some(until), t.clock.now()).unwrap();
    (range, expected)
}

async fn start_replay(
    t: &TestApp,
    m: &TestMerchant,
    endpoint: &WebhookEndpoint,
    range: ReplayRange,
) -> WebhookReplay {
    let at = t.clock.now();
    let replay = WebhookReplay::new(WebhookReplayId::generate(at), &endpoint.id, range, at);
    t.store().create_replay(&m.id, &replay, None).await.unwrap();
    replay
}

async fn stored(t: &TestApp, m: &TestMerchant, replay: &WebhookReplay) -> ReplayRecord {
    t.store()
        .get_replay(&m.id, &replay.endpoint_id, &replay.id)
        .await
        .unwrap()
        .expect("the replay")
}

async fn deliveries_of(t: &TestApp, m: &TestMerchant, endpoint: &WebhookEndpoint) -> Vec<Delivery> {
    t.store()
        .list_deliveries(&m.id, &endpoint.id, None, 100, None)
        .await
        .unwrap()
        .items
}

/// Dispatcher passes until the replay is done and nothing is due (at most `passes`).
async fn until_done(
    t: &TestApp,
    d: &Deliverer,
    m: &TestMerchant,
    replay: &WebhookReplay,
    passes: usize,
) {
    for _ in 0..passes {
        let report = retry::pass(d).await;
        if report.due == 0 && stored(t, m, replay).await.replay.status == ReplayStatus::Done {
            return;
        }
    }
    panic!("the replay did not finish within {passes} passes");
}

fn far() -> Instant {
    Instant::now() + StdDuration::from_secs(3600)
}

#[tokio::test]
async fn a_replay_delivers_exactly_the_ranges_subscribed_events_oldest_first() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let receiver = Receiver::start(&[]).await;
    let only_succeeded = EnabledEvents::Only(BTreeSet::from([EventType::PaymentSucceeded]));
    let endpoint = endpoint_for(&t, &m, &receiver.url, only_succeeded).await;
    // The other merchant's endpoint would receive its events, if a replay leaked them.
    let others = Receiver::start(&[]).await;
    endpoint_for(&t, &other, &others.url, EnabledEvents::All).await;
    let wanted = DELIVERIES_PER_STEP + 5;
    let (range, expected) = history(&t, &m, &other, wanted).await;
    let replay = start_replay(&t, &m, &endpoint, range).await;

    // The first step creates the oldest events' deliveries, one step's worth.
    let first = replay::step_due(&d, &|_, _| false, far()).await;
    assert_eq!((first.steps, first.deliveries), (1, DELIVERIES_PER_STEP));
    let mut made: Vec<_> = deliveries_of(&t, &m, &endpoint)
        .await
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    made.sort();
    assert_eq!(made, expected[..DELIVERIES_PER_STEP]);
    let record = stored(&t, &m, &replay).await;
    assert_eq!(
        (record.replay.status, record.replay.events, record.step),
        (ReplayStatus::Running, DELIVERIES_PER_STEP as u64, 1)
    );

    until_done(&t, &d, &m, &replay, 20).await;
    let record = stored(&t, &m, &replay).await;
    assert_eq!(record.replay.events, wanted as u64);
    let mut received: Vec<String> = receiver.received().into_iter().map(|r| r.id).collect();
    received.sort();
    let expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
    assert_eq!(
        received, expected,
        "each event of the range once, and nothing else"
    );
    assert!(
        others.received().is_empty(),
        "nothing of another merchant's"
    );
    let log = deliveries_of(&t, &m, &endpoint).await;
    assert_eq!(log.len(), wanted);
    assert!(log
        .iter()
        .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts == 1));
}

#[tokio::test]
async fn a_replay_waits_while_its_endpoint_has_a_step_of_deliveries_due() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    // Every first attempt fails: the endpoint's deliveries stay due until the clock moves.
    let receiver = Receiver::start(&[500; 100]).await;
    let endpoint = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (range, _) = history(&t, &m, &other, 3).await;
    for _ in 0..DELIVERIES_PER_STEP {
        t.new_delivery(&m, &endpoint.id).await;
    }
    let replay = start_replay(&t, &m, &endpoint, range).await;

    let busy = retry::pass(&d).await;
    assert_eq!(busy.due, DELIVERIES_PER_STEP);
    assert_eq!(
        busy.replay_steps, 0,
        "a step of the endpoint's deliveries was due"
    );
    assert_eq!(stored(&t, &m, &replay).await.step, 0);

    // Each pass attempts some (their retries are minutes away); once fewer than a step's worth
    // were due, the replay goes on.
    let mut passes = Vec::new();
    for _ in 0..10 {
        let report = retry::pass(&d).await;
        passes.push((report.due, report.replay_steps));
        if stored(&t, &m, &replay).await.replay.status == ReplayStatus::Done {
            break;
        }
    }
    assert!(
        passes
            .iter()
            .all(|&(due, steps)| steps == 0 || due < DELIVERIES_PER_STEP),
        "never stepped while a step's worth was due: {passes:?}"
    );
    let record = stored(&t, &m, &replay).await;
    // In range: 3 succeeded and 1 requires_capture of m's.
    assert_eq!(
        (record.replay.status, record.replay.events),
        (ReplayStatus::Done, 4)
    );
}

#[tokio::test]
async fn two_runs_stepping_at_once_make_each_delivery_once() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let receiver = Receiver::start(&[]).await;
    let only_succeeded = EnabledEvents::Only(BTreeSet::from([EventType::PaymentSucceeded]));
    let endpoint = endpoint_for(&t, &m, &receiver.url, only_succeeded).await;
    let wanted = 2 * DELIVERIES_PER_STEP + 3;
    let (range, expected) = history(&t, &m, &other, wanted).await;
    let replay = start_replay(&t, &m, &endpoint, range).await;
    for _ in 0..20 {
        let (a, b) = tokio::join!(
            replay::step_due(&d, &|_, _| false, far()),
            replay::step_due(&d, &|_, _| false, far())
        );
        assert_eq!(a.errors + b.errors, 0);
        if stored(&t, &m, &replay).await.replay.status == ReplayStatus::Done {
            break;
        }
    }
    let record = stored(&t, &m, &replay).await;
    assert_eq!(
        (record.replay.status, record.replay.events),
        (ReplayStatus::Done, wanted as u64)
    );
    let mut made: Vec<_> = deliveries_of(&t, &m, &endpoint)
        .await
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    made.sort();
    assert_eq!(made, expected, "one delivery per event");
}

#[tokio::test]
async fn a_step_whose_answer_was_lost_is_seen_on_the_next_read_and_not_taken_twice() {
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let receiver = Receiver::start(&[]).await;
    let endpoint = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (range, _) = history(&t, &m, &other, DELIVERIES_PER_STEP).await;
    // In range: 20 succeeded + 4 requires_capture of m's.
    let wanted = DELIVERIES_PER_STEP + 4;
    let replay = start_replay(&t, &m, &endpoint, range).await;

    // The step's cursor write commits, and every answer the SDK gets for it is an error.
    proxy.inject(
        Rule::on("PutItem", Fault::ErrorAfterCommit)
            .when_body_contains("REPLAY#")
            .times(10),
    );
    let lost = replay::step_due(&d, &|_, _| false, far()).await;
    proxy.heal();
    assert_eq!((lost.steps, lost.errors), (0, 1));
    assert!(proxy.faulted("PutItem") >= 1);
    let record = stored(&t, &m, &replay).await;
    assert_eq!(record.step, 1, "it committed");

    until_done(&t, &d, &m, &replay, 20).await;
    let log = deliveries_of(&t, &m, &endpoint).await;
    assert_eq!(log.len(), wanted, "each event's delivery made once");
    assert_eq!(receiver.received().len(), wanted);
    assert_eq!(stored(&t, &m, &replay).await.replay.events, wanted as u64);
}

#[tokio::test]
async fn a_step_cut_short_after_its_deliveries_is_taken_again_and_makes_the_rest_once() {
    let (t, proxy) = TestApp::with_faults().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let receiver = Receiver::start(&[]).await;
    let endpoint = endpoint_for(&t, &m, &receiver.url, EnabledEvents::All).await;
    let (range, _) = history(&t, &m, &other, 10).await;
    // In range: 10 succeeded + 2 requires_capture of m's.
    let wanted = 12;
    let replay = start_replay(&t, &m, &endpoint, range).await;

    // The cursor's write is refused (as if the run died right before it): the deliveries made
    // so far stay, the replay does not move on.
    proxy.inject(
        Rule::on("PutItem", Fault::Refuse)
            .when_body_contains("REPLAY#")
            .times(10),
    );
    let cut = replay::step_due(&d, &|_, _| false, far()).await;
    proxy.heal();
    assert_eq!((cut.steps, cut.errors), (0, 1));
    assert_eq!(stored(&t, &m, &replay).await.step, 0);
    assert_eq!(deliveries_of(&t, &m, &endpoint).await.len(), wanted);

    until_done(&t, &d, &m, &replay, 20).await;
    assert_eq!(
        deliveries_of(&t, &m, &endpoint).await.len(),
        wanted,
        "made once"
    );
    assert_eq!(receiver.received().len(), wanted);
    assert_eq!(stored(&t, &m, &replay).await.replay.events, wanted as u64);
}

#[tokio::test]
async fn a_disabled_endpoints_replay_waits_and_a_deleted_ones_ends() {
    let t = TestApp::new().await;
    let d = deliverer(&t);
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let endpoint = endpoint_for(&t, &m, "https://example.com/hooks", EnabledEvents::All).await;
    let (range, _) = history(&t, &m, &other, 2).await;
    let replay = start_replay(&t, &m, &endpoint, range).await;

    let mut disabled = endpoint.clone();
    disabled.status = EndpointStatus::Disabled;
    t.store()
        .replace_endpoint(&m.id, 1, &disabled, None)
        .await
        .unwrap();
    let waiting = replay::step_due(&d, &|_, _| false, far()).await;
    assert_eq!((waiting.steps, waiting.waiting), (0, 1));
    assert!(deliveries_of(&t, &m, &endpoint).await.is_empty());

    assert!(t
        .store()
        .delete_endpoint(&m.id, &endpoint.id)
        .await
        .unwrap());
    let ended = replay::step_due(&d, &|_, _| false, far()).await;
    assert_eq!((ended.steps, ended.finished, ended.deliveries), (1, 1, 0));
    let record = stored(&t, &m, &replay).await;
    assert_eq!(
        (record.replay.status, record.replay.events),
        (ReplayStatus::Done, 0)
    );
    let again = replay::step_due(&d, &|_, _| false, far()).await;
    assert_eq!(again, replay::ReplayReport::default(), "out of the index");
}
