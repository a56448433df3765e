//! Logging: JSON lines via `tracing`, one object per event, with the Lambda request id (the
//! runtime's invocation span carries it as `requestId`) on every line. Level from `RUST_LOG`
//! (default `info`). Never log secrets: API keys, cursor secrets and request bodies stay out.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        // CloudWatch stamps every line itself.
        .without_time()
        .init();
}
