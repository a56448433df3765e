//! `POST /webhook_endpoints/{id}`: changes `url`, `enabled_events`, `description`, `metadata`
//! (replaced whole) or `status` (`enabled`/`disabled`); a field left out (or null) stays. The
//! write is conditioned on the version read, so a change racing another (or the delivery path
//! disabling the endpoint after a 410) is decided again from the fresh state, never lost.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, Timestamp, WebhookEndpointId};
use shared::http::request::{path_id, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::store::StoreError;
use shared::webhooks::endpoint::{fields, WebhookEndpoint};
use shared::App;
use std::sync::Arc;

const FIELDS: &[&str] = &["url", "enabled_events", "description", "metadata", "status"];

/// Re-decisions after a concurrent change before giving up with 503.
const MAX_ATTEMPTS: usize = 20;

pub async fn update_webhook_endpoint(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| update(app, &req, merchant, commit))
        .await
}

async fn update(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, WebhookEndpointId::parse)?;
    let body = JsonBody::parse(req, false, FIELDS)?;
    let url = body.optional("url", |v| fields::url(v, app.webhook_allow_local_urls))?;
    let enabled_events = body.optional("enabled_events", fields::enabled_events)?;
    let description = body.optional("description", fields::description)?;
    let metadata = body.optional("metadata", fields::metadata)?;
    let status = body.optional("status", fields::status)?;
    for _ in 0..MAX_ATTEMPTS {
        let current = app
            .store
            .get_endpoint_versioned(&merchant, &id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let before = current.item;
        let after = WebhookEndpoint {
            url: url
                .as_ref()
                .map_or(before.url.clone(), |u| u.as_str().to_owned()),
            enabled_events: enabled_events
                .clone()
                .unwrap_or(before.enabled_events.clone()),
            description: description.clone().or(before.description.clone()),
            metadata: metadata.clone().unwrap_or(before.metadata.clone()),
            status: status.unwrap_or(before.status),
            updated_at: Timestamp::from_datetime(app.clock.now()),
            ..before
        };
        let response = ApiResponse::ok(after.resource());
        let written = app
            .store
            .replace_endpoint(
                &merchant,
                current.version,
                &after,
                commit.completion(&response)?,
            )
            .await;
        match written {
            Ok(()) => {
                tracing::info!(endpoint_id = %id, status = ?after.status, "webhook endpoint updated");
                return Ok(response);
            }
            Err(StoreError::ConditionFailed | StoreError::Conflict) => {
                tracing::debug!(endpoint_id = %id, "endpoint changed meanwhile; deciding again");
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::ServiceUnavailable(format!(
        "endpoint {id} changed {MAX_ATTEMPTS} times while this request tried to change it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use std::sync::Arc;

    async fn post(t: &TestApp, m: &TestMerchant, id: &str, body: Value) -> (u16, Value) {
        let req = request("update-webhook-endpoint")
            .bearer(&m.key)
            .path_id(id)
            .json(&body)
            .build();
        parts(&update_webhook_endpoint(&t.app, req).await)
    }

    #[tokio::test]
    async fn changes_only_what_is_sent_and_refuses_what_is_bad() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let id = e.id.as_str();

        let (status, body) = post(
            &t,
            &m,
            id,
            json!({"status": "disabled", "description": "paused"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["description"].as_str()),
            (Some("disabled"), Some("paused"))
        );
        assert_eq!(body["url"], "https://example.com/hooks");
        assert_eq!(body["enabled_events"], json!(["*"]));
        let (_, body) = post(&t, &m, id, json!({"enabled_events": ["payment.failed"], "url": "https://hooks.example.org/x", "status": "enabled"})).await;
        assert_eq!(
            (
                body["status"].as_str(),
                body["url"].as_str(),
                body["description"].as_str()
            ),
            (
                Some("enabled"),
                Some("https://hooks.example.org/x"),
                Some("paused")
            )
        );
        assert_eq!(body["enabled_events"], json!(["payment.failed"]));
        let stored = t.store().get_endpoint(&m.id, &e.id).await.unwrap().unwrap();
        assert_eq!(stored.resource(), body);

        for (bad, param) in [
            (json!({"status": "paused"}), "status"),
            (json!({"url": "https://192.168.0.1/x"}), "url"),
            (json!({"enabled_events": []}), "enabled_events"),
        ] {
            let (status, problem) = post(&t, &m, id, bad.clone()).await;
            assert_eq!(
                (status, problem["param"].as_str()),
                (400, Some(param)),
                "{bad}"
            );
        }
        let (status, problem) = post(&t, &m, id, json!({"secret": "whsec_x"})).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("unknown_field"))
        );
        assert_eq!(
            post(&t, &other, id, json!({"status": "disabled"})).await.0,
            404
        );
        assert_eq!(
            t.store().get_endpoint(&m.id, &e.id).await.unwrap().unwrap(),
            stored
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_of_different_fields_are_all_kept() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let changes = [
            json!({"status": "disabled"}),
            json!({"description": "orders"}),
            json!({"enabled_events": ["payment.refunded"]}),
            json!({"metadata": {"team": "billing"}}),
        ];
        let tasks: Vec<_> = changes
            .into_iter()
            .map(|body| {
                let (t, m, id) = (t.clone(), m.clone(), e.id.to_string());
                tokio::spawn(async move { post(&t, &m, &id, body).await.0 })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
        let after = t
            .store()
            .get_endpoint(&m.id, &e.id)
            .await
            .unwrap()
            .unwrap()
            .resource();
        assert_eq!(after["status"], "disabled");
        assert_eq!(after["description"], "orders");
        assert_eq!(after["enabled_events"], json!(["payment.refunded"]));
        assert_eq!(after["metadata"], json!({"team": "billing"}));
    }
}
