//! `Idempotency-Key` for every POST: a retried request is answered from the first one's stored
//! response instead of being applied again. Outward behaviour follows Stripe; the record design
//! follows AWS Lambda Powertools (status, fingerprint, stored response, lock expiry, TTL).
//!
//! ## The record
//! One item per (merchant, key) in the payments table, `PK = MERCHANT#<mer>#IDEMPOTENCY#<key>`:
//! `status` (`in_progress` | `completed` | `released`), `fingerprint` (SHA-256 of method, path
//! and the body as canonical JSON, so key order and whitespace do not matter), `token` (who holds
//! the lock), `locked_until` (ms; the function timeout after the claim), `expires_at` (epoch s,
//! 24 h; the code compares it, DynamoDB's TTL only cleans up, days late), `resource_id` (the id
//! of the object the request creates, kept across retries of the same request, so that the
//! processor sees one reference however often it is asked), and the stored response.
//!
//! ## The flow
//! 1. **Claim**: one conditional `UpdateItem` that creates the record, or takes over a record of
//!    the *same* request that was released (400/5xx) or abandoned (its lock expired), keeping
//!    its `resource_id`.
//! 2. Otherwise one consistent `GetItem` says why: our own claim (its answer was lost and the
//!    SDK's retry found it) → proceed; another request → 422 `idempotency_key_reused`;
//!    completed → replay the stored status and body with `Idempotent-Replayed: true`; still in
//!    progress → 409 `idempotency_in_progress` with `Retry-After`; a dead record (past its 24 h,
//!    or released by a *different* request) → replaced by a conditional `PutItem` on its token.
//! 3. **Complete in the same transaction as the change.** The operation's `TransactWriteItems`
//!    (payment + event + refund) carries one more item: the record set to `completed` with the
//!    response, conditioned on our token *and* `in_progress`. The change and the stored answer
//!    commit together or not at all.
//!
//! ## When the outcome is unknown
//! A write whose answer was lost may have committed. The rules (../shared/DESIGN.md, "Faults"):
//! - The operation reads back what its write would have produced before it answers
//!   (`lifecycle`, `create-payment`), so a lost answer to a committed change is still a 2xx.
//! - A claim is released only while it is still `in_progress` under our token: a record whose
//!   change committed is `completed`, and the release leaves it alone. (Releasing with the token
//!   alone once deleted such a record, and the retry applied a refund twice.)
//! - A released claim fences off our own write if it is still in flight: the completion item's
//!   condition no longer holds, so that late transaction is refused as a whole.
//!
//! ## The crash case
//! If the function dies *before* the transaction, nothing was applied and the record stays
//! `in_progress`: retries get 409 until the lock expires, then one of them takes it over and
//! applies the change once. If it dies *after*, the record is already `completed`: retries
//! replay. There is no moment at which the change is applied but the record is not completed,
//! so a retry can never apply it twice. A first attempt that was merely slow and whose lock was
//! taken over finds its token gone: its transaction is refused as a whole (409
//! `idempotency_in_progress`).
//!
//! Outcomes that did not run the operation to a decision are not stored, so the retry runs again:
//! 400-class validation failures and 5xx release the claim (a conditional `UpdateItem` to
//! `released`). Decided outcomes (2xx, 404, 409 `invalid_state`) are stored.
//!
//! ## What it costs (DynamoDB calls per POST carrying a key)
//! - first call, success: +1 conditional `UpdateItem` (the claim) and +1 item in the transaction
//!   the operation makes anyway (transactional writes cost 2 WCU per item);
//! - first call, stored error (404/409): +1 `UpdateItem` +1 one-item transaction (the completion);
//! - first call, 400/5xx: +1 `UpdateItem` (claim) +1 `UpdateItem` (release);
//! - replay (or 409/422): 1 refused conditional `UpdateItem` (billed as a write) + 1 `GetItem`,
//!   and nothing else: the operation does not run.

use crate::domain::{MerchantId, ParseError};
use crate::http::{ApiError, ApiResponse};
use crate::seal::{self, SealError, SealKey};
use crate::store::{Item, Store, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
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
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    response_status: Option<u16>,
    #[serde(default)]
    response_body: Option<String>,
    /// A secret of the response, sealed (`seal`), and the body field it goes in.
    #[serde(default)]
    sealed_field: Option<String>,
    #[serde(default)]
    sealed_secret: Option<String>,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
const RELEASED: &str = "released";

/// Claims tried before answering 409: each retry follows a record that changed under us (a dead
/// record replaced by someone else, a transaction holding the record for a moment).
const CLAIM_ATTEMPTS: u32 = 4;

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
    /// The id of what this request creates, the same for every retry of the request.
    resource_id: String,
    /// Set once the completion has gone into the operation's own transaction.
    completed_in_transaction: AtomicBool,
    /// What a secret of the response is sealed with in the record (`seal`).
    seal: SealKey,
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
        // The body without its secret; the secret sealed beside it, for the retry that carries
        // the same API key (`seal`): never in plain text outside its own partition.
        let (set_sealed, sealed) = match &response.secret {
            Some(secret) => (
                ", sealed_field = :sf, sealed_secret = :ss",
                Some((
                    secret.name.clone(),
                    seal::seal(&self.seal, &self.pk, &secret.value)
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                )),
            ),
            None => ("", None),
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(pk_name, pk)
            .key(sk_name, sk)
            .update_expression(format!(
                "SET #status = :completed, response_status = :rs, response_body = :rb{set_sealed}"
            ))
            .condition_expression("#token = :token AND #status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":token", s(&self.token))
            .expression_attribute_values(":rs", n(i64::from(response.status.as_u16())))
            .expression_attribute_values(":rb", s(response.body.to_string()));
        if let Some((field, secret)) = sealed {
            update = update
                .expression_attribute_values(":sf", s(field))
                .expression_attribute_values(":ss", s(secret));
        }
        let update = update
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

    /// The id the request's new object must have: the same on every retry of one keyed request
    /// (so a processor that de-duplicates by it sees one authorization), `None` without a key.
    pub fn resource_id(&self) -> Option<&str> {
        self.0.as_ref().map(|claim| claim.resource_id.as_str())
    }

    /// The id of the object the request creates: from the claim (the same on every retry of a
    /// keyed request), or new.
    pub fn new_id<T>(
        &self,
        from_hex: impl FnOnce(&str) -> Result<T, crate::domain::ParseError>,
        generate: impl FnOnce() -> T,
    ) -> Result<T, crate::http::ApiError> {
        match self.resource_id() {
            Some(hex) => from_hex(hex).map_err(|_| {
                crate::http::ApiError::Internal(format!(
                    "idempotency resource id {hex:?} is not an id"
                ))
            }),
            None => Ok(generate()),
        }
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

/// Who makes the request: the merchant, and the API key it authenticated with (what a secret
/// in the stored response is sealed with, `seal`).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub merchant: &'a MerchantId,
    pub api_key: &'a str,
}

/// The outcome of trying to claim a key.
pub enum Begin {
    /// This request owns the key: run the operation.
    Proceed(Commit),
    /// The first request completed: answer with its response.
    Replay(ApiResponse),
}

/// Claims `key` for this request (see the module docs). `new_resource_id` is the id a first
/// claim records for the object the request will create.
pub async fn begin(
    store: &Store,
    caller: Caller<'_>,
    key: &IdempotencyKey,
    fingerprint: &str,
    now: OffsetDateTime,
    lock: Duration,
    new_resource_id: &str,
) -> Result<Begin, ApiError> {
    let pk = record_pk(caller.merchant, key);
    let claim = Claiming {
        store,
        seal: SealKey::derive(caller.api_key, &pk),
        pk,
        token: uuid::Uuid::now_v7().simple().to_string(),
        fingerprint,
        now_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        now_s: now.unix_timestamp(),
        locked_until: ((now + lock).unix_timestamp_nanos() / 1_000_000) as i64,
        expires_at: (now + RETENTION).unix_timestamp(),
        new_resource_id,
    };
    for attempt in 0..CLAIM_ATTEMPTS {
        // What went wrong with the write, if it may still have happened (its answer was lost).
        let mut unknown = None;
        match claim.update().await {
            Ok(resource_id) => return Ok(claim.proceed(resource_id)),
            Err(StoreError::ConditionFailed) => {}
            // The record is inside another request's transaction this very moment (its
            // completion): look again shortly.
            Err(StoreError::Conflict) => {
                crate::backoff::wait(attempt).await;
                continue;
            }
            Err(err @ StoreError::Unavailable(_)) => unknown = Some(err),
            Err(err) => return Err(err.into()),
        }
        let existing: Option<Record> = store.get(claim.pk.clone(), RECORD_SK).await?;
        let Some(existing) = existing else {
            // No record: our claim did not land (or the record expired and was cleaned up
            // between our write and our read).
            match unknown {
                Some(err) => return Err(err.into()),
                None => continue,
            }
        };
        if existing.token == claim.token && existing.status == IN_PROGRESS {
            // Our own claim: its answer was lost and the SDK's retry found it written.
            let resource_id = existing.resource_id.unwrap_or_default();
            return Ok(claim.proceed(resource_id));
        }
        let dead = existing.expires_at <= claim.now_s
            || (existing.status == RELEASED && existing.fingerprint != fingerprint);
        if dead {
            // Past retention, or given up by a different request: nothing it guarded can still
            // commit (a release fences the released request's own write), so it is replaced.
            match claim.replace(&existing.token).await {
                Ok(()) => return Ok(claim.proceed(new_resource_id.to_owned())),
                Err(StoreError::ConditionFailed | StoreError::Conflict) => {
                    crate::backoff::wait(attempt).await;
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
        if existing.fingerprint != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        return match (
            existing.status.as_str(),
            existing.response_status,
            existing.response_body,
        ) {
            (COMPLETED, Some(status), Some(body)) => {
                let status = StatusCode::from_u16(status).map_err(|_| {
                    ApiError::Internal(format!("stored status {status} is not HTTP"))
                })?;
                let body = serde_json::from_str(&body)
                    .map_err(|e| ApiError::Internal(format!("stored body is not JSON: {e}")))?;
                let mut response = ApiResponse {
                    status,
                    body,
                    secret: None,
                };
                if let (Some(field), Some(sealed)) = (existing.sealed_field, existing.sealed_secret)
                {
                    match seal::open(&claim.seal, &claim.pk, &sealed) {
                        Ok(secret) => response = response.with_secret(&field, secret),
                        // Another of the merchant's API keys: the secret cannot be shown again.
                        Err(SealError::WrongKey) => return Err(ApiError::IdempotencyKeyReused),
                        Err(err) => {
                            return Err(ApiError::Internal(format!("stored secret: {err}")))
                        }
                    }
                }
                Ok(Begin::Replay(response))
            }
            // Held by another attempt of this request (or released just now and claimable on
            // the next try: the client retries after `Retry-After`).
            _ => Err(ApiError::IdempotencyInProgress),
        };
    }
    Err(ApiError::IdempotencyInProgress)
}

/// One request's attempt at a claim: the values its writes carry.
struct Claiming<'a> {
    store: &'a Store,
    pk: String,
    seal: SealKey,
    token: String,
    fingerprint: &'a str,
    now_ms: i64,
    now_s: i64,
    locked_until: i64,
    expires_at: i64,
    new_resource_id: &'a str,
}

impl Claiming<'_> {
    fn proceed(&self, resource_id: String) -> Begin {
        Begin::Proceed(Commit(Some(Claim {
            pk: self.pk.clone(),
            token: self.token.clone(),
            table: self.store.table().to_owned(),
            resource_id,
            completed_in_transaction: AtomicBool::new(false),
            seal: self.seal.clone(),
        })))
    }

    /// Creates the record, or takes over one of the same request that was released or whose
    /// lock expired (keeping its `resource_id`); returns the resource id.
    async fn update(&self) -> Result<String, StoreError> {
        let output = self
            .store
            .client()
            .update_item()
            .table_name(self.store.table())
            .key("PK", s(&self.pk))
            .key("SK", s(RECORD_SK))
            .update_expression(
                "SET #status = :in_progress, fingerprint = :fp, #token = :token, \
                 locked_until = :locked_until, expires_at = :expires_at, \
                 resource_id = if_not_exists(resource_id, :resource_id) \
                 REMOVE response_status, response_body",
            )
            .condition_expression(
                "attribute_not_exists(PK) OR (fingerprint = :fp AND expires_at > :now_s \
                 AND (#status = :released \
                      OR (#status = :in_progress AND locked_until <= :now_ms)))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":released", s(RELEASED))
            .expression_attribute_values(":fp", s(self.fingerprint))
            .expression_attribute_values(":token", s(&self.token))
            .expression_attribute_values(":locked_until", n(self.locked_until))
            .expression_attribute_values(":expires_at", n(self.expires_at))
            .expression_attribute_values(":resource_id", s(self.new_resource_id))
            .expression_attribute_values(":now_s", n(self.now_s))
            .expression_attribute_values(":now_ms", n(self.now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(crate::store::classify)?;
        let record: Record = crate::store::decode(output.attributes.unwrap_or_default())?;
        record
            .resource_id
            .ok_or_else(|| StoreError::Internal("claimed record has no resource_id".into()))
    }

    /// Replaces a dead record (see `begin`) with a fresh claim, if it still has `dead_token`.
    async fn replace(&self, dead_token: &str) -> Result<(), StoreError> {
        let record = Record {
            status: IN_PROGRESS.to_owned(),
            fingerprint: self.fingerprint.to_owned(),
            token: self.token.clone(),
            locked_until: self.locked_until,
            expires_at: self.expires_at,
            resource_id: Some(self.new_resource_id.to_owned()),
            response_status: None,
            response_body: None,
            sealed_field: None,
            sealed_secret: None,
        };
        let mut item: Item = crate::store::encode(&record)?;
        item.insert("PK".into(), s(&self.pk));
        item.insert("SK".into(), s(RECORD_SK));
        self.store
            .client()
            .put_item()
            .table_name(self.store.table())
            .set_item(Some(item))
            .condition_expression(
                "#token = :dead AND (expires_at <= :now_s OR #status = :released)",
            )
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dead", s(dead_token))
            .expression_attribute_values(":now_s", n(self.now_s))
            .expression_attribute_values(":released", s(RELEASED))
            .send()
            .await
            .map(drop)
            .map_err(crate::store::classify)
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
            secret: None,
        }),
        Err(_) => None,
    };
    let mut attempt = 0;
    let result = loop {
        let result = match &stored {
            Some(response) => complete(store, claim, response).await,
            None => release(store, claim).await,
        };
        match result {
            Err(StoreError::Conflict) if attempt + 1 < CLAIM_ATTEMPTS => {
                crate::backoff::wait(attempt).await;
                attempt += 1;
            }
            other => break other,
        }
    };
    match result {
        // Completed already (by the operation's own transaction, whose answer was lost), or our
        // lock was taken over after it expired: either way the record is settled by someone.
        Err(StoreError::ConditionFailed | StoreError::ClaimLost) => Ok(()),
        other => other,
    }
}

/// The same completion the operation's transaction would have carried, on its own.
async fn complete(store: &Store, claim: &Claim, response: &ApiResponse) -> Result<(), StoreError> {
    store
        .client()
        .transact_write_items()
        .transact_items(claim.completion(response)?)
        .send()
        .await
        .map(drop)
        .map_err(|err| crate::store::classify_transaction(err, true))
}

/// Gives the key back for the retry, only while it is still ours and `in_progress`: a record
/// that completed (our change committed though we saw an error) is never touched. The record
/// keeps its fingerprint and `resource_id`, so a retry of the same request reuses them.
async fn release(store: &Store, claim: &Claim) -> Result<(), StoreError> {
    let [(pk_name, pk), (sk_name, sk)] = claim.key_attributes();
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key(pk_name, pk)
        .key(sk_name, sk)
        .update_expression("SET #status = :released, locked_until = :zero")
        .condition_expression("#token = :token AND #status = :in_progress")
        .expression_attribute_names("#token", "token")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":token", s(&claim.token))
        .expression_attribute_values(":in_progress", s(IN_PROGRESS))
        .expression_attribute_values(":released", s(RELEASED))
        .expression_attribute_values(":zero", n(0))
        .send()
        .await
        .map(drop)
        .map_err(crate::store::classify)
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
