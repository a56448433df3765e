//! The expiry sweeper, run on a schedule (template.yaml `ScheduleV2`; locally a timer in
//! `make dev`): every `requires_capture` payment whose `capture_before` has passed becomes
//! `canceled` with `cancellation_reason: "expired"`.
//!
//! The package is a library (the sweep, which the tests drive directly) and a binary
//! (`main.rs`, the Lambda entry point that wires it).

mod handler;

pub use handler::{sweep, Limits, SweepReport, LIMITS};
