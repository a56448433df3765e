//! `POST /webhook_endpoints/{id}/replay` with `{"since": …, "until": …}`: the merchant's events
//! created in `[since, until)` that the endpoint subscribes to, delivered to it again, oldest
//! first, each as a new delivery (API.md, "Resend and replay"). `until` defaults to now; the
//! range is at most 90 days.
//!
//! The request only records the replay (202, `running`); the dispatcher creates its deliveries
//! a step at a time, as fast as the endpoint takes them (`webhook_delivery::replay`), and
//! `GET /webhook_endpoints/{id}/replays/{replay_id}` shows how far it got. A disabled endpoint
//! is 409 `invalid_state`, as for a resend: it receives nothing until enabled again.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookEndpointId, WebhookReplayId};
use shared::http::request::{path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::webhooks::endpoint::EndpointStatus;
use shared::webhooks::replay::{self, ReplayRange, WebhookReplay};
use shared::App;
use std::sync::Arc;

const FIELDS: &[&str] = &["since", "until"];

pub async fn create_webhook_replay(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| create(app, &req, merchant, commit))
        .await
}

async fn create(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let endpoint_id = path_id(req, WebhookEndpointId::parse)?;
    let body = JsonBody::parse(req, true, FIELDS)?;
    let now = app.clock.now();
    let since = body.required("since", replay::instant)?;
    let until = body.optional("until", replay::instant)?;
    let range = ReplayRange::new(since, until, now)
        .map_err(|(field, err)| ApiError::validation(field, err.0))?;
    let endpoint = app
        .store
        .get_endpoint(&merchant, &endpoint_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if endpoint.status == EndpointStatus::Disabled {
        return Err(ApiError::InvalidState(
            "the endpoint is disabled: enable it (POST /webhook_endpoints/{id} with {\"status\":\"enabled\"}) to replay events to it".into(),
        ));
    }
    // With an idempotency key, every retry of the request names the same replay.
    let id = commit.new_id(WebhookReplayId::from_time_ordered_hex, || {
        WebhookReplayId::generate(now)
    })?;
    let replay = WebhookReplay::new(id, &endpoint.id, range, now);
    let response = ApiResponse::accepted(replay.resource());
    app.store
        .create_replay(&merchant, &replay, commit.completion(&response)?)
        .await?;
    tracing::info!(
        replay_id = %replay.id,
        endpoint_id = %endpoint.id,
        since = %replay.since,
        until = %replay.until,
        "webhook replay created"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::clock::Clock;
    use shared::domain::Timestamp;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use shared::webhooks::replay::ReplayStatus;

    async fn post(
        t: &TestApp,
        m: &TestMerchant,
        endpoint: &str,
        body: Value,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = request("create-webhook-replay")
            .bearer(&m.key)
            .path_id(endpoint)
            .json(&body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        parts(&create_webhook_replay(&t.app, req.build()).await)
    }

    #[tokio::test]
    async fn a_replay_is_recorded_running_and_a_keyed_retry_names_the_same_one() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let body = json!({"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T12:00:00+01:00"});
        let (status, replay) = post(&t, &m, e.id.as_str(), body.clone(), Some("r1")).await;
        assert_eq!(status, 202, "{replay}");
        assert_eq!(replay["object"], "webhook_replay");
        assert_eq!(replay["endpoint_id"], e.id.as_str());
        assert_eq!(replay["since"], "2026-11-20T00:00:00.000Z");
        assert_eq!(replay["until"], "2026-11-21T11:00:00.000Z");
        assert_eq!(
            (replay["status"].as_str(), replay["events"].as_u64()),
            (Some("running"), Some(0))
        );
        let id = WebhookReplayId::parse(replay["id"].as_str().unwrap()).unwrap();
        let stored = t
            .store()
            .get_replay(&m.id, &e.id, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.replay.resource(), replay);
        assert_eq!(stored.replay.status, ReplayStatus::Running);

        t.clock.advance(time::Duration::seconds(2));
        let (status, again) = post(&t, &m, e.id.as_str(), body.clone(), Some("r1")).await;
        assert_eq!(
            (status, &again),
            (202, &replay),
            "the same replay, not a second"
        );
        let (status, other) = post(&t, &m, e.id.as_str(), body, None).await;
        assert_eq!(status, 202);
        assert_ne!(other["id"], replay["id"], "without a key, a new replay");
    }

    #[tokio::test]
    async fn until_defaults_to_now_and_bad_ranges_are_refused_naming_the_field() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let now = Timestamp::from_datetime(t.clock.now());
        let day_ago = Timestamp::from_datetime(t.clock.now() - time::Duration::days(1));
        let (status, replay) = post(
            &t,
            &m,
            e.id.as_str(),
            json!({"since": day_ago.to_string()}),
            None,
        )
        .await;
        assert_eq!(status, 202, "{replay}");
        assert_eq!(replay["until"], now.to_string());

        let long_ago = Timestamp::from_datetime(t.clock.now() - time::Duration::days(91));
        for (body, param) in [
            (json!({}), "since"),
            (json!({"since": null}), "since"),
            (json!({"since": "last week"}), "since"),
            (json!({"since": 1_764_547_200}), "since"),
            (json!({"since": long_ago.to_string()}), "since"),
            (
                json!({"since": now.to_string(), "until": day_ago.to_string()}),
                "since",
            ),
            (
                json!({"since": now.to_string(), "until": now.to_string()}),
                "since",
            ),
            (
                json!({"since": day_ago.to_string(), "until": "tomorrow"}),
                "until",
            ),
            (
                json!({"since": day_ago.to_string(), "events": ["*"]}),
                "events",
            ),
        ] {
            let (status, problem) = post(&t, &m, e.id.as_str(), body.clone(), None).await;
            assert_eq!(status, 400, "{body}: {problem}");
            assert_eq!(problem["param"], param, "{body}: {problem}");
        }
    }

    #[tokio::test]
    async fn another_merchants_endpoint_is_404_and_a_disabled_one_409() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let body = json!({"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T00:00:00Z"});
        for (who, endpoint) in [(&other, e.id.as_str()), (&m, "we_nope")] {
            let (status, problem) = post(&t, who, endpoint, body.clone(), None).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("not_found")),
                "{problem}"
            );
        }
        let mut disabled = e.clone();
        disabled.status = EndpointStatus::Disabled;
        t.store()
            .replace_endpoint(&m.id, 1, &disabled, None)
            .await
            .unwrap();
        let (status, problem) = post(&t, &m, e.id.as_str(), body, None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("invalid_state")),
            "{problem}"
        );
    }
}
