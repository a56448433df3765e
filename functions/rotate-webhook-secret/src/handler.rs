//! `POST /webhook_endpoints/{id}/rotate_secret`: a new signing secret, shown in this response
//! only; the previous one keeps signing beside it for 24 h, so a receiver can switch without
//! missing a delivery. With an Idempotency-Key, a retry replays the secret that was made.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, Timestamp, WebhookEndpointId};
use shared::http::request::{path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::webhooks::signing::SigningSecret;
use shared::App;
use std::sync::Arc;

pub async fn rotate_webhook_secret(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| rotate(app, &req, merchant, commit))
        .await
}

async fn rotate(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, WebhookEndpointId::parse)?;
    JsonBody::parse(req, false, &[])?;
    let endpoint = app
        .store
        .get_endpoint(&merchant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (secret, text) = SigningSecret::generate()
        .map_err(|e| ApiError::Internal(format!("no randomness for a secret: {e}")))?;
    // The secret goes in the body as sent, and sealed in the idempotency record (`seal`).
    let response = ApiResponse::ok(endpoint.resource()).with_secret("secret", text);
    let now = Timestamp::from_datetime(app.clock.now());
    let rotated = app
        .store
        .rotate_secret(&merchant, &id, &secret, now, commit.completion(&response)?)
        .await?;
    if !rotated {
        // Deleted between the read and the rotation.
        return Err(ApiError::NotFound);
    }
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn post(t: &TestApp, m: &TestMerchant, id: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = request("rotate-webhook-secret")
            .bearer(&m.key)
            .path_id(id)
            .without_header("content-type")
            .raw_body("");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        parts(&rotate_webhook_secret(&t.app, req.build()).await)
    }

    #[tokio::test]
    async fn both_secrets_sign_for_a_day_and_a_keyed_retry_replays_the_new_one() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, old) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let (status, body) = post(&t, &m, e.id.as_str(), Some("rotate-1")).await;
        assert_eq!(status, 200, "{body}");
        let new = SigningSecret::parse(body["secret"].as_str().unwrap()).unwrap();
        assert_ne!(new, old);
        let now = || Timestamp::from_datetime(shared::clock::Clock::now(t.clock.as_ref()));
        assert_eq!(
            t.store()
                .endpoint_secrets(&m.id, &e.id, now())
                .await
                .unwrap(),
            [new.clone(), old.clone()]
        );

        let (status, again) = post(&t, &m, e.id.as_str(), Some("rotate-1")).await;
        assert_eq!(
            (status, again["secret"].clone()),
            (200, body["secret"].clone()),
            "replayed"
        );
        assert_eq!(
            t.store()
                .endpoint_secrets(&m.id, &e.id, now())
                .await
                .unwrap()
                .len(),
            2,
            "not rotated twice"
        );

        t.clock.advance(time::Duration::hours(24));
        assert_eq!(
            t.store()
                .endpoint_secrets(&m.id, &e.id, now())
                .await
                .unwrap(),
            [new]
        );
        assert_eq!(post(&t, &other, e.id.as_str(), None).await.0, 404);
    }
}
