//! Registers a webhook endpoint for the merchant: https to a public host (see
//! `shared::webhooks::destination`), the event types it wants, at most 16 per merchant. The
//! response is the one place, with a rotation's, that shows the signing secret.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookEndpointId};
use shared::http::request::JsonBody;
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::store::StoreError;
use shared::webhooks::endpoint::{
    fields, NewEndpoint, WebhookEndpoint, MAX_ENDPOINTS_PER_MERCHANT,
};
use shared::webhooks::signing::SigningSecret;
use shared::App;
use std::sync::Arc;

const FIELDS: &[&str] = &["url", "enabled_events", "description", "metadata"];

pub async fn create_webhook_endpoint(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| create(app, &req, merchant, commit))
        .await
}

fn parse(app: &App, req: &Request) -> Result<NewEndpoint, ApiError> {
    let body = JsonBody::parse(req, true, FIELDS)?;
    Ok(NewEndpoint {
        url: body.required("url", |v| fields::url(v, app.webhook_allow_local_urls))?,
        enabled_events: body.required("enabled_events", fields::enabled_events)?,
        description: body.optional("description", fields::description)?,
        metadata: body
            .optional("metadata", fields::metadata)?
            .unwrap_or_default(),
    })
}

async fn create(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let request = parse(app, req)?;
    let now = app.clock.now();
    // With an idempotency key, every retry of the request names the same endpoint.
    let id = commit.new_id(WebhookEndpointId::from_time_ordered_hex, || {
        WebhookEndpointId::generate(now)
    })?;
    let endpoint = WebhookEndpoint::create(id, request, now);
    let (secret, text) = SigningSecret::generate()
        .map_err(|e| ApiError::Internal(format!("no randomness for a secret: {e}")))?;
    // The secret goes in the body as sent, and sealed in the idempotency record (`seal`).
    let response = ApiResponse::created(endpoint.resource()).with_secret("secret", text);
    let stored = app
        .store
        .create_endpoint(&merchant, &endpoint, &secret, commit.completion(&response)?)
        .await;
    match stored {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            return Err(ApiError::validation(
                "url",
                format!("a merchant has at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints; delete one first"),
            ))
        }
        Err(err) => return Err(err.into()),
    }
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::clock::Clock;
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn post(t: &TestApp, m: &TestMerchant, body: Value) -> (u16, Value) {
        let req = request("create-webhook-endpoint")
            .bearer(&m.key)
            .json(&body)
            .build();
        parts(&create_webhook_endpoint(&t.app, req).await)
    }

    fn hook(url: &str) -> Value {
        json!({"url": url, "enabled_events": ["payment.succeeded", "payment.refunded"]})
    }

    #[tokio::test]
    async fn creates_an_enabled_endpoint_and_shows_its_secret_once() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (status, body) = post(&t, &m, hook("https://example.com/hooks")).await;
        assert_eq!(status, 201, "{body}");
        assert!(body["id"].as_str().unwrap().starts_with("we_"));
        assert_eq!(body["object"], "webhook_endpoint");
        assert_eq!(body["status"], "enabled");
        assert_eq!(body["url"], "https://example.com/hooks");
        assert_eq!(
            body["enabled_events"],
            json!(["payment.succeeded", "payment.refunded"])
        );
        let secret = body["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
        let id = WebhookEndpointId::parse(body["id"].as_str().unwrap()).unwrap();
        let stored = t.store().get_endpoint(&m.id, &id).await.unwrap().unwrap();
        assert!(
            !stored.resource().to_string().contains(secret),
            "the endpoint item has no secret"
        );
        let now =
            shared::domain::Timestamp::from_datetime(shared::clock::Clock::now(t.clock.as_ref()));
        let signing = t.store().endpoint_secrets(&m.id, &id, now).await.unwrap();
        assert_eq!(signing, [SigningSecret::parse(secret).unwrap()]);
    }

    #[tokio::test]
    async fn a_keyed_retry_shows_the_same_secret_which_the_table_keeps_only_sealed() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let keyed = |api_key: &str| {
            request("create-webhook-endpoint")
                .bearer(api_key)
                .header("idempotency-key", "hook-1")
                .json(&hook("https://example.com/hooks"))
                .build()
        };
        let (status, first) = parts(&create_webhook_endpoint(&t.app, keyed(&m.key)).await);
        assert_eq!(status, 201, "{first}");
        let secret = first["secret"].as_str().unwrap().to_owned();
        let (status, again) = parts(&create_webhook_endpoint(&t.app, keyed(&m.key)).await);
        assert_eq!(
            (status, &again),
            (201, &first),
            "the same body, secret included"
        );

        // The idempotency record holds the body without the secret, and the secret sealed.
        let record = t
            .store()
            .client()
            .get_item()
            .table_name(t.store().table())
            .key(
                "PK",
                aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "MERCHANT#{}#IDEMPOTENCY#hook-1",
                    m.id
                )),
            )
            .key(
                "SK",
                aws_sdk_dynamodb::types::AttributeValue::S("IDEMPOTENCY".into()),
            )
            .send()
            .await
            .unwrap()
            .item
            .expect("the record");
        let text = format!("{record:?}");
        let random_part = &secret["whsec_".len()..];
        assert!(!text.contains(random_part), "no plaintext secret in {text}");
        assert!(record.contains_key("sealed_secret"));

        // Another of the merchant's keys cannot open it: 422, and the secret is not shown.
        let second = shared::http::auth::NewApiKey::generate(&m.id, t.clock.now()).unwrap();
        t.store().add_api_key(&second.record).await.unwrap();
        let (status, problem) =
            parts(&create_webhook_endpoint(&t.app, keyed(&second.secret)).await);
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "{problem}"
        );
        assert!(!problem.to_string().contains(random_part));
    }

    #[tokio::test]
    async fn bad_urls_and_event_lists_and_the_seventeenth_are_refused() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let cases = [
            (hook("http://example.com/hooks"), "url"),
            (hook("https://10.0.0.5/hooks"), "url"),
            (hook("https://169.254.169.254/latest"), "url"),
            (hook("http://127.0.0.1:8123/hooks"), "url"),
            (
                json!({"url": "https://example.com", "enabled_events": []}),
                "enabled_events",
            ),
            (
                json!({"url": "https://example.com", "enabled_events": ["payment.exploded"]}),
                "enabled_events",
            ),
            (
                json!({"url": "https://example.com", "enabled_events": "*"}),
                "enabled_events",
            ),
            (json!({"url": "https://example.com"}), "enabled_events"),
        ];
        for (body, param) in cases {
            let (status, problem) = post(&t, &m, body.clone()).await;
            assert_eq!(
                (status, problem["code"].as_str(), problem["param"].as_str()),
                (400, Some("validation_error"), Some(param)),
                "{body}"
            );
        }
        for _ in 0..MAX_ENDPOINTS_PER_MERCHANT {
            assert_eq!(post(&t, &m, hook("https://example.com/hooks")).await.0, 201);
        }
        let (status, problem) = post(&t, &m, hook("https://example.com/hooks")).await;
        assert_eq!(
            (status, problem["code"].as_str(), problem["param"].as_str()),
            (400, Some("validation_error"), Some("url"))
        );
    }

    #[tokio::test]
    async fn the_local_stack_alone_may_name_this_machine() {
        let mut t = TestApp::new().await;
        t.app.webhook_allow_local_urls = true;
        let m = t.merchant("acme").await;
        let (status, body) = post(&t, &m, hook("http://127.0.0.1:8123/hooks")).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            post(&t, &m, hook("http://10.0.0.1:8123/hooks")).await.0,
            400
        );
    }
}
