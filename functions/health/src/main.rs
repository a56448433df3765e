//! `GET /health`: liveness, no authentication, no datastore. Lambda entry point: wiring only.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    run(service_fn(|req| async move {
        Ok::<_, Error>(health::health(&req))
    }))
    .await
}
