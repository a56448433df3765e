//! The webhook relay's Lambda entry point (DynamoDB stream, partial batch responses): wiring
//! only; the relay is `webhook_delivery::relay`. It only creates deliveries: it sends nothing
//! and reads no endpoint secret.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::clock::SystemClock;
use shared::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client.
    let store = Store::from_env()?;
    let store = &store;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        // One EMF metrics line per invocation (shared::metrics).
        let relayed = webhook_delivery::relay(store, &SystemClock, event.payload);
        let response = shared::metrics::measured(event.context.request_id, relayed);
        Ok::<_, Error>(response.await)
    }))
    .await
}
