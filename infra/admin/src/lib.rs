//! `payments-admin`'s library: what its commands do that tests drive directly (`main.rs` is the
//! command line).

pub mod redrive;
