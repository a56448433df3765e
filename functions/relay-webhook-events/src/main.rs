//! The webhook relay's Lambda entry point (DynamoDB stream, partial batch responses): wiring
//! only; the relay is `webhook_delivery::relay`.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use webhook_delivery::Deliverer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per container: the SDK client and the webhook HTTP client.
    let deliverer = Deliverer::from_env()?;
    let deliverer = &deliverer;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        // One EMF metrics line per invocation (shared::metrics): the batch's webhook attempts.
        let relayed = webhook_delivery::relay(deliverer, event.payload);
        let response = shared::metrics::measured(event.context.request_id, relayed);
        Ok::<_, Error>(response.await)
    }))
    .await
}
