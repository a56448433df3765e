//! `POST /webhook_endpoints/{id}/rotate_secret`: a new secret; the old one signs beside it for 24 h. Lambda entry point: wiring only; the decisions are in the
//! library's handler.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the auth cache and the config.
    let app = shared::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req| async move {
        Ok::<_, Error>(rotate_webhook_secret::rotate_webhook_secret(app, req).await)
    }))
    .await
}
