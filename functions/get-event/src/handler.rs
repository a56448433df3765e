//! `GET /events/{id}`: one of the merchant's events, exactly as `GET /events` lists it and as a
//! webhook delivers it. Another merchant's id, an unknown id and a malformed id all answer the
//! same 404.

use lambda_http::{Body, Request, Response};
use shared::domain::{EventId, MerchantId};
use shared::http::request::path_id;
use shared::http::{ApiError, ApiResponse};
use shared::App;

pub async fn get_event(app: &App, req: Request) -> Response<Body> {
    app.respond(&req, |merchant| get(app, &req, merchant)).await
}

async fn get(app: &App, req: &Request, merchant: MerchantId) -> Result<ApiResponse, ApiError> {
    let id = path_id(req, EventId::parse)?;
    let event = app
        .store
        .get_event(&merchant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiResponse::ok(event.resource()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::domain::CaptureMethod;
    use shared::testing::{parts, request, TestApp, TestMerchant};

    async fn get(t: &TestApp, m: &TestMerchant, id: &str) -> (u16, Value) {
        let req = request("get-event").bearer(&m.key).path_id(id).build();
        parts(&get_event(&t.app, req).await)
    }

    #[tokio::test]
    async fn returns_the_merchants_own_event_as_the_trail_shows_it() {
        let t = TestApp::new().await;
        let m = t.merchant("acme").await;
        let other = t.merchant("other").await;
        let p = t
            .payment(&m, 1000, CaptureMethod::Manual, "pm_card_visa")
            .await;
        t.change(&m, &p.id, |p, now| Ok((p.capture(None, now)?, None)))
            .await;
        let trail = t
            .store()
            .list_events(&m.id, &p.id, 100, None)
            .await
            .unwrap()
            .items;
        assert_eq!(trail.len(), 2);
        for event in &trail {
            let (status, body) = get(&t, &m, event.id.as_str()).await;
            assert_eq!(status, 200);
            assert_eq!(body, event.resource());
            assert_eq!(body["object"], "event");
        }
        // Another merchant's, an unknown and a malformed id: the same 404.
        let theirs = trail[0].id.as_str();
        let unknown = shared::domain::EventId::generate(time::OffsetDateTime::now_utc());
        for (merchant, id) in [
            (&other, theirs),
            (&m, unknown.as_str()),
            (&m, "evt_nope"),
            (&m, p.id.as_str()),
        ] {
            let (status, problem) = get(&t, merchant, id).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("not_found")),
                "{id}"
            );
        }
    }
}
