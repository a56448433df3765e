//! `GET /health`: liveness, no authentication, no datastore.

mod handler;

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    run(service_fn(|req| async move {
        Ok::<_, Error>(handler::health(&req))
    }))
    .await
}
