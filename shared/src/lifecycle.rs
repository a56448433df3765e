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

use crate::app::App;
use crate::domain::{Event, MerchantId, Payment, PaymentId, Refund, TransitionError};
use crate::http::{ApiError, ApiResponse};
use crate::idempotency::Commit;
use crate::store::StoreError;
use time::OffsetDateTime;

/// A change that was written.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The payment after the change.
    pub payment: Payment,
    /// The refund the change created, if it was a refund.
    pub refund: Option<Refund>,
}

/// Re-decisions after lost races before giving up with 503. Each lost race means another
/// request's change was applied, so this bounds work, not correctness.
const MAX_ATTEMPTS: usize = 50;

/// Applies `decide` to the merchant's payment `id` atomically (see the module docs) and answers
/// with `render` of the result. The response is known before the write so that an idempotency
/// completion (`commit`) can store it in the same transaction.
pub async fn change_payment<F, R>(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    commit: &Commit,
    decide: F,
    render: R,
) -> Result<(Applied, ApiResponse), ApiError>
where
    F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError>,
    R: Fn(&Applied) -> ApiResponse,
{
    for attempt in 0..MAX_ATTEMPTS {
        let current = app
            .store
            .get_payment_versioned(merchant, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let now = app.clock.now();
        let (payment, refund) = decide(&current.item, now)?;
        let event = match &refund {
            Some(refund) => Event::refunded(&payment, refund, now),
            None => Event::status_change(&payment, now),
        };
        let applied = Applied { payment, refund };
        let response = render(&applied);
        let written = app
            .store
            .change_payment(
                merchant,
                current.version,
                &applied.payment,
                &event,
                applied.refund.as_ref(),
                commit.completion(&response)?,
            )
            .await;
        match written {
            Ok(()) => return Ok((applied, response)),
            Err(StoreError::ConditionFailed) => {
                tracing::debug!(payment_id = %id, "lost a race; deciding again from fresh state");
            }
            // Another transaction held the payment at that moment; nothing was applied. Racing
            // requests that retry in step collide again, so wait a jittered moment first.
            Err(StoreError::Conflict) => {
                tracing::debug!(payment_id = %id, "transaction conflict; deciding again shortly");
                crate::backoff::wait(attempt.min(8) as u32).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::ServiceUnavailable(format!(
        "payment {id} changed {MAX_ATTEMPTS} times while this request tried to change it"
    )))
}
