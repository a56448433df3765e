//! `Idempotency-Key` for every POST: a retried request is answered from the first one's stored
//! response instead of being applied again. Outward behaviour follows Stripe; the record design
//! follows AWS Lambda Powertools (status, fingerprint, stored response, lock expiry, TTL).
//!
//! ## The record
//! One item per (merchant, key) in the payments table, `PK = MERCHANT#<mer>#IDEMPOTENCY#<key>`:
//! `status` (`in_progress` | `completed`), `fingerprint` (SHA-256 of method, path and the body
//! as canonical JSON, so key order and whitespace do not matter), `token` (who holds the lock),
//! `locked_until` (ms; the function timeout after the claim), `expires_at` (epoch s, 24 h; the
//! code compares it, DynamoDB's TTL only cleans up, days late), and the stored response.
//!
//! ## The flow
//! 1. **Claim**: one conditional `PutItem` that succeeds if there is no live record, the record
//!    expired (24 h), or it is an abandoned claim of the *same* request whose lock has expired.
//! 2. Otherwise one consistent `GetItem` says why: another request → 422
//!    `idempotency_key_reused`; completed → replay the stored status and body with
//!    `Idempotent-Replayed: true`; still in progress → 409 `idempotency_in_progress` with
//!    `Retry-After`.
//! 3. **Complete in the same transaction as the change.** The operation's `TransactWriteItems`
//!    (payment + event + refund) carries one more item: the record set to `completed` with the
//!    response, conditioned on our token. The change and the stored answer commit together or
//!    not at all.
//!
//! ## The crash case
//! If the function dies *before* that transaction, nothing was applied and the record stays
//! `in_progress`: retries get 409 until the lock expires, then one of them claims it and applies
//! the change once. If it dies *after*, the record is already `completed`: retries replay. There
//! is no moment at which the change is applied but the record is not completed, so a retry can
//! never apply it twice. A first attempt that was merely slow and whose lock was taken over finds
//! its token gone: its transaction is refused as a whole (409 `idempotency_in_progress`).
//!
//! Outcomes that did not run the operation to a decision are not stored, so the retry runs again:
//! 400-class validation failures and 5xx release the claim (a conditional `DeleteItem`).
//! Decided outcomes (2xx, 404, 409 `invalid_state`) are stored.
//!
//! ## What it costs (DynamoDB calls per POST carrying a key)
//! - first call, success: +1 conditional `PutItem` (the claim) and +1 item in the transaction
//!   the operation makes anyway (transactional writes cost 2 WCU per item);
//! - first call, stored error (404/409): +1 `PutItem` +1 one-item transaction (the completion);
//! - first call, 400/5xx: +1 `PutItem` +1 `DeleteItem`;
//! - replay (or 409/422): 1 refused conditional `PutItem` (billed as a write) + 1 `GetItem`,
//!   and nothing else: the operation does not run.

use crate::domain::{MerchantId, ParseError};
use crate::http::{ApiError, ApiResponse};
use crate::store::{Item, Store, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use time::{Duration, OffsetDateTime};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const RETENTION: Duration = Duration::hours(24);

/// A validated key: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let printable = input.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if (1..=255).contains(&input.len()) && printable {
            Ok(Self(input.to_owned()))
        } else {
            Err(ParseError::new(
                "must be 1 to 255 printable ASCII characters",
            ))
        }
    }

    /// The key of `req`, if it carries one; a present but invalid header is 400.
    pub fn from_request(req: &Request) -> Result<Option<Self>, ApiError> {
        match req.headers().get(HEADER) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|text| Self::parse(text).ok())
                .map(Some)
                .ok_or(ApiError::InvalidIdempotencyKey),
        }
    }
}

/// What makes two requests "the same": method, path and the body compared as JSON.
pub fn fingerprint(req: &Request) -> String {
    let bytes: &[u8] = match req.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    // serde_json's map is ordered by key, so re-serializing gives one text per JSON value.
    let canonical = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => value.to_string().into_bytes(),
        Err(_) => bytes.to_vec(),
    };
    let mut hash = Sha256::new();
    hash.update(req.method().as_str().as_bytes());
    hash.update(b"\n");
    hash.update(req.uri().path().as_bytes());
    hash.update(b"\n");
    hash.update(&canonical);
    hex::encode(hash.finalize())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    status: String,
    fingerprint: String,
    token: String,
    locked_until: i64,
    expires_at: i64,
    response_status: Option<u16>,
    response_body: Option<String>,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

fn record_pk(merchant: &MerchantId, key: &IdempotencyKey) -> String {
    format!("MERCHANT#{merchant}#IDEMPOTENCY#{}", key.0)
}
const RECORD_SK: &str = "IDEMPOTENCY";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}
fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A held claim on a key: the lock this request owns until it completes or releases it.
#[derive(Debug)]
pub struct Claim {
    pk: String,
    token: String,
    table: String,
    /// Set once the completion has gone into the operation's own transaction.
    completed_in_transaction: AtomicBool,
}

impl Claim {
    fn key_attributes(&self) -> [(String, AttributeValue); 2] {
        [
            ("PK".to_owned(), s(&self.pk)),
            ("SK".to_owned(), s(RECORD_SK)),
        ]
    }

    /// The transaction item that marks the record completed with `response`, valid only while
    /// this claim still holds the lock.
    pub fn completion(&self, response: &ApiResponse) -> Result<TransactWriteItem, StoreError> {
        let [(pk_name, pk), (sk_name, sk)] = self.key_attributes();
        let update = Update::builder()
            .table_name(&self.table)
            .key(pk_name, pk)
            .key(sk_name, sk)
            .update_expression(
                "SET #status = :completed, response_status = :rs, response_body = :rb",
            )
            .condition_expression("#token = :token AND #status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":token", s(&self.token))
            .expression_attribute_values(":rs", n(i64::from(response.status.as_u16())))
            .expression_attribute_values(":rb", s(response.body.to_string()))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.completed_in_transaction.store(true, Ordering::SeqCst);
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The claim an operation writes its completion with, if the request carried a key.
#[derive(Debug, Default)]
pub struct Commit(Option<Claim>);

impl Commit {
    /// No key: the operation's writes carry nothing extra.
    pub fn none() -> Self {
        Self(None)
    }

    /// The completion item to add to the operation's transaction, if there is a claim.
    pub fn completion(
        &self,
        response: &ApiResponse,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        self.0
            .as_ref()
            .map(|claim| claim.completion(response))
            .transpose()
    }
}

/// The outcome of trying to claim a key.
pub enum Begin {
    /// This request owns the key: run the operation.
    Proceed(Commit),
    /// The first request completed: answer with its response.
    Replay(StatusCode, serde_json::Value),
}

/// Claims `key` for this request (see the module docs).
pub async fn begin(
    store: &Store,
    merchant: &MerchantId,
    key: &IdempotencyKey,
    fingerprint: &str,
    now: OffsetDateTime,
    lock: Duration,
) -> Result<Begin, ApiError> {
    let token = uuid::Uuid::now_v7().simple().to_string();
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let record = Record {
        status: IN_PROGRESS.to_owned(),
        fingerprint: fingerprint.to_owned(),
        token: token.clone(),
        locked_until: now_ms + lock.whole_milliseconds() as i64,
        expires_at: (now + RETENTION).unix_timestamp(),
        response_status: None,
        response_body: None,
    };
    let pk = record_pk(merchant, key);
    let mut item: Item = crate::store::encode(&record)?;
    item.insert("PK".into(), s(&pk));
    item.insert("SK".into(), s(RECORD_SK));
    let claimed = store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .condition_expression(
            "attribute_not_exists(PK) OR expires_at <= :now_s \
             OR (#status = :in_progress AND locked_until <= :now_ms AND fingerprint = :fp)",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":now_s", n(now.unix_timestamp()))
        .expression_attribute_values(":now_ms", n(now_ms))
        .expression_attribute_values(":in_progress", s(IN_PROGRESS))
        .expression_attribute_values(":fp", s(fingerprint))
        .send()
        .await
        .map_err(crate::store::classify);
    match claimed {
        Ok(_) => {
            return Ok(Begin::Proceed(Commit(Some(Claim {
                pk,
                token,
                table: store.table().to_owned(),
                completed_in_transaction: AtomicBool::new(false),
            }))))
        }
        Err(StoreError::ConditionFailed) => {}
        Err(err) => return Err(err.into()),
    }
    let existing: Option<Record> = store.get(pk, RECORD_SK).await?;
    // Gone between our put and our read (expired and cleaned up): the client may retry at once.
    let existing = existing.ok_or(ApiError::IdempotencyInProgress)?;
    if existing.fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    match (
        existing.status.as_str(),
        existing.response_status,
        existing.response_body,
    ) {
        (COMPLETED, Some(status), Some(body)) => {
            let status = StatusCode::from_u16(status)
                .map_err(|_| ApiError::Internal(format!("stored status {status} is not HTTP")))?;
            let body = serde_json::from_str(&body)
                .map_err(|e| ApiError::Internal(format!("stored body is not JSON: {e}")))?;
            Ok(Begin::Replay(status, body))
        }
        _ => Err(ApiError::IdempotencyInProgress),
    }
}

/// Settles the claim after the operation: stores a decided outcome that the operation's own
/// transaction did not already store, or releases the key for outcomes that are not stored.
pub async fn finish(
    store: &Store,
    commit: &Commit,
    outcome: &Result<ApiResponse, ApiError>,
    request_id: &str,
) -> Result<(), StoreError> {
    let Some(claim) = &commit.0 else {
        return Ok(());
    };
    if claim.completed_in_transaction.load(Ordering::SeqCst) && outcome.is_ok() {
        return Ok(());
    }
    let stored = match outcome {
        Ok(response) => Some(response.clone()),
        Err(err) if is_stored(err) => Some(ApiResponse {
            status: err.status(),
            body: err.body(request_id),
        }),
        Err(_) => None,
    };
    let [(pk_name, pk), (sk_name, sk)] = claim.key_attributes();
    let result = match stored {
        // The same completion the operation's transaction would have carried, on its own.
        Some(response) => store
            .client()
            .transact_write_items()
            .transact_items(claim.completion(&response)?)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| crate::store::classify_transaction(err, true)),
        None => store
            .client()
            .delete_item()
            .table_name(store.table())
            .key(pk_name, pk)
            .key(sk_name, sk)
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(&claim.token))
            .send()
            .await
            .map(|_| ())
            .map_err(crate::store::classify),
    };
    match result {
        // Our lock was taken over after it expired: the new holder settles the key.
        Err(StoreError::ConditionFailed | StoreError::ClaimLost) => Ok(()),
        other => other,
    }
}

/// Whether an error is a decided outcome that a retry must get again (see the module docs).
fn is_stored(err: &ApiError) -> bool {
    matches!(err, ApiError::NotFound | ApiError::InvalidState(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    fn post(path: &str, body: &str) -> Request {
        http::Request::builder()
            .method("POST")
            .uri(path)
            .body(Body::Text(body.to_owned()))
            .unwrap()
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("order 1042 / retry #2").is_ok());
        for bad in ["", &"k".repeat(256), "tab\there", "naïve", "new\nline"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace_but_not_content_or_path() {
        let a = fingerprint(&post("/payments", r#"{"amount":100,"currency":"usd"}"#));
        let b = fingerprint(&post(
            "/payments",
            "{ \"currency\": \"usd\",\n \"amount\": 100 }",
        ));
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(&post("/payments", r#"{"amount":101,"currency":"usd"}"#))
        );
        assert_ne!(
            a,
            fingerprint(&post(
                "/payments/x/refunds",
                r#"{"amount":100,"currency":"usd"}"#
            ))
        );
    }
}
