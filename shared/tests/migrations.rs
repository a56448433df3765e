//! The migration runner against DynamoDB Local, with items in the shapes older versions wrote
//! (made here by removing what the current code adds): a run killed mid-segment goes on from its
//! checkpoint, two runners at once apply each item once, a capture that commits while the
//! migration is deciding is never overwritten, and the runner's lease keeps a second run out.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::domain::{CaptureMethod, PaymentStatus};
use shared::migrations::runner::{self, Progress, RunError, RunOptions};
use shared::migrations::{Context, ALL};
use shared::store::{EventFilter, Store};
use shared::testing::faults::{Fault, Rule};
use shared::testing::{TestApp, TestMerchant};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn options(segments: u32, page: i32) -> RunOptions {
    RunOptions {
        segments,
        page,
        units_per_second: 0.0, // not paced: the tests measure behaviour, not speed
        lease: time::Duration::seconds(2),
        wait: Duration::ZERO,
    }
}

fn context(t: &TestApp) -> Context {
    Context {
        deadlines: t.app.deadlines(),
    }
}

fn quiet(_: &Progress) {}

/// Removes `attributes` from the item: what an older version wrote.
async fn strip(store: &Store, pk: &str, sk: &str, attributes: &[&str]) {
    let names: HashMap<String, String> = attributes
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("#a{i}"), (*a).to_owned()))
        .collect();
    let expression = format!(
        "REMOVE {}",
        (0..attributes.len())
            .map(|i| format!("#a{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("PK", AttributeValue::S(pk.into()))
        .key("SK", AttributeValue::S(sk.into()))
        .update_expression(expression)
        .set_expression_attribute_names(Some(names))
        .send()
        .await
        .unwrap();
}

/// `n` payments of `m` whose first events have no index keys (as before the event index).
async fn old_events(t: &TestApp, m: &TestMerchant, n: usize) {
    for _ in 0..n {
        let p = t
            .payment(m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let pk = format!("MERCHANT#{}#PAYMENT#{}", m.id, p.id);
        strip(
            t.store(),
            &pk,
            &format!("EVENT#{:020}", 1),
            &["GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "merchant_id"],
        )
        .await;
    }
}

async fn listed_events(t: &TestApp, m: &TestMerchant) -> usize {
    t.store()
        .list_merchant_events(&m.id, EventFilter::All, 100, None)
        .await
        .unwrap()
        .items
        .len()
}

/// The keys of the items the UpdateItems the proxy got after the first `skip` (the test's own
/// set-up) were for, with how many times.
fn updates_per_item(
    proxy: &shared::testing::faults::FaultProxy,
    skip: usize,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for body in proxy.requests("UpdateItem").into_iter().skip(skip) {
        let key: &Value = &body["Key"];
        let pk = key["PK"]["S"].as_str().unwrap_or_default();
        if pk == runner::PARTITION {
            continue;
        }
        *counts
            .entry(format!(
                "{pk}|{}",
                key["SK"]["S"].as_str().unwrap_or_default()
            ))
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn old_events_get_their_index_keys_once_and_a_second_run_changes_nothing() {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    old_events(&t, &m, 30).await;
    let setup = proxy.requests("UpdateItem").len();
    assert_eq!(listed_events(&t, &m).await, 0);

    let states = runner::run(
        t.store(),
        &context(&t),
        ALL,
        &options(3, 7),
        t.clock.as_ref(),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(listed_events(&t, &m).await, 30);
    let events = states.iter().find(|s| s.id == "0002-event-index").unwrap();
    assert_eq!(
        (events.status.as_str(), events.changed, events.unreadable),
        ("done", 30, 0)
    );
    assert_eq!(events.segments_done, 3);
    assert!(states.iter().all(|s| s.status == "done"), "{states:?}");
    let updates = updates_per_item(&proxy, setup);
    assert_eq!(updates.len(), 30);
    assert!(updates.values().all(|&n| n == 1), "{updates:?}");

    // A second run: everything done, nothing scanned or written again.
    let scans = proxy.received("Scan");
    let again = runner::run(
        t.store(),
        &context(&t),
        ALL,
        &options(3, 7),
        t.clock.as_ref(),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(again, states);
    assert_eq!(proxy.received("Scan"), scans);
    assert_eq!(updates_per_item(&proxy, setup), updates);
}

#[tokio::test]
async fn a_run_killed_mid_segment_goes_on_from_its_checkpoint_without_redoing_or_skipping() {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    old_events(&t, &m, 40).await;
    let setup = proxy.requests("UpdateItem").len();
    // Killed after its third page: the run's future is dropped where it stands (as a process
    // that dies), its lease left to lapse.
    let pages = Arc::new(AtomicUsize::new(0));
    let (ctx, opts) = (context(&t), options(1, 5));
    {
        let counter = pages.clone();
        let progress = move |_: &Progress| {
            counter.fetch_add(1, Ordering::SeqCst);
        };
        let run = runner::run(t.store(), &ctx, ALL, &opts, t.clock.as_ref(), &progress);
        tokio::select! {
            _ = run => panic!("the run finished before it was killed"),
            () = async {
                while pages.load(Ordering::SeqCst) < 3 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } => {}
        }
    }
    let before = runner::status(t.store(), ALL).await.unwrap();
    let first = before
        .iter()
        .find(|s| s.status == "running")
        .expect("one in progress");
    assert!(first.scanned > 0, "{first:?}");

    // A second runner meanwhile is refused by the lease, and names it.
    let busy = runner::run(
        t.store(),
        &context(&t),
        ALL,
        &options(1, 5),
        t.clock.as_ref(),
        &quiet,
    )
    .await;
    assert!(matches!(busy, Err(RunError::Busy { .. })), "{busy:?}");

    // Once the lease has lapsed, a run takes over and finishes.
    t.clock.advance(time::Duration::seconds(3));
    let scans_before = proxy.received("Scan");
    let states = runner::run(
        t.store(),
        &context(&t),
        ALL,
        &options(1, 5),
        t.clock.as_ref(),
        &quiet,
    )
    .await
    .unwrap();
    assert!(states.iter().all(|s| s.status == "done"), "{states:?}");
    let resumed_state = states.iter().find(|s| s.id == first.id).unwrap();
    assert_eq!(
        resumed_state.started_at, first.started_at,
        "a resumed migration keeps the time it first started"
    );
    assert!(resumed_state.finished_at > resumed_state.started_at);
    assert_eq!(listed_events(&t, &m).await, 40, "nothing skipped");
    // It went on from the checkpoint: its first Scan of that migration carried a start key.
    let resumed = proxy.requests("Scan")[scans_before..]
        .iter()
        .any(|scan| scan.get("ExclusiveStartKey").is_some());
    assert!(resumed, "the resumed run started from the checkpoint");
    let updates = updates_per_item(&proxy, setup);
    assert_eq!(updates.len(), 40);
    // An item is written once; only one whose write the kill interrupted may see a second,
    // refused by its guard.
    assert!(
        updates.values().filter(|&&n| n > 1).count() <= 1,
        "{updates:?}"
    );
    assert!(updates.values().all(|&n| n <= 2), "{updates:?}");
}

#[tokio::test]
async fn two_runners_at_once_apply_each_item_once() {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    old_events(&t, &m, 25).await;
    let setup = proxy.requests("UpdateItem").len();
    let waiting = RunOptions {
        wait: Duration::from_secs(30),
        ..options(2, 4)
    };
    let ctx = context(&t);
    let (a, b) = tokio::join!(
        runner::run(t.store(), &ctx, ALL, &waiting, t.clock.as_ref(), &quiet),
        runner::run(t.store(), &ctx, ALL, &waiting, t.clock.as_ref(), &quiet),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both see the same finished migrations");
    assert_eq!(listed_events(&t, &m).await, 25);
    let updates = updates_per_item(&proxy, setup);
    assert_eq!(updates.len(), 25);
    assert!(updates.values().all(|&n| n == 1), "{updates:?}");
}

#[tokio::test]
async fn an_old_authorization_gets_its_deadline_and_a_capture_during_the_migration_is_never_overwritten(
) {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    let old = |p: &shared::domain::Payment| format!("MERCHANT#{}#PAYMENT#{}", m.id, p.id);
    let open = t
        .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
        .await;
    let raced = t
        .payment(&m, 2000, CaptureMethod::Manual, "pm_card_visa")
        .await;
    for p in [&open, &raced] {
        strip(
            t.store(),
            &old(p),
            "PAYMENT",
            &["capture_before", "GSI3PK", "GSI3SK"],
        )
        .await;
    }
    // The migration's write of `raced` waits 3 s at the proxy; the capture commits meanwhile.
    proxy.inject(
        Rule::on("UpdateItem", Fault::Delay(Duration::from_secs(3)))
            .when_body_contains(raced.id.as_str())
            .times(1),
    );
    let (ctx, opts) = (context(&t), options(1, 100));
    let migrate = runner::run(t.store(), &ctx, ALL, &opts, t.clock.as_ref(), &quiet);
    let capture = async {
        // Once the migration's write of `raced` is being held (decided from what it scanned),
        // the capture commits.
        while proxy.faulted("UpdateItem") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t.change(&m, &raced.id, |p, now| {
            p.capture(None, now).map(|p| (p, None))
        })
        .await;
    };
    let (states, ()) = tokio::join!(migrate, capture);
    let states = states.unwrap();
    assert_eq!(
        proxy.faulted("UpdateItem"),
        1,
        "the migration's write was held back"
    );
    let expiry = states
        .iter()
        .find(|s| s.id == "0001-authorization-expiry")
        .unwrap();
    assert_eq!(
        (expiry.status.as_str(), expiry.changed),
        ("done", 1),
        "{states:?}"
    );

    let captured = t
        .store()
        .get_payment(&m.id, &raced.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        captured.status,
        PaymentStatus::Succeeded,
        "the capture stands"
    );
    assert_eq!(
        (captured.amount_captured, captured.capture_before),
        (2000, None)
    );
    assert!(captured.invariants_hold());

    let migrated = t
        .store()
        .get_payment(&m.id, &open.id)
        .await
        .unwrap()
        .unwrap();
    let validity = t.app.deadlines().authorization;
    assert_eq!(
        migrated.capture_before.map(|at| at.as_datetime()),
        Some(open.created_at.as_datetime() + validity)
    );
    assert!(migrated.invariants_hold());
}

#[tokio::test]
async fn a_table_of_an_earlier_version_gets_the_indexes_stream_and_ttl_it_lacks() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let client = shared::testing::dynamodb_client(&format!(
        "http://{}",
        shared::testing::ensure_local_dynamodb()
    ));
    let table = format!("older-{}", uuid_like());
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let string = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    // As commit d715663 made it: the table key and GSI1 only, no stream, no TTL.
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        .attribute_definitions(string("PK"))
        .attribute_definitions(string("SK"))
        .attribute_definitions(string("GSI1PK"))
        .attribute_definitions(string("GSI1SK"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("GSI1")
                .key_schema(key("GSI1PK", KeyType::Hash))
                .key_schema(key("GSI1SK", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let ensured = shared::store::schema::ensure_table(&client, &table)
        .await
        .unwrap();
    assert!(!ensured.created);
    assert_eq!(
        ensured.upgraded,
        ["stream", "index GSI2", "index GSI3", "ttl"],
        "what it lacked, in that order"
    );
    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let mut indexes: Vec<&str> = described
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["GSI1", "GSI2", "GSI3"]);
    assert!(described
        .stream_specification()
        .is_some_and(|s| s.stream_enabled()));

    // Up to date now: nothing more to do.
    let again = shared::store::schema::ensure_table(&client, &table)
        .await
        .unwrap();
    assert_eq!(again.upgraded, Vec::<String>::new());
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn a_run_paced_slower_than_its_lease_keeps_the_lease_and_finishes() {
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    old_events(&t, &m, 2).await;
    // Pages of 3 items at 1.5 units/s, on the real clock: each page's wait (its scan and its
    // checkpoint alone are 4.5 units or more: 3 s) is longer than the 2 s lease, and a second
    // runner keeps trying to take the lease meanwhile. (The renewal comes every 2/3 s: a stall
    // of over a second on a loaded machine still leaves it in time.)
    let clock = shared::clock::SystemClock;
    let slow = RunOptions {
        units_per_second: 1.5,
        lease: time::Duration::seconds(2),
        ..options(1, 3)
    };
    let ctx = context(&t);
    let first = runner::run(t.store(), &ctx, ALL, &slow, &clock, &quiet);
    let rival = async {
        let mut refused = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match runner::run(t.store(), &ctx, ALL, &options(1, 2), &clock, &quiet).await {
                Err(RunError::Busy { .. }) => refused += 1,
                other => return (refused, Some(other)),
            }
        }
        (refused, None)
    };
    let (done, (refused, took_over)) = tokio::join!(first, rival);
    assert!(
        took_over.is_none(),
        "the lease lapsed under a slow run: {took_over:?}"
    );
    assert_eq!(refused, 30);
    let states = done.expect("the lease held throughout");
    assert!(states.iter().all(|s| s.status == "done"), "{states:?}");
    assert_eq!(listed_events(&t, &m).await, 2);
}
