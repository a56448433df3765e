//! How items are keyed. Every merchant-owned key starts with the merchant id, so a request that
//! carries merchant A can only ever address A's items: tenant isolation by construction.

use crate::domain::{MerchantId, PaymentId, PaymentStatus};

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";

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
/// GSI1 partition: all of a merchant's payments, sorted by id (= creation time).
pub fn merchant_payments_gsi(merchant: &MerchantId) -> String {
    format!("MERCHANT#{merchant}#PAYMENTS")
}
/// GSI2 partition: a merchant's payments in one status, sorted by id.
pub fn merchant_payments_by_status_gsi(merchant: &MerchantId, status: PaymentStatus) -> String {
    format!("MERCHANT#{merchant}#PAYMENTS#{}", status.as_str())
}

// Events and refunds are keyed by the payment version their change produced (zero-padded so
// that string order is numeric order). The version is unique per payment, because every change
// is conditioned on the one before, so the sort key is the exact order the changes happened in,
// even within one millisecond. It is also a second guard: two changes decided from the same
// version would create the same child keys, and `put_new` refuses the second.
pub const EVENT_SK_PREFIX: &str = "EVENT#";
pub const REFUND_SK_PREFIX: &str = "REFUND#";
pub fn child_sk(prefix: &str, sequence: u64) -> String {
    format!("{prefix}{sequence:020}")
}

/// The key `Store::warm_up` reads. Never written, and no merchant-owned or API key item can
/// have it (theirs start with `MERCHANT#` or `APIKEY#`).
pub const WARM_UP_PK: &str = "WARM-UP";
pub const WARM_UP_SK: &str = "WARM-UP";
