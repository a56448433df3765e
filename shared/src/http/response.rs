//! Successful responses: JSON bodies with the request id header.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::Value;

/// What an operation returns on success: a status and a JSON body, and a secret the body shows
/// once (a webhook endpoint's signing secret) kept apart from it, so that the idempotency
/// record stores the body without it and the secret sealed (`seal`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
    pub secret: Option<SecretField>,
}

/// A field of the body that holds a secret: added when the response is sent, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretField {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for SecretField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretField({}: …)", self.name)
    }
}

impl ApiResponse {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            secret: None,
        }
    }

    pub fn created(body: Value) -> Self {
        Self {
            status: StatusCode::CREATED,
            body,
            secret: None,
        }
    }

    /// Taken on, to be done in the background (a webhook replay).
    pub fn accepted(body: Value) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            body,
            secret: None,
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

    /// The response with `name: value` in its body when sent (see [`SecretField`]).
    pub fn with_secret(mut self, name: &str, value: String) -> Self {
        self.secret = Some(SecretField {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// The body as the client gets it: with the secret.
    pub fn shown_body(&self) -> Value {
        let mut body = self.body.clone();
        if let (Some(secret), Some(map)) = (&self.secret, body.as_object_mut()) {
            map.insert(secret.name.clone(), secret.value.clone().into());
        }
        body
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        json_response(
            self.status,
            &self.shown_body(),
            request_id,
            "application/json",
        )
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
