//! `GET`/`POST /sandbox/authenticate/{id}`: the sandbox processor's customer authentication page.
//!
//! The package is a library (the handler, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::{sandbox_authenticate, Page};
