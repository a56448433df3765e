//! Stripe's webhook events (`POST /processor_events/stripe`, verified by `Stripe-Signature`
//! with `processor::signature`) as [`ProcessorEvent`]s. Our ids come from the object's
//! `metadata` (`payment_id`, `merchant_id`), which the connector set when it created the
//! PaymentIntent; an event about an object without them is not ours (another integration on
//! the same Stripe account) and is acknowledged and ignored by the route.
//!
//! Mapped: `payment_intent.succeeded` and `.amount_capturable_updated` (approved: captured or
//! held), `.payment_failed` (declined, with Stripe's code), `charge.refund.updated` (a Refund
//! object: our `refund_id` in its metadata, and its status) and `charge.refunded` (the refunds
//! the charge lists, when it lists them), `.canceled` (declined with code `canceled`, for a
//! payment still waiting; stale for an approved one, which only we cancel). `.requires_action`
//! and `.processing` change nothing of ours: a payment already waits in those states from the
//! connector's own answer.

use super::{canceled, failure};
use crate::domain::{MerchantId, PaymentId, ProcessorName, RefundId, RefundStatus, Settlement};
use crate::processor::events::{EventChange, EventFormatError, ProcessorEvent};
use serde_json::Value;

/// The header Stripe signs its events in.
pub const STRIPE_SIGNATURE_HEADER: &str = "stripe-signature";

/// A verified Stripe event, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEvent {
    Ours(ProcessorEvent),
    /// About an object that carries none of our ids (its event id and type, for the log).
    NotOurs {
        id: String,
        kind: String,
    },
}

pub fn parse(body: &[u8]) -> Result<StripeEvent, EventFormatError> {
    let event: Value = serde_json::from_slice(body).map_err(|e| EventFormatError(e.to_string()))?;
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| EventFormatError(format!("no {what}")))
    };
    let id = text(&event["id"], "event id")?;
    let kind = text(&event["type"], "event type")?;
    let object = &event["data"]["object"];
    // A PaymentIntent names itself; a charge or refund names its PaymentIntent.
    let reference = match object["object"].as_str() {
        Some("payment_intent") => text(&object["id"], "PaymentIntent id")?,
        _ => match object["payment_intent"].as_str() {
            Some(pi) => pi.to_owned(),
            None => return Ok(StripeEvent::NotOurs { id, kind }),
        },
    };
    let metadata = &object["metadata"];
    let ours = (
        metadata["payment_id"]
            .as_str()
            .and_then(|v| PaymentId::parse(v).ok()),
        metadata["merchant_id"]
            .as_str()
            .and_then(|v| MerchantId::parse(v).ok()),
    );
    let (Some(payment), Some(merchant)) = ours else {
        return Ok(StripeEvent::NotOurs { id, kind });
    };
    let change = match kind.as_str() {
        "payment_intent.succeeded" | "payment_intent.amount_capturable_updated" => {
            EventChange::Settled(Settlement::Approved)
        }
        "payment_intent.payment_failed" => {
            EventChange::Settled(Settlement::Declined(failure(&object["last_payment_error"])))
        }
        // Only a payment still waiting (never approved) can settle: it failed, as a lookup of
        // the canceled intent says. An approved one was canceled by us (the API or the sweeper),
        // and the event is stale for it.
        "payment_intent.canceled" => EventChange::Settled(Settlement::Declined(canceled())),
        // A refund (its own object), or the charge with the refunds it lists (Stripe includes
        // them only when asked to expand them; without, reconciliation settles ours).
        "charge.refund.updated" => EventChange::Refunds(our_refunds(std::slice::from_ref(object))),
        "charge.refunded" => EventChange::Refunds(our_refunds(
            object["refunds"]["data"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
        )),
        other => EventChange::Unmapped(other.to_owned()),
    };
    Ok(StripeEvent::Ours(ProcessorEvent {
        processor: ProcessorName::Stripe,
        id,
        reference,
        merchant,
        payment,
        change,
    }))
}

/// Our refund ids among `refunds` (Refund objects), with what became of each.
fn our_refunds(refunds: &[Value]) -> Vec<(RefundId, RefundStatus)> {
    refunds
        .iter()
        .filter_map(|refund| {
            let id = RefundId::parse(refund["metadata"]["refund_id"].as_str()?).ok()?;
            Some((id, super::refund_status(refund)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;

    fn ids() -> (PaymentId, MerchantId) {
        let now = OffsetDateTime::now_utc();
        (PaymentId::generate(now), MerchantId::generate(now))
    }

    fn event(kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": "evt_1", "object": "event", "type": kind,
            "created": 1_700_000_000, "data": {"object": object}}))
        .unwrap()
    }

    #[test]
    fn payment_intent_events_settle_the_payment_their_metadata_names() {
        let (payment, merchant) = ids();
        let intent = |status: &str, error: Value| {
            json!({"id": "pi_1", "object": "payment_intent", "status": status,
                "last_payment_error": error,
                "metadata": {"payment_id": payment.as_str(), "merchant_id": merchant.as_str()}})
        };
        for kind in [
            "payment_intent.succeeded",
            "payment_intent.amount_capturable_updated",
        ] {
            let StripeEvent::Ours(read) =
                parse(&event(kind, intent("succeeded", Value::Null))).unwrap()
            else {
                panic!("{kind} is ours")
            };
            assert_eq!(
                read.change,
                EventChange::Settled(Settlement::Approved),
                "{kind}"
            );
            assert_eq!(
                (read.id.as_str(), read.reference.as_str()),
                ("evt_1", "pi_1")
            );
            assert_eq!((&read.payment, &read.merchant), (&payment, &merchant));
            assert_eq!(read.processor, ProcessorName::Stripe);
        }
        let failed = event(
            "payment_intent.payment_failed",
            intent(
                "requires_payment_method",
                json!({"code": "card_declined", "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds."}),
            ),
        );
        let StripeEvent::Ours(read) = parse(&failed).unwrap() else {
            panic!("ours")
        };
        match read.change {
            EventChange::Settled(Settlement::Declined(f)) => {
                assert_eq!(f.code, "insufficient_funds")
            }
            other => panic!("{other:?}"),
        }
        let StripeEvent::Ours(read) = parse(&event(
            "payment_intent.processing",
            intent("processing", Value::Null),
        ))
        .unwrap() else {
            panic!("ours")
        };
        assert_eq!(
            read.change,
            EventChange::Unmapped("payment_intent.processing".into())
        );
        let StripeEvent::Ours(read) = parse(&event(
            "payment_intent.canceled",
            intent("canceled", Value::Null),
        ))
        .unwrap() else {
            panic!("ours")
        };
        match read.change {
            EventChange::Settled(Settlement::Declined(f)) => assert_eq!(f.code, "canceled"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refund_events_name_their_payment_intent_and_our_refunds() {
        let (payment, merchant) = ids();
        let ours = RefundId::generate(OffsetDateTime::now_utc());
        let metadata = json!({"payment_id": payment.as_str(), "merchant_id": merchant.as_str()});
        let refund = |id: &str, status: &str, refund_id: Value| {
            let mut m = metadata.clone();
            m["refund_id"] = refund_id;
            json!({"id": id, "object": "refund", "payment_intent": "pi_9", "status": status,
                "metadata": m})
        };
        let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_9",
        "metadata": metadata, "refunds": {"object": "list", "data": [
            refund("re_1", "succeeded", json!(ours.as_str())),
            // localstripe's release of an uncaptured rest: not a refund of ours.
            refund("re_2", "succeeded", Value::Null),
        ]}});
        let StripeEvent::Ours(read) = parse(&event("charge.refunded", charge)).unwrap() else {
            panic!("ours")
        };
        assert_eq!(read.reference, "pi_9");
        assert_eq!(
            read.change,
            EventChange::Refunds(vec![(ours.clone(), RefundStatus::Succeeded)])
        );
        let updated = refund("re_1", "failed", json!(ours.as_str()));
        let StripeEvent::Ours(read) = parse(&event("charge.refund.updated", updated)).unwrap()
        else {
            panic!("ours")
        };
        assert_eq!(
            read.change,
            EventChange::Refunds(vec![(ours, RefundStatus::Failed)])
        );
        // A charge.refunded without its refunds listed (Stripe's default): nothing to settle.
        let bare = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_9",
            "metadata": metadata});
        let StripeEvent::Ours(read) = parse(&event("charge.refunded", bare)).unwrap() else {
            panic!("ours")
        };
        assert_eq!(read.change, EventChange::Refunds(vec![]));
    }

    #[test]
    fn objects_without_our_ids_are_not_ours_and_garbage_is_an_error() {
        let foreign = event(
            "payment_intent.succeeded",
            json!({"id": "pi_2", "object": "payment_intent", "metadata": {}}),
        );
        assert_eq!(
            parse(&foreign).unwrap(),
            StripeEvent::NotOurs {
                id: "evt_1".into(),
                kind: "payment_intent.succeeded".into()
            }
        );
        let forged = event(
            "payment_intent.succeeded",
            json!({"id": "pi_2", "object": "payment_intent",
                "metadata": {"payment_id": "not-an-id", "merchant_id": "mer_x"}}),
        );
        assert!(matches!(
            parse(&forged).unwrap(),
            StripeEvent::NotOurs { .. }
        ));
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"type": "payment_intent.succeeded"}"#).is_err());
    }
}
