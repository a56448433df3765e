//! Where a webhook may be sent. A merchant's endpoint URL must not make our delivery path reach
//! into our own network (SSRF): only `https://` to a host name or a public address is accepted,
//! and the delivery path checks the address again after DNS resolution, at connect time
//! ([`is_public`]), since a public name can resolve to a private address.
//!
//! The local stack alone (`WEBHOOK_ALLOW_LOCAL_URLS=true`, set by `make dev`) also accepts
//! `http://127.0.0.1:PORT/…` and `http://localhost:PORT/…`, for a receiver on the same machine.

use crate::domain::ParseError;
use std::net::{IpAddr, Ipv4Addr};
use url::{Host, Url};

/// The longest URL an endpoint may have, in characters.
pub const MAX_URL_CHARS: usize = 2048;

/// A URL that passed [`WebhookUrl::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Checks `input` against the contract's rules; `allow_local` is the local stack's switch.
    pub fn parse(input: &str, allow_local: bool) -> Result<Self, ParseError> {
        if input.chars().count() > MAX_URL_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {MAX_URL_CHARS} characters"
            )));
        }
        let url = Url::parse(input).map_err(|_| ParseError::new("must be an absolute URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ParseError::new(
                "must not carry credentials; authenticate deliveries by their signature",
            ));
        }
        let local = allow_local && is_loopback_host(&url);
        match url.scheme() {
            "https" => {}
            "http" if local => {}
            _ => return Err(ParseError::new("must be an https:// URL")),
        }
        if !local {
            match url.host() {
                Some(Host::Domain(name)) if !is_local_name(name) => {}
                Some(Host::Ipv4(ip)) if is_public(IpAddr::V4(ip)) => {}
                Some(Host::Ipv6(ip)) if is_public(IpAddr::V6(ip)) => {}
                Some(_) => {
                    return Err(ParseError::new(
                        "must name a public host: loopback, private, link-local and metadata addresses are refused",
                    ))
                }
                None => return Err(ParseError::new("must name a host")),
            }
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The two hosts the contract names for the local stack: `127.0.0.1` and `localhost`.
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        _ => false,
    }
}

/// Whether a delivery may connect to `ip`: not loopback, private, link-local (the metadata
/// service, 169.254.169.254 and fd00:ec2::254, is in these), unspecified, shared (CGNAT),
/// benchmarking, documentation, multicast or reserved. An IPv4 address inside IPv6 (mapped or
/// NAT64) is judged as the IPv4 address it carries.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                let o = v6.octets();
                return is_public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0; 6]) // IPv4-compatible ::a.b.c.d (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved, broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_urls_are_accepted() {
        for ok in [
            "https://example.com/webhooks",
            "https://hooks.example.com:8443/a/b?c=d",
            "https://93.184.215.14/hook",
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",
        ] {
            let url = WebhookUrl::parse(ok, false).unwrap_or_else(|e| panic!("{ok}: {}", e.0));
            assert!(url.as_str().starts_with("https://"));
        }
    }

    #[test]
    fn the_contracts_refused_ranges_and_schemes_are_refused() {
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/hook",
            "example.com/hook",
            "/hook",
            "https://127.0.0.1/hook",
            "https://127.8.9.10/hook",
            "https://10.1.2.3/hook",
            "https://172.16.0.1/hook",
            "https://172.31.255.255/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[fc00::1]/hook",
            "https://[fd00:ec2::254]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://0.0.0.0/hook",
            "https://100.64.0.1/hook",
            "https://localhost/hook",
            "https://api.localhost/hook",
            "https://2130706433/hook",
            "https://user:pass@example.com/hook",
            long.as_str(),
        ] {
            assert!(WebhookUrl::parse(bad, false).is_err(), "{bad} accepted");
        }
        // 172.32/16 is outside 172.16/12.
        assert!(WebhookUrl::parse("https://172.32.0.1/hook", false).is_ok());
    }

    #[test]
    fn only_the_local_stack_reaches_a_receiver_on_this_machine() {
        for local in ["http://127.0.0.1:8123/hook", "http://localhost:8123/hook"] {
            assert!(WebhookUrl::parse(local, false).is_err(), "{local}");
            assert!(WebhookUrl::parse(local, true).is_ok(), "{local}");
        }
        for still_bad in [
            "http://10.0.0.1:8123/hook",
            "http://example.com/hook",
            "http://169.254.169.254/",
        ] {
            assert!(WebhookUrl::parse(still_bad, true).is_err(), "{still_bad}");
        }
    }

    #[test]
    fn connect_time_checks_judge_embedded_ipv4_too() {
        let private: IpAddr = "::ffff:192.168.0.1".parse().unwrap();
        let nat64: IpAddr = "64:ff9b::a00:1".parse().unwrap();
        let public: IpAddr = "::ffff:93.184.215.14".parse().unwrap();
        assert!(!is_public(private) && !is_public(nat64));
        assert!(is_public(public));
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(!is_public("255.255.255.255".parse().unwrap()));
    }
}
