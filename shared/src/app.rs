//! What a function needs to serve requests, built once per container in `main` (never per
//! request), and the one place an operation's outcome becomes an HTTP response.

use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigError};
use crate::domain::Deadlines;
use crate::domain::MerchantId;
use crate::http::auth::Authenticator;
use crate::http::cursor::{CursorCodec, Cursors};
use crate::http::request::request_id;
use crate::http::{ApiError, ApiResponse};
use crate::idempotency::{self, Begin, Commit, IdempotencyKey};
use crate::metrics::{self, Counter};
use crate::processor::{PaymentProcessor, SandboxProcessor};
use crate::store::Store;
use lambda_http::{Body, Request, Response};
use std::future::Future;
use std::sync::Arc;

/// The dependencies of every authenticated operation.
pub struct App {
    pub store: Store,
    pub auth: Authenticator,
    pub processor: Arc<dyn PaymentProcessor>,
    pub clock: Arc<dyn Clock>,
    /// The list cursors' codec, loaded on first use (see [`App::cursor_codec`]).
    pub cursors: Cursors,
    /// How long an idempotency claim locks its key: the function timeout.
    pub idempotency_lock: time::Duration,
    /// How long a request may run before it is answered 503 (see [`request_deadline`]).
    pub request_deadline: std::time::Duration,
    /// How long a new authorization waits for capture (`capture_before`).
    pub authorization_validity: time::Duration,
    /// How long a customer has to complete a `requires_action` payment.
    pub action_validity: time::Duration,
    /// The first reconciliation lookup of a `processing` payment (and its back-off's unit).
    pub reconcile_after: time::Duration,
    /// Whether webhook endpoints may point at this machine (`make dev` only).
    pub webhook_allow_local_urls: bool,
    /// How many POSTs one merchant may start per second (`None`: no limit); see
    /// [`App::admit_write`].
    pub merchant_write_rate_limit: Option<u32>,
}

/// The request deadline for a function timeout: one second less (half of it below 2 s), so
/// that the function answers with its own 503 problem+json, with `Retry-After`, before Lambda
/// would end it with API Gateway's bare error (`store::client::TIME_BUDGET`).
pub fn request_deadline(function_timeout: time::Duration) -> std::time::Duration {
    let timeout = function_timeout.unsigned_abs();
    let margin = std::time::Duration::from_secs(1).min(timeout / 2);
    timeout - margin
}

impl App {
    /// Wires the parts together; tests use this with their own clock and table.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            auth: Authenticator::new(store.clone(), clock.clone()),
            processor: Arc::new(SandboxProcessor::new(store.clone())),
            store,
            clock,
            cursors: Cursors::default(),
            idempotency_lock: config::DEFAULT_FUNCTION_TIMEOUT,
            request_deadline: request_deadline(config::DEFAULT_FUNCTION_TIMEOUT),
            authorization_validity: config::DEFAULT_AUTHORIZATION_VALIDITY,
            action_validity: config::DEFAULT_ACTION_VALIDITY,
            reconcile_after: Deadlines::default().reconcile,
            webhook_allow_local_urls: false,
            // Tests hold their clock still, so that every POST of a test falls in one second;
            // those about the guard set a limit (`from_env` reads the deployment's).
            merchant_write_rate_limit: None,
        }
    }

    /// The production wiring: configuration and the DynamoDB client from Lambda's environment
    /// (see `store::client`), the system clock. Under provisioned concurrency it also warms the
    /// DynamoDB connection (see [`App::warm_up`]).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let mut app = Self::new(Store::from_env()?, Arc::new(SystemClock));
        app.idempotency_lock = config::function_timeout()?;
        app.request_deadline = request_deadline(app.idempotency_lock);
        app.authorization_validity = config::authorization_validity(&config::env)?;
        app.action_validity = config::action_validity(&config::env)?;
        app.reconcile_after = config::reconcile_after(&config::env)?;
        app.processor = Arc::new(crate::processor::sandbox_from_env(
            &app.store,
            &config::env,
        )?);
        app.webhook_allow_local_urls = config::webhook_allow_local_urls(&config::env);
        app.merchant_write_rate_limit = config::merchant_write_rate_limit(&config::env)?;
        if config::initialised_ahead_of_traffic(&config::env) {
            app.warm_up().await;
        }
        Ok(app)
    }

    /// With the deployment's processor (`PROCESSOR`, `processor::from_env`) in place of the
    /// sandbox `from_env` wires: what the functions that move money call.
    pub fn with_deployment_processor(mut self) -> Result<Self, ConfigError> {
        self.processor = crate::processor::from_env(&self.store, &config::env)?;
        Ok(self)
    }

    /// The deadlines the status machine gives pending payments (`Deadlines`).
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            authorization: self.authorization_validity,
            action: self.action_validity,
            reconcile: self.reconcile_after,
        }
    }

    /// Makes the SDK client's first DynamoDB call now, while no request waits: under provisioned
    /// concurrency the first request then finds the connection open and the client's lazy
    /// set-up done (bench/RESULTS.md, "First invoke"). A failure does not stop the container:
    /// it is logged, and the first request tries again as it would have anyway.
    pub async fn warm_up(&self) {
        match self.store.warm_up().await {
            Ok(()) => tracing::info!("DynamoDB connection warmed ahead of traffic"),
            Err(err) => tracing::warn!(error = %err, "could not warm the DynamoDB connection"),
        }
    }

    /// The codec list cursors are issued and opened with; the first call in a container reads
    /// the deployment's secret from the table (`store::secrets`).
    pub async fn cursor_codec(&self) -> Result<&CursorCodec, ApiError> {
        self.cursors.codec(&self.store).await
    }

    /// Authenticates `req`, runs `operation` for the merchant, and renders the outcome.
    pub async fn respond<F, Fut>(&self, req: &Request, operation: F) -> Response<Body>
    where
        F: FnOnce(MerchantId) -> Fut,
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let outcome = self
            .within_deadline(async {
                let merchant = self.auth.authenticate(req.headers()).await?;
                operation(merchant).await
            })
            .await;
        render(req, outcome)
    }

    /// Runs `operation` for a route without an API key (the processor's callbacks), within the
    /// request deadline, and renders the outcome: the operation checks its own credential.
    pub async fn respond_unauthenticated<Fut>(
        &self,
        req: &Request,
        operation: Fut,
    ) -> Response<Body>
    where
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        render(req, self.within_deadline(operation).await)
    }

    /// Runs `work` until the request deadline; past it, 503. Cutting a request here is no
    /// different from Lambda ending it at its timeout, which every write path already survives
    /// (an idempotency claim it held frees itself when its lock expires).
    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout(self.request_deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::ServiceUnavailable(format!(
                    "request deadline of {:?} passed",
                    self.request_deadline
                )))
            })
    }
}

impl App {
    /// Like [`App::respond`], for POSTs: honours `Idempotency-Key` (see `idempotency`). The
    /// operation gets the [`Commit`] to add to its transaction, so the stored answer commits with
    /// the change.
    pub async fn respond_post<F, Fut>(&self, req: &Request, operation: F) -> Response<Body>
    where
        F: FnOnce(MerchantId, Arc<Commit>) -> Fut,
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let request_id = request_id(req);
        let outcome = self.within_deadline(async {
            let merchant = self.auth.authenticate(req.headers()).await?;
            self.admit_write(&merchant).await?;
            let Some(key) = IdempotencyKey::from_request(req)? else {
                return operation(merchant, Arc::new(Commit::none())).await.map(|r| (r, false));
            };
            let fingerprint = idempotency::fingerprint(req);
            let now = self.clock.now();
            let resource_id = crate::domain::ids::time_ordered_hex(now);
            // Authenticated: the header holds a well-formed key.
            let api_key = crate::http::auth::bearer_key(req.headers()).unwrap_or_default();
            let caller = idempotency::Caller { merchant: &merchant, api_key };
            let begun = idempotency::begin(&self.store, caller, &key, &fingerprint, now, self.idempotency_lock, &resource_id);
            match begun.await? {
                Begin::Replay(response) => {
                    metrics::count(Counter::IdempotencyReplays);
                    Ok((response, true))
                }
                Begin::Proceed(commit) => {
                    let commit = Arc::new(commit);
                    let result = operation(merchant, commit.clone()).await;
                    if let Err(err) = idempotency::finish(&self.store, &commit, &result, &request_id).await {
                        // The claim stays in progress and frees itself when its lock expires.
                        tracing::error!(request_id = %request_id, error = %err, "could not settle the idempotency record");
                    }
                    result.map(|r| (r, false))
                }
            }
        })
        .await;
        match outcome {
            Ok((response, true)) => replayed(response, &request_id),
            Ok((response, false)) => render(req, Ok(response)),
            Err(err) => render(req, Err(err)),
        }
    }
}

impl App {
    /// Per-merchant fairness: every POST (the writes, which hold a function longest) first
    /// counts itself against its merchant's limit for the current second (`store::rate`);
    /// past it, 429 `rate_limited` with `Retry-After`. One merchant's burst then meets its own
    /// limit instead of taking the concurrency, table capacity and route throttle the other
    /// merchants share. If the counter cannot be reached the request goes ahead (fairness,
    /// not correctness, depends on it) and the failure is logged.
    async fn admit_write(&self, merchant: &MerchantId) -> Result<(), ApiError> {
        let Some(limit) = self.merchant_write_rate_limit else {
            return Ok(());
        };
        let second = self.clock.now().unix_timestamp();
        match self.store.admit_write(merchant, second, limit).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                metrics::count(Counter::RateLimited);
                Err(ApiError::RateLimited { limit })
            }
            Err(err) => {
                tracing::warn!(merchant_id = %merchant, error = %err, "write rate counter unavailable; admitting the request");
                Ok(())
            }
        }
    }
}

/// A stored response, sent again: same status and body, `Idempotent-Replayed: true`.
fn replayed(response: ApiResponse, request_id: &str) -> Response<Body> {
    let is_problem = response.status.is_client_error() || response.status.is_server_error();
    let mut http = response.into_response(request_id);
    let headers = http.headers_mut();
    if is_problem {
        headers.insert(
            "content-type",
            lambda_http::http::HeaderValue::from_static("application/problem+json"),
        );
    }
    headers.insert(
        "idempotent-replayed",
        lambda_http::http::HeaderValue::from_static("true"),
    );
    http
}

/// Turns an outcome into the response, logging server-side failures with their cause (the
/// request id is on the log line through the invocation span; the client sees only the title).
pub fn render(req: &Request, outcome: Result<ApiResponse, ApiError>) -> Response<Body> {
    let request_id = request_id(req);
    match outcome {
        Ok(response) => response.into_response(&request_id),
        Err(err) => {
            match &err {
                ApiError::ServiceUnavailable(_) => metrics::count(Counter::ServiceUnavailable),
                ApiError::Internal(_) => metrics::count(Counter::InternalErrors),
                ApiError::IdempotencyInProgress | ApiError::IdempotencyKeyReused => {
                    metrics::count(Counter::IdempotencyConflicts)
                }
                _ => {}
            }
            if err.is_server_error() {
                tracing::error!(request_id = %request_id, code = err.code(), error = %err, "request failed");
            } else {
                tracing::info!(request_id = %request_id, code = err.code(), "request rejected");
            }
            err.to_response(&request_id)
        }
    }
}
