//! The cursor secret (`store::cursor_secret`): made by the admin CLI with the deployment's first
//! merchant, the same for every container after, never a value only one writer knows whatever
//! the proposal's answer was, and read by a list function once per container.

use shared::http::ApiError;
use shared::store::{DeploymentSecret, Store, StoreError};
use shared::testing::{
    dynamodb_client, ensure_local_dynamodb, Fault, FaultProxy, Rule, TestApp, TestTable,
};

/// A second container's view of the same table, straight to DynamoDB Local.
fn direct(store: &Store) -> Store {
    let addr = ensure_local_dynamodb();
    Store::new(dynamodb_client(&format!("http://{addr}")), store.table())
}

/// A fresh table as template.yaml leaves it: no cursor secret yet (deleted when dropped).
async fn bare_table() -> (Store, TestTable) {
    let table = TestTable::create().await;
    (table.store(), table)
}

/// The same table through a fault proxy.
async fn through_faults(store: &Store) -> (Store, FaultProxy) {
    let proxy = FaultProxy::start(ensure_local_dynamodb()).await;
    let proxied = Store::new(dynamodb_client(&proxy.endpoint()), store.table());
    (proxied, proxy)
}

#[tokio::test]
async fn the_admin_makes_it_once_and_every_container_reads_the_same() {
    let (store, _table) = bare_table().await;
    // Before the admin CLI ran: a list function cannot sign, and says what to run.
    match store.secret(DeploymentSecret::Cursor).await {
        Err(StoreError::Internal(text)) => assert!(text.contains("payments-admin"), "{text}"),
        other => panic!("expected an internal error, got {other:?}"),
    }
    let made = store
        .ensure_secret(DeploymentSecret::Cursor)
        .await
        .expect("made and stored");
    assert!(made.len() >= 32, "32 random bytes at least");
    assert_eq!(
        store.ensure_secret(DeploymentSecret::Cursor).await.unwrap(),
        made,
        "made once"
    );
    assert_eq!(
        direct(&store)
            .secret(DeploymentSecret::Cursor)
            .await
            .unwrap(),
        made
    );

    // A cursor issued by one container opens in another (a later page may land anywhere).
    let (one, other) = (
        TestApp::on_store(direct(&store)),
        TestApp::on_store(direct(&store)),
    );
    let merchant = one.merchant("m").await.id;
    let issued = one
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
    let opened = one
        .app
        .cursor_codec()
        .await
        .unwrap()
        .open(&foreign, &merchant, "payments");
    assert!(opened.is_err());
}

#[tokio::test]
async fn ensures_at_once_agree_on_one_secret() {
    let (store, _table) = bare_table().await;
    let ensures = (0..12).map(|_| {
        let store = direct(&store);
        tokio::spawn(async move { store.ensure_secret(DeploymentSecret::Cursor).await })
    });
    let mut secrets = Vec::new();
    for ensure in ensures {
        match ensure.await.unwrap() {
            Ok(secret) => secrets.push(secret),
            // A loaded machine may run one out of its time budget; it must not have made a
            // second secret (checked below).
            Err(StoreError::Unavailable(_)) => {}
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    let stored = store.secret(DeploymentSecret::Cursor).await.unwrap();
    assert!(!secrets.is_empty());
    assert!(
        secrets.iter().all(|secret| *secret == stored),
        "one secret for all"
    );
}

#[tokio::test]
async fn a_proposal_whose_answer_was_lost_is_read_back_not_replaced() {
    let (store, _table) = bare_table().await;
    let (proxied, proxy) = through_faults(&store).await;
    // The put commits and its answer is lost, every attempt the SDK makes: what was stored is
    // our proposal, and the ensure must answer with exactly that.
    proxy.inject(Rule::on("PutItem", Fault::DropResponse));
    let made = proxied
        .ensure_secret(DeploymentSecret::Cursor)
        .await
        .expect("read back after the lost answer");
    assert_eq!(made, store.secret(DeploymentSecret::Cursor).await.unwrap());
    assert!(proxy.faulted("PutItem") >= 1);
}

#[tokio::test]
async fn when_nothing_could_be_stored_the_ensure_fails_and_the_next_one_makes_it() {
    let (store, _table) = bare_table().await;
    let (proxied, proxy) = through_faults(&store).await;
    proxy.inject(Rule::on("PutItem", Fault::Throttle));
    let failed = proxied.ensure_secret(DeploymentSecret::Cursor).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    // Nothing of the refused proposal was kept or used: the next ensure makes one.
    proxy.heal();
    let made = proxied
        .ensure_secret(DeploymentSecret::Cursor)
        .await
        .expect("made");
    assert_eq!(made, store.secret(DeploymentSecret::Cursor).await.unwrap());
}

#[tokio::test]
async fn a_list_function_whose_first_load_fails_answers_503_and_recovers() {
    let (t, proxy) = TestApp::with_faults().await;
    let merchant = t.merchant("m").await;
    proxy.inject(Rule::on("GetItem", Fault::Throttle).when_body_contains("CURSOR_SECRET"));
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

#[tokio::test]
async fn a_list_function_of_a_deployment_without_the_secret_fails_closed() {
    let (store, _table) = bare_table().await;
    let t = TestApp::on_store(store);
    let failed = t.app.cursor_codec().await;
    assert!(matches!(failed, Err(ApiError::Internal(_))), "{failed:?}");
    // Nothing was made behind the admin's back.
    assert!(t.store().secret(DeploymentSecret::Cursor).await.is_err());
}
