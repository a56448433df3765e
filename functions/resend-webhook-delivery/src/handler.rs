//! `POST /webhook_endpoints/{id}/deliveries/{delivery_id}/retry` (Stripe's "resend"): the
//! delivery is made pending and due now, whatever its status, and the dispatcher's next pass
//! (about a second later) attempts it, within the same per-endpoint limits as every attempt
//! (API.md, "Isolation"). A `failed` delivery gets one attempt more; a pending one is attempted
//! now instead of at its next retry. One an attempt holds right now is left to that attempt.
//! A disabled endpoint is 409 `invalid_state`: it receives nothing until enabled again.
//!
//! This function never sends anything itself and cannot read a signing secret: it only writes
//! the delivery's item (with the idempotency completion, in one transaction).

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, Timestamp, WebhookDeliveryId, WebhookEndpointId};
use shared::http::request::{path_id, path_param, JsonBody};
use shared::http::{ApiError, ApiResponse};
use shared::idempotency::Commit;
use shared::webhooks::endpoint::EndpointStatus;
use shared::App;
use std::sync::Arc;

/// Reads of a delivery that changed under us before it is given up as a lost race (each
/// re-read sees the newer state; two attempts at once are already refused by their claims).
const RACES: usize = 3;

pub async fn resend_webhook_delivery(app: &App, req: Request) -> Response<Body> {
    app.respond_post(&req, |merchant, commit| resend(app, &req, merchant, commit))
        .await
}

async fn resend(
    app: &App,
    req: &Request,
    merchant: MerchantId,
    commit: Arc<Commit>,
) -> Result<ApiResponse, ApiError> {
    let endpoint_id = path_id(req, WebhookEndpointId::parse)?;
    let delivery_id = path_param(req, "delivery_id", WebhookDeliveryId::parse)?;
    JsonBody::parse(req, false, &[])?;
    let endpoint = app
        .store
        .get_endpoint(&merchant, &endpoint_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if endpoint.status == EndpointStatus::Disabled {
        return Err(ApiError::InvalidState(
            "the endpoint is disabled: enable it (POST /webhook_endpoints/{id} with {\"status\":\"enabled\"}) to resend".into(),
        ));
    }
    for _ in 0..RACES {
        let record = app
            .store
            .get_delivery(&merchant, &endpoint_id, &delivery_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let now = Timestamp::from_datetime(app.clock.now());
        if record.in_flight(now) {
            // An attempt is being made right now: that is the new attempt. The completion is
            // written by `respond_post` (no write of ours to carry it).
            tracing::info!(delivery_id = %delivery_id, "resend: an attempt is under way already");
            return Ok(ApiResponse::ok(record.delivery.resource()));
        }
        let mut due = record.delivery.clone();
        due.status = shared::webhooks::delivery::DeliveryStatus::Pending;
        due.next_attempt_at = Some(now);
        let response = ApiResponse::ok(due.resource());
        let resent = app
            .store
            .resend_delivery(&record, now, commit.completion(&response)?)
            .await?;
        if resent.is_some() {
            tracing::info!(delivery_id = %delivery_id, attempts = record.delivery.attempts, "delivery resent: due now");
            return Ok(response);
        }
        // Claimed or recorded between the read and the write: read it again.
    }
    Err(ApiError::InvalidState(
        "the delivery kept changing while it was resent; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::clock::Clock;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use shared::webhooks::delivery::{Answer, Delivery, DeliveryStatus};
    use shared::webhooks::endpoint::WebhookEndpoint;

    async fn post(
        t: &TestApp,
        m: &TestMerchant,
        endpoint: &str,
        delivery: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = request("resend-webhook-delivery")
            .bearer(&m.key)
            .path_id(endpoint)
            .path_param("delivery_id", delivery)
            .without_header("content-type")
            .raw_body("");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        parts(&resend_webhook_delivery(&t.app, req.build()).await)
    }

    async fn stored(
        t: &TestApp,
        m: &TestMerchant,
        e: &WebhookEndpoint,
        d: &Delivery,
    ) -> shared::store::DeliveryRecord {
        t.store()
            .get_delivery(&m.id, &e.id, &d.id)
            .await
            .unwrap()
            .expect("the delivery")
    }

    /// A delivery of a new payment's first event to `endpoint`, with every attempt failed.
    async fn failed_delivery(
        t: &TestApp,
        m: &TestMerchant,
        endpoint: &WebhookEndpoint,
    ) -> Delivery {
        let mut after = t.new_delivery(m, &endpoint.id).await;
        for _ in 0..shared::webhooks::schedule::MAX_ATTEMPTS {
            after = t.attempt_by_hand(m, &after, Answer::Status(500)).await;
        }
        assert_eq!(after.status, DeliveryStatus::Failed);
        after
    }

    #[tokio::test]
    async fn a_failed_delivery_resent_is_pending_and_due_now_and_a_keyed_retry_replays() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let failed = failed_delivery(&t, &m, &e).await;
        t.clock.advance(time::Duration::minutes(1));
        let now = Timestamp::from_datetime(t.clock.now());

        let (status, body) = post(&t, &m, e.id.as_str(), failed.id.as_str(), Some("k1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["attempts"], 10);
        assert_eq!(body["next_attempt_at"], now.to_string());
        let record = stored(&t, &m, &e, &failed).await;
        assert_eq!(record.due, Some(now), "on the dispatcher's index, due now");
        assert_eq!(record.claim, None);
        assert_eq!(record.delivery.resource(), body);

        // The same key again: the same answer, and no second write.
        t.clock.advance(time::Duration::seconds(3));
        let (status, again) = post(&t, &m, e.id.as_str(), failed.id.as_str(), Some("k1")).await;
        assert_eq!((status, &again), (200, &body));
        let still = stored(&t, &m, &e, &failed).await;
        assert_eq!(still.due, Some(now));
    }

    #[tokio::test]
    async fn a_resend_whose_answer_was_lost_is_recognised_by_reading_it_back() {
        use shared::testing::{Fault, Rule};
        let (t, proxy) = TestApp::with_faults().await;
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let failed = failed_delivery(&t, &m, &e).await;
        // The write commits, and every answer the SDK gets for it (its retries included) is
        // an error: only reading the delivery back tells that it was made.
        proxy.inject(Rule::on("TransactWriteItems", Fault::ErrorAfterCommit).times(10));
        let (status, body) = post(&t, &m, e.id.as_str(), failed.id.as_str(), None).await;
        proxy.heal();
        assert!(proxy.faulted("TransactWriteItems") >= 1);
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("pending")),
            "{body}"
        );
        let record = stored(&t, &m, &e, &failed).await;
        assert_eq!(record.delivery.resource(), body);
    }

    #[tokio::test]
    async fn one_an_attempt_holds_is_left_to_that_attempt() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let failed = failed_delivery(&t, &m, &e).await;
        post(&t, &m, e.id.as_str(), failed.id.as_str(), None).await;
        let record = stored(&t, &m, &e, &failed).await;
        let until = Timestamp::from_datetime(t.clock.now() + time::Duration::seconds(30));
        let claim = shared::store::Claim {
            token: "in-flight".into(),
            until,
        };
        assert!(t.store().claim_delivery(&record, &claim).await.unwrap());

        let (status, body) = post(&t, &m, e.id.as_str(), failed.id.as_str(), None).await;
        assert_eq!(status, 200, "{body}");
        let held = stored(&t, &m, &e, &failed).await;
        assert_eq!(
            (held.claim.as_deref(), held.due),
            (Some("in-flight"), Some(until)),
            "the claim is not taken from its holder"
        );
    }

    #[tokio::test]
    async fn a_disabled_endpoint_is_409_and_unknown_or_another_merchants_ids_are_404() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (e, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let failed = failed_delivery(&t, &m, &e).await;
        let (e2, _) = t.stored_endpoint(&m, "https://example.com/other").await;

        assert_eq!(
            post(&t, &other, e.id.as_str(), failed.id.as_str(), None)
                .await
                .0,
            404
        );
        assert_eq!(
            post(&t, &m, e2.id.as_str(), failed.id.as_str(), None)
                .await
                .0,
            404,
            "the delivery is another endpoint's"
        );
        assert_eq!(post(&t, &m, e.id.as_str(), "whd_nope", None).await.0, 404);

        let mut off = e.clone();
        off.status = EndpointStatus::Disabled;
        t.store()
            .replace_endpoint(&m.id, 1, &off, None)
            .await
            .unwrap();
        let (status, body) = post(&t, &m, e.id.as_str(), failed.id.as_str(), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("invalid_state")),
            "{body}"
        );
        let unchanged = stored(&t, &m, &e, &failed).await;
        assert_eq!(unchanged.delivery.status, DeliveryStatus::Failed);
    }
}
