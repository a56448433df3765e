//! `GET /webhook_endpoints/{id}/deliveries`: the endpoint's deliveries, newest first, optionally
//! in one `status`, paginated like every list (through an index, never a scan). Another
//! merchant's endpoint, an unknown id and a malformed id answer the same 404. The cursor names
//! the merchant and the list (endpoint and filter) it continues.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookDeliveryId, WebhookEndpointId};
use shared::http::list::{page_response, PageRequest};
use shared::http::request::{path_id, Query};
use shared::http::{ApiError, ApiResponse};
use shared::webhooks::delivery::{Delivery, DeliveryStatus};
use shared::App;

const PARAMS: &[&str] = &["limit", "cursor", "status"];

pub async fn list_webhook_deliveries(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let endpoint = path_id(req, WebhookEndpointId::parse)?;
    let query = Query::parse(req, PARAMS)?;
    let status = query
        .get("status")
        .map(|text| DeliveryStatus::parse(text).map_err(|e| ApiError::validation("status", e.0)))
        .transpose()?;
    let list = match status {
        None => format!("webhook_endpoints/{endpoint}/deliveries"),
        Some(status) => format!(
            "webhook_endpoints/{endpoint}/deliveries?status={}",
            status.as_str()
        ),
    };
    let cursors = app.cursor_codec().await?;
    let page_request = PageRequest::parse(&query, cursors, &merchant, &list)?;
    let after = page_request.after(WebhookDeliveryId::parse)?;
    // The endpoint first: another merchant's (or a deleted one's) log is not found, not empty.
    app.store
        .get_endpoint(&merchant, &endpoint)
        .await?
        .ok_or(ApiError::NotFound)?;
    let page = app
        .store
        .list_deliveries(
            &merchant,
            &endpoint,
            status,
            page_request.limit,
            after.as_ref(),
        )
        .await?;
    Ok(page_response(
        page,
        Delivery::resource,
        cursors,
        &merchant,
        &list,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use shared::webhooks::delivery::Answer;
    use shared::webhooks::endpoint::WebhookEndpoint;

    async fn get(t: &TestApp, m: &TestMerchant, id: &str, query: &str) -> (u16, Value) {
        let req = request("list-webhook-deliveries")
            .bearer(&m.key)
            .path_id(id)
            .query(query)
            .build();
        parts(&list_webhook_deliveries(&t.app, req).await)
    }

    /// `n` deliveries to `endpoint`, one per new payment's event; every other one succeeded.
    async fn deliveries(
        t: &TestApp,
        m: &TestMerchant,
        endpoint: &WebhookEndpoint,
        n: usize,
    ) -> Vec<Delivery> {
        let mut made = Vec::new();
        for i in 0..n {
            t.clock.advance(time::Duration::milliseconds(2));
            let delivery = t.new_delivery(m, &endpoint.id).await;
            let answer = if i % 2 == 0 {
                Answer::Status(200)
            } else {
                Answer::Status(500)
            };
            let after = t.attempt_by_hand(m, &delivery, answer).await;
            made.push(after);
        }
        made.reverse(); // newest first
        made
    }

    #[tokio::test]
    async fn newest_first_filtered_by_status_and_only_the_merchants() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let (endpoint, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
        let made = deliveries(&t, &m, &endpoint, 5).await;

        let (status, page) = get(&t, &m, endpoint.id.as_str(), "limit=3").await;
        assert_eq!(status, 200, "{page}");
        let expected: Vec<Value> = made.iter().map(Delivery::resource).collect();
        assert_eq!(page["data"].as_array().unwrap()[..], expected[..3]);
        assert_eq!(page["has_more"], true);
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let (_, rest) = get(
            &t,
            &m,
            endpoint.id.as_str(),
            &format!("limit=3&cursor={cursor}"),
        )
        .await;
        assert_eq!(rest["data"].as_array().unwrap()[..], expected[3..]);
        assert_eq!(rest["has_more"], false);
        let first = &page["data"][0];
        assert_eq!(first["object"], "webhook_delivery");
        assert_eq!(first["endpoint_id"], endpoint.id.as_str());
        assert_eq!(first["attempts"], 1);

        let (_, pending) = get(&t, &m, endpoint.id.as_str(), "status=pending").await;
        let pending_ids: Vec<&str> = pending["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        let expected_pending: Vec<&str> = made
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(pending_ids, expected_pending);
        assert_eq!(pending_ids.len(), 2);
        let (_, succeeded) = get(&t, &m, endpoint.id.as_str(), "status=succeeded").await;
        assert_eq!(succeeded["data"].as_array().unwrap().len(), 3);
        let (_, failed) = get(&t, &m, endpoint.id.as_str(), "status=failed").await;
        assert_eq!(failed["data"].as_array().unwrap().len(), 0);

        // A cursor of the unfiltered list does not continue the filtered one.
        let (status, body) = get(
            &t,
            &m,
            endpoint.id.as_str(),
            &format!("status=pending&cursor={cursor}"),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_cursor"))
        );

        let (status, body) = get(&t, &m, endpoint.id.as_str(), "status=done").await;
        assert_eq!(status, 400);
        assert_eq!(body["param"], "status");

        // Another merchant's endpoint, an unknown and a malformed id: the same 404.
        let (status, _) = get(&t, &other, endpoint.id.as_str(), "").await;
        assert_eq!(status, 404);
        let unknown = WebhookEndpointId::generate(time::OffsetDateTime::now_utc());
        let (status, _) = get(&t, &m, unknown.as_str(), "").await;
        assert_eq!(status, 404);
        let (status, _) = get(&t, &m, "we_nope", "").await;
        assert_eq!(status, 404);
    }
}
