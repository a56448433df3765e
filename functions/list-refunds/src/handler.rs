//! A payment's refunds, newest first, paginated like every list. The payment must be the
//! merchant's own (404 otherwise, like every object route).

use lambda_http::{Body, Request, Response};
use shared::domain::{MerchantId, Refund};
use shared::http::list::list_under_payment;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn list_refunds(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let merchant_ref = &merchant;
    let fetch = |id, limit, after| async move {
        app.store
            .list_refunds(merchant_ref, &id, limit, after)
            .await
    };
    list_under_payment(app, req, &merchant, "refunds", fetch, Refund::resource).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use time::Duration;

    async fn get(t: &TestApp, m: &TestMerchant, id: &str, query: &str) -> (u16, Value) {
        let req = request("list-refunds")
            .bearer(&m.key)
            .path_id(id)
            .query(query)
            .build();
        parts(&list_refunds(&t.app, req).await)
    }

    #[tokio::test]
    async fn pages_through_refunds_newest_first_and_guards_tenancy() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let mut created = Vec::new();
        for _ in 0..5 {
            t.clock.advance(Duration::milliseconds(1));
            let refund = t.reserve_refund(&m, &p.id, 100).await.refund.unwrap();
            created.push(refund.id.to_string());
        }
        created.reverse();

        let (status, first) = get(&t, &m, p.id.as_str(), "limit=3").await;
        assert_eq!(status, 200);
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (_, second) = get(&t, &m, p.id.as_str(), &format!("limit=3&cursor={cursor}")).await;
        assert_eq!(second["has_more"], false);
        let seen: Vec<String> = first["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["data"].as_array().unwrap())
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, created);

        // Another merchant: the payment does not exist for them, and neither does the cursor.
        let (status, problem) = get(&t, &other, p.id.as_str(), "").await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        let (status, problem) = get(&t, &other, p.id.as_str(), &format!("cursor={cursor}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
        // A cursor of one payment's refunds does not continue another's.
        let q = t
            .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
            .await;
        let (status, problem) = get(&t, &m, q.id.as_str(), &format!("cursor={cursor}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
        let (status, problem) = get(&t, &m, p.id.as_str(), "limit=0").await;
        assert_eq!((status, problem["param"].as_str()), (400, Some("limit")));
        let (status, empty) = get(&t, &m, q.id.as_str(), "").await;
        assert_eq!((status, empty["data"].as_array().unwrap().len()), (200, 0));
    }
}
