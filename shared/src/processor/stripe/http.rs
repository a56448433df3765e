//! The connector's HTTPS calls to Stripe, on the SDK's own HTTP connector (the hyper and rustls
//! stack every function's DynamoDB client runs on: no second HTTP stack in the zips), trusting only the roots
//! Stripe publishes for its domains (`shared/certs/stripe-roots.pem`, from stripe-python 16.1.0's
//! bundle; docs.stripe.com/tls-certificates), built on the first call of a container, never at
//! init.
//!
//! What a call can end as, and what each promises (the trait's `Err` contract rests on it):
//! - [`Sent`]: Stripe answered (any status): its JSON body and request id.
//! - [`CallError::NotSent`]: the connection failed before the request was written (refused,
//!   unreachable, TLS failure): Stripe did nothing. A connect that times out is counted as
//!   lost, to be safe: the connector does not say at which step its time ran out.
//! - [`CallError::Lost`]: the request may have reached Stripe and the answer did not come back
//!   (a timeout, a reset): Stripe may have acted.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
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

/// Whose certificates a connector trusts: Stripe's roots for Stripe, Amazon's for the AWS API
/// the connector reads its keys from (Secrets Manager, `super::keys`). No other CA can vouch for
/// either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Stripe,
    Aws,
}

/// One connector per trust and container, made on its first call: the SDK's own HTTP connector
/// (`aws-smithy-http-client`: hyper and rustls with aws-lc, as every function's DynamoDB
/// client), so the zips carry one HTTP stack. It speaks plain `http://` too (the local stack's
/// localstripe and Secrets Manager); a deployment's `StripeApiBase` is `https://` (checked by
/// the configuration).
fn connector(trust: Trust, budget: CallBudget) -> &'static Connector {
    static STRIPE: OnceLock<Connector> = OnceLock::new();
    static AWS: OnceLock<Connector> = OnceLock::new();
    let (cell, pem) = match trust {
        Trust::Stripe => (&STRIPE, STRIPE_ROOTS_PEM),
        Trust::Aws => (&AWS, crate::store::client::AWS_ROOTS_PEM),
    };
    cell.get_or_init(|| {
        let trust = TrustStore::empty().with_pem_certificate(pem.as_bytes());
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .expect("a trust store alone is a valid TLS context");
        Connector::builder()
            .connector_settings(
                HttpConnectorSettings::builder()
                    .connect_timeout(budget.connect)
                    .read_timeout(budget.call)
                    .build(),
            )
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build()
    })
}

/// An answer: its status, headers and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub request_id: String,
    pub body: serde_json::Value,
}

/// Whether a connector error says the request was never written: the connection itself failed
/// (refused, unreachable, TLS). Anything else may have reached the other side.
fn before_sending(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(hyper) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            return hyper.is_connect();
        }
        source = err.source();
    }
    false
}

/// Sends `request` on the connector for `trust`, within `budget`, and reads its JSON answer.
pub async fn exchange(
    trust: Trust,
    request: http::Request<SdkBody>,
    budget: CallBudget,
) -> Result<Answer, CallError> {
    let exchange = async {
        let request = request
            .try_into()
            .map_err(|err| CallError::NotSent(format!("bad request: {err}")))?;
        let response = connector(trust, budget)
            .call(request)
            .await
            .map_err(|err| {
                if before_sending(&err) {
                    CallError::NotSent(err.to_string())
                } else {
                    CallError::Lost(err.to_string())
                }
            })?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("request-id")
            .unwrap_or("")
            .to_owned();
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
            request_id,
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
    method: ::http::Method,
    url: &str,
    secret_key: &str,
    idempotency_key: Option<&str>,
    form: String,
    budget: CallBudget,
) -> Result<Sent, CallError> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {secret_key}"))
        .header("stripe-version", STRIPE_VERSION)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let request = builder
        .body(SdkBody::from(form))
        .map_err(|err| CallError::NotSent(format!("bad request: {err}")))?;
    let answer = exchange(Trust::Stripe, request, budget).await?;
    Ok(Sent {
        status: answer.status,
        body: answer.body,
        request_id: answer.request_id,
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
            ::http::Method::GET,
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
