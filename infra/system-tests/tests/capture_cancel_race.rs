//! Capture and cancel of one `requires_capture` payment, sent at the same moment: exactly one
//! wins, the other gets 409 `invalid_state`, and the audit trail matches the final status.

use serde_json::Value;
use shared::domain::CaptureMethod;
use shared::testing::{parts, request, TestApp};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_and_cancel_race_has_exactly_one_winner_twenty_times() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let mut winners = (0, 0);
    for _ in 0..20 {
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let capture = {
            let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
            tokio::spawn(async move {
                let req = request("capture-payment")
                    .bearer(&key)
                    .path_id(&id)
                    .json(&serde_json::json!({}))
                    .build();
                parts(&capture_payment::capture_payment(&t.app, req).await)
            })
        };
        let cancel = {
            let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
            tokio::spawn(async move {
                let req = request("cancel-payment")
                    .bearer(&key)
                    .path_id(&id)
                    .json(&serde_json::json!({}))
                    .build();
                parts(&cancel_payment::cancel_payment(&t.app, req).await)
            })
        };
        let (captured, canceled) = (capture.await.unwrap(), cancel.await.unwrap());
        let final_status = match (captured.0, canceled.0) {
            (200, 409) => {
                assert_eq!(canceled.1["code"], "invalid_state");
                winners.0 += 1;
                "succeeded"
            }
            (409, 200) => {
                assert_eq!(captured.1["code"], "invalid_state");
                winners.1 += 1;
                "canceled"
            }
            other => panic!("expected exactly one winner, got {other:?}"),
        };

        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(stored.status.as_str(), final_status);
        let req = request("list-events")
            .bearer(&m.key)
            .path_id(p.id.as_str())
            .build();
        let (status, trail) = parts(&list_events::list_events(&t.app, req).await);
        assert_eq!(status, 200);
        let types: Vec<&str> = trail["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "payment.requires_capture",
                &format!("payment.{final_status}")
            ]
        );
        let last: &Value = &trail["data"][1]["data"];
        assert_eq!(last, &stored.resource());
    }
    assert_eq!(winners.0 + winners.1, 20);
}
