//! The three ways a `processing` payment can be moved at once (API.md, "Asynchronous
//! outcomes"): a client's capture, the processor's event, and reconciliation's lookup, all on
//! the same payment at the same moment, 20 rounds. Each round exactly one settlement is
//! written (the trail shows `payment.processing` then one `payment.requires_capture`), the
//! capture either finds the payment still processing (409) or captures the settled
//! authorization once (200), nothing answers 5xx, and the invariants hold.

use shared::domain::{CaptureMethod, PaymentStatus, Settlement};
use shared::processor::events::{SandboxEvent, SANDBOX_SIGNATURE_HEADER};
use shared::processor::sandbox::reference_for;
use shared::processor::signature;
use shared::store::DeploymentSecret;
use shared::testing::{parts, request, TestApp};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_event_and_reconciliation_never_apply_twice() {
    let t = Arc::new(TestApp::new().await);
    let m = t.merchant("acme").await;
    let secret = t.store().secret(DeploymentSecret::Sandbox).await.unwrap();
    let (mut captured, mut refused) = (0, 0);
    for round in 0..20u64 {
        // The sandbox approved, the answer was lost: processing, due for reconciliation.
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_processor_timeout")
            .await;
        assert_eq!(p.status, PaymentStatus::Processing);
        t.clock.advance(t.app.reconcile_after);
        let now = shared::clock::Clock::now(t.clock.as_ref());
        let body = serde_json::to_string(&SandboxEvent::settled(
            &reference_for(&p.id),
            &m.id,
            &p.id,
            &Settlement::Approved,
            now.unix_timestamp(),
        ))
        .unwrap();
        let header = signature::sign(&secret, body.as_bytes(), now);
        let stagger = Duration::from_millis(round % 5 * 2);

        let capture = {
            let (t, key, id) = (t.clone(), m.key.clone(), p.id.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(stagger).await;
                let req = request("capture-payment")
                    .bearer(&key)
                    .path_id(&id)
                    .json(&serde_json::json!({}))
                    .build();
                parts(&capture_payment::capture_payment(&t.app, req).await)
            })
        };
        let event = {
            let t = t.clone();
            tokio::spawn(async move {
                let req = request("processor-events")
                    .path_param("processor", "sandbox")
                    .header(SANDBOX_SIGNATURE_HEADER, &header)
                    .raw_body(&body)
                    .build();
                let verifier = processor_events::Verifier::default();
                parts(&processor_events::processor_events(&t.app, &verifier, req).await)
            })
        };
        let reconciliation = {
            let t = t.clone();
            tokio::spawn(async move {
                tokio::time::sleep(stagger / 2).await;
                reconcile_payments::reconcile(
                    &t.app,
                    reconcile_payments::LIMITS,
                    Duration::from_secs(60),
                )
                .await
            })
        };
        let (capture, event, run) = (
            capture.await.unwrap(),
            event.await.unwrap(),
            reconciliation.await.unwrap(),
        );
        assert_eq!(event.0, 200, "round {round}: {event:?}");
        assert_eq!(run.failed, 0, "round {round}: {run:?}");
        assert!(run.settled <= 1, "round {round}: {run:?}");

        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert!(stored.invariants_hold(), "round {round}: {stored:?}");
        let trail = t.event_types(&m, &p.id).await;
        match capture.0 {
            200 => {
                captured += 1;
                assert_eq!(stored.status, PaymentStatus::Succeeded, "round {round}");
                assert_eq!(
                    trail,
                    [
                        "payment.processing",
                        "payment.requires_capture",
                        "payment.succeeded"
                    ],
                    "round {round}"
                );
            }
            409 => {
                refused += 1;
                assert_eq!(capture.1["code"], "invalid_state", "round {round}");
                assert_eq!(
                    stored.status,
                    PaymentStatus::RequiresCapture,
                    "round {round}"
                );
                assert_eq!(
                    trail,
                    ["payment.processing", "payment.requires_capture"],
                    "round {round}"
                );
            }
            other => panic!("round {round}: capture answered {other}: {}", capture.1),
        }
    }
    // Which one wins is the machine's business; each round had exactly one settlement.
    assert_eq!(captured + refused, 20);
}
