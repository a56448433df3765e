//! What a function needs to serve requests, built once per container in `main` (never per
//! request), and the one place an operation's outcome becomes an HTTP response.

use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigError};
use crate::domain::MerchantId;
use crate::http::auth::Authenticator;
use crate::http::cursor::CursorCodec;
use crate::http::request::request_id;
use crate::http::{ApiError, ApiResponse};
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
    pub cursors: CursorCodec,
}

impl App {
    /// Wires the parts together; tests use this with their own clock and table.
    pub fn new(store: Store, clock: Arc<dyn Clock>, cursors: CursorCodec) -> Self {
        Self {
            auth: Authenticator::new(store.clone(), clock.clone()),
            store,
            processor: Arc::new(SandboxProcessor),
            clock,
            cursors,
        }
    }

    /// The production wiring: configuration from the environment, the SDK's default credential
    /// and region chain, the system clock.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let table = config::table_name()?;
        let cursor_secret = config::cursor_secret()?;
        let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_dynamodb::Client::new(&sdk_config);
        Ok(Self::new(
            Store::new(client, table),
            Arc::new(SystemClock),
            CursorCodec::new(cursor_secret),
        ))
    }

    /// Authenticates `req`, runs `operation` for the merchant, and renders the outcome.
    pub async fn respond<F, Fut>(&self, req: &Request, operation: F) -> Response<Body>
    where
        F: FnOnce(MerchantId) -> Fut,
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let outcome = match self.auth.authenticate(req.headers()).await {
            Ok(merchant) => operation(merchant).await,
            Err(err) => Err(err),
        };
        render(req, outcome)
    }
}

/// Turns an outcome into the response, logging server-side failures with their cause (the
/// request id is on the log line through the invocation span; the client sees only the title).
pub fn render(req: &Request, outcome: Result<ApiResponse, ApiError>) -> Response<Body> {
    let request_id = request_id(req);
    match outcome {
        Ok(response) => response.into_response(&request_id),
        Err(err) => {
            if err.is_server_error() {
                tracing::error!(request_id = %request_id, code = err.code(), error = %err, "request failed");
            } else {
                tracing::info!(request_id = %request_id, code = err.code(), "request rejected");
            }
            err.to_response(&request_id)
        }
    }
}
