//! `POST /payments`: validates the request into a [`NewPayment`], asks the processor, and
//! records the payment with its first event in one transaction. A decline is still a 201: the
//! attempt is recorded as a `failed` payment.

use lambda_http::{Body, Request, Response};
use shared::domain::{
    Amount, CaptureMethod, Currency, Description, Event, MerchantId, Metadata, NewPayment, Payment,
};
use shared::http::request::{json, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::App;

const FIELDS: &[&str] = &[
    "amount",
    "currency",
    "payment_method",
    "capture_method",
    "description",
    "metadata",
];

pub async fn create_payment(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| create(app, &req, merchant))
        .await
}

fn parse(req: &Request) -> Result<NewPayment, ApiError> {
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
    })
}

async fn create(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let request = parse(req)?;
    let authorization = app
        .processor
        .authorize(&request.payment_method, request.amount, request.currency)
        .await?;
    let now = app.clock.now();
    let payment = Payment::create(request, authorization, now);
    let event = Event::status_change(&payment, now);
    app.store
        .create_payment(&merchant, &payment, &event)
        .await?;
    tracing::info!(payment_id = %payment.id, status = payment.status.as_str(), "payment created");
    Ok(ApiResponse::created(payment.resource()))
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
        let t = TestApp::new().await;
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
        }
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
}
