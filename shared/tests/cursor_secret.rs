//! The cursor secret (`store::cursor_secret`): made by the deployment's first list request,
//! the same for every container after, and never a value only one container knows, whatever
//! the first proposal's answer was.

use shared::http::ApiError;
use shared::store::{Store, StoreError};
use shared::testing::{dynamodb_client, ensure_local_dynamodb, Fault, Rule, TestApp};

/// A second container's view of the same table, straight to DynamoDB Local.
fn direct(store: &Store) -> Store {
    let addr = ensure_local_dynamodb();
    Store::new(dynamodb_client(&format!("http://{addr}")), store.table())
}

#[tokio::test]
async fn the_first_load_makes_it_and_every_later_one_reads_the_same() {
    let t = TestApp::new().await;
    let first = t.store().cursor_secret().await.expect("made and stored");
    assert!(first.len() >= 32, "32 random bytes at least");
    let again = direct(t.store()).cursor_secret().await.expect("read");
    assert_eq!(first, again);

    // A cursor issued by one container opens in another (a later page may land anywhere).
    let other = TestApp::on_store(direct(t.store()));
    let merchant = t.merchant("m").await.id;
    let issued = t
        .app
        .cursor_codec()
        .await
        .unwrap()
        .issue(&merchant, "payments", "pay_1");
    let opened = other
        .app
        .cursor_codec()
        .await
        .unwrap()
        .open(&issued, &merchant, "payments");
    assert_eq!(opened.unwrap(), "pay_1");

    // Another deployment (table) has its own secret: its cursors do not open here.
    let elsewhere = TestApp::new().await;
    let foreign = elsewhere
        .app
        .cursor_codec()
        .await
        .unwrap()
        .issue(&merchant, "payments", "pay_1");
    assert!(t
        .app
        .cursor_codec()
        .await
        .unwrap()
        .open(&foreign, &merchant, "payments")
        .is_err());
}

#[tokio::test]
async fn first_loads_at_once_agree_on_one_secret() {
    let t = TestApp::new().await;
    let loads = (0..12).map(|_| {
        let store = direct(t.store());
        tokio::spawn(async move { store.cursor_secret().await })
    });
    let mut secrets = Vec::new();
    for load in loads {
        match load.await.unwrap() {
            Ok(secret) => secrets.push(secret),
            // A loaded machine may run a load out of its time budget; that request is a 503
            // and its container loads again next time. It must not have made a second secret.
            Err(StoreError::Unavailable(_)) => {}
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    let stored = direct(t.store()).cursor_secret().await.unwrap();
    assert!(!secrets.is_empty());
    assert!(
        secrets.iter().all(|secret| *secret == stored),
        "one secret for all"
    );
}

#[tokio::test]
async fn a_proposal_whose_answer_was_lost_is_read_back_not_replaced() {
    let (t, proxy) = TestApp::with_faults().await;
    // The put commits and its answer is lost, every attempt the SDK makes: what was stored is
    // one of our proposals, and the load must answer with exactly that.
    proxy.inject(Rule::on("PutItem", Fault::DropResponse));
    let loaded = t
        .store()
        .cursor_secret()
        .await
        .expect("read back after the lost answer");
    proxy.heal();
    assert_eq!(loaded, direct(t.store()).cursor_secret().await.unwrap());
    assert!(proxy.faulted("PutItem") >= 1);
}

#[tokio::test]
async fn when_nothing_could_be_stored_the_load_fails_and_the_next_one_makes_it() {
    let (t, proxy) = TestApp::with_faults().await;
    proxy.inject(Rule::on("PutItem", Fault::Throttle));
    let failed = t.store().cursor_secret().await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    // Nothing of the refused proposal was kept or used: the next load makes one.
    proxy.heal();
    let made = t.store().cursor_secret().await.expect("made");
    assert_eq!(made, direct(t.store()).cursor_secret().await.unwrap());
}

#[tokio::test]
async fn a_list_function_whose_first_load_fails_answers_503_and_recovers() {
    let (t, proxy) = TestApp::with_faults().await;
    let merchant = t.merchant("m").await;
    proxy.inject(Rule::on("PutItem", Fault::Throttle));
    let failed = t.app.cursor_codec().await;
    assert!(
        matches!(failed, Err(ApiError::ServiceUnavailable(_))),
        "{failed:?}"
    );
    proxy.heal();
    let codec = t
        .app
        .cursor_codec()
        .await
        .expect("loaded on the next request");
    let cursor = codec.issue(&merchant.id, "payments", "pay_1");
    assert_eq!(
        codec.open(&cursor, &merchant.id, "payments").unwrap(),
        "pay_1"
    );
    // Loaded once per container: later requests do not read it again.
    let reads = proxy.received("GetItem");
    t.app.cursor_codec().await.unwrap();
    assert_eq!(proxy.received("GetItem"), reads);
}
