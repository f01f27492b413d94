//! The authorization server's endpoints, mounted at the router's root:
//!
//! | path | what |
//! |---|---|
//! | `/.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | RFC 8414 / OIDC metadata |
//! | `/oauth/jwks` | the public signing keys |
//! | `/oauth/authorize` | GET: checks the request, then sign-in or consent; POST: the decision |
//! | `/oauth/token` | authorization code (PKCE S256) and refresh token grants |
//! | `/oauth/register` | Dynamic Client Registration (RFC 7591) |
//! | `/oauth/revoke` | RFC 7009 |
//! | `/signin`, `/signout`, `/signin/oidc/{provider}[/callback]`, `/account` | the pages |

mod authorize;
mod browser;
mod token;

#[doc(hidden)] // for the fuzz targets (fuzz/)
pub use token::pkce_matches;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hangar_store::Store;
use serde_json::{json, Value};

use crate::cimd::CimdFetcher;
use crate::keys::KeySet;
use crate::netguard::NetPolicy;
use crate::passwords::Passwords;
use crate::ratelimit::RateLimiter;
use crate::resource::{ApiTokens, BearerCheck};
use crate::upstream::{OidcProvider, OidcProviderConfig};
use crate::web::{Cookies, Sealer};

/// The scope every token carries: use the server's MCP features.
pub const BASE_SCOPE: &str = "mcp";

/// One MCP server as a protected resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub server: String,
    /// The URLs that name it; the first is canonical. A token whose audience
    /// is any of them is accepted by this server.
    pub urls: Vec<String>,
}

/// How the authorization server behaves (from the router's `[oauth]` config).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The router's public URL.
    pub issuer: String,
    pub resources: Vec<Resource>,
    /// Extra scopes servers define (for tools that need more than `mcp`).
    pub extra_scopes: Vec<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub session_ttl: Duration,
    pub code_ttl: Duration,
    pub dynamic_registration: bool,
    pub client_metadata_documents: bool,
    /// Where client metadata documents may be fetched from.
    pub net: NetPolicy,
    pub password_sign_in: bool,
    pub oidc: Vec<OidcProviderConfig>,
    /// Link an upstream identity to the user with the same (verified) email.
    pub oidc_match_email: bool,
    /// Create a user for an upstream identity that matches none.
    pub oidc_create_users: bool,
}

impl AuthSettings {
    /// Defaults for `issuer`: 10-minute access tokens, 30-day refresh
    /// tokens, DCR and CIMD on; loopback client documents allowed only when
    /// the issuer itself is on loopback (a development setup).
    pub fn new(issuer: &str, resources: Vec<Resource>) -> AuthSettings {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let loopback = url::Url::parse(&issuer).is_ok_and(|u| crate::netguard::is_loopback_url(&u));
        AuthSettings {
            issuer,
            resources,
            extra_scopes: Vec::new(),
            access_token_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            session_ttl: Duration::from_secs(12 * 3600),
            code_ttl: Duration::from_secs(60),
            dynamic_registration: true,
            client_metadata_documents: true,
            net: NetPolicy {
                allow_loopback: loopback,
            },
            password_sign_in: true,
            oidc: Vec::new(),
            oidc_match_email: true,
            oidc_create_users: false,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn scopes_supported(&self) -> Vec<String> {
        let mut scopes = vec![BASE_SCOPE.to_owned(), "openid".to_owned()];
        for s in &self.extra_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        scopes
    }

    /// The resource a URL names (trailing slash ignored).
    pub fn resource(&self, url: &str) -> Option<&Resource> {
        let url = url.trim_end_matches('/');
        self.resources
            .iter()
            .find(|r| r.urls.iter().any(|u| u == url))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("cookie key {path}: {source}")]
    CookieKey {
        path: String,
        source: std::io::Error,
    },
}

/// The authorization server: its settings, keys, store and limits.
pub struct AuthServer {
    pub settings: AuthSettings,
    store: Arc<Store>,
    keys: Arc<KeySet>,
    check: Arc<BearerCheck>,
    sealer: Sealer,
    cookies: Cookies,
    cimd: Option<Arc<CimdFetcher>>,
    providers: Vec<OidcProvider>,
    sign_in_limit: RateLimiter,
    sign_in_ip_limit: RateLimiter,
    token_limit: RateLimiter,
    register_limit: RateLimiter,
    /// Password checks, a bounded number at once.
    passwords: Passwords,
}

/// Sign-in attempts per minute, per user name.
const SIGN_IN_PER_MINUTE: u32 = 10;
/// Sign-in attempts per minute, per address (several people may share one).
const SIGN_IN_PER_ADDRESS_MINUTE: u32 = 60;
/// Token requests per minute, per address.
const TOKEN_PER_MINUTE: u32 = 120;
/// Registrations per minute, per address.
const REGISTER_PER_MINUTE: u32 = 20;

impl AuthServer {
    /// Opens the signing keys under `data_dir/oauth-keys` and the cookie key
    /// `data_dir/cookie.key` (creating them on first run).
    pub fn new(
        settings: AuthSettings,
        store: Arc<Store>,
        data_dir: &Path,
    ) -> Result<Arc<AuthServer>, AuthSetupError> {
        let keys = Arc::new(KeySet::open(&data_dir.join("oauth-keys"))?);
        let check = Arc::new(BearerCheck::new(
            ApiTokens::new(store.clone(), data_dir),
            keys.clone(),
            settings.issuer.clone(),
        ));
        let cookie_key = load_or_create_secret(&data_dir.join("cookie.key"))?;
        let cimd = settings
            .client_metadata_documents
            .then(|| Arc::new(CimdFetcher::new(settings.net)));
        let providers = settings
            .oidc
            .iter()
            .cloned()
            .map(OidcProvider::new)
            .collect();
        let minute = Duration::from_secs(60);
        spawn_purger(store.clone());
        Ok(Arc::new(AuthServer {
            cookies: Cookies {
                secure: settings.issuer.starts_with("https://"),
            },
            settings,
            store,
            keys,
            check,
            sealer: Sealer::new(cookie_key),
            cimd,
            providers,
            sign_in_limit: RateLimiter::new(SIGN_IN_PER_MINUTE, minute),
            sign_in_ip_limit: RateLimiter::new(SIGN_IN_PER_ADDRESS_MINUTE, minute),
            token_limit: RateLimiter::new(TOKEN_PER_MINUTE, minute),
            register_limit: RateLimiter::new(REGISTER_PER_MINUTE, minute),
            passwords: Passwords::default(),
        }))
    }

    /// The resource-server check for the router (API and access tokens).
    pub fn authenticator(&self) -> Arc<BearerCheck> {
        self.check.clone()
    }

    /// The password checker (its gauges: running, peak, refused).
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// RFC 8414 authorization-server metadata.
    pub fn metadata(&self) -> Value {
        let s = &self.settings;
        let methods = ["none", "client_secret_basic", "client_secret_post"];
        let mut doc = json!({
            "issuer": s.issuer,
            "authorization_endpoint": s.url("/oauth/authorize"),
            "token_endpoint": s.url("/oauth/token"),
            "revocation_endpoint": s.url("/oauth/revoke"),
            "jwks_uri": s.url("/oauth/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "scopes_supported": s.scopes_supported(),
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": s.client_metadata_documents,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username"],
        });
        if s.dynamic_registration {
            doc["registration_endpoint"] = json!(s.url("/oauth/register"));
        }
        doc
    }

    /// The endpoints, to merge into the router's app.
    pub fn routes(self: &Arc<Self>) -> axum::Router {
        // What clients call directly may be called from browser-based MCP
        // clients on other origins; none of it uses cookies.
        let machine = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata_document),
            )
            .route("/.well-known/openid-configuration", get(metadata_document))
            .route("/oauth/jwks", get(jwks))
            .route("/oauth/token", post(token::token))
            .route("/oauth/register", post(token::register))
            .route("/oauth/revoke", post(token::revoke))
            .layer(axum::middleware::from_fn(cors));
        axum::Router::new()
            .route(
                "/oauth/authorize",
                get(authorize::start).post(authorize::decide),
            )
            .route("/signin", get(browser::sign_in_page).post(browser::sign_in))
            .route("/signout", post(browser::sign_out))
            .route("/signin/oidc/{provider}", get(browser::upstream_start))
            .route(
                "/signin/oidc/{provider}/callback",
                get(browser::upstream_callback),
            )
            .route("/account", get(browser::account))
            .route("/account/{kind}/{id}/revoke", post(browser::revoke))
            .merge(machine)
            .with_state(self.clone())
    }

    /// The issuer's origin (scheme://host[:port]), for Origin checks.
    fn origin(&self) -> String {
        url::Url::parse(&self.settings.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

type State = axum::extract::State<Arc<AuthServer>>;

/// The form a page posted, or the error page for a form that is too large
/// or malformed.
#[allow(clippy::result_large_err)]
fn page_form(
    body: &crate::web::LimitedBody,
) -> Result<std::collections::HashMap<String, String>, Response> {
    use http::StatusCode;
    let body = body.0.as_ref().map_err(|_| {
        crate::pages::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Invalid form",
            "The form is too large.",
        )
    })?;
    crate::web::parse_form(body)
        .map_err(|e| crate::pages::error_page(StatusCode::BAD_REQUEST, "Invalid form", &e))
}

/// CORS for the cookie-less endpoints: any origin, no credentials;
/// preflights are answered here.
async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use http::{header, HeaderValue, Method, StatusCode};
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    resp
}

async fn metadata_document(axum::extract::State(auth): State) -> Response {
    let mut resp = axum::Json(auth.metadata()).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("max-age=300"),
    );
    resp
}

async fn jwks(axum::extract::State(auth): State) -> Response {
    axum::Json(auth.keys.jwks()).into_response()
}

/// Deletes expired codes, refresh tokens and sessions every hour (when a
/// runtime is there to run it; the admin CLI has none and needs none).
fn spawn_purger(store: Arc<Store>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            match store.purge_expired().await {
                Ok(n) if n > 0 => tracing::debug!("purged {n} expired OAuth records"),
                Ok(_) => {}
                Err(e) => tracing::warn!("purging expired OAuth records: {e}"),
            }
        }
    });
}

fn load_or_create_secret(path: &Path) -> Result<[u8; 32], AuthSetupError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let err = |source| AuthSetupError::CookieKey {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err(std::io::Error::other("malformed"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            use std::io::Write as _;
            options
                .open(path)
                .and_then(|mut f| f.write_all(URL_SAFE_NO_PAD.encode(key).as_bytes()))
                .map_err(err)?;
            Ok(key)
        }
        Err(e) => Err(err(e)),
    }
}
