//! Sign-in through an upstream OpenID Connect provider (Google, Okta,
//! Keycloak, …). (Interface; a helper fills it in.)

use serde::Deserialize;

/// One `[[oauth.oidc]]` entry of the router's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Short name, used in URLs (`/signin/oidc/{name}`) and to link accounts.
    pub name: String,
    /// Shown on the sign-in button.
    #[serde(default)]
    pub display_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Extra scopes beyond `openid email profile`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A sign-in started at the provider: send the browser to `url`, keep the
/// rest (in a signed cookie) for the callback.
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// Who the provider says signed in (from a verified ID token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamClaims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Failed(String),
}

/// A configured provider; discovery happens on first use and is cached.
pub struct OidcProvider {
    pub config: OidcProviderConfig,
}

impl OidcProvider {
    pub fn new(config: OidcProviderConfig) -> OidcProvider {
        OidcProvider { config }
    }

    /// Starts a sign-in: authorization code flow with PKCE S256, state and nonce.
    pub async fn begin(&self, _redirect_uri: &str) -> Result<UpstreamLogin, UpstreamError> {
        Err(UpstreamError::Failed("not implemented".into()))
    }

    /// Finishes a sign-in: exchanges the code and verifies the ID token
    /// (signature by the provider's JWKS, iss, aud, exp, nonce).
    pub async fn finish(
        &self,
        _code: &str,
        _login: &UpstreamLogin,
        _redirect_uri: &str,
    ) -> Result<UpstreamClaims, UpstreamError> {
        Err(UpstreamError::Failed("not implemented".into()))
    }
}
