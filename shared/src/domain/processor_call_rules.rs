//! The rules of money-moving calls whose processor answer may come late or never: a refund is
//! reserved (`pending`, counted in `amount_refunded`) before the processor is called and
//! settled once; a capture or cancel whose answer was lost is `unconfirmed` (nothing the client
//! sees changes) until the processor's answer is known; a processor-confirmed capture or cancel
//! is recorded even if the authorization lapsed meanwhile. Each new clause of `invariants_hold`
//! is shown saying no on its own.

use super::outcome::{Reconcile, Unconfirmed};
use super::payment::tests::{create, request, DEADLINES};
use super::payment::*;
use super::{Amount, Authorization, RefundId, Timestamp};
use time::{Duration, OffsetDateTime};

fn at(seconds: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00:00.250 UTC) + Duration::seconds(seconds)
}

fn succeeded(amount: i64) -> Payment {
    create(
        request(amount, CaptureMethod::Automatic),
        Authorization::Approved,
        at(0),
    )
}

fn authorized() -> Payment {
    create(
        request(1000, CaptureMethod::Manual),
        Authorization::Approved,
        at(0),
    )
}

fn of(amount: i64) -> RefundRequest {
    RefundRequest {
        amount: Some(Amount::parse(amount).unwrap()),
        ..Default::default()
    }
}

fn reserve(p: &Payment, amount: i64, seconds: i64) -> (Payment, Refund) {
    let (after, refund) = p
        .refund(
            RefundId::generate(at(seconds)),
            of(amount),
            at(seconds),
            &DEADLINES,
        )
        .unwrap();
    assert!(after.invariants_hold(), "{after:?}");
    (after, refund)
}

#[test]
fn a_reserved_refund_is_pending_counted_and_reconciled() {
    let p = succeeded(1000);
    let (after, refund) = reserve(&p, 400, 5);
    assert_eq!(refund.status, RefundStatus::Pending);
    assert_eq!(
        after.amount_refunded, 400,
        "counted before the processor answers"
    );
    assert_eq!(
        after.pending_refunds,
        vec![PendingRefund {
            id: refund.id.clone(),
            amount: refund.amount
        }]
    );
    assert_eq!(
        after.reconcile,
        Some(Reconcile {
            at: Timestamp::from_datetime(at(5) + DEADLINES.reconcile),
            attempts: 0,
            since: Some(Timestamp::from_datetime(at(5))),
        })
    );
    assert_eq!(
        after.awaiting_processor_since(),
        Some(Timestamp::from_datetime(at(5))),
        "the refund's wait, not the payment's age"
    );
    let (later, _) = reserve(&after, 100, 9);
    assert_eq!(
        later.awaiting_processor_since(),
        Some(Timestamp::from_datetime(at(5))),
        "the oldest wait"
    );
    assert_eq!(after.updated_at, Timestamp::from_datetime(at(5)));
    let event = Event::refunded(&after, &refund, at(5));
    assert_eq!(event.event_type, EventType::PaymentRefunded);
    assert_eq!(event.data["refund"]["status"], "pending");
    assert_eq!(event.data["amount_refunded"], 400);
}

#[test]
fn reservations_never_exceed_what_was_captured() {
    let mut p = succeeded(1000);
    let mut reserved = 0;
    for i in 0..10 {
        if let Ok((after, _)) = p.refund(RefundId::generate(at(i)), of(200), at(i), &DEADLINES) {
            p = after;
            reserved += 1;
        }
    }
    assert_eq!(reserved, 5);
    assert_eq!(p.amount_refunded, 1000);
    assert_eq!(p.pending_refunds.len(), 5);
    assert!(p.invariants_hold());
}

#[test]
fn a_settled_refund_keeps_or_releases_its_amount_once() {
    let (p, first) = reserve(&succeeded(1000), 400, 1);
    let (p, second) = reserve(&p, 300, 2);

    let (p, done) = p
        .settle_refund(&first, RefundStatus::Succeeded, at(3))
        .unwrap();
    assert!(p.invariants_hold(), "{p:?}");
    assert_eq!(done.status, RefundStatus::Succeeded);
    assert_eq!(p.amount_refunded, 700);
    assert!(p.reconcile.is_some(), "the second refund is still pending");
    assert_eq!(
        Event::refunded(&p, &done, at(3)).event_type,
        EventType::PaymentRefundUpdated
    );
    assert!(
        matches!(
            p.settle_refund(&first, RefundStatus::Failed, at(4)),
            Err(TransitionError::InvalidState(_))
        ),
        "an answer is applied once"
    );

    let (p, failed) = p
        .settle_refund(&second, RefundStatus::Failed, at(5))
        .unwrap();
    assert!(p.invariants_hold(), "{p:?}");
    assert_eq!(failed.status, RefundStatus::Failed);
    assert_eq!(
        p.amount_refunded, 400,
        "a failed refund releases its amount"
    );
    assert_eq!(p.refundable(), 600);
    assert!(p.pending_refunds.is_empty());
    assert_eq!(p.reconcile, None, "nothing is left to ask");
    assert_eq!(p.updated_at, Timestamp::from_datetime(at(5)));
    assert!(matches!(
        p.settle_refund(
            &Refund {
                id: RefundId::generate(at(6)),
                ..second.clone()
            },
            RefundStatus::Succeeded,
            at(6)
        ),
        Err(TransitionError::InvalidState(_))
    ));
}

#[test]
fn only_the_reserved_refund_as_stored_is_settled() {
    let (p, refund) = reserve(&succeeded(1000), 400, 1);
    for other in [
        Refund {
            amount: Amount::parse(300).unwrap(),
            ..refund.clone()
        },
        Refund {
            status: RefundStatus::Succeeded,
            ..refund.clone()
        },
    ] {
        assert!(matches!(
            p.settle_refund(&other, RefundStatus::Succeeded, at(2)),
            Err(TransitionError::InvalidState(_))
        ));
    }
    let (_, settled) = p
        .settle_refund(&refund, RefundStatus::Succeeded, at(2))
        .unwrap();
    assert_eq!(
        settled,
        Refund {
            status: RefundStatus::Succeeded,
            ..refund
        },
        "the stored refund, with its new status"
    );
}

#[test]
fn a_refund_cannot_be_settled_as_pending() {
    let (p, refund) = reserve(&succeeded(1000), 400, 1);
    assert!(matches!(
        p.settle_refund(&refund, RefundStatus::Pending, at(2)),
        Err(TransitionError::InvalidState(_))
    ));
}

#[test]
fn a_pending_refund_is_reconciled_later_and_later() {
    let (p, _) = reserve(&succeeded(1000), 400, 0);
    let later = p.reconcile_later(at(60), &DEADLINES).unwrap();
    assert_eq!(later.reconcile.unwrap().attempts, 1);
    assert_eq!(
        later.reconcile.unwrap().at,
        Timestamp::from_datetime(at(60) + DEADLINES.reconcile * 2)
    );
    assert_eq!(later.updated_at, p.updated_at, "the client sees no change");
    assert_eq!(
        later.awaiting_processor_since(),
        p.awaiting_processor_since(),
        "a back-off keeps when the wait began"
    );
    assert!(succeeded(1000).reconcile_later(at(60), &DEADLINES).is_err());
}

#[test]
fn an_unconfirmed_capture_changes_nothing_the_client_sees() {
    let p = authorized();
    let amount = Amount::parse(600).unwrap();
    let unsure = p
        .unconfirmed(Unconfirmed::Capture { amount }, at(10), &DEADLINES)
        .unwrap();
    assert!(unsure.invariants_hold(), "{unsure:?}");
    assert_eq!(
        unsure.resource(),
        p.resource(),
        "the API object is unchanged"
    );
    assert_eq!(
        unsure.reconcile.map(|r| r.at),
        Some(Timestamp::from_datetime(at(10) + DEADLINES.reconcile))
    );

    let captured = unsure.confirm_capture(amount, at(20)).unwrap();
    assert!(captured.invariants_hold(), "{captured:?}");
    assert_eq!(captured.status, PaymentStatus::Succeeded);
    assert_eq!(captured.amount_captured, 600);
    assert_eq!((captured.unconfirmed, captured.reconcile), (None, None));

    let nothing = unsure.not_confirmed().unwrap();
    assert!(nothing.invariants_hold(), "{nothing:?}");
    assert_eq!(nothing, p, "as before the call");
    assert!(p.not_confirmed().is_err(), "nothing to clear");

    let canceled = unsure.confirm_cancel(None, at(30)).unwrap();
    assert!(canceled.invariants_hold(), "{canceled:?}");
    assert_eq!((canceled.unconfirmed, canceled.reconcile), (None, None));
}

#[test]
fn only_a_payment_that_can_still_move_is_left_unconfirmed() {
    let amount = Amount::parse(100).unwrap();
    let capture = Unconfirmed::Capture { amount };
    let cancel = Unconfirmed::Cancel { reason: None };
    assert!(succeeded(1000)
        .unconfirmed(capture, at(1), &DEADLINES)
        .is_err());
    assert!(succeeded(1000)
        .unconfirmed(cancel, at(1), &DEADLINES)
        .is_err());
    assert!(authorized().unconfirmed(cancel, at(1), &DEADLINES).is_ok());
}

#[test]
fn a_processor_confirmed_capture_or_cancel_is_recorded_after_the_authorization_lapsed() {
    let p = authorized();
    let lapsed = p.capture_before.unwrap().as_datetime() + Duration::seconds(1);
    assert!(
        p.capture(None, lapsed).is_err(),
        "a client's capture is refused"
    );
    let amount = Amount::parse(1000).unwrap();
    let captured = p.confirm_capture(amount, lapsed).unwrap();
    assert_eq!(captured.status, PaymentStatus::Succeeded);
    assert!(captured.invariants_hold());
    assert!(matches!(
        p.confirm_capture(Amount::parse(1001).unwrap(), lapsed),
        Err(TransitionError::AmountTooLarge(_))
    ));
    let canceled = p
        .confirm_cancel(Some(CancellationReason::Duplicate), lapsed)
        .unwrap();
    assert_eq!(
        canceled.cancellation_reason,
        Some(CancellationReason::Duplicate)
    );
    for done in [captured, canceled] {
        assert!(done.confirm_capture(amount, lapsed).is_err());
        assert!(done.confirm_cancel(None, lapsed).is_err());
    }
}

#[test]
fn the_internal_bookkeeping_stays_out_of_the_payment_object() {
    let (p, _) = reserve(&succeeded(1000), 400, 1);
    let json = p.resource();
    for internal in ["pending_refunds", "unconfirmed", "reconcile"] {
        assert!(json.get(internal).is_none(), "{internal}: {json}");
    }
    let stored = serde_json::to_value(&p).unwrap();
    assert_eq!(stored["pending_refunds"][0]["amount"], 400);
    let back: Payment = serde_json::from_value(stored).unwrap();
    assert_eq!(back, p, "the stored form round-trips");
}

#[test]
fn each_processor_call_clause_alone_makes_invariants_hold_say_no() {
    let (reserved, _) = reserve(&succeeded(1000), 400, 1);
    let unsure = authorized()
        .unconfirmed(
            Unconfirmed::Capture {
                amount: Amount::parse(1000).unwrap(),
            },
            at(1),
            &DEADLINES,
        )
        .unwrap();
    assert!(unsure.invariants_hold());
    let cases: Vec<(&str, Payment)> = vec![
        (
            "a pending refund has a reconciliation time",
            Payment {
                reconcile: None,
                ..reserved.clone()
            },
        ),
        (
            "an unconfirmed capture has a reconciliation time",
            Payment {
                reconcile: None,
                ..unsure.clone()
            },
        ),
        (
            "pending refunds only on a succeeded payment",
            Payment {
                status: PaymentStatus::Canceled,
                ..reserved.clone()
            },
        ),
        (
            "pending refunds are counted in amount_refunded",
            Payment {
                amount_refunded: 399,
                ..reserved.clone()
            },
        ),
        (
            "pending refund ids are distinct",
            Payment {
                pending_refunds: vec![reserved.pending_refunds[0].clone(); 2],
                amount_refunded: 800,
                ..reserved.clone()
            },
        ),
        (
            "an unconfirmed capture only while waiting for capture",
            Payment {
                unconfirmed: unsure.unconfirmed,
                reconcile: unsure.reconcile,
                ..succeeded(1000)
            },
        ),
        (
            "an unconfirmed capture within what is capturable",
            Payment {
                unconfirmed: Some(Unconfirmed::Capture {
                    amount: Amount::parse(1001).unwrap(),
                }),
                ..unsure.clone()
            },
        ),
        (
            "an unconfirmed cancel only while it could be canceled",
            Payment {
                unconfirmed: Some(Unconfirmed::Cancel { reason: None }),
                reconcile: unsure.reconcile,
                ..succeeded(1000)
            },
        ),
    ];
    for (rule, broken) in cases {
        assert!(!broken.invariants_hold(), "{rule}: {broken:?}");
    }
}

#[test]
fn a_settlement_of_the_authorization_ends_an_unconfirmed_cancel_of_it() {
    let action = super::NextAction::RedirectToUrl {
        redirect_to_url: super::RedirectToUrl {
            url: "https://api.example/sandbox/authenticate/pay_1?token=t".into(),
            return_url: None,
        },
    };
    let acting = create(
        request(1000, CaptureMethod::Automatic),
        Authorization::RequiresAction(action),
        at(0),
    );
    let unsure = acting
        .unconfirmed(Unconfirmed::Cancel { reason: None }, at(1), &DEADLINES)
        .unwrap();
    assert!(unsure.invariants_hold(), "{unsure:?}");
    // The processor says the customer authenticated: the cancel did not happen there.
    let settled = unsure
        .settle(super::Settlement::Approved, at(2), &DEADLINES)
        .unwrap();
    assert_eq!(settled.status, PaymentStatus::Succeeded);
    assert_eq!((settled.unconfirmed, settled.reconcile), (None, None));
    assert!(settled.invariants_hold(), "{settled:?}");
}
