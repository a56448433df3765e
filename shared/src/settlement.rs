//! Applying what a processor reports later (a verified processor event): the one way a pending
//! payment is settled from outside, for every processor. The change goes through
//! `lifecycle::apply` — conditioned on the payment's version, in one transaction with its event
//! (the outbox then makes the merchant's webhooks) — together with a record of the processor's
//! event id, so that an event is applied at most once however often it arrives.
//!
//! What an event may change is decided by what we stored, never by the event alone: it names a
//! payment (our ids, which the processor keeps with its object), and only if that payment is
//! held by the same processor under the same reference is it touched. A payment only moves
//! forward (`Payment::settle`), so a report that comes late, twice, or after a cancel is stale:
//! acknowledged, logged, nothing changed. Unknown and foreign references are acknowledged too —
//! answering an error would only make the processor send them again.

use crate::clock::Clock;
use crate::domain::{Deadlines, Payment, PaymentStatus};
use crate::lifecycle::{self, ChangeError};
use crate::processor::events::{EventChange, ProcessorEvent};
use crate::store::{Store, StoreError};

/// What became of a processor event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The payment moved on; this is it after the change.
    Applied(Box<Payment>),
    /// The payment had moved on already (a repeated or late report): its status.
    Stale(PaymentStatus),
    /// This event id was applied before.
    Duplicate,
    /// No payment of ours is held under this reference (unknown, or another's).
    UnknownReference,
    /// An event type that changes nothing of ours.
    Unmapped,
}

impl Settled {
    /// The word the log line and the metric use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Settled::Applied(_) => "applied",
            Settled::Stale(_) => "stale",
            Settled::Duplicate => "duplicate",
            Settled::UnknownReference => "unknown_reference",
            Settled::Unmapped => "unmapped",
        }
    }
}

/// Applies `event` (verified by its processor's signature) at `clock`'s time.
pub async fn apply_event(
    store: &Store,
    clock: &dyn Clock,
    deadlines: &Deadlines,
    event: &ProcessorEvent,
) -> Result<Settled, ChangeError> {
    let settlement = match &event.change {
        EventChange::Settled(settlement) => settlement,
        EventChange::Unmapped(_) => return Ok(Settled::Unmapped),
    };
    let held = store
        .get_payment_versioned(&event.merchant, &event.payment)
        .await?
        .is_some_and(|stored| {
            stored.item.processor.name == event.processor
                && stored.item.processor.reference.as_deref() == Some(event.reference.as_str())
        });
    if !held {
        return Ok(Settled::UnknownReference);
    }
    let record = |_: &lifecycle::Applied| {
        store
            .processor_event_record(
                &event.merchant,
                &event.payment,
                event.processor.as_str(),
                &event.id,
            )
            .map(Some)
    };
    let applied = lifecycle::apply(
        store,
        clock,
        &event.merchant,
        &event.payment,
        |payment, now| Ok((payment.settle(settlement.clone(), now, deadlines)?, None)),
        record,
    )
    .await;
    match applied {
        Ok(applied) => {
            crate::metrics::payment(&applied.payment);
            Ok(Settled::Applied(Box::new(applied.payment)))
        }
        Err(ChangeError::Refused(_)) => {
            let status = store
                .get_payment_versioned(&event.merchant, &event.payment)
                .await?
                .map(|stored| stored.item.status)
                .ok_or(ChangeError::NotFound)?;
            Ok(Settled::Stale(status))
        }
        // The event's record was there: an earlier delivery of it was applied.
        Err(ChangeError::Store(StoreError::ClaimLost)) => Ok(Settled::Duplicate),
        Err(err) => Err(err),
    }
}
