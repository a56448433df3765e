//! `GET /payments`: the merchant's payments, newest first, one page at a time, optionally in one
//! status. The cursor names the merchant and the list (with its filter) it continues, so it
//! cannot be replayed against another merchant or another filter.

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, Payment, PaymentId, PaymentStatus};
use shared::http::list::{page_response, PageRequest};
use shared::http::request::Query;
use shared::http::{ApiError, ApiResponse};
use shared::store::PaymentFilter;
use shared::App;

const PARAMS: &[&str] = &["limit", "cursor", "status"];

pub async fn list_payments(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(req, PARAMS)?;
    let (filter, list) = match query.get("status") {
        None => (PaymentFilter::All, "payments".to_owned()),
        Some(text) => {
            let status =
                PaymentStatus::parse(text).map_err(|e| ApiError::validation("status", e.0))?;
            (
                PaymentFilter::Status(status),
                format!("payments?status={}", status.as_str()),
            )
        }
    };
    let cursors = app.cursor_codec().await?;
    let page_request = PageRequest::parse(&query, cursors, &merchant, &list)?;
    let after = page_request.after(PaymentId::parse)?;
    let page = app
        .store
        .list_payments(&merchant, filter, page_request.limit, after.as_ref())
        .await?;
    Ok(page_response(
        page,
        Payment::resource,
        cursors,
        &merchant,
        &list,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use std::collections::HashSet;
    use time::Duration;

    async fn get(t: &TestApp, m: &TestMerchant, query: &str) -> (u16, Value) {
        let req = request("list-payments").bearer(&m.key).query(query).build();
        parts(&list_payments(&t.app, req).await)
    }

    fn ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn walks_45_payments_in_three_pages_newest_first_each_exactly_once() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let mut created = Vec::new();
        for _ in 0..45 {
            t.clock.advance(Duration::milliseconds(1));
            created.push(
                t.payment(&m, 100, CaptureMethod::Automatic, "pm_card_visa")
                    .await
                    .id
                    .to_string(),
            );
        }
        created.reverse(); // newest first

        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut query = "limit=20".to_owned();
        loop {
            let (status, page) = get(&t, &m, &query).await;
            assert_eq!(status, 200);
            assert_eq!(page["object"], "list");
            sizes.push(page["data"].as_array().unwrap().len());
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    assert_eq!(page["has_more"], true);
                    query = format!("limit=20&cursor={cursor}");
                }
                None => {
                    assert_eq!(page["has_more"], false);
                    break;
                }
            }
        }
        assert_eq!(sizes, vec![20, 20, 5]);
        assert_eq!(seen, created);
    }

    /// DynamoDB stops a query page at 1 MB: with metadata at its limits, 101 payments do not
    /// fit in one, and the list must go on from where DynamoDB stopped, not end early. And 100
    /// such payments (5 MB of JSON) would not fit in a Lambda response: the API's pages stop at
    /// `PAGE_BODY_BUDGET` and say `has_more`, and the walk still sees every payment once.
    #[tokio::test]
    async fn large_payments_walk_exactly_once_across_dynamodb_pages() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let mut created = Vec::new();
        for i in 0..150 {
            t.clock.advance(Duration::milliseconds(1));
            let metadata = shared::testing::metadata_at_limits(i);
            let p = t
                .payment_with(&m, 100, CaptureMethod::Automatic, "pm_card_visa", metadata)
                .await;
            created.push(p.id.to_string());
        }
        created.reverse();
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut query = "limit=100".to_owned();
        loop {
            let req = request("list-payments")
                .bearer(&m.key)
                .query(&query)
                .build();
            let response = list_payments(&t.app, req).await;
            let body_bytes = response.body().len();
            let (status, page) = parts(&response);
            assert_eq!(status, 200);
            let data = page["data"].as_array().unwrap();
            assert!(
                body_bytes <= shared::http::list::PAGE_BODY_BUDGET + 4096,
                "a page of {} payments is {body_bytes} bytes",
                data.len()
            );
            sizes.push(data.len());
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    assert_eq!(page["has_more"], true);
                    query = format!("limit=100&cursor={cursor}");
                }
                None => break,
            }
        }
        assert!(sizes.len() > 2 && sizes.iter().all(|&n| n > 0), "{sizes:?}");
        assert_eq!(seen, created);
    }

    #[tokio::test]
    async fn status_filter_returns_only_that_status_across_pages() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let mut failed = HashSet::new();
        for i in 0..9 {
            t.clock.advance(Duration::milliseconds(1));
            let (capture, token) = match i % 3 {
                0 => (CaptureMethod::Automatic, "pm_card_visa"),
                1 => (CaptureMethod::Manual, "pm_card_visa"),
                _ => (CaptureMethod::Automatic, "pm_card_declined"),
            };
            let p = t.payment(&m, 100, capture, token).await;
            if token == "pm_card_declined" {
                failed.insert(p.id.to_string());
            }
        }
        let (_, first) = get(&t, &m, "status=failed&limit=2").await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (_, second) = get(&t, &m, &format!("status=failed&limit=2&cursor={cursor}")).await;
        assert_eq!(second["has_more"], false);
        let seen: HashSet<String> = ids(&first).into_iter().chain(ids(&second)).collect();
        assert_eq!(seen, failed);
        for p in first["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["data"].as_array().unwrap())
        {
            assert_eq!(p["status"], "failed");
        }
        // A cursor of the filtered list does not continue the unfiltered one.
        let (status, problem) = get(&t, &m, &format!("limit=2&cursor={cursor}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
        let (_, requires_capture) = get(&t, &m, "status=requires_capture").await;
        assert_eq!(ids(&requires_capture).len(), 3);
    }

    #[tokio::test]
    async fn merchants_see_only_their_own_payments_and_cursors() {
        let t = TestApp::new().await;
        let a = t.merchant("a").await;
        let b = t.merchant("b").await;
        for _ in 0..3 {
            t.payment(&a, 100, CaptureMethod::Automatic, "pm_card_visa")
                .await;
        }
        let (_, a_page) = get(&t, &a, "limit=1").await;
        assert_eq!(ids(&a_page).len(), 1);
        let (status, b_page) = get(&t, &b, "").await;
        assert_eq!(status, 200);
        assert_eq!(b_page["data"], serde_json::json!([]));
        assert_eq!(b_page["next_cursor"], Value::Null);

        let a_cursor = a_page["next_cursor"].as_str().unwrap();
        let (status, problem) = get(&t, &b, &format!("cursor={a_cursor}")).await;
        assert_eq!(
            (status, problem["code"].as_str(), problem["param"].as_str()),
            (400, Some("invalid_cursor"), Some("cursor"))
        );
    }

    #[tokio::test]
    async fn bad_query_parameters_get_the_documented_problem() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        t.payment(&m, 100, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let (_, page) = get(&t, &m, "limit=1").await;
        assert_eq!(page["has_more"], false);
        t.payment(&m, 100, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let (_, page) = get(&t, &m, "limit=1").await;
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let mut forged = cursor.clone();
        forged.replace_range(5..6, if &cursor[5..6] == "A" { "B" } else { "A" });
        let cases = [
            ("limit=0", "validation_error", Some("limit")),
            ("limit=101", "validation_error", Some("limit")),
            ("limit=-1", "validation_error", Some("limit")),
            ("limit=ten", "validation_error", Some("limit")),
            ("limit=1.5", "validation_error", Some("limit")),
            ("status=pending", "validation_error", Some("status")),
            ("status=SUCCEEDED", "validation_error", Some("status")),
            ("cursor=abc", "invalid_cursor", Some("cursor")),
            ("cursor=", "invalid_cursor", Some("cursor")),
            (
                &format!("cursor={forged}"),
                "invalid_cursor",
                Some("cursor"),
            ),
            (
                "starting_after=pay_1",
                "unknown_field",
                Some("starting_after"),
            ),
        ];
        for (query, code, param) in cases {
            let req = request("list-payments").bearer(&m.key).query(query).build();
            let response = list_payments(&t.app, req).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let (status, problem) = parts(&response);
            assert_eq!(
                (status, problem["code"].as_str(), problem["param"].as_str()),
                (400, Some(code), param),
                "{query}"
            );
        }
    }
}
