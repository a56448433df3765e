//! The upgrade test: a table holding what an earlier version of this project wrote (the dump in
//! infra/upgrade/, made from a stack running that commit by the command the dump names), migrated
//! by the current code. Then the old authorization lapses through the sweeper, the old events are
//! in `GET /events` and `GET /events/{id}`, every payment reads and keeps its invariants, and a
//! second run (its bookkeeping forgotten, so every item is looked at again) changes nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use expire_authorizations::{sweep, LIMITS};
use serde_json::Value;
use shared::clock::ManualClock;
use shared::domain::{CancellationReason, MerchantId, Payment, PaymentId, PaymentStatus};
use shared::migrations::runner::{self, Progress, RunOptions};
use shared::migrations::{Context, ALL};
use shared::store::Store;
use shared::testing::{parts, request, workspace_root, TestApp};
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

struct Dump {
    api_key: String,
    payments: HashMap<String, String>,
    items: Vec<Item>,
}

fn load(commit: &str) -> Dump {
    let path = workspace_root().join(format!("infra/upgrade/{commit}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let dump: Value = serde_json::from_str(&text).unwrap();
    let items = dump["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let item: serde_dynamo::Item = serde_json::from_value(item.clone()).unwrap();
            Item::from(item)
        })
        .collect();
    Dump {
        api_key: dump["api_key"].as_str().unwrap().to_owned(),
        payments: serde_json::from_value(dump["payments"].clone()).unwrap(),
        items,
    }
}

fn sk_of(item: &Item) -> &str {
    item.get("SK")
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

async fn get(t: &TestApp, key: &str, route: &str, id: Option<&str>) -> (u16, Value) {
    let mut req = request(route).bearer(key);
    if let Some(id) = id {
        req = req.path_id(id);
    }
    let response = match route {
        "list-merchant-events" => {
            list_merchant_events::list_merchant_events(&t.app, req.query("limit=100").build()).await
        }
        _ => get_event::get_event(&t.app, req.build()).await,
    };
    parts(&response)
}

async fn migrate(t: &TestApp) -> Vec<runner::MigrationState> {
    let options = RunOptions {
        segments: 3,
        page: 10,
        units_per_second: 0.0,
        ..RunOptions::default()
    };
    let context = Context {
        deadlines: t.app.deadlines(),
    };
    runner::run(
        t.store(),
        &context,
        ALL,
        &options,
        t.clock.as_ref(),
        &|_: &Progress| {},
    )
    .await
    .expect("the migrations run")
}

#[tokio::test]
async fn a_table_written_by_d715663_is_migrated_in_place_and_a_second_run_changes_nothing() {
    let dump = load("d715663");
    let t = TestApp::new().await;
    shared::testing::put_items(t.store(), &dump.items).await;
    let old_events: Vec<&Item> = dump
        .items
        .iter()
        .filter(|i| sk_of(i).starts_with("EVENT#"))
        .collect();
    assert!(old_events.len() >= 8, "the dump holds a history");
    let (status, before) = get(&t, &dump.api_key, "list-merchant-events", None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        before["data"].as_array().unwrap().len(),
        0,
        "old events are not indexed yet"
    );

    let states = migrate(&t).await;
    assert!(
        states
            .iter()
            .all(|s| s.status == "done" && s.unreadable == 0),
        "{states:?}"
    );
    let changed: HashMap<&str, u64> = states.iter().map(|s| (s.id, s.changed)).collect();
    assert_eq!(
        changed["0001-authorization-expiry"], 1,
        "the one open authorization"
    );
    assert_eq!(changed["0002-event-index"], old_events.len() as u64);

    // Every old event is listed and found by its id.
    let (_, listed) = get(&t, &dump.api_key, "list-merchant-events", None).await;
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), old_events.len());
    for event in &old_events {
        let id = event["id"].as_s().unwrap();
        let (status, found) = get(&t, &dump.api_key, "get-event", Some(id)).await;
        assert_eq!(status, 200, "{id}: {found}");
        assert!(listed.contains(&found));
    }

    // Every payment reads as the current code reads it, and keeps the invariants.
    let merchant = MerchantId::parse(
        dump.items
            .iter()
            .find_map(|i| i.get("merchant_id").and_then(|v| v.as_s().ok()))
            .unwrap(),
    )
    .unwrap();
    for id in dump.payments.values() {
        let payment: Payment = t
            .store()
            .get_payment(&merchant, &PaymentId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(payment.invariants_hold(), "{payment:?}");
    }

    // The old authorization lapses at creation + validity, through the sweeper (its index).
    let open = PaymentId::parse(&dump.payments["uncaptured"]).unwrap();
    let payment = t
        .store()
        .get_payment(&merchant, &open)
        .await
        .unwrap()
        .unwrap();
    let deadline = payment.capture_before.expect("a deadline now");
    assert_eq!(
        deadline.as_datetime(),
        payment.created_at.as_datetime() + t.app.authorization_validity
    );
    let report = sweep(
        t.store(),
        t.app.processor.as_ref(),
        &ManualClock::new(deadline.as_datetime()),
        &t.app.deadlines(),
        LIMITS,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!((report.expired, report.failed), (1, 0), "{report:?}");
    let expired = t
        .store()
        .get_payment(&merchant, &open)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.status, PaymentStatus::Canceled);
    assert_eq!(
        expired.cancellation_reason,
        Some(CancellationReason::Expired)
    );
    assert!(expired.invariants_hold());

    // A second run, its bookkeeping forgotten: every item looked at again, none changed.
    forget_migrations(t.store()).await;
    let again = migrate(&t).await;
    assert!(
        again.iter().all(|s| s.status == "done" && s.changed == 0),
        "{again:?}"
    );
    assert!(again.iter().all(|s| s.scanned > 0));
}

/// Deletes the runner's own items (test only): the next run starts every migration over.
async fn forget_migrations(store: &Store) {
    let found = store
        .client()
        .query()
        .table_name(store.table())
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(runner::PARTITION.into()))
        .send()
        .await
        .unwrap();
    for item in found.items.unwrap_or_default() {
        store
            .client()
            .delete_item()
            .table_name(store.table())
            .key("PK", item["PK"].clone())
            .key("SK", item["SK"].clone())
            .send()
            .await
            .unwrap();
    }
}
