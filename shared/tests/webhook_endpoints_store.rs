//! Webhook endpoints in the store, against DynamoDB Local: the 16-endpoint limit holds under
//! concurrency and after lost answers, endpoints and secrets belong to their merchant, and a
//! delete frees its place.

use shared::store::StoreError;
use shared::testing::{Fault, Rule, TestApp, TestMerchant};
use shared::webhooks::endpoint::{WebhookEndpoint, MAX_ENDPOINTS_PER_MERCHANT};
use shared::webhooks::signing::SigningSecret;
use std::sync::Arc;

fn endpoint(t: &TestApp) -> (WebhookEndpoint, SigningSecret) {
    t.new_endpoint("https://example.com/hooks")
}

async fn create(t: &TestApp, m: &TestMerchant) -> Result<WebhookEndpoint, StoreError> {
    let (e, secret) = endpoint(t);
    t.store()
        .create_endpoint(&m.id, &e, &secret, None)
        .await
        .map(|()| e)
}

#[tokio::test]
async fn the_seventeenth_is_refused_and_a_delete_frees_a_place() {
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    let other = t.merchant("other").await;
    let mut made = Vec::new();
    for _ in 0..MAX_ENDPOINTS_PER_MERCHANT {
        t.clock.advance(time::Duration::milliseconds(1));
        made.push(create(&t, &m).await.unwrap());
    }
    assert!(matches!(
        create(&t, &m).await,
        Err(StoreError::ConditionFailed)
    ));
    // Another merchant's limit is its own.
    create(&t, &other).await.unwrap();

    let page = t.store().list_endpoints(&m.id, 100, None).await.unwrap();
    let listed: Vec<_> = page.items.iter().map(|e| e.id.clone()).collect();
    let mut newest_first: Vec<_> = made.iter().map(|e| e.id.clone()).collect();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    // Tenancy: another merchant can neither see nor delete it, nor read its secrets.
    let victim = &made[0];
    assert_eq!(
        t.store().get_endpoint(&other.id, &victim.id).await.unwrap(),
        None
    );
    assert!(!t
        .store()
        .delete_endpoint(&other.id, &victim.id)
        .await
        .unwrap());
    let now = shared::domain::Timestamp::from_datetime(shared::clock::Clock::now(t.clock.as_ref()));
    assert!(t
        .store()
        .endpoint_secrets(&other.id, &victim.id, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        t.store()
            .endpoint_secrets(&m.id, &victim.id, now)
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(t.store().delete_endpoint(&m.id, &victim.id).await.unwrap());
    assert!(
        !t.store().delete_endpoint(&m.id, &victim.id).await.unwrap(),
        "gone already"
    );
    assert_eq!(
        t.store().get_endpoint(&m.id, &victim.id).await.unwrap(),
        None
    );
    assert!(t
        .store()
        .endpoint_secrets(&m.id, &victim.id, now)
        .await
        .unwrap()
        .is_empty());
    create(&t, &m).await.unwrap();
    assert!(matches!(
        create(&t, &m).await,
        Err(StoreError::ConditionFailed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_creates_make_exactly_sixteen() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (t, m) = (t.clone(), m.clone());
            tokio::spawn(async move { create(&t, &m).await })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::ConditionFailed) => refused += 1,
            // On a loaded machine a create can run out of its time budget (DynamoDB Local
            // applies the 20 transactions one by one): its outcome is unknown, and what it did
            // is counted below by what is stored.
            Err(_) => {}
        }
    }
    let stored = || async {
        t.store()
            .list_endpoints(&m.id, 100, None)
            .await
            .unwrap()
            .items
            .len()
    };
    let after_race = stored().await;
    assert!(
        created <= after_race,
        "{created} created, {after_race} stored"
    );
    assert!(
        after_race <= MAX_ENDPOINTS_PER_MERCHANT,
        "{after_race} stored"
    );
    if refused > 0 {
        // Refused only when the counter stood at the limit: the counter moves with the item.
        assert_eq!(after_race, MAX_ENDPOINTS_PER_MERCHANT);
    }
    // What is left under the limit is exactly what the counter says: fill it up, one by one.
    for _ in 0..MAX_ENDPOINTS_PER_MERCHANT {
        if matches!(create(&t, &m).await, Err(StoreError::ConditionFailed)) {
            break;
        }
    }
    assert_eq!(stored().await, MAX_ENDPOINTS_PER_MERCHANT);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_counts_once() {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    proxy.inject(Rule::on("TransactWriteItems", Fault::DropResponse));
    let first = create(&t, &m).await.expect("recognised by its id");
    proxy.heal();
    assert!(t
        .store()
        .get_endpoint(&m.id, &first.id)
        .await
        .unwrap()
        .is_some());
    // The SDK's retries of the lost transaction were de-duplicated: one place taken, not four.
    for _ in 1..MAX_ENDPOINTS_PER_MERCHANT {
        create(&t, &m).await.unwrap();
    }
    assert!(matches!(
        create(&t, &m).await,
        Err(StoreError::ConditionFailed)
    ));
}

#[tokio::test]
async fn after_a_rotation_both_secrets_sign_for_a_day_even_if_the_answer_was_lost() {
    let (t, proxy) = TestApp::with_faults().await;
    let m = t.merchant("acme").await;
    let (e, old) = endpoint(&t);
    t.store()
        .create_endpoint(&m.id, &e, &old, None)
        .await
        .unwrap();
    let now =
        || shared::domain::Timestamp::from_datetime(shared::clock::Clock::now(t.clock.as_ref()));

    let (new, _) = SigningSecret::generate().unwrap();
    // Every answer lost: the SDK retries an UpdateItem that committed; the retry must not push
    // the old secret out.
    proxy.inject(Rule::on("TransactWriteItems", Fault::DropResponse).times(3));
    assert!(t
        .store()
        .rotate_secret(&m.id, &e.id, &new, now(), None)
        .await
        .unwrap());
    proxy.heal();
    assert_eq!(
        t.store()
            .endpoint_secrets(&m.id, &e.id, now())
            .await
            .unwrap(),
        [new.clone(), old.clone()]
    );

    t.clock
        .advance(time::Duration::hours(24) - time::Duration::milliseconds(1));
    assert_eq!(
        t.store()
            .endpoint_secrets(&m.id, &e.id, now())
            .await
            .unwrap()
            .len(),
        2
    );
    t.clock.advance(time::Duration::milliseconds(1));
    assert_eq!(
        t.store()
            .endpoint_secrets(&m.id, &e.id, now())
            .await
            .unwrap(),
        std::slice::from_ref(&new)
    );

    // A second rotation keeps only the one before it; an unknown endpoint is not rotated.
    let (newer, _) = SigningSecret::generate().unwrap();
    assert!(t
        .store()
        .rotate_secret(&m.id, &e.id, &newer, now(), None)
        .await
        .unwrap());
    assert_eq!(
        t.store()
            .endpoint_secrets(&m.id, &e.id, now())
            .await
            .unwrap(),
        [newer, new]
    );
    let other = t.merchant("other").await;
    let (stray, _) = SigningSecret::generate().unwrap();
    assert!(!t
        .store()
        .rotate_secret(&other.id, &e.id, &stray, now(), None)
        .await
        .unwrap());
    assert!(t
        .store()
        .endpoint_secrets(&other.id, &e.id, now())
        .await
        .unwrap()
        .is_empty());
}
