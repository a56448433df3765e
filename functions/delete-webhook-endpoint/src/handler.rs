//! `DELETE /webhook_endpoints/{id}`: deletes the endpoint and its secrets and frees its place
//! under the 16-endpoint limit; nothing more is delivered to it. A second delete is 404.

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::domain::{MerchantId, WebhookEndpointId};
use shared::http::request::path_id;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn delete_webhook_endpoint(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| delete(app, &req, merchant))
        .await
}

async fn delete(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, WebhookEndpointId::parse)?;
    if !app.store.delete_endpoint(&merchant, &id).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
    Ok(ApiResponse::ok(
        json!({"id": id.as_str(), "object": "webhook_endpoint", "deleted": true}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::testing::{parts, request, TestApp};

    #[tokio::test]
    async fn deletes_once_and_only_the_merchants_own() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let app = &t.app;
        let delete = |key: String| {
            let req = request("delete-webhook-endpoint")
                .bearer(&key)
                .path_id(e.id.as_str())
                .build();
            async move { parts(&delete_webhook_endpoint(app, req).await) }
        };
        let (status, problem) = delete(other.key.clone()).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        assert!(t
            .store()
            .get_endpoint(&m.id, &e.id)
            .await
            .unwrap()
            .is_some());
        let (status, body) = delete(m.key.clone()).await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"id": e.id.as_str(), "object": "webhook_endpoint", "deleted": true})
            )
        );
        assert!(t
            .store()
            .get_endpoint(&m.id, &e.id)
            .await
            .unwrap()
            .is_none());
        assert_eq!(delete(m.key.clone()).await.0, 404);
    }
}
