//! Capture, cancel and refunds at the processor, each written so that an answer that never
//! comes (the processor may have acted) can neither lose nor repeat money.
//!
//! - **Capture and cancel** are checked against our state first, then sent to the processor
//!   (keyed by the authorization's reference, so a retry is the same call), and only its
//!   confirmation is written (`Payment::confirm_capture` / `confirm_cancel`, one conditional
//!   transaction with the event). An unknown answer changes nothing the client sees — the API
//!   answers 503 — but marks the payment `unconfirmed` (bookkeeping, no event) so that
//!   reconciliation asks the processor what it did ([`resolve_unconfirmed`]) if no retry comes.
//!   A refusal by the processor (the other operation won there) is 409.
//! - **A refund** is reserved first (`Payment::refund`: `pending`, counted in `amount_refunded`,
//!   `payment.refunded`), so that no race refunds more than was captured; then sent, keyed by
//!   our refund id; its answer is applied once (`Payment::settle_refund`,
//!   `payment.refund_updated`). No answer: it stays `pending`, and reconciliation sends it again
//!   (the same refund id: the processor answers what became of the first call) until one comes.
//!
//! Every write here goes through `lifecycle::apply`, which recognises a committed write whose
//! answer was lost by its event, and re-decides a lost race from fresh state.

use crate::app::App;
use crate::clock::Clock;
use crate::domain::{
    Amount, CancellationReason, Deadlines, MerchantId, Payment, PaymentId, PendingRefund, Refund,
    RefundId, RefundRequest, RefundStatus, Unconfirmed,
};
use crate::http::ApiError;
use crate::lifecycle::{self, Applied, ChangeError};
use crate::processor::{Held, PaymentProcessor, ProcessorError, RefundCall};
use crate::store::{Store, StoreError, Versioned};

/// The processor's reference for the payment's authorization. Payments stored before
/// references were kept are all the sandbox's, whose reference is derived from our id.
pub fn reference(payment: &Payment) -> String {
    payment
        .processor
        .reference
        .clone()
        .unwrap_or_else(|| crate::processor::sandbox::reference_for(&payment.id))
}

/// Checks that our side allows capturing `amount` (default: all that is capturable) and has the
/// processor capture it. `Ok` with the amount the processor captured, for
/// `Payment::confirm_capture`.
pub async fn capture(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    amount: Option<Amount>,
) -> Result<Amount, ApiError> {
    let stored = read(&app.store, merchant, id).await?;
    let captured = stored.item.capture(amount, app.clock.now())?;
    let amount = Amount::parse(captured.amount_captured)
        .map_err(|e| ApiError::Internal(format!("a decided capture has no amount: {}", e.0)))?;
    let sent = app
        .processor
        .capture(&reference(&stored.item), amount)
        .await;
    answered(app, merchant, stored, Unconfirmed::Capture { amount }, sent).await?;
    Ok(amount)
}

/// Checks that our side allows the cancel and has the processor cancel the authorization.
pub async fn cancel(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    reason: Option<CancellationReason>,
) -> Result<(), ApiError> {
    let stored = read(&app.store, merchant, id).await?;
    stored.item.cancel(reason, app.clock.now())?;
    let sent = app.processor.cancel(&reference(&stored.item)).await;
    answered(app, merchant, stored, Unconfirmed::Cancel { reason }, sent).await
}

async fn read(
    store: &Store,
    merchant: &MerchantId,
    id: &PaymentId,
) -> Result<Versioned<Payment>, ApiError> {
    store
        .get_payment_versioned(merchant, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// What the API makes of the processor's answer to `operation`: a refusal is the client's 409;
/// no answer is 503, after marking the payment for reconciliation.
async fn answered(
    app: &App,
    merchant: &MerchantId,
    stored: Versioned<Payment>,
    operation: Unconfirmed,
    sent: Result<(), ProcessorError>,
) -> Result<(), ApiError> {
    let id = stored.item.id.clone();
    match sent {
        Ok(()) => Ok(()),
        Err(refused @ ProcessorError::Refused(_)) => {
            tracing::info!(payment_id = %id, error = %refused, "the processor refused the operation");
            Err(refused.into())
        }
        Err(err) => {
            tracing::warn!(payment_id = %id, error = %err, ?operation, "no answer from the processor; the payment is reconciled unless a retry comes first");
            let deadlines = app.deadlines();
            let (store, clock) = (&app.store, app.clock.as_ref());
            mark_unconfirmed(store, clock, &deadlines, merchant, stored, operation).await;
            Err(err.into())
        }
    }
}

/// Marks `operation` unconfirmed on the payment (no event: the client sees no change), tried
/// on fresh reads while other changes win the race; reconciliation asks the processor after
/// `deadlines.reconcile`. If the payment moved on meanwhile there is nothing to mark; if the
/// store fails too, the expiry sweep still asks the processor before the authorization lapses
/// (expire-authorizations), so this is logged, not answered.
pub async fn mark_unconfirmed(
    store: &Store,
    clock: &dyn Clock,
    deadlines: &Deadlines,
    merchant: &MerchantId,
    mut stored: Versioned<Payment>,
    operation: Unconfirmed,
) {
    for _ in 0..3 {
        let Ok(marked) = stored.item.unconfirmed(operation, clock.now(), deadlines) else {
            return;
        };
        match store
            .reschedule_payment(merchant, stored.version, &marked)
            .await
        {
            Ok(()) => return,
            Err(StoreError::ConditionFailed) => {
                match store.get_payment_versioned(merchant, &marked.id).await {
                    Ok(Some(fresh)) => stored = fresh,
                    _ => break,
                }
            }
            Err(err) => {
                tracing::warn!(payment_id = %marked.id, error = %err, "could not mark the operation unconfirmed");
                return;
            }
        }
    }
    tracing::warn!(payment_id = %stored.item.id, "could not mark the operation unconfirmed: the payment kept changing");
}

/// Reserves refund `refund_id` of the merchant's payment `id` (or, for a keyed request,
/// finds it reserved or settled by an earlier attempt: `keyed` says the id is the key's, so it
/// may exist), sends it to the processor and applies the answer. Answers the refund as it then
/// stands: `succeeded`, `failed`, or still `pending`.
pub async fn refund(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    refund_id: RefundId,
    request: RefundRequest,
    keyed: bool,
) -> Result<Refund, ApiError> {
    let (store, processor, clock) = (&app.store, app.processor.as_ref(), app.clock.as_ref());
    if keyed {
        if let Some((position, earlier)) = store.find_refund(merchant, id, &refund_id).await? {
            if earlier.status != RefundStatus::Pending {
                return Ok(earlier);
            }
            let stored = read(store, merchant, id).await?;
            let sent = send_refund(
                store,
                processor,
                clock,
                merchant,
                &stored.item,
                (position, &earlier),
            );
            return Ok(Box::pin(sent).await?);
        }
    }
    let deadlines = app.deadlines();
    // Boxed, as every nested change here: the futures of two transactions with their retries
    // would otherwise overflow a test thread's stack in debug builds.
    let reserved = Box::pin(lifecycle::apply(
        store,
        clock,
        merchant,
        id,
        |payment, now| {
            let (payment, refund) =
                payment.refund(refund_id.clone(), request.clone(), now, &deadlines)?;
            Ok((payment, Some(refund)))
        },
        |_| Ok(None),
    ))
    .await?;
    let Applied {
        payment,
        refund,
        version,
    } = reserved;
    let refund =
        refund.ok_or_else(|| ApiError::Internal("a reservation made no refund".to_owned()))?;
    tracing::info!(payment_id = %id, refund_id = %refund.id, amount = refund.amount.minor_units(), "refund reserved");
    let sent = send_refund(
        store,
        processor,
        clock,
        merchant,
        &payment,
        (version, &refund),
    );
    Ok(Box::pin(sent).await?)
}

/// Reconciliation's step for one of the payment's pending refunds: its stored refund sent
/// again ([`send_refund`]).
pub async fn send_pending(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    merchant: &MerchantId,
    payment: &Payment,
    pending: &PendingRefund,
) -> Result<Refund, ChangeError> {
    let (position, refund) = store
        .find_refund(merchant, &payment.id, &pending.id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    let sent = send_refund(
        store,
        processor,
        clock,
        merchant,
        payment,
        (position, &refund),
    );
    Box::pin(sent).await
}

/// Sends the pending `refund` of `payment` (as stored, at its `position`) to the processor (again, for
/// reconciliation: the same refund id) and applies a final answer. Answers the refund as it then stands. An answer
/// another writer applied first (a retry, reconciliation) is read back, not applied again.
pub async fn send_refund(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    merchant: &MerchantId,
    payment: &Payment,
    (position, refund): (u64, &Refund),
) -> Result<Refund, ChangeError> {
    let call = RefundCall {
        refund: refund.id.clone(),
        payment: payment.id.clone(),
        merchant: merchant.clone(),
        reference: reference(payment),
        amount: refund.amount,
        currency: refund.currency,
        reason: refund.reason,
    };
    let status = match processor.refund(&call).await {
        Ok(RefundStatus::Pending) => return Ok(refund.clone()),
        Ok(status) => status,
        Err(refused @ ProcessorError::Refused(_)) => {
            tracing::warn!(payment_id = %payment.id, refund_id = %refund.id, error = %refused, "the processor refused the refund; it failed");
            RefundStatus::Failed
        }
        Err(err) => {
            tracing::warn!(payment_id = %payment.id, refund_id = %refund.id, error = %err, "no answer from the processor; the refund stays pending and is sent again by reconciliation");
            return Ok(refund.clone());
        }
    };
    Box::pin(settle_refund(
        store,
        clock,
        merchant,
        &payment.id,
        (position, refund),
        status,
    ))
    .await
}

/// Applies the processor's final answer `status` to the pending `refund` of payment `id` (as
/// stored, at its `position`): the answer to our own call, or a processor event about it.
/// Answers the refund as it then stands; an answer another writer applied first (a retry,
/// reconciliation, an event) is read back, not applied again.
pub async fn settle_refund(
    store: &Store,
    clock: &dyn Clock,
    merchant: &MerchantId,
    id: &PaymentId,
    (position, refund): (u64, &Refund),
    status: RefundStatus,
) -> Result<Refund, ChangeError> {
    let settled = Box::pin(lifecycle::apply_refund_settlement(
        store,
        clock,
        merchant,
        id,
        position,
        |payment, now| {
            let (payment, refund) = payment.settle_refund(refund, status, now)?;
            Ok((payment, Some(refund)))
        },
    ))
    .await;
    match settled {
        Ok(Applied {
            refund: Some(settled),
            ..
        }) => {
            // The metric counts money refunded: a failed refund moved none.
            if settled.status == RefundStatus::Succeeded {
                crate::metrics::refund(&settled);
            }
            tracing::info!(payment_id = %id, refund_id = %settled.id, status = ?settled.status, "refund settled");
            Ok(settled)
        }
        Ok(Applied { refund: None, .. }) => Err(ChangeError::Store(StoreError::Internal(
            "a refund settlement made no refund".into(),
        ))),
        Err(ChangeError::Refused(_)) => store
            .find_refund(merchant, id, &refund.id)
            .await?
            .map(|(_, refund)| refund)
            .ok_or(ChangeError::NotFound),
        Err(err) => Err(err),
    }
}

/// What reconciliation learnt about an unconfirmed capture or cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The processor acted: the change is written.
    Applied,
    /// The processor did not act: the mark is cleared, the payment is as it was.
    NothingHappened,
    /// The processor did not say: ask again later.
    Unknown,
}

/// Asks the processor what it did with the payment's unconfirmed capture or cancel and makes
/// our side agree: a capture or cancel it made is written as a confirmed one would have been;
/// if it holds the authorization untouched, nothing happened (the mark is cleared).
pub async fn resolve_unconfirmed(
    store: &Store,
    processor: &dyn PaymentProcessor,
    clock: &dyn Clock,
    merchant: &MerchantId,
    stored: &Versioned<Payment>,
) -> Result<Resolved, ChangeError> {
    let Some(operation) = stored.item.unconfirmed else {
        return Ok(Resolved::NothingHappened);
    };
    let id = &stored.item.id;
    let held = match processor.held(&reference(&stored.item)).await {
        Ok(held) => held,
        Err(err) => {
            tracing::warn!(payment_id = %id, error = %err, "the processor did not say what it did; asking again later");
            return Ok(Resolved::Unknown);
        }
    };
    let reason = match operation {
        Unconfirmed::Cancel { reason } => reason,
        Unconfirmed::Capture { .. } => None,
    };
    match held {
        Held::Captured(amount) => {
            apply_processor_change(store, clock, merchant, id, |p, now| {
                p.confirm_capture(amount, now)
            })
            .await
        }
        Held::Canceled => {
            apply_processor_change(store, clock, merchant, id, |p, now| {
                p.confirm_cancel(reason, now)
            })
            .await
        }
        Held::Authorized | Held::Pending => {
            let cleared = stored.item.not_confirmed()?;
            store
                .reschedule_payment(merchant, stored.version, &cleared)
                .await?;
            tracing::info!(payment_id = %id, ?operation, "the processor did not act on the unconfirmed operation");
            Ok(Resolved::NothingHappened)
        }
        Held::NotFound => {
            tracing::warn!(payment_id = %id, "the processor has no such authorization; asking again later");
            Ok(Resolved::Unknown)
        }
    }
}

/// Writes a change the processor made (a capture or cancel it confirmed or reports).
pub async fn apply_processor_change<F>(
    store: &Store,
    clock: &dyn Clock,
    merchant: &MerchantId,
    id: &PaymentId,
    decide: F,
) -> Result<Resolved, ChangeError>
where
    F: Fn(&Payment, time::OffsetDateTime) -> Result<Payment, crate::domain::TransitionError> + Sync,
{
    let applied = Box::pin(lifecycle::apply(
        store,
        clock,
        merchant,
        id,
        |payment, now| Ok((decide(payment, now)?, None)),
        |_| Ok(None),
    ))
    .await?;
    crate::metrics::payment(&applied.payment);
    tracing::info!(payment_id = %id, status = applied.payment.status.as_str(), "applied what the processor did");
    Ok(Resolved::Applied)
}
