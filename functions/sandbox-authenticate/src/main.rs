//! `GET`/`POST /sandbox/authenticate/{id}`: the sandbox's authentication page. Lambda entry
//! point: wiring only; the decisions are in the library's handler.

use lambda_http::{run, service_fn, Error};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the config and the HTTPS client the customer's
    // answer is reported with. The signing secret is read on the first answer, not here.
    let app = shared::App::from_env().await?;
    let sink = webhook_delivery::sandbox_report::HttpSink::new(app.webhook_allow_local_urls)?;
    let page = sandbox_authenticate::Page::new(webhook_delivery::sandbox_report::Reporter::new(
        Arc::new(sink),
    ));
    let (app, page) = (&app, &page);
    run(service_fn(move |req| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = shared::http::request::request_id(&req);
        let response = shared::metrics::measured(
            request_id,
            sandbox_authenticate::sandbox_authenticate(app, page, req),
        );
        Ok::<_, Error>(response.await)
    }))
    .await
}
