//! Every POST route under every way a DynamoDB call can end badly, through the real handlers and
//! the real SDK client, with faults injected between the client and DynamoDB Local
//! (`shared::testing::faults`). For each (route, fault) the request is sent with an
//! `Idempotency-Key`, the fault is healed, and the same request is sent again. Asserted every
//! time: the effect happened exactly once, the audit trail matches it, each answer is the
//! contract's, the retry replays when the first answer was a decided one, and no 5xx body says
//! anything internal.

use lambda_http::{Body, Response};
use serde_json::{json, Value};
use shared::domain::{CaptureMethod, PaymentId, PaymentStatus};
use shared::store::PaymentFilter;
use shared::testing::{
    assert_reveals_nothing, parts, request, Fault, FaultProxy, Rule, TestApp, TestMerchant,
};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Create,
    Capture,
    Cancel,
    Refund,
}

const ROUTES: [Route; 4] = [Route::Create, Route::Capture, Route::Cancel, Route::Refund];

impl Route {
    fn success(self) -> u16 {
        match self {
            Route::Create | Route::Refund => 201,
            Route::Capture | Route::Cancel => 200,
        }
    }

    /// The audit trail of the payment once the route's change happened exactly once.
    fn trail(self) -> &'static [&'static str] {
        match self {
            Route::Create => &["payment.succeeded"],
            Route::Capture => &["payment.requires_capture", "payment.succeeded"],
            Route::Cancel => &["payment.requires_capture", "payment.canceled"],
            // The reservation, then its settlement by the processor's answer.
            Route::Refund => &[
                "payment.succeeded",
                "payment.refunded",
                "payment.refund_updated",
            ],
        }
    }

    /// What the route's read-back after a lost answer asks for (see `Store::recognise`): the
    /// payment for a create, the event at the new version for a change.
    fn read_back(self) -> &'static str {
        match self {
            Route::Create => r#"{"S":"PAYMENT"}"#,
            _ => r#"{"S":"EVENT#"#,
        }
    }
}

/// One route's world: a fresh table behind a fault proxy, a merchant, and the payment the
/// route acts on (made before any fault is injected).
struct World {
    t: TestApp,
    proxy: FaultProxy,
    m: TestMerchant,
    route: Route,
    target: Option<PaymentId>,
}

struct Reply {
    status: u16,
    body: Value,
    replayed: bool,
    retry_after: Option<String>,
}

fn reply(response: Response<Body>) -> Reply {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (replayed, retry_after) = (
        header("idempotent-replayed").is_some(),
        header("retry-after"),
    );
    let (status, body) = parts(&response);
    Reply {
        status,
        body,
        replayed,
        retry_after,
    }
}

impl World {
    async fn new(route: Route) -> Self {
        let (t, proxy) = TestApp::with_faults().await;
        let m = t.merchant("acme").await;
        let target = match route {
            Route::Create => None,
            Route::Capture | Route::Cancel => Some(
                t.payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
                    .await
                    .id,
            ),
            Route::Refund => Some(
                t.payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
                    .await
                    .id,
            ),
        };
        Self {
            t,
            proxy,
            m,
            route,
            target,
        }
    }

    async fn send(&self, key: &str) -> Reply {
        let id = self.target.as_ref().map(|id| id.to_string());
        let id = id.as_deref().unwrap_or_default();
        let base = |name: &str| {
            request(name)
                .bearer(&self.m.key)
                .header("idempotency-key", key)
        };
        let app = &self.t.app;
        let response = match self.route {
            Route::Create => {
                let req = base("create-payment")
                    .json(&json!({"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa"}))
                    .build();
                create_payment::create_payment(app, req).await
            }
            Route::Capture => {
                let req = base("capture-payment").path_id(id).json(&json!({})).build();
                capture_payment::capture_payment(app, req).await
            }
            Route::Cancel => {
                let req = base("cancel-payment")
                    .path_id(id)
                    .json(&json!({"cancellation_reason": "requested_by_customer"}))
                    .build();
                cancel_payment::cancel_payment(app, req).await
            }
            Route::Refund => {
                let req = base("create-refund")
                    .path_id(id)
                    .json(&json!({"amount": 400}))
                    .build();
                create_refund::create_refund(app, req).await
            }
        };
        reply(response)
    }

    /// Sends the request again with the same key: it must replay the success (the same body as
    /// `first`, when `first` was that success) and leave the change applied exactly once.
    async fn assert_retry_replays(&self, first: Option<&Reply>, context: &str) {
        let retry = self.send("k").await;
        assert_eq!(
            (retry.status, retry.replayed),
            (self.route.success(), true),
            "{context}: {}",
            retry.body
        );
        if let Some(first) = first.filter(|f| f.status == self.route.success()) {
            assert_eq!(retry.body, first.body, "{context}");
        }
        self.assert_applied_once(context).await;
    }

    /// Fails unless the route's change is in the table exactly once, with a matching trail.
    async fn assert_applied_once(&self, context: &str) {
        let store = self.t.store();
        let payments = store
            .list_payments(&self.m.id, PaymentFilter::All, 100, None)
            .await
            .expect("list payments")
            .items;
        assert_eq!(payments.len(), 1, "{context}: one payment");
        let payment = &payments[0];
        match self.route {
            Route::Create => assert_eq!(payment.status, PaymentStatus::Succeeded, "{context}"),
            Route::Capture => assert_eq!(
                (payment.status, payment.amount_captured),
                (PaymentStatus::Succeeded, 1000),
                "{context}"
            ),
            Route::Cancel => assert_eq!(payment.status, PaymentStatus::Canceled, "{context}"),
            Route::Refund => {
                assert_eq!(payment.amount_refunded, 400, "{context}: refunded once");
                let refunds = store
                    .list_refunds(&self.m.id, &payment.id, 100, None)
                    .await
                    .expect("list refunds")
                    .items;
                assert_eq!(refunds.len(), 1, "{context}: one refund");
            }
        }
        let trail: Vec<String> = store
            .list_events(&self.m.id, &payment.id, 100, None)
            .await
            .expect("list events")
            .items
            .iter()
            .map(|e| e.resource()["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(trail, self.route.trail(), "{context}: audit trail");
        let last = store
            .list_events(&self.m.id, &payment.id, 100, None)
            .await
            .expect("list events")
            .items
            .pop()
            .expect("an event");
        let mut stored = payment.resource();
        if self.route == Route::Refund {
            stored["refund"] = last.data["refund"].clone();
        }
        assert_eq!(
            last.data, stored,
            "{context}: the last event shows the payment"
        );
    }
}

fn assert_unavailable(reply: &Reply, context: &str) {
    assert_eq!(
        (reply.status, reply.body["code"].as_str()),
        (503, Some("service_unavailable")),
        "{context}: {}",
        reply.body
    );
    assert_eq!(reply.retry_after.as_deref(), Some("1"), "{context}");
    assert_reveals_nothing(&reply.body);
}

/// A fault that makes the change's transaction commit while its answer is lost, on every
/// attempt the SDK makes: the read-back recognises the write, so the first answer is already
/// the success, and the retry replays it.
async fn committed_but_answer_lost(fault: Fault) {
    for route in ROUTES {
        let w = World::new(route).await;
        let context = format!("{route:?} under {fault:?}");
        w.proxy
            .inject(Rule::on("TransactWriteItems", fault.clone()));
        let first = w.send("k").await;
        assert_eq!(first.status, route.success(), "{context}: {}", first.body);
        assert!(
            w.proxy.faulted("TransactWriteItems") >= 1,
            "{context}: the fault was applied"
        );
        w.proxy.heal();
        w.assert_retry_replays(Some(&first), &context).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_of_a_committed_change_are_recognised() {
    committed_but_answer_lost(Fault::DropResponse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_after_commit_is_recognised() {
    committed_but_answer_lost(Fault::ErrorAfterCommit).await;
}

/// The bug this suite was written for: the change commits, every answer is lost, and the
/// read-back fails too, so the first request can only say 503. The claim must not be released
/// (its record completed in the change's own transaction): the retry replays the success
/// instead of applying the change a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_then_retry_never_applies_twice() {
    for route in ROUTES {
        let w = World::new(route).await;
        let context = format!("{route:?}, answer and read-back lost");
        w.proxy
            .inject(Rule::on("TransactWriteItems", Fault::DropResponse));
        w.proxy
            .inject(Rule::on("GetItem", Fault::Throttle).when_body_contains(route.read_back()));
        let first = w.send("k").await;
        assert_unavailable(&first, &context);
        w.proxy.heal();
        if route == Route::Refund {
            // The reservation committed and its answer was lost (it carries no idempotency
            // completion: the answer comes after the processor's). The retry keeps the key's
            // refund id, finds that reservation, sends it and answers; the next one replays.
            let retry = w.send("k").await;
            assert_eq!((retry.status, retry.replayed), (201, false), "{context}");
            assert_eq!(retry.body["status"], "succeeded", "{context}");
            w.assert_retry_replays(Some(&retry), &context).await;
        } else {
            w.assert_retry_replays(None, &context).await;
        }
    }
}

/// Faults that stop the change from being applied: 503 with `Retry-After`, nothing written, and
/// the retry with the same key applies it (once).
async fn not_applied(rule: Rule, label: &str) {
    for route in ROUTES {
        let w = World::new(route).await;
        let context = format!("{route:?} under {label}");
        w.proxy.inject(rule.clone());
        let started = Instant::now();
        let first = w.send("k").await;
        let took = started.elapsed();
        assert_unavailable(&first, &context);
        // Well inside the function timeout (10 s): the SDK's bounded waits, not the fault,
        // decide when the caller hears back.
        assert!(
            took < Duration::from_secs(5),
            "{context}: answered after {took:?}"
        );
        w.proxy.heal();
        let retry = w.send("k").await;
        assert_eq!(
            (retry.status, retry.replayed),
            (route.success(), false),
            "{context}: {}",
            retry.body
        );
        w.assert_retry_replays(Some(&retry), &context).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_changes_are_503_and_retry_cleanly() {
    not_applied(
        Rule::on("TransactWriteItems", Fault::Throttle),
        "throttling",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_503_and_retry_cleanly() {
    not_applied(Rule::on("TransactWriteItems", Fault::Refuse), "refusal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_transaction_is_503_inside_the_deadline() {
    not_applied(Rule::on("TransactWriteItems", Fault::Hang), "a hang").await;
}

/// A slow DynamoDB (under the attempt time-out) is just slow: the change applies once, 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_datastore_is_only_slow() {
    for route in ROUTES {
        let w = World::new(route).await;
        let context = format!("{route:?}, delayed");
        w.proxy
            .inject(Rule::on("*", Fault::Delay(Duration::from_millis(300))));
        let first = w.send("k").await;
        assert_eq!(
            (first.status, first.replayed),
            (route.success(), false),
            "{context}"
        );
        w.assert_retry_replays(Some(&first), &context).await;
    }
}

/// The claim's own write whose answer was lost: the SDK's retry finds the record already
/// claimed, by this very request. It must proceed, not answer 409 to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_recognises_its_own_retried_write() {
    for route in ROUTES {
        let w = World::new(route).await;
        let context = format!("{route:?}, claim answer lost once");
        w.proxy.inject(
            Rule::on("UpdateItem", Fault::DropResponse)
                .when_body_contains("if_not_exists(resource_id")
                .times(1),
        );
        let first = w.send("k").await;
        assert_eq!(
            (first.status, first.replayed),
            (route.success(), false),
            "{context}: {}",
            first.body
        );
        assert_eq!(w.proxy.faulted("UpdateItem"), 1, "{context}");
        w.assert_retry_replays(Some(&first), &context).await;
    }
}

/// DynamoDB unreachable altogether (every connection refused, every call hung): every route
/// answers 503 with `Retry-After` well inside the function timeout, and nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_hung_datastore_is_503_for_every_route() {
    let w = World::new(Route::Refund).await;
    let id = w.target.clone().expect("a payment");
    for (label, break_it) in [
        (
            "refused",
            (|p: &FaultProxy| p.refuse_connections()) as fn(&FaultProxy),
        ),
        ("hung", |p: &FaultProxy| {
            p.inject(Rule::on("*", Fault::Hang))
        }),
    ] {
        break_it(&w.proxy);
        let started = Instant::now();
        let get = request("get-payment")
            .bearer(&w.m.key)
            .path_id(id.as_str())
            .build();
        // The request's first DynamoDB call (its key lookup) meets the fault.
        let got = reply(get_payment::get_payment(&w.t.app, get).await);
        let took = started.elapsed();
        assert_unavailable(&got, &format!("GET /payments/{{id}}, {label}"));
        assert!(
            took < Duration::from_secs(5),
            "{label}: answered after {took:?}"
        );
        let refund = w.send(label).await;
        assert_unavailable(&refund, &format!("refund, {label}"));
        w.proxy.heal();
    }
    let payment =
        w.t.store()
            .get_payment(&w.m.id, &id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(payment.amount_refunded, 0);
}

/// Another transaction held an item at that moment (DynamoDB's `TransactionConflict`): nothing
/// was applied, the request decides again after a jittered pause, and it is answered as if the
/// race had not happened (never a 500). The claim's own write can meet the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_conflicts_are_lost_races_decided_again() {
    for route in ROUTES {
        for (operation, label) in [
            ("TransactWriteItems", "the change's transaction"),
            ("UpdateItem", "the claim"),
        ] {
            let w = World::new(route).await;
            let context = format!("{route:?}, conflicts on {label}");
            w.proxy
                .inject(Rule::on(operation, Fault::TransactionConflict).times(3));
            let first = w.send("k").await;
            assert_eq!(
                (first.status, first.replayed),
                (route.success(), false),
                "{context}: {}",
                first.body
            );
            assert_eq!(w.proxy.faulted(operation), 3, "{context}");
            w.assert_retry_replays(Some(&first), &context).await;
        }
    }
}

/// The request deadline (`App::request_deadline`) on its own, with an injected delay: every
/// DynamoDB call answers well inside the SDK's attempt time-out, but a request whose calls add
/// up past its deadline is cut there and answered 503 with `Retry-After`, not left to Lambda's
/// timeout; with the deployed deadline the same slow calls are only slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_503_at_the_deadline() {
    let w = World::new(Route::Refund).await;
    let id = w.target.clone().expect("a payment");
    let get = |key: &str| {
        request("get-payment")
            .bearer(key)
            .path_id(id.as_str())
            .build()
    };
    // Two calls (the key's lookup, then the payment) of 400 ms each: 800 ms in all.
    w.proxy.inject(Rule::on(
        "GetItem",
        Fault::Delay(Duration::from_millis(400)),
    ));
    let deployed = reply(get_payment::get_payment(&w.t.app, get(&w.m.key)).await);
    assert_eq!(deployed.status, 200, "{}", deployed.body);

    // A new container on the same table (no cached key), whose deadline falls between the two
    // calls.
    let mut cold = TestApp::on_store(w.t.store().clone());
    cold.app.request_deadline = Duration::from_millis(600);
    let started = Instant::now();
    let cut = reply(get_payment::get_payment(&cold.app, get(&w.m.key)).await);
    let took = started.elapsed();
    assert_unavailable(&cut, "GET /payments/{id} past its deadline");
    // Cut at the deadline, not when the slow call would have answered.
    assert!(
        took >= Duration::from_millis(600),
        "answered after {took:?}, before the deadline"
    );
}
