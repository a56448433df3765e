//! The sandbox processor's settle sweep: it decides the `pm_card_processing` authorizations
//! whose time has come and reports each by a signed processor event, as a real processor
//! reports a payment it took time to decide.
//!
//! The package is a library (the run, which the tests drive directly) and a binary (`main.rs`,
//! the Lambda entry point that wires it).

mod handler;

pub use handler::{settle, SettleReport, LIMITS};
