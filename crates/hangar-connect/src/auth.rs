//! Sign-in: the OAuth 2.1 client behind the transport's [`Authorizer`]
//! seam. On a 401 (or a 403 `insufficient_scope`) the client half asks
//! [`OAuth::unauthorized`]; when it returns, the request is retried with
//! [`OAuth::authorization`].
//!
//! One sign-in, in order: discovery (`oauth::discover`: protected resource
//! metadata, the issuer's metadata, the issuer check), the client
//! (`--static-oauth-client-info`, else a Client ID Metadata Document when
//! the server supports it and `--client-metadata-url` is given, else a
//! stored registration for this issuer, else Dynamic Client Registration),
//! the authorization request with PKCE S256, `state` and `resource` in the
//! browser, the redirect to our loopback listener (`state` and RFC 9207
//! `iss` checked), the code exchanged at the token endpoint.
//!
//! * Tokens are stored per server URL and issuer (`store`); a stored
//!   access token is used at once, refreshed a minute before it expires
//!   (or a quarter of its lifetime, when that is shorter),
//!   and refreshed (not signed in again) on a 401 when there is a refresh
//!   token. `invalid_client` drops the registration and registers again.
//! * Concurrency: one sign-in per process (a mutex), and one per server
//!   across processes (the store's lock file). Whoever waited re-reads the
//!   store first and uses the tokens the other one obtained; a refresh
//!   likewise re-reads the store under the lock, so a rotated refresh
//!   token is never sent twice (servers revoke the grant on reuse).
//! * Step-up: a 403 `insufficient_scope` signs in again for the union of
//!   the scopes asked so far and the challenged ones — only when that adds
//!   a scope, and at most [`MAX_STEP_UPS`] times per process.
//! * An `Authorization` given with `--header` means no OAuth at all
//!   ([`StaticToken`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use mcp_transport::client::{AuthError, Authorizer, Challenge};
use serde_json::Value;
use url::Url;

use crate::browser::{derived_port, Browser, Callback};
use crate::oauth::{self, ClientInfo, Discovery, Grant, OAuthError, Pkce};
use crate::store::{self, Record, Store, Tokens};

/// Step-up re-authorizations per process.
pub const MAX_STEP_UPS: u32 = 3;
/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What sign-in needs from the command line and the environment.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub server_url: Url,
    /// `--resource`: sent instead of the metadata's resource.
    pub resource: Option<String>,
    /// `--static-oauth-client-info`.
    pub static_client: Option<ClientInfo>,
    /// `--static-oauth-client-metadata`: merged into the registration.
    pub client_metadata: Option<Value>,
    /// `--client-metadata-url`: our Client ID Metadata Document.
    pub client_metadata_url: Option<String>,
    /// `--callback-port`; else derived from the server URL.
    pub callback_port: Option<u16>,
    pub browser: Browser,
    /// The token store's directory (and lock files).
    pub dir: PathBuf,
    /// `HANGAR_CONNECT_STORE`: `file`, `keyring`, or automatic.
    pub store: Option<String>,
    /// How long the user has to finish signing in (and others wait for it).
    pub sign_in_timeout: Duration,
    pub proxy_from_env: bool,
}

impl OAuthConfig {
    pub fn new(server_url: Url, dir: PathBuf) -> OAuthConfig {
        OAuthConfig {
            server_url,
            resource: None,
            static_client: None,
            client_metadata: None,
            client_metadata_url: None,
            callback_port: None,
            browser: Browser::Print,
            dir,
            store: None,
            sign_in_timeout: Duration::from_secs(300),
            proxy_from_env: false,
        }
    }
}

/// The OAuth authorizer for one server.
pub struct OAuth {
    config: OAuthConfig,
    http: reqwest::Client,
    store: tokio::sync::OnceCell<Store>,
    /// The access token in use (None: not loaded yet, Some(None): none).
    current: Mutex<Option<Option<Tokens>>>,
    /// One sign-in at a time in this process.
    signing_in: tokio::sync::Mutex<()>,
    /// Scopes asked for so far (step-up keeps them).
    scopes: Mutex<BTreeSet<String>>,
    step_ups: AtomicU32,
    /// Authorization requests made (tests and logs).
    authorizations: AtomicU32,
}

impl OAuth {
    pub fn new(config: OAuthConfig) -> Result<OAuth, OAuthError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // Metadata and token endpoints must not redirect us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hangar/", env!("CARGO_PKG_VERSION")));
        if !config.proxy_from_env {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| OAuthError::Other(format!("cannot set up the HTTP client: {e}")))?;
        Ok(OAuth {
            config,
            http,
            store: tokio::sync::OnceCell::new(),
            current: Mutex::new(None),
            signing_in: tokio::sync::Mutex::new(()),
            scopes: Mutex::new(BTreeSet::new()),
            step_ups: AtomicU32::new(0),
            authorizations: AtomicU32::new(0),
        })
    }

    /// Authorization requests this authorizer sent the user to.
    pub fn authorizations(&self) -> u32 {
        self.authorizations.load(Ordering::SeqCst)
    }

    async fn store(&self) -> Result<&Store, OAuthError> {
        self.store
            .get_or_try_init(|| async {
                Store::open(
                    self.config.dir.clone(),
                    self.config.server_url.as_str(),
                    self.config.store.as_deref(),
                )
                .await
                .map_err(|e| OAuthError::Other(e.to_string()))
            })
            .await
    }

    fn current(&self) -> Option<Option<Tokens>> {
        lock(&self.current).clone()
    }

    fn set_current(&self, tokens: Option<Tokens>) {
        *lock(&self.current) = Some(tokens);
    }

    /// The tokens in use, loading them from the store the first time.
    async fn tokens(&self) -> Option<Tokens> {
        if let Some(t) = self.current() {
            return t;
        }
        let loaded = match self.store().await {
            Ok(store) => match store.load().await {
                Ok(record) => record.current_tokens().cloned(),
                Err(e) => {
                    tracing::warn!("cannot read the stored sign-in: {e}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        if let Some(t) = &loaded {
            if let Some(scope) = &t.scope {
                lock(&self.scopes).extend(scope.split_ascii_whitespace().map(str::to_owned));
            }
        }
        let mut cur = lock(&self.current);
        cur.get_or_insert(loaded).clone()
    }

    /// Refreshes `seen` if it is still the token in use. Under the locks.
    async fn refresh_expiring(&self, seen: &Tokens) -> Result<(), OAuthError> {
        let _one = self.signing_in.lock().await;
        if self.current().flatten().as_ref() != Some(seen) {
            return Ok(());
        }
        let store = self.store().await?;
        let _lock = store
            .lock(self.config.sign_in_timeout)
            .await
            .map_err(|e| OAuthError::Other(e.to_string()))?;
        let mut record = store
            .load()
            .await
            .map_err(|e| OAuthError::Other(e.to_string()))?;
        let mut seen = seen.clone();
        if let Some(stored) = record.current_tokens() {
            if stored != &seen {
                // Another process refreshed (or signed in) meanwhile. With
                // rotating refresh tokens ours is spent: using it again
                // would look like a stolen token and revoke the grant.
                // Adopt theirs, and refresh with theirs if it is due too.
                tracing::debug!("adopting the tokens another hangar connect stored");
                self.set_current(Some(stored.clone()));
                if !stored.refresh_due(REFRESH_MARGIN) || stored.refresh_token.is_none() {
                    return Ok(());
                }
                seen = stored.clone();
            }
        }
        let discovery = oauth::discover(
            &self.http,
            &self.config.server_url,
            None,
            self.config.resource.as_deref(),
        )
        .await?;
        if self.refresh(&discovery, &mut record, &seen).await? {
            Ok(())
        } else {
            Err(OAuthError::Other("no refresh token".into()))
        }
    }

    /// Tries the refresh grant with `seen`'s refresh token. `Ok(false)`:
    /// nothing to refresh with, or the server refused it (sign in again).
    async fn refresh(
        &self,
        discovery: &Discovery,
        record: &mut Record,
        seen: &Tokens,
    ) -> Result<bool, OAuthError> {
        let Some(refresh_token) = seen.refresh_token.as_deref() else {
            return Ok(false);
        };
        if record.issuer.as_deref() != Some(discovery.issuer.as_str()) {
            return Ok(false);
        }
        let Some(client) = record
            .issuers
            .get(&discovery.issuer)
            .and_then(|e| e.client.clone())
            .or_else(|| self.config.static_client.clone())
        else {
            return Ok(false);
        };
        let grant = Grant::Refresh { refresh_token };
        match oauth::token_request(
            &self.http,
            &discovery.metadata,
            &client,
            grant,
            &discovery.resource,
            Duration::from_secs(30),
        )
        .await
        {
            Ok(resp) => {
                let mut tokens = tokens_of(resp);
                if tokens.refresh_token.is_none() {
                    tokens.refresh_token = seen.refresh_token.clone();
                }
                self.keep(record, &discovery.issuer, None, tokens).await?;
                tracing::info!("access token refreshed");
                Ok(true)
            }
            Err(e) => {
                tracing::info!("refreshing the access token failed ({e}); signing in again");
                if e.is_invalid_client() {
                    if let Some(entry) = record.issuers.get_mut(&discovery.issuer) {
                        entry.client = None;
                    }
                }
                Ok(false)
            }
        }
    }

    /// Stores `tokens` (and `client`) for `issuer` and makes them current.
    async fn keep(
        &self,
        record: &mut Record,
        issuer: &str,
        client: Option<ClientInfo>,
        tokens: Tokens,
    ) -> Result<(), OAuthError> {
        record.issuer = Some(issuer.to_owned());
        let entry = record.issuers.entry(issuer.to_owned()).or_default();
        if let Some(c) = client {
            entry.client = Some(c);
        }
        entry.tokens = Some(tokens.clone());
        let store = self.store().await?;
        if let Err(e) = store.save(record).await {
            // Still usable for this process.
            tracing::warn!("cannot store the sign-in: {e}");
        }
        self.set_current(Some(tokens));
        Ok(())
    }

    /// The whole sign-in after a challenge.
    async fn handle(&self, challenge: &Challenge) -> Result<(), OAuthError> {
        let seen = self.current().flatten();
        let step_up = challenge.status == 403;
        let _one = self.signing_in.lock().await;
        // Another task of ours signed in or refreshed meanwhile.
        if !step_up && self.current().flatten() != seen {
            return Ok(());
        }
        let store = self.store().await?;
        let _lock = store
            .lock(self.config.sign_in_timeout)
            .await
            .map_err(|e| OAuthError::Other(e.to_string()))?;
        let mut record = store
            .load()
            .await
            .map_err(|e| OAuthError::Other(e.to_string()))?;
        // Another process signed in meanwhile.
        if !step_up {
            if let Some(stored) = record.current_tokens() {
                if Some(stored) != seen.as_ref() {
                    tracing::info!("using the sign-in another hangar connect just completed");
                    self.set_current(Some(stored.clone()));
                    return Ok(());
                }
            }
        }
        let discovery = oauth::discover(
            &self.http,
            &self.config.server_url,
            challenge.resource_metadata(),
            self.config.resource.as_deref(),
        )
        .await?;
        tracing::debug!(issuer = %discovery.issuer, "authorization server");
        if record.issuer.as_deref() != Some(discovery.issuer.as_str()) {
            if record.issuer.is_some() {
                tracing::info!(
                    "the server now uses authorization server {}; signing in there",
                    discovery.issuer
                );
            }
            // Scopes were granted by another issuer: start over.
            lock(&self.scopes).clear();
        }
        let previous = lock(&self.scopes).clone();
        let scopes = oauth::select_scopes(
            challenge.scope(),
            discovery.prm.as_ref(),
            &discovery.metadata,
            &previous,
        );
        if step_up {
            if !scopes.iter().any(|s| !previous.contains(s)) {
                return Err(OAuthError::Other(format!(
                    "the server asks for scope {:?}, which was already granted; not signing in again",
                    challenge.scope().unwrap_or_default()
                )));
            }
            if self.step_ups.fetch_add(1, Ordering::SeqCst) >= MAX_STEP_UPS {
                return Err(OAuthError::Other(format!(
                    "the server asked for more scopes {MAX_STEP_UPS} times; giving up"
                )));
            }
        } else if let Some(seen) = &seen {
            if self.refresh(&discovery, &mut record, seen).await? {
                return Ok(());
            }
        }
        self.sign_in(&discovery, &mut record, scopes).await
    }

    async fn sign_in(
        &self,
        discovery: &Discovery,
        record: &mut Record,
        scopes: BTreeSet<String>,
    ) -> Result<(), OAuthError> {
        let preferred = self
            .config
            .callback_port
            .unwrap_or_else(|| derived_port(self.config.server_url.as_str()));
        let callback = Callback::bind(preferred, self.config.callback_port.is_none())
            .await
            .map_err(|e| {
                OAuthError::Other(format!(
                    "cannot listen on 127.0.0.1:{preferred} for the sign-in redirect: {e}"
                ))
            })?;
        let redirect_uri = callback.redirect_uri();
        // Registration may have to be redone once (invalid_client).
        for attempt in 0..2 {
            let (client, fresh) = self.client_for(discovery, record, &redirect_uri).await?;
            let pkce = Pkce::new();
            let state = oauth::random_token(24);
            let url = oauth::authorization_url(
                &discovery.metadata,
                &client.client_id,
                &redirect_uri,
                &pkce,
                &state,
                &scopes,
                &discovery.resource,
            )?;
            self.authorizations.fetch_add(1, Ordering::SeqCst);
            tracing::info!(
                "signing in to {} at {}",
                self.config.server_url,
                discovery.issuer
            );
            self.config
                .browser
                .open(url.as_str())
                .map_err(OAuthError::Other)?;
            let params = callback
                .wait(&state, self.config.sign_in_timeout)
                .await
                .map_err(OAuthError::Callback)?;
            let code = oauth::check_callback(
                &params,
                &state,
                &discovery.issuer,
                discovery
                    .metadata
                    .authorization_response_iss_parameter_supported,
            )?;
            let grant = Grant::Code {
                code: &code,
                redirect_uri: &redirect_uri,
                verifier: &pkce.verifier,
            };
            match oauth::token_request(
                &self.http,
                &discovery.metadata,
                &client,
                grant,
                &discovery.resource,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(resp) => {
                    let mut tokens = tokens_of(resp);
                    if tokens.scope.is_none() && !scopes.is_empty() {
                        tokens.scope = oauth::scope_string(&scopes);
                    }
                    *lock(&self.scopes) = scopes;
                    let keep_client = (fresh
                        || record
                            .issuers
                            .get(&discovery.issuer)
                            .and_then(|e| e.client.as_ref())
                            .is_some_and(|c| c == &client))
                    .then_some(client);
                    self.keep(record, &discovery.issuer, keep_client, tokens)
                        .await?;
                    tracing::info!("signed in");
                    return Ok(());
                }
                Err(e)
                    if e.is_invalid_client()
                        && attempt == 0
                        && self.config.static_client.is_none() =>
                {
                    tracing::info!(
                        "the authorization server no longer knows this client; registering again"
                    );
                    if let Some(entry) = record.issuers.get_mut(&discovery.issuer) {
                        entry.client = None;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(OAuthError::Other("sign-in failed twice".into()))
    }

    /// The client to sign in with; `true` when it was just registered (to
    /// be stored).
    async fn client_for(
        &self,
        discovery: &Discovery,
        record: &Record,
        redirect_uri: &str,
    ) -> Result<(ClientInfo, bool), OAuthError> {
        if let Some(c) = &self.config.static_client {
            return Ok((c.clone(), false));
        }
        if let Some(cimd) = &self.config.client_metadata_url {
            if discovery.metadata.client_id_metadata_document_supported {
                return Ok((
                    ClientInfo {
                        client_id: cimd.clone(),
                        token_endpoint_auth_method: Some("none".into()),
                        ..ClientInfo::default()
                    },
                    false,
                ));
            }
        }
        if let Some(c) = record
            .issuers
            .get(&discovery.issuer)
            .and_then(|e| e.client.as_ref())
        {
            if c.redirect_uris.is_empty() || c.redirect_uris.iter().any(|u| u == redirect_uri) {
                return Ok((c.clone(), false));
            }
        }
        let client = oauth::register(
            &self.http,
            &discovery.metadata,
            redirect_uri,
            self.config.client_metadata.as_ref(),
        )
        .await?;
        tracing::info!("registered with {}", discovery.issuer);
        Ok((client, true))
    }
}

fn tokens_of(resp: oauth::TokenResponse) -> Tokens {
    let now = store::now_secs();
    Tokens {
        access_token: resp.access_token,
        refresh_token: resp.refresh_token,
        expires_at: resp.expires_in.map(|s| now.saturating_add(s)),
        scope: resp.scope,
        issued_at: Some(now),
    }
}

fn bearer(tokens: &Tokens) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", tokens.access_token)).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[async_trait]
impl Authorizer for OAuth {
    async fn authorization(&self) -> Option<HeaderValue> {
        let tokens = self.tokens().await?;
        if tokens.refresh_token.is_some() && tokens.refresh_due(REFRESH_MARGIN) {
            if let Err(e) = self.refresh_expiring(&tokens).await {
                tracing::debug!("refresh before expiry failed: {e}");
            }
            return self.current().flatten().as_ref().and_then(bearer);
        }
        bearer(&tokens)
    }

    async fn unauthorized(&self, challenge: &Challenge) -> Result<(), AuthError> {
        self.handle(challenge).await.map_err(|e| {
            tracing::error!("sign-in failed: {e}");
            AuthError::Failed(e.to_string())
        })
    }
}

/// `--header "Authorization: …"` was given: that token is the only
/// credential; a 401 is final, and says so.
#[derive(Debug, Default)]
pub struct StaticToken;

#[async_trait]
impl Authorizer for StaticToken {
    async fn unauthorized(&self, challenge: &Challenge) -> Result<(), AuthError> {
        let detail = challenge
            .param("error_description")
            .or(challenge.error())
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let why = format!(
            "the server refused the Authorization header given with --header (HTTP {}){detail}; \
             fix the token, or leave out --header to sign in with OAuth",
            challenge.status
        );
        tracing::error!("{why}");
        Err(AuthError::Unavailable(why))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared handle, as the client half wants it.
pub fn shared(o: OAuth) -> Arc<dyn Authorizer> {
    Arc::new(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_static_token_is_final() {
        let c = Challenge::new(401, Some("Bearer error=\"invalid_token\""), String::new());
        let e = StaticToken.unauthorized(&c).await.unwrap_err().to_string();
        assert!(e.contains("refused the Authorization header"), "{e}");
        assert!(e.contains("invalid_token"), "{e}");
    }
}
