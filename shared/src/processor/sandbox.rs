//! The built-in sandbox processor: deterministic, the outcome chosen by the payment method token
//! (API.md, "Sandbox"). Synchronous tokens are decided on the spot and leave nothing behind;
//! a token whose outcome comes later is recorded as the sandbox's own authorization
//! ([`SandboxAuthorization`], in its own partition of the table: `store::sandbox`), which is
//! what its authentication page answers and what its events report — the processor's state, as
//! a real processor keeps it on its side.
//!
//! `pm_card_authentication_required` → `requires_action`, `next_action` = the sandbox's page
//! (`<api base>/sandbox/authenticate/<payment id>?token=<128 random bits>`); the customer's
//! answer there is sent back as a signed processor event (`events`), through the same route and
//! verification as a real processor's.
//!
//! `pm_card_processor_timeout` plays the hardest case of payments: the sandbox approves (and
//! records it), but the answer never reaches us — `authorize` says [`Authorization::Unknown`].
//! The payment is `processing` until reconciliation looks the reference up ([`Lookup`]) and
//! finds the approval.
//!
//! Captures, cancels and refunds always succeed, and are recorded once ([`SandboxOutcome`],
//! [`SandboxRefund`]): the first of a capture and a cancel of one authorization wins and the
//! other is refused, a repeat is answered as the first was, and reconciliation's
//! [`PaymentProcessor::held`] answers from the record, as a real processor's state would.

use super::{AuthorizationRequest, Held, Lookup, PaymentProcessor, ProcessorError, RefundCall};
use crate::domain::{
    Amount, Authorization, CaptureMethod, Currency, Failure, MerchantId, NextAction, PaymentId,
    ProcessorName, RedirectToUrl, RefundId, RefundStatus, ReturnUrl, Settlement, Timestamp,
};
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use time::OffsetDateTime;

/// How many authorizations the sandbox remembers in memory (a warm container must not grow
/// without end); tests read them.
const SANDBOX_LOG_LEN: usize = 1024;

/// The failure of a customer who failed (or refused) to authenticate.
pub fn authentication_failed() -> Failure {
    Failure {
        code: "authentication_failed".to_owned(),
        message: "The customer did not authenticate the payment.".to_owned(),
    }
}

/// The sandbox's reference for our payment `id`: derived, so it is known before the sandbox is
/// even asked, and the same for every retry.
pub fn reference_for(id: &PaymentId) -> String {
    let body = id.as_str().strip_prefix("pay_").unwrap_or(id.as_str());
    format!("sbx_{body}")
}

/// Where a sandbox authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Waiting for the customer on the authentication page.
    RequiresAction,
    /// Deciding; decided at `settle_at` (`pm_card_processing`).
    Processing,
    Approved,
    Declined,
}

/// The sandbox's record of an authorization whose outcome comes later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxAuthorization {
    pub reference: String,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    pub amount: Amount,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    pub state: SandboxState,
    pub failure: Option<Failure>,
    /// The authentication page's token (its URL's `token`).
    pub action_token: Option<String>,
    pub return_url: Option<ReturnUrl>,
    pub created_at: Timestamp,
    /// While `processing`: when the sandbox decides it (then reports it by an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_at: Option<Timestamp>,
    /// Where the API that asked is served: where the sandbox's delayed report goes.
    #[serde(default)]
    pub api_base: Option<String>,
}

impl SandboxAuthorization {
    /// The authentication page's address.
    pub fn action_url(&self, api_base: &str) -> String {
        format!(
            "{api_base}/sandbox/authenticate/{}?token={}",
            self.payment_id,
            self.action_token.as_deref().unwrap_or_default()
        )
    }

    /// Whether `token` opens this authorization's page. The digests are compared, not the
    /// tokens, so the comparison's time tells nothing about the token (the page's only
    /// credential).
    pub fn admits(&self, token: &str) -> bool {
        use sha2::{Digest, Sha256};
        self.action_token
            .as_deref()
            .is_some_and(|expected| Sha256::digest(expected) == Sha256::digest(token))
    }
}

/// What the sandbox did with an approved authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxAction {
    Captured,
    Canceled,
}

/// The sandbox's record of a capture or cancel (the first one wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOutcome {
    pub reference: String,
    pub action: SandboxAction,
    /// What was captured (a capture's).
    pub amount: Option<Amount>,
    pub at: Timestamp,
}

/// The sandbox's record of a refund, under our refund id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRefund {
    pub refund_id: RefundId,
    pub reference: String,
    pub amount: Amount,
    pub currency: Currency,
    pub at: Timestamp,
}

/// What a token decides.
enum Decision {
    Now(Authorization),
    Authenticate,
    /// Approved, and the answer lost on its way back.
    ApproveUnanswered,
    /// Decided later, and reported by an event.
    DecideLater,
}

/// The sandbox (see the module docs).
#[derive(Debug)]
pub struct SandboxProcessor {
    store: Store,
    settle_after: time::Duration,
    received: Mutex<VecDeque<AuthorizationRequest>>,
}

/// How long `pm_card_processing` stays undecided when nothing says otherwise (the deployed
/// sandbox's; `make dev` sets `SANDBOX_SETTLE_SECONDS=5`).
pub const DEFAULT_SETTLE_AFTER: time::Duration = time::Duration::seconds(60);

impl SandboxProcessor {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            settle_after: DEFAULT_SETTLE_AFTER,
            received: Mutex::default(),
        }
    }

    /// The sandbox deciding a `pm_card_processing` authorization `settle_after` after it.
    pub fn with_settle_after(self, settle_after: time::Duration) -> Self {
        Self {
            settle_after,
            ..self
        }
    }

    /// The authorization requests received, oldest first.
    pub fn received(&self) -> Vec<AuthorizationRequest> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn decide(payment_method: &str) -> Result<Decision, ProcessorError> {
        let declined = |code: &str, message: &str| {
            Ok(Decision::Now(Authorization::Declined(Failure {
                code: code.to_owned(),
                message: message.to_owned(),
            })))
        };
        match payment_method {
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" => {
                Ok(Decision::Now(Authorization::Approved))
            }
            "pm_card_declined" => declined("card_declined", "The card was declined."),
            "pm_card_insufficient_funds" => {
                declined("insufficient_funds", "The card has insufficient funds.")
            }
            "pm_card_expired" => declined("expired_card", "The card has expired."),
            "pm_card_authentication_required" => Ok(Decision::Authenticate),
            "pm_card_processor_timeout" => Ok(Decision::ApproveUnanswered),
            "pm_card_processing" => Ok(Decision::DecideLater),
            _ => Err(ProcessorError::UnknownPaymentMethod),
        }
    }

    /// Records an authorization in `state` (with a page token if it waits for the customer),
    /// or finds the one a first attempt of the same request recorded (the same reference: the
    /// retry gets the same page, and the same decision).
    async fn record(
        &self,
        request: &AuthorizationRequest,
        reference: String,
        state: SandboxState,
    ) -> Result<SandboxAuthorization, ProcessorError> {
        let waits = state == SandboxState::RequiresAction;
        let now = OffsetDateTime::now_utc();
        let settle_at = (state == SandboxState::Processing)
            .then(|| crate::domain::Deadlines::after(now, self.settle_after));
        let mut token = [0u8; 16];
        getrandom::fill(&mut token)
            .map_err(|e| ProcessorError::Unavailable(format!("no randomness for a token: {e}")))?;
        let record = SandboxAuthorization {
            reference,
            merchant_id: request.merchant.clone(),
            payment_id: request.payment.clone(),
            amount: request.amount,
            currency: request.currency,
            capture_method: request.capture_method,
            state,
            failure: None,
            action_token: waits.then(|| hex::encode(token)),
            return_url: request.return_url.clone(),
            created_at: Timestamp::from_datetime(now),
            settle_at,
            api_base: Some(request.api_base.clone()),
        };
        self.store
            .record_sandbox_authorization(&record)
            .await
            .map_err(|err: StoreError| ProcessorError::Unavailable(err.to_string()))
    }

    /// Records `action` on `reference` unless the sandbox did something with it already; `Ok`
    /// if what is recorded is this action (ours, or the same one repeated).
    async fn act(
        &self,
        reference: &str,
        action: SandboxAction,
        amount: Option<Amount>,
    ) -> Result<(), ProcessorError> {
        let outcome = SandboxOutcome {
            reference: reference.to_owned(),
            action,
            amount,
            at: Timestamp::from_datetime(OffsetDateTime::now_utc()),
        };
        let stored = self
            .store
            .record_sandbox_outcome(&outcome)
            .await
            .map_err(unknown_unless_refused)?;
        if (stored.action, stored.amount) == (action, amount) {
            Ok(())
        } else {
            Err(ProcessorError::Refused(match stored.action {
                SandboxAction::Captured => format!(
                    "the authorization was captured ({})",
                    stored.amount.map_or(0, Amount::minor_units)
                ),
                SandboxAction::Canceled => "the authorization was canceled".to_owned(),
            }))
        }
    }
}

/// A store error of a sandbox write: the write may have committed (the sandbox has acted, as
/// far as anyone can tell), unless the store refused it before writing.
fn unknown_unless_refused(err: StoreError) -> ProcessorError {
    match err {
        StoreError::Unavailable(reason) => ProcessorError::Unknown(reason),
        other => ProcessorError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl PaymentProcessor for SandboxProcessor {
    fn name(&self) -> ProcessorName {
        ProcessorName::Sandbox
    }

    fn creates_references(&self) -> bool {
        false
    }

    async fn prepare(&self, request: &AuthorizationRequest) -> Result<String, ProcessorError> {
        Ok(reference_for(&request.payment))
    }

    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        reference: &str,
    ) -> Result<Authorization, ProcessorError> {
        {
            let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
            if received.len() == SANDBOX_LOG_LEN {
                received.pop_front();
            }
            received.push_back(request.clone());
        }
        let reference = reference.to_owned();
        tracing::debug!(reference, "sandbox authorization");
        let outcome = match Self::decide(&request.payment_method)? {
            Decision::Now(outcome) => outcome,
            Decision::Authenticate => {
                let record = self
                    .record(request, reference.clone(), SandboxState::RequiresAction)
                    .await?;
                Authorization::RequiresAction(NextAction::RedirectToUrl {
                    redirect_to_url: RedirectToUrl {
                        url: record.action_url(&request.api_base),
                        return_url: record.return_url,
                    },
                })
            }
            Decision::ApproveUnanswered => {
                // The sandbox has acted (recorded the approval) when the answer is lost: from
                // here on only `Unknown` is true, whatever went wrong.
                self.record(request, reference.clone(), SandboxState::Approved)
                    .await?;
                tracing::info!(
                    reference,
                    "sandbox: approved, answer withheld (pm_card_processor_timeout)"
                );
                Authorization::Unknown
            }
            Decision::DecideLater => {
                self.record(request, reference.clone(), SandboxState::Processing)
                    .await?;
                Authorization::Processing
            }
        };
        Ok(outcome)
    }

    async fn lookup(&self, reference: &str) -> Result<Lookup, ProcessorError> {
        let record = self
            .store
            .sandbox_authorization(reference)
            .await
            .map_err(|err| ProcessorError::Unavailable(err.to_string()))?;
        Ok(match record {
            None => Lookup::NotFound,
            Some(record) => match (record.state, record.failure) {
                (SandboxState::Approved, _) => Lookup::Settled(Settlement::Approved),
                (SandboxState::Declined, failure) => Lookup::Settled(Settlement::Declined(
                    failure.unwrap_or_else(authentication_failed),
                )),
                (SandboxState::RequiresAction | SandboxState::Processing, _) => Lookup::Pending,
            },
        })
    }

    async fn capture(&self, reference: &str, amount: Amount) -> Result<(), ProcessorError> {
        self.act(reference, SandboxAction::Captured, Some(amount))
            .await
    }

    async fn cancel(&self, reference: &str) -> Result<(), ProcessorError> {
        self.act(reference, SandboxAction::Canceled, None).await
    }

    async fn refund(&self, call: &RefundCall) -> Result<RefundStatus, ProcessorError> {
        let refund = SandboxRefund {
            refund_id: call.refund.clone(),
            reference: call.reference.clone(),
            amount: call.amount,
            currency: call.currency,
            at: Timestamp::from_datetime(OffsetDateTime::now_utc()),
        };
        let stored = self
            .store
            .record_sandbox_refund(&refund)
            .await
            .map_err(unknown_unless_refused)?;
        if (&stored.reference, stored.amount) == (&call.reference, call.amount) {
            Ok(RefundStatus::Succeeded)
        } else {
            Err(ProcessorError::Refused(format!(
                "refund {} was made for another authorization or amount",
                call.refund
            )))
        }
    }

    async fn held(&self, reference: &str) -> Result<Held, ProcessorError> {
        let unavailable = |err: StoreError| ProcessorError::Unavailable(err.to_string());
        if let Some(outcome) = self
            .store
            .sandbox_outcome(reference)
            .await
            .map_err(unavailable)?
        {
            return Ok(match (outcome.action, outcome.amount) {
                (SandboxAction::Captured, Some(amount)) => Held::Captured(amount),
                (SandboxAction::Captured, None) => {
                    return Err(ProcessorError::Unavailable(format!(
                        "the sandbox's capture of {reference} has no amount"
                    )))
                }
                (SandboxAction::Canceled, _) => Held::Canceled,
            });
        }
        // Synchronous approvals leave no record (the sandbox decided them on the spot).
        Ok(match self.lookup(reference).await? {
            Lookup::Settled(Settlement::Approved) | Lookup::NotFound => Held::Authorized,
            Lookup::Pending => Held::Pending,
            Lookup::Settled(Settlement::Declined(_)) => Held::NotFound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_code(token: &str) -> Option<String> {
        match SandboxProcessor::decide(token) {
            Ok(Decision::Now(Authorization::Declined(failure))) => Some(failure.code),
            Ok(Decision::Now(Authorization::Approved)) => None,
            _ => panic!("{token} is decided on the spot"),
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
        assert!(matches!(
            SandboxProcessor::decide("pm_card_authentication_required"),
            Ok(Decision::Authenticate)
        ));
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

    #[test]
    fn references_are_derived_from_the_payment_id() {
        let id = PaymentId::parse("pay_0192c3d4e5f67890abcdef0123456789").unwrap();
        assert_eq!(reference_for(&id), "sbx_0192c3d4e5f67890abcdef0123456789");
    }

    #[test]
    fn only_the_pages_token_admits() {
        let record = SandboxAuthorization {
            reference: "sbx_1".into(),
            merchant_id: MerchantId::generate(OffsetDateTime::now_utc()),
            payment_id: PaymentId::generate(OffsetDateTime::now_utc()),
            amount: Amount::parse(100).unwrap(),
            currency: Currency::parse("USD").unwrap(),
            capture_method: CaptureMethod::Automatic,
            state: SandboxState::RequiresAction,
            failure: None,
            action_token: Some("a1b2".into()),
            return_url: None,
            created_at: Timestamp::from_datetime(OffsetDateTime::now_utc()),
            settle_at: None,
            api_base: None,
        };
        assert!(record.admits("a1b2"));
        for wrong in ["", "a1b", "a1b3", "a1b2a", "A1B2"] {
            assert!(!record.admits(wrong), "{wrong}");
        }
        let without = SandboxAuthorization {
            action_token: None,
            ..record
        };
        assert!(!without.admits(""));
    }
}
