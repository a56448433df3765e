//! `POST /webhook_endpoints/{id}/replay`: the merchant's events of a time range delivered again.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::create_webhook_replay;
