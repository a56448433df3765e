//! Answers that the function is alive and which version it runs. Touches nothing else, so a
//! failing datastore does not make the API look dead to a load balancer.

use lambda_http::{Body, Request, Response};
use shared::http::ApiResponse;

pub fn health(req: &Request) -> Response<Body> {
    let body = serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") });
    shared::app::render(req, Ok(ApiResponse::ok(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::testing::{parts, request};

    #[test]
    fn reports_ok_and_the_crate_version_without_auth() {
        let req = request("health").without_header("authorization").build();
        let response = health(&req);
        let (status, body) = parts(&response);
        assert_eq!(status, 200);
        assert_eq!(
            body,
            serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(!response.headers()["x-request-id"].is_empty());
    }
}
