//! The DynamoDB client: built once per container at init, from Lambda's own environment.
//!
//! Why not `aws_config::load_defaults`: a profile of init (bench/RESULTS.md) showed two thirds of
//! a function's cold start spent there, almost all of it in the default HTTPS client reading and
//! parsing every certificate of the operating system's store (hundreds of files and a 220 KB
//! bundle), and the rest in a credential and region chain (profile files, SSO, STS, IMDS, ECS)
//! that Lambda never needs: it hands every function its region and its role's credentials in
//! environment variables. So the functions build the client directly:
//!
//! - region from `AWS_REGION`, credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//!   `AWS_SESSION_TOKEN` (what the SDK's environment provider reads, without the chain around it);
//! - `AWS_ENDPOINT_URL_DYNAMODB`, when set, points the client elsewhere (the local stack, plain
//!   HTTP; an HTTPS endpoint must chain to the roots below);
//! - TLS trusts only Amazon Trust Services' roots (`shared/certs/aws-roots.pem`), the CA behind
//!   every AWS endpoint: nothing to read from disk at init, and no other CA can vouch for a
//!   DynamoDB endpoint.
//! - Every wait is bounded ([`TIME_BUDGET`], below): a hung DynamoDB costs a request at most the
//!   operation time-out per call, and the request as a whole ends at its deadline
//!   (`App::request_deadline`), always inside the function timeout.
//! - Stalled-stream protection watches downloads only. Upload protection wraps every call in a
//!   check that wakes the function every 100 ms until DynamoDB answers, and it can never fire
//!   for us: each request body is a few KB in memory, handed to the socket in one write. Those
//!   wake-ups were most of create-payment's CPU above get-payment's in `make bench`
//!   (bench/RESULTS.md), where the local DynamoDB takes 100 ms and more per transaction.
//!
//! - Every attempt after a call's first is counted (`DynamoDbRetries`, `crate::metrics`) by an
//!   interceptor: retries are the first sign of throttling or a sick endpoint, well before 503s.
//!
//! The admin CLI (`infra/admin`) runs on operators' machines and keeps the SDK's full chain.

use crate::config::{self, required_in, ConfigError, Lookup};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
    SharedHttpClient, StalledStreamProtectionConfig,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use std::time::Duration;

/// Amazon Trust Services' root certificates, compiled in (see the file's header).
pub const AWS_ROOTS_PEM: &str = include_str!("../../certs/aws-roots.pem");

/// How long any DynamoDB call may take, and why each number is what it is. One place, against
/// the function timeout (`FunctionTimeout`, 10 s by default; `FUNCTION_TIMEOUT_SECONDS`):
///
/// | what | value | why |
/// |---|---|---|
/// | connect | 1 s | in-region TCP + TLS is milliseconds; a second means the endpoint is not there |
/// | one attempt | 1.5 s | DynamoDB answers in single-digit ms, a transaction in tens; an attempt that has not answered in 1.5 s is hung, and a retry (same `ClientRequestToken` for a transaction, so it cannot apply twice) is the better bet |
/// | attempts | 3 (standard retry mode, token bucket) | throttling and 500s clear within a couple of tries |
/// | back-off | full jitter, 25 ms doubling to at most 250 ms | spreads retries of racing requests without burning the budget |
/// | one call, all attempts | 3 s | a hung DynamoDB: two attempts fit, then 503 `service_unavailable` with `Retry-After` |
/// | one request | function timeout − 1 s | `App` cuts a request that made several slow calls (claim, read, write, read-back, release) and answers 503 itself, before Lambda would kill it with API Gateway's own error body |
/// | idempotency lock | the function timeout | a claim outlives the request that holds it by at most the 1 s margin, and frees itself after (see `idempotency`) |
///
/// So a request whose first DynamoDB call hangs answers 503 in about 3 s, and no request can
/// outlive its deadline. The numbers are for DynamoDB; the local stack uses the same.
pub const TIME_BUDGET: TimeBudget = TimeBudget {
    connect: Duration::from_millis(1000),
    attempt: Duration::from_millis(1500),
    max_attempts: 3,
    initial_backoff: Duration::from_millis(25),
    max_backoff: Duration::from_millis(250),
    operation: Duration::from_millis(3000),
};

/// The bounds of [`TIME_BUDGET`].
#[derive(Debug, Clone, Copy)]
pub struct TimeBudget {
    pub connect: Duration,
    pub attempt: Duration,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub operation: Duration,
}

impl TimeBudget {
    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    fn retries(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }
}

/// What the client needs to know; [`Settings::from_env`] reads it the way Lambda provides it.
#[derive(Clone)]
pub struct Settings {
    pub region: String,
    pub credentials: Credentials,
    /// Overrides the regional endpoint (the local stack); `None` on AWS.
    pub endpoint: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&config::env)
    }

    pub fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let credentials = Credentials::new(
            required_in(lookup, "AWS_ACCESS_KEY_ID")?,
            required_in(lookup, "AWS_SECRET_ACCESS_KEY")?,
            lookup("AWS_SESSION_TOKEN"),
            // Lambda's role credentials outlive the execution environment that received them.
            None,
            "lambda-environment",
        );
        Ok(Self {
            region: required_in(lookup, "AWS_REGION")?,
            credentials,
            endpoint: lookup("AWS_ENDPOINT_URL_DYNAMODB"),
        })
    }
}

/// The HTTPS client every function's SDK client uses: rustls, trusting only [`AWS_ROOTS_PEM`].
pub fn https_client() -> SharedHttpClient {
    let trust = TrustStore::empty().with_pem_certificate(AWS_ROOTS_PEM.as_bytes());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store alone is a valid TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// Downloads watched, uploads not (see the module header).
fn stalled_stream_protection() -> StalledStreamProtectionConfig {
    StalledStreamProtectionConfig::enabled()
        .upload_enabled(false)
        .build()
}

/// Counts the SDK's retries into the current invocation's metrics.
#[derive(Debug)]
struct CountRetries;

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // The orchestrator numbers attempts from 1 before each one.
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1)
        {
            crate::metrics::count(crate::metrics::Counter::DynamoDbRetries);
        }
        Ok(())
    }
}

/// The DynamoDB client for `settings`, within [`TIME_BUDGET`].
pub fn dynamodb(settings: Settings) -> Client {
    dynamodb_within(settings, &TIME_BUDGET)
}

/// The DynamoDB client for `settings`, within `budget`: the functions use [`TIME_BUDGET`];
/// tests that are not about the budget give DynamoDB Local on a loaded machine more time
/// (`testing::dynamodb_client`), and the fault tests keep [`TIME_BUDGET`] to check it.
pub fn dynamodb_within(settings: Settings, budget: &TimeBudget) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region))
        .credentials_provider(settings.credentials)
        .http_client(https_client())
        .timeout_config(budget.timeouts())
        .retry_config(budget.retries())
        .stalled_stream_protection(stalled_stream_protection())
        .interceptor(CountRetries);
    if let Some(endpoint) = settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    /// The SHA-256 fingerprints Amazon Trust Services publishes for its roots.
    const PUBLISHED: [&str; 5] = [
        "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e", // Amazon Root CA 1
        "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4", // Amazon Root CA 2
        "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4", // Amazon Root CA 3
        "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092", // Amazon Root CA 4
        "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5", // Starfield Services G2
    ];

    fn fingerprints(pem: &str) -> Vec<String> {
        pem.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .expect("base64 certificate");
                hex::encode(Sha256::digest(der))
            })
            .collect()
    }

    #[test]
    fn the_bundle_is_exactly_amazon_trust_services_roots() {
        assert_eq!(fingerprints(AWS_ROOTS_PEM), PUBLISHED);
    }

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn settings_come_from_lambda_variables() {
        let lambda = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        let settings = Settings::from_lookup(&lookup(&lambda)).expect("complete environment");
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(settings.credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(settings.credentials.secret_access_key(), "secret");
        assert_eq!(settings.credentials.session_token(), Some("token"));
        assert_eq!(settings.endpoint, None);

        let local = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
        ];
        let settings = Settings::from_lookup(&lookup(&local)).expect("complete environment");
        assert_eq!(settings.credentials.session_token(), None);
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let without_secret = [("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "AKID")];
        assert!(matches!(
            Settings::from_lookup(&lookup(&without_secret)),
            Err(ConfigError::Missing("AWS_SECRET_ACCESS_KEY"))
        ));
        let without_region = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ];
        assert!(matches!(
            Settings::from_lookup(&lookup(&without_region)),
            Err(ConfigError::Missing("AWS_REGION"))
        ));
    }

    /// The client a function builds from a complete Lambda environment.
    fn lambda_client() -> Client {
        let settings = Settings::from_lookup(&lookup(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .expect("complete environment");
        dynamodb(settings)
    }

    #[test]
    fn every_wait_is_bounded_inside_the_function_timeout() {
        let client = lambda_client();
        let timeouts = client.config().timeout_config().expect("set explicitly");
        assert_eq!(timeouts.connect_timeout(), Some(TIME_BUDGET.connect));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(TIME_BUDGET.attempt)
        );
        assert_eq!(timeouts.operation_timeout(), Some(TIME_BUDGET.operation));
        let retries = client.config().retry_config().expect("set explicitly");
        assert_eq!(retries.max_attempts(), TIME_BUDGET.max_attempts);
        // A request whose first call hangs answers well inside the default function timeout.
        let function_timeout = crate::config::DEFAULT_FUNCTION_TIMEOUT.unsigned_abs();
        assert!(TIME_BUDGET.operation * 2 < function_timeout);
    }

    #[test]
    fn the_client_watches_downloads_but_not_uploads() {
        let client = lambda_client();
        let protection = client
            .config()
            .stalled_stream_protection()
            .expect("set explicitly");
        assert!(protection.download_enabled());
        assert!(!protection.upload_enabled());
    }
}
