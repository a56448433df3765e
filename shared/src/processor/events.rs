//! Processor events: what a processor tells us later about an authorization, as
//! `POST /processor_events/{processor}` receives it. Each processor has its own wire format;
//! [`ProcessorEvent`] is what they all come down to — the processor's event id (what we
//! de-duplicate by), the reference it is about, whose payment it names, and the change.
//!
//! The sandbox's format is Stripe's in miniature, so that the route is the one Stripe's events
//! will take: `{"id":"sbxevt_…","type":"authorization.approved","created":<unix>,"data":{"reference":
//! "sbx_…","payment_id":"pay_…","merchant_id":"mer_…","failure":null}}`, signed in the
//! `Sandbox-Signature` header (`signature`).

use crate::domain::{
    Failure, MerchantId, PaymentId, ProcessorName, RefundId, RefundStatus, Settlement,
};
use serde::{Deserialize, Serialize};

/// The header the sandbox signs its events in (Stripe's is `Stripe-Signature`).
pub const SANDBOX_SIGNATURE_HEADER: &str = "sandbox-signature";

/// What an event asks of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventChange {
    /// The authorization was decided.
    Settled(Settlement),
    /// Refunds of the payment were decided at the processor (our refund ids, and what became
    /// of each); a refund still undecided there is left as it is.
    Refunds(Vec<(RefundId, RefundStatus)>),
    /// An event of a type that changes nothing of ours (its type, for the log).
    Unmapped(String),
}

/// A verified processor event, as every processor's comes down to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorEvent {
    pub processor: ProcessorName,
    /// The processor's id of the event: each is applied once.
    pub id: String,
    /// The processor's reference of the authorization it is about.
    pub reference: String,
    /// Whose payment the processor says it is (our ids, kept with the processor's object).
    pub merchant: MerchantId,
    pub payment: PaymentId,
    pub change: EventChange,
}

/// Why an event's body could not be read (400 `validation_error`: it was signed, so the
/// processor sent something we do not understand — logged, for the processor's own retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable processor event: {0}")]
pub struct EventFormatError(pub String);

/// The sandbox's event body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: SandboxEventData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxEventData {
    pub reference: String,
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub failure: Option<Failure>,
}

pub const SANDBOX_APPROVED: &str = "authorization.approved";
pub const SANDBOX_DECLINED: &str = "authorization.declined";

impl SandboxEvent {
    /// The event that reports `settlement` of the sandbox's authorization `reference`. Its id is
    /// derived from the reference and the outcome, so that sending it again (a retry of the
    /// page, a resend after a lost answer) is the same event, de-duplicated by its id.
    pub fn settled(
        reference: &str,
        merchant: &MerchantId,
        payment: &PaymentId,
        settlement: &Settlement,
        created: i64,
    ) -> Self {
        let (kind, failure) = match settlement {
            Settlement::Approved => (SANDBOX_APPROVED, None),
            Settlement::Declined(failure) => (SANDBOX_DECLINED, Some(failure.clone())),
        };
        let outcome = kind.trim_start_matches("authorization.");
        Self {
            id: format!("sbxevt_{}_{outcome}", reference.trim_start_matches("sbx_")),
            kind: kind.to_owned(),
            created,
            data: SandboxEventData {
                reference: reference.to_owned(),
                payment_id: payment.clone(),
                merchant_id: merchant.clone(),
                failure,
            },
        }
    }

    /// Reads a (verified) sandbox event body.
    pub fn parse(body: &[u8]) -> Result<ProcessorEvent, EventFormatError> {
        let event: SandboxEvent =
            serde_json::from_slice(body).map_err(|e| EventFormatError(e.to_string()))?;
        let change = match (event.kind.as_str(), event.data.failure) {
            (SANDBOX_APPROVED, None) => EventChange::Settled(Settlement::Approved),
            (SANDBOX_DECLINED, Some(failure)) => {
                EventChange::Settled(Settlement::Declined(failure))
            }
            (SANDBOX_APPROVED | SANDBOX_DECLINED, _) => {
                return Err(EventFormatError(
                    "a decline carries a failure, an approval none".into(),
                ))
            }
            (other, _) => EventChange::Unmapped(other.to_owned()),
        };
        Ok(ProcessorEvent {
            processor: ProcessorName::Sandbox,
            id: event.id,
            reference: event.data.reference,
            merchant: event.data.merchant_id,
            payment: event.data.payment_id,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    #[test]
    fn a_sandbox_event_reads_back_as_what_it_reports() {
        let now = OffsetDateTime::now_utc();
        let merchant = MerchantId::generate(now);
        let payment = PaymentId::generate(now);
        let declined = Settlement::Declined(crate::processor::sandbox::authentication_failed());
        for settlement in [Settlement::Approved, declined] {
            let event = SandboxEvent::settled("sbx_1", &merchant, &payment, &settlement, 7);
            let body = serde_json::to_vec(&event).unwrap();
            let read = SandboxEvent::parse(&body).unwrap();
            assert_eq!(read.change, EventChange::Settled(settlement.clone()));
            assert_eq!(
                (read.reference.as_str(), &read.merchant, &read.payment),
                ("sbx_1", &merchant, &payment)
            );
            assert_eq!(read.id, event.id);
        }
    }

    #[test]
    fn the_same_report_is_the_same_event_and_outcomes_differ() {
        let now = OffsetDateTime::now_utc();
        let (merchant, payment) = (MerchantId::generate(now), PaymentId::generate(now));
        let approved = |created| {
            SandboxEvent::settled("sbx_1", &merchant, &payment, &Settlement::Approved, created).id
        };
        assert_eq!(approved(1), approved(2));
        let declined = SandboxEvent::settled(
            "sbx_1",
            &merchant,
            &payment,
            &Settlement::Declined(crate::processor::sandbox::authentication_failed()),
            1,
        );
        assert_ne!(approved(1), declined.id);
    }

    #[test]
    fn unreadable_and_inconsistent_events_are_refused_and_others_unmapped() {
        let now = OffsetDateTime::now_utc();
        let (merchant, payment) = (MerchantId::generate(now), PaymentId::generate(now));
        let mut event =
            SandboxEvent::settled("sbx_1", &merchant, &payment, &Settlement::Approved, 1);
        event.data.failure = Some(crate::processor::sandbox::authentication_failed());
        assert!(SandboxEvent::parse(&serde_json::to_vec(&event).unwrap()).is_err());
        event.kind = "authorization.reviewed".into();
        let read = SandboxEvent::parse(&serde_json::to_vec(&event).unwrap()).unwrap();
        assert_eq!(
            read.change,
            EventChange::Unmapped("authorization.reviewed".into())
        );
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"id":"x","type":"t","created":1,"data":{},"extra":1}"#,
        ] {
            assert!(SandboxEvent::parse(bad).is_err());
        }
    }
}
