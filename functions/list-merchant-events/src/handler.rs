//! `GET /events`: every event of the merchant's payments, newest first, optionally of one
//! `type`, through an index (never a scan). The cursor names the merchant and the list (with
//! its filter) it continues.

use lambda_http::{Body, Request, Response};
use shared::domain::{Event, EventType, MerchantId};
use shared::http::list::{page_response, PageRequest};
use shared::http::request::Query;
use shared::http::{ApiError, ApiResponse};
use shared::store::events::EventPosition;
use shared::store::EventFilter;
use shared::App;

const PARAMS: &[&str] = &["limit", "cursor", "type"];

pub async fn list_merchant_events(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(req, PARAMS)?;
    let (filter, list) = match query.get("type") {
        None => (EventFilter::All, "events".to_owned()),
        Some(text) => {
            let kind = EventType::parse(text).map_err(|e| ApiError::validation("type", e.0))?;
            (
                EventFilter::Type(kind),
                format!("events?type={}", kind.as_str()),
            )
        }
    };
    let cursors = app.cursor_codec().await?;
    let page_request = PageRequest::parse(&query, cursors, &merchant, &list)?;
    let after = page_request.after(EventPosition::parse)?;
    let page = app
        .store
        .list_merchant_events(&merchant, filter, page_request.limit, after.as_ref())
        .await?;
    Ok(page_response(
        page,
        Event::resource,
        cursors,
        &merchant,
        &list,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::{CaptureMethod, Payment};
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use time::Duration;

    async fn get(t: &TestApp, m: &TestMerchant, query: &str) -> (u16, Value) {
        let req = request("list-merchant-events")
            .bearer(&m.key)
            .query(query)
            .build();
        parts(&list_merchant_events(&t.app, req).await)
    }

    /// Every page of `query`, walked with its cursors.
    async fn walk(t: &TestApp, m: &TestMerchant, query: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("{query}&cursor={c}"),
                None => query.to_owned(),
            };
            let (status, page) = get(t, m, &q).await;
            assert_eq!(status, 200, "{page}");
            events.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => {
                    assert_eq!(page["has_more"], false);
                    return events;
                }
            }
        }
    }

    #[tokio::test]
    async fn every_payments_events_newest_first_filtered_by_type_and_only_the_merchants() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        t.payment(&other, 500, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let mut written = Vec::new();
        for (capture, method) in [
            (CaptureMethod::Automatic, "pm_card_visa"),
            (CaptureMethod::Manual, "pm_card_visa"),
            (CaptureMethod::Automatic, "pm_card_declined"),
        ] {
            t.clock.advance(Duration::milliseconds(1));
            written.push(t.payment(&m, 1000, capture, method).await);
        }
        t.clock.advance(Duration::milliseconds(1));
        t.change(&m, &written[1].id, |p: &Payment, now| {
            Ok((p.capture(None, now)?, None))
        })
        .await;
        for _ in 0..2 {
            t.clock.advance(Duration::milliseconds(1));
            t.reserve_refund(&m, &written[0].id, 100).await;
        }

        let mut expected = Vec::new();
        for p in &written {
            let trail = t
                .store()
                .list_events(&m.id, &p.id, 100, None)
                .await
                .unwrap()
                .items;
            expected.extend(trail.iter().map(|e| e.resource()));
        }
        expected.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
        assert_eq!(expected.len(), 6);
        assert_eq!(
            walk(&t, &m, "limit=2").await,
            expected,
            "newest first, each once"
        );

        let refunded = walk(&t, &m, "limit=1&type=payment.refunded").await;
        assert_eq!(refunded.len(), 2);
        assert!(refunded.iter().all(|e| e["type"] == "payment.refunded"));
        assert_eq!(walk(&t, &m, "type=payment.failed").await.len(), 1);
        assert_eq!(
            walk(&t, &m, "type=payment.canceled").await,
            Vec::<Value>::new()
        );
        assert_eq!(walk(&t, &other, "limit=100").await.len(), 1);
    }

    #[tokio::test]
    async fn bad_filters_and_cursors_are_refused() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        for _ in 0..3 {
            t.payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
                .await;
        }
        let (_, page) = get(&t, &m, "limit=1").await;
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let cases = [
            (
                &m,
                "type=payment.exploded".to_owned(),
                "validation_error",
                Some("type"),
            ),
            (&m, "type=".to_owned(), "validation_error", Some("type")),
            (
                &m,
                "status=succeeded".to_owned(),
                "unknown_field",
                Some("status"),
            ),
            (&m, "limit=0".to_owned(), "validation_error", Some("limit")),
            (
                &other,
                format!("cursor={cursor}"),
                "invalid_cursor",
                Some("cursor"),
            ),
            (
                &m,
                format!("type=payment.succeeded&cursor={cursor}"),
                "invalid_cursor",
                Some("cursor"),
            ),
        ];
        for (merchant, query, code, param) in cases {
            let (status, problem) = get(&t, merchant, &query).await;
            assert_eq!(
                (status, problem["code"].as_str(), problem["param"].as_str()),
                (400, Some(code), param),
                "{query}"
            );
        }
    }
}
