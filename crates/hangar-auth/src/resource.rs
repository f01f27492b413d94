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
/// Most tokens the cache holds; past it, it starts afresh. An entry is
/// never used past its token's expiry (see [`Cached::dead_at`]).
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
    entries: HashMap<[u8; 32], Cached>,
    stamp: Option<SystemTime>,
}

/// A verified token's verdict.
struct Cached {
    principal: Principal,
    /// When it was verified: trusted for [`TOKEN_CACHE_TTL`] from then.
    at: Instant,
    /// The first Unix second at which the token no longer stands for
    /// anyone (`None`: it never expires). The cache never outlives it.
    dead_at: Option<u64>,
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
        let now = tokens::now();
        match cache.entries.get(key) {
            Some(c) if c.at.elapsed() < TOKEN_CACHE_TTL && c.dead_at.is_none_or(|d| now < d) => {
                Some(c.principal.clone())
            }
            Some(_) => {
                cache.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], principal: &Principal, dead_at: Option<u64>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() >= TOKEN_CACHE_LIMIT {
            cache.entries.clear();
        }
        cache.entries.insert(
            key,
            Cached {
                principal: principal.clone(),
                at: Instant::now(),
                dead_at,
            },
        );
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
        let Some((user, info)) = self.store.verify_token(token).await? else {
            return Ok(None);
        };
        let principal = Principal {
            user_id: user.id,
            user_name: user.name,
            scopes: None,
        };
        // The store refuses a token from its `expires_at` second on.
        let dead_at = info.expires_at.map(|e| u64::try_from(e).unwrap_or(0));
        self.remember(key, &principal, dead_at);
        Ok(Some(principal))
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
        // `tokens::verify` accepts a token up to its `exp` second included.
        self.api
            .remember(key, &principal, Some(claims.exp.saturating_add(1)));
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

/// A `WWW-Authenticate: Bearer` challenge (RFC 6750 §3) with `params` as
/// auth-params. Every value becomes a quoted-string with `"` and `\`
/// escaped and control characters (CR, LF, NUL, …) dropped, so no value
/// can end the header, start another or add a parameter; a name that is
/// not an RFC 9110 token is left out. The result is always a valid header
/// value.
pub fn bearer_challenge(params: &[(&str, &str)]) -> String {
    let is_token = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut out = String::from("Bearer");
    let mut first = true;
    for (name, value) in params.iter().filter(|(n, _)| is_token(n)) {
        out.push_str(if first { " " } else { ", " });
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            // Header values are visible ASCII: anything else becomes
            // `?` (our values are URLs, scopes and messages).
            out.push(if c.is_ascii() { c } else { '?' });
        }
        out.push('"');
    }
    out
}

pub use crate::passwords::{hash_password, verify_password};

#[cfg(test)]
mod tests {
    use super::*;

    /// An API token stops working the second it expires, even though its
    /// verdict was cached a moment before.
    #[tokio::test]
    async fn a_cached_api_token_never_outlives_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_data_dir(dir.path()).await.unwrap());
        let user = store.add_user("ann", None, false).await.unwrap();
        let expires = hangar_store::now() + 2;
        let (_, token) = store.create_token(&user.id, Some(expires)).await.unwrap();
        let api = ApiTokens::new(store.clone(), dir.path());
        let who = api.authenticate(&token, &[]).await.unwrap();
        assert_eq!(who.map(|p| p.user_name).as_deref(), Some("ann"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while hangar_store::now() < expires {
            assert!(
                Instant::now() < deadline,
                "the clock did not reach the expiry"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            api.authenticate(&token, &[]).await.unwrap(),
            None,
            "an expired token is refused at once, cached or not"
        );
    }

    #[test]
    fn bearer_challenges_quote_every_value() {
        assert_eq!(
            bearer_challenge(&[("resource_metadata", "https://a/x"), ("scope", "mcp")]),
            r#"Bearer resource_metadata="https://a/x", scope="mcp""#
        );
        let hostile = bearer_challenge(&[
            ("error_description", "a\"b\\c\r\nSet-Cookie: x=y\0é"),
            ("bad name", "x"),
            ("", "y"),
        ]);
        assert_eq!(
            hostile,
            r#"Bearer error_description="a\"b\\cSet-Cookie: x=y?""#
        );
        assert!(http::HeaderValue::from_str(&hostile).is_ok());
        assert_eq!(bearer_challenge(&[]), "Bearer");
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
