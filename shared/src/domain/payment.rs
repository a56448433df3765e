//! The payment and its status machine, and the audit-trail event every state change writes.
//!
//! `Payment`'s serde form is the API's payment object (less the constant `"object"` tag, which
//! [`Payment::resource`] adds), so a response, an event's `data` and the stored item can never
//! disagree about what a payment looks like.

use super::outcome::{
    Deadlines, NextAction, ProcessorRef, Reconcile, ReturnUrl, Settlement, Unconfirmed,
};
use super::{
    Amount, Authorization, Currency, Description, EventId, Metadata, PaymentId, RefundId, Timestamp,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a payment is in its life. `requires_action`, `processing` and `requires_capture` wait
/// for something (the customer, the processor, the merchant's capture); the others are final.
/// A payment only moves forward: pending → `requires_capture` → final, or pending → final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresAction,
    Processing,
    RequiresCapture,
    Succeeded,
    Failed,
    Canceled,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::RequiresAction,
        PaymentStatus::Processing,
        PaymentStatus::RequiresCapture,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
    ];

    /// The wire name (`"requires_capture"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Processing => "processing",
            PaymentStatus::RequiresCapture => "requires_capture",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
        }
    }

    pub fn parse(input: &str) -> Result<Self, super::ParseError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == input)
            .ok_or_else(|| {
                super::ParseError::new(
                    "must be one of requires_action, processing, requires_capture, succeeded, failed, canceled",
                )
            })
    }
}

/// Whether an approved payment is captured at once or waits for an explicit capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    #[default]
    Automatic,
    Manual,
}

impl CaptureMethod {
    pub fn parse(input: &str) -> Result<Self, super::ParseError> {
        match input {
            "automatic" => Ok(Self::Automatic),
            "manual" => Ok(Self::Manual),
            _ => Err(super::ParseError::new("must be 'automatic' or 'manual'")),
        }
    }
}

/// Why a payment was canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
    Abandoned,
    /// The authorization lapsed uncaptured ([`Payment::expire`]). Only the system sets it.
    Expired,
}

impl CancellationReason {
    /// A reason a client may give: every one but `expired`, which only the expiry sets.
    pub fn parse(input: &str) -> Result<Self, super::ParseError> {
        const ALLOWED: &str =
            "must be one of duplicate, fraudulent, requested_by_customer, abandoned";
        match input {
            "duplicate" => Ok(Self::Duplicate),
            "fraudulent" => Ok(Self::Fraudulent),
            "requested_by_customer" => Ok(Self::RequestedByCustomer),
            "abandoned" => Ok(Self::Abandoned),
            "expired" => Err(super::ParseError::new(
                "'expired' is set only by the system when an authorization lapses; must be one of duplicate, fraudulent, requested_by_customer, abandoned",
            )),
            _ => Err(super::ParseError::new(ALLOWED)),
        }
    }
}

/// Why a payment was refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

impl RefundReason {
    pub fn parse(input: &str) -> Result<Self, super::ParseError> {
        match input {
            "duplicate" => Ok(Self::Duplicate),
            "fraudulent" => Ok(Self::Fraudulent),
            "requested_by_customer" => Ok(Self::RequestedByCustomer),
            _ => Err(super::ParseError::new(
                "must be one of duplicate, fraudulent, requested_by_customer",
            )),
        }
    }
}

/// Why a transition is refused. Both are the client's to fix; the status machine never
/// produces a server error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The operation is not allowed in the payment's current status (409 `invalid_state`).
    #[error("{0}")]
    InvalidState(String),
    /// More than is capturable or refundable was asked for (400 `amount_too_large`).
    #[error("{0}")]
    AmountTooLarge(String),
}

/// A validated refund request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefundRequest {
    /// `None`: everything that is left.
    pub amount: Option<Amount>,
    pub reason: Option<RefundReason>,
    pub metadata: Metadata,
}

/// A refund of (part of) a succeeded payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<RefundReason>,
    pub metadata: Metadata,
    pub status: RefundStatus,
    pub created_at: Timestamp,
}

/// A refund reserved and not yet settled, as its payment keeps it (internal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefund {
    pub id: RefundId,
    pub amount: Amount,
}

/// Where a refund stands: `pending` from its reservation (before the processor is called) until
/// the processor's answer is known, then `succeeded` or `failed` (the amount released).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl Refund {
    /// The API's refund object.
    pub fn resource(&self) -> serde_json::Value {
        with_object_tag(self, "refund")
    }
}

/// Why a payment failed, as the processor reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// A validated `POST /payments` request (stored as it is while its authorization is in flight:
/// `store::authorizing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPayment {
    pub amount: Amount,
    pub currency: Currency,
    pub payment_method: String,
    pub capture_method: CaptureMethod,
    pub description: Option<Description>,
    pub metadata: Metadata,
    pub return_url: Option<ReturnUrl>,
}

/// A payment as the API shows it (but for the internal timers, which [`Payment::resource`]
/// leaves out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub amount: Amount,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub capture_method: CaptureMethod,
    pub payment_method: String,
    pub amount_capturable: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub description: Option<Description>,
    pub metadata: Metadata,
    pub failure: Option<Failure>,
    pub cancellation_reason: Option<CancellationReason>,
    /// While `requires_capture`: the instant the authorization lapses (see
    /// [`Payment::is_lapsed`]); `None` in every other status. (`default`: items stored before
    /// expiry existed have no such attribute.)
    #[serde(default)]
    pub capture_before: Option<Timestamp>,
    /// While `requires_action`: what the customer must do; `None` in every other status.
    #[serde(default)]
    pub next_action: Option<NextAction>,
    /// Where the customer lands after `next_action` (given on create).
    #[serde(default)]
    pub return_url: Option<ReturnUrl>,
    /// The processor and its reference. (`default`: items stored before processors had
    /// references were all the sandbox's, decided at once.)
    #[serde(default)]
    pub processor: ProcessorRef,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Internal (not in the payment object): while `requires_action`, when the customer's
    /// time runs out (the expiry sweeper then cancels it as `abandoned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_before: Option<Timestamp>,
    /// Internal (not in the payment object): when reconciliation next asks the processor —
    /// while `processing`, while a refund is `pending`, and while a capture or cancel whose
    /// answer was lost is `unconfirmed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    /// Internal: the refunds reserved (counted in `amount_refunded`) whose processor outcome is
    /// not known yet, by id and amount (the refund item holds the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_refunds: Vec<PendingRefund>,
    /// Internal: a capture or cancel sent to the processor whose answer never came (the client
    /// got 503; nothing else changed): reconciliation asks the processor what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<Unconfirmed>,
}

/// The longest wait between two reconciliation lookups of one payment.
pub const RECONCILE_BACKOFF_CAP: time::Duration = time::Duration::hours(1);

/// The attributes of a stored payment that are the system's own, not the API's.
const INTERNAL_FIELDS: [&str; 4] = [
    "action_before",
    "reconcile",
    "pending_refunds",
    "unconfirmed",
];

impl Payment {
    /// Decides the payment a create produces from the processor's answer:
    /// approved + automatic → `succeeded`, approved + manual → `requires_capture`,
    /// declined → `failed` (the attempt is still recorded), authentication needed →
    /// `requires_action`, not decided or not known → `processing`. `id` is the one the processor
    /// was given as the authorization's reference; `processor` says where it went. The pending
    /// statuses and an authorization waiting for capture get their deadlines from `deadlines`.
    pub fn create(
        id: PaymentId,
        request: NewPayment,
        processor: ProcessorRef,
        authorization: Authorization,
        now: OffsetDateTime,
        deadlines: &Deadlines,
    ) -> Self {
        let at = Timestamp::from_datetime(now);
        let pending = Self {
            id,
            amount: request.amount,
            currency: request.currency,
            status: PaymentStatus::Processing,
            capture_method: request.capture_method,
            payment_method: request.payment_method,
            amount_capturable: 0,
            amount_captured: 0,
            amount_refunded: 0,
            description: request.description,
            metadata: request.metadata,
            failure: None,
            cancellation_reason: None,
            capture_before: None,
            next_action: None,
            return_url: request.return_url,
            processor,
            created_at: at,
            updated_at: at,
            action_before: None,
            reconcile: None,
            pending_refunds: Vec::new(),
            unconfirmed: None,
        };
        match authorization {
            Authorization::Approved => pending.settled(Settlement::Approved, now, deadlines),
            Authorization::Declined(failure) => {
                pending.settled(Settlement::Declined(failure), now, deadlines)
            }
            Authorization::RequiresAction(action) => Self {
                status: PaymentStatus::RequiresAction,
                next_action: Some(action),
                action_before: Some(Deadlines::after(now, deadlines.action)),
                ..pending
            },
            // The processor will report (an event); reconciliation asks in case it never does.
            Authorization::Processing | Authorization::Unknown => Self {
                reconcile: Some(Reconcile::first(now, deadlines)),
                ..pending
            },
        }
    }

    /// Applies the processor's final answer to a pending (`requires_action` or `processing`)
    /// payment: approved → `succeeded` or `requires_capture` by its capture method (the
    /// authorization's life starts now), declined → `failed`. Anything else is stale — the
    /// payment has moved on (a duplicate or late report, a cancel that won): refused with
    /// `InvalidState`, which the caller acknowledges and ignores.
    pub fn settle(
        &self,
        settlement: Settlement,
        now: OffsetDateTime,
        deadlines: &Deadlines,
    ) -> Result<Self, TransitionError> {
        if !self.is_pending() {
            return Err(TransitionError::InvalidState(format!(
                "the payment is {}; only requires_action and processing payments are settled by the processor",
                self.status.as_str()
            )));
        }
        Ok(self.settled(settlement, now, deadlines))
    }

    /// Reconciliation asked the processor and learnt nothing final: ask again later, at an
    /// interval that doubles with each such lookup, from `deadlines.reconcile` up to
    /// [`RECONCILE_BACKOFF_CAP`]. Only a payment with something to reconcile (`processing`, a
    /// `pending` refund, an unconfirmed capture or cancel); nothing the client sees changes
    /// (not even `updated_at`): the money is still undecided.
    pub fn reconcile_later(
        &self,
        now: OffsetDateTime,
        deadlines: &Deadlines,
    ) -> Result<Self, TransitionError> {
        let Some(reconcile) = self.reconcile.filter(|_| self.awaits_processor()) else {
            return Err(TransitionError::InvalidState(format!(
                "the payment is {} with nothing pending at the processor; there is nothing to reconcile",
                self.status.as_str()
            )));
        };
        let attempts = reconcile.attempts.saturating_add(1);
        let doubled = deadlines
            .reconcile
            .checked_mul(1_i32 << attempts.min(20))
            .unwrap_or(RECONCILE_BACKOFF_CAP);
        Ok(Self {
            reconcile: Some(Reconcile {
                at: Deadlines::after(now, doubled.min(RECONCILE_BACKOFF_CAP)),
                attempts,
                ..reconcile
            }),
            ..self.clone()
        })
    }

    /// Whether something of the payment waits on the processor's answer: its authorization
    /// (`processing`), a refund (`pending`), a capture or cancel whose answer was lost.
    /// Exactly such a payment has a reconciliation time.
    pub fn awaits_processor(&self) -> bool {
        self.status == PaymentStatus::Processing
            || !self.pending_refunds.is_empty()
            || self.unconfirmed.is_some()
    }

    /// Since when something of the payment has awaited the processor (see
    /// [`Payment::awaits_processor`]), if anything has.
    pub fn awaiting_processor_since(&self) -> Option<Timestamp> {
        self.reconcile
            .map(|reconcile| reconcile.since.unwrap_or(self.created_at))
    }

    /// Whether the payment waits on the customer or the processor for its authorization
    /// (`requires_action`, `processing`).
    pub fn is_pending(&self) -> bool {
        matches!(
            self.status,
            PaymentStatus::RequiresAction | PaymentStatus::Processing
        )
    }

    fn settled(&self, settlement: Settlement, now: OffsetDateTime, deadlines: &Deadlines) -> Self {
        let amount = self.amount.minor_units();
        let (status, capturable, captured, failure) = match (settlement, self.capture_method) {
            (Settlement::Approved, CaptureMethod::Automatic) => {
                (PaymentStatus::Succeeded, 0, amount, None)
            }
            (Settlement::Approved, CaptureMethod::Manual) => {
                (PaymentStatus::RequiresCapture, amount, 0, None)
            }
            (Settlement::Declined(failure), _) => (PaymentStatus::Failed, 0, 0, Some(failure)),
        };
        let capture_before = (status == PaymentStatus::RequiresCapture)
            .then(|| Deadlines::after(now, deadlines.authorization));
        Self {
            status,
            amount_capturable: capturable,
            amount_captured: captured,
            failure,
            capture_before,
            next_action: None,
            action_before: None,
            reconcile: None,
            unconfirmed: None,
            updated_at: Timestamp::from_datetime(now),
            ..self.clone()
        }
    }

    /// Captures `amount` (default: all that is capturable) of a `requires_capture` payment. One
    /// capture per payment: the rest of the authorization is released.
    pub fn capture(
        &self,
        amount: Option<Amount>,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        self.require_authorization(now, "captured")?;
        let amount = amount.map_or(self.amount_capturable, Amount::minor_units);
        if amount > self.amount_capturable {
            return Err(TransitionError::AmountTooLarge(format!(
                "amount {amount} exceeds the capturable amount {}",
                self.amount_capturable
            )));
        }
        Ok(self.captured(amount, now))
    }

    /// The processor confirmed a capture of `amount` that [`Payment::capture`] allowed: the
    /// payment records it if it still waits for capture, even if its authorization lapsed
    /// while the processor was being asked (the money has moved; the expiry sweeper asks the
    /// processor to cancel first, and is refused). Any other status: `InvalidState`.
    pub fn confirm_capture(
        &self,
        amount: Amount,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        self.require(PaymentStatus::RequiresCapture, "captured")?;
        let amount = amount.minor_units();
        if amount > self.amount_capturable {
            return Err(TransitionError::AmountTooLarge(format!(
                "amount {amount} exceeds the capturable amount {}",
                self.amount_capturable
            )));
        }
        Ok(self.captured(amount, now))
    }

    fn captured(&self, amount: i64, now: OffsetDateTime) -> Self {
        Self {
            status: PaymentStatus::Succeeded,
            amount_captured: amount,
            amount_capturable: 0,
            capture_before: None,
            unconfirmed: None,
            reconcile: None,
            updated_at: Timestamp::from_datetime(now),
            ..self.clone()
        }
    }

    /// Cancels a `requires_capture` payment, releasing the authorization, or a
    /// `requires_action` one, whose customer has not authenticated (yet). A `processing`
    /// payment cannot be canceled: the processor is deciding.
    pub fn cancel(
        &self,
        reason: Option<CancellationReason>,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        if self.status != PaymentStatus::RequiresAction {
            self.require_authorization(now, "canceled")?;
        }
        Ok(self.canceled(reason, now))
    }

    /// The processor confirmed a cancel that [`Payment::cancel`] allowed: recorded while the
    /// payment still waits (`requires_capture`, lapsed or not, or `requires_action`).
    pub fn confirm_cancel(
        &self,
        reason: Option<CancellationReason>,
        now: OffsetDateTime,
    ) -> Result<Self, TransitionError> {
        match self.status {
            PaymentStatus::RequiresCapture | PaymentStatus::RequiresAction => {
                Ok(self.canceled(reason, now))
            }
            _ => Err(TransitionError::InvalidState(format!(
                "the payment is {}; only requires_capture and requires_action payments can be canceled",
                self.status.as_str()
            ))),
        }
    }

    /// Whether the authorization has lapsed at `now`: from `capture_before` on, a
    /// `requires_capture` payment can no longer be captured or canceled, whether or not its
    /// expiry has been written yet.
    pub fn is_lapsed(&self, now: OffsetDateTime) -> bool {
        self.capture_before
            .is_some_and(|deadline| now >= deadline.as_datetime())
    }

    /// The expiry sweeper's change: a lapsed authorization (`requires_capture` from
    /// `capture_before` on) becomes `canceled` with reason `expired`; a customer action not
    /// completed in time (`requires_action` from its `action_before` on) becomes `canceled`
    /// with reason `abandoned`. Refused if the payment moved on first (a capture, cancel or
    /// processor event won) or its time has not come yet.
    pub fn expire(&self, now: OffsetDateTime) -> Result<Self, TransitionError> {
        let (deadline, reason) = match self.status {
            PaymentStatus::RequiresCapture => (self.capture_before, CancellationReason::Expired),
            PaymentStatus::RequiresAction => (self.action_before, CancellationReason::Abandoned),
            _ => {
                return Err(TransitionError::InvalidState(format!(
                    "the payment is {}; only requires_capture and requires_action payments lapse",
                    self.status.as_str()
                )))
            }
        };
        if deadline.is_none_or(|deadline| now < deadline.as_datetime()) {
            return Err(TransitionError::InvalidState(
                "the payment's deadline has not passed yet".to_owned(),
            ));
        }
        Ok(self.canceled(Some(reason), now))
    }

    fn canceled(&self, reason: Option<CancellationReason>, now: OffsetDateTime) -> Self {
        Self {
            status: PaymentStatus::Canceled,
            amount_capturable: 0,
            cancellation_reason: reason,
            capture_before: None,
            next_action: None,
            action_before: None,
            unconfirmed: None,
            reconcile: None,
            updated_at: Timestamp::from_datetime(now),
            ..self.clone()
        }
    }

    /// A capture or cancel needs a live authorization: `requires_capture`, not lapsed.
    fn require_authorization(
        &self,
        now: OffsetDateTime,
        verb: &str,
    ) -> Result<(), TransitionError> {
        self.require(PaymentStatus::RequiresCapture, verb)?;
        match self.capture_before {
            Some(deadline) if self.is_lapsed(now) => Err(TransitionError::InvalidState(format!(
                "the authorization lapsed at {deadline} (capture_before); it can no longer be {verb}"
            ))),
            _ => Ok(()),
        }
    }

    /// What is left to refund.
    pub fn refundable(&self) -> i64 {
        self.amount_captured - self.amount_refunded
    }

    /// Reserves a refund `id` of part or all of what is left of a `succeeded` payment, before
    /// the processor is asked: the refund is `pending`, counted in `amount_refunded` (so that
    /// no race refunds more than was captured), and reconciled until the processor's answer is
    /// applied ([`Payment::settle_refund`]). The status stays `succeeded`.
    pub fn refund(
        &self,
        id: RefundId,
        request: RefundRequest,
        now: OffsetDateTime,
        deadlines: &Deadlines,
    ) -> Result<(Self, Refund), TransitionError> {
        self.require(PaymentStatus::Succeeded, "refunded")?;
        let left = self.refundable();
        if left == 0 {
            return Err(TransitionError::InvalidState(
                "the payment has been refunded in full".to_owned(),
            ));
        }
        let amount = match request.amount {
            None => Amount::parse(left).map_err(|e| TransitionError::InvalidState(e.0))?,
            Some(amount) if amount.minor_units() > left => {
                return Err(TransitionError::AmountTooLarge(format!(
                    "amount {} exceeds the refundable amount {left}",
                    amount.minor_units()
                )))
            }
            Some(amount) => amount,
        };
        let at = Timestamp::from_datetime(now);
        let refund = Refund {
            id,
            payment_id: self.id.clone(),
            amount,
            currency: self.currency,
            reason: request.reason,
            metadata: request.metadata,
            status: RefundStatus::Pending,
            created_at: at,
        };
        let mut pending_refunds = self.pending_refunds.clone();
        pending_refunds.push(PendingRefund {
            id: refund.id.clone(),
            amount,
        });
        let payment = Self {
            amount_refunded: self.amount_refunded + amount.minor_units(),
            updated_at: at,
            pending_refunds,
            reconcile: self.reconcile.or(Some(Reconcile::first(now, deadlines))),
            ..self.clone()
        };
        Ok((payment, refund))
    }

    /// Applies the processor's answer to the pending `refund` (as stored): `succeeded` keeps
    /// the amount refunded, `failed` releases it. Refused (`InvalidState`) when the refund is
    /// not pending (another writer applied an answer first: a retry, reconciliation), so an
    /// answer is applied once.
    pub fn settle_refund(
        &self,
        refund: &Refund,
        status: RefundStatus,
        now: OffsetDateTime,
    ) -> Result<(Self, Refund), TransitionError> {
        let id = &refund.id;
        let pending = self
            .pending_refunds
            .iter()
            .position(|r| &r.id == id && r.amount == refund.amount);
        let Some(position) = pending.filter(|_| refund.status == RefundStatus::Pending) else {
            return Err(TransitionError::InvalidState(format!(
                "refund {id} is not pending"
            )));
        };
        if status == RefundStatus::Pending {
            return Err(TransitionError::InvalidState(format!(
                "refund {id} is already pending"
            )));
        }
        let mut pending_refunds = self.pending_refunds.clone();
        pending_refunds.remove(position);
        let refund = Refund {
            status,
            ..refund.clone()
        };
        let released = match status {
            RefundStatus::Failed => refund.amount.minor_units(),
            _ => 0,
        };
        let mut payment = Self {
            amount_refunded: self.amount_refunded - released,
            updated_at: Timestamp::from_datetime(now),
            pending_refunds,
            ..self.clone()
        };
        if !payment.awaits_processor() {
            payment.reconcile = None;
        }
        Ok((payment, refund))
    }

    /// A capture or cancel was sent to the processor and its answer lost: the payment is not
    /// changed for the client (no event, `updated_at` kept: the API answers 503), but
    /// reconciliation will ask the processor what it did (`Unconfirmed`). Only while the
    /// operation is still possible at our side.
    pub fn unconfirmed(
        &self,
        operation: Unconfirmed,
        now: OffsetDateTime,
        deadlines: &Deadlines,
    ) -> Result<Self, TransitionError> {
        let allowed = match operation {
            Unconfirmed::Capture { .. } => self.status == PaymentStatus::RequiresCapture,
            Unconfirmed::Cancel { .. } => matches!(
                self.status,
                PaymentStatus::RequiresCapture | PaymentStatus::RequiresAction
            ),
        };
        if !allowed {
            return Err(TransitionError::InvalidState(format!(
                "the payment is {}; it can no longer be captured or canceled",
                self.status.as_str()
            )));
        }
        Ok(Self {
            unconfirmed: Some(operation),
            reconcile: self.reconcile.or(Some(Reconcile::first(now, deadlines))),
            ..self.clone()
        })
    }

    /// Reconciliation learnt that the processor did not act on the unconfirmed capture or
    /// cancel: nothing happened, and nothing is left to ask.
    pub fn not_confirmed(&self) -> Result<Self, TransitionError> {
        if self.unconfirmed.is_none() {
            return Err(TransitionError::InvalidState(
                "no capture or cancel of this payment is unconfirmed".to_owned(),
            ));
        }
        let mut payment = Self {
            unconfirmed: None,
            ..self.clone()
        };
        if !payment.awaits_processor() {
            payment.reconcile = None;
        }
        Ok(payment)
    }

    fn require(&self, status: PaymentStatus, verb: &str) -> Result<(), TransitionError> {
        if self.status == status {
            Ok(())
        } else {
            Err(TransitionError::InvalidState(format!(
                "the payment is {}; only {} payments can be {verb}",
                self.status.as_str(),
                status.as_str()
            )))
        }
    }

    /// `0 ≤ amount_refunded ≤ amount_captured ≤ amount`, something is capturable only while
    /// the payment waits for capture, and exactly such a payment has a `capture_before`; exactly
    /// a `requires_action` payment has a `next_action` and its deadline, exactly a `processing`
    /// one a reconciliation time, and a pending payment has nothing captured and a processor
    /// reference to settle it by.
    pub fn invariants_hold(&self) -> bool {
        let amount = self.amount.minor_units();
        let waiting = self.status == PaymentStatus::RequiresCapture;
        let acting = self.status == PaymentStatus::RequiresAction;
        0 <= self.amount_refunded
            && self.amount_refunded <= self.amount_captured
            && self.amount_captured <= amount
            && (0..=amount).contains(&self.amount_capturable)
            && (self.amount_capturable == 0 || waiting)
            && self.capture_before.is_some() == waiting
            && self.next_action.is_some() == acting
            && self.action_before.is_some() == acting
            && self.reconcile.is_some() == self.awaits_processor()
            && !(self.is_pending()
                && (self.amount_captured > 0 || self.processor.reference.is_none()))
            && self.pending_refunds_hold()
            && self.unconfirmed.is_none_or(|operation| match operation {
                Unconfirmed::Capture { amount } => {
                    waiting && amount.minor_units() <= self.amount_capturable
                }
                Unconfirmed::Cancel { .. } => waiting || acting,
            })
    }

    /// Pending refunds only on a `succeeded` payment, ids distinct, their sum within
    /// `amount_refunded` (which counts them).
    fn pending_refunds_hold(&self) -> bool {
        if self.pending_refunds.is_empty() {
            return true;
        }
        let total: i64 = self
            .pending_refunds
            .iter()
            .map(|r| r.amount.minor_units())
            .sum();
        let mut ids: Vec<&RefundId> = self.pending_refunds.iter().map(|r| &r.id).collect();
        ids.sort_by_key(|id| id.as_str());
        ids.dedup();
        self.status == PaymentStatus::Succeeded
            && total <= self.amount_refunded
            && ids.len() == self.pending_refunds.len()
    }

    /// The API's payment object.
    pub fn resource(&self) -> serde_json::Value {
        let mut json = with_object_tag(self, "payment");
        if let Some(map) = json.as_object_mut() {
            for internal in INTERNAL_FIELDS {
                map.remove(internal);
            }
        }
        json
    }
}

/// What kind of change an event records. (Ordered as declared, the order of a payment's life.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment.requires_action")]
    PaymentRequiresAction,
    #[serde(rename = "payment.processing")]
    PaymentProcessing,
    #[serde(rename = "payment.requires_capture")]
    PaymentRequiresCapture,
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.canceled")]
    PaymentCanceled,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
    #[serde(rename = "payment.refund_updated")]
    PaymentRefundUpdated,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::PaymentRequiresAction,
        EventType::PaymentProcessing,
        EventType::PaymentRequiresCapture,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentCanceled,
        EventType::PaymentRefunded,
        EventType::PaymentRefundUpdated,
    ];

    /// The wire name (`"payment.succeeded"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentRequiresAction => "payment.requires_action",
            EventType::PaymentProcessing => "payment.processing",
            EventType::PaymentRequiresCapture => "payment.requires_capture",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentCanceled => "payment.canceled",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PaymentRefundUpdated => "payment.refund_updated",
        }
    }

    pub fn parse(input: &str) -> Result<Self, super::ParseError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == input)
            .ok_or_else(|| {
                super::ParseError::new(
                    "must be one of payment.requires_action, payment.processing, payment.requires_capture, payment.succeeded, payment.failed, payment.canceled, payment.refunded, payment.refund_updated",
                )
            })
    }

    /// The event a payment entering `status` writes.
    pub fn entering(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::RequiresAction => EventType::PaymentRequiresAction,
            PaymentStatus::Processing => EventType::PaymentProcessing,
            PaymentStatus::RequiresCapture => EventType::PaymentRequiresCapture,
            PaymentStatus::Succeeded => EventType::PaymentSucceeded,
            PaymentStatus::Failed => EventType::PaymentFailed,
            PaymentStatus::Canceled => EventType::PaymentCanceled,
        }
    }
}

/// One entry of a payment's audit trail; `data` is the payment object after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub payment_id: PaymentId,
    pub created_at: Timestamp,
    pub data: serde_json::Value,
}

impl Event {
    /// The event recording that `payment` entered its current status.
    pub fn status_change(payment: &Payment, now: OffsetDateTime) -> Self {
        Self {
            id: EventId::generate(now),
            event_type: EventType::entering(payment.status),
            payment_id: payment.id.clone(),
            created_at: Timestamp::from_datetime(now),
            data: payment.resource(),
        }
    }

    /// The event recording `refund`: its reservation (`payment.refunded`, the refund
    /// `pending`) or its settlement (`payment.refund_updated`); `data` is the payment after
    /// it, with the refund as `refund`.
    pub fn refunded(payment: &Payment, refund: &Refund, now: OffsetDateTime) -> Self {
        let mut data = payment.resource();
        data["refund"] = refund.resource();
        Self {
            id: EventId::generate(now),
            event_type: match refund.status {
                RefundStatus::Pending => EventType::PaymentRefunded,
                RefundStatus::Succeeded | RefundStatus::Failed => EventType::PaymentRefundUpdated,
            },
            payment_id: payment.id.clone(),
            created_at: Timestamp::from_datetime(now),
            data,
        }
    }

    /// The API's event object.
    pub fn resource(&self) -> serde_json::Value {
        with_object_tag(self, "event")
    }
}

fn with_object_tag(value: &impl Serialize, object: &str) -> serde_json::Value {
    // Serializing these plain structs into a Value cannot fail: every map key is a string.
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    if let Some(map) = json.as_object_mut() {
        map.insert("object".to_owned(), serde_json::Value::from(object));
    }
    json
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    use time::Duration;

    impl Payment {
        /// A refund as the create-refund path makes it when the processor answers at once:
        /// reserved under a new id, then settled `succeeded`.
        pub(in crate::domain) fn refund_settled(
            &self,
            request: RefundRequest,
            now: OffsetDateTime,
        ) -> Result<(Self, Refund), TransitionError> {
            let (reserved, refund) =
                self.refund(RefundId::generate(now), request, now, &DEADLINES)?;
            reserved.settle_refund(&refund, RefundStatus::Succeeded, now)
        }
    }

    /// Deadlines with a 7-day authorization (the tests' `VALIDITY`).
    pub(in crate::domain) const DEADLINES: Deadlines = Deadlines {
        authorization: Duration::days(7),
        action: Duration::hours(24),
        reconcile: Duration::minutes(1),
    };

    /// The payment a create decides for `authorization`, held by the sandbox.
    pub(in crate::domain) fn create(
        request: NewPayment,
        authorization: Authorization,
        now: OffsetDateTime,
    ) -> Payment {
        Payment::create(
            PaymentId::generate(now),
            request,
            ProcessorRef::new(super::super::ProcessorName::Sandbox, "sbx_test"),
            authorization,
            now,
            &DEADLINES,
        )
    }
    use proptest::prelude::*;

    /// A valid create request (also used by `payment_rules`).
    pub(in crate::domain) fn request(amount: i64, capture_method: CaptureMethod) -> NewPayment {
        NewPayment {
            amount: Amount::parse(amount).unwrap(),
            currency: Currency::parse("usd").unwrap(),
            payment_method: "pm_card_visa".to_owned(),
            capture_method,
            description: None,
            metadata: Metadata::default(),
            return_url: None,
        }
    }

    fn declined() -> Authorization {
        Authorization::Declined(Failure {
            code: "card_declined".into(),
            message: "The card was declined.".into(),
        })
    }

    #[test]
    fn approved_automatic_is_captured_in_full() {
        let p = create(
            request(2500, CaptureMethod::Automatic),
            Authorization::Approved,
            OffsetDateTime::now_utc(),
        );
        assert_eq!(p.status, PaymentStatus::Succeeded);
        assert_eq!(
            (p.amount_capturable, p.amount_captured, p.amount_refunded),
            (0, 2500, 0)
        );
    }

    #[test]
    fn approved_manual_waits_for_capture() {
        let p = create(
            request(2500, CaptureMethod::Manual),
            Authorization::Approved,
            OffsetDateTime::now_utc(),
        );
        assert_eq!(p.status, PaymentStatus::RequiresCapture);
        assert_eq!((p.amount_capturable, p.amount_captured), (2500, 0));
    }

    #[test]
    fn declined_fails_with_the_processor_reason() {
        let p = create(
            request(2500, CaptureMethod::Manual),
            declined(),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(p.status, PaymentStatus::Failed);
        assert_eq!(p.failure.as_ref().unwrap().code, "card_declined");
        assert_eq!((p.amount_capturable, p.amount_captured), (0, 0));
    }

    #[test]
    fn resource_has_the_documented_shape() {
        let p = create(
            request(2500, CaptureMethod::Automatic),
            Authorization::Approved,
            OffsetDateTime::now_utc(),
        );
        let json = p.resource();
        assert_eq!(json["object"], "payment");
        assert_eq!(json["currency"], "USD");
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["failure"], serde_json::Value::Null);
        assert_eq!(json["metadata"], serde_json::json!({}));
        let event = Event::status_change(&p, OffsetDateTime::now_utc());
        assert_eq!(event.resource()["type"], "payment.succeeded");
        assert_eq!(event.resource()["data"], json);
    }

    #[test]
    fn event_types_round_trip_through_their_wire_names() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()).unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!(EventType::parse("payment.*").is_err());
        assert!(EventType::parse("PAYMENT.SUCCEEDED").is_err());
    }

    #[test]
    fn statuses_round_trip_through_their_wire_names() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()).unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!(PaymentStatus::parse("pending").is_err());
    }

    #[test]
    fn only_a_waiting_authorization_has_a_capture_before() {
        let now = time::macros::datetime!(2026-12-01 10:00:00.123456 UTC);
        let manual = create(
            request(1000, CaptureMethod::Manual),
            Authorization::Approved,
            now,
        );
        assert_eq!(
            manual.capture_before.unwrap().to_string(),
            "2026-12-08T10:00:00.123Z",
            "creation (in whole milliseconds, as shown) + the validity"
        );
        assert_eq!(
            manual.resource()["capture_before"],
            "2026-12-08T10:00:00.123Z"
        );
        let others = [
            create(
                request(1000, CaptureMethod::Automatic),
                Authorization::Approved,
                now,
            ),
            create(request(1000, CaptureMethod::Manual), declined(), now),
            manual.capture(None, now).unwrap(),
            manual.cancel(None, now).unwrap(),
        ];
        for payment in others {
            assert_eq!(
                payment.resource()["capture_before"],
                serde_json::Value::Null,
                "{:?}",
                payment.status
            );
        }
    }

    #[test]
    fn from_capture_before_on_only_the_expiry_can_end_an_authorization() {
        let now = OffsetDateTime::now_utc();
        let manual = create(
            request(1000, CaptureMethod::Manual),
            Authorization::Approved,
            now,
        );
        let deadline = manual.capture_before.unwrap().as_datetime();
        let just_before = deadline - Duration::milliseconds(1);
        assert!(manual.capture(None, just_before).is_ok());
        assert!(manual.cancel(None, just_before).is_ok());
        assert!(matches!(
            manual.expire(just_before),
            Err(TransitionError::InvalidState(_))
        ));
        for at in [deadline, deadline + Duration::days(30)] {
            for refused in [manual.capture(None, at), manual.cancel(None, at)] {
                let Err(TransitionError::InvalidState(why)) = refused else {
                    panic!("a lapsed authorization was changed at {at}: {refused:?}");
                };
                assert!(why.contains("capture_before"), "{why}");
            }
        }
        let expired = manual.expire(deadline).unwrap();
        assert_eq!(expired.status, PaymentStatus::Canceled);
        assert_eq!(
            expired.cancellation_reason,
            Some(CancellationReason::Expired)
        );
        assert_eq!(
            (expired.amount_capturable, expired.capture_before),
            (0, None)
        );
        assert_eq!(expired.resource()["cancellation_reason"], "expired");
        assert!(expired.invariants_hold());
        // Once captured (or canceled, or expired), there is nothing left to expire.
        let captured = manual.capture(None, just_before).unwrap();
        for settled in [captured, expired] {
            assert!(matches!(
                settled.expire(deadline),
                Err(TransitionError::InvalidState(_))
            ));
        }
    }

    #[test]
    fn clients_cannot_give_the_system_only_reason() {
        let refused = CancellationReason::parse("expired").unwrap_err();
        assert!(refused.0.contains("only by the system"), "{}", refused.0);
        assert_eq!(
            CancellationReason::parse("abandoned").unwrap(),
            CancellationReason::Abandoned
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Capture(Option<i64>),
        Cancel,
        Refund(Option<i64>),
        Expire,
        /// Time passes (hours).
        Wait(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::option::of(1i64..12_000).prop_map(Op::Capture),
            Just(Op::Cancel),
            proptest::option::of(1i64..12_000).prop_map(Op::Refund),
            Just(Op::Expire),
            (0i64..100).prop_map(Op::Wait),
        ]
    }

    fn amount(value: Option<i64>) -> Option<Amount> {
        value.map(|v| Amount::parse(v).unwrap())
    }

    #[test]
    fn capture_releases_the_rest_and_refunds_default_to_what_is_left() {
        let now = OffsetDateTime::now_utc();
        let p = create(
            request(1000, CaptureMethod::Manual),
            Authorization::Approved,
            now,
        );
        let captured = p.capture(amount(Some(600)), now).unwrap();
        assert_eq!(
            (
                captured.status,
                captured.amount_captured,
                captured.amount_capturable
            ),
            (PaymentStatus::Succeeded, 600, 0)
        );
        let (after, refund) = captured
            .refund_settled(
                RefundRequest {
                    amount: amount(Some(100)),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(
            (after.amount_refunded, refund.amount.minor_units()),
            (100, 100)
        );
        let (after, rest) = after.refund_settled(RefundRequest::default(), now).unwrap();
        assert_eq!(
            (after.amount_refunded, rest.amount.minor_units()),
            (600, 500)
        );
        assert!(matches!(
            after.refund_settled(RefundRequest::default(), now),
            Err(TransitionError::InvalidState(_))
        ));
        let event = Event::refunded(&after, &rest, now);
        assert_eq!(event.data["refund"]["amount"], 500);
        assert_eq!(event.data["amount_refunded"], 600);
    }

    #[test]
    fn refused_transitions_name_the_contract_errors() {
        let now = OffsetDateTime::now_utc();
        let automatic = create(
            request(1000, CaptureMethod::Automatic),
            Authorization::Approved,
            now,
        );
        assert!(matches!(
            automatic.capture(None, now),
            Err(TransitionError::InvalidState(_))
        ));
        assert!(matches!(
            automatic.cancel(None, now),
            Err(TransitionError::InvalidState(_))
        ));
        assert!(matches!(
            automatic.refund_settled(
                RefundRequest {
                    amount: amount(Some(1001)),
                    ..Default::default()
                },
                now
            ),
            Err(TransitionError::AmountTooLarge(_))
        ));
        let manual = create(
            request(1000, CaptureMethod::Manual),
            Authorization::Approved,
            now,
        );
        assert!(matches!(
            manual.capture(amount(Some(1001)), now),
            Err(TransitionError::AmountTooLarge(_))
        ));
        assert!(matches!(
            manual.refund_settled(RefundRequest::default(), now),
            Err(TransitionError::InvalidState(_))
        ));
        let canceled = manual
            .cancel(Some(CancellationReason::Duplicate), now)
            .unwrap();
        assert_eq!(canceled.resource()["cancellation_reason"], "duplicate");
        assert!(matches!(
            canceled.refund_settled(RefundRequest::default(), now),
            Err(TransitionError::InvalidState(_))
        ));
        let failed = create(request(1000, CaptureMethod::Automatic), declined(), now);
        assert!(matches!(
            failed.refund_settled(RefundRequest::default(), now),
            Err(TransitionError::InvalidState(_))
        ));
    }

    proptest! {
        /// Random sequences of create/capture/cancel/refund: the invariants always hold, a
        /// refused operation changes nothing, and nothing leaves a terminal status except a
        /// refund of a succeeded payment (which stays succeeded).
        #[test]
        fn random_operation_sequences_keep_the_invariants(
            total in 1i64..=10_000,
            manual in any::<bool>(),
            approved in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..24),
        ) {
            let mut now = OffsetDateTime::now_utc();
            let method = if manual { CaptureMethod::Manual } else { CaptureMethod::Automatic };
            let auth = if approved { Authorization::Approved } else { declined() };
            let mut payment = create(request(total, method), auth, now);
            prop_assert!(payment.invariants_hold());
            for op in ops {
                let before = payment.clone();
                let outcome = match &op {
                    Op::Capture(a) => before.capture(amount(*a), now),
                    Op::Cancel => before.cancel(None, now),
                    Op::Refund(a) => before
                        .refund_settled(RefundRequest { amount: amount(*a), ..Default::default() }, now)
                        .map(|(p, refund)| {
                            assert_eq!(p.amount_refunded, before.amount_refunded + refund.amount.minor_units());
                            p
                        }),
                    Op::Expire => before.expire(now),
                    Op::Wait(hours) => {
                        now += Duration::hours(*hours);
                        continue;
                    }
                };
                // A capture or cancel of a lapsed authorization never applies; an expiry only
                // of a lapsed one.
                let lapsed = before.is_lapsed(now);
                match op {
                    Op::Capture(_) | Op::Cancel if lapsed => prop_assert!(outcome.is_err()),
                    Op::Expire => prop_assert_eq!(
                        outcome.is_ok(),
                        lapsed && before.status == PaymentStatus::RequiresCapture
                    ),
                    _ => {}
                }
                if let Ok(after) = outcome {
                    if before.status != PaymentStatus::RequiresCapture {
                        prop_assert!(matches!(op, Op::Refund(_)), "{:?} left terminal {:?}", op, before.status);
                        prop_assert_eq!(before.status, PaymentStatus::Succeeded);
                        prop_assert_eq!(after.status, PaymentStatus::Succeeded);
                    }
                    payment = after;
                }
                prop_assert!(payment.invariants_hold(), "{:?}", payment);
            }
        }

        #[test]
        fn every_created_payment_satisfies_the_invariants(
            amount in 1i64..=99_999_999_999,
            manual in any::<bool>(),
            approved in any::<bool>(),
        ) {
            let method = if manual { CaptureMethod::Manual } else { CaptureMethod::Automatic };
            let auth = if approved { Authorization::Approved } else { declined() };
            let p = create(request(amount, method), auth, OffsetDateTime::now_utc());
            prop_assert!(p.invariants_hold());
        }
    }
}
