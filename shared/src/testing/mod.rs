//! Test support for handler tests (feature `testing`): a real local DynamoDB (Amazon's DynamoDB
//! Local: the test run's own, or one this process starts for itself), a fresh table per test that
//! is deleted when the test ends, merchants with real keys, and requests built from the sample
//! API Gateway events in `events/`.
//!
//! Nothing here fakes DynamoDB: every call goes over HTTP through the real SDK client.

pub mod faults;
pub mod local_secrets;
pub mod localstripe;
pub mod processor_faults;

pub use faults::{Fault, FaultProxy, Rule};
pub use processor_faults::{Call, FaultyProcessor, ProcessorFault};

use crate::app::App;
use crate::clock::{Clock, ManualClock};
use crate::domain::{
    Amount, CaptureMethod, Currency, Event, MerchantId, Metadata, NewPayment, Payment, PaymentId,
    ProcessorRef, Refund, Timestamp, TransitionError,
};
use crate::http::auth::NewApiKey;
use crate::http::ApiResponse;
use crate::idempotency::Commit;
use crate::lifecycle::{change_payment, Applied};
use crate::processor::{AuthorizationRequest, SandboxProcessor};
use crate::store::{client, Authorizing, Merchant, Store};
use aws_sdk_dynamodb::config::Credentials;
use lambda_http::{Context, Request, RequestExt};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The variable that names the DynamoDB Local a test run owns (`make test` sets it).
pub const TEST_DYNAMODB_ADDR_VAR: &str = "PAYMENTS_TEST_DYNAMODB_ADDR";

/// The workspace root (tests read `events/`, `template.yaml`, … from it): the nearest folder
/// above the package being tested (`CARGO_MANIFEST_DIR`, which `cargo test` sets when it runs a
/// test) or above the current folder whose Cargo.toml holds `[workspace]`.
///
/// Found at run time, not with `env!`: cargo does not rebuild a crate when only its folder moved
/// (rust-lang/cargo#8693), so a path compiled in would name whichever checkout built `shared`
/// first, e.g. an earlier CI clone whose build the cache kept (infra/ci_sources.py).
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("[workspace]"))
        })
        .map(PathBuf::from)
        .unwrap_or(start)
}

fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The address of the DynamoDB Local this test process uses.
///
/// Under `make test` that is the one the run started and owns (`PAYMENTS_TEST_DYNAMODB_ADDR`),
/// shared by every test binary and stopped when the run ends. A bare `cargo test` has none: the
/// first call in each test process starts DynamoDB Local on a free port of its own, which stops
/// itself once this process has ended (`infra/dynamodb-local.sh serve --until-pid`), so no
/// server outlives the run and no test ever meets tables an earlier run left behind.
pub fn ensure_local_dynamodb() -> SocketAddr {
    static SERVER: Mutex<Option<SocketAddr>> = Mutex::new(None);
    let mut server = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(addr) = *server {
        return addr;
    }
    let addr = match std::env::var(TEST_DYNAMODB_ADDR_VAR) {
        Ok(addr) => {
            let addr: SocketAddr = addr
                .parse()
                .unwrap_or_else(|_| panic!("{TEST_DYNAMODB_ADDR_VAR} must be host:port"));
            // The run's own server: never start another in its place.
            assert!(
                wait_listening(addr, Duration::from_secs(60)),
                "nothing listens on {addr} ({TEST_DYNAMODB_ADDR_VAR}); `make test` starts it"
            );
            addr
        }
        Err(_) => start_own_local_dynamodb(),
    };
    *server = Some(addr);
    addr
}

fn wait_listening(addr: SocketAddr, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while !is_listening(addr) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Starts DynamoDB Local on a free loopback port, for this process alone.
fn start_own_local_dynamodb() -> SocketAddr {
    // The OS picks a port nothing uses; it is free again when the probe is dropped, and Java
    // binds it a moment later (another process taking it in between would fail the start).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free loopback port");
    let script = workspace_root().join("infra/dynamodb-local.sh");
    // Its output goes to a file: the server must not hold the test run's stdout or stderr open.
    let log_path = workspace_root().join(format!(".dev/dynamodb-cargo-test-{}.log", addr.port()));
    let log = std::fs::create_dir_all(workspace_root().join(".dev"))
        .and_then(|()| std::fs::File::create(&log_path))
        .unwrap_or_else(|e| panic!("could not create {} ({e})", log_path.display()));
    let child: Child = Command::new("bash")
        .arg(&script)
        .args(["serve", &addr.port().to_string(), "--until-pid"])
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {} ({e})", script.display()));
    // The server stops by itself when this process ends; its handle is not needed for that.
    drop(child);
    assert!(
        wait_listening(addr, Duration::from_secs(120)),
        "DynamoDB Local did not start listening on {addr}; see {}",
        log_path.display()
    );
    addr
}

/// A table made for one test, deleted when the test drops it: DynamoDB Local keeps every table
/// in memory, and thousands of leftover tables slowed it down until time budgets ran out.
#[derive(Debug)]
pub struct TestTable {
    addr: SocketAddr,
    name: String,
}

impl TestTable {
    /// A new empty table from the shared definition (`store::schema::TABLE`).
    pub async fn create() -> Self {
        Self::create_named(format!("payments-test-{}", uuid::Uuid::now_v7().simple())).await
    }

    /// A new table named `name`, deleted on drop.
    pub async fn create_named(name: String) -> Self {
        let addr = ensure_local_dynamodb();
        let table = Self { addr, name };
        let created = crate::store::schema::create_table_if_missing(&table.client(), &table.name)
            .await
            .expect("create test table");
        assert!(created, "test table {} existed already", table.name);
        table
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client straight to DynamoDB Local (not through any fault proxy).
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        dynamodb_client(&format!("http://{}", self.addr))
    }

    /// A store on this table, straight to DynamoDB Local.
    pub fn store(&self) -> Store {
        Store::new(self.client(), self.name.clone())
    }
}

impl Drop for TestTable {
    fn drop(&mut self) {
        let (addr, name) = (self.addr, std::mem::take(&mut self.name));
        // Drop runs inside the test's runtime, which must not block on I/O it drives itself: the
        // delete runs on a thread and runtime of its own, with a client of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                dynamodb_client(&format!("http://{addr}"))
                    .delete_table()
                    .table_name(&name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        format!(
                            "{name}: {}",
                            aws_sdk_dynamodb::error::DisplayErrorContext(e)
                        )
                    })
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not delete test table {e}"),
            Err(_) => eprintln!("deleting a test table panicked"),
        }
    }
}

/// The time budget of tests that are not about the budget: DynamoDB Local on a loaded two-core
/// machine (other test binaries, `yes` beside the run) can take seconds to answer a call that
/// takes milliseconds when it is idle, and `client::TIME_BUDGET` would then turn a slow answer
/// into a 503 the test did not ask for. Nothing in such a test waits this long unless it hangs.
pub const TEST_TIME_BUDGET: client::TimeBudget = client::TimeBudget {
    connect: Duration::from_secs(10),
    attempt: Duration::from_secs(30),
    max_attempts: 3,
    initial_backoff: Duration::from_millis(25),
    max_backoff: Duration::from_millis(250),
    operation: Duration::from_secs(60),
};

/// How long a test's request may run ([`crate::app::App::request_deadline`]), for the same
/// reason: longer than any call within [`TEST_TIME_BUDGET`] takes on a loaded machine.
pub const TEST_REQUEST_DEADLINE: Duration = Duration::from_secs(120);

fn settings(endpoint: &str) -> client::Settings {
    client::Settings {
        region: "us-east-1".into(),
        credentials: Credentials::new("test", "test", None, None, "testing"),
        endpoint: Some(endpoint.into()),
    }
}

/// An SDK client for `endpoint` with dummy credentials, as the local stack uses, within
/// [`TEST_TIME_BUDGET`].
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    client::dynamodb_within(settings(endpoint), &TEST_TIME_BUDGET)
}

/// An SDK client for `endpoint` within the functions' own budget (`client::TIME_BUDGET`): for
/// the fault tests, which check what that budget does with a slow, hung or refusing DynamoDB.
pub fn dynamodb_client_as_deployed(endpoint: &str) -> aws_sdk_dynamodb::Client {
    client::dynamodb(settings(endpoint))
}

/// Writes `items` as they are (raw, 25 to a batch): items in an older version's shape, for the
/// upgrade test and the migration bench.
pub async fn put_items(
    store: &Store,
    items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>],
) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in items.chunks(25) {
        let writes = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .expect("an item");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let out = store
            .client()
            .batch_write_item()
            .request_items(store.table(), writes)
            .send()
            .await
            .expect("batch write");
        assert!(
            out.unprocessed_items.unwrap_or_default().is_empty(),
            "DynamoDB Local left items unwritten"
        );
    }
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

/// What a deployment has before its first request besides the table: the secrets the admin CLI
/// makes with the first merchant.
async fn provision(store: &Store) {
    store
        .ensure_secrets()
        .await
        .expect("make the deployment secrets");
}

/// The project's Python (`.venv`, which `make tools` fills) and a free loopback port, for a
/// local server a test starts of its own (localstripe, the local Secrets Manager).
pub(crate) fn python_and_port() -> (PathBuf, u16) {
    let venv_python = workspace_root().join(".venv/bin/python");
    let python = if venv_python.exists() {
        venv_python
    } else {
        "python3".into()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    (python, port)
}

/// What the create path sends the processor for `request` as payment `id`.
fn authorization_call(
    merchant: &TestMerchant,
    id: &PaymentId,
    request: &NewPayment,
) -> AuthorizationRequest {
    AuthorizationRequest {
        payment: id.clone(),
        merchant: merchant.id.clone(),
        payment_method: request.payment_method.clone(),
        amount: request.amount,
        currency: request.currency,
        capture_method: request.capture_method,
        return_url: request.return_url.clone(),
        api_base: "http://127.0.0.1:9000".to_owned(),
    }
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
    /// The table this app made, deleted when the app is dropped (none for [`TestApp::on_store`]).
    _table: Option<TestTable>,
}

impl TestApp {
    /// A fresh table on the local DynamoDB and an app wired to it.
    pub async fn new() -> Self {
        let table = TestTable::create().await;
        let store = table.store();
        provision(&store).await;
        Self::on_table(store, table)
    }

    /// A fresh table, and an app whose every DynamoDB call goes through a [`FaultProxy`] to
    /// DynamoDB Local (the table is made directly, not through the proxy). The app's client and
    /// request deadline are the deployed ones (`client::TIME_BUDGET`, `App::new`'s deadline):
    /// what the fault tests check is what they do with an injected delay, hang or refusal.
    pub async fn with_faults() -> (Self, FaultProxy) {
        let table = TestTable::create().await;
        provision(&table.store()).await;
        let proxy = FaultProxy::start(ensure_local_dynamodb()).await;
        let store = Store::new(dynamodb_client_as_deployed(&proxy.endpoint()), table.name());
        let mut app = Self::on_store(store);
        app._table = Some(table);
        (app, proxy)
    }

    /// An app on `table` whose waits fit a loaded machine ([`TEST_TIME_BUDGET`],
    /// [`TEST_REQUEST_DEADLINE`]).
    fn on_table(store: Store, table: TestTable) -> Self {
        let mut app = Self::on_store(store);
        app.app.request_deadline = TEST_REQUEST_DEADLINE;
        app._table = Some(table);
        app
    }

    /// An app on `store` as it is (e.g. a table that does not exist, to make the store fail).
    pub fn on_store(store: Store) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let mut app = App::new(store.clone(), clock.clone());
        let sandbox = Arc::new(SandboxProcessor::new(store.clone()));
        app.processor = sandbox.clone();
        Self {
            app,
            clock,
            sandbox,
            _table: None,
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

    /// The types of the merchant's payment's events, oldest first (its audit trail).
    pub async fn event_types(&self, merchant: &TestMerchant, payment: &PaymentId) -> Vec<String> {
        self.store()
            .list_events(&merchant.id, payment, 100, None)
            .await
            .expect("list events")
            .items
            .iter()
            .map(|event| event.event_type.as_str().to_owned())
            .collect()
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
            return_url: None,
        };
        let now = Clock::now(self.clock.as_ref());
        let id = PaymentId::generate(now);
        let call = authorization_call(merchant, &id, &request);
        let processor = &self.app.processor;
        // As the create path does: a created reference is stored before the authorization.
        let in_flight = processor.creates_references();
        let reference = if in_flight {
            self.authorization_in_flight(merchant, &id, request.clone(), false)
                .await
                .reference
        } else {
            processor.prepare(&call).await.expect("a reference")
        };
        let outcome = processor
            .authorize(&call, &reference)
            .await
            .expect("a known payment method");
        let payment = Payment::create(
            id,
            request,
            ProcessorRef::new(processor.name(), reference),
            outcome,
            now,
            &self.app.deadlines(),
        );
        let event = Event::status_change(&payment, now);
        self.store()
            .create_payment(&merchant.id, &payment, &event, in_flight, None)
            .await
            .expect("store payment");
        payment
    }

    /// What a create did before its function died, on a processor that creates its references
    /// (Stripe): the reference prepared and stored (`store::authorizing`) for payment `id`, and,
    /// when `confirmed`, the authorization made under it. Answers the stored record.
    pub async fn authorization_in_flight(
        &self,
        merchant: &TestMerchant,
        id: &PaymentId,
        request: NewPayment,
        confirmed: bool,
    ) -> Authorizing {
        let call = authorization_call(merchant, id, &request);
        let processor = &self.app.processor;
        assert!(
            processor.creates_references(),
            "only these store references"
        );
        let reference = processor.prepare(&call).await.expect("prepared");
        let record = Authorizing {
            id: id.clone(),
            merchant_id: merchant.id.clone(),
            processor: processor.name(),
            reference: reference.clone(),
            request,
            created_at: Timestamp::from_datetime(Clock::now(self.clock.as_ref())),
        };
        let stored = self
            .store()
            .record_authorizing(&record)
            .await
            .expect("stored");
        if confirmed {
            processor
                .authorize(&call, &reference)
                .await
                .expect("confirmed");
        }
        stored
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

    /// A new payment of `merchant` (automatic capture, so its first event is
    /// payment.succeeded) and that event's delivery to `endpoint`, created as the relay does:
    /// pending, due now.
    pub async fn new_delivery(
        &self,
        merchant: &TestMerchant,
        endpoint: &crate::domain::WebhookEndpointId,
    ) -> crate::webhooks::delivery::Delivery {
        let p = self
            .payment(
                merchant,
                1000,
                crate::domain::CaptureMethod::Automatic,
                "pm_card_visa",
            )
            .await;
        let event = self
            .store()
            .list_events(&merchant.id, &p.id, 1, None)
            .await
            .expect("list events")
            .items
            .remove(0);
        let now = Clock::now(self.clock.as_ref());
        let delivery = crate::webhooks::delivery::Delivery::new(&event, endpoint, now);
        assert!(self
            .store()
            .create_delivery(&merchant.id, &delivery, (&p.id, 1))
            .await
            .expect("create delivery"));
        delivery
    }

    /// One attempt of the delivery made by hand as the dispatcher makes it (claimed, then the
    /// `answer` recorded under the claim, now); returns the delivery after it.
    pub async fn attempt_by_hand(
        &self,
        merchant: &TestMerchant,
        delivery: &crate::webhooks::delivery::Delivery,
        answer: crate::webhooks::delivery::Answer,
    ) -> crate::webhooks::delivery::Delivery {
        let record = self
            .store()
            .get_delivery(&merchant.id, &delivery.endpoint_id, &delivery.id)
            .await
            .expect("read delivery")
            .expect("the delivery");
        let now = Clock::now(self.clock.as_ref());
        let claim = crate::store::Claim {
            token: uuid::Uuid::now_v7().to_string(),
            until: crate::domain::Timestamp::from_datetime(now),
        };
        assert!(self
            .store()
            .claim_delivery(&record, &claim)
            .await
            .expect("claim"));
        let after = record.delivery.after_attempt(answer, now);
        self.store()
            .record_attempt(&record, &after, &claim)
            .await
            .expect("record the attempt");
        after
    }

    /// Applies a change the way the handlers do (without an idempotency key) and returns it.
    pub async fn change<F>(&self, merchant: &TestMerchant, id: &PaymentId, decide: F) -> Applied
    where
        F: Fn(&Payment, OffsetDateTime) -> Result<(Payment, Option<Refund>), TransitionError>
            + Sync,
    {
        let render = |_: &Applied| ApiResponse::ok(Value::Null);
        let (applied, _) =
            change_payment(&self.app, &merchant.id, id, &Commit::none(), decide, render)
                .await
                .expect("change applies");
        applied
    }

    /// Reserves a refund of `amount` of the merchant's payment, as create-refund does before it
    /// calls the processor (the refund `pending`, `payment.refunded`).
    pub async fn reserve_refund(
        &self,
        merchant: &TestMerchant,
        id: &PaymentId,
        amount: i64,
    ) -> Applied {
        let deadlines = self.app.deadlines();
        self.change(merchant, id, |payment: &Payment, now| {
            let request = crate::domain::RefundRequest {
                amount: Some(Amount::parse(amount).expect("valid amount")),
                ..Default::default()
            };
            let refund_id = crate::domain::RefundId::generate(now);
            payment
                .refund(refund_id, request, now, &deadlines)
                .map(|(p, r)| (p, Some(r)))
        })
        .await
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
    pub fn path_id(self, id: &str) -> Self {
        self.path_param("id", id)
    }

    /// The path parameter `name` (`{name}` in the route), and the raw path with it (and with
    /// the other parameters set so far, or the sample event's).
    pub fn path_param(mut self, name: &str, value: &str) -> Self {
        if !self.event["pathParameters"].is_object() {
            self.event["pathParameters"] = serde_json::json!({});
        }
        self.event["pathParameters"][name] = Value::from(value);
        let template = self.event["routeKey"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut path = template
            .split_once(' ')
            .map(|(_, p)| p)
            .unwrap_or_default()
            .to_owned();
        if let Some(params) = self.event["pathParameters"].as_object() {
            for (param, value) in params {
                path = path.replace(&format!("{{{param}}}"), value.as_str().unwrap_or_default());
            }
        }
        self.event["rawPath"] = Value::from(path.clone());
        self.event["requestContext"]["http"]["path"] = Value::from(path);
        self
    }

    /// The request's method (the sample event's route and method stay as they are otherwise).
    pub fn method(mut self, method: &str) -> Self {
        self.event["requestContext"]["http"]["method"] = Value::from(method);
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
