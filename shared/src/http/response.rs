//! Successful responses: JSON bodies with the request id header.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::Value;

/// What an operation returns on success: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiResponse {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    pub fn created(body: Value) -> Self {
        Self {
            status: StatusCode::CREATED,
            body,
        }
    }

    /// A list page: `{"object":"list","data":[…],"has_more":…,"next_cursor":…}`.
    pub fn list(data: Vec<Value>, next_cursor: Option<String>) -> Self {
        Self::ok(serde_json::json!({
            "object": "list",
            "data": data,
            "has_more": next_cursor.is_some(),
            "next_cursor": next_cursor,
        }))
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        json_response(self.status, &self.body, request_id, "application/json")
    }
}

/// A JSON response with the content type and `x-request-id` set.
pub(crate) fn json_response(
    status: StatusCode,
    body: &Value,
    request_id: &str,
    content_type: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    // A request id is a UUID from Lambda; should it ever not be a valid header value, the
    // response still goes out, just without the header.
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    response
}
