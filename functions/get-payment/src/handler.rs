//! `GET /payments/{id}`: one of the merchant's payments. Another merchant's id, an unknown id
//! and a malformed id all answer the same 404: nothing tells them apart.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, PaymentId};
use shared::http::request::path_id;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn get_payment(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| get(app, &req, merchant)).await
}

async fn get(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, PaymentId::parse)?;
    let payment = app
        .store
        .get_payment(&merchant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiResponse::ok(payment.resource()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::CaptureMethod;
    use shared::store::Store;
    use shared::testing::{dynamodb_client, parts, request, store_without_table, TestApp};
    use time::Duration;

    #[tokio::test]
    async fn returns_the_merchants_own_payment() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let payment = t
            .payment(&m, 2500, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let req = request("get-payment")
            .bearer(&m.key)
            .path_id(payment.id.as_str())
            .build();
        let response = get_payment(&t.app, req).await;
        assert_eq!(response.headers()["content-type"], "application/json");
        let (status, body) = parts(&response);
        assert_eq!(status, 200);
        assert_eq!(body, payment.resource());
    }

    #[tokio::test]
    async fn unknown_malformed_and_foreign_ids_are_not_found() {
        let t = TestApp::new().await;
        let a = t.merchant("a").await;
        let b = t.merchant("b").await;
        let theirs = t
            .payment(&a, 2500, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let unknown = PaymentId::generate(time::OffsetDateTime::now_utc());
        for id in [
            theirs.id.as_str(),
            unknown.as_str(),
            "pay_123",
            "not-an-id",
            "re_0123456789abcdef0123456789abcdef",
        ] {
            let req = request("get-payment").bearer(&b.key).path_id(id).build();
            let response = get_payment(&t.app, req).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let (status, problem) = parts(&response);
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("not_found")),
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn a_revoked_key_stops_working_once_the_cache_window_has_passed() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let payment = t
            .payment(&m, 2500, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let get = || {
            request("get-payment")
                .bearer(&m.key)
                .path_id(payment.id.as_str())
                .build()
        };
        assert_eq!(parts(&get_payment(&t.app, get()).await).0, 200);

        let prefix = &m.key[..12];
        let now = shared::domain::Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        t.store().revoke_api_key(&m.id, prefix, now).await.unwrap();
        // Within the window the warm container may still trust its cached lookup...
        t.clock.advance(Duration::seconds(30));
        assert_eq!(parts(&get_payment(&t.app, get()).await).0, 200);
        // ...and once it has passed, the key is refused.
        t.clock.advance(Duration::seconds(31));
        let response = get_payment(&t.app, get()).await;
        let (status, problem) = parts(&response);
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthenticated"))
        );
        // A container that never saw the key refuses it at once.
        let cold = TestApp::on_store(t.store().clone());
        assert_eq!(parts(&get_payment(&cold.app, get()).await).0, 401);
    }

    #[tokio::test]
    async fn a_failing_datastore_never_leaks_internals() {
        // A table that does not exist: DynamoDB answers ResourceNotFoundException.
        let missing = store_without_table();
        // Nothing listens on port 9: the connection is refused.
        let unreachable = Store::new(
            dynamodb_client("http://127.0.0.1:9"),
            "payments-unreachable-xyz",
        );
        for (store, status, code) in [
            (missing, 500, "internal_error"),
            (unreachable, 503, "service_unavailable"),
        ] {
            let t = TestApp::on_store(store);
            let req = request("get-payment")
                .bearer(&format!("sk_{}", "1".repeat(48)))
                .path_id(PaymentId::generate(time::OffsetDateTime::now_utc()).as_str())
                .build();
            let response = get_payment(&t.app, req).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let text = String::from_utf8(response.body().to_vec()).unwrap();
            for secret in ["payments-", "Exception", "dynamodb", "127.0.0.1", "sk_"] {
                assert!(!text.contains(secret), "{text} leaks {secret}");
            }
            let (got, problem) = parts(&response);
            assert_eq!((got, problem["code"].as_str()), (status, Some(code)));
            let generic = if status == 500 {
                "an internal error occurred"
            } else {
                "the service is temporarily unavailable; retry later"
            };
            assert_eq!(problem["detail"], generic);
            if status == 503 {
                assert_eq!(response.headers()["retry-after"], "1");
            }
        }
    }
}
