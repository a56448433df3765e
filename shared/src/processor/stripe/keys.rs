//! The deployment's Stripe keys: one Secrets Manager secret (template parameter
//! `StripeSecretArn`, passed as `STRIPE_SECRET_ARN`), whose JSON is
//! `{"secret_key": "sk_…", "webhook_secret": "whsec_…"}`. Read on the first call that needs it
//! (never at init) and kept for the container's life; a read that fails is not kept, so the next
//! call tries again. Only the functions that call Stripe or verify its webhooks may read it
//! (template.yaml, a contract test); nothing of it is ever logged, put in a metric, an error
//! text or the environment (`Debug` shows neither key).
//!
//! The read is one `GetSecretValue`, signed with SigV4 (`crate::aws_json`, the SDK's own signer,
//! already in every function) and sent on the connector's own HTTPS client trusting only
//! Amazon's roots: no second SDK client in the zips. `AWS_ENDPOINT_URL_SECRETS_MANAGER` points
//! it at the local stack's Secrets Manager (moto, `make dev PROCESSOR=stripe`).

use super::http::{self, CallBudget, Trust, CALL_BUDGET};
use crate::config::{self, required_in, ConfigError, Lookup};
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The two keys.
#[derive(Clone, Deserialize)]
pub struct StripeKeys {
    /// Authenticates our calls to Stripe.
    pub secret_key: String,
    /// Verifies `Stripe-Signature` on the webhooks Stripe sends us.
    pub webhook_secret: String,
}

impl std::fmt::Debug for StripeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeKeys { .. }")
    }
}

/// Why the keys could not be read (never containing any of the secret).
#[derive(Debug, thiserror::Error)]
#[error("the Stripe keys could not be read: {0}")]
pub struct KeysError(String);

/// Where the keys come from, read once.
pub struct Keys {
    source: Source,
    read: OnceCell<Arc<StripeKeys>>,
}

enum Source {
    /// Given directly (the tests, against localstripe).
    Given,
    SecretsManager(SecretsManager),
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    /// Keys known already (tests).
    pub fn given(keys: StripeKeys) -> Self {
        Self {
            source: Source::Given,
            read: OnceCell::new_with(Some(Arc::new(keys))),
        }
    }

    /// The secret `STRIPE_SECRET_ARN` names, read on first use.
    pub fn from_env(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Self {
            source: Source::SecretsManager(SecretsManager::from_env(lookup)?),
            read: OnceCell::new(),
        })
    }

    /// The keys: read on the first call, the same afterwards.
    pub async fn get(&self) -> Result<Arc<StripeKeys>, KeysError> {
        self.read
            .get_or_try_init(|| async {
                match &self.source {
                    Source::Given => Err(KeysError("no keys were given".into())),
                    Source::SecretsManager(manager) => manager.read().await.map(Arc::new),
                }
            })
            .await
            .cloned()
    }
}

/// One secret in Secrets Manager, and how to ask for it.
struct SecretsManager {
    arn: String,
    region: String,
    endpoint: String,
    identity: Identity,
    budget: CallBudget,
}

impl SecretsManager {
    fn from_env(lookup: Lookup) -> Result<Self, ConfigError> {
        let settings = crate::store::client::Settings::from_lookup(lookup)?;
        let region = settings.region;
        let endpoint = lookup("AWS_ENDPOINT_URL_SECRETS_MANAGER")
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        Ok(Self {
            arn: required_in(lookup, "STRIPE_SECRET_ARN")?,
            region,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            identity: settings.credentials.into(),
            budget: CALL_BUDGET,
        })
    }

    async fn read(&self) -> Result<StripeKeys, KeysError> {
        let body = serde_json::json!({ "SecretId": self.arn }).to_string();
        let call = crate::aws_json::Call {
            endpoint: &self.endpoint,
            region: &self.region,
            service: "secretsmanager",
            target: "secretsmanager.GetSecretValue",
            content_type: "application/x-amz-json-1.1",
        };
        let request =
            crate::aws_json::signed_request(&call, body, &self.identity).map_err(KeysError)?;
        let answer = http::exchange(Trust::Aws, request, self.budget)
            .await
            .map_err(|err| KeysError(format!("Secrets Manager: {err}")))?;
        if answer.status != 200 {
            // AWS's error type and message name the secret and the cause, never its value.
            return Err(KeysError(format!(
                "Secrets Manager answered {}: {} {}",
                answer.status,
                answer.body["__type"].as_str().unwrap_or(""),
                answer.body["message"]
                    .as_str()
                    .or(answer.body["Message"].as_str())
                    .unwrap_or("")
            )));
        }
        let text = answer.body["SecretString"]
            .as_str()
            .ok_or_else(|| KeysError("the secret has no SecretString".into()))?;
        // The parse error would quote the secret: only its kind is kept.
        serde_json::from_str(text).map_err(|_| {
            KeysError(
                "the secret is not {\"secret_key\": \"sk_…\", \"webhook_secret\": \"whsec_…\"}"
                    .into(),
            )
        })
    }
}

/// `STRIPE_API_BASE`: `https://api.stripe.com` unless set; anything but `https://` only in the
/// local stack (`WEBHOOK_ALLOW_LOCAL_URLS`, which only `make dev` sets).
pub fn api_base(lookup: Lookup) -> Result<String, ConfigError> {
    let base = lookup("STRIPE_API_BASE")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "https://api.stripe.com".to_owned());
    if !base.starts_with("https://") && !config::webhook_allow_local_urls(lookup) {
        return Err(ConfigError::Invalid(
            "STRIPE_API_BASE",
            "must be https:// outside the local stack",
        ));
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn neither_key_is_ever_printed() {
        let keys = StripeKeys {
            secret_key: "sk_live_secret".into(),
            webhook_secret: "whsec_secret".into(),
        };
        let printed = format!("{keys:?} {:?}", Keys::given(keys.clone()));
        assert!(!printed.contains("sk_live_secret") && !printed.contains("whsec_secret"));
    }

    #[test]
    fn the_api_base_is_stripes_and_plain_http_only_locally() {
        assert_eq!(api_base(&lookup(&[])).unwrap(), "https://api.stripe.com");
        let local = [("STRIPE_API_BASE", "http://127.0.0.1:8420")];
        assert!(api_base(&lookup(&local)).is_err());
        let dev = [
            ("STRIPE_API_BASE", "http://127.0.0.1:8420"),
            ("WEBHOOK_ALLOW_LOCAL_URLS", "true"),
        ];
        assert_eq!(api_base(&lookup(&dev)).unwrap(), "http://127.0.0.1:8420");
    }

    #[test]
    fn the_secret_arn_is_required() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ];
        assert!(matches!(
            Keys::from_env(&lookup(&vars)),
            Err(ConfigError::Missing("STRIPE_SECRET_ARN"))
        ));
    }
}
