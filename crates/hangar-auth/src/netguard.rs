//! Outbound fetches on behalf of untrusted input (Client ID Metadata
//! Documents): resolve, refuse private addresses, then connect only to the
//! addresses that passed.
//!
//! The check happens in the DNS resolver the HTTP client connects through,
//! so a name cannot resolve to a public address when checked and a private
//! one when connected (DNS rebinding). IP-literal hosts never reach a
//! resolver, so [`check_url`] refuses them before any request is made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Connect and whole-request timeout of a guarded fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which destinations an outbound fetch may reach.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetPolicy {
    /// Allow loopback addresses (127.0.0.0/8, ::1): a development setting.
    pub allow_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The destination is not allowed (scheme, private address, …).
    #[error("refused: {0}")]
    Refused(String),
    /// The URL does not parse.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The body is larger than allowed.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// Connection, TLS, timeout or protocol failure.
    #[error("fetch failed: {0}")]
    Http(String),
}

/// Whether `ip` must never be contacted under `policy`.
pub fn forbidden(ip: IpAddr, policy: &NetPolicy) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, policy),
        IpAddr::V6(v6) => forbidden_v6(v6, policy),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn forbidden_v4(ip: Ipv4Addr, policy: &NetPolicy) -> bool {
    if ip.is_loopback() {
        return !policy.allow_loopback;
    }
    const NETS: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    NETS.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// The IPv4 address carried in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn forbidden_v6(ip: Ipv6Addr, policy: &NetPolicy) -> bool {
    if ip.is_loopback() {
        return !policy.allow_loopback;
    }
    if ip.is_unspecified() {
        return true;
    }
    let bits = u128::from(ip);
    // Addresses that embed an IPv4 destination: judge the embedded one.
    if in_v6(ip, 0xffff << 32, 96) || in_v6(ip, 0, 96) {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d
        return forbidden_v4(low_v4(ip), policy);
    }
    if in_v6(ip, 0x0064_ff9b << 96, 96) {
        // NAT64 well-known prefix
        return forbidden_v4(low_v4(ip), policy);
    }
    if in_v6(ip, 0x2002 << 112, 16) {
        // 6to4: the IPv4 address follows the prefix
        return forbidden_v4(Ipv4Addr::from((bits >> 80) as u32), policy);
    }
    const NETS: &[(u128, u32)] = &[
        (0x2001_0000 << 96, 32),      // Teredo (obfuscated IPv4 inside)
        (0x2001_0002 << 96, 48),      // benchmarking
        (0x2001_0010 << 96, 28),      // ORCHID
        (0x2001_0020 << 96, 28),      // ORCHIDv2
        (0x2001_0db8 << 96, 32),      // documentation
        (0x3fff << 112, 20),          // documentation (RFC 9637)
        (0x0064_ff9b_0001 << 80, 48), // local-use NAT64
        (0x0100 << 112, 64),          // discard-only
        (0xfc00 << 112, 7),           // unique local
        (0xfe80 << 112, 10),          // link-local
        (0xfec0 << 112, 10),          // site-local (deprecated)
        (0xff00 << 112, 8),           // multicast
    ];
    if NETS.iter().any(|&(net, prefix)| in_v6(ip, net, prefix)) {
        return true;
    }
    // Everything outside global unicast 2000::/3 is special-purpose.
    !in_v6(ip, 0x2000 << 112, 3)
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Whether a URL's host is loopback: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_url(url: &Url) -> bool {
    url.host().is_some_and(|h| is_loopback_host(&h))
}

/// Parses `url` and refuses it unless its scheme and (for IP literals) its
/// address are allowed. Host names are checked later, by the resolver.
pub fn check_url(url: &str, policy: &NetPolicy) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    let host = parsed
        .host()
        .ok_or_else(|| FetchError::InvalidUrl("no host".into()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_loopback && is_loopback_host(&host) => {}
        other => {
            return Err(FetchError::Refused(format!(
                "scheme {other} is not allowed (https only)"
            )));
        }
    }
    let literal = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    };
    if let Some(ip) = literal.filter(|ip| forbidden(*ip, policy)) {
        return Err(FetchError::Refused(format!(
            "{ip} is a private or reserved address"
        )));
    }
    Ok(parsed)
}

/// A DNS resolver that drops every address [`forbidden`] refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver {
    pub policy: NetPolicy,
}

/// The resolver's refusal, found again in a reqwest error's source chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refused: {0} resolves only to private addresses")]
pub struct ResolveRefused(pub String);

impl From<ResolveRefused> for FetchError {
    fn from(r: ResolveRefused) -> FetchError {
        FetchError::Refused(format!("{} resolves only to private addresses", r.0))
    }
}

impl GuardedResolver {
    /// Resolves `host` and keeps the allowed addresses (port 0).
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, FetchError> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| FetchError::Http(format!("cannot resolve {host}: {e}")))?
            .collect();
        if found.is_empty() {
            return Err(FetchError::Http(format!("cannot resolve {host}")));
        }
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| !forbidden(a.ip(), &self.policy))
            .collect();
        if allowed.is_empty() {
            return Err(ResolveRefused(host.to_owned()).into());
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = *self;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            match this.lookup(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(FetchError::Refused(_)) => Err(Box::new(ResolveRefused(host)) as _),
                Err(e) => Err(Box::new(e) as _),
            }
        })
    }
}

/// An HTTP client that only reaches addresses its policy allows: guarded
/// resolver, no redirects, no proxy, short timeouts.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: NetPolicy,
}

impl GuardedClient {
    pub fn new(policy: NetPolicy) -> Result<GuardedClient, FetchError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(GuardedClient { client, policy })
    }

    pub fn policy(&self) -> NetPolicy {
        self.policy
    }
}

/// A guarded client for `policy`.
pub fn guarded_client(policy: NetPolicy) -> Result<GuardedClient, FetchError> {
    GuardedClient::new(policy)
}

/// Maps a reqwest error, surfacing the resolver's refusal as [`FetchError::Refused`].
fn map_reqwest(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<ResolveRefused>() {
            return refused.clone().into();
        }
        source = err.source();
    }
    if e.is_timeout() {
        return FetchError::Http("timed out".into());
    }
    // Without the URL: it may carry query secrets, and the caller knows it.
    FetchError::Http(e.without_url().to_string())
}

/// GETs `url` through `client` and reads at most `max_bytes` of body.
/// Redirects are not followed: a 3xx comes back as is.
pub async fn fetch_limited(
    client: &GuardedClient,
    url: &str,
    max_bytes: usize,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), FetchError> {
    let parsed = check_url(url, &client.policy)?;
    let mut response = client
        .client
        .get(parsed)
        .send()
        .await
        .map_err(map_reqwest)?;
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = BytesMut::new();
    // Bounded: each chunk grows `body`, and we stop past `max_bytes`; the
    // client's total timeout bounds a slow sender.
    while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: NetPolicy = NetPolicy {
        allow_loopback: false,
    };
    const DEV: NetPolicy = NetPolicy {
        allow_loopback: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbids_special_ipv4() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(ip(s), &DEV), "{s} should be forbidden");
        }
    }

    #[test]
    fn allows_public_ipv4() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!forbidden(ip(s), &STRICT), "{s} should be allowed");
        }
    }

    #[test]
    fn loopback_follows_policy() {
        for s in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(forbidden(ip(s), &STRICT), "{s}");
            assert!(!forbidden(ip(s), &DEV), "{s}");
        }
    }

    #[test]
    fn forbids_special_ipv6() {
        for s in [
            "::",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2001::1",
            "2001:db8::1",
            "2001:2::1",
            "3fff::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::2:3:4:5",
            "4000::1",
        ] {
            assert!(forbidden(ip(s), &DEV), "{s} should be forbidden");
        }
    }

    #[test]
    fn allows_public_ipv6() {
        for s in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!forbidden(ip(s), &STRICT), "{s} should be allowed");
        }
    }

    #[test]
    fn scheme_rules() {
        assert!(check_url("https://example.com/a", &STRICT).is_ok());
        assert!(check_url("http://example.com/a", &DEV).is_err());
        assert!(check_url("http://127.0.0.1:8080/a", &STRICT).is_err());
        assert!(check_url("http://127.0.0.1:8080/a", &DEV).is_ok());
        assert!(check_url("http://[::1]:8080/a", &DEV).is_ok());
        assert!(check_url("http://localhost:8080/a", &DEV).is_ok());
        assert!(check_url("ftp://example.com/a", &DEV).is_err());
        assert!(check_url("file:///etc/passwd", &DEV).is_err());
        assert!(check_url("not a url", &DEV).is_err());
    }

    #[test]
    fn ip_literals_are_checked() {
        for url in [
            "https://10.1.2.3/x",
            "https://169.254.169.254/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[fe80::1]/",
            "https://0xa9.0xfe.0xa9.0xfe/",
            "https://2852039166/",
            "https://127.0.0.1/",
        ] {
            let err = check_url(url, &STRICT).unwrap_err();
            assert!(matches!(err, FetchError::Refused(_)), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn resolver_drops_forbidden_addresses() {
        let strict = GuardedResolver { policy: STRICT };
        let err = strict.lookup("localhost").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: localhost resolves only to private addresses"
        );
        let dev = GuardedResolver { policy: DEV };
        let addrs = dev.lookup("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
