//! The sandbox settle sweep's Lambda entry point: wiring only; the run is in the library's
//! handler. The scheduler's payload carries nothing the run needs, so any JSON is accepted.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use webhook_delivery::sandbox_report::{HttpSink, Reporter};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the config and the HTTPS client the sandbox
    // reports with. The signing secret is read on the first report, not here.
    let app = shared::App::from_env().await?;
    let reporter = Reporter::new(Arc::new(HttpSink::new(app.webhook_allow_local_urls)?));
    let (app, reporter) = (&app, &reporter);
    let timeout = shared::config::function_timeout()?.unsigned_abs();
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = event.context.request_id.clone();
        shared::metrics::measured(request_id, async move {
            let budget = shared::invocation::budget_now(event.context.deadline, timeout);
            let report = sandbox_settle::settle(app, reporter, sandbox_settle::LIMITS, budget).await;
            // What failed is still in the index, due: the next run reports it again.
            if report.failed > 0 {
                return Err(Error::from(format!(
                    "{} of {} due sandbox decisions could not be reported; the next run tries again",
                    report.failed, report.due
                )));
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        })
        .await
    }))
    .await
}
