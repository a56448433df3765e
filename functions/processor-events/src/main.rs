//! `POST /processor_events/{processor}`: a processor's callbacks. Lambda entry point: wiring
//! only; the decisions are in the library's handler.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client and the config. The signing secret (the
    // sandbox's, or Stripe's webhook secret in the Stripe keys: `Keys::from_env`) is read on the
    // first event, not here.
    let app = shared::App::from_env().await?;
    let verifier = processor_events::Verifier::from_env(&shared::config::env)?;
    let (app, verifier) = (&app, &verifier);
    run(service_fn(move |req| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = shared::http::request::request_id(&req);
        let response = shared::metrics::measured(
            request_id,
            processor_events::processor_events(app, verifier, req),
        );
        Ok::<_, Error>(response.await)
    }))
    .await
}
