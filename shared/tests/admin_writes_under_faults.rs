//! The admin CLI's writes (`merchants create`, `keys create`) when DynamoDB commits them but the
//! answer is lost: the key is read back, so the operator gets the key that works, and a rerun
//! does not make a second merchant. When even the read-back fails, the error says so honestly.

use shared::domain::{MerchantId, Timestamp};
use shared::http::auth::NewApiKey;
use shared::store::{Merchant, StoreError};
use shared::testing::{Fault, Rule, TestApp};
use time::OffsetDateTime;

fn new_merchant() -> (Merchant, NewApiKey) {
    let now = OffsetDateTime::now_utc();
    let id = MerchantId::generate(now);
    let key = NewApiKey::generate(&id, now).expect("randomness");
    let merchant = Merchant {
        merchant_id: id,
        name: "acme".into(),
        created_at: Timestamp::from_datetime(now),
    };
    (merchant, key)
}

#[tokio::test]
async fn a_merchant_whose_creation_answer_was_lost_is_recognised() {
    let (t, proxy) = TestApp::with_faults().await;
    let (merchant, key) = new_merchant();
    proxy.inject(Rule::on("TransactWriteItems", Fault::DropResponse));
    t.store()
        .create_merchant(&merchant, &key.record)
        .await
        .expect("committed, and recognised as such");
    assert!(proxy.faulted("TransactWriteItems") >= 1);
    proxy.heal();
    let found = t.store().find_api_key(&key.record.key_hash).await.unwrap();
    assert_eq!(found, Some(key.record.clone()));

    // Another key for it, under the same fault: also recognised.
    let second = NewApiKey::generate(&merchant.merchant_id, OffsetDateTime::now_utc()).unwrap();
    proxy.inject(Rule::on("TransactWriteItems", Fault::ErrorAfterCommit));
    t.store()
        .add_api_key(&second.record)
        .await
        .expect("committed, and recognised as such");
    proxy.heal();
    assert!(t
        .store()
        .find_api_key(&second.record.key_hash)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn an_unknown_outcome_is_reported_as_unavailable_not_as_failure() {
    let (t, proxy) = TestApp::with_faults().await;
    let (merchant, key) = new_merchant();
    proxy.inject(Rule::on("TransactWriteItems", Fault::DropResponse));
    proxy.inject(Rule::on("GetItem", Fault::Throttle));
    let outcome = t.store().create_merchant(&merchant, &key.record).await;
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    proxy.heal();
    // It had committed: the key works.
    assert!(t
        .store()
        .find_api_key(&key.record.key_hash)
        .await
        .unwrap()
        .is_some());
}
