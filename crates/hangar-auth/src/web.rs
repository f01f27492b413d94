//! Small pieces the endpoints share: cookies, CSRF tokens, signed values,
//! form parsing, OAuth error answers and the caller's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

type HmacSha256 = Hmac<Sha256>;

/// The caller's IP address, for rate limits (`None` when the server was not
/// started with connection info, as in some tests).
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

impl PeerIp {
    pub fn key(&self) -> String {
        self.0.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

/// Signs and checks values the server hands to browsers (CSRF tokens, the
/// upstream sign-in state) with a key only the server knows.
pub struct Sealer {
    key: [u8; 32],
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer { key }
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The CSRF token for a browser's anti-forgery cookie.
    pub fn csrf_token(&self, csrf_cookie: &str) -> String {
        self.mac("csrf", csrf_cookie)
    }

    pub fn check_csrf(&self, csrf_cookie: Option<&str>, token: Option<&str>) -> bool {
        match (csrf_cookie, token) {
            (Some(c), Some(t)) if !c.is_empty() => {
                bool::from(self.csrf_token(c).as_bytes().ct_eq(t.as_bytes()))
            }
            _ => false,
        }
    }

    /// `value.mac`, for a value the browser carries and must not change.
    pub fn seal(&self, purpose: &str, value: &str) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(value);
        format!("{encoded}.{}", self.mac(purpose, &encoded))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Option<String> {
        let (encoded, mac) = sealed.split_once('.')?;
        if !bool::from(self.mac(purpose, encoded).as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
    }
}

/// A random 256-bit value, base64url.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Cookie names and attributes: `__Host-` names and `Secure` when the
/// issuer is HTTPS (a plain-HTTP development setup cannot use them).
#[derive(Debug, Clone)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    pub fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/.
    pub fn set(&self, base: &str, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}",
            self.name(base)
        );
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub fn clear(&self, base: &str) -> HeaderValue {
        self.set(base, "", 0)
    }

    pub fn get<'h>(&self, headers: &'h HeaderMap, base: &str) -> Option<&'h str> {
        let name = self.name(base);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Parses an `application/x-www-form-urlencoded` body. A parameter given
/// twice is an error (OAuth 2.1 §3.1: "MUST NOT be included more than once").
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("the parameter {k:?} is repeated"));
        }
    }
    Ok(out)
}

/// An OAuth error answer (RFC 6749 §5.2), never cached.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    no_store(resp.headers_mut());
    resp
}

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether a POST from a browser came from our own pages: if the browser
/// sent `Origin` (all current ones do on POST), it must be the issuer's. A
/// browser that hides the origin (`Origin: null`, under some referrer
/// policies) must say `Sec-Fetch-Site: same-origin`. The CSRF token is
/// checked besides; this is defence in depth.
pub fn same_origin(headers: &HeaderMap, issuer_origin: &str) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some("null") => fetch_site == Some("same-origin"),
        Some(origin) => origin == issuer_origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_bind_to_the_cookie() {
        let s = Sealer::new([7; 32]);
        let t = s.csrf_token("cookie-a");
        assert!(s.check_csrf(Some("cookie-a"), Some(&t)));
        assert!(!s.check_csrf(Some("cookie-b"), Some(&t)));
        assert!(!s.check_csrf(None, Some(&t)));
        assert!(!s.check_csrf(Some("cookie-a"), None));
        assert!(!s.check_csrf(Some(""), Some(&s.csrf_token(""))));
        let other = Sealer::new([8; 32]);
        assert!(!other.check_csrf(Some("cookie-a"), Some(&t)));
    }

    #[test]
    fn sealed_values_cannot_be_altered() {
        let s = Sealer::new([1; 32]);
        let sealed = s.seal("x", "hello");
        assert_eq!(s.open("x", &sealed).as_deref(), Some("hello"));
        assert_eq!(s.open("y", &sealed), None);
        let tampered = sealed.replacen('a', "b", 1);
        if tampered != sealed {
            assert_eq!(s.open("x", &tampered), None);
        }
    }

    #[test]
    fn repeated_form_parameters_are_refused() {
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert!(parse_form(b"code=1&code=2").is_err());
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, "http://a"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://a"));
        assert!(same_origin(&h, "http://a"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil"));
        assert!(!same_origin(&h, "http://a"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, "http://a"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, "http://a"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, "http://a"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
