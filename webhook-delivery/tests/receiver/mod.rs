//! A webhook receiver on 127.0.0.1 for the tests: records every request it gets and answers
//! each with the next status of a script (200 once the script is used up). Two hostile kinds
//! beside it: [`Receiver::holding`] holds every request open until [`Receiver::release`] (a
//! slow endpoint; it counts how many it held at once), and [`Receiver::endless`] answers 200
//! with a body that never ends (it counts the bytes it managed to send).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scripted,
    Holding,
    Endless,
}

#[derive(Default)]
struct State {
    script: VecDeque<u16>,
    received: Vec<Received>,
    /// Requests held open now, and the most at once ([`Kind::Holding`]).
    open: usize,
    most_open: usize,
}

#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<State>>,
    release: Arc<watch::Sender<bool>>,
    /// Body bytes handed to the connection ([`Kind::Endless`]).
    sent: Arc<AtomicU64>,
    /// Connections that have ended (the client hung up, or the answer was complete).
    closed: Arc<AtomicU64>,
    pub url: String,
}

/// The endless answer's chunk, and where it stops if nobody hangs up (1 GiB).
const CHUNK: usize = 64 * 1024;
const ENDLESS_LIMIT: u64 = 1 << 30;

impl Receiver {
    /// A receiver answering `script`'s statuses in turn, then 200.
    pub async fn start(script: &[u16]) -> Self {
        Self::serve(Kind::Scripted, script).await
    }

    /// A receiver that holds every request without answering until [`Receiver::release`],
    /// then answers 200.
    pub async fn holding() -> Self {
        Self::serve(Kind::Holding, &[]).await
    }

    /// A receiver that answers 200 and a body without end.
    pub async fn endless() -> Self {
        Self::serve(Kind::Endless, &[]).await
    }

    async fn serve(kind: Kind, script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let receiver = Self {
            state: Arc::new(Mutex::new(State {
                script: script.iter().copied().collect(),
                ..State::default()
            })),
            release: Arc::new(watch::channel(false).0),
            sent: Arc::new(AtomicU64::new(0)),
            closed: Arc::new(AtomicU64::new(0)),
            url,
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let receiver = serving.clone();
                let closed = serving.closed.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.answer(kind, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        receiver
    }

    async fn answer(
        &self,
        kind: Kind,
        req: Request<hyper::body::Incoming>,
    ) -> Response<BoxBody<Bytes, Infallible>> {
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
            let mut state = self.state.lock().unwrap();
            state.received.push(Received {
                id,
                timestamp,
                signature,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            if kind == Kind::Holding {
                state.open += 1;
                state.most_open = state.most_open.max(state.open);
            }
            state.script.pop_front().unwrap_or(200)
        };
        if kind == Kind::Holding {
            let mut released = self.release.subscribe();
            let _ = released.wait_for(|r| *r).await;
            self.state.lock().unwrap().open -= 1;
        }
        let body = match kind {
            Kind::Endless => Endless {
                sent: self.sent.clone(),
            }
            .boxed(),
            _ => Full::new(Bytes::from_static(b"ok")).boxed(),
        };
        Response::builder().status(status).body(body).unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests held open now ([`Receiver::holding`]).
    pub fn open(&self) -> usize {
        self.state.lock().unwrap().open
    }

    /// The most requests held open at once ([`Receiver::holding`]).
    pub fn most_open(&self) -> usize {
        self.state.lock().unwrap().most_open
    }

    /// Answers every request held, and every later one at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    /// Body bytes of endless answers handed to the connections ([`Receiver::endless`]).
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Connections that have ended: for an endless answer, only by the client hanging up (or
    /// at the 1 GiB stop, which `sent_bytes` shows).
    pub fn closed_connections(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A body of `x`s that goes on until the client hangs up (or [`ENDLESS_LIMIT`]).
struct Endless {
    sent: Arc<AtomicU64>,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static DATA: [u8; CHUNK] = [b'x'; CHUNK];
        if self.sent.fetch_add(CHUNK as u64, Ordering::SeqCst) >= ENDLESS_LIMIT {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&DATA)))))
    }
}
