//! How fast a data migration goes (README, "Upgrades"): `ITEMS` events in the shape commit
//! d715663 wrote (no index keys) on DynamoDB Local, migrated by the runner with 4 scan segments
//! and no pacing; prints items/s, the capacity units each item cost, and what 10 million items
//! would take at the default pace (a tenth of an on-demand table's 4,000 units/s baseline),
//! where the pace, not DynamoDB Local's speed, decides. Timing lives here, never in tests.
//!
//! `cargo run --release -p payments-bench --example migration_throughput` (a local DynamoDB on
//! `PAYMENTS_TEST_DYNAMODB_ADDR`, started when none listens; `make bench` runs it).

use aws_sdk_dynamodb::types::AttributeValue;
use shared::migrations::runner::{self, Progress, RunOptions};
use shared::migrations::{Context, ALL};
use shared::testing::TestApp;
use std::collections::HashMap;
use std::time::Instant;

const ITEMS: usize = 4000;
const SEGMENTS: u32 = 4;
const TEN_MILLION: f64 = 10_000_000.0;
const DEFAULT_SHARE: f64 = 0.1;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let t = TestApp::new().await;
    let store = t.store();
    let merchant = "mer_019ab2c3d4e57f00a1b2c3d4e5f60001";
    let made = Instant::now();
    let items: Vec<HashMap<String, AttributeValue>> = (0..ITEMS)
        .map(|i| {
            let s = |v: String| AttributeValue::S(v);
            let payment = format!("pay_019ab2c3d4e57f00a1b2c{i:011x}");
            HashMap::from([
                (
                    "PK".into(),
                    s(format!("MERCHANT#{merchant}#PAYMENT#{payment}")),
                ),
                ("SK".into(), s(format!("EVENT#{:020}", 1))),
                ("id".into(), s(format!("evt_019ab2c3d4e57f00a1b2c{i:011x}"))),
                ("type".into(), s("payment.succeeded".into())),
                ("payment_id".into(), s(payment)),
                ("created_at".into(), s("2026-11-23T19:00:00.000Z".into())),
                (
                    "data".into(),
                    AttributeValue::M(HashMap::from([(
                        "amount".into(),
                        AttributeValue::N("2500".into()),
                    )])),
                ),
            ])
        })
        .collect();
    shared::testing::put_items(store, &items).await;
    eprintln!(
        "{ITEMS} old events written in {:.1} s",
        made.elapsed().as_secs_f64()
    );

    let options = RunOptions {
        segments: SEGMENTS,
        units_per_second: 0.0,
        ..RunOptions::default()
    };
    let context = Context {
        deadlines: t.app.deadlines(),
    };
    let started = Instant::now();
    let states = runner::run(
        store,
        &context,
        ALL,
        &options,
        t.clock.as_ref(),
        &|_: &Progress| {},
    )
    .await
    .expect("the migrations run");
    let seconds = started.elapsed().as_secs_f64();
    let events = states.iter().find(|s| s.id == "0002-event-index").unwrap();
    assert_eq!(
        (events.changed as usize, events.unreadable),
        (ITEMS, 0),
        "{states:?}"
    );
    let scanned: u64 = states.iter().map(|s| s.scanned).sum();
    // Per item and migration: a scanned item costs half a read unit per 4 KB (eventually
    // consistent Scan), a changed one a write unit per 1 KB; these events are under 1 KB.
    let units_per_item = 0.5 + 1.0;
    let pace = DEFAULT_SHARE * runner::ON_DEMAND_BASELINE_UNITS;
    let hours = TEN_MILLION * units_per_item / pace / 3600.0;
    println!(
        "migration: {ITEMS} items changed, {scanned} scans of items over {} migrations, in {seconds:.1} s: \
         {:.0} items changed/s on DynamoDB Local ({SEGMENTS} segments, unpaced)",
        ALL.len(),
        ITEMS as f64 / seconds
    );
    println!(
        "estimate: 10 million items needing a change at {units_per_item} units each, paced to \
         {:.0}% of an on-demand table's {:.0} units/s = {pace:.0} units/s: {hours:.1} h \
         (each further migration scans again: +{:.1} h per migration at 0.5 units/item)",
        DEFAULT_SHARE * 100.0,
        runner::ON_DEMAND_BASELINE_UNITS,
        TEN_MILLION * 0.5 / pace / 3600.0
    );
}
