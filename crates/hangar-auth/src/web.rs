//! Small pieces the endpoints share: cookies, CSRF tokens, signed values,
//! form parsing, OAuth error answers and the caller's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
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

/// Protects what the server hands to browsers, with a key only the server
/// knows (`cookie.key`): CSRF tokens are HMACs of the browser's CSRF
/// cookie; values a cookie carries that the browser must neither read nor
/// change (the upstream sign-in's PKCE verifier and nonce) are encrypted
/// with XChaCha20-Poly1305, bound to the cookie's name, with their expiry
/// inside the sealed payload.
pub struct Sealer {
    key: [u8; 32],
    aead: XChaCha20Poly1305,
}

/// Why a sealed value was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsealed {
    /// Changed, cut, made for another cookie, or sealed with another key.
    #[error("the value could not be verified")]
    Invalid,
    /// Authentic, but past its expiry.
    #[error("the value has expired")]
    Expired,
}

/// Bytes of an XChaCha20-Poly1305 nonce: random nonces of this size never
/// repeat in practice, so no counter is kept.
const NONCE_LEN: usize = 24;
/// What the encryption key is derived for (HKDF-SHA256 info): the cookie
/// key's HMAC use and this one never share a key.
const AEAD_KEY_INFO: &[u8] = b"hangar cookie aead v1";

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        let mut aead_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hkdf::Hkdf::<Sha256>::new(None, &key)
            .expand(AEAD_KEY_INFO, &mut aead_key)
            .unwrap_or_else(|_| unreachable!("HKDF can expand 32 bytes"));
        Sealer {
            key,
            aead: XChaCha20Poly1305::new(&aead_key.into()),
        }
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

    /// `value` encrypted for the cookie `cookie_name`, valid for `ttl`.
    pub fn seal(&self, cookie_name: &str, value: &str, ttl: std::time::Duration) -> String {
        self.seal_until(cookie_name, value, unix_now().saturating_add(ttl.as_secs()))
    }

    /// `value` encrypted for the cookie `cookie_name`, valid before the
    /// Unix second `expires_at`: base64url(nonce ‖ ciphertext ‖ tag) of
    /// `expires_at` (8 bytes, big-endian) ‖ `value`, the cookie's name as
    /// associated data.
    pub fn seal_until(&self, cookie_name: &str, value: &str, expires_at: u64) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut plain = Vec::with_capacity(8 + value.len());
        plain.extend_from_slice(&expires_at.to_be_bytes());
        plain.extend_from_slice(value.as_bytes());
        let sealed = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: cookie_name.as_bytes(),
                },
            )
            // Only inputs past 256 GiB fail.
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The value sealed for `cookie_name`, if authentic and unexpired.
    pub fn open(&self, cookie_name: &str, sealed: &str) -> Result<String, Unsealed> {
        self.open_at(cookie_name, sealed, unix_now())
    }

    /// [`Sealer::open`] at the Unix second `now`.
    pub fn open_at(&self, cookie_name: &str, sealed: &str, now: u64) -> Result<String, Unsealed> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| Unsealed::Invalid)?;
        if bytes.len() < NONCE_LEN {
            return Err(Unsealed::Invalid);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: cookie_name.as_bytes(),
                },
            )
            .map_err(|_| Unsealed::Invalid)?;
        let (expiry, value) = plain.split_at_checked(8).ok_or(Unsealed::Invalid)?;
        let expires_at = u64::from_be_bytes(expiry.try_into().map_err(|_| Unsealed::Invalid)?);
        if now >= expires_at {
            return Err(Unsealed::Expired);
        }
        String::from_utf8(value.to_vec()).map_err(|_| Unsealed::Invalid)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Largest request body any endpoint of the authorization server reads
/// (forms and registrations are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// A request body read up to [`MAX_BODY`] bytes, or why not: each endpoint
/// answers that in its own form (an OAuth error, or a page), never with
/// the framework's plain-text rejection.
pub struct LimitedBody(pub Result<Bytes, BodyError>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body is larger than {MAX_BODY} bytes or could not be read")]
pub struct BodyError;

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY).await;
        Ok(LimitedBody(body.map_err(|_| BodyError)))
    }
}

/// An OAuth error answer (RFC 6749 §5.2) as a value: what the parsers of
/// untrusted input return, turned into the response in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    /// The RFC 6749 / 7591 error code.
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn bad_request(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    /// 413 `invalid_request`: the body was over [`MAX_BODY`].
    pub fn too_large() -> OAuthError {
        OAuthError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: "invalid_request",
            description: BodyError.to_string(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        oauth_error(self.status, self.error, &self.description)
    }
}

/// The form of a token or revocation request, from its `Content-Type`
/// header value and body: must be `application/x-www-form-urlencoded`, at
/// most [`MAX_BODY`] bytes, no parameter repeated.
pub fn read_form(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, OAuthError> {
    if body.len() > MAX_BODY {
        return Err(OAuthError::too_large());
    }
    let is_form = content_type.is_some_and(|c| {
        c.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if !is_form {
        return Err(OAuthError::bad_request(
            "invalid_request",
            "use Content-Type: application/x-www-form-urlencoded",
        ));
    }
    parse_form(body).map_err(|e| OAuthError::bad_request("invalid_request", e))
}

/// `client_id:client_secret` from an `Authorization: Basic` header value
/// (RFC 6749 §2.3.1: each part form-urlencoded); `None` for any other
/// scheme or a malformed value.
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // One form-encoded value each: `+` is a space, `%XX` a byte, and `&`
    // or `=` are ordinary characters (found by fuzz/oauth_form: "y&z" was
    // read as "y").
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((unescape(id), unescape(secret)))
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
    fn sealed_values_are_secret_authentic_bound_and_expire() {
        let s = Sealer::new([1; 32]);
        let sealed = s.seal_until("hangar_oidc", "the-verifier", 1_000);
        assert!(!sealed.contains("the-verifier"));
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("the-verifier"));
        assert_eq!(
            s.open_at("hangar_oidc", &sealed, 999).as_deref(),
            Ok("the-verifier")
        );
        assert_eq!(
            s.open_at("hangar_oidc", &sealed, 1_000),
            Err(Unsealed::Expired)
        );
        // Another cookie's name, another key, any changed byte: invalid.
        assert_eq!(s.open_at("hangar_csrf", &sealed, 0), Err(Unsealed::Invalid));
        assert_eq!(
            Sealer::new([2; 32]).open_at("hangar_oidc", &sealed, 0),
            Err(Unsealed::Invalid)
        );
        for i in 0..raw.len() {
            let mut changed = raw.clone();
            changed[i] ^= 1;
            let changed = URL_SAFE_NO_PAD.encode(changed);
            assert_eq!(
                s.open_at("hangar_oidc", &changed, 0),
                Err(Unsealed::Invalid)
            );
        }
        for junk in ["", "a", "!!!", &sealed[..sealed.len() - 1], &"A".repeat(40)] {
            assert_eq!(
                s.open_at("hangar_oidc", junk, 0),
                Err(Unsealed::Invalid),
                "{junk}"
            );
        }
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, s.seal_until("hangar_oidc", "the-verifier", 1_000));
        let live = s.seal("hangar_oidc", "v", std::time::Duration::from_secs(600));
        assert_eq!(s.open("hangar_oidc", &live).as_deref(), Ok("v"));
    }

    #[test]
    fn repeated_form_parameters_are_refused() {
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert!(parse_form(b"code=1&code=2").is_err());
    }

    #[test]
    fn forms_need_their_content_type_and_fit_the_limit() {
        let form = Some("application/x-www-form-urlencoded; charset=UTF-8");
        assert_eq!(read_form(form, b"a=1").unwrap()["a"], "1");
        assert_eq!(
            read_form(Some("application/json"), b"a=1")
                .unwrap_err()
                .error,
            "invalid_request"
        );
        assert_eq!(
            read_form(None, b"a=1").unwrap_err().error,
            "invalid_request"
        );
        let big = vec![b'a'; MAX_BODY + 1];
        assert_eq!(
            read_form(form, &big).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn basic_credentials_keep_every_character() {
        let v = format!("Basic {}", STANDARD.encode("im%%:y&%=+z"));
        assert_eq!(
            basic_credentials(&v),
            Some(("im%%".into(), "y&%= z".into()))
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let v = format!("Basic {}", STANDARD.encode("my%20id:s%3Acret"));
        assert_eq!(
            basic_credentials(&v),
            Some(("my id".into(), "s:cret".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(
            basic_credentials(&format!("Basic {}", STANDARD.encode("nocolon"))),
            None
        );
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
