//! API keys: how they look, how they are stored, and how a request is authenticated.
//!
//! A key is `sk_` + 48 hex digits (192 random bits), shown once at creation and stored only as
//! its SHA-256 hash (a fast hash is right for random keys: there is nothing to brute-force).
//! Its first 12 characters are its public prefix, used to name it when revoking.
//!
//! Lookups are cached in the warm container for at most [`CACHE_TTL`], so a revoked key stops
//! working everywhere within that window while most requests skip the DynamoDB read. Unknown
//! keys are not cached: a key created a moment ago must work at once.

use super::ApiError;
use crate::clock::Clock;
use crate::domain::{MerchantId, Timestamp};
use crate::store::{ApiKeyRecord, Store};
use lambda_http::http::header::AUTHORIZATION;
use lambda_http::http::HeaderMap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// How long a looked-up key is trusted without reading it again.
pub const CACHE_TTL: Duration = Duration::seconds(60);
const KEY_PREFIX: &str = "sk_";
const KEY_RANDOM_BYTES: usize = 24;
/// How many leading characters of a key identify it.
pub const PUBLIC_PREFIX_LEN: usize = 12;

/// A freshly generated key: the secret to show once, and what we store.
#[derive(Debug)]
pub struct NewApiKey {
    pub secret: String,
    pub record: ApiKeyRecord,
}

impl NewApiKey {
    /// Generates a key for `merchant` from the operating system's random source.
    pub fn generate(merchant: &MerchantId, now: OffsetDateTime) -> Result<Self, getrandom::Error> {
        let mut random = [0u8; KEY_RANDOM_BYTES];
        getrandom::fill(&mut random)?;
        let secret = format!("{KEY_PREFIX}{}", hex::encode(random));
        let record = ApiKeyRecord {
            key_hash: hash_key(&secret),
            key_prefix: secret[..PUBLIC_PREFIX_LEN].to_owned(),
            merchant_id: merchant.clone(),
            created_at: Timestamp::from_datetime(now),
            revoked_at: None,
        };
        Ok(Self { secret, record })
    }
}

/// The stored form of a key.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn looks_like_key(candidate: &str) -> bool {
    candidate.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_RANDOM_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The key in `Authorization: Bearer <key>`, if the header has that form.
pub fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && looks_like_key(key)).then_some(key)
}

#[derive(Debug, Clone)]
struct CachedKey {
    merchant: Option<MerchantId>,
    fetched_at: OffsetDateTime,
}

/// Turns an `Authorization` header into the merchant it belongs to.
pub struct Authenticator {
    store: Store,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, CachedKey>>,
}

impl Authenticator {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The merchant whose live key the request carries; 401 for a missing, malformed, unknown or
    /// revoked key.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<MerchantId, ApiError> {
        let key = bearer_key(headers).ok_or(ApiError::Unauthenticated)?;
        let hash = hash_key(key);
        let now = self.clock.now();
        if let Some(cached) = self.cached(&hash, now) {
            return cached.ok_or(ApiError::Unauthenticated);
        }
        let record = self.store.find_api_key(&hash).await?;
        let Some(record) = record else {
            return Err(ApiError::Unauthenticated);
        };
        let merchant = record.revoked_at.is_none().then_some(record.merchant_id);
        self.lock_cache().insert(
            hash,
            CachedKey {
                merchant: merchant.clone(),
                fetched_at: now,
            },
        );
        merchant.ok_or(ApiError::Unauthenticated)
    }

    fn cached(&self, hash: &str, now: OffsetDateTime) -> Option<Option<MerchantId>> {
        let cache = self.lock_cache();
        let entry = cache.get(hash)?;
        (now - entry.fetched_at < CACHE_TTL).then(|| entry.merchant.clone())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        // The cache holds no invariant a panic could break; keep using it.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let merchant = MerchantId::generate(OffsetDateTime::now_utc());
        let key = NewApiKey::generate(&merchant, OffsetDateTime::now_utc()).unwrap();
        assert!(looks_like_key(&key.secret));
        assert_eq!(key.record.key_prefix.len(), 12);
        assert!(key.secret.starts_with(&key.record.key_prefix));
        assert_eq!(key.record.key_hash, hash_key(&key.secret));
        assert!(!key.record.key_hash.contains(&key.secret));
        let other = NewApiKey::generate(&merchant, OffsetDateTime::now_utc()).unwrap();
        assert_ne!(key.secret, other.secret);
    }

    #[test]
    fn only_well_formed_bearer_headers_yield_a_key() {
        let key = format!("sk_{}", "ab".repeat(24));
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(
            bearer_key(&header(&format!("Bearer {key}"))),
            Some(key.as_str())
        );
        assert_eq!(
            bearer_key(&header(&format!("bearer {key}"))),
            Some(key.as_str())
        );
        assert_eq!(bearer_key(&header(&format!("Basic {key}"))), None);
        assert_eq!(bearer_key(&header(&key)), None);
        assert_eq!(bearer_key(&header("Bearer sk_short")), None);
        assert_eq!(bearer_key(&HeaderMap::new()), None);
    }
}
