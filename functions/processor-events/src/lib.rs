//! `POST /processor_events/{processor}`: the processor's own callbacks, authenticated by the
//! processor's signature instead of an API key.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;
#[cfg(test)]
mod stripe_tests;

pub use handler::{processor_events, Verifier};
