//! An `Idempotency-Key` names one request: method, path and body. Reusing it on another route
//! is refused, and the first request's record is left as it was.

use serde_json::json;
use shared::domain::CaptureMethod;
use shared::testing::{parts, request, TestApp};

#[tokio::test]
async fn the_same_key_on_another_path_is_refused() {
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    let manual = t
        .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
        .await;
    let body = json!({"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"});

    let create = |key: &str| {
        request("create-payment")
            .bearer(&m.key)
            .header("idempotency-key", key)
            .json(&body)
            .build()
    };
    let (status, created) = parts(&create_payment::create_payment(&t.app, create("k-1")).await);
    assert_eq!(status, 201);

    let capture = request("capture-payment")
        .bearer(&m.key)
        .header("idempotency-key", "k-1")
        .path_id(manual.id.as_str())
        .json(&json!({"amount": 500}))
        .build();
    let (status, problem) = parts(&capture_payment::capture_payment(&t.app, capture).await);
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let untouched = t
        .store()
        .get_payment(&m.id, &manual.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.amount_captured, 0);

    // The original request still replays.
    let response = create_payment::create_payment(&t.app, create("k-1")).await;
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(parts(&response).1, created);
}
