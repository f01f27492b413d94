//! Access tokens: short-lived JWTs (RFC 9068 `at+jwt`) signed with the
//! authorization server's current key. The audience is the MCP server's
//! resource URL (RFC 8707), so a token for one server is refused by every
//! other. `gid` names the grant, so revoking the grant ends its tokens too.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The resource (MCP server URL) the token is for.
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    pub client_id: String,
    /// The user's name, for logs and the identity passed to instances.
    pub preferred_username: String,
    /// The grant this token belongs to.
    pub gid: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a valid access token: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another resource")]
    WrongAudience,
    #[error("signing failed: {0}")]
    Signing(String),
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a bearer token has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn sign(keys: &KeySet, claims: &AccessClaims) -> Result<String, TokenError> {
    let key = keys.current();
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Verifies signature, issuer, expiry and that the audience is one of
/// `audiences` (a server answers to `/mcp/{name}` and, for the default
/// server, `/mcp`).
pub fn verify(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    audiences: &[String],
) -> Result<AccessClaims, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some("at+jwt") {
        return Err(TokenError::Invalid("unexpected token type".into()));
    }
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Invalid("no key id".into()))?;
    let key = keys
        .by_kid(&kid)
        .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        },
    )?;
    if !audiences.contains(&data.claims.aud) {
        return Err(TokenError::WrongAudience);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "http://as".into(),
            sub: "u1".into(),
            aud: aud.into(),
            exp,
            iat: now(),
            jti: "j".into(),
            scope: "mcp".into(),
            client_id: "c".into(),
            preferred_username: "alice".into(),
            gid: "g".into(),
        }
    }

    #[test]
    fn audience_expiry_issuer_and_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k");
        let keys = KeySet::open(&dir).unwrap();
        let aud = vec!["http://as/mcp/a".to_owned()];
        let token = sign(&keys, &claims("http://as/mcp/a", now() + 60)).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(verify(&keys, &token, "http://as", &aud).unwrap().sub, "u1");
        let other = vec!["http://as/mcp/b".to_owned()];
        assert_eq!(
            verify(&keys, &token, "http://as", &other),
            Err(TokenError::WrongAudience)
        );
        assert!(verify(&keys, &token, "http://evil", &aud).is_err());
        let old = sign(&keys, &claims("http://as/mcp/a", now() - 1)).unwrap();
        assert_eq!(
            verify(&keys, &old, "http://as", &aud),
            Err(TokenError::Expired)
        );
        // A rotation keeps tokens signed with the previous key valid.
        crate::keys::rotate(&dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_ne!(
            keys.current().kid,
            jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
        );
        assert!(verify(&keys, &token, "http://as", &aud).is_ok());
        // A tampered payload fails the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims("http://as/mcp/a", now() + 9999)).unwrap(),
        );
        parts[1] = &forged;
        assert!(verify(&keys, &parts.join("."), "http://as", &aud).is_err());
    }
}
