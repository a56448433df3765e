//! The retry sweep: read every retry shard of the timer index (GSI3) for deliveries due now —
//! retries whose wait is over, and first attempts whose holder died (their claim's lease ended)
//! — claim each and attempt it; a batch's attempts run at once.
//!
//! Deployed, a run is started every minute and sweeps again every second until its window ends,
//! so a retry due in 5 s is made about 5 s later; the local stack starts one pass a second.

use crate::attempt::{Deliverer, Outcome};
use futures_util::future::join_all;
use shared::domain::Timestamp;
use shared::store::{Claim, DeliveryRecord, DueCursor, DueDelivery, RETRY_SHARDS};
use shared::webhooks::delivery::DeliveryStatus;
use std::time::{Duration, Instant};

/// Index entries read per Query; also the most attempts in flight at once.
pub const BATCH: usize = 25;

/// The pause between two passes of one run.
pub const PASS_GAP: Duration = Duration::from_secs(1);

/// What a run did; logged as one line per pass and returned as the invocation's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    /// Due entries found.
    pub due: usize,
    /// Attempts recorded, by what the delivery became.
    pub succeeded: usize,
    pub pending: usize,
    pub failed: usize,
    /// Given up without an attempt: the endpoint is disabled or deleted.
    pub abandoned: usize,
    /// Entries another holder had claimed (or finished) first.
    pub skipped: usize,
    /// Reads or writes that failed; those deliveries stay due (or claimed) for a later pass.
    pub errors: usize,
}

impl RetryReport {
    fn add(&mut self, other: RetryReport) {
        self.due += other.due;
        self.succeeded += other.succeeded;
        self.pending += other.pending;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.skipped += other.skipped;
        self.errors += other.errors;
    }
}

/// Passes until `window` is over (at least one), never past `budget`; an attempt takes up to
/// 10 s, so a pass starts only while that much of the budget is left after it.
pub async fn run(deliverer: &Deliverer, window: Duration, budget: Duration) -> RetryReport {
    let started = Instant::now();
    let mut report = RetryReport::default();
    loop {
        report.add(pass(deliverer).await);
        let elapsed = started.elapsed();
        let next_pass_at = elapsed + PASS_GAP;
        if next_pass_at >= window
            || next_pass_at + crate::sender::ATTEMPT_TIMEOUT + PASS_GAP >= budget
        {
            return report;
        }
        tokio::time::sleep(PASS_GAP).await;
    }
}

/// One pass over every retry shard.
pub async fn pass(deliverer: &Deliverer) -> RetryReport {
    let now = Timestamp::from_datetime(deliverer.clock.now());
    let mut report = RetryReport::default();
    for shard in 0..RETRY_SHARDS {
        let mut after: Option<DueCursor> = None;
        loop {
            let batch = match deliverer
                .store
                .due_deliveries(shard, now, BATCH, after)
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!(shard, error = %err, "could not read the retry index");
                    report.errors += 1;
                    break;
                }
            };
            report.due += batch.due.len();
            let mut claimed = Vec::new();
            for due in &batch.due {
                match take(deliverer, due, now).await {
                    Ok(Some(taken)) => claimed.push(taken),
                    Ok(None) => report.skipped += 1,
                    Err(()) => report.errors += 1,
                }
            }
            let results = join_all(
                claimed
                    .iter()
                    .map(|(record, claim)| deliverer.attempt(record, None, claim)),
            )
            .await;
            for ((record, _), result) in claimed.iter().zip(results) {
                match result {
                    Ok(Outcome::Recorded(DeliveryStatus::Succeeded, _)) => report.succeeded += 1,
                    Ok(Outcome::Recorded(DeliveryStatus::Pending, _)) => report.pending += 1,
                    Ok(Outcome::Recorded(DeliveryStatus::Failed, _)) => report.failed += 1,
                    Ok(Outcome::Abandoned) => report.abandoned += 1,
                    Ok(Outcome::Superseded) => report.skipped += 1,
                    Err(err) => {
                        tracing::error!(delivery_id = %record.delivery.id, error = %err, "retry could not be completed; it is taken again when its claim ends");
                        report.errors += 1;
                    }
                }
            }
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    if report.due > 0 || report.errors > 0 {
        tracing::info!(
            due = report.due,
            succeeded = report.succeeded,
            pending = report.pending,
            failed = report.failed,
            abandoned = report.abandoned,
            skipped = report.skipped,
            errors = report.errors,
            "retry pass finished"
        );
    }
    report
}

/// Reads the due delivery consistently and claims it; `Ok(None)` when it is not due any more
/// (the index lags the table a moment, or another holder took it first).
async fn take(
    deliverer: &Deliverer,
    due: &DueDelivery,
    now: Timestamp,
) -> Result<Option<(DeliveryRecord, Claim)>, ()> {
    let store = &deliverer.store;
    let record = match store
        .get_delivery(&due.merchant, &due.endpoint, &due.delivery)
        .await
    {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(err) => {
            tracing::error!(delivery_id = %due.delivery, error = %err, "could not read a due delivery");
            return Err(());
        }
    };
    let still_due =
        record.delivery.status == DeliveryStatus::Pending && record.due.is_some_and(|at| at <= now);
    if !still_due {
        return Ok(None);
    }
    let claim = deliverer.claim();
    match store.claim_delivery(&record, &claim).await {
        Ok(true) => Ok(Some((record, claim))),
        Ok(false) => Ok(None),
        Err(err) => {
            tracing::error!(delivery_id = %due.delivery, error = %err, "could not claim a due delivery");
            Err(())
        }
    }
}
