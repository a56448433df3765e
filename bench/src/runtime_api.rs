//! The Lambda Runtime API (2018-06-01) on 127.0.0.1, as a function's bootstrap sees it on AWS:
//! `GET /runtime/invocation/next` long-polls for the next event, `POST …/{id}/response` and
//! `…/{id}/error` answer it, `POST /runtime/init/error` reports a failed init. The bench drives
//! a real bootstrap binary through it and times what happens in between.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::Receiver<(String, Bytes)>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
    init_error: Mutex<Option<String>>,
}

/// One emulator per function process.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::Sender<(String, Bytes)>,
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path
        .trim_start_matches("/2018-06-01/runtime/")
        .split('/')
        .collect();
    match (req.method().as_str(), parts.as_slice()) {
        ("GET", ["invocation", "next"]) => {
            {
                let mut first = shared.first_poll.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(Instant::now);
            }
            shared.polled.notify_waiters();
            let next = shared.events.lock().await.recv().await;
            let Some((id, event)) = next else {
                return Ok(reply(StatusCode::GONE, Bytes::new()));
            };
            let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let mut response = reply(StatusCode::OK, event);
            let headers = response.headers_mut();
            let header = |v: String| {
                v.parse()
                    .unwrap_or_else(|_| hyper::header::HeaderValue::from_static(""))
            };
            // Lambda always sends this; awslambdaric's native client crashes without it.
            headers.insert("content-type", header("application/json".to_owned()));
            headers.insert("lambda-runtime-aws-request-id", header(id));
            headers.insert(
                "lambda-runtime-deadline-ms",
                header(deadline_ms.to_string()),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                header("arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned()),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                header("Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
            );
            Ok(response)
        }
        ("POST", ["invocation", id, kind @ ("response" | "error")]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let sender = shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(*id);
            if let Some(sender) = sender {
                let outcome = if *kind == "response" {
                    Outcome::Response(body)
                } else {
                    Outcome::Error(body)
                };
                let _ = sender.send(outcome);
            }
            Ok(reply(StatusCode::ACCEPTED, Bytes::new()))
        }
        ("POST", ["init", "error"]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            *shared.init_error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(String::from_utf8_lossy(&body).into_owned());
            shared.polled.notify_waiters();
            Ok(reply(StatusCode::ACCEPTED, Bytes::new()))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
    }
}

impl RuntimeApi {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events, receiver) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(receiver),
            pending: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
            polled: Notify::new(),
            init_error: Mutex::new(None),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| route(shared.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            events,
        })
    }

    /// Waits until the function first asks for an event (its init is over) and returns when
    /// that happened; an init error or `timeout` is an error.
    pub async fn wait_for_init(&self, timeout: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.polled.notified();
            if let Some(error) = self
                .shared
                .init_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(format!("init error: {error}"));
            }
            if let Some(at) = *self
                .shared
                .first_poll
                .lock()
                .unwrap_or_else(|p| p.into_inner())
            {
                return Ok(at);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left.max(Duration::from_millis(1)), notified)
                .await
                .is_err()
            {
                return Err("the function never asked for an event".into());
            }
        }
    }

    /// Delivers one event and waits for its outcome; returns it with the round-trip time.
    pub async fn invoke(&self, event: Bytes) -> Result<(Outcome, Duration), String> {
        let id = uuid::Uuid::now_v7().to_string();
        let (sender, receiver) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), sender);
        let started = Instant::now();
        self.events
            .send((id, event))
            .await
            .map_err(|_| "runtime API closed".to_owned())?;
        let outcome = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .map_err(|_| "invocation timed out".to_owned())?
            .map_err(|_| "invocation dropped".to_owned())?;
        Ok((outcome, started.elapsed()))
    }
}
