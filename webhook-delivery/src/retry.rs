//! The dispatcher: makes every attempt of every delivery — first attempts (the relay creates
//! each delivery due at once), retries whose wait is over, and attempts whose holder died (their
//! claim's lease ended) — from the retry shards of the timer index (GSI3). Each due entry is
//! read consistently, claimed (`shared::store::deliveries`), then attempted.
//!
//! **Isolation** (API.md, "Isolation"): attempts run as tasks of their own that the sweep never
//! waits for. A due entry is started only while its endpoint has fewer than [`PER_ENDPOINT`]
//! attempts in flight, its merchant fewer than [`PER_MERCHANT`], and the run fewer than
//! [`IN_FLIGHT`]; otherwise it is *deferred*: left due, without a read or a write, for a later
//! pass. So an endpoint that hangs for the whole 10 s holds at most [`PER_ENDPOINT`] of the
//! run's slots, a merchant at most [`PER_MERCHANT`], and every other due delivery is started on
//! the next pass, [`PASS_GAP`] later. The work one attempt costs is bounded too: 10 s, and at
//! most 64 KiB of the answer read (`sender`).
//!
//! **Fairness**: each pass starts one shard further on than the pass before (a run's first at
//! a shard chosen by the clock), the run's deadline is checked before each page, and an index
//! entry that does not decode is skipped and counted (`TimerIndexPoison`), never fatal to its
//! shard. Each pass reports how long its oldest due delivery has waited
//! (`OldestDueDeliverySeconds`, alarmed).
//!
//! **A run** sweeps a pass every [`PASS_GAP`] until its window ends, then waits for the
//! attempts it started (each ends within the 10 s limit). Deployed, a run starts every minute
//! and its window is a little longer than that, so runs overlap and no moment is left without
//! a sweep while one finishes; two runs at once are safe (a claim is a conditional write: one
//! holder per delivery), and bound an endpoint to twice [`PER_ENDPOINT`] at most while they
//! overlap. Locally the same, started by `infra/local_schedule.py --overlap`.

use crate::attempt::{Deliverer, Outcome};
use shared::domain::{MerchantId, Timestamp, WebhookDeliveryId, WebhookEndpointId};
use shared::metrics::{self, Counter, Invocation};
use shared::store::{Claim, DeliveryRecord, DueCursor, DueDelivery, StoreError, RETRY_SHARDS};
use shared::webhooks::delivery::DeliveryStatus;
use shared::webhooks::replay::DELIVERIES_PER_STEP;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Index entries read per Query.
pub const BATCH: usize = 25;

/// The pause between two passes of one run.
pub const PASS_GAP: Duration = Duration::from_secs(1);

/// Attempts in flight towards one endpoint, at most (per run).
pub const PER_ENDPOINT: usize = 4;

/// Attempts in flight for one merchant's endpoints together, at most (per run): a merchant
/// with 16 slow endpoints holds at most this share of [`IN_FLIGHT`].
pub const PER_MERCHANT: usize = 32;

/// Attempts in flight in one run, at most (what one function's memory and sockets allow:
/// each holds a connection and at most 64 KiB of an answer at a time).
pub const IN_FLIGHT: usize = 128;

/// What a run leaves after its last attempt may start: the 10 s limit, and the time to record
/// the answer.
pub const ATTEMPT_TAIL: Duration = Duration::from_secs(13);

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
    /// Due entries left for a later pass: their endpoint, their merchant or the run had its
    /// limit of attempts in flight (or this run was attempting that delivery already).
    pub deferred: usize,
    /// Index entries that did not decode (skipped; each logged with its key).
    pub poison: usize,
    /// Reads or writes that failed; those deliveries stay due (or claimed) for a later pass.
    pub errors: usize,
    /// Replay steps taken after the passes (`replay`), and the deliveries they created.
    pub replay_steps: usize,
    pub replayed: usize,
}

impl RetryReport {
    fn add(&mut self, other: RetryReport) {
        self.due += other.due;
        self.succeeded += other.succeeded;
        self.pending += other.pending;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.skipped += other.skipped;
        self.deferred += other.deferred;
        self.poison += other.poison;
        self.errors += other.errors;
        self.replay_steps += other.replay_steps;
        self.replayed += other.replayed;
    }
}

/// Passes every [`PASS_GAP`] until `window` is over (at least one), never past `budget`: no
/// attempt starts later than one can end within it, and the run returns once its attempts
/// have.
pub async fn run(deliverer: &Deliverer, window: Duration, budget: Duration) -> RetryReport {
    let started = Instant::now();
    if budget <= ATTEMPT_TAIL {
        // Not one attempt fits: a configuration error (the function's timeout), not a backlog.
        tracing::error!(
            budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            "the run's time budget leaves no room for an attempt; nothing is swept (raise FUNCTION_TIMEOUT_SECONDS)"
        );
    }
    let hard_stop = started + budget.saturating_sub(ATTEMPT_TAIL);
    let first = first_shard(deliverer);
    let mut dispatcher = Dispatcher::new(deliverer, first, hard_stop);
    loop {
        let report = dispatcher.pass().await;
        log_pass(&report);
        let next_pass_at = Instant::now() + PASS_GAP;
        if next_pass_at >= started + window || next_pass_at >= hard_stop {
            break;
        }
        dispatcher.idle_until(next_pass_at).await;
    }
    dispatcher.finish().await
}

/// One pass over every retry shard, then the wait for the attempts it started. A delivery
/// deferred by the limits stays due for the next pass.
pub async fn pass(deliverer: &Deliverer) -> RetryReport {
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    let mut dispatcher = Dispatcher::new(deliverer, 0, far);
    let report = dispatcher.pass().await;
    log_pass(&report);
    dispatcher.finish().await
}

fn first_shard(deliverer: &Deliverer) -> u8 {
    let seconds = deliverer.clock.now().unix_timestamp();
    u8::try_from(seconds.rem_euclid(i64::from(RETRY_SHARDS))).unwrap_or(0)
}

fn log_pass(report: &RetryReport) {
    if report.due > 0 || report.errors > 0 || report.poison > 0 || report.replay_steps > 0 {
        tracing::info!(
            due = report.due,
            started = report.due - report.deferred,
            deferred = report.deferred,
            poison = report.poison,
            errors = report.errors,
            replay_steps = report.replay_steps,
            replayed = report.replayed,
            "dispatch pass finished"
        );
    }
}

type EndpointKey = (MerchantId, WebhookEndpointId);

/// The attempts a run has in flight, by endpoint and by merchant.
#[derive(Debug, Default)]
struct InFlight {
    endpoints: HashMap<EndpointKey, usize>,
    merchants: HashMap<MerchantId, usize>,
    deliveries: HashSet<WebhookDeliveryId>,
}

impl InFlight {
    fn admits(&self, due: &DueDelivery) -> bool {
        let endpoint = (due.merchant.clone(), due.endpoint.clone());
        !self.deliveries.contains(&due.delivery)
            && self.deliveries.len() < IN_FLIGHT
            && self.endpoints.get(&endpoint).copied().unwrap_or(0) < PER_ENDPOINT
            && self.merchants.get(&due.merchant).copied().unwrap_or(0) < PER_MERCHANT
    }

    fn start(&mut self, due: &DueDelivery) {
        self.deliveries.insert(due.delivery.clone());
        *self
            .endpoints
            .entry((due.merchant.clone(), due.endpoint.clone()))
            .or_default() += 1;
        *self.merchants.entry(due.merchant.clone()).or_default() += 1;
    }

    fn end(&mut self, due: &DueDelivery) {
        self.deliveries.remove(&due.delivery);
        let endpoint = (due.merchant.clone(), due.endpoint.clone());
        if let Some(n) = self.endpoints.get_mut(&endpoint) {
            *n -= 1;
            if *n == 0 {
                self.endpoints.remove(&endpoint);
            }
        }
        if let Some(n) = self.merchants.get_mut(&due.merchant) {
            *n -= 1;
            if *n == 0 {
                self.merchants.remove(&due.merchant);
            }
        }
    }
}

/// What one started entry came to.
enum Attempted {
    /// Not due any more when read (the index lags the table), or claimed by another holder.
    Skipped,
    /// Could not be read or claimed: still due (or claimed), for a later pass.
    Unreachable,
    Done(Result<Outcome, StoreError>),
}

/// One run's sweep state: the attempts in flight and what they came to.
struct Dispatcher {
    deliverer: Deliverer,
    tasks: JoinSet<(Attempted, Invocation)>,
    /// The entry each task attempts (by task id: a task that panicked still gives its slot back).
    running: HashMap<tokio::task::Id, DueDelivery>,
    in_flight: InFlight,
    report: RetryReport,
    next_shard: u8,
    hard_stop: Instant,
}

impl Dispatcher {
    fn new(deliverer: &Deliverer, first_shard: u8, hard_stop: Instant) -> Self {
        Self {
            deliverer: deliverer.clone(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            in_flight: InFlight::default(),
            report: RetryReport::default(),
            next_shard: first_shard % RETRY_SHARDS,
            hard_stop,
        }
    }

    /// One pass over every shard, from the next in turn; starts what the limits admit and
    /// returns without waiting for it. Returns what the pass itself saw (the outcomes of
    /// attempts are added to the run's report as they end).
    async fn pass(&mut self) -> RetryReport {
        let now = Timestamp::from_datetime(self.deliverer.clock.now());
        let mut seen = RetryReport::default();
        let mut oldest: Option<Timestamp> = None;
        let first = self.next_shard;
        self.next_shard = (first + 1) % RETRY_SHARDS;
        // Due entries seen per endpoint: how busy each is (replays wait for a busy one).
        let mut due_per_endpoint: HashMap<EndpointKey, usize> = HashMap::new();
        'shards: for offset in 0..RETRY_SHARDS {
            let shard = (first + offset) % RETRY_SHARDS;
            let mut after: Option<DueCursor> = None;
            loop {
                if Instant::now() >= self.hard_stop {
                    break 'shards;
                }
                self.reap_finished();
                let first_page = after.is_none();
                let batch = match self
                    .deliverer
                    .store
                    .due_deliveries(shard, now, BATCH, after)
                    .await
                {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::error!(shard, error = %err, "could not read the retry index");
                        seen.errors += 1;
                        continue 'shards;
                    }
                };
                seen.poison += batch.unreadable.len();
                metrics::add(Counter::TimerIndexPoison, batch.unreadable.len() as u64);
                if first_page {
                    // A shard's first entry is its oldest due one.
                    if let Some(head) = batch.due.first() {
                        oldest = Some(oldest.map_or(head.due, |o| o.min(head.due)));
                    }
                }
                for due in batch.due {
                    seen.due += 1;
                    *due_per_endpoint
                        .entry((due.merchant.clone(), due.endpoint.clone()))
                        .or_default() += 1;
                    if self.in_flight.admits(&due) {
                        self.in_flight.start(&due);
                        self.spawn(due, now);
                    } else {
                        seen.deferred += 1;
                    }
                }
                match batch.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        if Instant::now() < self.hard_stop {
            let busy = |merchant: &MerchantId, endpoint: &WebhookEndpointId| {
                let key = (merchant.clone(), endpoint.clone());
                due_per_endpoint.get(&key).copied().unwrap_or(0) >= DELIVERIES_PER_STEP
            };
            let replays = crate::replay::step_due(&self.deliverer, &busy, self.hard_stop).await;
            seen.replay_steps += replays.steps;
            seen.replayed += replays.deliveries;
            seen.errors += replays.errors;
        }
        metrics::add(Counter::WebhookAttemptsDeferred, seen.deferred as u64);
        if let Some(oldest) = oldest {
            let waited = now.as_datetime() - oldest.as_datetime();
            metrics::due_delivery_age(u64::try_from(waited.whole_seconds()).unwrap_or(0));
        }
        self.report.add(seen);
        seen
    }

    /// Starts the attempt of one due entry as a task of its own.
    fn spawn(&mut self, due: DueDelivery, now: Timestamp) {
        let deliverer = self.deliverer.clone();
        let entry = due.clone();
        let task = self.tasks.spawn(async move {
            // Its metrics are recorded apart and added to the run's when it ends.
            let (attempted, recorded) = metrics::detached(async {
                match take(&deliverer, &due, now).await {
                    Ok(Some((record, claim))) => {
                        Attempted::Done(deliverer.attempt(&record, None, &claim).await)
                    }
                    Ok(None) => Attempted::Skipped,
                    Err(()) => Attempted::Unreachable,
                }
            })
            .await;
            (attempted, recorded)
        });
        self.running.insert(task.id(), entry);
    }

    /// Takes in what ended, without waiting.
    fn reap_finished(&mut self) {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.ended(joined);
        }
    }

    /// Waits until `at`, taking in attempts as they end.
    async fn idle_until(&mut self, at: Instant) {
        let sleep = tokio::time::sleep_until(at.into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                Some(joined) = self.tasks.join_next_with_id() => self.ended(joined),
            }
        }
    }

    /// Waits for every attempt in flight and returns the run's report.
    async fn finish(mut self) -> RetryReport {
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.ended(joined);
        }
        self.report
    }

    fn ended(
        &mut self,
        joined: Result<(tokio::task::Id, (Attempted, Invocation)), tokio::task::JoinError>,
    ) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(err) => err.id(),
        };
        let Some(due) = self.running.remove(&id) else {
            return;
        };
        self.in_flight.end(&due);
        let (attempted, recorded) = match joined {
            Ok((_, ended)) => ended,
            Err(err) => {
                // A panic in an attempt: its delivery stays claimed, and is taken again when
                // the claim ends.
                tracing::error!(delivery_id = %due.delivery, error = %err, "a webhook attempt task failed; it is taken again when its claim ends");
                self.report.errors += 1;
                return;
            }
        };
        metrics::absorb(&recorded);
        let report = &mut self.report;
        match attempted {
            Attempted::Skipped => report.skipped += 1,
            Attempted::Unreachable => report.errors += 1,
            Attempted::Done(Ok(Outcome::Recorded(DeliveryStatus::Succeeded, _))) => {
                report.succeeded += 1
            }
            Attempted::Done(Ok(Outcome::Recorded(DeliveryStatus::Pending, _))) => {
                report.pending += 1
            }
            Attempted::Done(Ok(Outcome::Recorded(DeliveryStatus::Failed, _))) => report.failed += 1,
            Attempted::Done(Ok(Outcome::Abandoned)) => report.abandoned += 1,
            Attempted::Done(Ok(Outcome::Superseded)) => report.skipped += 1,
            Attempted::Done(Err(err)) => {
                tracing::error!(delivery_id = %due.delivery, error = %err, "attempt could not be completed; it is taken again when its claim ends");
                report.errors += 1;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn due(merchant: &str, endpoint: &str, delivery: &str) -> DueDelivery {
        serde_json::from_value(serde_json::json!({
            "merchant_id": merchant,
            "endpoint_id": endpoint,
            "id": delivery,
            "GSI3SK": "2026-12-03T10:00:00.000Z",
        }))
        .expect("a due entry")
    }

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:032x}")).collect()
    }

    #[test]
    fn one_endpoint_gets_at_most_its_share_and_its_slot_comes_back_when_an_attempt_ends() {
        let mut in_flight = InFlight::default();
        let m = "mer_019ab2c3d4e57f00a1b2c3d4e5f60001";
        let slow = "we_019ab2c3d4e57f00a1b2c3d4e5f60001";
        let other = "we_019ab2c3d4e57f00a1b2c3d4e5f60002";
        let deliveries = ids("whd_", PER_ENDPOINT + 2);
        let entries: Vec<DueDelivery> = deliveries.iter().map(|d| due(m, slow, d)).collect();
        for entry in &entries[..PER_ENDPOINT] {
            assert!(in_flight.admits(entry));
            in_flight.start(entry);
        }
        assert!(
            !in_flight.admits(&entries[PER_ENDPOINT]),
            "the endpoint is full"
        );
        assert!(
            !in_flight.admits(&entries[0]),
            "a delivery in flight is never started twice"
        );
        let elsewhere = due(m, other, "whd_019ab2c3d4e57f00a1b2c3d4e5f6ffff");
        assert!(
            in_flight.admits(&elsewhere),
            "another endpoint is not held up"
        );
        in_flight.end(&entries[0]);
        assert!(in_flight.admits(&entries[PER_ENDPOINT]));
    }

    #[test]
    fn one_merchant_gets_at_most_its_share_and_the_run_at_most_its_total() {
        let mut in_flight = InFlight::default();
        let busy = "mer_019ab2c3d4e57f00a1b2c3d4e5f60001";
        let endpoints = ids("we_", PER_MERCHANT / PER_ENDPOINT + 1);
        let deliveries = ids("whd_", PER_MERCHANT + PER_ENDPOINT);
        let mut started = 0;
        for (i, delivery) in deliveries.iter().enumerate() {
            let entry = due(busy, &endpoints[i / PER_ENDPOINT], delivery);
            if in_flight.admits(&entry) {
                in_flight.start(&entry);
                started += 1;
            }
        }
        assert_eq!(started, PER_MERCHANT);
        let quiet = due(
            "mer_019ab2c3d4e57f00a1b2c3d4e5f60002",
            &endpoints[0],
            "whd_019ab2c3d4e57f00a1b2c3d4e5f6ffff",
        );
        assert!(in_flight.admits(&quiet), "another merchant is not held up");

        // The run's total, over many merchants.
        let mut run = InFlight::default();
        let merchants = ids("mer_", IN_FLIGHT + 1);
        for (i, merchant) in merchants.iter().enumerate() {
            let entry = due(merchant, &endpoints[0], &format!("whd_{i:032x}"));
            if i < IN_FLIGHT {
                assert!(run.admits(&entry));
                run.start(&entry);
            } else {
                assert!(!run.admits(&entry), "the run is full");
            }
        }
    }
}
