//! The payments domain: typed values that can only hold valid data, and the pure decisions of the
//! payment status machine. Nothing here does I/O; everything here is unit-tested.
//!
//! Values arrive as plain JSON scalars from `http`, are parsed here once, and are trusted by the
//! rest of the code from then on.

pub mod currency;
pub mod ids;
pub mod metadata;
pub mod money;
pub mod outcome;
pub mod payment;
#[cfg(test)]
mod payment_rules;
#[cfg(test)]
mod pending_rules;
#[cfg(test)]
mod processor_call_rules;
pub mod timestamp;

pub use currency::Currency;
pub use ids::{
    EventId, MerchantId, PaymentId, RefundId, WebhookDeliveryId, WebhookEndpointId, WebhookReplayId,
};
pub use metadata::{Description, Metadata};
pub use money::Amount;
pub use outcome::{
    Authorization, Deadlines, NextAction, ProcessorName, ProcessorRef, RedirectToUrl, ReturnUrl,
    Settlement, Unconfirmed,
};
pub use payment::{
    CancellationReason, CaptureMethod, Event, EventType, Failure, NewPayment, Payment,
    PaymentStatus, PendingRefund, Refund, RefundReason, RefundRequest, RefundStatus,
    TransitionError,
};
pub use timestamp::Timestamp;

/// Why a value could not be parsed. The HTTP layer adds the name of the field (`param`); the
/// message is written for the API's user and is returned as the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
