//! Who may ask for tokens: clients registered with DCR or the admin CLI (in
//! the store), and clients whose id is the URL of their Client ID Metadata
//! Document (fetched through [`crate::cimd`]). Also the redirect URI rules,
//! one set for every kind of registration ([`check_redirect_uris`]).

use std::sync::Arc;

use hangar_store::{NewClient, Store};
use serde_json::{Map, Value};
use url::Url;

use crate::cimd::CimdFetcher;

/// What the authorization server needs to know about a client.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// "none", "client_secret_basic" or "client_secret_post".
    pub auth_method: String,
    /// Where the registration came from, shown on the consent page.
    pub origin: ClientOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOrigin {
    /// Registered by an administrator.
    PreRegistered,
    /// Registered by itself (RFC 7591): its name is unverified.
    Dynamic,
    /// Identified by its metadata document's URL.
    MetadataDocument,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unknown client")]
    Unknown,
    #[error("{0}")]
    Metadata(String),
    #[error("store: {0}")]
    Store(#[from] hangar_store::StoreError),
}

/// Finds a client by id: a metadata document URL, or a stored registration.
pub async fn resolve(
    store: &Store,
    cimd: Option<&CimdFetcher>,
    client_id: &str,
) -> Result<Client, ClientError> {
    if client_id.contains("://") {
        let Some(cimd) = cimd.filter(|c| c.accepts(client_id)) else {
            return Err(ClientError::Unknown);
        };
        let doc = cimd
            .get(client_id)
            .await
            .map_err(|e| ClientError::Metadata(e.to_string()))?;
        return Ok(Client {
            id: client_id.to_owned(),
            name: doc.client_name.clone(),
            redirect_uris: doc.redirect_uris.clone(),
            auth_method: doc.token_endpoint_auth_method.clone(),
            origin: ClientOrigin::MetadataDocument,
        });
    }
    let stored = store.client(client_id).await?.ok_or(ClientError::Unknown)?;
    Ok(Client {
        id: stored.id,
        name: stored.name,
        redirect_uris: stored.redirect_uris,
        auth_method: stored.token_endpoint_auth_method,
        origin: if stored.kind == "static" {
            ClientOrigin::PreRegistered
        } else {
            ClientOrigin::Dynamic
        },
    })
}

/// Whether `requested` may be used with a client that registered
/// `registered`: an exact match, except that a loopback redirect may use any
/// port (RFC 8252 §7.3: native apps get a port from the OS at run time).
pub fn redirect_matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    // Otherwise only a loopback URI, itself within the rules.
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || check_redirect_uri(requested, false).is_err() {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|reg| {
            reg.scheme() == "http"
                && reg.host() == req.host()
                && reg.path() == req.path()
                && reg.query() == req.query()
                && reg.username().is_empty()
                && req.username().is_empty()
        })
    })
}

/// Checks one redirect URI a client wants to register: HTTPS anywhere, HTTP
/// only on loopback, a private-use scheme only for native apps; never a
/// fragment, credentials, a script scheme, a space or a control character.
pub fn check_redirect_uri(uri: &str, native: bool) -> Result<(), String> {
    // The URL parser drops leading and trailing controls and spaces and
    // skips tabs and newlines inside: the URI checked must be the one kept.
    if uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{uri:?} has a space or a control character"));
    }
    let url = Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{uri:?} has credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if crate::netguard::is_loopback_url(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: plain http is allowed only for loopback redirects (127.0.0.1, [::1], localhost)"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ftp" | "ws"
        | "wss" => Err(format!("{uri:?}: the {} scheme is not allowed", url.scheme())),
        _ if native => Ok(()),
        other => Err(format!(
            "{uri:?}: the {other} scheme is allowed only for native applications"
        )),
    }
}

/// Largest number of redirect URIs one registration may carry.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Longest redirect URI accepted.
pub const MAX_URI_LEN: usize = 2048;

/// The redirect URI rules every registration is held to, whether it came
/// by DCR or in a Client ID Metadata Document: 1 to [`MAX_REDIRECT_URIS`]
/// URIs of at most [`MAX_URI_LEN`] bytes, each passing
/// [`check_redirect_uri`]. `Err((error, description))`, the error being
/// RFC 7591's `invalid_redirect_uri`.
pub fn check_redirect_uris(uris: &[String], native: bool) -> Result<(), (&'static str, String)> {
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Err((
            "invalid_redirect_uri",
            format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"),
        ));
    }
    for uri in uris {
        if uri.len() > MAX_URI_LEN {
            return Err(("invalid_redirect_uri", "a redirect URI is too long".into()));
        }
        check_redirect_uri(uri, native).map_err(|d| ("invalid_redirect_uri", d))?;
    }
    Ok(())
}

/// Whether an `application_type` (RFC 7591 / OpenID registration) is
/// "native"; absent means "web".
pub fn is_native(application_type: Option<&str>) -> Result<bool, String> {
    match application_type {
        None | Some("web") => Ok(false),
        Some("native") => Ok(true),
        Some(other) => Err(format!("unknown application_type {other:?}")),
    }
}

/// An RFC 7591 registration request as it arrives (the body of
/// `POST /oauth/register`), parsed and checked: see [`check_registration`].
pub fn parse_registration(body: &[u8]) -> Result<NewClient, (&'static str, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        (
            "invalid_client_metadata",
            "the registration must be a JSON object".to_owned(),
        )
    })?;
    check_registration(&value)
}

/// An RFC 7591 registration request, checked; `Err((error, description))`.
pub fn check_registration(body: &Value) -> Result<NewClient, (&'static str, String)> {
    let invalid = |d: String| ("invalid_client_metadata", d);
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("the registration must be a JSON object".into()))?;
    let application_type = match obj.get("application_type") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| invalid("application_type must be a string".into()))?,
        ),
    };
    let native = is_native(application_type).map_err(invalid)?;
    let uris: Vec<String> = match obj.get("redirect_uris") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                (
                    "invalid_redirect_uri",
                    "redirect_uris must be an array of strings".to_owned(),
                )
            })?,
        Some(_) => {
            return Err((
                "invalid_redirect_uri",
                "redirect_uris must be an array of strings".into(),
            ))
        }
    };
    check_redirect_uris(&uris, native)?;
    let method = match obj.get("token_endpoint_auth_method") {
        None => "client_secret_basic",
        Some(v) => v
            .as_str()
            .ok_or_else(|| invalid("token_endpoint_auth_method must be a string".into()))?,
    };
    if !matches!(
        method,
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(invalid(format!(
            "token_endpoint_auth_method {method:?} is not supported"
        )));
    }
    check_subset(obj, "grant_types", &["authorization_code", "refresh_token"]).map_err(invalid)?;
    check_subset(obj, "response_types", &["code"]).map_err(invalid)?;
    let name = obj
        .get("client_name")
        .and_then(Value::as_str)
        .map(|n| n.chars().take(100).collect::<String>());
    let mut metadata = Map::new();
    for key in [
        "client_name",
        "client_uri",
        "logo_uri",
        "scope",
        "contacts",
        "software_id",
        "software_version",
    ] {
        if let Some(v) = obj.get(key) {
            metadata.insert(key.to_owned(), v.clone());
        }
    }
    Ok(NewClient {
        kind: "dcr".into(),
        name,
        redirect_uris: uris,
        token_endpoint_auth_method: method.to_owned(),
        application_type: if native { "native" } else { "web" }.into(),
        metadata: Value::Object(metadata).to_string(),
    })
}

fn check_subset(obj: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<(), String> {
    let Some(values) = obj.get(key) else {
        return Ok(());
    };
    let values = values
        .as_array()
        .ok_or_else(|| format!("{key} must be an array"))?;
    for v in values {
        match v.as_str() {
            Some(s) if allowed.contains(&s) => {}
            _ => {
                return Err(format!(
                    "{key}: {v} is not supported (supported: {allowed:?})"
                ))
            }
        }
    }
    Ok(())
}

/// Shared handle on the CIMD fetcher, when documents are enabled.
pub type Fetcher = Option<Arc<CimdFetcher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loopback_redirects_may_change_port_only() {
        let reg = vec!["http://127.0.0.1:3000/callback".to_owned()];
        assert!(redirect_matches(&reg, "http://127.0.0.1:3000/callback"));
        assert!(redirect_matches(&reg, "http://127.0.0.1:49152/callback"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:49152/other"));
        assert!(!redirect_matches(&reg, "http://localhost:3000/callback"));
        assert!(!redirect_matches(
            &reg,
            "http://127.0.0.1:3000/callback?x=1"
        ));
        let web = vec!["https://app.example/cb".to_owned()];
        assert!(redirect_matches(&web, "https://app.example/cb"));
        assert!(!redirect_matches(&web, "https://app.example/cb/"));
        assert!(!redirect_matches(&web, "https://app.example:8443/cb"));
        assert!(!redirect_matches(&web, "https://evil.example/cb"));
    }

    #[test]
    fn registration_refuses_unsafe_redirects() {
        let ok = json!({"redirect_uris": ["http://127.0.0.1:9/cb", "https://a.example/cb"],
                        "token_endpoint_auth_method": "none"});
        assert!(check_registration(&ok).is_ok());
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "https://a.example/cb#frag",
            "https://user:pw@a.example/cb",
            "com.example.app:/cb",
        ] {
            let body = json!({"redirect_uris": [bad]});
            let err = check_registration(&body).unwrap_err();
            assert_eq!(err.0, "invalid_redirect_uri", "{bad}");
        }
        let native =
            json!({"redirect_uris": ["com.example.app:/cb"], "application_type": "native"});
        assert!(check_registration(&native).is_ok());
        let empty = json!({"redirect_uris": []});
        assert!(check_registration(&empty).is_err());
        let method = json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"});
        assert_eq!(
            check_registration(&method).unwrap_err().0,
            "invalid_client_metadata"
        );
    }

    // Found by fuzz/oauth_register: a loopback redirect URI matched with a
    // fragment or a password added (only the port may differ), and a URI
    // with leading control characters registered (the URL parser drops
    // them, so the checks saw another URI than the one stored).
    #[test]
    fn redirects_stay_within_the_rules() {
        let reg = vec!["http://127.0.0.1:3000/cb".to_owned()];
        assert!(redirect_matches(&reg, "http://127.0.0.1:4000/cb"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:3000/cb#x"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:4000/cb#"));
        assert!(!redirect_matches(&reg, "http://:pw@127.0.0.1:4000/cb"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:4000/cb\0"));
        for bad in [
            "\0http://127.0.0.2:3400/cb",
            " https://a.example/cb",
            "https://a.example/c b",
            "https://a.example/cb\n",
            "https://a.example/\tcb",
        ] {
            assert!(check_redirect_uri(bad, true).is_err(), "{bad:?}");
        }
    }
}
