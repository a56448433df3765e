//! The webhook delivery path (../shared/API.md, "Webhooks"; ../shared/DESIGN.md, "Events out"):
//!
//! - `sender`: the outbound HTTPS client (public roots, 10 s, connect-time address check);
//! - `attempt`: one attempt of one delivery under a claim, and the endpoint's books after it;
//! - `relay`: the table's stream → one delivery per subscribed endpoint, due at once (no attempt);
//! - `replay`: replays, a step at a time after each of the dispatcher's passes, paced by how
//!   busy their endpoint is;
//! - `retry`: the dispatcher: every attempt, from the retry index, within per-endpoint and
//!   per-merchant limits (isolation);
//! - `sandbox_report`: the sandbox processor's signed events to this API's processor-event route.
//!
//! Linked into the two delivery functions (`relay-webhook-events`, `retry-webhook-deliveries`),
//! the sandbox's page and settle sweep (`sandbox_report`) and `payments-admin` (its redrive runs
//! the relay); of these the dispatcher alone reads endpoint secrets.

pub mod attempt;
pub mod relay;
pub mod replay;
pub mod retry;
pub mod sandbox_report;
pub mod sender;

pub use attempt::{Deliverer, Outcome, LEASE};
pub use relay::relay;
pub use sender::Sender;
