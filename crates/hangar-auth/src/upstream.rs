//! Sign-in through an upstream OpenID Connect provider (Google, Okta,
//! Keycloak, …): we are its relying party, with the authorization code flow,
//! PKCE S256, state and nonce.
//!
//! Discovery and the provider's keys are fetched on first use and cached; a
//! failed discovery is retried on the next use, and an ID token signed by an
//! unknown key triggers one JWKS refetch (key rotation).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

/// Connect and whole-request timeout for calls to the provider.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// Signature algorithms accepted on ID tokens (asymmetric only: a shared
/// secret would let anyone holding the client secret mint tokens).
const ACCEPTED_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

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
    /// The configuration cannot work (e.g. a plain-http issuer).
    #[error("OpenID provider misconfigured: {0}")]
    Config(String),
    /// Discovery or JWKS could not be fetched or is wrong.
    #[error("OpenID provider discovery failed: {0}")]
    Discovery(String),
    /// The token endpoint refused the code or failed.
    #[error("OpenID provider token request failed: {0}")]
    Token(String),
    /// The ID token did not verify.
    #[error("invalid ID token: {0}")]
    IdToken(String),
}

/// The parts of the provider's discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// A configured provider; discovery happens on first use and is cached.
pub struct OidcProvider {
    pub config: OidcProviderConfig,
    http: Result<reqwest::Client, String>,
    metadata: tokio::sync::Mutex<Option<std::sync::Arc<ProviderMetadata>>>,
    jwks: tokio::sync::Mutex<Option<std::sync::Arc<Vec<Jwk>>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The ID token claims we read; iss, aud and exp are checked by jsonwebtoken.
#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    iat: i64,
    #[serde(flatten)]
    profile: ProfileClaims,
}

#[derive(Deserialize, Default)]
struct ProfileClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A bool, or the string "true" from some providers.
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

impl OidcProvider {
    pub fn new(config: OidcProviderConfig) -> OidcProvider {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(PROVIDER_TIMEOUT)
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string());
        OidcProvider {
            config,
            http,
            metadata: tokio::sync::Mutex::new(None),
            jwks: tokio::sync::Mutex::new(None),
        }
    }

    /// Starts a sign-in: authorization code flow with PKCE S256, state and nonce.
    pub async fn begin(&self, redirect_uri: &str) -> Result<UpstreamLogin, UpstreamError> {
        let meta = self.metadata().await?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let mut url = Url::parse(&meta.authorization_endpoint)
            .map_err(|e| UpstreamError::Discovery(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scope())
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(UpstreamLogin {
            url: url.into(),
            state,
            nonce,
            verifier,
        })
    }

    /// Finishes a sign-in: exchanges the code and verifies the ID token
    /// (signature by the provider's JWKS, iss, aud, exp, nonce).
    pub async fn finish(
        &self,
        code: &str,
        login: &UpstreamLogin,
        redirect_uri: &str,
    ) -> Result<UpstreamClaims, UpstreamError> {
        let meta = self.metadata().await?;
        let tokens = self.exchange(&meta, code, login, redirect_uri).await?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| UpstreamError::Token("the answer has no id_token".into()))?;
        let mut claims = self.verify_id_token(&id_token, &login.nonce).await?;
        if claims.email.is_none() {
            if let (Some(endpoint), Some(access)) = (&meta.userinfo_endpoint, &tokens.access_token)
            {
                self.fill_from_userinfo(&mut claims, endpoint, access)
                    .await?;
            }
        }
        Ok(claims)
    }

    /// The scope requested: `openid email profile` plus configured extras.
    fn scope(&self) -> String {
        let mut scopes = vec!["openid", "email", "profile"];
        for extra in &self.config.scopes {
            if !scopes.contains(&extra.as_str()) {
                scopes.push(extra);
            }
        }
        scopes.join(" ")
    }

    fn http(&self) -> Result<&reqwest::Client, UpstreamError> {
        self.http
            .as_ref()
            .map_err(|e| UpstreamError::Config(format!("HTTP client: {e}")))
    }

    /// The discovery document, fetched once; a failure is not cached.
    pub async fn metadata(&self) -> Result<std::sync::Arc<ProviderMetadata>, UpstreamError> {
        let mut cached = self.metadata.lock().await;
        if let Some(meta) = cached.as_ref() {
            return Ok(meta.clone());
        }
        let meta = std::sync::Arc::new(self.discover().await?);
        *cached = Some(meta.clone());
        Ok(meta)
    }

    async fn discover(&self) -> Result<ProviderMetadata, UpstreamError> {
        let issuer = &self.config.issuer;
        check_endpoint(issuer, issuer).map_err(UpstreamError::Config)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let meta: ProviderMetadata = self.get_json(&url).await?;
        if meta.issuer != *issuer {
            return Err(UpstreamError::Discovery(format!(
                "the document names issuer {:?}, configured {issuer:?}",
                meta.issuer
            )));
        }
        for endpoint in [
            &meta.authorization_endpoint,
            &meta.token_endpoint,
            &meta.jwks_uri,
        ]
        .into_iter()
        .chain(meta.userinfo_endpoint.as_ref())
        {
            check_endpoint(endpoint, issuer).map_err(UpstreamError::Discovery)?;
        }
        Ok(meta)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, UpstreamError> {
        let failed = |e: String| UpstreamError::Discovery(format!("{url}: {e}"));
        let response = self
            .http()?
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status().as_u16())));
        }
        response
            .json()
            .await
            .map_err(|e| failed(e.without_url().to_string()))
    }

    /// The provider's signing keys; `refresh` forces a refetch.
    async fn keys(&self, refresh: bool) -> Result<std::sync::Arc<Vec<Jwk>>, UpstreamError> {
        let mut cached = self.jwks.lock().await;
        if let Some(keys) = cached.as_ref().filter(|_| !refresh) {
            return Ok(keys.clone());
        }
        let meta = self.metadata().await?;
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = self.get_json(&meta.jwks_uri).await?;
        // Skip keys we cannot read (other key types, encryption keys).
        let keys: Vec<Jwk> = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        let keys = std::sync::Arc::new(keys);
        *cached = Some(keys.clone());
        Ok(keys)
    }

    async fn exchange(
        &self,
        meta: &ProviderMetadata,
        code: &str,
        login: &UpstreamLogin,
        redirect_uri: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", login.verifier.as_str()),
        ];
        let mut request = self.http()?.post(&meta.token_endpoint);
        match (&self.config.client_secret, client_auth_method(meta)) {
            (Some(secret), AuthMethod::Basic) => {
                request = request.header(
                    http::header::AUTHORIZATION,
                    basic_auth(&self.config.client_id, secret),
                );
            }
            (Some(secret), AuthMethod::Post) => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &self.config.client_id)),
        }
        let response = request
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| UpstreamError::Token(e.without_url().to_string()))?;
        read_token_response(response).await
    }

    /// Verifies signature, iss, aud/azp, exp, iat and nonce of `token`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<UpstreamClaims, UpstreamError> {
        let bad = |why: String| UpstreamError::IdToken(why);
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        if !ACCEPTED_ALGS.contains(&header.alg) {
            return Err(bad(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let key = match find_key(&self.keys(false).await?, &header)? {
            Some(key) => key,
            // An unknown key: the provider may have rotated; look once more.
            None => find_key(&self.keys(true).await?, &header)?
                .ok_or_else(|| bad("signed by a key the provider does not publish".into()))?,
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        check_claims(&data.claims, &self.config.client_id, nonce)?;
        Ok(to_upstream(data.claims))
    }

    /// Completes missing profile claims from the userinfo endpoint.
    async fn fill_from_userinfo(
        &self,
        claims: &mut UpstreamClaims,
        endpoint: &str,
        access_token: &str,
    ) -> Result<(), UpstreamError> {
        let failed = |e: String| UpstreamError::Token(format!("userinfo: {e}"));
        let response = self
            .http()?
            .get(endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status().as_u16())));
        }
        let info: ProfileClaims = response
            .json()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        // OpenID Connect Core 5.3.2: the sub must match the ID token's.
        if info.sub.as_deref() != Some(claims.subject.as_str()) {
            return Err(failed("sub differs from the ID token".into()));
        }
        claims.email = claims.email.take().or(info.email);
        claims.email_verified = claims.email_verified || truthy(&info.email_verified);
        claims.name = claims.name.take().or(info.name);
        claims.preferred_username = claims.preferred_username.take().or(info.preferred_username);
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum AuthMethod {
    Basic,
    Post,
}

/// client_secret_basic unless the provider offers only client_secret_post
/// (the metadata default, when absent, is client_secret_basic).
fn client_auth_method(meta: &ProviderMetadata) -> AuthMethod {
    match &meta.token_endpoint_auth_methods_supported {
        Some(methods)
            if !methods.iter().any(|m| m == "client_secret_basic")
                && methods.iter().any(|m| m == "client_secret_post") =>
        {
            AuthMethod::Post
        }
        _ => AuthMethod::Basic,
    }
}

/// RFC 6749 2.3.1: both parts form-urlencoded before base64.
fn basic_auth(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)))
    )
}

async fn read_token_response(response: reqwest::Response) -> Result<TokenResponse, UpstreamError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| UpstreamError::Token(e.without_url().to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::Token("the answer is not a token response".into()));
    }
    // Only the error code and description: the body may echo secrets.
    Err(UpstreamError::Token(
        match serde_json::from_slice::<TokenErrorBody>(&body) {
            Ok(e) => match e.error_description {
                Some(d) => format!("{} ({d})", e.error),
                None => e.error,
            },
            Err(_) => format!("HTTP {}", status.as_u16()),
        },
    ))
}

/// The key `header` names (by kid; without a kid, the only key of the
/// algorithm's family). `None` when no published key matches.
fn find_key(
    keys: &[Jwk],
    header: &jsonwebtoken::Header,
) -> Result<Option<DecodingKey>, UpstreamError> {
    let usable = |k: &&Jwk| {
        k.common
            .public_key_use
            .as_ref()
            .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
    };
    let jwk = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut fitting = keys
                .iter()
                .filter(usable)
                .filter(|k| DecodingKey::from_jwk(k).is_ok_and(|d| fits(&d, header.alg)));
            match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    };
    let Some(jwk) = jwk else { return Ok(None) };
    DecodingKey::from_jwk(jwk)
        .map(Some)
        .map_err(|e| UpstreamError::IdToken(format!("unreadable provider key: {e}")))
}

fn fits(key: &DecodingKey, alg: Algorithm) -> bool {
    key.family().algorithms().contains(&alg)
}

fn check_claims(c: &IdTokenClaims, client_id: &str, nonce: &str) -> Result<(), UpstreamError> {
    let bad = |why: &str| Err(UpstreamError::IdToken(why.to_owned()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if c.iat > now + LEEWAY_SECS as i64 {
        return bad("issued in the future (iat)");
    }
    let several_audiences = c.aud.as_array().is_some_and(|a| a.len() > 1);
    match c.azp.as_deref() {
        Some(azp) if azp != client_id => return bad("authorized party (azp) is another client"),
        None if several_audiences => return bad("several audiences but no azp"),
        _ => {}
    }
    // Constant time is not needed: the nonce is not a secret of ours.
    if c.nonce.as_deref() != Some(nonce) {
        return bad("nonce does not match this sign-in");
    }
    if c.sub.is_empty() {
        return bad("empty subject");
    }
    Ok(())
}

fn truthy(v: &Option<serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    }
}

fn to_upstream(c: IdTokenClaims) -> UpstreamClaims {
    UpstreamClaims {
        subject: c.sub,
        email_verified: truthy(&c.profile.email_verified),
        email: c.profile.email,
        name: c.profile.name,
        preferred_username: c.profile.preferred_username,
    }
}

/// https, or plain http when the issuer itself is a loopback http URL.
fn check_endpoint(endpoint: &str, issuer: &str) -> Result<(), String> {
    let url = Url::parse(endpoint).map_err(|e| format!("{endpoint:?}: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http"
            if crate::netguard::is_loopback_url(&url)
                && Url::parse(issuer).is_ok_and(|i| crate::netguard::is_loopback_url(&i)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{endpoint} must use https (plain http only for a loopback issuer)"
        )),
    }
}

/// 32 random bytes, base64url: state, nonce and the PKCE verifier (43 chars).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(methods: Option<&[&str]>) -> ProviderMetadata {
        ProviderMetadata {
            issuer: "https://id.example".into(),
            authorization_endpoint: "https://id.example/auth".into(),
            token_endpoint: "https://id.example/token".into(),
            jwks_uri: "https://id.example/jwks".into(),
            userinfo_endpoint: None,
            token_endpoint_auth_methods_supported: methods
                .map(|m| m.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_token().len(), 43);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn auth_method_choice() {
        assert_eq!(client_auth_method(&meta(None)), AuthMethod::Basic);
        let both = ["client_secret_post", "client_secret_basic"];
        assert_eq!(client_auth_method(&meta(Some(&both))), AuthMethod::Basic);
        let post = ["client_secret_post", "none"];
        assert_eq!(client_auth_method(&meta(Some(&post))), AuthMethod::Post);
    }

    #[test]
    fn basic_auth_encodes_parts() {
        assert_eq!(
            basic_auth("a b", "p:w"),
            format!("Basic {}", STANDARD.encode("a+b:p%3Aw"))
        );
    }

    #[test]
    fn endpoints_need_https_unless_loopback_issuer() {
        let local = "http://127.0.0.1:9";
        assert!(check_endpoint("https://id.example/t", "https://id.example").is_ok());
        assert!(check_endpoint("http://id.example/t", "https://id.example").is_err());
        assert!(check_endpoint("http://127.0.0.1:9/t", local).is_ok());
        assert!(check_endpoint("http://127.0.0.1:9/t", "https://id.example").is_err());
        assert!(check_endpoint("http://id.example/t", local).is_err());
    }

    #[test]
    fn scope_adds_extras_once() {
        let provider = OidcProvider::new(OidcProviderConfig {
            name: "x".into(),
            display_name: None,
            issuer: "https://id.example".into(),
            client_id: "c".into(),
            client_secret: None,
            scopes: vec!["groups".into(), "email".into()],
        });
        assert_eq!(provider.scope(), "openid email profile groups");
    }
}
