//! The webhook retry sweep's Lambda entry point (a schedule): wiring only; the sweep is
//! `webhook_delivery::retry`. The scheduler's payload carries nothing the sweep needs.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::time::Duration;
use webhook_delivery::{retry, Deliverer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client and the webhook HTTP client.
    let deliverer = Deliverer::from_env()?;
    let deliverer = &deliverer;
    let timeout = shared::config::function_timeout()?.unsigned_abs();
    let window = Duration::from_secs(shared::config::webhook_retry_window_seconds(
        &shared::config::env,
    )?);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = event.context.request_id.clone();
        shared::metrics::measured(request_id, async move {
            let budget = shared::invocation::budget_now(event.context.deadline, timeout);
            let report = retry::run(deliverer, window, budget).await;
            // What failed is still due (or claimed) and taken by a later pass; failing the
            // invocation makes it count in the function's Errors metric.
            if report.errors > 0 {
                return Err(Error::from(format!(
                    "{} store calls failed in the retry sweep; the deliveries are taken again later",
                    report.errors
                )));
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        })
        .await
    }))
    .await
}
