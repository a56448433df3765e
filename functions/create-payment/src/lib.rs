//! `POST /payments`: create (authorize, and capture when automatic).
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;
#[cfg(test)]
mod stripe_tests;

pub use handler::create_payment;
