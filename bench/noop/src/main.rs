//! The benchmark's floor: a Lambda that answers every event with `{}` and builds nothing at init.
//! Our functions' init and per-invoke cost are reported as multiples of this.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(serde_json::json!({}))
    }))
    .await
}
