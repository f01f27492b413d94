//! The resource-server check: who is calling, from the bearer token.
//!
//! [`Authenticator`] is the seam the router calls on every MCP request.
//! [`BearerCheck`] implements it for both kinds of token: API tokens
//! (`hgr_…`, created with `hangar token create`) and the OAuth access tokens
//! this crate issues (JWTs bound to one MCP server by their audience), so
//! routing never cares which kind it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use hangar_store::Store;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::keys::KeySet;
use crate::tokens;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
    /// The scopes an OAuth access token carries; `None` for an API token,
    /// which stands for its user without restriction.
    pub scopes: Option<Vec<String>>,
}

impl Principal {
    /// Whether the caller may use something that needs `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|have| have == scope))
    }
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller a bearer token stands for, `None` when it stands for no one
    /// (unknown, expired, revoked, or issued for another resource than one
    /// of `audiences`). Errors are for the store failing.
    async fn authenticate(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Principal>, hangar_store::StoreError>;
}

/// How long a verified token is trusted without asking the store again.
/// Revocations through the admin CLI take effect at once anyway (see
/// [`mark_tokens_changed`]); this bounds the delay for any other change
/// (another router replica revoking in a shared Postgres).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most tokens the cache holds; past it, it starts afresh.
const TOKEN_CACHE_LIMIT: usize = 10_000;
/// The file the admin CLI touches when tokens or users change.
const TOKENS_CHANGED: &str = "tokens.changed";

/// API tokens created with `hangar token create`.
///
/// Verifying a token is a store query, which costs far more than the rest of
/// the router's work per request, so verified tokens are cached briefly,
/// keyed by a hash of the token (the token itself is not kept).
pub struct ApiTokens {
    store: Arc<Store>,
    stamp: PathBuf,
    cache: Mutex<TokenCache>,
}

#[derive(Default)]
struct TokenCache {
    entries: HashMap<[u8; 32], (Principal, Instant)>,
    stamp: Option<SystemTime>,
}

impl ApiTokens {
    pub fn new(store: Arc<Store>, data_dir: &Path) -> ApiTokens {
        ApiTokens {
            store,
            stamp: data_dir.join(TOKENS_CHANGED),
            cache: Mutex::new(TokenCache::default()),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let stamp = std::fs::metadata(&self.stamp)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.stamp != stamp {
            cache.entries.clear();
            cache.stamp = stamp;
            return None;
        }
        match cache.entries.get(key) {
            Some((principal, at)) if at.elapsed() < TOKEN_CACHE_TTL => Some(principal.clone()),
            _ => None,
        }
    }

    fn remember(&self, key: [u8; 32], principal: &Principal) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() >= TOKEN_CACHE_LIMIT {
            cache.entries.clear();
        }
        cache
            .entries
            .insert(key, (principal.clone(), Instant::now()));
    }
}

impl ApiTokens {
    /// Forgets every verified token and grant (after a revocation here).
    pub fn forget(&self) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .clear();
    }
}

#[async_trait]
impl Authenticator for ApiTokens {
    async fn authenticate(
        &self,
        token: &str,
        _audiences: &[String],
    ) -> Result<Option<Principal>, hangar_store::StoreError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.cached(&key) {
            return Ok(Some(principal));
        }
        let principal = self
            .store
            .verify_token(token)
            .await?
            .map(|(user, _)| Principal {
                user_id: user.id,
                user_name: user.name,
                scopes: None,
            });
        if let Some(p) = &principal {
            self.remember(key, p);
        }
        Ok(principal)
    }
}

/// The check for both kinds of bearer token.
pub struct BearerCheck {
    api: ApiTokens,
    keys: Arc<KeySet>,
    issuer: String,
}

impl BearerCheck {
    pub fn new(api: ApiTokens, keys: Arc<KeySet>, issuer: String) -> BearerCheck {
        BearerCheck { api, keys, issuer }
    }

    /// Forgets cached verdicts, so a revocation takes effect at once.
    pub fn forget(&self) {
        self.api.forget();
    }

    async fn access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Principal>, hangar_store::StoreError> {
        // Verified tokens are cached like API tokens (a signature check and
        // a grant lookup per request would dominate the router's cost),
        // keyed by a hash of the token and the audiences it was checked for.
        let mut hasher = Sha256::new();
        hasher.update(b"access\0");
        hasher.update(token.as_bytes());
        for a in audiences {
            hasher.update(b"\0");
            hasher.update(a.as_bytes());
        }
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(principal) = self.api.cached(&key) {
            return Ok(Some(principal));
        }
        let claims = match tokens::verify(&self.keys, token, &self.issuer, audiences) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("access token refused: {e}");
                return Ok(None);
            }
        };
        // The grant must still be in force: the user may have revoked the
        // client, or a replayed code or refresh token revoked it.
        let live = self
            .api
            .store
            .grant(&claims.gid)
            .await?
            .is_some_and(|g| !g.revoked && g.user_id == claims.sub);
        if !live {
            return Ok(None);
        }
        let principal = Principal {
            user_id: claims.sub,
            user_name: claims.preferred_username,
            scopes: Some(claims.scope.split(' ').map(str::to_owned).collect()),
        };
        // Never cache past the token's expiry.
        if claims.exp > tokens::now() + TOKEN_CACHE_TTL.as_secs() {
            self.api.remember(key, &principal);
        }
        Ok(Some(principal))
    }
}

#[async_trait]
impl Authenticator for BearerCheck {
    async fn authenticate(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Principal>, hangar_store::StoreError> {
        if tokens::looks_like_jwt(token) {
            self.access_token(token, audiences).await
        } else {
            self.api.authenticate(token, audiences).await
        }
    }
}

/// Tells running routers on this data dir to forget the tokens they have
/// verified (after a revocation or a user's removal).
pub fn mark_tokens_changed(data_dir: &Path) -> std::io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::fs::write(data_dir.join(TOKENS_CHANGED), nanos.to_string())
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
