//! The HTTP edge shared by every function: parsing requests into typed values, authenticating
//! the API key, issuing and checking list cursors, and building responses (JSON or RFC 9457
//! problem+json) that always carry the request id.

pub mod auth;
pub mod cursor;
pub mod list;
pub mod problem;
pub mod request;
pub mod response;

pub use problem::ApiError;
pub use response::ApiResponse;
