//! `GET /webhook_endpoints/{id}/replays/{replay_id}`: a replay's progress.
//! Lambda entry point: wiring only; the decisions are in the library's handler.

use lambda_http::{run, service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the auth cache and the config.
    let app = shared::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = shared::http::request::request_id(&req);
        let response =
            shared::metrics::measured(request_id, get_webhook_replay::get_webhook_replay(app, req));
        Ok::<_, Error>(response.await)
    }))
    .await
}
