//! `GET /webhook_endpoints/{id}`: one endpoint, without its secret.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::get_webhook_endpoint;
