//! The checks every request passes before it reaches MCP: DNS-rebinding
//! protection (Host and Origin), the bearer token, and content negotiation.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Host names a loopback listener answers to by default.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// Which hosts and origins may reach the endpoint.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Host names (no port) accepted in `Host`; empty accepts any host.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted exactly (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
}

impl OriginPolicy {
    /// The default for a listener: loopback names when bound to loopback,
    /// anything otherwise (a public deployment names its hosts in config).
    pub fn for_listener(addr: &std::net::SocketAddr) -> OriginPolicy {
        let allowed_hosts = if addr.ip().is_loopback() {
            LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect()
        } else {
            Vec::new()
        };
        OriginPolicy {
            allowed_hosts,
            allowed_origins: Vec::new(),
        }
    }

    /// `Err` with a reason when the request must be refused with 403.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if !self.allowed_hosts.is_empty() {
            let ok = host.is_some_and(|h| self.host_allowed(host_name(h)));
            if !ok {
                return Err("Host header is not allowed");
            }
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(()); // not a browser: nothing to rebind
        };
        let origin = origin
            .to_str()
            .map_err(|_| "Origin header is not allowed")?;
        if self.allowed_origins.iter().any(|o| o == origin) {
            return Ok(());
        }
        let origin_authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or("Origin header is not allowed")?;
        let same_origin = host.is_some_and(|h| h.eq_ignore_ascii_case(origin_authority));
        let loopback_origin = self
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host_name(origin_authority)));
        if same_origin || loopback_origin {
            Ok(())
        } else {
            Err("Origin header is not allowed")
        }
    }

    fn host_allowed(&self, name: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// The host name of `host[:port]` (IPv6 literals keep their brackets).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// True when `Authorization: Bearer <token>` carries `expected`, compared in
/// constant time so the token cannot be guessed byte by byte.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(token.trim().as_bytes().ct_eq(expected.as_bytes()))
}

/// What the client said it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub json: bool,
    pub sse: bool,
}

impl Accept {
    /// A missing header accepts anything (curl, simple clients).
    pub fn from_headers(headers: &HeaderMap) -> Accept {
        let Some(value) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Accept {
                json: true,
                sse: true,
            };
        };
        let mut accept = Accept {
            json: false,
            sse: false,
        };
        for part in value.split(',') {
            let media = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                "application/json" | "application/*" => accept.json = true,
                "text/event-stream" | "text/*" => accept.sse = true,
                "*/*" => {
                    accept.json = true;
                    accept.sse = true;
                }
                _ => {}
            }
        }
        accept
    }
}

/// True when the body is declared as JSON.
pub fn is_json_content(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn loopback_policy_refuses_rebinding() {
        let p = OriginPolicy::for_listener(&"127.0.0.1:8000".parse().unwrap());
        assert!(p.check(&headers(&[("host", "127.0.0.1:8000")])).is_ok());
        assert!(p
            .check(&headers(&[
                ("host", "localhost:8000"),
                ("origin", "http://localhost:3000")
            ]))
            .is_ok());
        assert!(p.check(&headers(&[("host", "[::1]:8000")])).is_ok());
        assert!(p.check(&headers(&[("host", "evil.example.com")])).is_err());
        assert!(p
            .check(&headers(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err());
        assert!(p
            .check(&headers(&[("host", "127.0.0.1:8000"), ("origin", "null")]))
            .is_err());
    }

    #[test]
    fn public_policy_allows_same_origin_and_listed_origins() {
        let mut p = OriginPolicy::for_listener(&"0.0.0.0:8000".parse().unwrap());
        p.allowed_origins.push("https://app.example.com".into());
        assert!(p.check(&headers(&[("host", "mcp.example.com")])).is_ok());
        assert!(p
            .check(&headers(&[
                ("host", "mcp.example.com"),
                ("origin", "https://mcp.example.com")
            ]))
            .is_ok());
        assert!(p
            .check(&headers(&[
                ("host", "mcp.example.com"),
                ("origin", "https://app.example.com")
            ]))
            .is_ok());
        assert!(p
            .check(&headers(&[
                ("host", "mcp.example.com"),
                ("origin", "https://evil.example.com")
            ]))
            .is_err());
    }

    #[test]
    fn bearer_tokens() {
        assert!(bearer_matches(
            &headers(&[("authorization", "Bearer s3cret")]),
            "s3cret"
        ));
        assert!(bearer_matches(
            &headers(&[("authorization", "bearer s3cret")]),
            "s3cret"
        ));
        assert!(!bearer_matches(
            &headers(&[("authorization", "Bearer s3cre")]),
            "s3cret"
        ));
        assert!(!bearer_matches(
            &headers(&[("authorization", "Basic s3cret")]),
            "s3cret"
        ));
        assert!(!bearer_matches(&headers(&[]), "s3cret"));
    }

    #[test]
    fn accept_negotiation() {
        let a = Accept::from_headers(&headers(&[(
            "accept",
            "application/json, text/event-stream",
        )]));
        assert_eq!(
            a,
            Accept {
                json: true,
                sse: true
            }
        );
        let a = Accept::from_headers(&headers(&[("accept", "text/event-stream;q=1")]));
        assert_eq!(
            a,
            Accept {
                json: false,
                sse: true
            }
        );
        let a = Accept::from_headers(&headers(&[("accept", "text/html")]));
        assert_eq!(
            a,
            Accept {
                json: false,
                sse: false
            }
        );
    }
}
