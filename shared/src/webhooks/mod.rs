//! Webhooks: what is sent to a merchant's endpoints and how (../shared/API.md, "Webhooks").
//!
//! - `signing`: Standard Webhooks signatures and the `whsec_…` secrets they use;
//! - `destination`: which URLs an endpoint may have (https, public hosts), checked when an
//!   endpoint is saved and again against the resolved address when a delivery connects;
//! - `endpoint`: the `webhook_endpoint` object and which events it receives;
//! - `delivery`: the `webhook_delivery` object and how an attempt's answer moves it on;
//! - `replay`: the `webhook_replay` object, a range of events delivered again;
//! - `schedule`: when a failed delivery is tried again, and when an endpoint is given up on.

pub mod delivery;
pub mod destination;
pub mod endpoint;
pub mod replay;
pub mod schedule;
pub mod signing;
