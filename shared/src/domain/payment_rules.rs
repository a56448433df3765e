//! The money rules of `payment.rs`, each stated as a test that fails when the rule is broken.
//!
//! They exist because mutation testing (`make mutants`, bench/MUTANTS.md) showed the tests
//! beside the status machine blind to these bugs: `invariants_hold` returning `true` for any
//! payment (every property test that asserts it would then prove nothing), refunding exactly
//! what is left refused, `updated_at` left behind by a transition, and a parse arm deleted.
//! So every clause of `invariants_hold` has a payment that breaks it alone, and the boundaries
//! that must hold are shown holding.

use super::payment::tests::{create, request};
use super::payment::*;
use super::{Amount, Authorization, Timestamp};
use time::{Duration, OffsetDateTime};

fn at(seconds: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00:00 UTC) + Duration::seconds(seconds)
}

fn new_payment(amount: i64, capture_method: CaptureMethod) -> Payment {
    create(
        request(amount, capture_method),
        Authorization::Approved,
        at(0),
    )
}

fn refund_of(amount: Option<i64>) -> RefundRequest {
    RefundRequest {
        amount: amount.map(|a| Amount::parse(a).unwrap()),
        ..Default::default()
    }
}

/// A succeeded payment of 1000 with 400 refunded: every money clause holds, none with room
/// to spare on the side a broken payment below crosses.
fn succeeded() -> Payment {
    let p = new_payment(1000, CaptureMethod::Automatic);
    let (p, _) = p.refund_settled(refund_of(Some(400)), at(0)).unwrap();
    assert!(p.invariants_hold(), "the baseline itself must hold: {p:?}");
    p
}

fn waiting() -> Payment {
    let p = new_payment(1000, CaptureMethod::Manual);
    assert!(p.invariants_hold(), "the baseline itself must hold: {p:?}");
    p
}

#[test]
fn the_boundaries_of_every_clause_hold() {
    // refunded == captured == amount: fully captured, fully refunded.
    let full = Payment {
        amount_refunded: 1000,
        ..succeeded()
    };
    assert!(full.invariants_hold(), "{full:?}");
    // Nothing refunded (0 ≤ refunded at its bound).
    let none = Payment {
        amount_refunded: 0,
        ..succeeded()
    };
    assert!(none.invariants_hold(), "{none:?}");
    // Nothing captured: a failed or canceled payment.
    let nothing = Payment {
        status: PaymentStatus::Failed,
        amount_captured: 0,
        amount_refunded: 0,
        ..succeeded()
    };
    assert!(nothing.invariants_hold(), "{nothing:?}");
    // All of it capturable while waiting, and none of it (a waiting payment with 0 left
    // capturable cannot exist by the API, but the invariants allow it).
    assert!(waiting().invariants_hold());
    assert_eq!(waiting().amount_capturable, 1000);
    let empty_wait = Payment {
        amount_capturable: 0,
        ..waiting()
    };
    assert!(empty_wait.invariants_hold(), "{empty_wait:?}");
}

/// Each case breaks exactly one clause of `invariants_hold`; the baseline it starts from
/// holds (checked in the baselines), so `false` can only come from the clause named.
#[test]
fn each_clause_alone_makes_invariants_hold_say_no() {
    let cases: Vec<(&str, Payment)> = vec![
        (
            "0 ≤ amount_refunded",
            Payment {
                amount_refunded: -1,
                ..succeeded()
            },
        ),
        (
            "amount_refunded ≤ amount_captured",
            Payment {
                amount_refunded: 1001,
                amount_captured: 1000,
                ..succeeded()
            },
        ),
        (
            "amount_refunded ≤ amount_captured (partial capture)",
            Payment {
                amount_captured: 600,
                amount_refunded: 601,
                ..succeeded()
            },
        ),
        (
            "amount_captured ≤ amount",
            Payment {
                amount_captured: 1001,
                amount_refunded: 0,
                ..succeeded()
            },
        ),
        (
            "0 ≤ amount_capturable",
            Payment {
                amount_capturable: -1,
                ..waiting()
            },
        ),
        (
            "amount_capturable ≤ amount",
            Payment {
                amount_capturable: 1001,
                ..waiting()
            },
        ),
        (
            "amount_capturable > 0 only in requires_capture",
            Payment {
                amount_capturable: 1,
                ..succeeded()
            },
        ),
        (
            "a waiting payment has a capture_before",
            Payment {
                capture_before: None,
                ..waiting()
            },
        ),
        (
            "only a waiting payment has a capture_before",
            Payment {
                capture_before: Some(Timestamp::from_datetime(at(60))),
                ..succeeded()
            },
        ),
    ];
    for (clause, broken) in cases {
        assert!(
            !broken.invariants_hold(),
            "{clause} is broken and invariants_hold said yes: {broken:?}"
        );
    }
}

#[test]
fn refunding_exactly_what_is_left_is_allowed_and_one_more_is_not() {
    let p = succeeded(); // 1000 captured, 400 refunded: 600 left
    assert_eq!(p.refundable(), 600);
    let (after, refund) = p.refund_settled(refund_of(Some(600)), at(1)).unwrap();
    assert_eq!(
        (refund.amount.minor_units(), after.amount_refunded),
        (600, 1000)
    );
    assert!(after.invariants_hold());
    assert!(matches!(
        p.refund_settled(refund_of(Some(601)), at(1)),
        Err(TransitionError::AmountTooLarge(_))
    ));
}

#[test]
fn capturing_exactly_what_is_capturable_is_allowed_and_one_more_is_not() {
    let p = waiting();
    let captured = p
        .capture(Some(Amount::parse(1000).unwrap()), at(1))
        .unwrap();
    assert_eq!(captured.amount_captured, 1000);
    assert!(matches!(
        p.capture(Some(Amount::parse(1001).unwrap()), at(1)),
        Err(TransitionError::AmountTooLarge(_))
    ));
}

#[test]
fn every_transition_moves_updated_at_to_its_own_instant_and_keeps_created_at() {
    let later = at(90);
    let expiry = waiting().capture_before.unwrap().as_datetime();
    let transitions: Vec<(&str, Payment, OffsetDateTime)> = vec![
        ("capture", waiting().capture(None, later).unwrap(), later),
        ("cancel", waiting().cancel(None, later).unwrap(), later),
        (
            "refund",
            succeeded()
                .refund_settled(refund_of(Some(1)), later)
                .unwrap()
                .0,
            later,
        ),
        ("expire", waiting().expire(expiry).unwrap(), expiry),
    ];
    for (name, after, when) in transitions {
        assert_eq!(
            after.updated_at,
            Timestamp::from_datetime(when),
            "{name} left updated_at behind"
        );
        assert_eq!(
            after.created_at,
            Timestamp::from_datetime(at(0)),
            "{name} moved created_at"
        );
    }
    let (_, refund) = succeeded()
        .refund_settled(refund_of(Some(1)), later)
        .unwrap();
    assert_eq!(refund.created_at, Timestamp::from_datetime(later));
}

#[test]
fn every_wire_name_parses_to_its_own_variant() {
    assert_eq!(
        CaptureMethod::parse("automatic").unwrap(),
        CaptureMethod::Automatic
    );
    assert_eq!(
        CaptureMethod::parse("manual").unwrap(),
        CaptureMethod::Manual
    );
    for (wire, reason) in [
        ("duplicate", CancellationReason::Duplicate),
        ("fraudulent", CancellationReason::Fraudulent),
        (
            "requested_by_customer",
            CancellationReason::RequestedByCustomer,
        ),
        ("abandoned", CancellationReason::Abandoned),
    ] {
        assert_eq!(CancellationReason::parse(wire).unwrap(), reason, "{wire}");
        assert_eq!(serde_json::to_value(reason).unwrap(), wire);
    }
    for (wire, reason) in [
        ("duplicate", RefundReason::Duplicate),
        ("fraudulent", RefundReason::Fraudulent),
        ("requested_by_customer", RefundReason::RequestedByCustomer),
    ] {
        assert_eq!(RefundReason::parse(wire).unwrap(), reason, "{wire}");
        assert_eq!(serde_json::to_value(reason).unwrap(), wire);
    }
    // Wire names are exact: no case folding, no other spellings.
    for refused in ["", "Manual", "AUTOMATIC", "auto"] {
        assert!(CaptureMethod::parse(refused).is_err(), "{refused:?}");
    }
    for refused in ["", "Duplicate", "expired", "other"] {
        assert!(CancellationReason::parse(refused).is_err(), "{refused:?}");
    }
    for refused in ["", "abandoned", "expired", "Fraudulent"] {
        assert!(RefundReason::parse(refused).is_err(), "{refused:?}");
    }
}
