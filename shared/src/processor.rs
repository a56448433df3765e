//! Payment processors. Authorization goes through [`PaymentProcessor`] so that a real processor
//! can replace the built-in deterministic [`SandboxProcessor`] without touching the handlers.
//!
//! Every authorization carries an idempotency reference: the id of the payment it is for. A
//! request retried after an unknown outcome (its answer lost, a 503) asks again with the same
//! reference — with an `Idempotency-Key`, the retry's payment keeps the first attempt's id (see
//! `idempotency`, `resource_id`) — so a real processor de-duplicates it instead of holding the
//! customer's funds twice (Stripe, Adyen and Braintree all take such a key).

use crate::domain::{Amount, Authorization, Currency, Failure};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Why a processor could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The payment method token is not one this processor knows (a client error).
    #[error("unknown payment method")]
    UnknownPaymentMethod,
    /// The processor could not be reached or failed (a server error; never shown to clients).
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

/// What is sent to the processor for one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The idempotency reference: the payment's id, the same for every retry of one request.
    pub reference: String,
    pub payment_method: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// Authorizes an amount against a payment method.
#[async_trait]
pub trait PaymentProcessor: Send + Sync {
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<Authorization, ProcessorError>;
}

/// How many authorizations the sandbox remembers (a warm container must not grow without end).
const SANDBOX_LOG_LEN: usize = 1024;

/// The built-in sandbox: the outcome is decided by the payment method token alone. It keeps the
/// last [`SANDBOX_LOG_LEN`] requests it was sent, as a real processor's log would show them.
#[derive(Debug, Default)]
pub struct SandboxProcessor {
    received: Mutex<VecDeque<AuthorizationRequest>>,
}

impl SandboxProcessor {
    /// The authorization requests received, oldest first.
    pub fn received(&self) -> Vec<AuthorizationRequest> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn decide(payment_method: &str) -> Result<Authorization, ProcessorError> {
        let declined = |code: &str, message: &str| {
            Ok(Authorization::Declined(Failure {
                code: code.to_owned(),
                message: message.to_owned(),
            }))
        };
        match payment_method {
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" => Ok(Authorization::Approved),
            "pm_card_declined" => declined("card_declined", "The card was declined."),
            "pm_card_insufficient_funds" => {
                declined("insufficient_funds", "The card has insufficient funds.")
            }
            "pm_card_expired" => declined("expired_card", "The card has expired."),
            _ => Err(ProcessorError::UnknownPaymentMethod),
        }
    }
}

#[async_trait]
impl PaymentProcessor for SandboxProcessor {
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<Authorization, ProcessorError> {
        let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        if received.len() == SANDBOX_LOG_LEN {
            received.pop_front();
        }
        received.push_back(request.clone());
        drop(received);
        tracing::debug!(reference = %request.reference, "sandbox authorization");
        Self::decide(&request.payment_method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_code(token: &str) -> Option<String> {
        match SandboxProcessor::decide(token).unwrap() {
            Authorization::Approved => None,
            Authorization::Declined(failure) => Some(failure.code),
        }
    }

    #[test]
    fn follows_the_sandbox_table() {
        for token in ["pm_card_visa", "pm_card_mastercard", "pm_card_amex"] {
            assert_eq!(failure_code(token), None);
        }
        assert_eq!(
            failure_code("pm_card_declined").as_deref(),
            Some("card_declined")
        );
        assert_eq!(
            failure_code("pm_card_insufficient_funds").as_deref(),
            Some("insufficient_funds")
        );
        assert_eq!(
            failure_code("pm_card_expired").as_deref(),
            Some("expired_card")
        );
    }

    #[test]
    fn unknown_tokens_are_rejected() {
        for token in ["", "pm_card_VISA", "card_visa", "pm_card_visa "] {
            assert!(matches!(
                SandboxProcessor::decide(token),
                Err(ProcessorError::UnknownPaymentMethod)
            ));
        }
    }
}
