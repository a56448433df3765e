//! The rules of the two asynchronous statuses (`requires_action`, `processing`), each stated as
//! a test that fails when the rule is broken: what a create makes of each processor answer,
//! what a settlement does and refuses (a payment only moves forward, so a late or repeated
//! report is refused as stale), what a client may do meanwhile, when an unfinished action is
//! abandoned, and each new clause of `invariants_hold` saying no on its own.

use super::outcome::{Deadlines, NextAction, ProcessorName, ProcessorRef, RedirectToUrl};
use super::payment::tests::{create, request, DEADLINES};
use super::payment::*;
use super::{Authorization, Settlement, Timestamp};
use time::{Duration, OffsetDateTime};

fn at(seconds: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00:00.250 UTC) + Duration::seconds(seconds)
}

fn page() -> NextAction {
    NextAction::RedirectToUrl {
        redirect_to_url: RedirectToUrl {
            url: "https://api.example/sandbox/authenticate/pay_1?token=t".into(),
            return_url: None,
        },
    }
}

fn acting(capture_method: CaptureMethod) -> Payment {
    let p = create(
        request(1000, capture_method),
        Authorization::RequiresAction(page()),
        at(0),
    );
    assert!(p.invariants_hold(), "{p:?}");
    p
}

fn processing(answer: Authorization) -> Payment {
    let p = create(request(1000, CaptureMethod::Automatic), answer, at(0));
    assert!(p.invariants_hold(), "{p:?}");
    p
}

fn declined() -> Settlement {
    Settlement::Declined(Failure {
        code: "authentication_failed".into(),
        message: "no".into(),
    })
}

#[test]
fn a_create_that_needs_the_customer_waits_for_them_until_its_deadline() {
    let p = acting(CaptureMethod::Automatic);
    assert_eq!(p.status, PaymentStatus::RequiresAction);
    assert_eq!(p.next_action, Some(page()));
    assert_eq!(
        p.action_before.unwrap().to_string(),
        "2026-12-02T10:00:00.250Z",
        "creation + the action validity"
    );
    assert_eq!(
        (p.amount_capturable, p.amount_captured, p.capture_before),
        (0, 0, None)
    );
    assert_eq!(p.reconcile, None);
    let json = p.resource();
    assert_eq!(json["status"], "requires_action");
    assert_eq!(json["next_action"]["type"], "redirect_to_url");
    assert_eq!(
        json["processor"],
        serde_json::json!({"name": "sandbox", "reference": "sbx_test"})
    );
    // The timers are the system's own: not in the payment object, nor in its event.
    for internal in ["action_before", "reconcile"] {
        assert!(json.get(internal).is_none(), "{internal} in {json}");
    }
    assert_eq!(
        Event::status_change(&p, at(0)).resource()["type"],
        "payment.requires_action"
    );
}

#[test]
fn a_create_the_processor_has_not_decided_is_processing_and_reconciled() {
    for answer in [Authorization::Processing, Authorization::Unknown] {
        let p = processing(answer.clone());
        assert_eq!(p.status, PaymentStatus::Processing, "{answer:?}");
        let reconcile = p.reconcile.expect("a reconciliation time");
        assert_eq!(reconcile.at.to_string(), "2026-12-01T10:01:00.250Z");
        assert_eq!(reconcile.attempts, 0);
        assert_eq!((p.next_action.clone(), p.action_before), (None, None));
        assert!(p.resource().get("reconcile").is_none());
        assert_eq!(
            Event::status_change(&p, at(0)).resource()["type"],
            "payment.processing"
        );
    }
}

#[test]
fn a_settlement_moves_a_pending_payment_as_a_synchronous_answer_would_have() {
    let later = at(90);
    for pending in [
        acting(CaptureMethod::Automatic),
        processing(Authorization::Unknown),
    ] {
        let done = pending
            .settle(Settlement::Approved, later, &DEADLINES)
            .unwrap();
        assert_eq!(done.status, PaymentStatus::Succeeded);
        assert_eq!((done.amount_captured, done.amount_capturable), (1000, 0));
        assert_eq!(done.updated_at, Timestamp::from_datetime(later));
        assert_eq!(done.created_at, pending.created_at);
        assert_eq!(
            (done.next_action.clone(), done.action_before, done.reconcile),
            (None, None, None)
        );
        assert!(done.invariants_hold());

        let failed = pending.settle(declined(), later, &DEADLINES).unwrap();
        assert_eq!(failed.status, PaymentStatus::Failed);
        assert_eq!(failed.failure.unwrap().code, "authentication_failed");
        assert_eq!((failed.amount_captured, failed.next_action), (0, None));
    }
    let manual = acting(CaptureMethod::Manual)
        .settle(Settlement::Approved, later, &DEADLINES)
        .unwrap();
    assert_eq!(manual.status, PaymentStatus::RequiresCapture);
    assert_eq!(manual.amount_capturable, 1000);
    assert_eq!(
        manual.capture_before.unwrap().to_string(),
        "2026-12-08T10:01:30.250Z",
        "the authorization's life starts when it is granted"
    );
    assert!(manual.invariants_hold());
}

#[test]
fn a_late_or_repeated_report_is_stale() {
    let settled = acting(CaptureMethod::Manual)
        .settle(Settlement::Approved, at(1), &DEADLINES)
        .unwrap();
    let captured = settled.capture(None, at(2)).unwrap();
    let failed = acting(CaptureMethod::Automatic)
        .settle(declined(), at(1), &DEADLINES)
        .unwrap();
    let canceled = acting(CaptureMethod::Automatic)
        .cancel(None, at(1))
        .unwrap();
    for moved_on in [settled, captured, failed, canceled] {
        for report in [Settlement::Approved, declined()] {
            assert!(
                matches!(
                    moved_on.settle(report, at(3), &DEADLINES),
                    Err(TransitionError::InvalidState(_))
                ),
                "{:?} was settled again",
                moved_on.status
            );
        }
    }
}

#[test]
fn while_pending_only_a_cancel_of_an_unfinished_action_is_allowed() {
    let p = acting(CaptureMethod::Manual);
    let canceled = p
        .cancel(Some(CancellationReason::RequestedByCustomer), at(5))
        .unwrap();
    assert_eq!(canceled.status, PaymentStatus::Canceled);
    assert_eq!(
        canceled.cancellation_reason,
        Some(CancellationReason::RequestedByCustomer)
    );
    assert_eq!(
        (canceled.next_action.clone(), canceled.action_before),
        (None, None)
    );
    assert_eq!(canceled.updated_at, Timestamp::from_datetime(at(5)));
    assert!(canceled.invariants_hold());

    let deciding = processing(Authorization::Processing);
    for pending in [p, deciding.clone()] {
        assert!(matches!(
            pending.capture(None, at(5)),
            Err(TransitionError::InvalidState(_))
        ));
        assert!(matches!(
            pending.refund_settled(RefundRequest::default(), at(5)),
            Err(TransitionError::InvalidState(_))
        ));
    }
    assert!(matches!(
        deciding.cancel(None, at(5)),
        Err(TransitionError::InvalidState(_))
    ));
}

#[test]
fn an_action_not_completed_in_time_is_abandoned_by_the_sweeper() {
    let p = acting(CaptureMethod::Automatic);
    let deadline = p.action_before.unwrap().as_datetime();
    assert!(matches!(
        p.expire(deadline - Duration::milliseconds(1)),
        Err(TransitionError::InvalidState(_))
    ));
    let abandoned = p.expire(deadline).unwrap();
    assert_eq!(abandoned.status, PaymentStatus::Canceled);
    assert_eq!(
        abandoned.cancellation_reason,
        Some(CancellationReason::Abandoned)
    );
    assert_eq!(abandoned.updated_at, Timestamp::from_datetime(deadline));
    assert!(abandoned.invariants_hold());
    // The customer may still answer until the sweeper comes: the payment is still pending.
    assert!(p.settle(Settlement::Approved, deadline, &DEADLINES).is_ok());
    // Processing payments never lapse: money is never guessed.
    let deciding = processing(Authorization::Unknown);
    assert!(deciding.expire(at(365 * 24 * 3600)).is_err());
}

/// Each case breaks exactly one of the pending states' clauses of `invariants_hold`, from a
/// baseline that holds.
#[test]
fn each_pending_clause_alone_makes_invariants_hold_say_no() {
    let succeeded = create(
        request(1000, CaptureMethod::Automatic),
        Authorization::Approved,
        at(0),
    );
    assert!(succeeded.invariants_hold());
    let cases: Vec<(&str, Payment)> = vec![
        (
            "requires_action has a next_action",
            Payment {
                next_action: None,
                ..acting(CaptureMethod::Automatic)
            },
        ),
        (
            "only requires_action has a next_action",
            Payment {
                next_action: Some(page()),
                ..succeeded.clone()
            },
        ),
        (
            "requires_action has a deadline",
            Payment {
                action_before: None,
                ..acting(CaptureMethod::Automatic)
            },
        ),
        (
            "only requires_action has an action deadline",
            Payment {
                action_before: Some(Timestamp::from_datetime(at(1))),
                ..succeeded.clone()
            },
        ),
        (
            "processing has a reconciliation time",
            Payment {
                reconcile: None,
                ..processing(Authorization::Unknown)
            },
        ),
        (
            "only processing has a reconciliation time",
            Payment {
                reconcile: processing(Authorization::Unknown).reconcile,
                ..succeeded.clone()
            },
        ),
        (
            "nothing is captured while pending",
            Payment {
                amount_captured: 1,
                ..processing(Authorization::Unknown)
            },
        ),
        (
            "a pending payment has a processor reference",
            Payment {
                processor: ProcessorRef {
                    name: ProcessorName::Sandbox,
                    reference: None,
                },
                ..acting(CaptureMethod::Automatic)
            },
        ),
    ];
    for (clause, broken) in cases {
        assert!(!broken.invariants_hold(), "{clause}: {broken:?}");
    }
}

/// Payments stored before these statuses existed have none of their attributes: they read back
/// as the sandbox's, with no reference (expand before migrate, API.md "Upgrades").
#[test]
fn a_payment_stored_before_processors_had_references_reads_back() {
    let stored = serde_json::json!({
        "id": "pay_0192c3d4e5f67890abcdef0123456789", "amount": 500, "currency": "USD",
        "status": "succeeded", "capture_method": "automatic", "payment_method": "pm_card_visa",
        "amount_capturable": 0, "amount_captured": 500, "amount_refunded": 0,
        "description": null, "metadata": {}, "failure": null, "cancellation_reason": null,
        "created_at": "2026-11-23T19:00:00.123Z", "updated_at": "2026-11-23T19:00:00.123Z"});
    let p: Payment = serde_json::from_value(stored).unwrap();
    assert_eq!(p.processor, ProcessorRef::default());
    assert_eq!(
        (
            p.next_action.clone(),
            p.return_url.clone(),
            p.action_before,
            p.reconcile
        ),
        (None, None, None, None)
    );
    assert!(p.invariants_hold());
    let json = p.resource();
    assert_eq!(
        json["processor"],
        serde_json::json!({"name": "sandbox", "reference": null})
    );
    assert_eq!(json["next_action"], serde_json::Value::Null);
}

#[test]
fn a_lookup_that_learns_nothing_asks_again_later_and_later() {
    let p = processing(Authorization::Unknown);
    let mut waits = Vec::new();
    let mut current = p.clone();
    for n in 1..=10 {
        let now = at(n * 10);
        let next = current.reconcile_later(now, &DEADLINES).unwrap();
        let reconcile = next.reconcile.unwrap();
        assert_eq!(reconcile.attempts, n as u32);
        waits.push(
            (reconcile.at.as_datetime() - Timestamp::from_datetime(now).as_datetime())
                .whole_seconds(),
        );
        // Nothing a client sees moves.
        assert_eq!(next.resource(), current.resource());
        assert!(next.invariants_hold());
        current = next;
    }
    assert_eq!(
        waits,
        [120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600, 3600]
    );
    for settled in [
        create(
            request(1000, CaptureMethod::Automatic),
            Authorization::Approved,
            at(0),
        ),
        acting(CaptureMethod::Automatic),
    ] {
        assert!(matches!(
            settled.reconcile_later(at(1), &DEADLINES),
            Err(TransitionError::InvalidState(_))
        ));
    }
    let saturated = Payment {
        reconcile: Some(super::outcome::Reconcile {
            at: Timestamp::from_datetime(at(0)),
            attempts: u32::MAX,
            since: None,
        }),
        ..p
    };
    let next = saturated.reconcile_later(at(0), &DEADLINES).unwrap();
    assert_eq!(next.reconcile.unwrap().attempts, u32::MAX);
}

#[test]
fn deadlines_default_to_the_deployed_values() {
    assert_eq!(
        Deadlines::default(),
        Deadlines {
            authorization: Duration::days(7),
            action: Duration::hours(24),
            reconcile: Duration::minutes(1),
        }
    );
}
