//! One AWS JSON-protocol request, signed with SigV4 by `aws-sigv4` (the signer the SDK uses,
//! linked into every function already), for the calls made without an SDK client: the Stripe
//! keys' one Secrets Manager read (`processor::stripe::keys`), and the bare DynamoDB call
//! `make bench` compares the SDK against (bench/examples/sdk_overhead.rs).

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;

/// What to call.
pub struct Call<'a> {
    /// `https://<service>.<region>.amazonaws.com`, or a local endpoint (`http://…`).
    pub endpoint: &'a str,
    pub region: &'a str,
    /// The signing name (`secretsmanager`, `dynamodb`).
    pub service: &'a str,
    /// `X-Amz-Target` (`secretsmanager.GetSecretValue`).
    pub target: &'a str,
    /// `application/x-amz-json-1.0` or `-1.1`, as the service speaks.
    pub content_type: &'a str,
}

/// `body` POSTed to `call`, signed now with `identity`'s credentials, as the request body type
/// `B` the caller's HTTP client sends.
pub fn signed_request<B: From<String>>(
    call: &Call<'_>,
    body: String,
    identity: &Identity,
) -> Result<http::Request<B>, String> {
    let endpoint = call.endpoint.trim_end_matches('/');
    let uri = format!("{endpoint}/");
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, host)| host);
    let headers = [
        ("content-type", call.content_type),
        ("x-amz-target", call.target),
        ("host", host),
    ];
    let params = SigningParams::builder()
        .identity(identity)
        .region(call.region)
        .name(call.service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|err| format!("signing parameters: {err}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        uri.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|err| format!("signable request: {err}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|err| format!("signing: {err}"))?
        .into_parts();
    let mut request = http::Request::post(uri.as_str())
        .header(headers[0].0, headers[0].1)
        .header(headers[1].0, headers[1].1)
        .body(B::from(body))
        .map_err(|err| format!("request: {err}"))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}
