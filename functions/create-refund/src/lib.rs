//! `POST /payments/{id}/refunds`: refund part or all of a `succeeded` payment.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::create_refund;
