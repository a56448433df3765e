//! `GET /health`: liveness, no authentication, no datastore. Lambda entry point: wiring only.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    run(service_fn(|req| async move {
        // One EMF metrics line per invocation (shared::metrics): here only ColdStart.
        let request_id = shared::http::request::request_id(&req);
        let response = shared::metrics::measured(request_id, async { health::health(&req) });
        Ok::<_, Error>(response.await)
    }))
    .await
}
