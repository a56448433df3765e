//! A payment's audit trail, oldest first, paginated like every list. Every state change wrote
//! exactly one event in the same transaction as the change, with the payment after it as `data`.

use lambda_http::{Body, Request, Response};
use shared::domain::{Event, MerchantId};
use shared::http::list::list_under_payment;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn list_events(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| list(app, &req, merchant))
        .await
}

async fn list(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let merchant_ref = &merchant;
    let fetch = |id, limit, after| async move {
        app.store.list_events(merchant_ref, &id, limit, after).await
    };
    list_under_payment(app, req, &merchant, "events", fetch, Event::resource).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};
    use time::Duration;

    async fn get(t: &TestApp, m: &TestMerchant, id: &str, query: &str) -> (u16, Value) {
        let req = request("list-events")
            .bearer(&m.key)
            .path_id(id)
            .query(query)
            .build();
        parts(&list_events(&t.app, req).await)
    }

    #[tokio::test]
    async fn the_trail_is_complete_oldest_first_and_each_event_carries_the_payment_after_it() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        let mut states = vec![p.resource()];
        t.clock.advance(Duration::milliseconds(1));
        let captured = t
            .change(&m, &p.id, |payment: &shared::domain::Payment, now| {
                Ok((payment.capture(None, now)?, None))
            })
            .await;
        states.push(captured.payment.resource());
        for _ in 0..2 {
            t.clock.advance(Duration::milliseconds(1));
            let refunded = t.reserve_refund(&m, &p.id, 250).await;
            states.push(refunded.payment.resource());
        }

        let (_, first) = get(&t, &m, p.id.as_str(), "limit=3").await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let (_, second) = get(&t, &m, p.id.as_str(), &format!("limit=3&cursor={cursor}")).await;
        let events: Vec<&Value> = first["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["data"].as_array().unwrap())
            .collect();
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "payment.requires_capture",
                "payment.succeeded",
                "payment.refunded",
                "payment.refunded"
            ]
        );
        for (event, state) in events.iter().zip(&states) {
            assert_eq!(event["object"], "event");
            assert_eq!(event["payment_id"], p.id.as_str());
            let mut data = event["data"].clone();
            data.as_object_mut().unwrap().remove("refund");
            assert_eq!(&data, state);
        }
        assert_eq!(events[2]["data"]["refund"]["amount"], 250);

        let (status, problem) = get(&t, &other, p.id.as_str(), "").await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        let (status, problem) = get(&t, &m, "pay_nope", "").await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        let (status, problem) = get(&t, &m, p.id.as_str(), "cursor=forged.cursor").await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor"))
        );
    }

    /// A payment with metadata at its limits and 25 refunds: its 26 events (each carries the
    /// payment) are about 1.3 MB, more than one DynamoDB page (1 MB) and less than one API page
    /// (`PAGE_BODY_BUDGET`). One list call returns all of them.
    #[tokio::test]
    async fn a_trail_larger_than_a_dynamodb_page_is_not_cut_short() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let metadata = shared::testing::metadata_at_limits(1);
        let p = t
            .payment_with(&m, 1000, CaptureMethod::Automatic, "pm_card_visa", metadata)
            .await;
        for _ in 0..25 {
            t.clock.advance(Duration::milliseconds(1));
            t.reserve_refund(&m, &p.id, 1).await;
        }
        let (status, page) = get(&t, &m, p.id.as_str(), "limit=100").await;
        assert_eq!(status, 200);
        assert_eq!(page["data"].as_array().unwrap().len(), 26);
        assert_eq!(
            (&page["has_more"], &page["next_cursor"]),
            (&Value::Bool(false), &Value::Null)
        );
        let (_, page) = get(&t, &m, p.id.as_str(), "limit=25").await;
        assert_eq!(page["data"].as_array().unwrap().len(), 25);
        assert_eq!(page["has_more"], true);
    }
}
