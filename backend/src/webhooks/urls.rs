//! Which URLs an endpoint may have: http(s) only, and in production none that resolves to a
//! loopback, private, link-local, shared or unspecified address (a webhook must not become a way
//! to reach the operator's own network), unless `WEBHOOK_ALLOW_PRIVATE_URLS` says otherwise.
//! The check runs when an endpoint is created or changed, and again at every send through the
//! HTTP client's resolver (`GuardedResolver`), so a name that later resolves inward is refused
//! then too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::FieldError;

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Whether an address is one a webhook must not reach in production.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT (shared address space)
        || (a == 100 && (64..128).contains(&b))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80
        // ::ffff:0:0/96 is handled by the caller; 64:ff9b::/96 (NAT64) may embed anything
        || (first == 0x64 && ip.segments()[1] == 0xff9b)
}

fn fail(code: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: "url".to_owned(), code: code.to_owned(), message: message.into() }
}

fn refused(message: impl Into<String>) -> FieldError {
    fail("url_not_allowed", message)
}

/// Checks an endpoint's URL: well-formed http(s) with a host, and with `guard` on (production
/// without `WEBHOOK_ALLOW_PRIVATE_URLS`) resolving only to public addresses. Returns it as given.
pub async fn check(raw: &str, guard: bool) -> Result<String, FieldError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(fail("length", format!("url must be at most {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw).map_err(|_| fail("url", "url must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail("url_scheme", "url must start with http:// or https://"));
    }
    let Some(host) = url.host() else {
        return Err(fail("url", "url must name a host"));
    };
    if guard {
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => match tokio::net::lookup_host((name, port)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => return Err(refused(format!("url's host `{name}` cannot be resolved"))),
            },
        };
        if addresses.is_empty() {
            return Err(refused("url's host resolves to no address"));
        }
        if let Some(ip) = addresses.into_iter().find(|ip| is_internal(*ip)) {
            return Err(refused(format!(
                "url resolves to {ip}, a loopback, private or link-local address, which webhooks may not reach \
                 in production (WEBHOOK_ALLOW_PRIVATE_URLS)"
            )));
        }
    }
    Ok(raw.to_owned())
}

/// The HTTP client's resolver when the guard is on: resolves as usual, and fails when any address
/// is internal.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(addr) = found.iter().find(|a| is_internal(a.ip())) {
                return Err(format!("{} resolves to the internal address {}", name.as_str(), addr.ip()).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// At send time: whether a URL whose host is an address literal (which no resolver sees) is
/// internal.
pub fn literal_is_internal(raw: &str) -> bool {
    match url::Url::parse(raw).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_told_apart_from_public_ones() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }
}
