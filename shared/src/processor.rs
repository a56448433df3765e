//! Payment processors. Authorization goes through [`PaymentProcessor`] so that a real processor
//! can replace the built-in deterministic [`SandboxProcessor`] without touching the handlers.

use crate::domain::{Amount, Authorization, Currency, Failure};
use async_trait::async_trait;

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

/// Authorizes an amount against a payment method.
#[async_trait]
pub trait PaymentProcessor: Send + Sync {
    async fn authorize(
        &self,
        payment_method: &str,
        amount: Amount,
        currency: Currency,
    ) -> Result<Authorization, ProcessorError>;
}

/// The built-in sandbox: the outcome is decided by the payment method token alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SandboxProcessor;

impl SandboxProcessor {
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
        payment_method: &str,
        _amount: Amount,
        _currency: Currency,
    ) -> Result<Authorization, ProcessorError> {
        Self::decide(payment_method)
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
