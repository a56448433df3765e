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
use crate::domain::{Deadlines, Payment, PaymentStatus, RefundId, RefundStatus};
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
    if let EventChange::Unmapped(_) = event.change {
        return Ok(Settled::Unmapped);
    }
    let held = store
        .get_payment_versioned(&event.merchant, &event.payment)
        .await?
        .filter(|stored| {
            stored.item.processor.name == event.processor
                && stored.item.processor.reference.as_deref() == Some(event.reference.as_str())
        });
    let Some(held) = held else {
        return Ok(Settled::UnknownReference);
    };
    let settlement = match &event.change {
        EventChange::Settled(settlement) => settlement,
        EventChange::Refunds(refunds) => {
            return apply_refunds(store, clock, event, &held.item, refunds).await
        }
        EventChange::Unmapped(_) => return Ok(Settled::Unmapped),
    };
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

/// Settles each pending refund of `payment` that the event says the processor decided (the
/// same settlement as the answer to our own refund call: `processor_calls::settle_refund`).
/// A refund settled already (by that answer, reconciliation, or this event before) is left
/// alone, so a repeated or late event changes nothing.
async fn apply_refunds(
    store: &Store,
    clock: &dyn Clock,
    event: &ProcessorEvent,
    payment: &Payment,
    refunds: &[(RefundId, RefundStatus)],
) -> Result<Settled, ChangeError> {
    let mut applied = false;
    for (id, status) in refunds {
        if *status == RefundStatus::Pending {
            continue;
        }
        let Some((position, refund)) = store.find_refund(&event.merchant, &payment.id, id).await?
        else {
            tracing::warn!(payment_id = %payment.id, refund_id = %id, "a processor event names a refund we do not hold");
            continue;
        };
        if refund.status != RefundStatus::Pending {
            continue;
        }
        crate::processor_calls::settle_refund(
            store,
            clock,
            &event.merchant,
            &payment.id,
            (position, &refund),
            *status,
        )
        .await?;
        applied = true;
    }
    let now = store
        .get_payment(&event.merchant, &payment.id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    Ok(match applied {
        true => Settled::Applied(Box::new(now)),
        false => Settled::Stale(now.status),
    })
}
