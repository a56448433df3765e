//! Sealing a secret for the idempotency record of the request that showed it.
//!
//! A keyed create of a webhook endpoint (or rotation of its secret) must answer a retry with the
//! first response, secret included (API.md, "Idempotency"), yet the secret may be kept in plain
//! text only in its `WHSECRET#` partition, which the API functions cannot read (API.md,
//! "Webhooks"; IAM). So the record keeps the response without the secret and, beside it, the
//! secret sealed (AES-256-GCM) under a key derived from the caller's API key and the record's
//! own key: HMAC-SHA256(api key, label ‖ record key). We store only the API key's hash, so
//! nobody holding the table alone (a backup, a function with a read grant, an operator) can
//! open it; the retry, which carries the API key, can. The record's key is the additional
//! data, so a sealed value moved to another record does not open.
//!
//! A retry with another of the merchant's API keys cannot open it: that request is answered
//! 422 `idempotency_key_reused` (the secret cannot be shown again; rotating it gives a new one).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

const LABEL: &[u8] = b"payments-api idempotency seal v1\n";
const VERSION: &str = "v1";

/// Why a sealed value could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no randomness for a nonce")]
    Random,
    #[error("the sealed value is not in the stored form")]
    Malformed,
    /// Another key, another record, or a changed value.
    #[error("the sealed value does not open with this key")]
    WrongKey,
}

/// The key one request's record is sealed with. Never shown (its `Debug` says nothing).
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(…)")
    }
}

impl SealKey {
    /// The key of the record `record` (its partition key) for a caller holding `api_key`.
    pub fn derive(api_key: &str, record: &str) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(api_key.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(LABEL);
        mac.update(record.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }
}

/// `secret` sealed for `record`: `v1:<nonce hex>:<ciphertext and tag hex>`.
pub fn seal(key: &SealKey, record: &str, secret: &str) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let mut sealed = secret.as_bytes().to_vec();
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(record.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SealError::Malformed)?;
    Ok(format!(
        "{VERSION}:{}:{}",
        hex::encode(nonce),
        hex::encode(sealed)
    ))
}

/// The secret [`seal`] sealed for `record` under `key`.
pub fn open(key: &SealKey, record: &str, sealed: &str) -> Result<String, SealError> {
    let mut parts = sealed.split(':');
    let (Some(VERSION), Some(nonce), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SealError::Malformed);
    };
    let nonce: [u8; NONCE_LEN] = hex::decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Malformed)?;
    let mut body = hex::decode(body).map_err(|_| SealError::Malformed)?;
    let opened = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(record.as_bytes()),
            &mut body,
        )
        .map_err(|_| SealError::WrongKey)?;
    String::from_utf8(opened.to_vec()).map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const API_KEY: &str = "sk_0123456789abcdef0123456789abcdef0123456789abcdef";
    const RECORD: &str = "MERCHANT#mer_1#IDEMPOTENCY#k1";
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn what_is_sealed_opens_with_the_same_api_key_and_record_only() {
        let key = SealKey::derive(API_KEY, RECORD);
        let sealed = seal(&key, RECORD, SECRET).unwrap();
        assert!(!sealed.contains(SECRET) && !sealed.contains(&hex::encode(SECRET)));
        assert_eq!(open(&key, RECORD, &sealed).unwrap(), SECRET);
        assert_ne!(
            seal(&key, RECORD, SECRET).unwrap(),
            sealed,
            "a fresh nonce each time"
        );

        let other_api_key = SealKey::derive(&API_KEY.replace('0', "1"), RECORD);
        assert_eq!(
            open(&other_api_key, RECORD, &sealed),
            Err(SealError::WrongKey)
        );
        let other_record = "MERCHANT#mer_1#IDEMPOTENCY#k2";
        let moved = SealKey::derive(API_KEY, other_record);
        assert_eq!(
            open(&moved, other_record, &sealed),
            Err(SealError::WrongKey)
        );
        assert_eq!(
            open(&key, other_record, &sealed),
            Err(SealError::WrongKey),
            "the record is bound"
        );
    }

    #[test]
    fn a_changed_or_malformed_value_does_not_open() {
        let key = SealKey::derive(API_KEY, RECORD);
        let sealed = seal(&key, RECORD, SECRET).unwrap();
        let last = sealed.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &sealed[..sealed.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        assert_eq!(open(&key, RECORD, &flipped), Err(SealError::WrongKey));
        for bad in [
            "",
            "v1",
            "v2:00:00",
            "v1:zz:00",
            "v1:00:00",
            &format!("{sealed}:x"),
        ] {
            assert!(open(&key, RECORD, bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{key:?}"), "SealKey(…)");
    }
}
