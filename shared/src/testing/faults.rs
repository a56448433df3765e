//! Fault injection between the real SDK client and the real DynamoDB Local: a small HTTP proxy
//! that forwards every call and, where a test asks, fails it the ways DynamoDB can fail
//! (../shared/DESIGN.md, "Faults"). Nothing here imitates DynamoDB's logic: a call is either
//! forwarded to DynamoDB Local untouched or not forwarded at all; only the *answer* is changed.
//!
//! ```text
//! SDK client ──HTTP──▶ FaultProxy (127.0.0.1:random) ──HTTP──▶ DynamoDB Local
//! ```
//!
//! A [`Rule`] picks calls by DynamoDB operation (`X-Amz-Target`) and, optionally, by a piece of
//! the request body (say, a key's sort key), for a number of calls or for good. The same proxy
//! stands between the Stripe connector and localstripe; there a call is named by method and path
//! (`http_operation`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How a call fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward the call (it commits), then close the connection without an answer: a lost
    /// response, as a reset or a client-side time-out looks.
    DropResponse,
    /// Forward the call (it commits), then answer 500 `InternalServerError`.
    ErrorAfterCommit,
    /// Do not forward; answer 400 `ThrottlingException`.
    Throttle,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Do not forward and never answer: the connection stays open and silent.
    Hang,
    /// Do not forward; close the connection at once.
    Refuse,
    /// Do not forward; answer as DynamoDB does when another transaction holds one of the items:
    /// a transaction is canceled with reason `TransactionConflict`, a single-item write fails
    /// with `TransactionConflictException`. (DynamoDB Local runs transactions one after another
    /// and so never answers this itself.)
    TransactionConflict,
}

/// Which calls a fault applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    operation: String,
    body_contains: Option<String>,
    fault: Fault,
    remaining: Option<usize>,
}

impl Rule {
    /// Every call of `operation` (`"TransactWriteItems"`, `"GetItem"`, …; `"*"` for any).
    pub fn on(operation: &str, fault: Fault) -> Self {
        Self {
            operation: operation.to_owned(),
            body_contains: None,
            fault,
            remaining: None,
        }
    }

    /// Only calls whose JSON body contains `text` (e.g. `"EVENT#"`, a sort key's prefix).
    pub fn when_body_contains(mut self, text: &str) -> Self {
        self.body_contains = Some(text.to_owned());
        self
    }

    /// Only the next `n` matching calls; then the rule is spent.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, operation: &str, body: &[u8]) -> bool {
        (self.operation == "*" || self.operation == operation)
            && self.remaining != Some(0)
            && self.body_contains.as_ref().is_none_or(|text| {
                body.windows(text.len().max(1))
                    .any(|window| window == text.as_bytes())
            })
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    /// Calls received per operation, faulted or not.
    received: Mutex<HashMap<String, usize>>,
    /// Calls a fault was applied to, per operation.
    faulted: Mutex<HashMap<String, usize>>,
    /// Every call's operation and JSON body, in arrival order (what a test asserts the shape of).
    bodies: Mutex<Vec<(String, serde_json::Value)>>,
    refuse_connections: AtomicBool,
}

/// A running proxy; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

/// How long a hung call stays silent before the proxy lets the connection go (far beyond any
/// client time-out; it only keeps a forgotten test from holding a socket for ever).
const HANG_FOR: Duration = Duration::from_secs(120);

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if accepting.refuse_connections.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let state = accepting.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(state, upstream, req).await }
                    });
                    // An error here is the point of most faults (a connection closed unanswered).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// The endpoint URL for an SDK client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule; the first matching rule decides a call.
    pub fn inject(&self, rule: Rule) {
        lock(&self.state.rules).push(rule);
    }

    /// Removes every rule: from now on every call is forwarded and answered.
    pub fn heal(&self) {
        lock(&self.state.rules).clear();
        self.state.refuse_connections.store(false, Ordering::SeqCst);
    }

    /// DynamoDB unreachable: closes every new connection as soon as it is accepted, and every
    /// open one at its next call, forwarding nothing.
    pub fn refuse_connections(&self) {
        self.state.refuse_connections.store(true, Ordering::SeqCst);
    }

    /// Calls of `operation` received so far.
    pub fn received(&self, operation: &str) -> usize {
        lock(&self.state.received)
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// The JSON bodies of the `operation` calls received so far, in order.
    pub fn requests(&self, operation: &str) -> Vec<serde_json::Value> {
        lock(&self.state.bodies)
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The operation of every call received so far, in order.
    pub fn operations(&self) -> Vec<String> {
        lock(&self.state.bodies)
            .iter()
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// Calls of `operation` a fault was applied to so far.
    pub fn faulted(&self, operation: &str) -> usize {
        lock(&self.state.faulted)
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the proxy closed a connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("fault injected: connection closed without an answer")]
struct Closed;

async fn handle(
    state: Arc<State>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Closed> {
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.rsplit('.').next())
        .map(str::to_owned)
        .unwrap_or_else(|| http_operation(req.method(), req.uri().path()));
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Closed)?.to_bytes();
    *lock(&state.received).entry(operation.clone()).or_default() += 1;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    lock(&state.bodies).push((operation.clone(), json));
    // Unreachable: a connection the client had kept open is closed on its next call too.
    if state.refuse_connections.load(Ordering::SeqCst) {
        return Err(Closed);
    }
    let fault = {
        let mut rules = lock(&state.rules);
        rules
            .iter_mut()
            .find(|rule| rule.matches(&operation, &body))
            .map(|rule| {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                rule.fault.clone()
            })
    };
    if fault.is_some() {
        *lock(&state.faulted).entry(operation.clone()).or_default() += 1;
    }
    let request = Request::from_parts(parts, Full::new(body.clone()));
    match fault {
        None => forward(upstream, request).await,
        Some(Fault::DropResponse) => {
            forward(upstream, request).await?;
            Err(Closed)
        }
        Some(Fault::ErrorAfterCommit) => {
            forward(upstream, request).await?;
            Ok(dynamodb_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
            ))
        }
        Some(Fault::Throttle) => Ok(dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        )),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward(upstream, request).await
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG_FOR).await;
            Err(Closed)
        }
        Some(Fault::Refuse) => Err(Closed),
        Some(Fault::TransactionConflict) => Ok(conflict(&operation, &body)),
    }
}

/// A call that is not DynamoDB's (the Stripe connector's, to localstripe) is named by method and
/// path, with each id segment (`pi_…`, `re_…`) as `{id}`: `POST /v1/payment_intents/{id}/confirm`.
fn http_operation(method: &hyper::Method, path: &str) -> String {
    let path: Vec<&str> = path
        .split('/')
        .map(|segment| match segment.split_once('_') {
            Some((prefix, rest)) if !prefix.is_empty() && !rest.is_empty() && prefix.len() <= 5 => {
                "{id}"
            }
            _ => segment,
        })
        .collect();
    format!("{method} {}", path.join("/"))
}

/// Sends the call to DynamoDB Local on a connection of its own and returns its answer whole.
async fn forward(
    upstream: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Closed> {
    let stream = TcpStream::connect(upstream).await.map_err(|_| Closed)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Closed)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|_| Closed)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Closed)?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// DynamoDB's answer to a call that met another transaction on one of its items: for a
/// transaction, one cancellation reason per item, `TransactionConflict` on the last (the
/// idempotency record, or the event: what a concurrent writer would hold).
fn conflict(operation: &str, body: &[u8]) -> Response<Full<Bytes>> {
    if operation != "TransactWriteItems" {
        return dynamodb_error(
            StatusCode::BAD_REQUEST,
            "TransactionConflictException",
            "Transaction is ongoing for the item",
        );
    }
    let items = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1);
    let mut reasons = vec![serde_json::json!({"Code": "None"}); items.saturating_sub(1)];
    reasons.push(serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}));
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": reasons,
    });
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// An error answer as DynamoDB writes it (the SDK reads the code after `#`).
fn dynamodb_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
        "message": message,
    });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
