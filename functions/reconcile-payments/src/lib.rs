//! Reconciliation of `processing` payments: a scheduled run that asks the processor what became
//! of each payment whose outcome we do not know, through the timer index, and settles what it
//! learns.
//!
//! The package is a library (the run, which the tests drive directly) and a binary (`main.rs`,
//! the Lambda entry point that wires it).

mod handler;
#[cfg(test)]
mod in_flight_tests;
#[cfg(test)]
mod stripe_tests;

pub use handler::{reconcile, Limits, ReconcileReport, LIMITS};
