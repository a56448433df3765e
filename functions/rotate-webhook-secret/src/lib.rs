//! `POST /webhook_endpoints/{id}/rotate_secret`: a new secret; the old one signs beside it for 24 h.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::rotate_webhook_secret;
