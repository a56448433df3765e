//! Replays, stepped by the dispatcher (API.md, "Resend and replay"; the object and its range
//! in `shared::webhooks::replay`, its item in `shared::store::replays`).
//!
//! After each pass over the retry shards, the dispatcher takes one **step** of each running
//! replay whose endpoint is not busy: it reads the next events of the range (at most
//! [`EVENTS_PER_STEP`]), and creates a delivery for each one the endpoint subscribes to (at
//! most [`DELIVERIES_PER_STEP`]), due at once, then moves the replay's cursor on (conditioned on
//! the step it read; `shared::store::replays` says why nothing is made twice or skipped).
//! Those deliveries are then attempted like any other, within the endpoint's limits.
//!
//! **Pacing** is what keeps a replay from delaying anyone: an endpoint is busy when the pass
//! just found [`DELIVERIES_PER_STEP`] or more of its deliveries due, so a replay adds work only
//! as fast as its endpoint takes it, and the retry shards never hold more than a step or two of
//! any replay. One step per endpoint per pass, at most [`STEPS_PER_PASS`] steps in all, and a
//! stepped replay goes to the back of the index: replays take turns.

use crate::attempt::Deliverer;
use shared::domain::{EventId, MerchantId, Timestamp, WebhookEndpointId};
use shared::store::{DueReplay, ReplayedDelivery, StoreError};
use shared::webhooks::delivery::Delivery;
use shared::webhooks::endpoint::EndpointStatus;
use shared::webhooks::replay::{ReplayStatus, DELIVERIES_PER_STEP, EVENTS_PER_STEP};
use std::collections::HashSet;
use std::time::Instant;

/// Steps one pass takes, at most (each is a Query and a transaction of up to 21 items).
pub const STEPS_PER_PASS: usize = 16;

/// Index entries read per Query.
const PAGE: usize = 50;

/// What the replay part of one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Steps taken (each moved a replay's cursor on).
    pub steps: usize,
    /// Deliveries those steps created.
    pub deliveries: usize,
    /// Replays that ended in this pass.
    pub finished: usize,
    /// Running replays left for a later pass: endpoint busy or disabled, a step of the same
    /// endpoint taken already, another run stepped it first, or the pass's share was used.
    pub waiting: usize,
    /// Reads or writes that failed (the replay is stepped again from what is stored).
    pub errors: usize,
}

/// What one replay's turn came to.
enum Turn {
    Stepped {
        created: usize,
        finished: bool,
    },
    /// Nothing to do now (ended already, endpoint disabled, another run took the step).
    Waiting,
}

/// Takes the steps this pass allows. `busy`: whether the pass found enough of an endpoint's
/// deliveries due that it must not be given more now.
pub async fn step_due(
    deliverer: &Deliverer,
    busy: &dyn Fn(&MerchantId, &WebhookEndpointId) -> bool,
    hard_stop: Instant,
) -> ReplayReport {
    let now = Timestamp::from_datetime(deliverer.clock.now());
    let mut report = ReplayReport::default();
    let mut stepped: HashSet<(MerchantId, WebhookEndpointId)> = HashSet::new();
    let mut after = None;
    loop {
        let batch = match deliverer.store.due_replays(now, PAGE, after).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::error!(error = %err, "could not read the running replays");
                report.errors += 1;
                return report;
            }
        };
        shared::metrics::add(
            shared::metrics::Counter::TimerIndexPoison,
            batch.unreadable.len() as u64,
        );
        for due in batch.due {
            let endpoint = (due.merchant.clone(), due.endpoint.clone());
            if report.steps >= STEPS_PER_PASS
                || Instant::now() >= hard_stop
                || stepped.contains(&endpoint)
                || busy(&due.merchant, &due.endpoint)
            {
                report.waiting += 1;
                continue;
            }
            match step(deliverer, &due, now).await {
                Ok(Turn::Stepped { created, finished }) => {
                    stepped.insert(endpoint);
                    report.steps += 1;
                    report.deliveries += created;
                    report.finished += usize::from(finished);
                }
                Ok(Turn::Waiting) => report.waiting += 1,
                Err(err) => {
                    tracing::error!(replay_id = %due.replay, error = %err, "could not step a replay; it is stepped again from what is stored");
                    report.errors += 1;
                }
            }
        }
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if report.steps > 0 || report.errors > 0 {
        tracing::info!(
            steps = report.steps,
            deliveries = report.deliveries,
            finished = report.finished,
            waiting = report.waiting,
            errors = report.errors,
            "replay steps taken"
        );
    }
    report
}

/// One step of one replay, from what is stored now.
async fn step(deliverer: &Deliverer, due: &DueReplay, now: Timestamp) -> Result<Turn, StoreError> {
    let store = &deliverer.store;
    let Some(seen) = store
        .get_replay(&due.merchant, &due.endpoint, &due.replay)
        .await?
    else {
        return Ok(Turn::Waiting);
    };
    if seen.replay.status == ReplayStatus::Done {
        // The index lags the table a moment.
        return Ok(Turn::Waiting);
    }
    let endpoint = store.get_endpoint(&due.merchant, &due.endpoint).await?;
    let Some(endpoint) = endpoint else {
        // Deleted: nothing more can be delivered to it.
        let next = seen.stepped(None, 0, true);
        let taken = store.step_replay(&seen, &next, &[], now).await?;
        tracing::info!(replay_id = %due.replay, "replay ended: its endpoint was deleted");
        return Ok(if taken {
            Turn::Stepped {
                created: 0,
                finished: true,
            }
        } else {
            Turn::Waiting
        });
    };
    if endpoint.status == EndpointStatus::Disabled {
        // Paused: it goes on when the endpoint is enabled again.
        return Ok(Turn::Waiting);
    }
    let range = (
        EventId::lower_bound(seen.replay.since),
        EventId::lower_bound(seen.replay.until),
    );
    let events = store
        .events_in_range(
            &due.merchant,
            (&range.0, &range.1),
            seen.cursor.as_ref(),
            EVENTS_PER_STEP,
        )
        .await?;
    let read_all = events.len() < EVENTS_PER_STEP;
    let at = deliverer.clock.now();
    let mut made = Vec::new();
    let mut last = None;
    let mut taken = 0;
    for (position, event) in &events {
        if made.len() == DELIVERIES_PER_STEP {
            break;
        }
        taken += 1;
        last = Some(position.clone());
        if endpoint.enabled_events.includes(event.event_type) {
            made.push(ReplayedDelivery {
                delivery: Delivery::replayed(event, &endpoint.id, &seen.replay.id, at),
                payment: position.payment.clone(),
                event_sequence: position.sequence,
            });
        }
    }
    let exhausted = read_all && taken == events.len();
    let next = seen.stepped(last, made.len() as u64, exhausted);
    if !store.step_replay(&seen, &next, &made, now).await? {
        return Ok(Turn::Waiting);
    }
    tracing::info!(
        replay_id = %seen.replay.id,
        endpoint_id = %endpoint.id,
        created = made.len(),
        events = next.replay.events,
        done = exhausted,
        "replay stepped"
    );
    Ok(Turn::Stepped {
        created: made.len(),
        finished: exhausted,
    })
}
