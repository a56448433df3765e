//! `GET /webhook_endpoints/{id}/deliveries`: an endpoint's delivery log, newest first.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::list_webhook_deliveries;
