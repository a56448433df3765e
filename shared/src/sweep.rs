//! The loop of every timer sweep over the payment timers of the index (`store::expiry`): read
//! each shard of one timer for payments due now, oldest first, in bounded batches, and hand each
//! to the sweep's own step — the expiry sweeper's (`Payment::expire`) and reconciliation's
//! (`PaymentProcessor::lookup`). One run stops at its limit of payments or when its time budget
//! ends, whichever comes first, and says whether it read every shard to its end; an unreadable
//! batch is counted and the run goes on with the next shard (nothing was changed by a failed
//! read; the next run reads the shard again); an entry that does not decode is counted as
//! poison and skipped, and the rest of its shard is still read.

use crate::domain::Timestamp;
use crate::store::{
    DueAuthorization, DueBatch, DueCursor, PaymentTimer, Store, StoreError, EXPIRY_SHARDS,
};
use std::future::Future;
use std::time::{Duration, Instant};

/// How much one run does.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Index entries read per Query.
    pub batch: usize,
    /// Payments looked at per run, at most; the next run goes on from the oldest left.
    pub most: usize,
}

/// What the loop itself saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Index entries found due (each handed to the step).
    pub due: usize,
    /// Batches that could not be read.
    pub unreadable: usize,
    /// Index entries that did not decode (skipped and logged by the store; the shard goes on).
    pub poison: usize,
    /// Every shard was read to its end (no limit, budget or unreadable batch cut it short).
    pub complete: bool,
}

/// Hands every payment of `timer` due at `now` to `step`, and each step's outcome to `tally`,
/// within `limits` and `budget`.
pub async fn due_payments<S, F, T>(
    store: &Store,
    timer: PaymentTimer,
    now: Timestamp,
    limits: Limits,
    budget: Duration,
    step: S,
    tally: impl FnMut(&DueAuthorization, T),
) -> Pass
where
    S: Fn(DueAuthorization) -> F,
    F: Future<Output = T>,
{
    let read = |shard, limit, after| store.due_payments(timer, shard, now, limit, after);
    due(read, limits, budget, step, tally).await
}

/// The loop itself, over any sharded timer of the index: `read` gives a shard's next batch of
/// due entries (`EXPIRY_SHARDS` shards).
pub async fn due<D, R, RF, S, F, T>(
    read: R,
    limits: Limits,
    budget: Duration,
    step: S,
    mut tally: impl FnMut(&D, T),
) -> Pass
where
    D: Clone,
    R: Fn(u8, usize, Option<DueCursor>) -> RF,
    RF: Future<Output = Result<DueBatch<D>, StoreError>>,
    S: Fn(D) -> F,
    F: Future<Output = T>,
{
    let stop_at = Instant::now() + budget;
    let mut pass = Pass {
        complete: true,
        ..Pass::default()
    };
    'shards: for shard in 0..EXPIRY_SHARDS {
        let mut after: Option<DueCursor> = None;
        loop {
            if pass.due >= limits.most || Instant::now() >= stop_at {
                pass.complete = false;
                break 'shards;
            }
            let batch_size = limits.batch.min(limits.most - pass.due);
            // Boxed, both: each step's future nests a whole change (a transaction, its
            // re-reads), and inline in this loop's state machine they exceed rustc's layout
            // depth limit in the functions' `main`. One allocation per batch and per payment.
            let batch = match Box::pin(read(shard, batch_size, after)).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!(shard, error = %err, "could not read the timer index");
                    pass.unreadable += 1;
                    pass.complete = false;
                    continue 'shards;
                }
            };
            pass.poison += batch.unreadable.len();
            for due in batch.due {
                pass.due += 1;
                let outcome = Box::pin(step(due.clone())).await;
                tally(&due, outcome);
            }
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    pass
}
