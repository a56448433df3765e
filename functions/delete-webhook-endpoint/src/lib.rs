//! `DELETE /webhook_endpoints/{id}`: delete an endpoint; nothing more is delivered to it.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::delete_webhook_endpoint;
