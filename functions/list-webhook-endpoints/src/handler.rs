//! `GET /webhook_endpoints`: the merchant's endpoints, newest first, paginated like every list.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, WebhookEndpointId};
use shared::http::list::{page_response, PageRequest};
use shared::http::request::Query;
use shared::http::{ApiError, ApiResponse};
use shared::webhooks::endpoint::WebhookEndpoint;
use shared::App;

const LIST: &str = "webhook_endpoints";

pub async fn list_webhook_endpoints(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(req, &["limit", "cursor"])?;
    let cursors = app.cursor_codec().await?;
    let page_request = PageRequest::parse(&query, cursors, &merchant, LIST)?;
    let after = page_request.after(WebhookEndpointId::parse)?;
    let page = app
        .store
        .list_endpoints(&merchant, page_request.limit, after.as_ref())
        .await?;
    Ok(page_response(
        page,
        WebhookEndpoint::resource,
        cursors,
        &merchant,
        LIST,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn get(t: &TestApp, m: &TestMerchant, query: &str) -> (u16, Value) {
        let req = request("list-webhook-endpoints")
            .bearer(&m.key)
            .query(query)
            .build();
        parts(&list_webhook_endpoints(&t.app, req).await)
    }

    #[tokio::test]
    async fn newest_first_page_by_page_and_only_the_merchants() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let mut made = Vec::new();
        for i in 0..5 {
            t.clock.advance(time::Duration::milliseconds(1));
            let (e, _) = t
                .stored_endpoint(&m, &format!("https://example.com/{i}"))
                .await;
            made.push(e.resource());
        }
        made.reverse();
        let (_, first) = get(&t, &m, "limit=3").await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (_, second) = get(&t, &m, &format!("limit=3&cursor={cursor}")).await;
        let listed: Vec<Value> = first["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["data"].as_array().unwrap())
            .cloned()
            .collect();
        assert_eq!(listed, made);
        assert_eq!(second["has_more"], false);
        assert!(listed.iter().all(|e| e.get("secret").is_none()));
        let (status, theirs) = get(&t, &other, "").await;
        assert_eq!((status, theirs["data"].as_array().unwrap().len()), (200, 0));
        let (status, problem) = get(&t, &other, &format!("cursor={cursor}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
    }
}
