//! The expiry sweeper and a capture (or cancel) of the same payment at its deadline: the
//! request decides a moment before `capture_before` (allowed), the sweeper at it (due). Exactly
//! one change is written each round, the loser is refused by the status machine from the
//! winner's state, and the trail shows only the winner.

use expire_authorizations::{sweep, LIMITS};
use serde_json::Value;
use shared::clock::ManualClock;
use shared::domain::{CancellationReason, CaptureMethod, PaymentStatus};
use shared::testing::{parts, request, TestApp};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_and_a_request_at_the_deadline_never_both_win() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let (mut request_won, mut sweeper_won) = (0, 0);
    for round in 0..30u64 {
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let deadline = p.capture_before.expect("a manual payment has a deadline");
        t.clock
            .advance(t.app.authorization_validity - time::Duration::milliseconds(1));
        let (route, won_as) = if round % 2 == 0 {
            ("capture-payment", PaymentStatus::Succeeded)
        } else {
            ("cancel-payment", PaymentStatus::Canceled)
        };
        let change = {
            let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
            tokio::spawn(async move {
                // Staggered a little each round, so the request meets the sweep at different
                // points of its walk over the shards.
                tokio::time::sleep(Duration::from_millis(round % 6 * 3)).await;
                let req = request(route)
                    .bearer(&key)
                    .path_id(&id)
                    .json(&serde_json::json!({}))
                    .build();
                let response = if route == "capture-payment" {
                    capture_payment::capture_payment(&t.app, req).await
                } else {
                    cancel_payment::cancel_payment(&t.app, req).await
                };
                parts(&response)
            })
        };
        let sweeper = {
            let t = t.clone();
            tokio::spawn(async move {
                let clock = ManualClock::new(deadline.as_datetime());
                sweep(
                    t.store(),
                    t.app.processor.as_ref(),
                    &clock,
                    &t.app.deadlines(),
                    LIMITS,
                    Duration::from_secs(60),
                )
                .await
            })
        };
        let ((status, body), report) = (change.await.unwrap(), sweeper.await.unwrap());
        assert_eq!(report.failed, 0, "{report:?}");
        assert!(report.expired <= 1, "{report:?}");
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        match (status, report.expired) {
            (200, 0) => {
                request_won += 1;
                assert_eq!(stored.status, won_as);
                assert_eq!(body, stored.resource());
            }
            (409, 1) => {
                sweeper_won += 1;
                assert_eq!(body["code"], "invalid_state");
                assert_eq!(stored.status, PaymentStatus::Canceled);
                assert_eq!(
                    stored.cancellation_reason,
                    Some(CancellationReason::Expired)
                );
            }
            other => panic!(
                "round {round}: expected exactly one winner, got {other:?} {report:?} {body}"
            ),
        }

        let req = request("list-events")
            .bearer(&m.key)
            .path_id(p.id.as_str())
            .build();
        let (status, trail) = parts(&list_events::list_events(&t.app, req).await);
        assert_eq!(status, 200);
        let events = trail["data"].as_array().expect("events");
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        let second = if stored.status == PaymentStatus::Succeeded {
            "payment.succeeded"
        } else {
            "payment.canceled"
        };
        assert_eq!(types, ["payment.requires_capture", second], "round {round}");
        assert_eq!(events[1]["data"], stored.resource(), "round {round}");
        assert_eq!(events[1]["data"]["capture_before"], Value::Null);
        // Past the deadline now, for the next round's payment to be created after it.
        t.clock.advance(time::Duration::milliseconds(2));
    }
    eprintln!("request won {request_won}, sweeper won {sweeper_won} of 30 rounds");
}
