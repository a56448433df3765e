//! One reconciliation run: read every reconciliation shard of the timer index for `processing`
//! payments due a lookup now, oldest first, in bounded batches; for each, ask the processor by
//! the reference stored on the payment (`PaymentProcessor::lookup`), and
//! - settled → apply it with the same conditional transaction as a processor event
//!   (`shared::lifecycle::apply` with `Payment::settle`, its event in the same write); a
//!   processor event that came first makes this a lost race, and the trail shows one change;
//! - not settled (pending, unknown to the processor, or the processor did not answer) → ask
//!   again later, at a doubling interval (`Payment::reconcile_later`: money is never guessed),
//!   and report how long the oldest such payment has waited (`OldestUnknownOutcomeSeconds`,
//!   which the `ReconcileAlarmHours` alarm watches).
//!
//! An index entry only says where to look (the index is eventually consistent): the payment is
//! read consistently and only a `processing` one is looked up. A write whose answer was lost is
//! recognised by its event (a settlement) or harmless (a reschedule is read back next run).

use serde::Serialize;
use shared::domain::{PaymentStatus, Timestamp};
use shared::lifecycle::{self, ChangeError};
use shared::processor::Lookup;
use shared::store::{DueAuthorization, PaymentTimer, StoreError};
pub use shared::sweep::Limits;
use shared::App;
use std::time::Duration;

/// The deployed limits: batches of 25, at most 1,000 a run (each is a processor call).
pub const LIMITS: Limits = Limits {
    batch: 25,
    most: 1_000,
};

/// What one run did; logged as one line and returned as the invocation's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Index entries found due.
    pub due: usize,
    /// Payments settled by what the processor said.
    pub settled: usize,
    /// Payments the processor has not decided (or does not know, or did not answer about):
    /// asked again later.
    pub deferred: usize,
    /// Due entries whose payment had already moved on (an event came first).
    pub moved_on: usize,
    /// Payments that could not be read or written, and index batches that could not be read;
    /// the next run tries again.
    pub failed: usize,
    /// Every shard was read to its end.
    pub complete: bool,
}

/// Reconciles every `processing` payment due at the app clock's time, within `limits` and
/// `budget` (`shared::sweep`).
pub async fn reconcile(app: &App, limits: Limits, budget: Duration) -> ReconcileReport {
    let now = Timestamp::from_datetime(app.clock.now());
    let mut report = ReconcileReport::default();
    let pass = shared::sweep::due_payments(
        &app.store,
        PaymentTimer::Reconcile,
        now,
        limits,
        budget,
        |due| async move {
            let outcome = one(app, &due).await;
            (due, outcome)
        },
        |_, (due, outcome)| match outcome {
            Ok(Done::Settled) => report.settled += 1,
            Ok(Done::Deferred) => report.deferred += 1,
            Ok(Done::MovedOn) => report.moved_on += 1,
            Err(err) => {
                report.failed += 1;
                tracing::warn!(merchant_id = %due.merchant, payment_id = %due.payment, error = %err, "could not reconcile; the next run tries again");
            }
        },
    )
    .await;
    report.due = pass.due;
    report.failed += pass.unreadable;
    report.complete = pass.complete;
    tracing::info!(
        due = report.due,
        settled = report.settled,
        deferred = report.deferred,
        moved_on = report.moved_on,
        failed = report.failed,
        complete = report.complete,
        "reconciliation finished"
    );
    report
}

enum Done {
    Settled,
    Deferred,
    MovedOn,
}

async fn one(app: &App, due: &DueAuthorization) -> Result<Done, ChangeError> {
    let Some(stored) = app
        .store
        .get_payment_versioned(&due.merchant, &due.payment)
        .await?
    else {
        return Ok(Done::MovedOn);
    };
    let payment = &stored.item;
    let reference = match (&payment.status, &payment.processor.reference) {
        (PaymentStatus::Processing, Some(reference)) => reference.clone(),
        _ => return Ok(Done::MovedOn),
    };
    let lookup = app.processor.lookup(&reference).await;
    let deadlines = app.deadlines();
    match lookup {
        Ok(Lookup::Settled(settlement)) => {
            let applied = lifecycle::apply(
                &app.store,
                app.clock.as_ref(),
                &due.merchant,
                &due.payment,
                |payment, now| Ok((payment.settle(settlement.clone(), now, &deadlines)?, None)),
                |_| Ok(None),
            )
            .await;
            match applied {
                Ok(applied) => {
                    shared::metrics::count(shared::metrics::Counter::Reconciled);
                    shared::metrics::payment(&applied.payment);
                    tracing::info!(merchant_id = %due.merchant, payment_id = %due.payment, reference, status = applied.payment.status.as_str(), "settled by reconciliation");
                    Ok(Done::Settled)
                }
                // A processor event (or another run) settled it first.
                Err(ChangeError::Refused(_)) => Ok(Done::MovedOn),
                Err(err) => Err(err),
            }
        }
        other => {
            match &other {
                Ok(Lookup::NotFound) => {
                    tracing::warn!(merchant_id = %due.merchant, payment_id = %due.payment, reference, "the processor has no such authorization; asking again later")
                }
                Err(err) => {
                    tracing::warn!(merchant_id = %due.merchant, payment_id = %due.payment, reference, error = %err, "the processor did not answer; asking again later")
                }
                _ => {}
            }
            let now = app.clock.now();
            let age = (now - payment.created_at.as_datetime()).whole_seconds();
            shared::metrics::unknown_outcome_age(u64::try_from(age).unwrap_or(0));
            let later = payment.reconcile_later(now, &deadlines)?;
            match app
                .store
                .reschedule_payment(&due.merchant, stored.version, &later)
                .await
            {
                Ok(()) => {}
                // Another change came first: the next run reads it.
                Err(StoreError::ConditionFailed) => return Ok(Done::MovedOn),
                Err(err) => return Err(err.into()),
            }
            shared::metrics::count(shared::metrics::Counter::ReconcileDeferred);
            Ok(Done::Deferred)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::clock::Clock;
    use shared::domain::{CaptureMethod, Payment};
    use shared::processor::sandbox::reference_for;
    use shared::testing::{TestApp, TestMerchant};
    use time::Duration as Span;

    const BUDGET: Duration = Duration::from_secs(60);

    async fn timed_out(t: &TestApp, m: &TestMerchant, capture: CaptureMethod) -> Payment {
        let p = t
            .payment(m, 1200, capture, "pm_card_processor_timeout")
            .await;
        assert_eq!(p.status, PaymentStatus::Processing);
        assert_eq!(
            p.processor.reference.as_deref(),
            Some(reference_for(&p.id).as_str())
        );
        p
    }

    async fn stored(t: &TestApp, m: &TestMerchant, p: &Payment) -> Payment {
        t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn an_approval_whose_answer_was_lost_is_found_and_settled_once() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let automatic = timed_out(&t, &m, CaptureMethod::Automatic).await;
        let manual = timed_out(&t, &m, CaptureMethod::Manual).await;

        // Not due yet: nothing is asked.
        let early = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!((early.due, early.settled), (0, 0));

        t.clock.advance(t.app.reconcile_after);
        let run = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!((run.due, run.settled, run.failed), (2, 2, 0), "{run:?}");
        let done = stored(&t, &m, &automatic).await;
        assert_eq!(
            (done.status, done.amount_captured),
            (PaymentStatus::Succeeded, 1200)
        );
        assert!(done.reconcile.is_none() && done.invariants_hold());
        let waiting = stored(&t, &m, &manual).await;
        assert_eq!(waiting.status, PaymentStatus::RequiresCapture);
        assert!(waiting.capture_before.is_some());
        assert_eq!(
            t.event_types(&m, &automatic.id).await,
            ["payment.processing", "payment.succeeded"]
        );

        // Settled payments have left the index: later runs find nothing.
        t.clock.advance(Span::hours(2));
        let again = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!(again.due, 0, "{again:?}");
        assert_eq!(t.event_types(&m, &automatic.id).await.len(), 2);
    }

    #[tokio::test]
    async fn an_outcome_the_processor_does_not_know_is_asked_again_later_and_later() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = timed_out(&t, &m, CaptureMethod::Automatic).await;
        // The sandbox loses its record: the processor has no such authorization. Money is
        // never guessed: the payment stays processing and is asked about again, later.
        t.store()
            .client()
            .delete_item()
            .table_name(t.store().table())
            .key(
                "PK",
                aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "SANDBOX#{}",
                    reference_for(&p.id)
                )),
            )
            .key(
                "SK",
                aws_sdk_dynamodb::types::AttributeValue::S("AUTHORIZATION".into()),
            )
            .send()
            .await
            .unwrap();
        let mut waits = Vec::new();
        for _ in 0..3 {
            let due_at = stored(&t, &m, &p).await.reconcile.unwrap().at;
            t.clock.advance(due_at.as_datetime() - t.clock.now());
            let run = reconcile(&t.app, LIMITS, BUDGET).await;
            assert_eq!((run.due, run.deferred), (1, 1), "{run:?}");
            let after = stored(&t, &m, &p).await;
            assert_eq!(after.status, PaymentStatus::Processing);
            assert_eq!(
                after.resource(),
                p.resource(),
                "nothing a client sees moved"
            );
            let next = after.reconcile.unwrap();
            waits.push((next.at.as_datetime() - due_at.as_datetime()).whole_seconds());
        }
        assert_eq!(waits, [120, 240, 480]);
        assert_eq!(t.event_types(&m, &p.id).await, ["payment.processing"]);
    }

    #[tokio::test]
    async fn a_payment_an_event_settled_first_is_left_alone() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = timed_out(&t, &m, CaptureMethod::Automatic).await;
        // Settled by another path between the index read and the lookup (as a processor event
        // would): the change is written, so the run finds it moved on.
        lifecycle::apply(
            t.store(),
            t.clock.as_ref(),
            &m.id,
            &p.id,
            |payment, now| {
                Ok((
                    payment.settle(
                        shared::domain::Settlement::Approved,
                        now,
                        &t.app.deadlines(),
                    )?,
                    None,
                ))
            },
            |_| Ok(None),
        )
        .await
        .unwrap();
        t.clock.advance(t.app.reconcile_after);
        let run = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!(
            (run.due, run.settled),
            (0, 0),
            "left the index with the change: {run:?}"
        );
        assert_eq!(t.event_types(&m, &p.id).await.len(), 2);
    }
}
