//! What one DynamoDB call costs in CPU through the SDK, against the same request signed and sent
//! without it: the measurement behind "what dominates" a warm invoke in bench/RESULTS.md.
//!
//! Both paths send the same consistent `GetItem` of one payment to the local DynamoDB, in one
//! process, interleaved round by round:
//! - **sdk**: the functions' own client (`shared::store::client::dynamodb`: rustls, env
//!   credentials, stalled-stream protection for downloads), typed output;
//! - **bare**: the same JSON body, signed with `aws-sigv4` (what the SDK signs with;
//!   `shared::aws_json`) and sent on
//!   hyper-util's pooled client (what the SDK's HTTP client is built on), the answer parsed into a
//!   `serde_json::Value`. No retries, no error model, no interceptors: the SDK's per-call
//!   machinery is what the difference measures.
//!
//! CPU is the process's on-CPU time from `/proc/self/task/*/schedstat` (nanoseconds), so the
//! wait for DynamoDB does not count. Timing lives here, never in tests. Run it with a local
//! DynamoDB on `PAYMENTS_TEST_DYNAMODB_ADDR` (it starts DynamoDB Local when none
//! listens; `make tools` first):
//! `cargo run --release -p payments-bench --example sdk_overhead`.

use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use shared::domain::CaptureMethod;
use shared::testing::{dynamodb_client, ensure_local_dynamodb, TestApp};

/// Rounds of `CALLS` calls per path; the paths alternate round by round.
const ROUNDS: usize = 10;
const CALLS: usize = 200;
/// The partition and sort key names of the table (shared/src/store/keys.rs).
const PK: &str = "PK";
const SK: &str = "SK";

/// Nanoseconds this process has spent on a CPU, all threads.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The `GetItem` both paths send.
struct Target {
    endpoint: String,
    table: String,
    pk: String,
}

/// The SDK path: the functions' client and its typed output.
async fn via_sdk(client: &aws_sdk_dynamodb::Client, target: &Target) -> String {
    let output = client
        .get_item()
        .table_name(&target.table)
        .key(PK, AttributeValue::S(target.pk.clone()))
        .key(SK, AttributeValue::S("PAYMENT".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem through the SDK");
    let item = output.item.expect("the payment exists");
    item[PK].as_s().expect("PK is a string").clone()
}

/// The bare path: the same request, signed and sent by hand.
struct Bare {
    http: Client<HttpConnector, Full<Bytes>>,
    identity: Identity,
}

impl Bare {
    fn new() -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            identity: Credentials::new("test", "test", None, None, "bench").into(),
        }
    }

    async fn call(&self, target: &Target) -> String {
        let body = json!({
            "TableName": target.table,
            "Key": { PK: { "S": target.pk }, SK: { "S": "PAYMENT" } },
            "ConsistentRead": true,
        })
        .to_string();
        let call = shared::aws_json::Call {
            endpoint: &target.endpoint,
            region: "us-east-1",
            service: "dynamodb",
            target: "DynamoDB_20120810.GetItem",
            content_type: "application/x-amz-json-1.0",
        };
        let request =
            shared::aws_json::signed_request(&call, body, &self.identity).expect("signed request");
        let response = self.http.request(request).await.expect("bare GetItem");
        assert!(response.status().is_success(), "{}", response.status());
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).expect("JSON answer");
        answer["Item"][PK]["S"]
            .as_str()
            .expect("the payment exists")
            .to_owned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let app = TestApp::new().await;
    let merchant = app.merchant("bench").await;
    let payment = app
        .payment(&merchant, 2500, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let endpoint = format!("http://{}", ensure_local_dynamodb());
    let target = Target {
        table: app.store().table().to_owned(),
        pk: format!("MERCHANT#{}#PAYMENT#{}", merchant.id, payment.id),
        endpoint,
    };
    let sdk = dynamodb_client(&target.endpoint);
    let bare = Bare::new();

    // Both paths read the same item, and their first calls (connections, first-use code) are
    // not counted.
    assert_eq!(via_sdk(&sdk, &target).await, target.pk);
    assert_eq!(bare.call(&target).await, target.pk);

    let (mut sdk_ns, mut bare_ns) = (0, 0);
    for _ in 0..ROUNDS {
        let start = cpu_ns();
        for _ in 0..CALLS {
            std::hint::black_box(via_sdk(&sdk, &target).await);
        }
        sdk_ns += cpu_ns() - start;
        let start = cpu_ns();
        for _ in 0..CALLS {
            std::hint::black_box(bare.call(&target).await);
        }
        bare_ns += cpu_ns() - start;
    }
    let per_call = |ns: u64| ns as f64 / 1000.0 / (ROUNDS * CALLS) as f64;
    let (sdk_us, bare_us) = (per_call(sdk_ns), per_call(bare_ns));
    println!("CPU per GetItem, {} calls per path:", ROUNDS * CALLS);
    println!("  through the SDK:  {sdk_us:.0} µs");
    println!("  bare signed call: {bare_us:.0} µs");
    println!(
        "  the SDK's per-call machinery: {:.0} µs ({:.0} % of the SDK call)",
        sdk_us - bare_us,
        (sdk_us - bare_us) / sdk_us * 100.0
    );
}
