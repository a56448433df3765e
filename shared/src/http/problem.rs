//! Every error a client can see, and the one place they become HTTP (RFC 9457 problem+json).
//!
//! `code` is the stable, machine-readable part. Server-side failures carry their cause for the
//! log only: the body of a 5xx never says more than its title.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::json;

/// What went wrong, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("unknown field '{param}'")]
    UnknownField { param: String },
    #[error("{param}: {detail}")]
    Validation { param: String, detail: String },
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("invalid payment method")]
    InvalidPaymentMethod,
    #[error("{detail}")]
    AmountTooLarge { param: String, detail: String },
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    /// A processor event whose signature is missing, wrong or too old (the reason is logged).
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    InvalidState(String),
    #[error("idempotency key in use")]
    IdempotencyInProgress,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// The merchant started more writes in this second than it may (`App::respond_post`).
    #[error("more than {limit} writes in one second")]
    RateLimited { limit: u32 },
    /// The datastore throttled or timed out after the SDK's retries. The text is logged only.
    #[error("service unavailable: {0}")]
    ServiceUnavailable(String),
    /// Anything unexpected. The text is logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds a client should wait before retrying a 503, a 409 `idempotency_in_progress` or a
/// 429 `rate_limited` (the next second is a new window).
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    pub fn validation(param: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Validation {
            param: param.into(),
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidJson(_)
            | UnknownField { .. }
            | Validation { .. }
            | InvalidCursor
            | InvalidPaymentMethod
            | AmountTooLarge { .. }
            | InvalidIdempotencyKey
            | InvalidSignature(_) => StatusCode::BAD_REQUEST,
            Unauthenticated => StatusCode::UNAUTHORIZED,
            NotFound => StatusCode::NOT_FOUND,
            InvalidState(_) | IdempotencyInProgress => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            UnknownField { .. } => "unknown_field",
            Validation { .. } => "validation_error",
            InvalidCursor => "invalid_cursor",
            InvalidPaymentMethod => "invalid_payment_method",
            AmountTooLarge { .. } => "amount_too_large",
            InvalidIdempotencyKey => "invalid_idempotency_key",
            InvalidSignature(_) => "invalid_signature",
            Unauthenticated => "unauthenticated",
            NotFound => "not_found",
            InvalidState(_) => "invalid_state",
            IdempotencyInProgress => "idempotency_in_progress",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            IdempotencyKeyReused => "idempotency_key_reused",
            RateLimited { .. } => "rate_limited",
            ServiceUnavailable(_) => "service_unavailable",
            Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidJson(_) => "Invalid JSON",
            UnknownField { .. } => "Unknown field",
            Validation { .. } => "Validation failed",
            InvalidCursor => "Invalid cursor",
            InvalidPaymentMethod => "Invalid payment method",
            AmountTooLarge { .. } => "Amount too large",
            InvalidIdempotencyKey => "Invalid idempotency key",
            InvalidSignature(_) => "Invalid signature",
            Unauthenticated => "Unauthenticated",
            NotFound => "Not found",
            InvalidState(_) => "Invalid state",
            IdempotencyInProgress => "Request in progress",
            PayloadTooLarge => "Payload too large",
            UnsupportedMediaType => "Unsupported media type",
            IdempotencyKeyReused => "Idempotency key reused",
            RateLimited { .. } => "Too many requests",
            ServiceUnavailable(_) => "Service unavailable",
            Internal(_) => "Internal error",
        }
    }

    /// What the client is told. Server errors say nothing beyond their title.
    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            InvalidJson(detail) => detail.clone(),
            UnknownField { param } => format!("'{param}' is not a field of this operation"),
            Validation { param, detail } => format!("{param} {detail}"),
            InvalidCursor => "the cursor was not issued by this API for this list".into(),
            InvalidPaymentMethod => "payment_method is not a known payment method token".into(),
            AmountTooLarge { detail, .. } => detail.clone(),
            InvalidIdempotencyKey => {
                "Idempotency-Key must be 1 to 255 printable ASCII characters".into()
            }
            InvalidSignature(_) => {
                "the event's signature is missing, does not match its body, or is more than 5 minutes old".into()
            }
            Unauthenticated => "a valid API key is required: Authorization: Bearer <key>".into(),
            NotFound => "no such object".into(),
            InvalidState(detail) => detail.clone(),
            IdempotencyInProgress => {
                "a request with this Idempotency-Key is still being processed".into()
            }
            PayloadTooLarge => "the request body must be at most 16 KiB".into(),
            UnsupportedMediaType => "the request body must be sent as application/json".into(),
            IdempotencyKeyReused => "this Idempotency-Key was used with a different request".into(),
            RateLimited { limit } => format!(
                "this merchant may start at most {limit} write requests per second; retry after Retry-After"
            ),
            ServiceUnavailable(_) => "the service is temporarily unavailable; retry later".into(),
            Internal(_) => "an internal error occurred".into(),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::UnknownField { param }
            | ApiError::Validation { param, .. }
            | ApiError::AmountTooLarge { param, .. } => Some(param),
            ApiError::InvalidPaymentMethod => Some("payment_method"),
            ApiError::InvalidCursor => Some("cursor"),
            _ => None,
        }
    }

    /// Whether this is the server's fault (logged with its cause, body kept generic).
    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }

    /// The problem+json response for this error.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        let mut response = super::response::json_response(
            self.status(),
            &self.body(request_id),
            request_id,
            "application/problem+json",
        );
        self.add_headers(response.headers_mut());
        response
    }

    /// The RFC 9457 body.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status().as_u16(),
            "code": self.code(),
            "detail": self.detail(),
            "request_id": request_id,
        });
        if let Some(param) = self.param() {
            body["param"] = json!(param);
        }
        body
    }

    /// Headers this error's responses carry besides the content type.
    pub fn add_headers(&self, headers: &mut lambda_http::http::HeaderMap) {
        match self {
            ApiError::Unauthenticated => {
                headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
            }
            ApiError::ServiceUnavailable(_)
            | ApiError::IdempotencyInProgress
            | ApiError::RateLimited { .. } => {
                headers.insert("retry-after", HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(text) => ApiError::ServiceUnavailable(text),
            crate::store::StoreError::ClaimLost => ApiError::IdempotencyInProgress,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::domain::TransitionError> for ApiError {
    fn from(err: crate::domain::TransitionError) -> Self {
        match err {
            crate::domain::TransitionError::InvalidState(detail) => ApiError::InvalidState(detail),
            crate::domain::TransitionError::AmountTooLarge(detail) => ApiError::AmountTooLarge {
                param: "amount".to_owned(),
                detail,
            },
        }
    }
}

impl From<crate::processor::ProcessorError> for ApiError {
    fn from(err: crate::processor::ProcessorError) -> Self {
        match err {
            crate::processor::ProcessorError::UnknownPaymentMethod => {
                ApiError::InvalidPaymentMethod
            }
            // The processor's state won a race our side has not seen yet.
            crate::processor::ProcessorError::Refused(detail) => ApiError::InvalidState(detail),
            crate::processor::ProcessorError::Unavailable(text)
            | crate::processor::ProcessorError::Unknown(text) => ApiError::ServiceUnavailable(text),
            crate::processor::ProcessorError::Rejected(text) => ApiError::Internal(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn problem_has_rfc9457_members_and_request_id() {
        let response = ApiError::validation("amount", "must be an integer").to_response("req-1");
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(response.headers()["x-request-id"], "req-1");
        let body = body(&response);
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["status"], 400);
        assert_eq!(body["code"], "validation_error");
        assert_eq!(body["param"], "amount");
        assert_eq!(body["request_id"], "req-1");
    }

    #[test]
    fn server_errors_reveal_nothing_internal() {
        let secret = "ResourceNotFoundException: table payments-prod arn:aws:dynamodb";
        for err in [
            ApiError::Internal(secret.into()),
            ApiError::ServiceUnavailable(secret.into()),
        ] {
            let response = err.to_response("req-2");
            let text = String::from_utf8(response.body().to_vec()).unwrap();
            assert!(!text.contains("payments-prod"), "{text}");
            assert!(!text.contains("Exception"), "{text}");
        }
    }

    #[test]
    fn unauthenticated_and_retryable_errors_carry_their_headers() {
        let response = ApiError::Unauthenticated.to_response("r");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let response = ApiError::ServiceUnavailable(String::new()).to_response("r");
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
