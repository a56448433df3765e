//! Everything the payment Lambdas share: the domain (money, currencies, ids, the payment status
//! machine), the DynamoDB store, the HTTP plumbing (request parsing, problem+json, API-key
//! authentication, cursors), the sandbox processor, telemetry and webhook signing and rules.
//!
//! A function's `main.rs` builds an [`App`] once per container and hands every request to its
//! handler; the handler parses into domain types, asks the domain what to do and makes one store
//! call. Nothing in here knows whether it runs on AWS or against the local stack.

pub mod app;
pub mod aws_json;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod idempotency;
pub mod invocation;
pub mod lifecycle;
pub mod metrics;
pub mod migrations;
pub mod processor;
pub mod processor_calls;
pub mod seal;
pub mod settlement;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;

pub use app::App;
