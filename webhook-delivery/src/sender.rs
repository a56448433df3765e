//! The outbound HTTP client of deliveries: its own, apart from the SDK's (which trusts Amazon's
//! roots alone), with Mozilla's roots for the public web, a 10 s limit on the whole attempt, no
//! redirects followed (a 3xx is a failed attempt), no proxy from the environment, and the
//! connect-time check of the contract: every address a host name resolves to must be public
//! (`shared::webhooks::destination::is_public`), or nothing is sent. A name that resolves to a
//! private address (DNS rebinding) is refused here, after resolution, not only when saved.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shared::webhooks::delivery::Answer;
use shared::webhooks::destination::{is_public, WebhookUrl};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The contract's limit for one attempt: connect, send and the whole answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer's body that is read (API.md, "Isolation"); then the connection is
/// dropped. The body is never kept: this bounds the time and memory a hostile endpoint costs.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The headers and body of one attempt.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: &'a str,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct SenderError(String);

/// Sends attempts. Built once per container.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_local: bool,
}

impl Sender {
    /// `allow_local`: the local stack's switch (`WEBHOOK_ALLOW_LOCAL_URLS`), which also lets
    /// loopback addresses through the connect-time check.
    pub fn new(allow_local: bool) -> Result<Self, SenderError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SenderError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly { allow_local }))
            .user_agent(concat!("payments-api-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SenderError(e.to_string()))?;
        Ok(Self {
            client,
            allow_local,
        })
    }

    /// POSTs one attempt to `url` and says what came back. Never fails: every way an attempt
    /// can go wrong is an [`Answer`] that schedules a retry (the reason is logged here, without
    /// the body or the signature).
    pub async fn post(&self, url: &str, signed: &Signed<'_>) -> Answer {
        // The URL was checked when it was saved; checked again, since an IP literal is not
        // resolved (and so not seen by the resolver's check).
        if let Err(err) = WebhookUrl::parse(url, self.allow_local) {
            tracing::warn!(webhook_id = signed.webhook_id, reason = %err, "endpoint URL refused at send time");
            return Answer::None;
        }
        let headers = [
            ("webhook-id", signed.webhook_id.to_owned()),
            ("webhook-timestamp", signed.timestamp.to_string()),
            ("webhook-signature", signed.signature.clone()),
        ];
        self.post_json(url, &headers, signed.body, signed.webhook_id)
            .await
    }

    /// POSTs a JSON `body` with `headers` to `url` and says what came back. For an attempt
    /// that is a merchant's endpoint ([`Sender::post`]); else a route of this API (the sandbox
    /// processor reporting to `/processor_events/sandbox`), with the same limits and checks.
    /// `log_id` names it in the log lines.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
        log_id: &str,
    ) -> Answer {
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.body(body.to_owned()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // The answer counts once its body has ended or MAX_ANSWER_BYTES of it were
                // read (within the same 10 s), whichever comes first; the body is dropped,
                // never stored.
                match drain_bounded(response).await {
                    Ok(()) => Answer::Status(status),
                    Err(err) => {
                        tracing::warn!(webhook_id = log_id, status, error = %error_chain(&err), "answer cut short");
                        Answer::None
                    }
                }
            }
            Err(err) => {
                tracing::warn!(webhook_id = log_id, timeout = err.is_timeout(), error = %error_chain(&err), "no answer");
                Answer::None
            }
        }
    }
}

/// Reads `response`'s body chunk by chunk, keeping none of it, until it ends or
/// [`MAX_ANSWER_BYTES`] were read. Dropping the response then closes its connection (a body
/// not read to its end is never put back in the pool), so the rest is never received.
async fn drain_bounded(mut response: reqwest::Response) -> Result<(), reqwest::Error> {
    let mut read = 0usize;
    while read < MAX_ANSWER_BYTES {
        match response.chunk().await? {
            Some(chunk) => read += chunk.len(),
            None => return Ok(()),
        }
    }
    tracing::debug!(
        read,
        "answer longer than the limit; the connection is dropped"
    );
    Ok(())
}

/// The error with its causes (reqwest's own text is only the outermost).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves with the system resolver and keeps only public addresses (and loopback ones
/// locally); none left → the connection is refused before it is made.
#[derive(Debug)]
struct PublicOnly {
    allow_local: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found
                .filter(|addr| permitted(addr.ip(), allow_local))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn permitted(ip: IpAddr, allow_local: bool) -> bool {
    is_public(ip) || (allow_local && ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_local_is_allowed() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.0.0.7".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(permitted(public, false));
        assert!(!permitted(loopback, false));
        assert!(!permitted(private, false));
        assert!(!permitted(metadata, false));
        assert!(permitted(loopback, true));
        // The local switch opens loopback, nothing else.
        assert!(!permitted(private, true));
        assert!(!permitted(metadata, true));
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_connect_time() {
        let resolver = PublicOnly { allow_local: false };
        let refused = resolver.resolve("localhost".parse::<Name>().unwrap()).await;
        assert!(refused.is_err());
        let local = PublicOnly { allow_local: true };
        let addrs: Vec<SocketAddr> = local
            .resolve("localhost".parse::<Name>().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
