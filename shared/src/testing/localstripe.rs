//! A localstripe of the test's own (infra/local_stripe.py, on a free loopback port), ended when
//! the handle is dropped, plus the few calls a test makes to it directly: reading what Stripe
//! holds, and completing 3-D Secure as the customer would (`_authenticate`).

use super::workspace_root;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret key the tests use (localstripe takes any `sk_…`).
pub const TEST_SECRET_KEY: &str = "sk_test_payments_api";

pub struct Localstripe {
    child: Child,
    pub addr: SocketAddr,
}

impl Localstripe {
    /// Starts one and waits until it accepts connections. The project's venv
    /// (`make tools`) has localstripe; outside it, `python3` must.
    pub fn start() -> Self {
        let root = workspace_root();
        let venv_python = root.join(".venv/bin/python");
        let python = if venv_python.exists() {
            venv_python
        } else {
            "python3".into()
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
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
