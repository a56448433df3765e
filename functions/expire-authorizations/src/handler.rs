//! One sweep: read every shard of the expiry index for authorizations due now, oldest first, in
//! bounded batches, have the processor cancel each (so that both sides agree: a processor that
//! refuses because it captured the payment gets the capture recorded instead), and expire it
//! with the same conditional transaction as any other change (`shared::lifecycle::apply` with
//! `Payment::expire`).
//!
//! Racing is safe by construction. Against a capture or cancel of the same payment, or another
//! sweep running at the same time, exactly one change is written: each is conditioned on the
//! version it read, and the loser re-reads and is refused by the status machine (counted as a
//! lost race). A write whose answer was lost is recognised by its event, or, if that read fails
//! too, counted as failed: the payment is still in the index if it did not commit, so the next
//! run expires it then, never twice.

use serde::Serialize;
use shared::clock::Clock;
use shared::domain::{Deadlines, Timestamp, Unconfirmed};
use shared::lifecycle::{self, ChangeError};
use shared::processor::{Held, PaymentProcessor, ProcessorError};
use shared::processor_calls;
use shared::store::{DueAuthorization, PaymentTimer, Store, StoreError};
pub use shared::sweep::Limits;
use std::time::Duration;

/// The deployed limits: batches of 25, at most 5,000 a run (about 25 s of sequential changes at
/// DynamoDB's ~5 ms; the run also stops when its time budget ends).
pub const LIMITS: Limits = Limits {
    batch: 25,
    most: 5_000,
};

/// What one run did; logged as one line and returned as the invocation's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Index entries found due.
    pub due: usize,
    /// Payments this run turned `canceled` (`expired`, or `abandoned` for an action not
    /// completed in time).
    pub expired: usize,
    /// Due entries whose payment another change (a capture, a cancel, a settlement, another
    /// sweep) had already taken out of its waiting status, or took first.
    pub lost_race: usize,
    /// Expiries that could not be written (or whose outcome is unknown), and index batches
    /// that could not be read; the next run retries.
    pub failed: usize,
    /// Every shard was read to its end (no limit or time budget cut the run short).
    pub complete: bool,
}

/// What became of one due payment.
enum Expired {
    Done,
    LostRace,
    Failed,
}

/// Expires every authorization (and abandons every customer action) due at `clock`'s time,
/// within `limits` and `budget` (`shared::sweep`).
pub async fn sweep(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    deadlines: &Deadlines,
    limits: Limits,
    budget: Duration,
) -> SweepReport {
    let now = Timestamp::from_datetime(clock.now());
    let mut report = SweepReport::default();
    let pass = shared::sweep::due_payments(
        store,
        PaymentTimer::Expiry,
        now,
        limits,
        budget,
        |due| expire(store, processor, clock, deadlines, due),
        |_, outcome| match outcome {
            Expired::Done => report.expired += 1,
            Expired::LostRace => report.lost_race += 1,
            Expired::Failed => report.failed += 1,
        },
    )
    .await;
    report.due = pass.due;
    report.failed += pass.unreadable + pass.poison;
    report.complete = pass.complete;
    tracing::info!(
        due = report.due,
        expired = report.expired,
        lost_race = report.lost_race,
        failed = report.failed,
        complete = report.complete,
        budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        "expiry sweep finished"
    );
    report
}

async fn expire(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    deadlines: &Deadlines,
    due: DueAuthorization,
) -> Expired {
    match release_at_processor(store, processor, clock, deadlines, &due).await {
        Ok(Released::Yes) => {}
        Ok(Released::NotDue) => return Expired::LostRace,
        Ok(Released::Captured) => {
            tracing::info!(merchant_id = %due.merchant, payment_id = %due.payment, "not expired: the processor had captured it; reconciliation records the capture");
            return Expired::LostRace;
        }
        Err(err) => {
            tracing::warn!(merchant_id = %due.merchant, payment_id = %due.payment, error = %err, "the processor did not release the authorization; the next run tries again");
            return Expired::Failed;
        }
    }
    let expired = lifecycle::apply(
        store,
        clock,
        &due.merchant,
        &due.payment,
        |payment, now| Ok((payment.expire(now)?, None)),
        |_| Ok(None),
    )
    .await;
    match expired {
        Ok(applied) => {
            shared::metrics::count(shared::metrics::Counter::Expirations);
            tracing::info!(merchant_id = %due.merchant, payment_id = %due.payment, updated_at = %applied.payment.updated_at, reason = ?applied.payment.cancellation_reason, "payment expired");
            Expired::Done
        }
        Err(ChangeError::Refused(why)) => {
            tracing::info!(merchant_id = %due.merchant, payment_id = %due.payment, reason = %why, "not expired: another change came first");
            Expired::LostRace
        }
        Err(err) => {
            tracing::warn!(merchant_id = %due.merchant, payment_id = %due.payment, error = %err, "could not expire the payment; the next run tries again");
            Expired::Failed
        }
    }
}

/// What the processor said to releasing a due authorization.
enum Released {
    /// Canceled there (or it was already): expire it here.
    Yes,
    /// Not due, or moved on at our side: nothing to release.
    NotDue,
    /// The processor had captured it (a capture whose answer we lost): left to its request or
    /// to reconciliation, which records it.
    Captured,
}

/// Has the processor cancel the due authorization before it is expired here, so that the two
/// sides never disagree: if the processor refuses because it captured the payment, the payment
/// is marked for reconciliation, which records the capture (`processor_calls`).
async fn release_at_processor(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    deadlines: &Deadlines,
    due: &DueAuthorization,
) -> Result<Released, ChangeError> {
    let Some(stored) = store
        .get_payment_versioned(&due.merchant, &due.payment)
        .await?
    else {
        return Ok(Released::NotDue);
    };
    if stored.item.expire(clock.now()).is_err() {
        return Ok(Released::NotDue);
    }
    match processor
        .cancel(&processor_calls::reference(&stored.item))
        .await
    {
        Ok(()) => Ok(Released::Yes),
        Err(ProcessorError::Refused(why)) => match processor
            .held(&processor_calls::reference(&stored.item))
            .await
        {
            Ok(Held::Captured(amount)) => {
                // Not recorded here: the capture's own request may be writing it right now (and
                // must answer 200, not lose a race to us). Reconciliation records it a moment
                // later if nothing else has.
                let operation = Unconfirmed::Capture { amount };
                processor_calls::mark_unconfirmed(
                    store,
                    clock,
                    deadlines,
                    &due.merchant,
                    stored,
                    operation,
                )
                .await;
                Ok(Released::Captured)
            }
            Ok(Held::Canceled) => Ok(Released::Yes),
            other => Err(ChangeError::Store(StoreError::Unavailable(format!(
                "the processor refused the cancel ({why}) and holds {other:?}"
            )))),
        },
        Err(err) => Err(ChangeError::Store(StoreError::Unavailable(err.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::{CancellationReason, CaptureMethod, Payment, PaymentStatus};
    use shared::store::EXPIRY_SHARDS;
    use shared::testing::{Fault, Rule, TestApp, TestMerchant};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    const ALL: Limits = Limits {
        batch: 25,
        most: 10_000,
    };
    const NO_HURRY: Duration = Duration::from_secs(3600);

    async fn manual(t: &TestApp, m: &TestMerchant) -> Payment {
        t.payment(m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await
    }

    async fn run(t: &TestApp, limits: Limits) -> SweepReport {
        sweep(
            t.store(),
            t.app.processor.as_ref(),
            t.clock.as_ref(),
            &t.app.deadlines(),
            limits,
            NO_HURRY,
        )
        .await
    }

    fn report(due: usize, expired: usize, lost_race: usize, complete: bool) -> SweepReport {
        SweepReport {
            due,
            expired,
            lost_race,
            failed: 0,
            complete,
        }
    }

    /// The payment as stored now, and its trail's event types.
    async fn stored(t: &TestApp, m: &TestMerchant, p: &Payment) -> (Payment, Vec<String>) {
        let payment = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        let events = t
            .store()
            .list_events(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(
            events.last().unwrap().data,
            payment.resource(),
            "the last event shows the stored payment"
        );
        let types = events
            .iter()
            .map(|e| e.resource()["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        (payment, types)
    }

    async fn assert_expired_once(t: &TestApp, m: &TestMerchant, p: &Payment) {
        let (payment, types) = stored(t, m, p).await;
        assert_eq!(payment.status, PaymentStatus::Canceled);
        assert_eq!(
            payment.cancellation_reason,
            Some(CancellationReason::Expired)
        );
        assert_eq!(
            (payment.amount_capturable, payment.capture_before),
            (0, None)
        );
        assert_eq!(types, ["payment.requires_capture", "payment.canceled"]);
    }

    #[tokio::test]
    async fn expires_exactly_the_lapsed_authorizations_of_every_merchant() {
        let t = TestApp::new().await;
        let (m, other) = (t.merchant("acme").await, t.merchant("other").await);
        let lapsing = [
            (&m, manual(&t, &m).await),
            (&other, manual(&t, &other).await),
        ];
        t.clock.advance(time::Duration::days(3));
        let later = manual(&t, &m).await;
        let settled = [
            t.payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
                .await,
            t.payment(&m, 1000, CaptureMethod::Manual, "pm_card_declined")
                .await,
        ];
        let captured = manual(&t, &m).await;
        t.change(&m, &captured.id, |p, now| Ok((p.capture(None, now)?, None)))
            .await;
        let canceled = manual(&t, &m).await;
        t.change(&m, &canceled.id, |p, now| Ok((p.cancel(None, now)?, None)))
            .await;

        // Exactly the first two's capture_before: due from that instant on.
        t.clock.advance(time::Duration::days(4));
        let (swept, metrics) = shared::metrics::measure(run(&t, ALL)).await;
        assert_eq!(swept, report(2, 2, 0, true));
        let expirations = shared::metrics::Counter::Expirations;
        assert_eq!(
            metrics.counts.get(&expirations),
            Some(&2),
            "its metrics line"
        );
        for (merchant, payment) in &lapsing {
            assert_expired_once(&t, merchant, payment).await;
        }
        let (still, types) = stored(&t, &m, &later).await;
        assert_eq!(
            (still.status, types.len()),
            (PaymentStatus::RequiresCapture, 1)
        );
        for p in settled.iter().chain([&captured, &canceled]) {
            let (after, _) = stored(&t, &m, p).await;
            assert_ne!(after.cancellation_reason, Some(CancellationReason::Expired));
        }
        // Expired payments left the index with the change: the next run finds nothing.
        assert_eq!(run(&t, ALL).await, report(0, 0, 0, true));

        t.clock.advance(time::Duration::days(3));
        assert_eq!(run(&t, ALL).await, report(1, 1, 0, true));
        assert_expired_once(&t, &m, &later).await;
    }

    #[tokio::test]
    async fn the_index_query_reads_only_due_entries_and_nothing_is_scanned() {
        let (t, proxy) = TestApp::with_faults().await;
        let m = t.merchant("acme").await;
        let mut due = BTreeSet::new();
        for _ in 0..12 {
            due.insert(manual(&t, &m).await.id);
        }
        t.clock.advance(time::Duration::hours(1));
        for _ in 0..12 {
            manual(&t, &m).await;
        }
        t.clock
            .advance(time::Duration::days(7) - time::Duration::minutes(30));

        let now = Timestamp::from_datetime(shared::clock::Clock::now(t.clock.as_ref()));
        let mut found = BTreeSet::new();
        for shard in 0..EXPIRY_SHARDS {
            let batch = t
                .store()
                .due_payments(shared::store::PaymentTimer::Expiry, shard, now, 100, None)
                .await
                .unwrap();
            assert_eq!(batch.next, None, "shard {shard} fits one batch");
            for entry in batch.due {
                assert_eq!(entry.merchant, m.id);
                assert!(found.insert(entry.payment), "an entry came twice");
            }
        }
        assert_eq!(
            found, due,
            "exactly the due authorizations, none of the 12 not yet due"
        );

        let before = proxy.operations().len();
        assert_eq!(run(&t, ALL).await, report(12, 12, 0, true));
        let operations: BTreeSet<String> = proxy.operations()[before..].iter().cloned().collect();
        // PutItem: the sandbox's record of each cancel it was asked for (the processor's side).
        assert_eq!(
            operations,
            BTreeSet::from(["GetItem", "PutItem", "Query", "TransactWriteItems"].map(String::from))
        );
        assert_eq!(proxy.received("Scan"), 0);
        let queries = proxy.requests("Query");
        let sweep_queries = &queries[queries.len() - usize::from(EXPIRY_SHARDS)..];
        for query in sweep_queries {
            assert_eq!(query["IndexName"], "GSI3");
            assert_eq!(
                query["KeyConditionExpression"],
                "#shard = :shard AND #deadline <= :now"
            );
            assert_eq!(
                query["FilterExpression"],
                Value::Null,
                "no filter: nothing read is dropped"
            );
            assert_eq!(query["Limit"], 25);
        }
        let shards: BTreeSet<&str> = sweep_queries
            .iter()
            .filter_map(|q| q["ExpressionAttributeValues"][":shard"]["S"].as_str())
            .collect();
        assert_eq!(
            shards.len(),
            usize::from(EXPIRY_SHARDS),
            "every shard, once"
        );
    }

    #[tokio::test]
    async fn works_in_bounded_batches_and_the_next_run_goes_on() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let mut payments = Vec::new();
        for _ in 0..7 {
            payments.push(manual(&t, &m).await);
        }
        t.clock.advance(time::Duration::days(8));
        let small = Limits { batch: 2, most: 5 };
        assert_eq!(run(&t, small).await, report(5, 5, 0, false));
        assert_eq!(run(&t, small).await, report(2, 2, 0, true));
        for p in &payments {
            assert_expired_once(&t, &m, p).await;
        }
        // A run whose time is up does nothing, and says it did not finish.
        manual(&t, &m).await;
        t.clock.advance(time::Duration::days(8));
        let late = sweep(
            t.store(),
            t.app.processor.as_ref(),
            t.clock.as_ref(),
            &t.app.deadlines(),
            ALL,
            Duration::ZERO,
        )
        .await;
        assert_eq!(late, report(0, 0, 0, false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_sweeps_at_once_expire_each_payment_once() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let mut payments = Vec::new();
        for _ in 0..30 {
            payments.push(manual(&t, &m).await);
        }
        t.clock.advance(time::Duration::days(8));
        let sweeps: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move { run(&t, ALL).await })
            })
            .collect();
        let mut expired = 0;
        for task in sweeps {
            let r = task.await.unwrap();
            assert_eq!(r.failed, 0, "{r:?}");
            assert_eq!(r.due, r.expired + r.lost_race, "{r:?}");
            expired += r.expired;
        }
        assert_eq!(expired, 30);
        for p in &payments {
            assert_expired_once(&t, &m, p).await;
        }
    }

    #[tokio::test]
    async fn an_expiry_that_committed_unseen_is_recognised_and_one_that_did_not_is_retried() {
        let (t, proxy) = TestApp::with_faults().await;
        let m = t.merchant("acme").await;
        let committed = manual(&t, &m).await;
        t.clock.advance(time::Duration::days(8));
        // Every answer to the transaction lost (it commits on the first attempt): the read-back
        // finds the expiry's own event.
        proxy.inject(Rule::on("TransactWriteItems", Fault::DropResponse));
        assert_eq!(run(&t, ALL).await, report(1, 1, 0, true));
        proxy.heal();
        assert_expired_once(&t, &m, &committed).await;

        // Never reaching DynamoDB: counted as failed, nothing changed, still in the index.
        let refused = manual(&t, &m).await;
        t.clock.advance(time::Duration::days(8));
        proxy.inject(Rule::on("TransactWriteItems", Fault::Refuse));
        let failed = run(&t, ALL).await;
        assert_eq!((failed.due, failed.expired, failed.failed), (1, 0, 1));
        proxy.heal();
        let (still, _) = stored(&t, &m, &refused).await;
        assert_eq!(still.status, PaymentStatus::RequiresCapture);
        assert_eq!(run(&t, ALL).await, report(1, 1, 0, true));
        assert_expired_once(&t, &m, &refused).await;

        // A throttled index read changes nothing and leaves the run incomplete.
        let throttled = manual(&t, &m).await;
        t.clock.advance(time::Duration::days(8));
        proxy.inject(Rule::on("Query", Fault::Throttle));
        let r = run(&t, ALL).await;
        assert_eq!(
            (r.due, r.failed, r.complete),
            (0, usize::from(EXPIRY_SHARDS), false)
        );
        proxy.heal();
        assert_eq!(run(&t, ALL).await, report(1, 1, 0, true));
        assert_expired_once(&t, &m, &throttled).await;
    }

    /// The processor captured an authorization whose capture answer we lost (and nothing
    /// marked it): at its deadline the sweeper asks the processor to cancel, is refused, and
    /// does not expire a payment whose money moved: it marks it for reconciliation, which
    /// records the capture the processor holds.
    #[tokio::test]
    async fn an_authorization_the_processor_captured_is_not_expired_but_reconciled() {
        use shared::domain::{Amount, Unconfirmed};
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let p = manual(&t, &m).await;
        let reference = p.processor.reference.clone().unwrap();
        let amount = Amount::parse(600).unwrap();
        t.app.processor.capture(&reference, amount).await.unwrap();
        let other = manual(&t, &m).await;
        t.clock.advance(time::Duration::days(8));
        let report = run(&t, ALL).await;
        assert_eq!(
            (report.due, report.expired, report.lost_race),
            (2, 1, 1),
            "{report:?}"
        );
        let marked = t
            .store()
            .get_payment_versioned(&m.id, &p.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marked.item.status, PaymentStatus::RequiresCapture);
        assert_eq!(
            marked.item.unconfirmed,
            Some(Unconfirmed::Capture { amount })
        );
        assert!(marked.item.invariants_hold());
        let again = run(&t, ALL).await;
        assert_eq!(
            again.due, 0,
            "out of the expiry index while it is reconciled"
        );

        let resolved = shared::processor_calls::resolve_unconfirmed(
            t.store(),
            t.app.processor.as_ref(),
            t.clock.as_ref(),
            &m.id,
            &marked,
        )
        .await
        .unwrap();
        assert_eq!(resolved, shared::processor_calls::Resolved::Applied);
        let captured = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            (captured.status, captured.amount_captured),
            (PaymentStatus::Succeeded, 600)
        );
        let expired = t
            .store()
            .get_payment(&m.id, &other.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            expired.cancellation_reason,
            Some(CancellationReason::Expired)
        );
        let held = t
            .app
            .processor
            .held(other.processor.reference.as_deref().unwrap())
            .await;
        assert_eq!(
            held.unwrap(),
            Held::Canceled,
            "released at the processor first"
        );
    }
}
