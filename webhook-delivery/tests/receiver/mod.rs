//! A webhook receiver on 127.0.0.1 for the tests: records every request it gets and answers
//! each with the next status of a script (200 once the script is used up), or, with
//! `hang_next`, holds a request open without answering (an attempt that never completes).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    script: VecDeque<u16>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<State>>,
    pub url: String,
}

impl Receiver {
    /// A receiver answering `script`'s statuses in turn, then 200.
    pub async fn start(script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (id, timestamp, signature, content_type) = (
                                header("webhook-id"),
                                header("webhook-timestamp"),
                                header("webhook-signature"),
                                header("content-type"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = {
                                let mut state = state.lock().unwrap();
                                state.received.push(Received {
                                    id,
                                    timestamp,
                                    signature,
                                    content_type,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                state.script.pop_front().unwrap_or(200)
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { state, url }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}
