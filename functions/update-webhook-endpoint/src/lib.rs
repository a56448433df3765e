//! `POST /webhook_endpoints/{id}`: change an endpoint.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::update_webhook_endpoint;
