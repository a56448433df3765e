//! One of the merchant's webhook endpoints, never with its secret. Another merchant's id, an
//! unknown id and a malformed id all answer the same 404.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookEndpointId};
use shared::http::request::path_id;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn get_webhook_endpoint(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| get(app, &req, merchant)).await
}

async fn get(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, WebhookEndpointId::parse)?;
    let endpoint = app
        .store
        .get_endpoint(&merchant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiResponse::ok(endpoint.resource()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::testing::{parts, request, TestApp};

    #[tokio::test]
    async fn the_merchants_own_without_secret_and_404_for_anyone_else() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let app = &t.app;
        let get = |key: String, id: String| {
            let req = request("get-webhook-endpoint")
                .bearer(&key)
                .path_id(&id)
                .build();
            async move { parts(&get_webhook_endpoint(app, req).await) }
        };
        let (status, body) = get(m.key.clone(), e.id.to_string()).await;
        assert_eq!((status, body.clone()), (200, e.resource()));
        assert!(body.get("secret").is_none());
        for (key, id) in [
            (other.key.clone(), e.id.to_string()),
            (m.key.clone(), "we_nope".to_owned()),
        ] {
            let (status, problem) = get(key, id).await;
            assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        }
    }
}
