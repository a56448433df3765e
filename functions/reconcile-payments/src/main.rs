//! Reconciliation's Lambda entry point: wiring only; the run is in the library's handler. The
//! scheduler's payload carries nothing the run needs, so any JSON is accepted.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client, the processor and the config.
    let app = shared::App::from_env().await?.with_deployment_processor()?;
    let app = &app;
    let timeout = shared::config::function_timeout()?.unsigned_abs();
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = event.context.request_id.clone();
        shared::metrics::measured(request_id, async move {
            let budget = shared::invocation::budget_now(event.context.deadline, timeout);
            let report =
                reconcile_payments::reconcile(app, reconcile_payments::LIMITS, budget).await;
            // What failed is still in the index, due: the next run asks again. Failing the
            // invocation makes it count in the function's Errors metric.
            if report.failed > 0 {
                return Err(Error::from(format!(
                    "{} of {} due payments could not be reconciled; the next run tries again",
                    report.failed, report.due
                )));
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        })
        .await
    }))
    .await
}
