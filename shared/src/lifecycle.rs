//! Changing a payment safely when requests race: read it with its version, let the status
//! machine decide, and write the result conditioned on that version in one transaction with its
//! event (and refund). If another request changed the payment in between, the write fails as a
//! whole and the change is decided again from the fresh state.
//!
//! So a lost race is answered from what really happened: the loser of capture-vs-cancel gets
//! 409 `invalid_state`, the sixth of ten concurrent fifth-refunds gets 409 or 400
//! `amount_too_large` — never a 500, never a double application. A write whose answer was lost
//! is recognised by the store (the event at the version it produced is ours) before anything
//! is decided again, so a lost answer is never mistaken for a lost race.
//!
//! [`apply`] is the change itself, for every writer: the API's operations go through
//! [`change_payment`] (which adds the idempotency completion and the response), the expiry
//! sweeper calls it directly.

use crate::app::App;
use crate::clock::Clock;
use crate::domain::{Event, MerchantId, Payment, PaymentId, Refund, TransitionError};
use crate::http::{ApiError, ApiResponse};
use crate::idempotency::Commit;
use crate::store::{RefundWrite, Store, StoreError};
use aws_sdk_dynamodb::types::TransactWriteItem;
use time::OffsetDateTime;

/// A change that was written.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The payment after the change.
    pub payment: Payment,
    /// The refund the change created or settled, if it was a refund.
    pub refund: Option<Refund>,
    /// The payment's version after the change (a refund it created is at this position).
    pub version: u64,
}

/// Why a change was not written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such payment")]
    NotFound,
    /// The status machine refused the change in the payment's current state (for a loser of a
    /// race: the state the winner left).
    #[error(transparent)]
    Refused(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The payment kept changing under us (see [`MAX_ATTEMPTS`]).
    #[error("payment {0} changed {MAX_ATTEMPTS} times while this change was tried")]
    KeptChanging(PaymentId),
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::NotFound => ApiError::NotFound,
            ChangeError::Refused(refused) => refused.into(),
            ChangeError::Store(store) => store.into(),
            busy @ ChangeError::KeptChanging(_) => ApiError::ServiceUnavailable(busy.to_string()),
        }
    }
}

/// Re-decisions after lost races before giving up with 503. Each lost race means another
/// request's change was applied, so this bounds work, not correctness.
pub const MAX_ATTEMPTS: usize = 50;

/// Applies `decide` to the merchant's payment `id` atomically (see the module docs), deciding
/// at `clock`'s time. `extra` gives the item to add to the transaction for the decided change
/// (an idempotency completion), if any.
pub async fn apply<F, X>(
    store: &Store,
    clock: &dyn Clock,
    merchant: &MerchantId,
    id: &PaymentId,
    decide: F,
    extra: X,
) -> Result<Applied, ChangeError>
where
    F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError> + Sync,
    X: Fn(&Applied) -> Result<Option<TransactWriteItem>, StoreError> + Sync,
{
    // One copy of the loop (and of the store's transaction future) for every caller: each
    // closure would otherwise instantiate all of it again, which every function's zip carried.
    apply_dyn(store, clock, merchant, id, &decide, &extra, None).await
}

/// [`apply`] for the settlement of a refund: `decide` gives the settled refund, which replaces
/// the refund item at `position` (where the reservation created it: `Applied::version`, or as
/// `Store::find_refund` reads it).
pub async fn apply_refund_settlement<F>(
    store: &Store,
    clock: &dyn Clock,
    merchant: &MerchantId,
    id: &PaymentId,
    position: u64,
    decide: F,
) -> Result<Applied, ChangeError>
where
    F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError> + Sync,
{
    apply_dyn(
        store,
        clock,
        merchant,
        id,
        &decide,
        &|_| Ok(None),
        Some(position),
    )
    .await
}

/// A change's decision, as [`apply`] takes it.
type Decide<'a> = dyn Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError>
    + Sync
    + 'a;
/// The extra transaction item of a decided change, as [`apply`] takes it.
type Extra<'a> = dyn Fn(&Applied) -> Result<Option<TransactWriteItem>, StoreError> + Sync + 'a;

async fn apply_dyn(
    store: &Store,
    clock: &dyn Clock,
    merchant: &MerchantId,
    id: &PaymentId,
    decide: &Decide<'_>,
    extra: &Extra<'_>,
    refund_position: Option<u64>,
) -> Result<Applied, ChangeError> {
    for attempt in 0..MAX_ATTEMPTS {
        let current = store
            .get_payment_versioned(merchant, id)
            .await?
            .ok_or(ChangeError::NotFound)?;
        let now = clock.now();
        let (payment, refund) = decide(&current.item, now)?;
        let event = match &refund {
            Some(refund) => Event::refunded(&payment, refund, now),
            None => Event::status_change(&payment, now),
        };
        let applied = Applied {
            payment,
            refund,
            version: current.version + 1,
        };
        let written = store
            .change_payment(
                merchant,
                current.version,
                &applied.payment,
                &event,
                applied.refund.as_ref().map(|refund| match refund_position {
                    Some(position) => RefundWrite::Settle(refund, position),
                    None => RefundWrite::Reserve(refund),
                }),
                extra(&applied)?,
            )
            .await;
        match written {
            Ok(()) => return Ok(applied),
            Err(StoreError::ConditionFailed) => {
                crate::metrics::count(crate::metrics::Counter::LostRaces);
                tracing::debug!(payment_id = %id, "lost a race; deciding again from fresh state");
            }
            // Another transaction held the payment at that moment; nothing was applied. Racing
            // requests that retry in step collide again, so wait a jittered moment first.
            Err(StoreError::Conflict) => {
                crate::metrics::count(crate::metrics::Counter::LostRaces);
                tracing::debug!(payment_id = %id, "transaction conflict; deciding again shortly");
                crate::backoff::wait(attempt.min(8) as u32).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ChangeError::KeptChanging(id.clone()))
}

/// [`apply`] for an API operation, answering with `render` of the result. The response is known
/// before the write so that the idempotency completion (`commit`) stores it in the same
/// transaction.
pub async fn change_payment<F, R>(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    commit: &Commit,
    decide: F,
    render: R,
) -> Result<(Applied, ApiResponse), ApiError>
where
    F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError> + Sync,
    R: Fn(&Applied) -> ApiResponse + Sync,
{
    let completion = |applied: &Applied| commit.completion(&render(applied));
    let applied = apply(
        &app.store,
        app.clock.as_ref(),
        merchant,
        id,
        decide,
        completion,
    )
    .await?;
    match &applied.refund {
        Some(refund) => crate::metrics::refund(refund),
        None => crate::metrics::payment(&applied.payment),
    }
    // `render` is a function of the change alone: this is the response the completion stored.
    let response = render(&applied);
    Ok((applied, response))
}
