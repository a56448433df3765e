//! `POST /payments`: validates the request into a [`NewPayment`], asks the processor, and
//! records the payment with its first event in one transaction. A decline is still a 201: the
//! attempt is recorded as a `failed` payment; so are `requires_action` (the customer must
//! authenticate: `next_action`) and `processing` (the processor decides later, or its answer
//! was lost — the processor reference is stored either way, so it can be looked up).

use lambda_http::{Body, Request, Response};
use shared::domain::{
    Amount, CaptureMethod, Currency, Description, Event, MerchantId, Metadata, NewPayment, Payment,
    PaymentId, ProcessorRef, ReturnUrl, Timestamp,
};
use shared::http::request::{api_base, json, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::processor::AuthorizationRequest;
use shared::store::Authorizing;
use shared::App;
use std::sync::Arc;

const FIELDS: &[&str] = &[
    "amount",
    "currency",
    "payment_method",
    "capture_method",
    "description",
    "metadata",
    "return_url",
];

pub async fn create_payment(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| create(app, &req, merchant, commit))
        .await
}

fn parse(req: &Request, allow_local: bool) -> Result<NewPayment, ApiError> {
    let body = JsonBody::parse(req, true, FIELDS)?;
    Ok(NewPayment {
        amount: body.required("amount", |v| Amount::parse(json::integer(v)?))?,
        currency: body.required("currency", |v| Currency::parse(json::string(v)?))?,
        payment_method: body.required("payment_method", |v| json::string(v).map(str::to_owned))?,
        capture_method: body
            .optional("capture_method", |v| CaptureMethod::parse(json::string(v)?))?
            .unwrap_or_default(),
        description: body.optional("description", |v| Description::parse(json::string(v)?))?,
        metadata: body
            .optional("metadata", |v| Metadata::parse(json::string_map(v)?))?
            .unwrap_or_default(),
        return_url: body.optional("return_url", |v| {
            ReturnUrl::parse(json::string(v)?, allow_local)
        })?,
    })
}

async fn create(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let request = parse(req, app.webhook_allow_local_urls)?;
    let now = app.clock.now();
    // With an idempotency key, every retry of the request gets the same payment id, and so sends
    // the processor the same reference (`shared::processor`).
    let id = commit.new_id(PaymentId::from_time_ordered_hex, || {
        PaymentId::generate(now)
    })?;
    let call = AuthorizationRequest {
        payment: id.clone(),
        merchant: merchant.clone(),
        payment_method: request.payment_method.clone(),
        amount: request.amount,
        currency: request.currency,
        capture_method: request.capture_method,
        return_url: request.return_url.clone(),
        api_base: api_base(req),
    };
    let in_flight = app.processor.creates_references();
    let reference = match in_flight {
        false => app.processor.prepare(&call).await?,
        true => match in_flight_reference(app, &merchant, &id, &commit).await? {
            Retried::Recorded(payment) => {
                tracing::info!(payment_id = %payment.id, status = payment.status.as_str(), "payment recorded by reconciliation: answered as it stands");
                return Ok(ApiResponse::created(payment.resource()));
            }
            Retried::InFlight(reference) => reference,
            Retried::First => {
                let reference = app.processor.prepare(&call).await?;
                let record = Authorizing {
                    id: id.clone(),
                    merchant_id: merchant.clone(),
                    processor: app.processor.name(),
                    reference,
                    request: request.clone(),
                    created_at: Timestamp::from_datetime(now),
                };
                // A concurrent attempt that stored first: its reference is the one confirmed.
                app.store.record_authorizing(&record).await?.reference
            }
        },
    };
    let outcome = app.processor.authorize(&call, &reference).await?;
    let processor = ProcessorRef::new(app.processor.name(), reference);
    let payment = Payment::create(id, request, processor, outcome, now, &app.deadlines());
    let event = Event::status_change(&payment, now);
    let response = ApiResponse::created(payment.resource());
    let completion = commit.completion(&response)?;
    app.store
        .create_payment(&merchant, &payment, &event, in_flight, completion)
        .await?;
    tracing::info!(payment_id = %payment.id, status = payment.status.as_str(), "payment created");
    shared::metrics::payment(&payment);
    Ok(response)
}

/// Where a create stands whose processor creates its references.
enum Retried {
    /// Nothing stored: the first attempt (or one whose record never landed).
    First,
    /// An earlier attempt stored this reference: it is confirmed again, never replaced.
    InFlight(String),
    /// Reconciliation recorded the payment after an earlier attempt's answer was lost.
    Recorded(Box<Payment>),
}

/// A keyed request carries the first attempt's payment id (`idempotency`), so it may be a retry
/// whose authorization is in flight: one consistent read of the payment's partition says.
/// Without a key the id is new and nothing can be stored under it.
async fn in_flight_reference(
    app: &App,
    merchant: &MerchantId,
    id: &PaymentId,
    commit: &Commit,
) -> Result<Retried, ApiError> {
    if commit.resource_id().is_none() {
        return Ok(Retried::First);
    }
    let started = app.store.started(merchant, id).await?;
    Ok(match (started.payment, started.authorizing) {
        (Some(payment), _) => Retried::Recorded(Box::new(payment)),
        (None, Some(record)) => Retried::InFlight(record.reference),
        (None, None) => Retried::First,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn post(t: &TestApp, m: &TestMerchant, body: Value) -> (u16, Value) {
        let req = request("create-payment").bearer(&m.key).json(&body).build();
        parts(&create_payment(&t.app, req).await)
    }

    fn visa(amount: Value) -> Value {
        json!({"amount": amount, "currency": "usd", "payment_method": "pm_card_visa"})
    }

    #[tokio::test]
    async fn approved_automatic_payment_succeeds_and_records_its_event() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let body = json!({"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa",
            "description": "Order #1042", "metadata": {"order_id": "1042"}});
        let (status, payment) = post(&t, &m, body).await;
        assert_eq!(status, 201);
        assert_eq!(payment["object"], "payment");
        assert!(payment["id"].as_str().unwrap().starts_with("pay_"));
        assert_eq!(payment["currency"], "USD");
        assert_eq!(payment["status"], "succeeded");
        assert_eq!(payment["capture_method"], "automatic");
        assert_eq!(
            (
                payment["amount_captured"].as_i64(),
                payment["amount_capturable"].as_i64()
            ),
            (Some(2500), Some(0))
        );
        assert_eq!(payment["amount_refunded"], 0);
        assert_eq!(payment["metadata"], json!({"order_id": "1042"}));
        assert_eq!(payment["description"], "Order #1042");
        assert_eq!(payment["failure"], Value::Null);
        assert_eq!(payment["capture_before"], Value::Null);
        assert_eq!(
            payment["created_at"].as_str().unwrap().len(),
            "2026-11-23T19:00:00.123Z".len()
        );

        let id = shared::domain::PaymentId::parse(payment["id"].as_str().unwrap()).unwrap();
        let events = t
            .store()
            .list_events(&m.id, &id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].resource()["type"], "payment.succeeded");
        assert_eq!(events[0].data, payment);
    }

    #[tokio::test]
    async fn manual_capture_waits_and_declines_are_recorded_as_failed() {
        let mut t = TestApp::new().await;
        t.app.authorization_validity = time::Duration::seconds(20);
        let m = t.merchant("acme").await;
        let (status, manual) = post(
            &t,
            &m,
            json!({"amount": 900, "currency": "EUR",
            "payment_method": "pm_card_amex", "capture_method": "manual"}),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(manual["status"], "requires_capture");
        assert_eq!(
            (
                manual["amount_capturable"].as_i64(),
                manual["amount_captured"].as_i64()
            ),
            (Some(900), Some(0))
        );
        let created =
            shared::domain::Timestamp::try_from(manual["created_at"].as_str().unwrap().to_owned())
                .unwrap();
        let deadline = shared::domain::Timestamp::from_datetime(
            created.as_datetime() + time::Duration::seconds(20),
        );
        assert_eq!(
            manual["capture_before"],
            deadline.to_string(),
            "creation + the configured validity"
        );

        for (token, code) in [
            ("pm_card_declined", "card_declined"),
            ("pm_card_insufficient_funds", "insufficient_funds"),
            ("pm_card_expired", "expired_card"),
        ] {
            let (status, failed) = post(
                &t,
                &m,
                json!({"amount": 100, "currency": "JPY", "payment_method": token}),
            )
            .await;
            assert_eq!(status, 201, "{token}");
            assert_eq!(failed["status"], "failed");
            assert_eq!(failed["failure"]["code"], code);
            assert_eq!(failed["amount_captured"], 0);
            assert_eq!(failed["capture_before"], Value::Null);
        }
    }

    /// openapi.yaml's `type: integer` admits `2500.0`; the API takes it as the integer it is.
    #[tokio::test]
    async fn an_amount_with_a_zero_fraction_is_that_integer() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (status, payment) = post(&t, &m, visa(json!(459749.0))).await;
        assert_eq!((status, payment["amount"].as_i64()), (201, Some(459749)));
        let (status, problem) = post(&t, &m, visa(json!(459749.5))).await;
        assert_eq!((status, problem["param"].as_str()), (400, Some("amount")));
    }

    /// Every error row of the contract that applies to this route: status, code, param and
    /// content type.
    #[tokio::test]
    async fn bad_input_gets_the_documented_problem() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let too_many_keys: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        let cases: Vec<(Value, &str, Option<&str>)> = vec![
            (visa(json!(0)), "validation_error", Some("amount")),
            (visa(json!(-1)), "validation_error", Some("amount")),
            (visa(json!(1.5)), "validation_error", Some("amount")),
            (visa(json!("100")), "validation_error", Some("amount")),
            (
                visa(json!(9_223_372_036_854_775_808u64)),
                "validation_error",
                Some("amount"),
            ),
            (
                visa(json!(100_000_000_000i64)),
                "validation_error",
                Some("amount"),
            ),
            (
                json!({"currency": "usd", "payment_method": "pm_card_visa"}),
                "validation_error",
                Some("amount"),
            ),
            (
                json!({"amount": 100, "currency": "XYZ", "payment_method": "pm_card_visa"}),
                "validation_error",
                Some("currency"),
            ),
            (
                json!({"amount": 100, "currency": "us", "payment_method": "pm_card_visa"}),
                "validation_error",
                Some("currency"),
            ),
            (
                json!({"amount": 100, "currency": 7, "payment_method": "pm_card_visa"}),
                "validation_error",
                Some("currency"),
            ),
            (
                json!({"amount": 100, "currency": "usd"}),
                "validation_error",
                Some("payment_method"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": 5}),
                "validation_error",
                Some("payment_method"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_unknown"}),
                "invalid_payment_method",
                Some("payment_method"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "capture_method": "later"}),
                "validation_error",
                Some("capture_method"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "description": "d".repeat(1001)}),
                "validation_error",
                Some("description"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "metadata": too_many_keys}),
                "validation_error",
                Some("metadata"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "metadata": {"n": 1}}),
                "validation_error",
                Some("metadata"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "metadata": ["a"]}),
                "validation_error",
                Some("metadata"),
            ),
            (
                json!({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "customer": "c"}),
                "unknown_field",
                Some("customer"),
            ),
            (json!([1, 2]), "invalid_json", None),
        ];
        for (body, code, param) in cases {
            let req = request("create-payment").bearer(&m.key).json(&body).build();
            let response = create_payment(&t.app, req).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{body}"
            );
            let (status, problem) = parts(&response);
            assert_eq!(status, 400, "{body}");
            assert_eq!(problem["code"], code, "{body}");
            assert_eq!(problem["param"].as_str(), param, "{body}");
            assert_eq!(problem["status"], 400);
            assert_eq!(
                problem["request_id"],
                response.headers()["x-request-id"].to_str().unwrap()
            );
        }
        // Nothing was stored by any of them.
        let page = t
            .store()
            .list_payments(&m.id, shared::store::PaymentFilter::All, 100, None)
            .await
            .unwrap();
        assert!(page.items.is_empty());
    }

    #[tokio::test]
    async fn malformed_oversized_and_mistyped_bodies_are_refused() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let big = format!("{{\"description\":\"{}\"}}", "x".repeat(17 * 1024));
        let cases = [
            (
                request("create-payment")
                    .header("content-type", "application/json")
                    .raw_body("{\"amount\": 1,"),
                400,
                "invalid_json",
            ),
            (
                request("create-payment")
                    .header("content-type", "application/json")
                    .raw_body(&big),
                413,
                "payload_too_large",
            ),
            (
                request("create-payment")
                    .header("content-type", "text/plain")
                    .raw_body("{}"),
                415,
                "unsupported_media_type",
            ),
            (
                request("create-payment")
                    .without_header("content-type")
                    .raw_body("{}"),
                415,
                "unsupported_media_type",
            ),
        ];
        for (req, expected_status, code) in cases {
            let response = create_payment(&t.app, req.bearer(&m.key).build()).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let (status, problem) = parts(&response);
            assert_eq!(
                (status, problem["code"].as_str()),
                (expected_status, Some(code))
            );
        }
    }

    #[tokio::test]
    async fn requests_without_a_live_key_are_unauthenticated() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let unknown = format!("sk_{}", "0".repeat(48));
        let cases = [
            request("create-payment").without_header("authorization"),
            request("create-payment").header("authorization", "Bearer"),
            request("create-payment").header("authorization", &format!("Basic {}", m.key)),
            request("create-payment").header("authorization", "Bearer sk_not_a_key"),
            request("create-payment").bearer(&unknown),
        ];
        for req in cases {
            let response = create_payment(&t.app, req.json(&visa(json!(100))).build()).await;
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let (status, problem) = parts(&response);
            assert_eq!(
                (status, problem["code"].as_str()),
                (401, Some("unauthenticated"))
            );
        }
    }

    mod idempotency {
        use super::*;
        use shared::domain::PaymentId;
        use shared::store::PaymentFilter;
        use std::sync::Arc;
        use time::Duration;

        struct Reply {
            status: u16,
            body: Value,
            replayed: bool,
            retry_after: Option<String>,
        }

        async fn post(t: &TestApp, m: &TestMerchant, key: &str, raw: &str) -> Reply {
            let req = request("create-payment")
                .bearer(&m.key)
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .raw_body(raw)
                .build();
            let response = create_payment(&t.app, req).await;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let (replayed, retry_after) = (header("idempotent-replayed"), header("retry-after"));
            let (status, body) = parts(&response);
            Reply {
                status,
                body,
                replayed: replayed.as_deref() == Some("true"),
                retry_after,
            }
        }

        async fn payment_count(t: &TestApp, m: &TestMerchant) -> usize {
            t.store()
                .list_payments(&m.id, PaymentFilter::All, 100, None)
                .await
                .unwrap()
                .items
                .len()
        }

        const BODY: &str = r#"{"amount":2500,"currency":"usd","payment_method":"pm_card_visa","metadata":{"a":"1","b":"2"}}"#;
        const REORDERED: &str = "{ \"metadata\": {\"b\": \"2\", \"a\": \"1\"},\n  \"payment_method\": \"pm_card_visa\", \"currency\": \"usd\", \"amount\": 2500 }";

        #[tokio::test]
        async fn a_replay_returns_the_stored_response_and_writes_nothing() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            let first = post(&t, &m, "order-1042", BODY).await;
            assert_eq!((first.status, first.replayed), (201, false));
            let again = post(&t, &m, "order-1042", REORDERED).await;
            assert_eq!((again.status, again.replayed), (201, true));
            assert_eq!(again.body, first.body);
            assert_eq!(payment_count(&t, &m).await, 1);
            let id = PaymentId::parse(first.body["id"].as_str().unwrap()).unwrap();
            assert_eq!(
                t.store()
                    .list_events(&m.id, &id, 100, None)
                    .await
                    .unwrap()
                    .items
                    .len(),
                1
            );
        }

        #[tokio::test]
        async fn the_same_key_with_another_request_is_refused() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            assert_eq!(post(&t, &m, "k1", BODY).await.status, 201);
            let other = BODY.replace("2500", "2501");
            let reused = post(&t, &m, "k1", &other).await;
            assert_eq!(
                (reused.status, reused.body["code"].as_str()),
                (422, Some("idempotency_key_reused"))
            );
            assert_eq!(payment_count(&t, &m).await, 1);
        }

        #[tokio::test]
        async fn keys_are_scoped_to_the_merchant() {
            let t = TestApp::new().await;
            let a = t.merchant("a").await;
            let b = t.merchant("b").await;
            let from_a = post(&t, &a, "shared-key", BODY).await;
            let from_b = post(&t, &b, "shared-key", BODY).await;
            assert_eq!(
                (from_a.status, from_b.status, from_b.replayed),
                (201, 201, false)
            );
            assert_ne!(from_a.body["id"], from_b.body["id"]);
            assert_eq!(
                (payment_count(&t, &a).await, payment_count(&t, &b).await),
                (1, 1)
            );
        }

        #[tokio::test]
        async fn validation_failures_are_not_stored_and_bad_keys_are_refused() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            let invalid = post(&t, &m, "k2", &BODY.replace("2500", "0")).await;
            assert_eq!(
                (invalid.status, invalid.body["code"].as_str()),
                (400, Some("validation_error"))
            );
            let corrected = post(&t, &m, "k2", BODY).await;
            assert_eq!((corrected.status, corrected.replayed), (201, false));

            for bad in ["", &"k".repeat(256), "tab\tkey"] {
                let reply = post(&t, &m, bad, BODY).await;
                assert_eq!(
                    (reply.status, reply.body["code"].as_str()),
                    (400, Some("invalid_idempotency_key")),
                    "{bad:?}"
                );
            }
            assert_eq!(payment_count(&t, &m).await, 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn twenty_concurrent_identical_creates_make_one_payment() {
            let t = Arc::new(TestApp::new().await);
            let m = Arc::new(t.merchant("acme").await);
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let (t, m) = (t.clone(), m.clone());
                    tokio::spawn(async move { post(&t, &m, "burst", BODY).await })
                })
                .collect();
            let mut ids = std::collections::HashSet::new();
            for task in tasks {
                let reply = task.await.unwrap();
                match reply.status {
                    201 => {
                        ids.insert(reply.body["id"].as_str().unwrap().to_owned());
                    }
                    409 => {
                        assert_eq!(reply.body["code"], "idempotency_in_progress");
                        assert_eq!(reply.retry_after.as_deref(), Some("1"));
                    }
                    other => panic!("unexpected {other}: {}", reply.body),
                }
            }
            assert_eq!(ids.len(), 1, "every 201 is the same payment");
            assert_eq!(payment_count(&t, &m).await, 1);
        }

        /// The crash case. A first attempt that died before its write left only its claim: retries
        /// get 409 until the lock (the function timeout) expires, then one applies the change
        /// once. A first attempt that died after its write had completed the record in the same
        /// transaction: a retry after the lock expiry replays it and writes nothing.
        #[tokio::test]
        async fn a_crashed_first_attempt_is_neither_lost_nor_applied_twice() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            // Died before writing: claim the key exactly as the first attempt would have.
            let req = request("create-payment")
                .bearer(&m.key)
                .header("content-type", "application/json")
                .raw_body(BODY)
                .build();
            let key = shared::idempotency::IdempotencyKey::parse("crash-1").unwrap();
            let now = shared::clock::Clock::now(t.clock.as_ref());
            let first_id = shared::domain::ids::time_ordered_hex(now);
            let begun = shared::idempotency::begin(
                t.store(),
                shared::idempotency::Caller {
                    merchant: &m.id,
                    api_key: &m.key,
                },
                &key,
                &shared::idempotency::fingerprint(&req),
                now,
                t.app.idempotency_lock,
                &first_id,
            )
            .await
            .unwrap();
            assert!(matches!(begun, shared::idempotency::Begin::Proceed(_)));
            drop(begun); // the function died here (say, just after asking the processor)
            let early = post(&t, &m, "crash-1", BODY).await;
            assert_eq!(
                (early.status, early.body["code"].as_str()),
                (409, Some("idempotency_in_progress"))
            );
            assert_eq!(payment_count(&t, &m).await, 0);
            t.clock
                .advance(t.app.idempotency_lock + Duration::milliseconds(1));
            let retry = post(&t, &m, "crash-1", BODY).await;
            assert_eq!((retry.status, retry.replayed), (201, false));
            assert_eq!(payment_count(&t, &m).await, 1);
            // The retry is the same payment the first attempt would have made: the processor
            // got the first attempt's reference again, so it can de-duplicate.
            let reference = format!("pay_{first_id}");
            assert_eq!(retry.body["id"], reference.as_str());
            let sent: Vec<String> = t
                .sandbox
                .received()
                .into_iter()
                .map(|a| a.payment.to_string())
                .collect();
            assert_eq!(sent, [reference]);

            // Died after writing: the record was completed with the change.
            t.clock
                .advance(t.app.idempotency_lock + Duration::seconds(5));
            let later = post(&t, &m, "crash-1", REORDERED).await;
            assert_eq!((later.status, later.replayed), (201, true));
            assert_eq!(later.body, retry.body);
            assert_eq!(payment_count(&t, &m).await, 1);
        }

        #[tokio::test]
        async fn a_key_older_than_24_hours_is_new_again() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            let first = post(&t, &m, "daily", BODY).await;
            t.clock.advance(Duration::hours(23));
            assert!(post(&t, &m, "daily", BODY).await.replayed);
            t.clock.advance(Duration::hours(1) + Duration::seconds(1));
            let fresh = post(&t, &m, "daily", &BODY.replace("2500", "900")).await;
            assert_eq!((fresh.status, fresh.replayed), (201, false));
            assert_ne!(fresh.body["id"], first.body["id"]);
            assert_eq!(payment_count(&t, &m).await, 2);
        }
    }

    /// What an invocation reports in its metrics line (shared::metrics).
    mod metrics {
        use super::*;
        use shared::metrics::{document, measure, Counter, Invocation};
        use shared::testing::{Fault, Rule};

        async fn measured_post(t: &TestApp, req: Request) -> (u16, Value, Invocation) {
            let (response, invocation) = measure(create_payment(&t.app, req)).await;
            let (status, body) = parts(&response);
            (status, body, invocation)
        }

        fn keyed(m: &TestMerchant, key: &str, body: &Value) -> Request {
            request("create-payment")
                .bearer(&m.key)
                .header("idempotency-key", key)
                .json(body)
                .build()
        }

        #[tokio::test]
        async fn a_payment_is_counted_by_outcome_and_currency_with_its_amount() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            let approved = keyed(&m, "k1", &visa(json!(2500)));
            let (status, _, invocation) = measured_post(&t, approved).await;
            assert_eq!(status, 201);
            let payment = invocation.payment.clone().expect("the payment is recorded");
            assert_eq!(payment.outcome, "succeeded");
            assert_eq!(payment.currency.code(), "USD");
            assert_eq!(payment.amount, 2500);
            // And the line it becomes says the same.
            let line = document(&invocation, "create-payment", "r1", 1);
            assert_eq!(
                (line["Outcome"].as_str(), line["Payments"].as_i64()),
                (Some("succeeded"), Some(1))
            );
            assert_eq!(line["PaymentAmount"], 2500);

            let body =
                json!({"amount": 700, "currency": "eur", "payment_method": "pm_card_declined"});
            let declined = request("create-payment").bearer(&m.key).json(&body).build();
            let (status, _, invocation) = measured_post(&t, declined).await;
            assert_eq!(status, 201);
            let payment = invocation.payment.expect("a decline is a payment too");
            assert_eq!(
                (payment.outcome, payment.currency.code()),
                ("failed", "EUR")
            );

            // A refused request made no payment.
            let bad = request("create-payment")
                .bearer(&m.key)
                .json(&json!({"amount": 1}))
                .build();
            let (status, _, invocation) = measured_post(&t, bad).await;
            assert_eq!(status, 400);
            assert_eq!(invocation.payment, None);
        }

        #[tokio::test]
        async fn replays_and_key_conflicts_are_counted() {
            let t = TestApp::new().await;
            let m = t.merchant("acme").await;
            let body = visa(json!(1200));
            let (_, _, first) = measured_post(&t, keyed(&m, "order-1", &body)).await;
            assert_eq!(first.counts.get(&Counter::IdempotencyReplays), None);
            let (status, _, replay) = measured_post(&t, keyed(&m, "order-1", &body)).await;
            assert_eq!(status, 201);
            assert_eq!(replay.counts.get(&Counter::IdempotencyReplays), Some(&1));
            assert_eq!(replay.payment, None, "a replay is not a second payment");
            let other = visa(json!(1300));
            let (status, _, reused) = measured_post(&t, keyed(&m, "order-1", &other)).await;
            assert_eq!(status, 422);
            assert_eq!(reused.counts.get(&Counter::IdempotencyConflicts), Some(&1));
        }

        #[tokio::test]
        async fn dynamodb_retries_and_503s_are_counted() {
            let (t, proxy) = TestApp::with_faults().await;
            let m = t.merchant("acme").await;
            // One throttled attempt: the SDK tries again and the payment is made.
            proxy.inject(Rule::on("TransactWriteItems", Fault::Throttle).times(1));
            let req = request("create-payment")
                .bearer(&m.key)
                .json(&visa(json!(500)))
                .build();
            let (status, _, invocation) = measured_post(&t, req).await;
            assert_eq!(status, 201);
            assert_eq!(invocation.counts.get(&Counter::DynamoDbRetries), Some(&1));
            assert_eq!(invocation.counts.get(&Counter::ServiceUnavailable), None);
            // Throttled throughout: every attempt after the first is a retry, and the answer a 503.
            proxy.inject(Rule::on("TransactWriteItems", Fault::Throttle));
            let req = request("create-payment")
                .bearer(&m.key)
                .json(&visa(json!(500)))
                .build();
            let (status, _, invocation) = measured_post(&t, req).await;
            assert_eq!(status, 503);
            assert_eq!(
                invocation.counts.get(&Counter::ServiceUnavailable),
                Some(&1)
            );
            let retries = shared::store::client::TIME_BUDGET.max_attempts - 1;
            assert_eq!(
                invocation.counts.get(&Counter::DynamoDbRetries),
                Some(&u64::from(retries))
            );
        }
    }

    /// Per-merchant fairness (`App::admit_write`): a merchant's POSTs beyond its limit in one
    /// second are refused 429 before anything is done, other merchants are not affected, and
    /// the next second admits again.
    mod write_rate {
        use super::*;
        use shared::testing::{Fault, Rule};

        async fn post_keyed(t: &TestApp, m: &TestMerchant, key: &str) -> Response<Body> {
            let req = request("create-payment")
                .bearer(&m.key)
                .header("idempotency-key", key)
                .json(&visa(json!(1000)))
                .build();
            create_payment(&t.app, req).await
        }

        async fn payments_of(t: &TestApp, m: &TestMerchant) -> usize {
            let all = shared::store::PaymentFilter::All;
            t.store()
                .list_payments(&m.id, all, 100, None)
                .await
                .unwrap()
                .items
                .len()
        }

        #[tokio::test]
        async fn a_merchant_past_its_limit_waits_for_the_next_second_and_nobody_else_does() {
            let mut t = TestApp::new().await;
            t.app.merchant_write_rate_limit = Some(3);
            let (m, other) = (t.merchant("busy").await, t.merchant("other").await);
            for n in 0..3 {
                let response = post_keyed(&t, &m, &format!("k{n}")).await;
                assert_eq!(parts(&response).0, 201);
            }
            let (refused, metrics) = shared::metrics::measure(post_keyed(&t, &m, "k3")).await;
            assert_eq!(refused.headers()["retry-after"], "1");
            let (status, body) = parts(&refused);
            assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
            assert_eq!(
                metrics.counts.get(&shared::metrics::Counter::RateLimited),
                Some(&1)
            );
            assert_eq!(
                payments_of(&t, &m).await,
                3,
                "the refused request did nothing"
            );
            // Another merchant in the same second is not held back.
            assert_eq!(parts(&post_keyed(&t, &other, "k3").await).0, 201);

            // The next second: the refused request, sent again with its key, is made once.
            t.clock.advance(time::Duration::seconds(1));
            let retried = post_keyed(&t, &m, "k3").await;
            assert_eq!(parts(&retried).0, 201);
            assert!(
                retried.headers().get("idempotent-replayed").is_none(),
                "made, not replayed"
            );
            assert_eq!(payments_of(&t, &m).await, 4);
        }

        /// The counter's increment committed but its answer was lost: the SDK tries again and
        /// counts a second time. The merchant is over-counted within that second (its next
        /// POST is refused), never under-counted, and the request itself goes ahead.
        #[tokio::test]
        async fn a_lost_answer_over_counts_and_never_lets_a_burst_through() {
            let (mut t, proxy) = TestApp::with_faults().await;
            t.app.merchant_write_rate_limit = Some(2);
            let m = t.merchant("acme").await;
            let rule = Rule::on("UpdateItem", Fault::DropResponse).when_body_contains("#RATE");
            proxy.inject(rule.times(1));
            assert_eq!(parts(&post_keyed(&t, &m, "k0").await).0, 201);
            assert_eq!(proxy.faulted("UpdateItem"), 1);
            let (status, body) = parts(&post_keyed(&t, &m, "k1").await);
            assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
            assert_eq!(payments_of(&t, &m).await, 1);
        }

        #[tokio::test]
        async fn an_unreachable_counter_admits_the_request() {
            let (mut t, proxy) = TestApp::with_faults().await;
            t.app.merchant_write_rate_limit = Some(1);
            let m = t.merchant("acme").await;
            proxy.inject(Rule::on("UpdateItem", Fault::Throttle).when_body_contains("#RATE"));
            for n in 0..2 {
                assert_eq!(parts(&post_keyed(&t, &m, &format!("k{n}")).await).0, 201);
            }
            assert!(
                proxy.faulted("UpdateItem") >= 2,
                "the counter was asked and failed"
            );
            assert_eq!(payments_of(&t, &m).await, 2);
        }
    }
}
