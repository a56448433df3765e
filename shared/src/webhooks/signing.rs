//! Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature` is
//! `v1,<base64 of HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, where the key is
//! the base64-decoded part of the secret after `whsec_`. During a rotation two secrets sign:
//! the header then carries both signatures, space-separated, and a receiver that knows either
//! secret accepts the delivery.

use crate::domain::ParseError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// How secrets are written: this prefix, then base64 of the key.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret's key.
pub const SECRET_BYTES: usize = 32;

/// An endpoint's signing key. Its `Debug` shows nothing of it: it must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl SigningSecret {
    /// A new random secret and its text (`whsec_` + base64 of 32 random bytes), to show once.
    pub fn generate() -> Result<(Self, String), getrandom::Error> {
        let mut key = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut key)?;
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(&key));
        Ok((Self { key }, text))
    }

    /// A secret from its text (`whsec_<base64>`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| ParseError::new("a signing secret starts with whsec_"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| ParseError::new("a signing secret is base64 after whsec_"))?;
        if key.is_empty() {
            return Err(ParseError::new("a signing secret has a key"));
        }
        Ok(Self { key })
    }

    /// The secret's text, for storage on the delivery path only.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// `v1,<signature>` of one delivery attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret that signs now (the current one,
/// and during 24 h after a rotation the previous one too), space-separated.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector the Standard Webhooks specification and svix's libraries publish
    /// (standard-webhooks/standard-webhooks, libraries' tests): our signature must be exactly
    /// theirs, or no receiver's library would verify what we send.
    #[test]
    fn reproduces_the_published_test_vector() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_part_of_the_message_is_signed() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = secret.sign("msg_1", 1_700_000_000, b"{}");
        assert_ne!(secret.sign("msg_2", 1_700_000_000, b"{}"), base);
        assert_ne!(secret.sign("msg_1", 1_700_000_001, b"{}"), base);
        assert_ne!(secret.sign("msg_1", 1_700_000_000, b"{ }"), base);
        let (other, _) = SigningSecret::generate().unwrap();
        assert_ne!(other.sign("msg_1", 1_700_000_000, b"{}"), base);
    }

    #[test]
    fn during_a_rotation_both_secrets_sign() {
        let (old, _) = SigningSecret::generate().unwrap();
        let (new, _) = SigningSecret::generate().unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "evt_1", 1_700_000_000, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [
                new.sign("evt_1", 1_700_000_000, b"{}"),
                old.sign("evt_1", 1_700_000_000, b"{}")
            ]
        );
    }

    #[test]
    fn generated_secrets_have_the_documented_shape_and_stay_out_of_debug() {
        let (secret, text) = SigningSecret::generate().unwrap();
        assert!(text.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text["whsec_".len()..]).unwrap().len(), 32);
        assert_eq!(SigningSecret::parse(&text).unwrap(), secret);
        assert_eq!(secret.expose(), text);
        assert!(!format!("{secret:?}").contains(&text["whsec_".len()..]));
        for bad in ["", "whsec_", "sk_abc", "whsec_***"] {
            assert!(SigningSecret::parse(bad).is_err(), "{bad:?}");
        }
    }
}
