//! Payment processors. Authorization goes through [`PaymentProcessor`] so that a real processor
//! (Stripe: `stripe`, chosen by `PROCESSOR`, [`from_env`]) replaces the built-in deterministic
//! sandbox (`sandbox`) without touching the handlers, and their callbacks come in through one
//! route (`events`, signed as `signature` says).
//!
//! Every authorization carries a reference we chose before any money can move: the processor's
//! id for it is derived from (the sandbox) or created unconfirmed under (Stripe's PaymentIntent,
//! with our ids in its `metadata` and an `Idempotency-Key` from our payment id) that choice. A
//! request retried after an unknown outcome asks again with the same reference — with an
//! `Idempotency-Key`, the retry's payment keeps the first attempt's id (see `idempotency`,
//! `resource_id`) — and an answer that never came is found by looking the reference up, never by
//! guessing. Hence the two steps: [`PaymentProcessor::prepare`] names the reference (moving no
//! money), and [`PaymentProcessor::authorize`] acts under it, where an `Err` means the processor
//! did nothing that moves money; once it may have, the answer is
//! `Ok(`[`Authorization::Unknown`]`)`. A reference the processor created is stored between the
//! two (`store::authorizing`).
//!
//! Capture, cancel and refunds go through it too, each keyed so that a repeat is recognised by
//! the processor and never moves money twice: capture and cancel by the authorization's
//! reference, a refund by our refund id (reserved before the call: `Payment::refund`). Their
//! `Err` may follow an action ([`ProcessorError::Unknown`]): the caller changes nothing the
//! client sees, and a retry (the same key), or reconciliation asking the processor
//! ([`PaymentProcessor::held`], or the refund call again), settles it.

pub mod events;
pub mod sandbox;
pub mod signature;
pub mod stripe;

use crate::domain::{
    Amount, Authorization, CaptureMethod, Currency, MerchantId, PaymentId, ProcessorName, RefundId,
    RefundReason, RefundStatus, ReturnUrl, Settlement,
};
use async_trait::async_trait;

pub use sandbox::SandboxProcessor;

use crate::config::{self, ConfigError};
use crate::store::Store;
use std::sync::Arc;

/// `PROCESSOR` (template parameter `Processor`): `sandbox` (the default) or `stripe`.
pub fn configured_name(lookup: config::Lookup) -> Result<ProcessorName, ConfigError> {
    match lookup("PROCESSOR").as_deref() {
        None | Some("") | Some("sandbox") => Ok(ProcessorName::Sandbox),
        Some("stripe") => Ok(ProcessorName::Stripe),
        Some(_) => Err(ConfigError::Invalid(
            "PROCESSOR",
            "must be sandbox or stripe",
        )),
    }
}

/// The sandbox as the deployment configures it (`SANDBOX_SETTLE_AFTER_SECONDS`).
pub fn sandbox_from_env(
    store: &Store,
    lookup: config::Lookup,
) -> Result<SandboxProcessor, ConfigError> {
    Ok(SandboxProcessor::new(store.clone())
        .with_settle_after(config::sandbox_settle_after(lookup)?))
}

/// The deployment's processor, for the functions that move money through it (create, capture,
/// cancel, refund, reconciliation, expiry): Stripe's connector is linked into those alone, so
/// the other functions' zips do not carry it (`App::with_deployment_processor`).
pub fn from_env(
    store: &Store,
    lookup: config::Lookup,
) -> Result<Arc<dyn PaymentProcessor>, ConfigError> {
    Ok(match configured_name(lookup)? {
        ProcessorName::Sandbox => Arc::new(sandbox_from_env(store, lookup)?),
        ProcessorName::Stripe => Arc::new(stripe::StripeProcessor::from_env(lookup)?),
    })
}

/// Why a processor call has no answer to act on. `UnknownPaymentMethod`, `Unavailable` and
/// `Refused` promise that nothing was done that moves money; `Unknown` does not.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The payment method token is not one this processor knows (a client error).
    #[error("unknown payment method")]
    UnknownPaymentMethod,
    /// The processor could not be reached or failed before acting (a server error; never
    /// shown to clients).
    #[error("processor unavailable: {0}")]
    Unavailable(String),
    /// The processor's own state does not allow the operation (a capture of an authorization
    /// it has canceled, a cancel of one it has captured): the other operation won there.
    #[error("refused by the processor: {0}")]
    Refused(String),
    /// The call may have been acted on, and its answer is lost (a timeout or a lost connection
    /// after sending). Never guessed: the caller retries with the same key or reconciles.
    #[error("processor outcome unknown: {0}")]
    Unknown(String),
    /// The processor says our request or our credentials are wrong (a bug or a
    /// misconfiguration, not the client's doing): nothing was done. A 500 for the client; the
    /// detail (the processor's request id) is logged, never shown.
    #[error("rejected by the processor: {0}")]
    Rejected(String),
}

/// What is sent to the processor for one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// Our payment's id, the same for every retry of one request: what the processor's
    /// reference is derived from, and what it de-duplicates by.
    pub payment: PaymentId,
    /// Whose payment it is (a real processor keeps it in the object's metadata).
    pub merchant: MerchantId,
    pub payment_method: String,
    pub amount: Amount,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    /// Where the customer lands after authenticating.
    pub return_url: Option<ReturnUrl>,
    /// Where this API is served (`https://<host>`, from the request): pages the processor
    /// hosts inside this API (the sandbox's authentication page) are addressed from it.
    pub api_base: String,
}

/// What the processor says about an authorization when asked by its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Decided.
    Settled(Settlement),
    /// Not decided yet (or waiting for the customer).
    Pending,
    /// The processor has no authorization under this reference.
    NotFound,
}

/// What the processor holds for an authorization after it was approved (what reconciliation
/// asks after an unconfirmed capture or cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Approved and neither captured nor canceled.
    Authorized,
    /// Captured, for this amount.
    Captured(Amount),
    Canceled,
    /// Not decided yet, or waiting for the customer (nothing to capture; a cancel can come).
    Pending,
    /// The processor has no authorization under this reference.
    NotFound,
}

/// One refund sent to the processor, keyed by our refund id (reserved before the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCall {
    pub refund: RefundId,
    pub payment: PaymentId,
    pub merchant: MerchantId,
    /// The authorization's reference at the processor.
    pub reference: String,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<RefundReason>,
}

/// Authorizes an amount against a payment method (see the module docs for what an `Err`
/// promises), and says later what became of it.
#[async_trait]
pub trait PaymentProcessor: Send + Sync {
    /// Which processor this is (the payment object's `processor.name`).
    fn name(&self) -> ProcessorName;

    /// Whether [`PaymentProcessor::prepare`] creates an object at the processor (Stripe's
    /// unconfirmed PaymentIntent) rather than deriving the reference from our payment id (the
    /// sandbox). A created reference is stored before the authorization
    /// (`store::authorizing`), so that a retry or reconciliation finds that object, whatever
    /// the processor remembers of idempotency keys.
    fn creates_references(&self) -> bool;

    /// The reference the authorization of `request` will be made under. Moves no money: an
    /// `Err` (or a lost answer) leaves at most an unconfirmed object at the processor.
    async fn prepare(&self, request: &AuthorizationRequest) -> Result<String, ProcessorError>;

    /// Authorizes `request` under `reference` (from [`PaymentProcessor::prepare`]); asked again
    /// with the same reference, it answers what became of the first call.
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        reference: &str,
    ) -> Result<Authorization, ProcessorError>;

    /// The outcome of the authorization under `reference` (reconciliation asks after an
    /// unknown outcome, and when an expected event does not come).
    async fn lookup(&self, reference: &str) -> Result<Lookup, ProcessorError>;

    /// Captures `amount` of the approved authorization `reference`. A repeat of a capture the
    /// processor made (the same amount) answers `Ok`; after a cancel, `Refused`.
    async fn capture(&self, reference: &str, amount: Amount) -> Result<(), ProcessorError>;

    /// Cancels the authorization `reference` (approved or waiting for the customer). A repeat
    /// answers `Ok`; after a capture, `Refused`.
    async fn cancel(&self, reference: &str) -> Result<(), ProcessorError>;

    /// Refunds `call.amount` under our refund id: the first call moves the money, a repeat
    /// answers what became of it (`Pending` while the processor has not decided).
    async fn refund(&self, call: &RefundCall) -> Result<RefundStatus, ProcessorError>;

    /// What the processor holds for the authorization `reference`.
    async fn held(&self, reference: &str) -> Result<Held, ProcessorError>;
}
