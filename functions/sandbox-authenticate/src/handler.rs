//! The sandbox's customer authentication page (API.md, "Sandbox"): what a card's 3-D Secure
//! page is to a real processor. `GET ?token=…` shows the payment and two buttons; they `POST`
//! the same URL with `outcome=succeed` or `outcome=fail` (form-encoded). The answer is recorded
//! on the sandbox's side first (`store::sandbox`: only a waiting authorization is decided, so a
//! second click or a retry finds the same answer), then reported as a signed processor event to
//! `POST /processor_events/sandbox` — the route and verification a real processor's events
//! take, and the only way the payment itself changes. Then the customer goes back to the
//! payment's `return_url` (303), or sees that it is done.
//!
//! If the report cannot be delivered, the page says so (503) and a retry of the same answer
//! sends the same event again (its id is derived from the reference and the outcome, so it is
//! applied once). A wrong or missing token is 404, as for an unknown payment.

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::domain::{PaymentId, Settlement};
use shared::http::request::{api_base, body_bytes, path_id, request_id};
use shared::http::ApiError;
use shared::processor::sandbox::{
    authentication_failed, reference_for, SandboxAuthorization, SandboxState,
};
use shared::App;
use webhook_delivery::sandbox_report::Reporter;

/// The page's dependency beyond the app: how the sandbox reports (`sandbox_report`).
pub struct Page {
    reporter: Reporter,
}

impl Page {
    pub fn new(reporter: Reporter) -> Self {
        Self { reporter }
    }
}

pub async fn sandbox_authenticate(app: &App, page: &Page, req: Request) -> Response<Body> {
    let request_id = request_id(&req);
    match answer(app, page, &req).await {
        Ok(response) => response,
        Err(err) => {
            if err.is_server_error() {
                tracing::error!(request_id, error = %err, "sandbox page failed");
            }
            err.to_response(&request_id)
        }
    }
}

async fn answer(app: &App, page: &Page, req: &Request) -> Result<Response<Body>, ApiError> {
    let id = path_id(req, PaymentId::parse)?;
    let token = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let reference = reference_for(&id);
    let record = app
        .store
        .sandbox_authorization(&reference)
        .await?
        .filter(|record| record.admits(&token))
        .ok_or(ApiError::NotFound)?;
    if req.method() != "POST" {
        return Ok(html(req, StatusCode::OK, &show(&record)));
    }
    let (wanted, settlement) = outcome(req)?;
    let decided = app
        .store
        .decide_sandbox_authorization(
            &reference,
            SandboxState::RequiresAction,
            wanted,
            settlement_failure(&settlement),
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    if decided.state != wanted {
        return Err(ApiError::InvalidState(format!(
            "the customer already answered: {}",
            state_word(decided.state)
        )));
    }
    page.reporter
        .report(
            &app.store,
            &api_base(req),
            &decided,
            &settlement,
            app.clock.now(),
        )
        .await?;
    tracing::info!(payment_id = %decided.payment_id, reference, outcome = state_word(wanted), "sandbox authentication answered");
    Ok(match &decided.return_url {
        Some(back) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, back.as_str())
            .header("x-request-id", request_id(req))
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::Empty)
            .unwrap_or_default(),
        None => html(req, StatusCode::OK, &show(&decided)),
    })
}

/// The form's `outcome`.
fn outcome(req: &Request) -> Result<(SandboxState, Settlement), ApiError> {
    let outcome = url::form_urlencoded::parse(body_bytes(req.body()))
        .find(|(name, _)| name == "outcome")
        .map(|(_, value)| value.into_owned());
    match outcome.as_deref() {
        Some("succeed") => Ok((SandboxState::Approved, Settlement::Approved)),
        Some("fail") => Ok((
            SandboxState::Declined,
            Settlement::Declined(authentication_failed()),
        )),
        _ => Err(ApiError::validation(
            "outcome",
            "must be 'succeed' or 'fail'",
        )),
    }
}

fn settlement_failure(settlement: &Settlement) -> Option<&shared::domain::Failure> {
    match settlement {
        Settlement::Approved => None,
        Settlement::Declined(failure) => Some(failure),
    }
}

fn state_word(state: SandboxState) -> &'static str {
    match state {
        SandboxState::RequiresAction => "waiting",
        SandboxState::Processing => "processing",
        SandboxState::Approved => "authenticated",
        SandboxState::Declined => "failed",
    }
}

/// The page: the payment, and the buttons while it waits.
fn show(record: &SandboxAuthorization) -> String {
    let buttons = match record.state {
        SandboxState::RequiresAction => concat!(
            r#"<form method="post"><button name="outcome" value="succeed">Authenticate</button> "#,
            r#"<button name="outcome" value="fail">Fail</button></form>"#
        )
        .to_owned(),
        done => format!("<p>Answered: {}.</p>", state_word(done)),
    };
    format!(
        concat!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>Sandbox authentication</title></head><body>",
            "<h1>Sandbox authentication</h1>",
            "<p>Payment <code>{payment}</code>: {amount} {currency} (minor units).</p>{buttons}",
            "</body></html>"
        ),
        payment = escape(record.payment_id.as_str()),
        amount = record.amount.minor_units(),
        currency = escape(record.currency.code()),
        buttons = buttons,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(req: &Request, status: StatusCode, page: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        // The page is the customer's only: no framing by others (clickjacking).
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'none'; form-action 'self'",
        )
        .header("x-request-id", request_id(req))
        .body(Body::Text(page.to_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use shared::domain::{CaptureMethod, Payment, PaymentStatus};
    use shared::processor::events::SANDBOX_SIGNATURE_HEADER;
    use shared::testing::{request, TestApp, TestMerchant};
    use std::sync::Arc;
    use std::sync::Mutex;
    use webhook_delivery::sandbox_report::EventSink;

    /// The processor-event route's own handler, called as the HTTP sink would reach it: the
    /// event goes through its signature check and `settlement`, for real.
    struct Route {
        app: Arc<TestApp>,
        refuse: bool,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl EventSink for Route {
        async fn deliver(&self, url: &str, signature: &str, body: &str) -> Result<(), String> {
            self.sent.lock().unwrap().push(url.to_owned());
            if self.refuse {
                return Err("refused".into());
            }
            let req = request("processor-events")
                .path_param("processor", "sandbox")
                .header(SANDBOX_SIGNATURE_HEADER, signature)
                .raw_body(body)
                .build();
            let verifier = processor_events::Verifier::default();
            let response = processor_events::processor_events(&self.app.app, &verifier, req).await;
            match response.status().as_u16() {
                200 => Ok(()),
                status => Err(format!("{status}")),
            }
        }
    }

    struct Fixture {
        t: Arc<TestApp>,
        route: Arc<Route>,
        page: Page,
        m: TestMerchant,
    }

    async fn fixture(refuse: bool) -> Fixture {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let route = Arc::new(Route {
            app: t.clone(),
            refuse,
            sent: Mutex::default(),
        });
        let page = Page::new(Reporter::new(route.clone()));
        Fixture { t, route, page, m }
    }

    impl Fixture {
        async fn acting(&self, capture: CaptureMethod) -> (Payment, String) {
            let p = self
                .t
                .payment(&self.m, 1000, capture, "pm_card_authentication_required")
                .await;
            let record = self
                .t
                .store()
                .sandbox_authorization(&reference_for(&p.id))
                .await
                .unwrap()
                .unwrap();
            (p, record.action_token.unwrap())
        }

        async fn call(&self, id: &str, token: &str, form: Option<&str>) -> Response<Body> {
            let mut req = request("sandbox-authenticate")
                .path_id(id)
                .query(&format!("token={token}"));
            if let Some(form) = form {
                req = req
                    .method("POST")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .raw_body(form);
            }
            sandbox_authenticate(&self.t.app, &self.page, req.build()).await
        }

        async fn stored(&self, p: &Payment) -> Payment {
            self.t
                .store()
                .get_payment(&self.m.id, &p.id)
                .await
                .unwrap()
                .unwrap()
        }
    }

    fn text(response: &Response<Body>) -> String {
        match response.body() {
            Body::Text(text) => text.clone(),
            _ => String::new(),
        }
    }

    #[tokio::test]
    async fn the_page_shows_the_payment_and_its_buttons() {
        let f = fixture(false).await;
        let (p, token) = f.acting(CaptureMethod::Automatic).await;
        let response = f.call(p.id.as_str(), &token, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        let page = text(&response);
        assert!(
            page.contains(p.id.as_str()) && page.contains("1000 USD"),
            "{page}"
        );
        assert!(page.contains(r#"value="succeed""#) && page.contains(r#"value="fail""#));
        assert_eq!(f.stored(&p).await, p, "showing changes nothing");
    }

    #[tokio::test]
    async fn a_wrong_token_or_payment_is_not_found() {
        let f = fixture(false).await;
        let (p, token) = f.acting(CaptureMethod::Automatic).await;
        let other = PaymentId::generate(time::OffsetDateTime::now_utc());
        for (id, token, form) in [
            (p.id.as_str(), "", None),
            (p.id.as_str(), "0".repeat(32).as_str(), None),
            (p.id.as_str(), &token[1..], Some("outcome=succeed")),
            (other.as_str(), token.as_str(), None),
            ("pay_nope", token.as_str(), None),
        ] {
            let response = f.call(id, token, form).await;
            assert_eq!(response.status(), 404, "{id} {token}");
        }
        assert_eq!(f.stored(&p).await, p);
        assert!(f.route.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn authenticating_settles_the_payment_by_its_capture_method() {
        let f = fixture(false).await;
        for (capture, status) in [
            (CaptureMethod::Automatic, PaymentStatus::Succeeded),
            (CaptureMethod::Manual, PaymentStatus::RequiresCapture),
        ] {
            let (p, token) = f.acting(capture).await;
            let response = f.call(p.id.as_str(), &token, Some("outcome=succeed")).await;
            assert_eq!(
                response.status(),
                200,
                "no return_url: the page says it is done"
            );
            assert!(text(&response).contains("authenticated"));
            let after = f.stored(&p).await;
            assert_eq!(after.status, status);
            assert!(after.invariants_hold());
        }
        assert_eq!(
            f.route.sent.lock().unwrap()[0],
            "https://api.example.com/processor_events/sandbox",
            "reported to this API's own route"
        );
    }

    #[tokio::test]
    async fn failing_fails_it_and_the_other_button_then_changes_nothing() {
        let f = fixture(false).await;
        let (p, token) = f.acting(CaptureMethod::Automatic).await;
        assert_eq!(
            f.call(p.id.as_str(), &token, Some("outcome=fail"))
                .await
                .status(),
            200
        );
        let failed = f.stored(&p).await;
        assert_eq!(failed.status, PaymentStatus::Failed);
        assert_eq!(
            failed.failure.as_ref().unwrap().code,
            "authentication_failed"
        );
        // The same answer again is the same report (applied once); the other is refused.
        assert_eq!(
            f.call(p.id.as_str(), &token, Some("outcome=fail"))
                .await
                .status(),
            200
        );
        assert_eq!(
            f.call(p.id.as_str(), &token, Some("outcome=succeed"))
                .await
                .status(),
            409
        );
        assert_eq!(f.stored(&p).await, failed);
        let bad = f.call(p.id.as_str(), &token, Some("outcome=maybe")).await;
        assert_eq!(bad.status(), 400);
    }

    #[tokio::test]
    async fn an_undelivered_report_is_503_and_a_retry_delivers_it() {
        let refusing = fixture(true).await;
        let (p, token) = refusing.acting(CaptureMethod::Automatic).await;
        let response = refusing
            .call(p.id.as_str(), &token, Some("outcome=succeed"))
            .await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            refusing.stored(&p).await.status,
            PaymentStatus::RequiresAction,
            "only the processor's event changes the payment"
        );
        // The same table, a sink that delivers: the retry of the same answer settles it.
        let route = Arc::new(Route {
            app: refusing.t.clone(),
            refuse: false,
            sent: Mutex::default(),
        });
        let page = Page::new(Reporter::new(route));
        let delivering = Fixture { page, ..refusing };
        let response = delivering
            .call(p.id.as_str(), &token, Some("outcome=succeed"))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(delivering.stored(&p).await.status, PaymentStatus::Succeeded);
    }
}
