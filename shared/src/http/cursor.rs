//! List cursors: opaque to clients, tamper-evident, and bound to the merchant and the list that
//! issued them.
//!
//! A cursor is `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`, where the
//! payload names the merchant, the list (e.g. `payments?status=succeeded`) and the position (the
//! last id returned). Anything that does not verify, or verifies for another merchant or list,
//! is `invalid_cursor`: a cursor can never move a query outside its merchant's partition.
//!
//! The secret is the deployment's, stored in the table (`store::secrets`); [`Cursors`]
//! loads it on a list function's first request and keeps it.

use super::ApiError;
use crate::domain::MerchantId;
use crate::store::Store;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// merchant
    m: String,
    /// list
    l: String,
    /// position: continue after this id
    p: String,
}

/// Issues and opens cursors with one secret (configured per deployment).
#[derive(Clone)]
pub struct CursorCodec {
    secret: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { secret: <redacted> }")
    }
}

impl CursorCodec {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    /// A cursor that continues `list` for `merchant` after `position`.
    pub fn issue(&self, merchant: &MerchantId, list: &str, position: &str) -> String {
        let payload = Payload {
            m: merchant.to_string(),
            l: list.to_owned(),
            p: position.to_owned(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The position in `cursor`, if this codec issued it for `merchant` and `list`.
    pub fn open(
        &self,
        cursor: &str,
        merchant: &MerchantId,
        list: &str,
    ) -> Result<String, ApiError> {
        let (payload, tag) = cursor.split_once('.').ok_or(ApiError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ApiError::InvalidCursor)?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidCursor)?;
        if payload.m != merchant.as_str() || payload.l != list {
            return Err(ApiError::InvalidCursor);
        }
        Ok(payload.p)
    }
}

/// A function's cursor codec: read from the table on the first request that lists, then kept
/// for the container's life. Functions that never list never read the secret (nor may they:
/// template.yaml), and nothing of it happens at init.
#[derive(Debug, Default)]
pub struct Cursors {
    codec: std::sync::OnceLock<CursorCodec>,
}

impl Cursors {
    /// The codec, loading the secret first if this container has not yet. A failed load is the
    /// store's error (503 when DynamoDB could not answer); the next request tries again.
    pub async fn codec(&self, store: &Store) -> Result<&CursorCodec, ApiError> {
        if let Some(codec) = self.codec.get() {
            return Ok(codec);
        }
        let secret = store.secret(crate::store::DeploymentSecret::Cursor).await?;
        // One request at a time per container; were there two, both loaded the same secret.
        Ok(self.codec.get_or_init(|| CursorCodec::new(secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::OffsetDateTime;

    fn merchant() -> MerchantId {
        MerchantId::generate(OffsetDateTime::now_utc())
    }

    #[test]
    fn round_trips_for_its_merchant_and_list() {
        let codec = CursorCodec::new("secret");
        let m = merchant();
        let cursor = codec.issue(&m, "payments", "pay_1");
        assert_eq!(codec.open(&cursor, &m, "payments").unwrap(), "pay_1");
    }

    #[test]
    fn is_bound_to_merchant_list_and_secret() {
        let codec = CursorCodec::new("secret");
        let (a, b) = (merchant(), merchant());
        let cursor = codec.issue(&a, "payments", "pay_1");
        assert!(codec.open(&cursor, &b, "payments").is_err());
        assert!(codec.open(&cursor, &a, "payments?status=failed").is_err());
        assert!(CursorCodec::new("other")
            .open(&cursor, &a, "payments")
            .is_err());
    }

    proptest! {
        #[test]
        fn any_tampering_is_detected(index in 0usize..200, replacement in "[A-Za-z0-9_.-]") {
            let codec = CursorCodec::new("secret");
            let m = merchant();
            let cursor = codec.issue(&m, "payments", "pay_0123");
            let index = index % cursor.len();
            let mut tampered = cursor.clone();
            tampered.replace_range(index..=index, &replacement);
            prop_assume!(tampered != cursor);
            prop_assert!(codec.open(&tampered, &m, "payments").is_err());
        }
    }
}
