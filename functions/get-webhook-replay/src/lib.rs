//! `GET /webhook_endpoints/{id}/replays/{replay_id}`: how far a replay has got.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::get_webhook_replay;
