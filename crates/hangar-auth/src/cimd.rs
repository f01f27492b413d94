//! Client ID Metadata Documents: a client whose `client_id` is an HTTPS URL
//! publishes its registration there
//! (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25).
//!
//! The URL comes from an unauthenticated request, so the fetch goes through
//! [`crate::netguard`], is small and short, and every outcome is cached
//! (failures briefly) so one URL cannot be used to hammer its host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use crate::netguard::{fetch_limited, FetchError, GuardedClient, NetPolicy};

/// Largest document accepted (the draft suggests 5 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Longest client_id URL accepted.
pub const MAX_CLIENT_ID_LEN: usize = 2048;
/// Documents kept in memory at most.
pub const CACHE_CAPACITY: usize = 1000;
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const FAILURE_TTL: Duration = Duration::from_secs(10);

/// The fields of a client metadata document the authorization server uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ClientMetadataDocument {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_uri: Option<String>,
    /// "web" (the default) or "native": a native app may use a private-use
    /// redirect scheme.
    #[serde(default)]
    pub application_type: Option<String>,
}

fn default_auth_method() -> String {
    "none".to_owned()
}

/// Why a metadata-document client was not accepted. Every variant is an
/// OAuth `invalid_client`; the Display text is the human description.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CimdError {
    /// The client_id URL is not acceptable (scheme, form, address).
    #[error("{0}")]
    Refused(String),
    /// The document could not be fetched.
    #[error("{0}")]
    Fetch(String),
    /// The document was fetched but is not a valid client registration.
    #[error("{0}")]
    Invalid(String),
}

impl CimdError {
    /// The OAuth error code for every variant.
    pub fn oauth_error(&self) -> &'static str {
        "invalid_client"
    }
}

type Outcome = Result<Arc<ClientMetadataDocument>, CimdError>;

struct Entry {
    outcome: Outcome,
    expires: Instant,
    seq: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    seq: u64,
}

impl Cache {
    fn get(&self, url: &str, now: Instant) -> Option<Outcome> {
        let entry = self.entries.get(url)?;
        (entry.expires > now).then(|| entry.outcome.clone())
    }

    fn insert(&mut self, url: &str, outcome: Outcome, ttl: Duration, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(url) {
            self.entries.retain(|_, e| e.expires > now);
        }
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(url) {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.seq);
            if let Some(key) = oldest.map(|(k, _)| k.clone()) {
                self.entries.remove(&key);
            }
        }
        self.seq += 1;
        let entry = Entry {
            outcome,
            expires: now + ttl,
            seq: self.seq,
        };
        self.entries.insert(url.to_owned(), entry);
    }
}

/// Fetches and caches client metadata documents.
pub struct CimdFetcher {
    policy: NetPolicy,
    client: Result<GuardedClient, String>,
    cache: Mutex<Cache>,
    /// One lock per URL being fetched, so concurrent gets share one fetch.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CimdFetcher {
    pub fn new(policy: NetPolicy) -> CimdFetcher {
        CimdFetcher {
            policy,
            client: GuardedClient::new(policy).map_err(|e| e.to_string()),
            cache: Mutex::new(Cache::default()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client_id` is a metadata URL: https with a non-root path.
    /// See [`CimdFetcher::accepts`] for the policy-aware variant.
    pub fn is_metadata_url(client_id: &str) -> bool {
        Url::parse(client_id).is_ok_and(|u| u.scheme() == "https" && has_path(&u))
    }

    /// Like [`CimdFetcher::is_metadata_url`], plus http on a loopback host
    /// when the policy allows loopback (development and tests).
    pub fn accepts(&self, client_id: &str) -> bool {
        let Ok(url) = Url::parse(client_id) else {
            return false;
        };
        match url.scheme() {
            "https" => has_path(&url),
            "http" => {
                self.policy.allow_loopback
                    && crate::netguard::is_loopback_url(&url)
                    && has_path(&url)
            }
            _ => false,
        }
    }

    /// The validated document published at `client_id`, from cache when fresh.
    pub async fn get(&self, client_id: &str) -> Result<Arc<ClientMetadataDocument>, CimdError> {
        validate_client_id(client_id, &self.policy)?;
        if let Some(hit) = self.cached(client_id) {
            return hit;
        }
        let gate = self.gate(client_id);
        let outcome = {
            let _turn = gate.lock().await;
            match self.cached(client_id) {
                Some(hit) => hit,
                None => self.fetch_and_cache(client_id).await,
            }
        };
        self.release(client_id, &gate);
        outcome
    }

    fn cached(&self, url: &str) -> Option<Outcome> {
        lock(&self.cache).get(url, Instant::now())
    }

    fn gate(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inflight)
            .entry(url.to_owned())
            .or_default()
            .clone()
    }

    /// Drops the URL's lock once no other get holds a reference to it.
    fn release(&self, url: &str, gate: &Arc<tokio::sync::Mutex<()>>) {
        let mut inflight = lock(&self.inflight);
        // Two references: the map's and ours.
        if Arc::strong_count(gate) <= 2 {
            inflight.remove(url);
        }
    }

    async fn fetch_and_cache(&self, url: &str) -> Outcome {
        let (outcome, ttl) = match self.fetch(url).await {
            Ok((doc, ttl)) => (Ok(Arc::new(doc)), ttl),
            Err(e) => (Err(e), Some(FAILURE_TTL)),
        };
        if let Some(ttl) = ttl {
            lock(&self.cache).insert(url, outcome.clone(), ttl, Instant::now());
        }
        outcome
    }

    /// Fetches and validates; the TTL is `None` when the host said no-store.
    async fn fetch(
        &self,
        url: &str,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| CimdError::Fetch(e.clone()))?;
        let (status, headers, body) = fetch_limited(client, url, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| fetch_error(url, e))?;
        if status != http::StatusCode::OK {
            return Err(CimdError::Fetch(format!(
                "client metadata document {url} answered HTTP {}",
                status.as_u16()
            )));
        }
        let doc = parse_document(url, &body)?;
        Ok((doc, cache_ttl(&headers)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn has_path(url: &Url) -> bool {
    url.path() != "/" && !url.path().is_empty()
}

fn refused(why: &str) -> CimdError {
    CimdError::Refused(format!("client_id is not a valid metadata URL: {why}"))
}

/// The draft's rules on the URL itself, checked before any network use.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn validate_client_id(client_id: &str, policy: &NetPolicy) -> Result<(), CimdError> {
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(refused("too long"));
    }
    let url = Url::parse(client_id).map_err(|_| refused("not a URL"))?;
    if url.fragment().is_some() || client_id.contains('#') {
        return Err(refused("it has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("it has user information"));
    }
    if raw_path(client_id)
        .split('/')
        .any(|s| matches!(s, "." | ".." | "%2e" | "%2E" | "%2e%2e" | "%2E%2E"))
    {
        return Err(refused("its path has dot segments"));
    }
    if !has_path(&url) {
        return Err(refused("it has no path"));
    }
    if url.as_str() != client_id {
        return Err(refused("it is not in normalized form"));
    }
    crate::netguard::check_url(client_id, policy).map_err(|e| refused(&e.to_string()))?;
    Ok(())
}

/// The path part of a URL string as written (before normalization).
fn raw_path(s: &str) -> &str {
    let after_scheme = s.split_once("://").map_or(s, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

fn fetch_error(url: &str, e: FetchError) -> CimdError {
    match e {
        FetchError::Refused(why) => CimdError::Refused(format!("{url}: refused: {why}")),
        FetchError::InvalidUrl(why) => refused(&why),
        FetchError::TooLarge(n) => CimdError::Invalid(format!(
            "client metadata document {url} is larger than {n} bytes"
        )),
        FetchError::Http(why) => CimdError::Fetch(format!(
            "client metadata document {url} could not be fetched: {why}"
        )),
    }
}

fn invalid(url: &str, why: &str) -> CimdError {
    CimdError::Invalid(format!("client metadata document {url} {why}"))
}

/// A fetched document's body, parsed and checked against `url` (the
/// client_id it was fetched from). Public for the fuzz targets (fuzz/).
pub fn parse_document(url: &str, body: &[u8]) -> Result<ClientMetadataDocument, CimdError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| invalid(url, "is not JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid(url, "is not a JSON object"))?;
    for secret in ["client_secret", "client_secret_expires_at"] {
        if object.contains_key(secret) {
            return Err(invalid(url, &format!("must not contain {secret}")));
        }
    }
    let doc: ClientMetadataDocument = serde_json::from_value(value)
        .map_err(|e| invalid(url, &format!("has an invalid field: {e}")))?;
    check_document(url, &doc)?;
    Ok(doc)
}

fn check_document(url: &str, doc: &ClientMetadataDocument) -> Result<(), CimdError> {
    if doc.client_id != url {
        return Err(invalid(
            url,
            "has a client_id different from its URL (they must be equal)",
        ));
    }
    // The same redirect URI rules as Dynamic Client Registration.
    let native = crate::clients::is_native(doc.application_type.as_deref())
        .map_err(|e| invalid(url, &format!("has an {e}")))?;
    crate::clients::check_redirect_uris(&doc.redirect_uris, native)
        .map_err(|(_, why)| invalid(url, &format!("is refused: {why}")))?;
    match doc.token_endpoint_auth_method.as_str() {
        "none" => Ok(()),
        "private_key_jwt" => Err(invalid(
            url,
            "asks for token_endpoint_auth_method private_key_jwt, which this server does not \
             support; use \"none\"",
        )),
        other => Err(invalid(
            url,
            &format!("has token_endpoint_auth_method {other:?}; only \"none\" is supported"),
        )),
    }
}

/// How long to keep a document: `max-age` clamped, `None` for no-store.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn cache_ttl(headers: &http::HeaderMap) -> Option<Duration> {
    let mut ttl = DEFAULT_TTL;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if directive == "no-store" || directive == "no-cache" {
                return None;
            }
            if let Some(secs) = directive.strip_prefix("max-age=") {
                if let Ok(secs) = secs.trim_matches('"').parse::<u64>() {
                    ttl = Duration::from_secs(secs);
                }
            }
        }
    }
    Some(ttl.clamp(MIN_TTL, MAX_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: NetPolicy = NetPolicy {
        allow_loopback: true,
    };

    #[test]
    fn metadata_url_shape() {
        assert!(CimdFetcher::is_metadata_url(
            "https://app.example/client.json"
        ));
        assert!(!CimdFetcher::is_metadata_url("https://app.example/"));
        assert!(!CimdFetcher::is_metadata_url("https://app.example"));
        assert!(!CimdFetcher::is_metadata_url("http://app.example/c"));
        assert!(!CimdFetcher::is_metadata_url("my-client"));
        let dev = CimdFetcher::new(DEV);
        assert!(dev.accepts("http://127.0.0.1:9/c.json"));
        assert!(!dev.accepts("http://example.com/c.json"));
        assert!(!CimdFetcher::new(NetPolicy::default()).accepts("http://127.0.0.1:9/c.json"));
    }

    #[test]
    fn url_rules() {
        let p = NetPolicy::default();
        assert!(validate_client_id("https://app.example/client.json", &p).is_ok());
        for bad in [
            "https://app.example/a#frag",
            "https://app.example/a#",
            "https://user:pw@app.example/a",
            "https://app.example/a/../b",
            "https://app.example/./b",
            "https://app.example/a/%2e%2e/b",
            "https://app.example/",
            "https://app.example",
            "https://APP.example/a",
            "https://app.example:443/a",
            "https://10.0.0.1/client.json",
            "http://app.example/a",
            "",
            "\u{0}",
        ] {
            assert!(validate_client_id(bad, &p).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_control() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            cache_ttl(&m)
        };
        assert_eq!(cache_ttl(&http::HeaderMap::new()), Some(DEFAULT_TTL));
        assert_eq!(h("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(h("max-age=1"), Some(MIN_TTL));
        assert_eq!(h("max-age=99999999"), Some(MAX_TTL));
        assert_eq!(h("no-store"), None);
        assert_eq!(h("max-age=junk"), Some(DEFAULT_TTL));
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let err = || Err(CimdError::Fetch("x".into()));
        for i in 0..CACHE_CAPACITY + 5 {
            cache.insert(&format!("u{i}"), err(), MAX_TTL, now);
        }
        assert_eq!(cache.entries.len(), CACHE_CAPACITY);
        assert!(cache.get("u0", now).is_none());
        assert!(cache
            .get(&format!("u{}", CACHE_CAPACITY + 4), now)
            .is_some());
    }

    /// One set of redirect URI rules: what DCR refuses, a document may not
    /// carry either, and what DCR accepts, a document may.
    #[test]
    fn documents_follow_the_dcr_redirect_rules() {
        let url = "https://a.example/c";
        for (uri, app) in [
            ("javascript:alert(1)", "web"),
            ("data:text/html,x", "web"),
            ("http://evil.example/cb", "web"),
            ("http://evil.example/cb", "native"),
            ("https://a.example/cb#f", "web"),
            ("https://u:p@a.example/cb", "web"),
            ("file:///etc/passwd", "native"),
            ("com.example.app:/cb", "web"),
            ("not a url", "web"),
            ("https://127.0.0.1:9/cb", "web"),
            ("http://127.0.0.1:9/cb", "web"),
            ("com.example.app:/cb", "native"),
        ] {
            let doc = serde_json::json!({"client_id": url, "redirect_uris": [uri],
                                          "application_type": app});
            let dcr = crate::clients::check_registration(&serde_json::json!({
                "redirect_uris": [uri], "application_type": app,
                "token_endpoint_auth_method": "none"}));
            let cimd = parse_document(url, doc.to_string().as_bytes());
            assert_eq!(dcr.is_ok(), cimd.is_ok(), "{uri} ({app}): {cimd:?}");
        }
    }

    #[test]
    fn documents_never_panic() {
        let url = "https://a.example/c";
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"client_id\":1}",
            b"{\"client_id\":\"https://a.example/c\",\"redirect_uris\":[]}",
            b"\xff\xfe",
        ] {
            assert!(parse_document(url, body).is_err());
        }
    }
}
