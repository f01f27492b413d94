//! The OAuth 2.1 protocol pieces of sign-in: discovery (RFC 9728 protected
//! resource metadata, RFC 8414 / OpenID Connect authorization server
//! metadata, the 2025-03-26 fallback), registration (RFC 7591), PKCE (S256),
//! the authorization URL and the token endpoint.
//!
//! Hand-rolled rather than the `oauth2` crate: what MCP needs around the
//! exchange (RFC 9728 discovery and its order, the `resource` parameter sent
//! exactly as published, Client ID Metadata Documents, RFC 9207 `iss`
//! checks, issuer checks on metadata) is most of the work, and the exchange
//! itself is two form POSTs. Everything here is a pure function or one HTTP
//! exchange, so each rule is tested on its own.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// The largest metadata or token document we read.
const MAX_DOC_BYTES: usize = 1024 * 1024;

/// Why a step of sign-in failed. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("cannot reach {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer with valid JSON: {reason}")]
    Json { url: String, reason: String },
    #[error("no authorization server metadata found for {0}")]
    NoMetadata(String),
    #[error("the authorization server metadata names issuer {found:?}, not {expected:?}: refusing to use it")]
    IssuerMismatch { expected: String, found: String },
    #[error(
        "the protected resource metadata is for {found:?}, not for {expected}: refusing to sign in"
    )]
    ResourceMismatch { expected: String, found: String },
    #[error("the protected resource metadata names no authorization server")]
    NoAuthorizationServer,
    #[error("{0} is not a usable URL")]
    BadUrl(String),
    #[error("the authorization server does not support S256 PKCE")]
    NoPkce,
    #[error("the authorization server has no registration endpoint, and no client is configured: pass --static-oauth-client-info")]
    NoRegistration,
    #[error("the authorization server refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the authorization response is not valid: {0}")]
    Callback(String),
    #[error("{0}")]
    Other(String),
}

impl OAuthError {
    /// The authorization server no longer knows our client.
    pub fn is_invalid_client(&self) -> bool {
        matches!(self, OAuthError::Refused { error, .. } if error == "invalid_client" || error == "unauthorized_client")
    }
}

// ---------------------------------------------------------------------------
// PKCE and random values
// ---------------------------------------------------------------------------

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// 32 random bytes: a 43-character verifier.
    pub fn new() -> Pkce {
        let verifier = random_token(32);
        let challenge = s256(&verifier);
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Pkce {
        Pkce::new()
    }
}

/// `BASE64URL(SHA256(ASCII(verifier)))`.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

// ---------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------

/// RFC 9728 protected resource metadata (the fields we use).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceMetadata {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

/// RFC 8414 authorization server metadata (the fields we use).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AsMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// A registered (or pre-registered, or CIMD) client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// Where to look for the protected resource metadata, in order: the
/// challenge's `resource_metadata`, then the path-inserted well-known URL,
/// then the root one (RFC 9728 §3.1; MCP 2025-11-25).
pub fn prm_urls(server: &Url, from_challenge: Option<&str>) -> Vec<Url> {
    let mut out = Vec::new();
    if let Some(u) = from_challenge.and_then(|u| Url::parse(u).ok()) {
        if matches!(u.scheme(), "http" | "https") {
            out.push(u);
        }
    }
    let path = server.path().trim_end_matches('/');
    if !path.is_empty() {
        if let Ok(u) = server.join(&format!("/.well-known/oauth-protected-resource{path}")) {
            out.push(u);
        }
    }
    if let Ok(u) = server.join("/.well-known/oauth-protected-resource") {
        out.push(u);
    }
    out.dedup();
    out
}

/// Where to look for an issuer's metadata, in order (MCP 2025-11-25):
/// RFC 8414 path-inserted, OpenID Connect path-inserted, OpenID Connect
/// path-appended; for an issuer without a path, RFC 8414 then OIDC.
pub fn as_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut out = Vec::new();
    let mut push = |p: String| {
        if let Ok(u) = issuer.join(&p) {
            out.push(u);
        }
    };
    if path.is_empty() {
        push("/.well-known/oauth-authorization-server".into());
        push("/.well-known/openid-configuration".into());
    } else {
        push(format!("/.well-known/oauth-authorization-server{path}"));
        push(format!("/.well-known/openid-configuration{path}"));
        push(format!("{path}/.well-known/openid-configuration"));
    }
    out
}

/// The canonical server URI (RFC 8707 / MCP): the URL without fragment.
pub fn canonical_resource(server: &Url) -> String {
    let mut u = server.clone();
    u.set_fragment(None);
    u.to_string()
}

/// Whether the metadata's `resource` may stand for `server`: same origin,
/// and the server's path lies under the resource's path.
pub fn resource_allowed(server: &Url, resource: &str) -> bool {
    let Ok(r) = Url::parse(resource) else {
        return false;
    };
    if r.origin() != server.origin() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let sp = server.path();
    rp.is_empty() || sp == rp || sp.starts_with(&format!("{rp}/"))
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The `resource` parameter to send.
    pub resource: String,
    pub prm: Option<ResourceMetadata>,
    /// The issuer exactly as the metadata names it.
    pub issuer: String,
    pub metadata: AsMetadata,
}

/// Outcome of one GET for a document.
enum Fetched {
    Found(Value),
    Missing,
}

async fn get_json(http: &reqwest::Client, url: &Url) -> Result<Fetched, OAuthError> {
    let resp = http
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| OAuthError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let status = resp.status();
    if !status.is_success() {
        // 4xx: not here (try the next location); 5xx too, but say so.
        if status.is_server_error() {
            tracing::debug!("{url} answered HTTP {status}");
        }
        return Ok(Fetched::Missing);
    }
    let body = read_limited(resp, url).await?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => Ok(Fetched::Found(v)),
        Ok(_) => Ok(Fetched::Missing),
        Err(e) => Err(OAuthError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

async fn read_limited(mut resp: reqwest::Response, url: &Url) -> Result<Vec<u8>, OAuthError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_DOC_BYTES {
                    return Err(OAuthError::Other(format!(
                        "{url} sent more than {MAX_DOC_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(OAuthError::Http {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Finds the protected resource metadata, the authorization server and its
/// metadata for `server`. `resource_override` is `--resource`.
pub async fn discover(
    http: &reqwest::Client,
    server: &Url,
    resource_metadata: Option<&str>,
    resource_override: Option<&str>,
) -> Result<Discovery, OAuthError> {
    let mut prm = None;
    for url in prm_urls(server, resource_metadata) {
        if let Fetched::Found(v) = get_json(http, &url).await? {
            let doc: ResourceMetadata =
                serde_json::from_value(v).map_err(|e| OAuthError::Json {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            prm = Some(doc);
            break;
        }
    }
    let (resource, issuer) = match &prm {
        Some(doc) => {
            let resource = match (&doc.resource, resource_override) {
                (_, Some(r)) => r.to_owned(),
                (Some(r), None) => {
                    if !resource_allowed(server, r) {
                        return Err(OAuthError::ResourceMismatch {
                            expected: server.to_string(),
                            found: r.clone(),
                        });
                    }
                    r.clone()
                }
                (None, None) => canonical_resource(server),
            };
            let issuer = doc
                .authorization_servers
                .first()
                .cloned()
                .ok_or(OAuthError::NoAuthorizationServer)?;
            (resource, issuer)
        }
        None => {
            // 2025-03-26: no protected resource metadata; the server's
            // origin is the authorization server.
            tracing::debug!("no protected resource metadata; using the server's origin as the authorization server");
            let origin = server.origin().ascii_serialization();
            (
                resource_override
                    .map(str::to_owned)
                    .unwrap_or_else(|| canonical_resource(server)),
                origin,
            )
        }
    };
    let issuer_url = Url::parse(&issuer).map_err(|_| OAuthError::BadUrl(issuer.clone()))?;
    if !matches!(issuer_url.scheme(), "http" | "https") {
        return Err(OAuthError::BadUrl(issuer));
    }
    let mut metadata = None;
    for url in as_metadata_urls(&issuer_url) {
        if let Fetched::Found(v) = get_json(http, &url).await? {
            let doc: AsMetadata = serde_json::from_value(v).map_err(|e| OAuthError::Json {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            // RFC 8414 §3.3: the issuer must be the one the URL was built from.
            if doc.issuer != issuer {
                return Err(OAuthError::IssuerMismatch {
                    expected: issuer,
                    found: doc.issuer,
                });
            }
            metadata = Some(doc);
            break;
        }
    }
    let metadata = match (metadata, &prm) {
        (Some(m), _) => m,
        (None, Some(_)) => return Err(OAuthError::NoMetadata(issuer)),
        (None, None) => {
            // 2025-03-26 default endpoints at the server's origin.
            let at = |p: &str| issuer_url.join(p).map(|u| u.to_string()).ok();
            AsMetadata {
                issuer: issuer.clone(),
                authorization_endpoint: at("/authorize").unwrap_or_default(),
                token_endpoint: at("/token").unwrap_or_default(),
                registration_endpoint: at("/register"),
                ..AsMetadata::default()
            }
        }
    };
    if let Some(methods) = &metadata.code_challenge_methods_supported {
        if !methods.iter().any(|m| m == "S256") {
            return Err(OAuthError::NoPkce);
        }
    }
    Ok(Discovery {
        resource,
        prm,
        issuer,
        metadata,
    })
}

// ---------------------------------------------------------------------------
// Scopes
// ---------------------------------------------------------------------------

/// The scopes to ask for: the challenge's `scope`, else the resource's
/// `scopes_supported`, else none; united with `previous` (step-up keeps
/// what was granted); `offline_access` added when the authorization server
/// lists it (a refresh token is wanted).
pub fn select_scopes(
    challenge_scope: Option<&str>,
    prm: Option<&ResourceMetadata>,
    metadata: &AsMetadata,
    previous: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = match challenge_scope {
        Some(s) if !s.trim().is_empty() => s.split_ascii_whitespace().map(str::to_owned).collect(),
        _ => prm
            .and_then(|p| p.scopes_supported.clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
    };
    scopes.extend(previous.iter().cloned());
    let offline = metadata
        .scopes_supported
        .as_ref()
        .is_some_and(|s| s.iter().any(|x| x == "offline_access"));
    if offline && !scopes.is_empty() {
        scopes.insert("offline_access".to_owned());
    }
    scopes
}

pub fn scope_string(scopes: &BTreeSet<String>) -> Option<String> {
    if scopes.is_empty() {
        None
    } else {
        Some(scopes.iter().cloned().collect::<Vec<_>>().join(" "))
    }
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

/// The RFC 7591 registration request: our defaults, overridden field by
/// field by `--static-oauth-client-metadata`.
pub fn registration_body(redirect_uri: &str, extra: Option<&Value>) -> Value {
    let mut body = serde_json::json!({
        "client_name": "hangar connect",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    });
    if let (Some(Value::Object(extra)), Some(obj)) = (extra, body.as_object_mut()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Dynamic Client Registration (RFC 7591).
pub async fn register(
    http: &reqwest::Client,
    metadata: &AsMetadata,
    redirect_uri: &str,
    extra: Option<&Value>,
) -> Result<ClientInfo, OAuthError> {
    let endpoint = metadata
        .registration_endpoint
        .as_deref()
        .ok_or(OAuthError::NoRegistration)?;
    let url = Url::parse(endpoint).map_err(|_| OAuthError::BadUrl(endpoint.to_owned()))?;
    let req = http
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(registration_body(redirect_uri, extra).to_string());
    let mut info: ClientInfo = send_for_json(req, &url).await?;
    if info.redirect_uris.is_empty() {
        info.redirect_uris.push(redirect_uri.to_owned());
    }
    Ok(info)
}

fn refusal(body: &[u8]) -> Option<OAuthError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?.as_str()?.to_owned();
    let description = v
        .get("error_description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(OAuthError::Refused { error, description })
}

// ---------------------------------------------------------------------------
// Authorization request and response
// ---------------------------------------------------------------------------

/// The URL the user's browser opens.
pub fn authorization_url(
    metadata: &AsMetadata,
    client_id: &str,
    redirect_uri: &str,
    pkce: &Pkce,
    state: &str,
    scopes: &BTreeSet<String>,
    resource: &str,
) -> Result<Url, OAuthError> {
    let mut url = Url::parse(&metadata.authorization_endpoint)
        .map_err(|_| OAuthError::BadUrl(metadata.authorization_endpoint.clone()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OAuthError::BadUrl(metadata.authorization_endpoint.clone()));
    }
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", state);
        if let Some(scope) = scope_string(scopes) {
            q.append_pair("scope", &scope);
        }
        q.append_pair("resource", resource);
    }
    Ok(url)
}

/// Checks the redirect's parameters: `state` must match; `error` is a
/// refusal; RFC 9207: `iss`, when present, must equal the issuer exactly
/// (no normalisation), and must be present when the server advertises it.
/// Returns the code.
pub fn check_callback(
    params: &[(String, String)],
    expected_state: &str,
    issuer: &str,
    iss_advertised: bool,
) -> Result<String, OAuthError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(expected_state) {
        return Err(OAuthError::Callback(
            "the state does not match this sign-in".into(),
        ));
    }
    if let Some(error) = get("error") {
        return Err(OAuthError::Refused {
            error: error.to_owned(),
            description: get("error_description").map(str::to_owned),
        });
    }
    match get("iss") {
        Some(iss) if iss != issuer => {
            return Err(OAuthError::Callback(format!(
                "the response comes from issuer {iss:?}, not {issuer:?}"
            )))
        }
        None if iss_advertised => {
            return Err(OAuthError::Callback(
                "the authorization server promised an iss parameter and sent none".into(),
            ))
        }
        _ => {}
    }
    get("code")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::Callback("no code in the response".into()))
}

// ---------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------

/// How we authenticate to the token endpoint: what the registration says,
/// else (a secret and no word) `client_secret_basic` unless the server
/// only lists `client_secret_post`.
pub fn auth_method(client: &ClientInfo, metadata: &AsMetadata) -> String {
    if let Some(m) = &client.token_endpoint_auth_method {
        return m.clone();
    }
    if client.client_secret.is_none() {
        return "none".into();
    }
    match &metadata.token_endpoint_auth_methods_supported {
        Some(m)
            if !m.iter().any(|x| x == "client_secret_basic")
                && m.iter().any(|x| x == "client_secret_post") =>
        {
            "client_secret_post".into()
        }
        _ => "client_secret_basic".into(),
    }
}

/// One grant at the token endpoint.
pub enum Grant<'a> {
    Code {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    Refresh {
        refresh_token: &'a str,
    },
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn token_request(
    http: &reqwest::Client,
    metadata: &AsMetadata,
    client: &ClientInfo,
    grant: Grant<'_>,
    resource: &str,
    timeout: Duration,
) -> Result<TokenResponse, OAuthError> {
    let url = Url::parse(&metadata.token_endpoint)
        .map_err(|_| OAuthError::BadUrl(metadata.token_endpoint.clone()))?;
    let mut form: Vec<(&str, &str)> = Vec::with_capacity(8);
    match grant {
        Grant::Code {
            code,
            redirect_uri,
            verifier,
        } => {
            form.extend([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ]);
        }
        Grant::Refresh { refresh_token } => {
            form.extend([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ]);
        }
    }
    form.push(("resource", resource));
    let mut req = http
        .post(url.clone())
        .timeout(timeout)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    match auth_method(client, metadata).as_str() {
        "client_secret_basic" => {
            // RFC 6749 §2.3.1: form-encode both halves, then Basic.
            let secret = client.client_secret.as_deref().unwrap_or_default();
            let pair = format!("{}:{}", form_encode(&client.client_id), form_encode(secret));
            let mut value =
                http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).map_err(
                    |_| OAuthError::Other("the client credentials are not valid".into()),
                )?;
            value.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, value);
        }
        "client_secret_post" => {
            form.push(("client_id", &client.client_id));
            if let Some(secret) = &client.client_secret {
                form.push(("client_secret", secret));
            }
        }
        _ => {
            form.push(("client_id", &client.client_id));
        }
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    send_for_json(req.body(body), &url).await
}

/// Sends a request to an authorization server endpoint and reads its JSON
/// answer (bounded); an OAuth error answer becomes that error.
async fn send_for_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    url: &Url,
) -> Result<T, OAuthError> {
    let resp = req.send().await.map_err(|e| OAuthError::Http {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let status = resp.status();
    let body = read_limited(resp, url).await?;
    if !status.is_success() {
        return Err(refusal(&body).unwrap_or(OAuthError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        }));
    }
    serde_json::from_slice(&body).map_err(|e| OAuthError::Json {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn pkce_is_s256_of_a_43_char_verifier() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::new();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(p.challenge, s256(&p.verifier));
        assert_ne!(Pkce::new().verifier, p.verifier);
    }

    #[test]
    fn protected_resource_metadata_order() {
        let s = u("https://mcp.example.com/mcp/everything");
        let got: Vec<String> = prm_urls(&s, Some("https://mcp.example.com/custom.json"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://mcp.example.com/custom.json",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp/everything",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let root: Vec<String> = prm_urls(&u("https://mcp.example.com/"), Some("javascript:x"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            root,
            ["https://mcp.example.com/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn authorization_server_metadata_order() {
        let got: Vec<String> = as_metadata_urls(&u("https://auth.example.com/tenant1"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let got: Vec<String> = as_metadata_urls(&u("https://auth.example.com"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn resource_must_cover_the_server() {
        let s = u("http://localhost:3000/mcp");
        assert!(resource_allowed(&s, "http://localhost:3000/mcp"));
        assert!(resource_allowed(&s, "http://localhost:3000"));
        assert!(resource_allowed(&s, "http://localhost:3000/"));
        assert!(!resource_allowed(&s, "https://evil.example.com/mcp"));
        assert!(!resource_allowed(&s, "http://localhost:3001/mcp"));
        assert!(!resource_allowed(&s, "http://localhost:3000/mc"));
        assert!(!resource_allowed(&s, "http://localhost:3000/other"));
    }

    #[test]
    fn scopes_from_challenge_then_metadata_then_none() {
        let prm = ResourceMetadata {
            scopes_supported: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        let none = BTreeSet::new();
        let md = AsMetadata::default();
        let s = select_scopes(Some("x y"), Some(&prm), &md, &none);
        assert_eq!(scope_string(&s).unwrap(), "x y");
        let s = select_scopes(None, Some(&prm), &md, &none);
        assert_eq!(scope_string(&s).unwrap(), "a b");
        let s = select_scopes(None, None, &md, &none);
        assert_eq!(scope_string(&s), None);
        // Step-up keeps what was asked before.
        let prev: BTreeSet<String> = ["a".to_owned()].into();
        let s = select_scopes(Some("w"), None, &md, &prev);
        assert_eq!(scope_string(&s).unwrap(), "a w");
        // offline_access only when the authorization server lists it.
        let md = AsMetadata {
            scopes_supported: Some(vec!["a".into(), "offline_access".into()]),
            ..Default::default()
        };
        let s = select_scopes(Some("a"), None, &md, &none);
        assert_eq!(scope_string(&s).unwrap(), "a offline_access");
    }

    #[test]
    fn callback_checks_state_and_iss() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let iss = "http://localhost:1";
        let ok = p(&[("code", "c"), ("state", "s"), ("iss", iss)]);
        assert_eq!(check_callback(&ok, "s", iss, true).unwrap(), "c");
        assert!(check_callback(&ok, "other", iss, true).is_err());
        let no_iss = p(&[("code", "c"), ("state", "s")]);
        assert!(check_callback(&no_iss, "s", iss, true).is_err());
        assert!(check_callback(&no_iss, "s", iss, false).is_ok());
        let slash = p(&[
            ("code", "c"),
            ("state", "s"),
            ("iss", "http://localhost:1/"),
        ]);
        assert!(check_callback(&slash, "s", iss, false).is_err());
        let denied = p(&[("error", "access_denied"), ("state", "s")]);
        assert!(matches!(
            check_callback(&denied, "s", iss, false),
            Err(OAuthError::Refused { .. })
        ));
    }

    #[test]
    fn token_auth_method_follows_registration_then_server() {
        let md = AsMetadata {
            token_endpoint_auth_methods_supported: Some(vec!["client_secret_post".into()]),
            ..Default::default()
        };
        let public = ClientInfo {
            client_id: "a".into(),
            ..Default::default()
        };
        assert_eq!(auth_method(&public, &md), "none");
        let secret = ClientInfo {
            client_id: "a".into(),
            client_secret: Some("s".into()),
            ..Default::default()
        };
        assert_eq!(auth_method(&secret, &md), "client_secret_post");
        assert_eq!(
            auth_method(&secret, &AsMetadata::default()),
            "client_secret_basic"
        );
        let told = ClientInfo {
            token_endpoint_auth_method: Some("client_secret_basic".into()),
            ..secret
        };
        assert_eq!(auth_method(&told, &md), "client_secret_basic");
    }

    #[test]
    fn registration_defaults_are_overridable() {
        let extra = serde_json::json!({"client_name": "mine", "scope": "a"});
        let b = registration_body("http://127.0.0.1:1/oauth/callback", Some(&extra));
        assert_eq!(b["client_name"], "mine");
        assert_eq!(b["scope"], "a");
        assert_eq!(b["application_type"], "native");
        assert_eq!(b["redirect_uris"][0], "http://127.0.0.1:1/oauth/callback");
    }
}
