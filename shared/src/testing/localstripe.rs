//! A localstripe of the test's own (infra/local_stripe.py, on a free loopback port), ended when
//! the handle is dropped, plus the few calls a test makes to it directly: reading what Stripe
//! holds, and completing 3-D Secure as the customer would (`_authenticate`).

use super::workspace_root;
use crate::processor::stripe::events::STRIPE_SIGNATURE_HEADER;
use crate::processor::stripe::keys::{Keys, StripeKeys};
use crate::processor::stripe::StripeProcessor;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret key the tests use (localstripe takes any `sk_…`).
pub const TEST_SECRET_KEY: &str = "sk_test_payments_api";
/// The webhook signing secret the tests register with localstripe.
pub const TEST_WEBHOOK_SECRET: &str = "whsec_payments_api_tests";

/// The keys the tests' connectors use.
pub fn test_keys() -> Keys {
    Keys::given(StripeKeys {
        secret_key: TEST_SECRET_KEY.to_owned(),
        webhook_secret: TEST_WEBHOOK_SECRET.to_owned(),
    })
}

pub struct Localstripe {
    child: Child,
    pub addr: SocketAddr,
}

impl Localstripe {
    /// Starts one and waits until it accepts connections. The project's venv
    /// (`make tools`) has localstripe; outside it, `python3` must.
    pub fn start() -> Self {
        let root = workspace_root();
        let (python, port) = super::python_and_port();
        let child = Command::new(python)
            .arg(root.join("infra/local_stripe.py"))
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe starts (make tools installs it into .venv)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "localstripe did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connector to this localstripe, with [`test_keys`].
    pub fn processor(&self) -> StripeProcessor {
        StripeProcessor::new(self.api_base(), test_keys())
    }

    /// Registers a webhook endpoint (`POST /_config/webhooks/{id}`, localstripe's own route; it
    /// answers with an empty body, hence a plain HTTP/1.0 exchange here).
    pub fn register_webhook(&self, id: &str, url: &str, secret: &str) {
        use std::io::{Read, Write};
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("url", url)
            .append_pair("secret", secret)
            .finish();
        let mut stream = TcpStream::connect(self.addr).expect("localstripe listens");
        write!(
            stream,
            "POST /_config/webhooks/{id} HTTP/1.0\r\nHost: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send the webhook configuration");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("localstripe answers");
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{answer}"
        );
    }

    /// A payment method on localstripe's 3-D Secure test card (`4000002500003155`): its
    /// intents wait in `requires_action` until `_authenticate` completes them.
    pub async fn three_d_secure_method(&self) -> String {
        let method = self
            .post(
                "/v1/payment_methods",
                "type=card&card[number]=4000002500003155&card[exp_month]=12&card[exp_year]=2030&card[cvc]=123",
            )
            .await;
        method["id"].as_str().expect("a payment method").to_owned()
    }

    /// Its PaymentIntents that carry our payment id `payment` in their metadata.
    pub async fn intents_for(&self, payment: &str) -> Vec<Value> {
        self.get("/v1/payment_intents?limit=100").await["data"]
            .as_array()
            .expect("a list")
            .iter()
            .filter(|pi| pi["metadata"]["payment_id"] == payment)
            .cloned()
            .collect()
    }

    /// `GET path` with the test key, as JSON.
    pub async fn get(&self, path: &str) -> Value {
        self.call(hyper::Method::GET, path, String::new()).await
    }

    /// `POST path` with a form body, as JSON (whatever the status).
    pub async fn post(&self, path: &str, form: &str) -> Value {
        self.call(hyper::Method::POST, path, form.to_owned()).await
    }

    async fn call(&self, method: hyper::Method, path: &str, form: String) -> Value {
        let sent = crate::processor::stripe::http::send(
            method,
            &format!("{}{path}", self.api_base()),
            TEST_SECRET_KEY,
            None,
            form,
            crate::processor::stripe::http::CALL_BUDGET,
        )
        .await
        .expect("localstripe answers");
        sent.body
    }
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The webhooks a localstripe sent ([`Localstripe::webhooks`]): each request's
/// `Stripe-Signature` and body, in the order they came.
pub struct WebhookInbox {
    received: tokio::sync::mpsc::UnboundedReceiver<(Option<String>, Vec<u8>)>,
}

impl WebhookInbox {
    /// The next webhook (localstripe sends each about a second after the change).
    pub async fn next(&mut self) -> (Option<String>, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(20), self.received.recv())
            .await
            .expect("localstripe sends its event within 20 s")
            .expect("the receiver runs")
    }
}

impl Localstripe {
    /// Registers a receiver on a free port as this localstripe's webhook endpoint, signed with
    /// [`TEST_WEBHOOK_SECRET`].
    pub async fn webhooks(&self) -> WebhookInbox {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/processor_events/stripe",
            listener.local_addr().unwrap()
        );
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let signature = req
                                    .headers()
                                    .get(STRIPE_SIGNATURE_HEADER)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                let body = req.into_body().collect().await?.to_bytes().to_vec();
                                let _ = tx.send((signature, body));
                                Ok::<_, hyper::Error>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::new()),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.register_webhook("payments", &url, TEST_WEBHOOK_SECRET);
        WebhookInbox { received }
    }
}
