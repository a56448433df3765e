//! Reading a request: body limits and content type, strict JSON objects (unknown fields are
//! rejected), typed fields with the offending `param` named, query strings and path ids.
//!
//! Bodies are read into a JSON object first and then field by field, rather than through a
//! derived `Deserialize`, because the contract wants the exact field named in every error
//! (`param`) and a distinct code for unknown fields.

use super::ApiError;
use crate::domain::ParseError;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Request, RequestExt};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The request id every response and log line carries (the Lambda request id).
pub fn request_id(req: &Request) -> String {
    req.lambda_context_ref()
        .map(|context| context.request_id.clone())
        .unwrap_or_default()
}

/// Where this API is served, as the request reached it: `https://<host>` (API Gateway's
/// `x-forwarded-proto` says `https`; the local gateway says `http`). A `Host` that is not a
/// plain host name (and port) gives the API's own relative root, `""`, rather than a URL into
/// somewhere else.
pub fn api_base(req: &Request) -> String {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let proto = match header("x-forwarded-proto") {
        Some("http") => "http",
        _ => "https",
    };
    match header("host") {
        Some(host)
            if !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':')) =>
        {
            format!("{proto}://{host}")
        }
        _ => String::new(),
    }
}

/// The request body's bytes as they came (a signature is over exactly these).
pub fn body_bytes(body: &Body) -> &[u8] {
    match body {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        // `Body` is non-exhaustive; a kind we do not know carries no JSON we could read.
        _ => &[],
    }
}

fn is_json_content_type(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// A request body: a JSON object whose fields are all known to the operation.
#[derive(Debug, Default)]
pub struct JsonBody {
    fields: Map<String, Value>,
}

impl JsonBody {
    /// Reads the body of `req`. `required`: whether an empty body is an error (POST /payments) or
    /// means "no fields" (capture, cancel). `known`: the fields the operation accepts.
    /// The order of the checks (413, 415, then 400) is copied by the local stack's gateway for
    /// the one body it must answer itself (not UTF-8; infra/local_gateway.py): change both.
    pub fn parse(req: &Request, required: bool, known: &[&str]) -> Result<Self, ApiError> {
        let bytes = body_bytes(req.body());
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        if bytes.is_empty() && !required {
            return Ok(Self::default());
        }
        if !is_json_content_type(req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::InvalidJson(format!("the request body is not valid JSON: {e}"))
        })?;
        let Value::Object(fields) = value else {
            return Err(ApiError::InvalidJson(
                "the request body must be a JSON object".into(),
            ));
        };
        if let Some(unknown) = fields.keys().find(|name| !known.contains(&name.as_str())) {
            return Err(ApiError::UnknownField {
                param: unknown.clone(),
            });
        }
        Ok(Self { fields })
    }

    /// A required field, parsed by `parse`.
    pub fn required<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, ParseError>,
    ) -> Result<T, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Err(ApiError::validation(name, "is required")),
            Some(value) => parse(value).map_err(|e| ApiError::validation(name, e.0)),
        }
    }

    /// An optional field (absent or null is `None`), parsed by `parse`.
    pub fn optional<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|e| ApiError::validation(name, e.0)),
        }
    }
}

/// JSON shapes a field can be required to have; each returns the message `detail` shows.
pub mod json {
    use super::*;

    /// An integer that fits `i64`, in JSON Schema's sense of one: `2500` and `2500.0` (a number
    /// with a zero fraction) are both 2500, as openapi.yaml's `type: integer` promises a client;
    /// `1.5`, `"100"` and `2^63` are refused. A fraction-free float is taken only where every
    /// integer is exact in an `f64` (below 2^53, far above any amount), so none is rounded.
    pub fn integer(value: &Value) -> Result<i64, ParseError> {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < EXACT)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| ParseError::new("must be an integer (minor units)"))
    }

    pub fn string(value: &Value) -> Result<&str, ParseError> {
        value
            .as_str()
            .ok_or_else(|| ParseError::new("must be a string"))
    }

    /// An array of strings.
    pub fn strings(value: &Value) -> Result<Vec<&str>, ParseError> {
        value
            .as_array()
            .and_then(|items| items.iter().map(Value::as_str).collect())
            .ok_or_else(|| ParseError::new("must be an array of strings"))
    }

    /// An object whose values are all strings.
    pub fn string_map(value: &Value) -> Result<BTreeMap<String, String>, ParseError> {
        let object = value
            .as_object()
            .ok_or_else(|| ParseError::new("must be an object of strings"))?;
        object
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(ParseError::new(format!(
                    "value of '{key}' must be a string"
                ))),
            })
            .collect()
    }
}

/// The query string, with every parameter known to the operation and given at most once.
#[derive(Debug)]
pub struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    pub fn parse(req: &Request, known: &[&str]) -> Result<Self, ApiError> {
        let raw = req.query_string_parameters();
        let mut params = BTreeMap::new();
        for (name, _) in raw.iter() {
            if !known.contains(&name) {
                return Err(ApiError::UnknownField {
                    param: name.to_owned(),
                });
            }
            let values = raw.all(name).unwrap_or_default();
            if values.len() > 1 {
                return Err(ApiError::validation(name, "must be given at most once"));
            }
            if let Some(value) = values.first() {
                params.insert(name.to_owned(), (*value).to_owned());
            }
        }
        Ok(Self { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `limit`: 1–100, default 20.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(20),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| ApiError::validation("limit", "must be an integer from 1 to 100")),
        }
    }
}

/// The `{id}` path parameter parsed by `parse`; a missing or malformed id is 404, never 400:
/// it cannot name anything that exists.
pub fn path_id<T>(
    req: &Request,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, ApiError> {
    path_param(req, "id", parse)
}

/// The path parameter `name` parsed by `parse`; missing or malformed is 404, as for ids.
pub fn path_param<T>(
    req: &Request,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, ApiError> {
    req.path_parameters_ref()
        .and_then(|params| params.first(name))
        .ok_or(ApiError::NotFound)
        .and_then(|value| parse(value).map_err(|_| ApiError::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    fn post(body: &str, content_type: Option<&str>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/payments");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    fn code(result: Result<JsonBody, ApiError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn integers_are_json_schema_integers() {
        use serde_json::json;
        for (value, expected) in [
            (json!(2500), Some(2500)),
            (json!(2500.0), Some(2500)),
            (json!(459749.0), Some(459749)),
            (json!(1e2), Some(100)),
            (json!(99_999_999_999.0), Some(99_999_999_999)),
            (json!(1.5), None),
            (json!(9_007_199_254_740_992.0), None),
            (json!(1e300), None),
            (json!("100"), None),
            (json!(null), None),
            (json!(9_223_372_036_854_775_808u64), None),
        ] {
            assert_eq!(json::integer(&value).ok(), expected, "{value}");
        }
    }

    #[test]
    fn body_checks_run_in_contract_order() {
        let known = ["amount"];
        let big = format!("{{\"amount\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(
            code(JsonBody::parse(
                &post(&big, Some("text/plain")),
                true,
                &known
            )),
            "payload_too_large"
        );
        assert_eq!(
            code(JsonBody::parse(
                &post("{}", Some("text/plain")),
                true,
                &known
            )),
            "unsupported_media_type"
        );
        assert_eq!(
            code(JsonBody::parse(&post("{}", None), true, &known)),
            "unsupported_media_type"
        );
        assert_eq!(
            code(JsonBody::parse(
                &post("{", Some("application/json")),
                true,
                &known
            )),
            "invalid_json"
        );
        assert_eq!(
            code(JsonBody::parse(
                &post("[1]", Some("application/json")),
                true,
                &known
            )),
            "invalid_json"
        );
        assert_eq!(
            code(JsonBody::parse(
                &post("{\"amont\":1}", Some("application/json")),
                true,
                &known
            )),
            "unknown_field"
        );
        assert!(JsonBody::parse(
            &post("{\"amount\":1}", Some("Application/JSON; charset=utf-8")),
            true,
            &known
        )
        .is_ok());
    }

    #[test]
    fn optional_bodies_may_be_empty_without_content_type() {
        assert!(JsonBody::parse(&post("", None), false, &[]).is_ok());
        assert_eq!(
            code(JsonBody::parse(&post("", None), true, &[])),
            "unsupported_media_type"
        );
    }

    #[test]
    fn integers_must_be_exact() {
        // `1e3` is the integer 1000 in JSON Schema's sense (see `integers_are_json_schema_integers`).
        for bad in [
            "1.5",
            "\"100\"",
            "9223372036854775808",
            "1e-3",
            "true",
            "null",
        ] {
            let value: Value = serde_json::from_str(bad).unwrap();
            assert!(json::integer(&value).is_err(), "{bad}");
        }
        assert_eq!(json::integer(&serde_json::json!(-1)).unwrap(), -1);
        assert_eq!(json::integer(&serde_json::json!(2500)).unwrap(), 2500);
    }
}
