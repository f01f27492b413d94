//! The resource-server check: who is calling, from the bearer token.
//!
//! [`Authenticator`] is the seam: API tokens implement it today; the OAuth
//! authorization server (a later issue) adds its access tokens behind the
//! same check, so routing never cares which kind of token it was.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use hangar_store::Store;
use http::HeaderMap;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller a bearer token stands for, `None` when it stands for no one
    /// (unknown, expired, revoked). Errors are for the store failing.
    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<Principal>, hangar_store::StoreError>;
}

/// API tokens created with `hangar token create`.
pub struct ApiTokens {
    store: Arc<Store>,
}

impl ApiTokens {
    pub fn new(store: Arc<Store>) -> ApiTokens {
        ApiTokens { store }
    }
}

#[async_trait]
impl Authenticator for ApiTokens {
    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<Principal>, hangar_store::StoreError> {
        Ok(self
            .store
            .verify_token(token)
            .await?
            .map(|(user, _)| Principal {
                user_id: user.id,
                user_name: user.name,
            }))
    }
}

/// The bearer token of a request (never from the query string).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An argon2id hash of a password, for `hangar user add --password-stdin`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn bearer_tokens_come_only_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
