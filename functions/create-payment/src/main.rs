//! `POST /payments`: create (authorize, and capture when automatic). Lambda entry point: wiring only; the decisions are in the
//! library's handler.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the auth cache and the config.
    let app = shared::App::from_env().await?.with_deployment_processor()?;
    let app = &app;
    run(service_fn(move |req| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = shared::http::request::request_id(&req);
        let response =
            shared::metrics::measured(request_id, create_payment::create_payment(app, req));
        Ok::<_, Error>(response.await)
    }))
    .await
}
