//! `make bench`: cold start, first and warm invoke latency, CPU per invoke, peak memory and
//! zipped size of each function, measured against a no-op Rust Lambda (the floor) and a Python
//! peer (boto3 under awslambdaric), in one run, interleaved, on this machine.
//!
//! Each function is the real release `bootstrap` binary, started as Lambda starts it: a fresh
//! process whose only way in is the Runtime API (`runtime_api`) on 127.0.0.1, with Lambda's
//! environment variables, against the local DynamoDB. Usage (the Makefile passes these):
//! `payments-bench <release-dir> <zip-dir> <python> <results.md>`.

mod process;
mod runtime_api;

use bytes::Bytes;
use process::Launch;
use runtime_api::{Outcome, RuntimeApi};
use serde_json::{json, Value};
use shared::domain::CaptureMethod;
use shared::testing::{TestApp, TestMerchant};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Cold starts per function (the issue asks for at least 20).
const COLD_STARTS: usize = 20;
/// Warm invocations per function, in one process.
const WARM_INVOKES: usize = 1000;
/// Warm invocations a subject gets before the next subject's turn (see `warm_phase`).
const WARM_BLOCK: usize = 50;

/// One thing to measure.
struct Subject {
    name: String,
    launch: Launch,
    /// The event every invocation receives.
    event: Bytes,
    zip: Option<PathBuf>,
    /// A native binary of ours (its init instructions are counted; the Python peer's are not).
    native: bool,
    /// Whether it is invoked: the functions below [`INIT_ONLY`] are started and timed to their
    /// first `GET /next` only.
    invoked: bool,
}

/// The functions measured for init only (wall clock and instructions), so that every deployed
/// function is held to the init budget; the subjects above are also invoked.
const INIT_ONLY: [&str; 17] = [
    "capture-payment",
    "cancel-payment",
    "create-refund",
    "list-refunds",
    "list-merchant-events",
    "get-event",
    "create-webhook-endpoint",
    "list-webhook-endpoints",
    "get-webhook-endpoint",
    "update-webhook-endpoint",
    "delete-webhook-endpoint",
    "rotate-webhook-secret",
    "expire-authorizations",
    "list-webhook-deliveries",
    "resend-webhook-delivery",
    "create-webhook-replay",
    "get-webhook-replay",
];

#[derive(Default)]
struct Samples {
    init: Vec<Duration>,
    first_invoke: Vec<Duration>,
    warm: Vec<Duration>,
    cpu_per_warm_invoke: Option<Duration>,
    peak_rss_kib: u64,
    /// Instructions from process start to the first `GET /next` (callgrind), if counted.
    init_instructions: Option<u64>,
    errors: Vec<String>,
}

/// What the table's provisioned-concurrency row is, under it.
const PROVISIONED_NOTE: &str = "get-payment (provisioned) is the same binary started with `AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`: its init also opens the DynamoDB connection (`App::warm_up`), which Lambda then runs ahead of traffic, so the init target is about on-demand starts; its first invoke is what that buys.\n";

/// The floor's name; every ratio is to it.
const FLOOR: &str = "noop (floor)";

/// The subjects `make bench` knows, in the order rounds start them.
#[derive(Clone, Copy)]
enum Kind {
    Floor,
    Health,
    CreatePayment,
    /// create-payment with the per-merchant write guard off: what the guard's UpdateItem costs.
    CreatePaymentUnguarded,
    GetPayment,
    ListPayments,
    ListEvents,
    /// get-payment as Lambda starts it under provisioned concurrency: init warms the DynamoDB
    /// connection, so its first-invoke figure shows what that buys.
    GetPaymentProvisioned,
    PythonCreatePayment,
    PythonGetPayment,
    /// The delivery path (issue 13): its own HTTP client is built in init.
    RelayWebhookEvents,
    RetryWebhookDeliveries,
}

enum Program {
    /// A release binary of this workspace.
    Rust(&'static str),
    /// A handler of the Python peer (bench/python/peer.py).
    Python(&'static str),
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::Floor,
        Kind::Health,
        Kind::CreatePayment,
        Kind::CreatePaymentUnguarded,
        Kind::GetPayment,
        Kind::ListPayments,
        Kind::ListEvents,
        Kind::GetPaymentProvisioned,
        Kind::PythonCreatePayment,
        Kind::PythonGetPayment,
        Kind::RelayWebhookEvents,
        Kind::RetryWebhookDeliveries,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Floor => FLOOR,
            Kind::Health => "health",
            Kind::CreatePayment => "create-payment",
            Kind::CreatePaymentUnguarded => "create-payment (no write guard)",
            Kind::GetPayment => "get-payment",
            Kind::ListPayments => "list-payments",
            Kind::ListEvents => "list-events",
            Kind::GetPaymentProvisioned => "get-payment (provisioned)",
            Kind::PythonCreatePayment => "python create-payment",
            Kind::PythonGetPayment => "python get-payment",
            Kind::RelayWebhookEvents => "relay-webhook-events",
            Kind::RetryWebhookDeliveries => "retry-webhook-deliveries",
        }
    }

    fn program(self) -> Program {
        match self {
            Kind::Floor => Program::Rust("bench-noop"),
            Kind::Health => Program::Rust("health"),
            Kind::CreatePayment | Kind::CreatePaymentUnguarded => Program::Rust("create-payment"),
            Kind::GetPayment | Kind::GetPaymentProvisioned => Program::Rust("get-payment"),
            Kind::ListPayments => Program::Rust("list-payments"),
            Kind::ListEvents => Program::Rust("list-events"),
            Kind::PythonCreatePayment => Program::Python("peer.create_payment"),
            Kind::PythonGetPayment => Program::Python("peer.get_payment"),
            Kind::RelayWebhookEvents => Program::Rust("relay-webhook-events"),
            Kind::RetryWebhookDeliveries => Program::Rust("retry-webhook-deliveries"),
        }
    }

    /// `MERCHANT_WRITE_RATE_LIMIT`: high enough never to refuse, or 0 (off).
    fn write_rate_limit(self) -> &'static str {
        match self {
            Kind::CreatePaymentUnguarded => "0",
            _ => "100000",
        }
    }

    /// `AWS_LAMBDA_INITIALIZATION_TYPE`, as Lambda sets it.
    fn initialization_type(self) -> &'static str {
        match self {
            Kind::GetPaymentProvisioned => "provisioned-concurrency",
            _ => "on-demand",
        }
    }

    /// The event every invocation of this subject receives.
    fn event(self, fixture: &Fixture) -> Value {
        let key = &fixture.merchant.key;
        let payment = Some(fixture.payment.as_str());
        match self {
            Kind::Floor => json!({}),
            Kind::Health => api_event("health", key, None),
            Kind::CreatePayment | Kind::CreatePaymentUnguarded | Kind::PythonCreatePayment => {
                api_event("create-payment", key, None)
            }
            Kind::GetPayment | Kind::GetPaymentProvisioned | Kind::PythonGetPayment => {
                api_event("get-payment", key, payment)
            }
            Kind::ListPayments => api_event("list-payments", key, None),
            Kind::ListEvents => api_event("list-events", key, payment),
            // A stream batch of one event of a merchant without endpoints (one Query), and a
            // retry pass over an empty index (16 Queries).
            Kind::RelayWebhookEvents => sample_event("relay-webhook-events"),
            Kind::RetryWebhookDeliveries => sample_event("retry-webhook-deliveries"),
        }
    }
}

/// `BENCH_ONLY=noop,get-payment,…` runs a subset (the floor is always needed); unset runs all.
fn selected(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) if !only.is_empty() => {
            name == FLOOR || only.split(',').any(|wanted| name == wanted.trim())
        }
        _ => true,
    }
}

/// The data a subject's invocations work on: its own table, a merchant, a payment to read.
struct Fixture {
    _app: TestApp,
    table: String,
    merchant: TestMerchant,
    payment: String,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::new().await;
        let merchant = app.merchant("bench").await;
        let payment = app
            .payment(&merchant, 2500, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        Self {
            table: app.store().table().to_owned(),
            payment: payment.id.as_str().to_owned(),
            merchant,
            _app: app,
        }
    }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn event_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// A sample event from `events/` as it is.
fn sample_event(name: &str) -> Value {
    let path = shared::testing::workspace_root()
        .join("events")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("sample event")).expect("sample JSON")
}

/// An API Gateway v2 event from `events/`, with the merchant's key and an id filled in.
fn api_event(name: &str, key: &str, path_id: Option<&str>) -> Value {
    let mut event: Value = {
        let path = shared::testing::workspace_root()
            .join("events")
            .join(format!("{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("event file"))
            .expect("event JSON")
    };
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    if let Some(id) = path_id {
        let route = event["routeKey"].as_str().unwrap_or_default().to_owned();
        let path = route
            .split_once(' ')
            .map(|(_, p)| p)
            .unwrap_or_default()
            .replace("{id}", id);
        event["pathParameters"] = json!({ "id": id });
        event["rawPath"] = json!(path.clone());
        event["requestContext"]["http"]["path"] = json!(path);
    }
    event
}

fn base_env(kind: Kind, table: &str, endpoint: &str) -> Vec<(String, String)> {
    lambda_env(
        kind.name(),
        kind.initialization_type(),
        kind.write_rate_limit(),
        table,
        endpoint,
    )
}

/// The environment Lambda (and template.yaml) gives a function.
fn lambda_env(
    name: &str,
    initialization_type: &str,
    write_rate_limit: &str,
    table: &str,
    endpoint: &str,
) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", initialization_type),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
        ("TABLE_NAME", table),
        ("FUNCTION_TIMEOUT_SECONDS", "10"),
        // The per-merchant write guard stays on (its UpdateItem is part of every POST's cost)
        // but never refuses: the warm phase sends one merchant's creates far above 100/s.
        ("MERCHANT_WRITE_RATE_LIMIT", write_rate_limit),
        ("RUST_LOG", "info"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An API Gateway response must be a success, or we would be timing an error path.
fn check(outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Error(body) => Err(format!("invoke failed: {}", String::from_utf8_lossy(body))),
        Outcome::Response(body) => {
            let status = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("statusCode").and_then(Value::as_u64));
            match status {
                Some(code) if code >= 400 => Err(format!(
                    "answered {code}: {}",
                    String::from_utf8_lossy(body)
                )),
                _ => Ok(()),
            }
        }
    }
}

/// A started function process and the Runtime API it polls.
struct Running {
    api: RuntimeApi,
    child: tokio::process::Child,
    pid: u32,
}

/// Starts a subject's process; returns it with its init time (process start until its first
/// `GET /next`).
async fn start(subject: &Subject) -> Result<(Running, Duration), String> {
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = subject
        .launch
        .spawn(&api.addr.to_string())
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id().ok_or("no pid")?;
    let initialized = api.wait_for_init(Duration::from_secs(30)).await?;
    Ok((Running { api, child, pid }, initialized - started))
}

/// One invocation, timed; an error answer fails it.
async fn invoke(subject: &Subject, running: &Running) -> Result<Duration, String> {
    let (outcome, took) = running.api.invoke(subject.event.clone()).await?;
    check(&outcome)?;
    Ok(took)
}

/// Records a subject's failure (its figures are then left out of the ratios) and says so.
fn fail(samples: &mut BTreeMap<String, Samples>, subject: &Subject, error: String) {
    eprintln!("{}: {error}", subject.name);
    samples
        .entry(subject.name.clone())
        .or_default()
        .errors
        .push(error);
}

/// One cold start: start the process, time its init and first invoke, read its memory, stop it.
async fn cold_start(subject: &Subject, samples: &mut Samples) -> Result<(), String> {
    let (mut running, init) = start(subject).await?;
    samples.init.push(init);
    if subject.invoked {
        samples.first_invoke.push(invoke(subject, &running).await?);
    }
    samples.peak_rss_kib = samples
        .peak_rss_kib
        .max(process::peak_rss_kib(running.pid).unwrap_or(0));
    let _ = running.child.kill().await;
    Ok(())
}

/// The warm phase: one process per subject, all alive together, invoked in blocks of
/// `WARM_BLOCK` in turn until each has had `WARM_INVOKES`. Interleaving matters for the CPU
/// ratios: on a shared machine a neighbour's burst lands on every subject a little rather than
/// on whichever one happened to be running, as it did when each subject ran its 1000 in a row.
async fn warm_phase(subjects: &[&Subject], samples: &mut BTreeMap<String, Samples>) {
    // Started and invoked once, untimed: the cold-start rounds time those.
    let mut running: Vec<Option<Running>> = Vec::new();
    for subject in subjects {
        let started = async {
            let (r, _) = start(subject).await?;
            invoke(subject, &r).await?;
            Ok::<_, String>(r)
        }
        .await;
        running.push(started.map_err(|error| fail(samples, subject, error)).ok());
    }
    let mut cpu: Vec<Duration> = vec![Duration::ZERO; subjects.len()];
    for block in 0..WARM_INVOKES / WARM_BLOCK {
        eprintln!("warm block {}/{}", block + 1, WARM_INVOKES / WARM_BLOCK);
        for (i, subject) in subjects.iter().enumerate() {
            let Some(r) = &running[i] else { continue };
            let entry = samples.get_mut(&subject.name).expect("entry made above");
            let before = process::cpu_time(r.pid).unwrap_or_default();
            let mut failed = false;
            for _ in 0..WARM_BLOCK {
                match invoke(subject, r).await {
                    Ok(took) => entry.warm.push(took),
                    Err(error) => {
                        fail(samples, subject, error);
                        failed = true;
                        break;
                    }
                }
            }
            cpu[i] += process::cpu_time(r.pid)
                .unwrap_or_default()
                .saturating_sub(before);
            // A subject that failed is out of the ratios; stop it rather than let every later
            // block wait out its time-out again.
            if failed {
                if let Some(mut r) = running[i].take() {
                    let _ = r.child.kill().await;
                }
            }
        }
    }
    for (i, subject) in subjects.iter().enumerate() {
        let Some(mut r) = running[i].take() else {
            continue;
        };
        let entry = samples.get_mut(&subject.name).expect("entry made above");
        if entry.errors.is_empty() && !entry.warm.is_empty() {
            entry.cpu_per_warm_invoke = Some(cpu[i] / entry.warm.len() as u32);
        }
        entry.peak_rss_kib = entry
            .peak_rss_kib
            .max(process::peak_rss_kib(r.pid).unwrap_or(0));
        let _ = r.child.kill().await;
    }
}

/// The deterministic init measure: each native subject started once more, under callgrind, and
/// stopped (SIGTERM, on which callgrind writes its counts) once it polls `GET /next`. The count
/// covers everything the process ran until then, the dynamic loader included, the same for the
/// floor; it repeats to within a few dozen instructions whatever else the machine is doing.
async fn count_init_instructions(subjects: &[Subject], samples: &mut BTreeMap<String, Samples>) {
    for subject in subjects.iter().filter(|s| s.native) {
        eprintln!("callgrind: {}", subject.name);
        match init_instructions(subject).await {
            Ok(count) => {
                samples
                    .entry(subject.name.clone())
                    .or_default()
                    .init_instructions = Some(count)
            }
            Err(error) => fail(samples, subject, format!("callgrind: {error}")),
        }
    }
}

async fn init_instructions(subject: &Subject) -> Result<u64, String> {
    let out = std::env::temp_dir().join(format!(
        "payments-bench-callgrind-{}-{}.out",
        std::process::id(),
        subject
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let mut args = vec![
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
        // Only the totals are read: no per-function or per-line detail to write.
        "--dump-instr=no".to_owned(),
        "--compress-strings=no".to_owned(),
        "--".to_owned(),
        subject.launch.program.display().to_string(),
    ];
    args.extend(subject.launch.args.iter().cloned());
    let launch = Launch {
        program: PathBuf::from("valgrind"),
        args,
        cwd: subject.launch.cwd.clone(),
        env: subject.launch.env.clone(),
    };
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut child = launch
        .spawn(&api.addr.to_string())
        .map_err(|e| format!("spawn valgrind (is it installed?): {e}"))?;
    let pid = child.id().ok_or("no pid")?;
    // Valgrind runs the binary some 50 times slower; init still takes well under a minute.
    let waited = api.wait_for_init(Duration::from_secs(120)).await;
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = child.wait().await;
    waited?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    // `summary: N` (or `totals: N`) is the Ir count of the whole run.
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no instruction total in {}", out.display()))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// A percentile in ms, or `-` where nothing was measured (an init-only subject's invokes).
fn ms_or_dash(samples: &[Duration], p: f64) -> String {
    if samples.is_empty() {
        "-".into()
    } else {
        ms(percentile(samples, p))
    }
}

fn zip_size(path: &Option<PathBuf>) -> Option<u64> {
    path.as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {memory}, x86_64 Linux (the functions run natively; zips are arm64)"
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, release_dir, zip_dir, python, results] = args.as_slice() else {
        eprintln!("usage: payments-bench <release-dir> <zip-dir> <python> <results.md>");
        std::process::exit(2);
    };
    let (release_dir, zip_dir) = (Path::new(release_dir), Path::new(zip_dir));

    let endpoint = format!("http://{}", shared::testing::ensure_local_dynamodb());
    let peer_dir = shared::testing::workspace_root().join("bench/python");
    let mut subjects = Vec::new();
    // Each fixture owns its table, which is deleted when the fixture is dropped: they all live
    // until the run is over.
    let mut fixtures = Vec::new();
    for kind in Kind::ALL {
        if !selected(kind.name()) {
            continue;
        }
        // Each subject gets its own table, so what it costs does not depend on who ran before
        // it: list-payments would otherwise page through create-payment's thousand payments.
        let fixture = Fixture::new().await;
        let env = base_env(kind, &fixture.table, &endpoint);
        let event = event_bytes(&kind.event(&fixture));
        fixtures.push(fixture);
        let subject = match kind.program() {
            Program::Rust(binary) => Subject {
                name: kind.name().to_owned(),
                launch: Launch {
                    program: release_dir.join(binary),
                    args: vec![],
                    cwd: None,
                    env,
                },
                event,
                zip: (binary != "bench-noop").then(|| zip_dir.join(format!("{binary}.zip"))),
                native: true,
                invoked: true,
            },
            Program::Python(handler) => Subject {
                name: kind.name().to_owned(),
                launch: Launch {
                    program: PathBuf::from(python),
                    args: vec!["-m".into(), "awslambdaric".into(), handler.into()],
                    cwd: Some(peer_dir.clone()),
                    env: {
                        let mut env = env;
                        let root = peer_dir.display().to_string();
                        env.push(("PYTHONPATH".into(), root.clone()));
                        env.push(("LAMBDA_TASK_ROOT".into(), root));
                        env.push(("_HANDLER".into(), handler.into()));
                        env
                    },
                },
                event,
                zip: None,
                native: false,
                invoked: true,
            },
        };
        subjects.push(subject);
    }
    for binary in INIT_ONLY.into_iter().filter(|name| selected(name)) {
        // Init reads no item; the table is only named, as the template names it.
        let env = lambda_env(
            binary,
            "on-demand",
            "100000",
            "payments-bench-init",
            &endpoint,
        );
        subjects.push(Subject {
            name: binary.to_owned(),
            launch: Launch {
                program: release_dir.join(binary),
                args: vec![],
                cwd: None,
                env,
            },
            event: Bytes::new(),
            zip: Some(zip_dir.join(format!("{binary}.zip"))),
            native: true,
            invoked: false,
        });
    }
    if !subjects.iter().any(|s| s.name == FLOOR) {
        eprintln!("the floor ({FLOOR}) must be among the subjects: ratios are to it");
        std::process::exit(2);
    }

    // Interleaved: every round starts each subject once, so drift in the machine's load spreads
    // over all of them instead of landing on one.
    let mut samples: BTreeMap<String, Samples> = BTreeMap::new();
    for round in 0..COLD_STARTS {
        eprintln!("round {}/{COLD_STARTS}", round + 1);
        for subject in &subjects {
            let entry = samples.entry(subject.name.clone()).or_default();
            if let Err(error) = cold_start(subject, entry).await {
                fail(&mut samples, subject, error);
            }
        }
    }
    let invoked: Vec<&Subject> = subjects.iter().filter(|s| s.invoked).collect();
    warm_phase(&invoked, &mut samples).await;
    count_init_instructions(&subjects, &mut samples).await;

    let floor_init = percentile(&samples[FLOOR].init, 50.0);
    let floor_cpu = samples[FLOOR].cpu_per_warm_invoke.unwrap_or_default();
    let mut table_md = String::from(
        "| function | init p50 ms | init p90 ms | init × floor | init instructions | instructions × floor | first invoke p50 ms | warm p50 ms | warm p99 ms | CPU/warm invoke µs | peak RSS MiB | arm64 zip bytes |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let floor_instructions = samples[FLOOR].init_instructions;
    for subject in &subjects {
        let s = &samples[&subject.name];
        let init = percentile(&s.init, 50.0);
        table_md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
            subject.name,
            ms(init),
            ms(percentile(&s.init, 90.0)),
            init.as_secs_f64() / floor_init.as_secs_f64().max(1e-9),
            s.init_instructions
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            match (s.init_instructions, floor_instructions) {
                (Some(n), Some(floor)) if floor > 0 => format!("{:.2}", n as f64 / floor as f64),
                _ => "-".into(),
            },
            ms_or_dash(&s.first_invoke, 50.0),
            ms_or_dash(&s.warm, 50.0),
            ms_or_dash(&s.warm, 99.0),
            s.cpu_per_warm_invoke
                .map(|d| d.as_micros().to_string())
                .unwrap_or_else(|| "-".into()),
            s.peak_rss_kib as f64 / 1024.0,
            zip_size(&subject.zip)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    let ratio = |ours: &str, peer: &str, pick: &dyn Fn(&Samples) -> f64| -> String {
        let (o, p) = (pick(&samples[ours]), pick(&samples[peer]));
        if o > 0.0 && p > 0.0 {
            format!("{:.1}×", p / o)
        } else {
            "n/a (not measured: see errors)".into()
        }
    };
    let init_of = |s: &Samples| percentile(&s.init, 50.0).as_secs_f64();
    let cpu_of = |s: &Samples| s.cpu_per_warm_invoke.unwrap_or_default().as_secs_f64();
    let mut ratios = String::new();
    for (ours, peer) in [
        ("create-payment", "python create-payment"),
        ("get-payment", "python get-payment"),
    ] {
        if !(samples.contains_key(ours) && samples.contains_key(peer)) {
            continue;
        }
        ratios.push_str(&format!(
            "- {ours}: Python peer's init is {} ours; its CPU per warm invoke is {} ours.\n",
            ratio(ours, peer, &init_of),
            ratio(ours, peer, &cpu_of)
        ));
    }
    let errors: Vec<String> = samples
        .iter()
        .flat_map(|(name, s)| s.errors.iter().map(move |e| format!("- {name}: {e}")))
        .collect();
    let report = format!(
        "## Latest run\n\nMachine: {}\nRun: {} cold starts per function (interleaved); {} warm invokes per function in one process, all functions' processes alive together and invoked in turn, {} at a time; CPU is user + system time from /proc (10 ms ticks, so per-invoke CPU is the total over the {} invokes divided by them); floor init p50 {} ms, floor CPU/invoke {} µs. Init instructions: one start of each native binary under callgrind (valgrind), counted from process start to its first `GET /next`; unlike the times they do not move with the machine's load, and the 1.5 × init budget is judged on their ratio. Rows without invoke figures are functions started for init only (every deployed function is measured).\n\n{}\n{}\n{}\n{}",
        machine(),
        COLD_STARTS,
        WARM_INVOKES,
        WARM_BLOCK,
        WARM_INVOKES,
        ms(floor_init),
        floor_cpu.as_micros(),
        table_md,
        ratios,
        PROVISIONED_NOTE,
        if errors.is_empty() { String::new() } else { format!("\nErrors:\n{}\n", errors.join("\n")) },
    );
    println!("{report}");
    if let Err(e) = write_between_markers(Path::new(results), &report) {
        eprintln!("could not write {results}: {e}");
    }
}

const BEGIN: &str = "<!-- bench:begin (written by make bench) -->";
const END: &str = "<!-- bench:end -->";

/// Replaces the generated part of `results`, keeping what people wrote around it (the reading of
/// the figures, before/after): a rerun refreshes the table without erasing the analysis.
fn write_between_markers(results: &Path, report: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(results).unwrap_or_default();
    let generated = format!("{BEGIN}\n{report}\n{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{generated}{}", &old[..begin], &old[end + END.len()..])
        }
        // No markers yet: keep whatever the file holds and add the section after it.
        _ => format!("{old}{generated}\n"),
    };
    std::fs::write(results, new)
}
