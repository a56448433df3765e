//! The expiry sweeper's Lambda entry point: wiring only; the sweep is in the library's handler.
//! The scheduler's payload carries nothing the sweep needs, so any JSON is accepted.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::clock::SystemClock;
use shared::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container.
    let store = Store::from_env()?;
    // The deployment's processor, which is asked to cancel before anything is expired.
    let processor = shared::processor::from_env(&store, &shared::config::env)?;
    // When the processor says it captured what was due to expire, reconciliation records it
    // after this (RECONCILE_AFTER_SECONDS).
    let deadlines = shared::domain::Deadlines {
        reconcile: shared::config::reconcile_after(&shared::config::env)?,
        ..Default::default()
    };
    let (store, processor, deadlines) = (&store, processor.as_ref(), &deadlines);
    let timeout = shared::config::function_timeout()?.unsigned_abs();
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let request_id = event.context.request_id.clone();
        shared::metrics::measured(request_id, async move {
            let budget = shared::invocation::budget_now(event.context.deadline, timeout);
            let report = expire_authorizations::sweep(
                store,
                processor,
                &SystemClock,
                deadlines,
                expire_authorizations::LIMITS,
                budget,
            )
            .await;
            // A failed expiry is tried again by the next run; failing the invocation makes it count
            // in the function's Errors metric, which is what an operator watches.
            if report.failed > 0 {
                return Err(Error::from(format!(
                    "{} of {} due authorizations could not be expired; the next run tries again",
                    report.failed, report.due
                )));
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        })
        .await
    }))
    .await
}
