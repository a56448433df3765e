//! The connector's HTTPS calls to Stripe: one small client over the hyper and rustls stack the
//! SDK's own client is built on (no second HTTP stack in the zips), trusting only the roots
//! Stripe publishes for its domains (`shared/certs/stripe-roots.pem`, from stripe-python 16.1.0's
//! bundle; docs.stripe.com/tls-certificates), built on the first call of a container, never at
//! init.
//!
//! What a call can end as, and what each promises (the trait's `Err` contract rests on it):
//! - [`Sent::Answered`]: Stripe answered (any status): its JSON body and request id.
//! - [`CallError::NotSent`]: the connection failed before the request was written (connect
//!   refused or timed out, TLS failure): Stripe did nothing.
//! - [`CallError::Lost`]: the request may have reached Stripe and the answer did not come back
//!   (a timeout, a reset): Stripe may have acted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::Duration;

/// The roots Stripe's domains chain to (see the module header).
pub const STRIPE_ROOTS_PEM: &str = include_str!("../../../certs/stripe-roots.pem");

/// The Stripe API version every call is made against: what the mapping in `super` was written
/// for. Changing it is a code change, with its tests.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// How long one Stripe call may take. Stripe answers in a few hundred ms; a create-payment makes
/// two calls (create, confirm) and must fit both, its DynamoDB writes and its margin inside the
/// function timeout (`store::client::TIME_BUDGET`, 10 s by default).
#[derive(Debug, Clone, Copy)]
pub struct CallBudget {
    pub connect: Duration,
    pub call: Duration,
}

pub const CALL_BUDGET: CallBudget = CallBudget {
    connect: Duration::from_millis(1000),
    call: Duration::from_millis(3000),
};

/// Stripe's answer to one call.
#[derive(Debug)]
pub struct Sent {
    pub status: u16,
    pub body: serde_json::Value,
    /// Stripe's `Request-Id` (what its support asks for; logged, never shown to clients).
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("not sent: {0}")]
    NotSent(String),
    #[error("answer lost: {0}")]
    Lost(String),
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Whose certificates a client trusts: Stripe's roots for Stripe, Amazon's for the AWS API the
/// connector reads its keys from (Secrets Manager, `super::keys`). No other CA can vouch for
/// either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Stripe,
    Aws,
}

/// One client per trust and container, made on its first call.
fn client(trust: Trust, budget: CallBudget) -> &'static HttpsClient {
    static STRIPE: OnceLock<HttpsClient> = OnceLock::new();
    static AWS: OnceLock<HttpsClient> = OnceLock::new();
    let (cell, pem) = match trust {
        Trust::Stripe => (&STRIPE, STRIPE_ROOTS_PEM),
        Trust::Aws => (&AWS, crate::store::client::AWS_ROOTS_PEM),
    };
    cell.get_or_init(|| {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.expect("the compiled-in roots parse"))
                .expect("the compiled-in roots are valid trust anchors");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(budget.connect));
        // `http://` is allowed for the local stack (localstripe, the local Secrets Manager); a
        // deployment's `StripeApiBase` is `https://` (checked by the configuration).
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

/// An answer: its status, headers and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: serde_json::Value,
}

/// Sends `request` on the client for `trust`, within `budget`, and reads its JSON answer.
pub async fn exchange(
    trust: Trust,
    request: hyper::Request<Full<Bytes>>,
    budget: CallBudget,
) -> Result<Answer, CallError> {
    let exchange = async {
        let response = client(trust, budget)
            .request(request)
            .await
            .map_err(|err| {
                // hyper-util says "connect" for failures before the request was written.
                if err.is_connect() {
                    CallError::NotSent(err.to_string())
                } else {
                    CallError::Lost(err.to_string())
                }
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|err| CallError::Lost(err.to_string()))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).map_err(|err| {
            CallError::Lost(format!("an answer that is not JSON ({status}): {err}"))
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(budget.call, exchange)
        .await
        .unwrap_or_else(|_| Err(CallError::Lost(format!("no answer in {:?}", budget.call))))
}

/// Sends one request to Stripe: `method` `url`, a form body (POST) or none (GET), with the
/// secret key, the pinned version and, for a POST, the `Idempotency-Key`.
pub async fn send(
    method: hyper::Method,
    url: &str,
    secret_key: &str,
    idempotency_key: Option<&str>,
    form: String,
    budget: CallBudget,
) -> Result<Sent, CallError> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {secret_key}"))
        .header("stripe-version", STRIPE_VERSION)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let request = builder
        .body(Full::new(Bytes::from(form)))
        .map_err(|err| CallError::NotSent(format!("bad request: {err}")))?;
    let answer = exchange(Trust::Stripe, request, budget).await?;
    let request_id = answer
        .headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok(Sent {
        status: answer.status,
        body: answer.body,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_stripes_twelve() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs: Vec<_> = CertificateDer::pem_slice_iter(STRIPE_ROOTS_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 12);
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        assert_eq!((added, ignored), (12, 0));
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        // A port nothing listens on: nothing can have reached Stripe.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = send(
            hyper::Method::GET,
            &format!("http://127.0.0.1:{port}/v1/payment_intents/pi_1"),
            "sk_test_x",
            None,
            String::new(),
            CALL_BUDGET,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CallError::NotSent(_)), "{err:?}");
    }
}
