//! Test support for handler tests (feature `testing`): a real local DynamoDB (Amazon's DynamoDB
//! Local, started here when none is listening), a fresh table per test, merchants with real keys, and requests built
//! from the sample API Gateway events in `events/`.
//!
//! Nothing here fakes DynamoDB: every call goes over HTTP through the real SDK client.

pub mod faults;

pub use faults::{Fault, FaultProxy, Rule};

use crate::app::App;
use crate::clock::{Clock, ManualClock};
use crate::domain::{
    Amount, CaptureMethod, Currency, Event, MerchantId, Metadata, NewPayment, Payment, PaymentId,
    Refund, Timestamp, TransitionError,
};
use crate::http::auth::NewApiKey;
use crate::http::ApiResponse;
use crate::idempotency::Commit;
use crate::lifecycle::{change_payment, Applied};
use crate::processor::{AuthorizationRequest, SandboxProcessor};
use crate::store::{client, Merchant, Store};
use aws_sdk_dynamodb::config::Credentials;
use lambda_http::{Context, Request, RequestExt};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Where tests look for the local DynamoDB; `make test` starts DynamoDB Local there.
pub const TEST_DYNAMODB_ADDR: &str = "127.0.0.1:8765";

/// The workspace root (tests read `events/`, `template.yaml`, … from it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn endpoint_addr() -> SocketAddr {
    std::env::var("PAYMENTS_TEST_DYNAMODB_ADDR")
        .unwrap_or_else(|_| TEST_DYNAMODB_ADDR.to_owned())
        .parse()
        .expect("PAYMENTS_TEST_DYNAMODB_ADDR must be host:port")
}

fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Makes sure a DynamoDB listens on the test address, starting Amazon's DynamoDB Local there
/// (`infra/dynamodb-local.sh serve`, which installs it on first use) if nothing does. Several
/// test processes may race here; a loser's server fails to bind and exits, and everyone waits
/// for the one that did.
pub fn ensure_local_dynamodb() -> SocketAddr {
    // The server is deliberately left running for the other tests of this run (other test
    // binaries find it listening); `make test` starts and stops its own, so this path is for a
    // bare `cargo test`. The handle is kept so the child is owned, not forgotten.
    static SERVER: Mutex<Option<Child>> = Mutex::new(None);
    let addr = endpoint_addr();
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if server.is_some() || is_listening(addr) {
        return addr;
    }
    let script = workspace_root().join("infra/dynamodb-local.sh");
    // Its output goes to a file: a server that outlives this process must not hold the test
    // run's stdout or stderr open (a pipe reading them would never see its end).
    let log_path = workspace_root().join(".dev/dynamodb-cargo-test.log");
    let log = std::fs::create_dir_all(workspace_root().join(".dev"))
        .and_then(|()| std::fs::File::create(&log_path))
        .unwrap_or_else(|e| panic!("could not create {} ({e})", log_path.display()));
    let child = Command::new("bash")
        .arg(&script)
        .args(["serve", &addr.port().to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {} ({e})", script.display()));
    *server = Some(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !is_listening(addr) {
        assert!(
            Instant::now() < deadline,
            "DynamoDB Local did not start listening on {addr}; see {}",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    addr
}

/// An SDK client for `endpoint` with dummy credentials, as the local stack uses.
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    client::dynamodb(client::Settings {
        region: "us-east-1".into(),
        credentials: Credentials::new("test", "test", None, None, "testing"),
        endpoint: Some(endpoint.into()),
    })
}

/// A store on the local DynamoDB whose table does not exist: every call fails (DynamoDB answers
/// `ResourceNotFoundException`), for tests of the failure paths.
pub fn store_without_table() -> Store {
    let addr = ensure_local_dynamodb();
    Store::new(
        dynamodb_client(&format!("http://{addr}")),
        "payments-test-missing-table",
    )
}

/// What a deployment has before its first request: the table, and the cursor secret the admin
/// CLI makes with the first merchant.
async fn provision(store: &Store) {
    store
        .create_table_if_missing()
        .await
        .expect("create test table");
    store
        .ensure_cursor_secret()
        .await
        .expect("make the cursor secret");
}

/// A merchant with a live API key.
#[derive(Debug, Clone)]
pub struct TestMerchant {
    pub id: MerchantId,
    pub key: String,
}

/// An [`App`] on its own fresh table, with a clock the test controls.
pub struct TestApp {
    pub app: App,
    pub clock: Arc<ManualClock>,
    /// The app's processor, to see what it was asked.
    pub sandbox: Arc<SandboxProcessor>,
}

impl TestApp {
    /// A fresh table on the local DynamoDB and an app wired to it.
    pub async fn new() -> Self {
        let addr = ensure_local_dynamodb();
        let client = dynamodb_client(&format!("http://{addr}"));
        let table = format!("payments-test-{}", uuid::Uuid::now_v7().simple());
        let store = Store::new(client, table);
        provision(&store).await;
        Self::on_store(store)
    }

    /// A fresh table, and an app whose every DynamoDB call goes through a [`FaultProxy`] to
    /// DynamoDB Local (the table is made directly, not through the proxy).
    pub async fn with_faults() -> (Self, FaultProxy) {
        let addr = ensure_local_dynamodb();
        let table = format!("payments-test-{}", uuid::Uuid::now_v7().simple());
        provision(&Store::new(
            dynamodb_client(&format!("http://{addr}")),
            table.clone(),
        ))
        .await;
        let proxy = FaultProxy::start(addr).await;
        let store = Store::new(dynamodb_client(&proxy.endpoint()), table);
        (Self::on_store(store), proxy)
    }

    /// An app on `store` as it is (e.g. a table that does not exist, to make the store fail).
    pub fn on_store(store: Store) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let mut app = App::new(store, clock.clone());
        let sandbox = Arc::new(SandboxProcessor::default());
        app.processor = sandbox.clone();
        Self {
            app,
            clock,
            sandbox,
        }
    }

    pub fn store(&self) -> &Store {
        &self.app.store
    }

    /// Creates a merchant and its first key, as `admin merchants create` does.
    pub async fn merchant(&self, name: &str) -> TestMerchant {
        let now = Clock::now(self.clock.as_ref());
        let id = MerchantId::generate(now);
        let key = NewApiKey::generate(&id, now).expect("random key");
        let merchant = Merchant {
            merchant_id: id.clone(),
            name: name.to_owned(),
            created_at: Timestamp::from_datetime(now),
        };
        self.store()
            .create_merchant(&merchant, &key.record)
            .await
            .expect("create merchant");
        TestMerchant {
            id,
            key: key.secret,
        }
    }

    /// Stores a payment for `merchant` the way `create-payment` does (payment + event in one
    /// transaction), decided by the sandbox for `payment_method`.
    pub async fn payment(
        &self,
        merchant: &TestMerchant,
        amount: i64,
        capture: CaptureMethod,
        payment_method: &str,
    ) -> Payment {
        self.payment_with(
            merchant,
            amount,
            capture,
            payment_method,
            Default::default(),
        )
        .await
    }

    /// Like [`TestApp::payment`], with `metadata`.
    pub async fn payment_with(
        &self,
        merchant: &TestMerchant,
        amount: i64,
        capture: CaptureMethod,
        payment_method: &str,
        metadata: Metadata,
    ) -> Payment {
        let request = NewPayment {
            amount: Amount::parse(amount).expect("valid amount"),
            currency: Currency::parse("USD").expect("USD"),
            payment_method: payment_method.to_owned(),
            capture_method: capture,
            description: None,
            metadata,
        };
        let now = Clock::now(self.clock.as_ref());
        let id = PaymentId::generate(now);
        let authorization = self
            .app
            .processor
            .authorize(&AuthorizationRequest {
                reference: id.to_string(),
                payment_method: payment_method.to_owned(),
                amount: request.amount,
                currency: request.currency,
            })
            .await
            .expect("sandbox token");
        let payment = Payment::create(
            id,
            request,
            authorization,
            now,
            self.app.authorization_validity,
        );
        let event = Event::status_change(&payment, now);
        self.store()
            .create_payment(&merchant.id, &payment, &event, None)
            .await
            .expect("store payment");
        payment
    }

    /// A webhook endpoint for `url` (all event types) and a new secret, not stored yet.
    pub fn new_endpoint(
        &self,
        url: &str,
    ) -> (
        crate::webhooks::endpoint::WebhookEndpoint,
        crate::webhooks::signing::SigningSecret,
    ) {
        use crate::webhooks::endpoint::{EnabledEvents, NewEndpoint, WebhookEndpoint};
        let now = Clock::now(self.clock.as_ref());
        let request = NewEndpoint {
            url: crate::webhooks::destination::WebhookUrl::parse(url, true).expect("a valid URL"),
            enabled_events: EnabledEvents::All,
            description: None,
            metadata: Metadata::default(),
        };
        let (secret, _) = crate::webhooks::signing::SigningSecret::generate().expect("randomness");
        let id = crate::domain::WebhookEndpointId::generate(now);
        (WebhookEndpoint::create(id, request, now), secret)
    }

    /// [`TestApp::new_endpoint`], stored for `merchant`.
    pub async fn stored_endpoint(
        &self,
        merchant: &TestMerchant,
        url: &str,
    ) -> (
        crate::webhooks::endpoint::WebhookEndpoint,
        crate::webhooks::signing::SigningSecret,
    ) {
        let (endpoint, secret) = self.new_endpoint(url);
        self.store()
            .create_endpoint(&merchant.id, &endpoint, &secret, None)
            .await
            .expect("store endpoint");
        (endpoint, secret)
    }

    /// Applies a change the way the handlers do (without an idempotency key) and returns it.
    pub async fn change<F>(&self, merchant: &TestMerchant, id: &PaymentId, decide: F) -> Applied
    where
        F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError>,
    {
        let render = |_: &Applied| ApiResponse::ok(Value::Null);
        let (applied, _) =
            change_payment(&self.app, &merchant.id, id, &Commit::none(), decide, render)
                .await
                .expect("change applies");
        applied
    }
}

/// Metadata at its limits (50 keys of 40 characters, values of 500), a payment item of about
/// 50 KB: a few dozen of them fill a DynamoDB page (1 MB). `salt` keeps items apart.
pub fn metadata_at_limits(salt: usize) -> Metadata {
    let entries = (0..Metadata::MAX_KEYS)
        .map(|i| {
            let key = format!("{i:02}{salt:08}")
                .chars()
                .cycle()
                .take(Metadata::MAX_KEY_CHARS)
                .collect();
            // Two-byte characters: the limits count characters, DynamoDB counts bytes.
            let value = "é".repeat(Metadata::MAX_VALUE_CHARS);
            (key, value)
        })
        .collect();
    Metadata::parse(entries).expect("metadata within its limits")
}

/// A request built from a sample event in `events/`, changed the way a test needs.
#[derive(Debug, Clone)]
pub struct TestRequest {
    event: Value,
}

/// Starts from `events/<name>.json`.
pub fn request(name: &str) -> TestRequest {
    let path = workspace_root().join("events").join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    TestRequest {
        event: serde_json::from_str(&text).expect("event is JSON"),
    }
}

impl TestRequest {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.event["headers"][name.to_ascii_lowercase()] = Value::from(value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        if let Some(headers) = self.event["headers"].as_object_mut() {
            headers.remove(&name.to_ascii_lowercase());
        }
        self
    }

    pub fn bearer(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .raw_body(&body.to_string())
    }

    /// Any body text; the content type is left as it is.
    pub fn raw_body(mut self, body: &str) -> Self {
        self.event["body"] = Value::from(body);
        self.event["isBase64Encoded"] = Value::from(false);
        self
    }

    /// The `{id}` path parameter, and the raw path with it.
    pub fn path_id(mut self, id: &str) -> Self {
        let template = self.event["routeKey"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let path = template
            .split_once(' ')
            .map(|(_, p)| p)
            .unwrap_or_default()
            .replace("{id}", id);
        self.event["pathParameters"] = serde_json::json!({ "id": id });
        self.event["rawPath"] = Value::from(path.clone());
        self.event["requestContext"]["http"]["path"] = Value::from(path);
        self
    }

    /// The raw query string (`limit=20&status=failed`), as API Gateway passes it.
    pub fn query(mut self, raw: &str) -> Self {
        self.event["rawQueryString"] = Value::from(raw);
        self.event["queryStringParameters"] = serde_json::json!({});
        self
    }

    /// The request as `lambda_http` hands it to a handler, with a Lambda context.
    pub fn build(self) -> Request {
        let mut context = Context::default();
        context.request_id = uuid::Uuid::now_v7().to_string();
        lambda_http::request::from_str(&self.event.to_string())
            .expect("event parses as an API Gateway request")
            .with_lambda_context(context)
    }
}

/// Fails unless a 5xx problem body is the plain problem (no extra members) and says nothing
/// internal: no error text of the SDK, DynamoDB or ours, no table name.
pub fn assert_reveals_nothing(body: &Value) {
    let text = body.to_string();
    for leak in [
        "Exception",
        "dynamodb",
        "DynamoDB",
        "payments-test",
        "datastore",
        "timeout",
        "dispatch",
    ] {
        assert!(!text.contains(leak), "5xx body says {leak:?}: {text}");
    }
    let members: Vec<&str> = body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        members,
        ["code", "detail", "request_id", "status", "title", "type"],
        "{text}"
    );
}

/// The status, headers and JSON body of a response, for assertions.
pub fn parts(response: &lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let body = response.body().as_ref();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).expect("response body is JSON")
    };
    (response.status().as_u16(), json)
}
