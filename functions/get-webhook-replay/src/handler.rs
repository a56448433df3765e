//! One of an endpoint's replays, with how far it got (`status`, `events` so far). Another
//! merchant's, another endpoint's, an unknown and a malformed id all answer the same 404.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookEndpointId, WebhookReplayId};
use shared::http::request::{path_id, path_param};
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn get_webhook_replay(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| get(app, &req, merchant)).await
}

async fn get(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let endpoint = path_id(req, WebhookEndpointId::parse)?;
    let id = path_param(req, "replay_id", WebhookReplayId::parse)?;
    let record = app
        .store
        .get_replay(&merchant, &endpoint, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiResponse::ok(record.replay.resource()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::clock::Clock;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use shared::webhooks::replay::{ReplayRange, WebhookReplay};

    async fn get(t: &TestApp, m: &TestMerchant, endpoint: &str, replay: &str) -> (u16, Value) {
        let req = request("get-webhook-replay")
            .bearer(&m.key)
            .path_id(endpoint)
            .path_param("replay_id", replay)
            .build();
        parts(&get_webhook_replay(&t.app, req).await)
    }

    #[tokio::test]
    async fn the_merchants_own_through_its_endpoint_and_404_for_anyone_else() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let (e2, _) = t.stored_endpoint(&m, "https://example.com/other").await;
        let now = t.clock.now();
        let range = ReplayRange::new(
            shared::domain::Timestamp::from_datetime(now - time::Duration::hours(1)),
            None,
            now,
        )
        .unwrap();
        let replay = WebhookReplay::new(WebhookReplayId::generate(now), &e.id, range, now);
        t.store().create_replay(&m.id, &replay, None).await.unwrap();

        let (status, body) = get(&t, &m, e.id.as_str(), replay.id.as_str()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, replay.resource());
        assert_eq!(body["status"], "running");

        for (who, endpoint, id) in [
            (&other, e.id.as_str(), replay.id.as_str()),
            (&m, e2.id.as_str(), replay.id.as_str()),
            (&m, e.id.as_str(), "whr_0000"),
            (&m, e.id.as_str(), "whr_019ae0000000700080000000000000aa"),
        ] {
            let (status, body) = get(&t, who, endpoint, id).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (404, Some("not_found")),
                "{body}"
            );
        }
    }
}
