//! `POST /webhook_endpoints/{id}/deliveries/{delivery_id}/retry`: a new attempt of a delivery now.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::resend_webhook_delivery;
