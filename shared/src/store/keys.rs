//! How items are keyed. Every merchant-owned key starts with the merchant id, so a request that
//! carries merchant A can only ever address A's items: tenant isolation by construction.

use crate::domain::{
    EventType, MerchantId, PaymentId, PaymentStatus, WebhookDeliveryId, WebhookEndpointId,
    WebhookReplayId,
};
use crate::webhooks::delivery::DeliveryStatus;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const GSI3PK: &str = "GSI3PK";
pub const GSI3SK: &str = "GSI3SK";

pub fn merchant_pk(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}")
}
pub const MERCHANT_SK: &str = "MERCHANT";

pub fn api_key_pk(key_hash: &str) -> String {
    format!("APIKEY#{key_hash}")
}
pub const API_KEY_SK: &str = "APIKEY";
/// GSI1 partition listing a merchant's keys by prefix (for `keys revoke`).
pub fn merchant_keys_gsi(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#APIKEYS")
}

pub fn payment_pk(merchant: &MerchantId, payment: &PaymentId) -> String {
    format!("MERCHANT#{merchant}#PAYMENT#{payment}")
}
pub const PAYMENT_SK: &str = "PAYMENT";
/// Beside it, while its authorization is in flight (`store::authorizing`): sorts next to the
/// payment (`begins_with PAYMENT`), and no other item of the partition starts so.
pub const AUTHORIZING_SK: &str = "PAYMENT#AUTHORIZING";
/// GSI1 partition: all of a merchant's payments, sorted by id (= creation time).
pub fn merchant_payments_gsi(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#PAYMENTS")
}
/// GSI2 partition: a merchant's payments in one status, sorted by id.
pub fn merchant_payments_by_status_gsi(merchant: &MerchantId, status: PaymentStatus) -> String {
    format!("MERCHANT#{merchant}#PAYMENTS#{}", status.as_str())
}

/// GSI1 partition: all of a merchant's events (every payment's), sorted by id (= creation time).
pub fn merchant_events_gsi(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#EVENTS")
}
/// GSI2 partition: a merchant's events of one type, sorted by id.
pub fn merchant_events_by_type_gsi(merchant: &MerchantId, kind: EventType) -> String {
    format!("MERCHANT#{merchant}#EVENTS#{}", kind.as_str())
}

pub fn endpoint_pk(merchant: &MerchantId, endpoint: &WebhookEndpointId) -> String {
    format!("MERCHANT#{merchant}#WEBHOOK#{endpoint}")
}
pub const ENDPOINT_SK: &str = "ENDPOINT";
/// GSI1 partition: a merchant's webhook endpoints, sorted by id (= creation time).
pub fn merchant_endpoints_gsi(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#WEBHOOKS")
}
/// In the merchant's own partition: how many endpoints it has (the limit is kept by a condition
/// on this counter, in the transaction that creates or deletes one).
pub const ENDPOINT_COUNT_SK: &str = "WEBHOOK_ENDPOINTS";
/// An endpoint's signing secrets live outside every `MERCHANT#` partition, so that an IAM
/// `dynamodb:LeadingKeys` condition can keep every function but the delivery path from reading
/// them (creating and rotating may write them, not read them).
pub fn endpoint_secret_pk(merchant: &MerchantId, endpoint: &WebhookEndpointId) -> String {
    format!("WHSECRET#{merchant}#{endpoint}")
}
pub const ENDPOINT_SECRET_SK: &str = "SECRET";

/// GSI3, the expiry index: sparse (only `requires_capture` payments carry its keys, so it holds
/// exactly the authorizations that may lapse) and write-sharded (one index partition would take
/// every manual payment's create and capture of every merchant; spread over this many, each
/// takes a fraction). The sweeper reads every shard; the sort key is `capture_before`.
pub const EXPIRY_SHARDS: u8 = 16;

/// The GSI3 partition of one shard.
pub fn expiry_shard_gsi(shard: u8) -> String {
    format!("EXPIRY#{shard:02}")
}

/// The shard a payment's expiry entry lives in: a hash of its id, so it is the same on every
/// write of the payment and spreads evenly (the ids end in random bits).
pub fn expiry_shard(payment: &PaymentId) -> u8 {
    shard_of(payment.as_str(), EXPIRY_SHARDS)
}

/// GSI3 also holds the `processing` payments, sorted by when reconciliation next asks their
/// processor (`reconcile.at`), in shards of their own: one per expiry shard of the payment.
pub fn reconcile_shard_gsi(shard: u8) -> String {
    format!("RECONCILE#{shard:02}")
}

/// A delivery's item: in its endpoint's partition, sorted by its id (= its event's time).
pub fn delivery_sk(delivery: &WebhookDeliveryId) -> String {
    format!("DELIVERY#{delivery}")
}
/// GSI1 partition: an endpoint's deliveries, sorted by id.
pub fn endpoint_deliveries_gsi(merchant: &MerchantId, endpoint: &WebhookEndpointId) -> String {
    format!("MERCHANT#{merchant}#WEBHOOK#{endpoint}#DELIVERIES")
}
/// GSI2 partition: an endpoint's deliveries in one status, sorted by id.
pub fn endpoint_deliveries_by_status_gsi(
    merchant: &MerchantId,
    endpoint: &WebhookEndpointId,
    status: DeliveryStatus,
) -> String {
    format!(
        "MERCHANT#{merchant}#WEBHOOK#{endpoint}#DELIVERIES#{}",
        status.as_str()
    )
}

/// GSI3 also holds the pending webhook deliveries, sorted by when their next attempt is due
/// (`store::deliveries`), in shards of their own beside the expiry shards.
pub const RETRY_SHARDS: u8 = 16;

/// The GSI3 partition of one retry shard.
pub fn retry_shard_gsi(shard: u8) -> String {
    format!("WEBHOOK_RETRY#{shard:02}")
}

/// The retry shard of a delivery (fixed for its life, like a payment's expiry shard).
pub fn retry_shard(delivery: &WebhookDeliveryId) -> u8 {
    shard_of(delivery.as_str(), RETRY_SHARDS)
}

/// A webhook replay's item: in its endpoint's partition, beside the deliveries (no list index
/// shows it among them).
pub fn replay_sk(replay: &WebhookReplayId) -> String {
    format!("REPLAY#{replay}")
}
/// GSI3 also holds the running replays, sorted by when the dispatcher next takes a step of
/// them: one partition (replays are few, and each writes its entry once per step).
pub const REPLAYS_GSI: &str = "WEBHOOK_REPLAYS";

/// FNV-1a of `text`, modulo `shards`.
fn shard_of(text: &str, shards: u8) -> u8 {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(shards)) as u8
}

// Events and refunds are keyed by the payment version their change produced (zero-padded so
// that string order is numeric order). The version is unique per payment, because every change
// is conditioned on the one before, so the sort key is the exact order the changes happened in,
// even within one millisecond. It is also a second guard: two changes decided from the same
// version would create the same child keys, and `put_new` refuses the second.
pub const EVENT_SK_PREFIX: &str = "EVENT#";
pub const REFUND_SK_PREFIX: &str = "REFUND#";
/// In a payment's partition: the record that a processor event was applied to it (one per
/// processor event id, so a repeated event is applied once).
pub fn processor_event_sk(processor: &str, event_id: &str) -> String {
    format!("PROCESSOR_EVENT#{processor}#{event_id}")
}
pub fn child_sk(prefix: &str, sequence: u64) -> String {
    format!("{prefix}{sequence:020}")
}

/// One second of a merchant's writes (`store::rate`): a counter per merchant and second, in a
/// partition of the merchant's own, so that the merchants' counters never share a partition.
pub fn write_rate_pk(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#RATE")
}

/// The sort key of a deployment secret's item; its partition is the secret's own, outside every
/// `MERCHANT#` partition (`store::secrets`).
pub const SECRET_SK: &str = "SECRET";

/// The sandbox processor's record of one authorization (`processor::sandbox`): the processor's
/// own data, keyed by its reference, outside every `MERCHANT#` partition (as a real processor's
/// data is outside our table), so that IAM lets only the sandbox's functions touch it.
pub fn sandbox_authorization_pk(reference: &str) -> String {
    format!("SANDBOX#{reference}")
}
pub const SANDBOX_AUTHORIZATION_SK: &str = "AUTHORIZATION";
/// What the sandbox did with an approved authorization (captured or canceled), beside it.
pub const SANDBOX_OUTCOME_SK: &str = "OUTCOME";
/// A refund the sandbox made, under `SANDBOX#<our refund id>`.
pub const SANDBOX_REFUND_SK: &str = "REFUND";
/// GSI3 also holds the sandbox's `processing` authorizations, sorted by when the sandbox decides
/// them (`settle_at`), in shards of their own (`store::sandbox`).
pub fn sandbox_settle_shard_gsi(shard: u8) -> String {
    format!("SANDBOX_SETTLE#{shard:02}")
}
/// The shard of a sandbox authorization's settle entry.
pub fn sandbox_settle_shard(reference: &str) -> u8 {
    shard_of(reference, EXPIRY_SHARDS)
}

/// The key `Store::warm_up` reads. Never written, and no merchant-owned or API key item can
/// have it (theirs start with `MERCHANT#` or `APIKEY#`).
pub const WARM_UP_PK: &str = "WARM-UP";
pub const WARM_UP_SK: &str = "WARM-UP";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_shards_spread_payments_and_stay_put() {
        let now = time::OffsetDateTime::now_utc();
        let mut counts = [0usize; EXPIRY_SHARDS as usize];
        for _ in 0..1600 {
            let id = PaymentId::generate(now);
            let shard = expiry_shard(&id);
            assert_eq!(expiry_shard(&id), shard, "same id, same shard");
            counts[usize::from(shard)] += 1;
        }
        // 100 expected in each; a hash that ignored the random bits would fill one or two.
        assert!(
            counts.iter().all(|&n| (50..=150).contains(&n)),
            "{counts:?}"
        );
    }
}
