//! Signatures of processor events, Stripe's scheme (`Stripe-Signature`): the header is
//! `t=<unix seconds>,v1=<hex of HMAC-SHA256(secret, "<t>.<body>")>` (more `v1=` entries during a
//! secret's rotation, and other schemes, are allowed and ignored), and an event is accepted only
//! within [`TOLERANCE`] of its `t`, so that a captured request cannot be replayed later. The
//! sandbox signs its events the same way (header `Sandbox-Signature`, the deployment's sandbox
//! secret), so the route's verification is the one Stripe's events go through.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

type HmacSha256 = Hmac<Sha256>;

/// How far an event's timestamp may be from our clock (Stripe's libraries use 5 minutes).
pub const TOLERANCE: Duration = Duration::minutes(5);

/// Why a signature was refused (400 `invalid_signature`; the reason is for the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature header has no t= and v1= parts")]
    Malformed,
    #[error("the signature's timestamp is more than 5 minutes from now")]
    TooOld,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// The header value that signs `body` with `secret` at `at`.
pub fn sign(secret: &[u8], body: &[u8], at: OffsetDateTime) -> String {
    let t = at.unix_timestamp();
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

/// Checks `header` (the signature header's value, if any) against `body` at `now`.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age = now.unix_timestamp().abs_diff(t);
    if age > TOLERANCE.whole_seconds().unsigned_abs() {
        return Err(SignatureError::TooOld);
    }
    for signature in signatures {
        // `verify_slice` compares in constant time.
        let mut expected =
            HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
        expected.update(format!("{t}.").as_bytes());
        expected.update(body);
        if expected.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// The header is Stripe's format around an HMAC computed independently of `hmac`.
    #[test]
    fn matches_an_independent_hmac() {
        let header = sign(SECRET, br#"{"id":"evt_1"}"#, at(1492774577));
        assert_eq!(header, format!("t=1492774577,v1={}", independent_hmac()));
    }

    fn independent_hmac() -> String {
        // Computed here by the RFC 2104 construction on sha2 alone, so that the test does not
        // ask `hmac` to check itself.
        use sha2::Digest;
        let mut key = SECRET.to_vec();
        key.resize(64, 0);
        let inner_key: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
        let outer_key: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&inner_key)
            .chain_update(br#"1492774577.{"id":"evt_1"}"#)
            .finalize();
        let outer = Sha256::new()
            .chain_update(&outer_key)
            .chain_update(inner)
            .finalize();
        hex::encode(outer)
    }

    #[test]
    fn accepts_its_own_signature_within_the_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, body, at(1_000_000));
        for now in [1_000_000, 1_000_300, 999_700] {
            assert_eq!(
                verify(SECRET, Some(&header), body, at(now)),
                Ok(()),
                "{now}"
            );
        }
        for now in [1_000_301, 999_699] {
            assert_eq!(
                verify(SECRET, Some(&header), body, at(now)),
                Err(SignatureError::TooOld)
            );
        }
    }

    #[test]
    fn refuses_what_the_secret_did_not_sign() {
        let body = br#"{"id":"evt_1"}"#;
        let now = at(1_000_000);
        let header = sign(SECRET, body, now);
        assert_eq!(
            verify(SECRET, Some(&header), br#"{"id":"evt_2"}"#, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret", Some(&header), body, now),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace("t=1000000", "t=1000001");
        assert_eq!(
            verify(SECRET, Some(&moved), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, body, now),
            Err(SignatureError::Missing)
        );
        for malformed in ["", "v1=00", "t=1000000", "t=abc,v1=00", "t=1000000,v1=zz"] {
            assert_eq!(
                verify(SECRET, Some(malformed), body, now),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn any_v1_of_a_rotation_may_match_and_other_schemes_are_ignored() {
        let body = b"{}";
        let now = at(1_000_000);
        let good = sign(SECRET, body, now);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1000000,v0=abcd,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(SECRET, Some(&header), body, now), Ok(()));
    }
}
