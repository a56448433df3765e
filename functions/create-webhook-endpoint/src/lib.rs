//! `POST /webhook_endpoints`: register an endpoint; the only response but a rotation that shows its secret.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::create_webhook_endpoint;
