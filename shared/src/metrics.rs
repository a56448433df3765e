//! Business and reliability metrics, as CloudWatch Embedded Metric Format: at the end of every
//! invocation, one JSON line on stdout that CloudWatch Logs turns into metrics. No network
//! call, no agent, nothing at init.
//!
//! How it works: [`measured`] runs an invocation with a fresh [`Invocation`] in a task-local;
//! the code that knows something happened records it with [`count`], [`payment`] or
//! [`refund`] (a no-op outside an invocation, e.g. in handler tests), and [`measured`] writes
//! the document when the invocation ends. Lambda runs one invocation at a time per container,
//! and a task-local also keeps tests that run handlers at once apart.
//!
//! Why not `metrics_cloudwatch_embedded` (../shared/DESIGN.md names it): it writes one
//! document per distinct label set, so an invocation that records a payment by outcome and
//! currency and a DynamoDB retry writes two or more lines, and each document carries a single
//! dimension set, so a payment could not be counted both per currency and in total. Here one
//! document holds several metric directives over the same root values (the EMF specification
//! allows that), which is what one line per invocation needs, and it costs a few hundred lines
//! of `serde_json` the functions link anyway instead of the `metrics` facade and its registry.
//!
//! What is emitted (namespace [`NAMESPACE`]; every metric also has the `Function` dimension,
//! the Lambda function's name):
//!
//! | metric | dimensions | recorded by |
//! |---|---|---|
//! | `ColdStart` (0 or 1, every invocation) | `Function` | [`measured`] |
//! | the [`Counter`]s, when non-zero | `Function` | where they happen |
//! | `Payments`, `PaymentAmount` (minor units) | `Function, Outcome, Currency`; `Payments` also `Function, Outcome` | create, capture, cancel |
//! | `Refunds`, `RefundAmount` (minor units) | `Function, Currency` | create-refund |
//! | `OldestUnknownOutcomeSeconds` | `Function` | reconcile-payments ([`unknown_outcome_age`]) |
//! | `OldestDueDeliverySeconds` | `Function` | retry-webhook-deliveries ([`due_delivery_age`]) |
//!
//! `Outcome` is the payment's status after the operation (`succeeded`, `requires_capture`,
//! `failed` for a decline, `canceled`).

use crate::domain::{Currency, Payment, Refund};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The CloudWatch namespace of every metric here.
pub const NAMESPACE: &str = "PaymentsApi";

/// Things counted per invocation, each a metric of its own name (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// A DynamoDB call attempted again by the SDK (throttling, 500, a lost answer).
    DynamoDbRetries,
    /// A request answered 503 `service_unavailable` (DynamoDB unreachable, or the deadline).
    ServiceUnavailable,
    /// A request answered 500 `internal_error`.
    InternalErrors,
    /// A keyed POST answered from its stored response.
    IdempotencyReplays,
    /// A keyed POST refused: its key is in progress (409) or was used for another request (422).
    IdempotencyConflicts,
    /// A change whose conditional write found the payment changed (or held) by another
    /// request, and so was decided again.
    LostRaces,
    /// A POST refused 429: its merchant had started its limit of writes in that second.
    RateLimited,
    /// An authorization canceled by the expiry sweep.
    Expirations,
    /// A webhook POST made (first attempt or retry).
    WebhookAttempts,
    /// A webhook POST answered 2xx.
    WebhookAttemptsSucceeded,
    /// A webhook POST answered otherwise, or not at all.
    WebhookAttemptsFailed,
    /// A delivery given up without an attempt (endpoint disabled or deleted).
    WebhookDeliveriesAbandoned,
    /// A delivery that used up its attempts and is now `failed`.
    WebhookDeliveriesFailed,
    /// A `processing` payment settled by reconciliation (its processor's lookup).
    Reconciled,
    /// A reconciliation lookup that learnt nothing final; asked again later.
    ReconcileDeferred,
    /// A due webhook delivery left for a later pass: its endpoint or its merchant had its
    /// limit of attempts in flight (`webhook_delivery::retry`, isolation).
    WebhookAttemptsDeferred,
    /// A timer index entry that did not decode: skipped, its shard read on (a poison entry).
    TimerIndexPoison,
}

impl Counter {
    pub const ALL: [Counter; 17] = [
        Counter::DynamoDbRetries,
        Counter::ServiceUnavailable,
        Counter::InternalErrors,
        Counter::IdempotencyReplays,
        Counter::IdempotencyConflicts,
        Counter::LostRaces,
        Counter::RateLimited,
        Counter::Expirations,
        Counter::WebhookAttempts,
        Counter::WebhookAttemptsSucceeded,
        Counter::WebhookAttemptsFailed,
        Counter::WebhookDeliveriesAbandoned,
        Counter::WebhookDeliveriesFailed,
        Counter::Reconciled,
        Counter::ReconcileDeferred,
        Counter::WebhookAttemptsDeferred,
        Counter::TimerIndexPoison,
    ];

    /// The metric's name (what alarms and dashboards refer to).
    pub fn name(self) -> &'static str {
        match self {
            Counter::DynamoDbRetries => "DynamoDbRetries",
            Counter::ServiceUnavailable => "ServiceUnavailable",
            Counter::InternalErrors => "InternalErrors",
            Counter::IdempotencyReplays => "IdempotencyReplays",
            Counter::IdempotencyConflicts => "IdempotencyConflicts",
            Counter::LostRaces => "LostRaces",
            Counter::RateLimited => "RateLimited",
            Counter::Expirations => "Expirations",
            Counter::WebhookAttempts => "WebhookAttempts",
            Counter::WebhookAttemptsSucceeded => "WebhookAttemptsSucceeded",
            Counter::WebhookAttemptsFailed => "WebhookAttemptsFailed",
            Counter::WebhookDeliveriesAbandoned => "WebhookDeliveriesAbandoned",
            Counter::WebhookDeliveriesFailed => "WebhookDeliveriesFailed",
            Counter::Reconciled => "Reconciled",
            Counter::ReconcileDeferred => "ReconcileDeferred",
            Counter::WebhookAttemptsDeferred => "WebhookAttemptsDeferred",
            Counter::TimerIndexPoison => "TimerIndexPoison",
        }
    }
}

/// A payment an operation produced: its status after, currency and amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMetric {
    pub outcome: &'static str,
    pub currency: Currency,
    pub amount: i64,
}

/// A refund an operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundMetric {
    pub currency: Currency,
    pub amount: i64,
}

/// What one invocation recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    pub cold_start: bool,
    pub counts: BTreeMap<Counter, u64>,
    pub payment: Option<PaymentMetric>,
    pub refund: Option<RefundMetric>,
    /// The age of the oldest payment whose outcome reconciliation still does not know.
    pub oldest_unknown_seconds: Option<u64>,
    /// How long the oldest due webhook delivery the dispatcher saw had been due.
    pub oldest_due_delivery_seconds: Option<u64>,
}

tokio::task_local! {
    static CURRENT: RefCell<Invocation>;
}

/// The first invocation of a container is its cold start.
static WARM: AtomicBool = AtomicBool::new(false);

fn record(change: impl FnOnce(&mut Invocation)) {
    // Outside an invocation (handler tests, init) there is nothing to record into.
    let _ = CURRENT.try_with(|current| change(&mut current.borrow_mut()));
}

/// Counts one `counter` in the current invocation.
pub fn count(counter: Counter) {
    add(counter, 1);
}

/// Counts `n` of `counter` in the current invocation.
pub fn add(counter: Counter, n: u64) {
    if n > 0 {
        record(|current| *current.counts.entry(counter).or_default() += n);
    }
}

/// Records the payment the current invocation created or changed.
pub fn payment(payment: &Payment) {
    let metric = PaymentMetric {
        outcome: payment.status.as_str(),
        currency: payment.currency,
        amount: payment.amount.minor_units(),
    };
    record(|current| current.payment = Some(metric));
}

/// Records the refund the current invocation made.
pub fn refund(refund: &Refund) {
    let metric = RefundMetric {
        currency: refund.currency,
        amount: refund.amount.minor_units(),
    };
    record(|current| current.refund = Some(metric));
}

/// Records that a payment's outcome has been unknown for `seconds` (reconciliation): the
/// invocation reports the largest, `OldestUnknownOutcomeSeconds`, which an alarm watches.
pub fn unknown_outcome_age(seconds: u64) {
    record(|current| {
        current.oldest_unknown_seconds =
            Some(current.oldest_unknown_seconds.unwrap_or(0).max(seconds));
    });
}

/// Records that a webhook delivery has been due for `seconds` (the dispatcher, per pass): the
/// invocation reports the largest, `OldestDueDeliverySeconds`, which an alarm watches (how far
/// the delivery path is behind).
pub fn due_delivery_age(seconds: u64) {
    record(|current| {
        current.oldest_due_delivery_seconds = Some(
            current
                .oldest_due_delivery_seconds
                .unwrap_or(0)
                .max(seconds),
        );
    });
}

/// Runs `work` as one invocation and returns what it recorded beside its output.
pub async fn measure<F: Future>(work: F) -> (F::Output, Invocation) {
    let fresh = Invocation {
        cold_start: !WARM.swap(true, Ordering::Relaxed),
        ..Invocation::default()
    };
    CURRENT
        .scope(RefCell::new(fresh), async {
            let output = work.await;
            (output, CURRENT.with(RefCell::take))
        })
        .await
}

/// Runs `work`, a part of the current invocation that runs as a task of its own (a task-local
/// does not follow `tokio::spawn`), and returns what it recorded: the spawning task adds it
/// to its invocation with [`absorb`] when the part ends.
pub async fn detached<F: Future>(work: F) -> (F::Output, Invocation) {
    CURRENT
        .scope(RefCell::new(Invocation::default()), async {
            let output = work.await;
            (output, CURRENT.with(RefCell::take))
        })
        .await
}

/// Adds what a [`detached`] part recorded to the current invocation: its counts, and the larger
/// of each age.
pub fn absorb(part: &Invocation) {
    for (counter, n) in &part.counts {
        add(*counter, *n);
    }
    if let Some(seconds) = part.oldest_unknown_seconds {
        unknown_outcome_age(seconds);
    }
    if let Some(seconds) = part.oldest_due_delivery_seconds {
        due_delivery_age(seconds);
    }
}

/// Runs `work` as one invocation and writes its metric document to stdout (one line).
pub async fn measured<F: Future>(request_id: String, work: F) -> F::Output {
    // Boxed: a sweep's future inside the scope's would otherwise be nested deeper than
    // rustc's default layout query limit in the functions' `main`. One allocation per invocation.
    let (output, invocation) = measure(Box::pin(work)).await;
    let function = crate::config::env("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
    let mut line = document(&invocation, &function, &request_id, millis).to_string();
    line.push('\n');
    // One write of the whole line, so that it never interleaves with a log line.
    if let Err(err) = std::io::stdout().lock().write_all(line.as_bytes()) {
        tracing::warn!(error = %err, "could not write the metrics line");
    }
    output
}

/// The EMF document of `invocation` in `function`, stamped `timestamp` (ms since the epoch).
pub fn document(
    invocation: &Invocation,
    function: &str,
    request_id: &str,
    timestamp: u64,
) -> Value {
    let mut root = Map::new();
    let mut directives = Vec::new();
    let count_metric = |name: &str| json!({"Name": name, "Unit": "Count"});

    root.insert("Function".into(), json!(function));
    root.insert("RequestId".into(), json!(request_id));
    root.insert("ColdStart".into(), json!(u8::from(invocation.cold_start)));
    let mut counters = vec![count_metric("ColdStart")];
    for (counter, n) in &invocation.counts {
        root.insert(counter.name().into(), json!(n));
        counters.push(count_metric(counter.name()));
    }
    directives.push(json!({
        "Namespace": NAMESPACE,
        "Dimensions": [["Function"]],
        "Metrics": counters,
    }));

    if let Some(payment) = &invocation.payment {
        root.insert("Outcome".into(), json!(payment.outcome));
        root.insert("Currency".into(), json!(payment.currency.code()));
        root.insert("Payments".into(), json!(1));
        root.insert("PaymentAmount".into(), json!(payment.amount));
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Function", "Outcome"], ["Function", "Outcome", "Currency"]],
            "Metrics": [count_metric("Payments")],
        }));
        // Amounts add up only within a currency.
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Function", "Outcome", "Currency"]],
            "Metrics": [{"Name": "PaymentAmount", "Unit": "None"}],
        }));
    }
    if let Some(refund) = &invocation.refund {
        root.insert("Currency".into(), json!(refund.currency.code()));
        root.insert("Refunds".into(), json!(1));
        root.insert("RefundAmount".into(), json!(refund.amount));
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Function", "Currency"]],
            "Metrics": [count_metric("Refunds"), {"Name": "RefundAmount", "Unit": "None"}],
        }));
    }
    // Ages, by function: the alarmed gauges.
    for (name, seconds) in [
        (
            "OldestUnknownOutcomeSeconds",
            invocation.oldest_unknown_seconds,
        ),
        (
            "OldestDueDeliverySeconds",
            invocation.oldest_due_delivery_seconds,
        ),
    ] {
        if let Some(seconds) = seconds {
            root.insert(name.into(), json!(seconds));
            directives.push(json!({
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": name, "Unit": "Seconds"}],
            }));
        }
    }
    root.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp, "CloudWatchMetrics": directives}),
    );
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Checks `line` against the EMF specification's rules and returns every (metric name,
    /// dimension set) it defines, with the metric's value.
    fn parse(line: &str) -> Vec<(String, Vec<String>, Value)> {
        let doc: Value = serde_json::from_str(line).expect("one JSON object");
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_u64(), "Timestamp: ms since the epoch");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        let mut defined = Vec::new();
        for directive in directives {
            assert_eq!(directive["Namespace"], NAMESPACE);
            let metrics = directive["Metrics"].as_array().expect("metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for set in directive["Dimensions"].as_array().expect("dimension sets") {
                let set: Vec<String> = set
                    .as_array()
                    .expect("a dimension set")
                    .iter()
                    .map(|d| d.as_str().expect("a dimension name").to_owned())
                    .collect();
                assert!(set.len() <= 30);
                for dimension in &set {
                    // A dimension's value: a string member of the root.
                    assert!(doc[dimension].is_string(), "dimension {dimension}");
                }
                for metric in metrics {
                    let name = metric["Name"].as_str().expect("a metric name");
                    let unit = metric["Unit"].as_str().unwrap_or("None");
                    assert!(["Count", "None"].contains(&unit), "{name}: {unit}");
                    // A metric's value: a number member of the root.
                    assert!(doc[name].is_number(), "metric {name}");
                    defined.push((name.to_owned(), set.clone(), doc[name].clone()));
                }
            }
        }
        defined
    }

    fn find<'a>(
        defined: &'a [(String, Vec<String>, Value)],
        name: &str,
        dims: &[&str],
    ) -> Option<&'a Value> {
        defined
            .iter()
            .find(|(n, d, _)| n == name && d.iter().map(String::as_str).eq(dims.iter().copied()))
            .map(|(_, _, v)| v)
    }

    #[test]
    fn a_payment_line_defines_its_metrics_by_outcome_and_currency() {
        let mut invocation = Invocation {
            cold_start: true,
            ..Invocation::default()
        };
        invocation.counts.insert(Counter::DynamoDbRetries, 2);
        invocation.counts.insert(Counter::IdempotencyReplays, 1);
        invocation.payment = Some(PaymentMetric {
            outcome: "requires_capture",
            currency: Currency::parse("eur").unwrap(),
            amount: 1250,
        });
        let line = document(&invocation, "create-payment", "req-1", 1_767_225_600_000).to_string();
        assert!(!line.contains('\n'), "one line");
        let defined = parse(&line);
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["Function"], "create-payment");
        assert_eq!(doc["RequestId"], "req-1");
        assert_eq!(doc["Outcome"], "requires_capture");
        assert_eq!(doc["Currency"], Currency::parse("eur").unwrap().code());
        assert_eq!(find(&defined, "ColdStart", &["Function"]), Some(&json!(1)));
        assert_eq!(
            find(&defined, "DynamoDbRetries", &["Function"]),
            Some(&json!(2))
        );
        assert_eq!(
            find(&defined, "IdempotencyReplays", &["Function"]),
            Some(&json!(1))
        );
        assert_eq!(
            find(&defined, "Payments", &["Function", "Outcome"]),
            Some(&json!(1))
        );
        assert_eq!(
            find(&defined, "Payments", &["Function", "Outcome", "Currency"]),
            Some(&json!(1))
        );
        assert_eq!(
            find(
                &defined,
                "PaymentAmount",
                &["Function", "Outcome", "Currency"]
            ),
            Some(&json!(1250))
        );
        // An amount is never summed across currencies.
        assert_eq!(
            find(&defined, "PaymentAmount", &["Function", "Outcome"]),
            None
        );
        // Counters not recorded are not defined (no zero series per invocation).
        assert_eq!(find(&defined, "LostRaces", &["Function"]), None);
    }

    #[test]
    fn a_refund_line_and_a_bare_line() {
        let invocation = Invocation {
            refund: Some(RefundMetric {
                currency: Currency::parse("usd").unwrap(),
                amount: 300,
            }),
            ..Invocation::default()
        };
        let defined = parse(&document(&invocation, "create-refund", "r", 1).to_string());
        assert_eq!(
            find(&defined, "Refunds", &["Function", "Currency"]),
            Some(&json!(1))
        );
        assert_eq!(
            find(&defined, "RefundAmount", &["Function", "Currency"]),
            Some(&json!(300))
        );
        assert_eq!(find(&defined, "ColdStart", &["Function"]), Some(&json!(0)));

        let bare = parse(&document(&Invocation::default(), "get-payment", "r", 1).to_string());
        let names: BTreeSet<&str> = bare.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["ColdStart"]));
    }

    #[test]
    fn every_counter_has_its_own_name() {
        let names: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[tokio::test]
    async fn records_reach_the_invocation_they_happen_in_and_only_it() {
        let (_, first) = measure(async {
            count(Counter::LostRaces);
            add(Counter::DynamoDbRetries, 3);
            add(Counter::Expirations, 0);
        })
        .await;
        assert_eq!(first.counts.get(&Counter::LostRaces), Some(&1));
        assert_eq!(first.counts.get(&Counter::DynamoDbRetries), Some(&3));
        assert!(!first.counts.contains_key(&Counter::Expirations));
        let (_, second) = measure(async {}).await;
        assert!(second.counts.is_empty(), "a fresh invocation starts empty");
        assert!(
            !second.cold_start,
            "only the first invocation is a cold start"
        );
        // Outside an invocation, recording is a no-op (and does not panic).
        count(Counter::LostRaces);
    }
}
