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
//! An in-flight authorization (a reference stored before a create confirmed it, never resolved
//! by that create: `shared::store::authorizing`) is in the same shards; once stale, its payment
//! is recorded from what the processor says of it.
//!
//! The same index holds the other waits on the processor (`shared::processor_calls`): a
//! `succeeded` payment's `pending` refunds are sent again under their ids (the processor answers
//! what became of the first call) and settled once; an unconfirmed capture or cancel is
//! resolved by asking the processor what it holds (`PaymentProcessor::held`).
//!
//! An index entry only says where to look (the index is eventually consistent): the payment is
//! read consistently and only a `processing` one is looked up. A write whose answer was lost is
//! recognised by its event (a settlement) or harmless (a reschedule is read back next run).

use serde::Serialize;
use shared::domain::{
    Authorization, Event, Payment, PaymentStatus, ProcessorRef, RefundStatus, Settlement, Timestamp,
};
use shared::lifecycle::{self, ChangeError};
use shared::processor::Lookup;
use shared::processor_calls::{self, Resolved};
use shared::store::{Authorizing, DueAuthorization, PaymentTimer, Started, StoreError, Versioned};
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
    report.failed += pass.unreadable + pass.poison;
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
        return match app.store.started(&due.merchant, &due.payment).await? {
            Started {
                payment: None,
                authorizing: Some(record),
            } => in_flight(app, record).await,
            // Recorded in between (the create finished), or nothing there.
            _ => Ok(Done::MovedOn),
        };
    };
    let payment = &stored.item;
    if payment.status != PaymentStatus::Processing {
        return money_calls(app, due, &stored).await;
    }
    let Some(reference) = payment.processor.reference.clone() else {
        return Ok(Done::MovedOn);
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
            later(app, due, &stored).await
        }
    }
}

/// An authorization whose reference was stored before it was made and whose create never
/// recorded the payment (its function died, or its answer was lost and no keyed retry came):
/// what the processor says of its object is recorded as the payment, with its first event, in
/// the transaction that resolves the record, so a charge is never left unrecorded. Undecided
/// at the processor → `processing` (reconciled from then on like any other); the processor
/// has nothing under the reference → the record is forgotten (no money can have moved).
async fn in_flight(app: &App, record: Authorizing) -> Result<Done, ChangeError> {
    let (merchant, reference) = (record.merchant_id.clone(), record.reference.clone());
    let outcome = match app.processor.lookup(&reference).await {
        Ok(Lookup::Settled(Settlement::Approved)) => Authorization::Approved,
        Ok(Lookup::Settled(Settlement::Declined(failure))) => Authorization::Declined(failure),
        Ok(Lookup::Pending) => Authorization::Unknown,
        Ok(Lookup::NotFound) => {
            tracing::warn!(merchant_id = %merchant, payment_id = %record.id, reference, "the processor has nothing under an in-flight reference; forgetting it");
            app.store.forget_authorizing(&record).await?;
            return Ok(Done::MovedOn);
        }
        Err(err) => {
            tracing::warn!(merchant_id = %merchant, payment_id = %record.id, reference, error = %err, "the processor did not answer about an in-flight authorization; asking again next run");
            return Ok(Done::Deferred);
        }
    };
    let created = record.created_at.as_datetime();
    let payment = Payment::create(
        record.id,
        record.request,
        ProcessorRef::new(record.processor, record.reference),
        outcome,
        created,
        &app.deadlines(),
    );
    let event = Event::status_change(&payment, app.clock.now());
    app.store
        .create_payment(&merchant, &payment, &event, true, None)
        .await?;
    shared::metrics::count(shared::metrics::Counter::Reconciled);
    shared::metrics::payment(&payment);
    tracing::info!(merchant_id = %merchant, payment_id = %payment.id, reference, status = payment.status.as_str(), "in-flight authorization recorded by reconciliation");
    Ok(Done::Settled)
}

/// The payment's refunds still `pending` are sent to the processor again (the same refund
/// ids: it answers what became of each), and an unconfirmed capture or cancel is resolved by
/// asking the processor what it holds (`shared::processor_calls`). What stays unknown is asked
/// again later.
async fn money_calls(
    app: &App,
    due: &DueAuthorization,
    stored: &Versioned<Payment>,
) -> Result<Done, ChangeError> {
    let payment = &stored.item;
    if !payment.awaits_processor() {
        return Ok(Done::MovedOn);
    }
    let (store, processor, clock) = (&app.store, app.processor.as_ref(), app.clock.as_ref());
    let mut unknown = false;
    for refund in &payment.pending_refunds {
        let now =
            processor_calls::send_pending(store, processor, clock, &due.merchant, payment, refund)
                .await?;
        unknown |= now.status == RefundStatus::Pending;
    }
    if payment.unconfirmed.is_some() {
        let resolved =
            processor_calls::resolve_unconfirmed(store, processor, clock, &due.merchant, stored)
                .await;
        match resolved {
            Ok(Resolved::Unknown) => unknown = true,
            Ok(_) => {}
            // Another change came first: the next run reads it.
            Err(ChangeError::Refused(_) | ChangeError::Store(StoreError::ConditionFailed)) => {
                return Ok(Done::MovedOn)
            }
            Err(err) => return Err(err),
        }
    }
    if !unknown {
        shared::metrics::count(shared::metrics::Counter::Reconciled);
        return Ok(Done::Settled);
    }
    // Settled refunds moved the version on: the back-off is written on a fresh read.
    match store
        .get_payment_versioned(&due.merchant, &due.payment)
        .await?
    {
        Some(fresh) if fresh.item.awaits_processor() => later(app, due, &fresh).await,
        _ => Ok(Done::MovedOn),
    }
}

/// Nothing final was learnt: ask again at a doubling interval, and report how long the
/// payment has awaited the processor (since its create, its refund's reservation, or its
/// unconfirmed capture or cancel).
async fn later(
    app: &App,
    due: &DueAuthorization,
    stored: &Versioned<Payment>,
) -> Result<Done, ChangeError> {
    let now = app.clock.now();
    let since = stored
        .item
        .awaiting_processor_since()
        .unwrap_or(stored.item.created_at);
    let age = (now - since.as_datetime()).whole_seconds();
    shared::metrics::unknown_outcome_age(u64::try_from(age).unwrap_or(0));
    let later = stored.item.reconcile_later(now, &app.deadlines())?;
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

    /// A capture whose answer was lost and never retried: reconciliation asks the processor
    /// what it holds. Captured → recorded as a confirmed capture (one event); untouched → the
    /// mark is cleared and the authorization waits again for its deadline.
    #[tokio::test]
    async fn an_unconfirmed_capture_is_resolved_by_what_the_processor_holds() {
        use shared::domain::Amount;
        use shared::testing::{Call, ProcessorFault};
        let mut t = TestApp::new().await;
        let faults = t.with_processor_faults();
        let m = t.merchant("acme").await;
        let acted = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let never = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        faults.inject(Call::Capture, ProcessorFault::AfterActing, 1);
        let amount = Some(Amount::parse(400).unwrap());
        let lost = processor_calls::capture(&t.app, &m.id, &acted.id, amount).await;
        assert!(lost.is_err());
        faults.inject(Call::Capture, ProcessorFault::BeforeActing, 1);
        assert!(processor_calls::capture(&t.app, &m.id, &never.id, amount)
            .await
            .is_err());
        for p in [&acted, &never] {
            assert!(stored(&t, &m, p).await.unconfirmed.is_some());
        }

        t.clock.advance(Span::minutes(2));
        let report = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!(
            (report.due, report.settled, report.failed),
            (2, 2, 0),
            "{report:?}"
        );
        let captured = stored(&t, &m, &acted).await;
        assert_eq!(
            (captured.status, captured.amount_captured),
            (PaymentStatus::Succeeded, 400)
        );
        assert_eq!(
            t.event_types(&m, &acted.id).await,
            vec!["payment.requires_capture", "payment.succeeded"]
        );
        let untouched = stored(&t, &m, &never).await;
        assert_eq!(untouched, never, "as before the call: nothing happened");
        for p in [&captured, &untouched] {
            assert!(p.invariants_hold(), "{p:?}");
        }
        let again = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!(again.due, 0, "nothing is left to reconcile");
    }

    /// A refund left `pending` is sent again under its id and settled once; while the processor
    /// does not answer it is asked again later.
    #[tokio::test]
    async fn a_pending_refund_is_sent_again_until_it_is_settled_once() {
        use shared::domain::{RefundId, RefundRequest};
        use shared::testing::{Call, ProcessorFault};
        let mut t = TestApp::new().await;
        let faults = t.with_processor_faults();
        let m = t.merchant("acme").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        faults.inject(Call::Refund, ProcessorFault::AfterActing, 2);
        let id = RefundId::generate(t.clock.now());
        let refund = processor_calls::refund(
            &t.app,
            &m.id,
            &p.id,
            id.clone(),
            RefundRequest::default(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(refund.status, RefundStatus::Pending);

        t.clock.advance(Span::minutes(2));
        let first = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!((first.due, first.deferred), (1, 1), "{first:?}");
        t.clock.advance(Span::minutes(5));
        let second = reconcile(&t.app, LIMITS, BUDGET).await;
        assert_eq!((second.due, second.settled), (1, 1), "{second:?}");
        let after = stored(&t, &m, &p).await;
        assert_eq!(after.amount_refunded, 1000);
        assert!(after.pending_refunds.is_empty() && after.reconcile.is_none());
        assert_eq!(faults.keys(Call::Refund), vec![id.to_string(); 3]);
        let made = t.store().sandbox_refund(&id).await.unwrap().unwrap();
        assert_eq!(made.amount.minor_units(), 1000);
        assert_eq!(
            t.event_types(&m, &p.id).await,
            vec![
                "payment.succeeded",
                "payment.refunded",
                "payment.refund_updated"
            ]
        );
    }
}
