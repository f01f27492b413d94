#![no_main]
//! Client ID Metadata Documents in `hangar-auth` (`cimd`): the document a
//! client publishes at its `client_id` URL (`parse_document`), the URL
//! rules checked before anything is fetched (`validate_client_id`) and the
//! cache lifetime read from the answer (`cache_ttl`).
//!
//! Properties:
//! * an accepted document names its own URL as `client_id`, uses no
//!   secret, and lists only redirect URIs within the rules every other
//!   client is held to (`clients::check_redirect_uri`: no script scheme, no
//!   plain HTTP off loopback, no fragment or credentials) — the server
//!   redirects browsers there with authorization codes;
//! * an accepted `client_id` is an HTTPS URL in normalized form, with a
//!   path without dot segments, no fragment or user info, and no IP literal
//!   in a private, loopback, link-local or other special range;
//! * the cache lifetime is "do not store" exactly when the answer says so,
//!   else within the bounds.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use arbitrary::Arbitrary;
use hangar_auth::cimd::{cache_ttl, parse_document, validate_client_id};
use hangar_auth::clients::check_redirect_uri;
use hangar_auth::netguard::NetPolicy;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const URL: &str = "https://app.example/oauth/client.json";

#[derive(Arbitrary, Debug)]
enum Input {
    Document(Vec<u8>),
    Fields {
        redirect_uris: Vec<String>,
        method: Option<String>,
        name: Option<String>,
        other: Option<(String, String)>,
    },
    ClientId(String),
    CacheControl(Vec<Vec<u8>>),
}

fn document(body: &[u8]) {
    let Ok(doc) = parse_document(URL, body) else {
        return;
    };
    assert_eq!(doc.client_id, URL);
    assert_eq!(doc.token_endpoint_auth_method, "none");
    assert!(!doc.redirect_uris.is_empty());
    let value: Value = serde_json::from_slice(body).unwrap();
    assert!(value.get("client_secret").is_none());
    for uri in &doc.redirect_uris {
        // A metadata document is a native or web client alike: private-use
        // schemes are allowed, nothing else outside the rules.
        if let Err(e) = check_redirect_uri(uri, true) {
            panic!("the document's redirect URI {uri:?} was accepted: {e}");
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> bool {
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.octets()[0] == 0
        || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.to_ipv4_mapped().is_some_and(special_v4)
        }
    }
}

fn client_id(id: &str) {
    if validate_client_id(id, &NetPolicy::default()).is_err() {
        return;
    }
    let url = url::Url::parse(id).expect("an accepted client_id parses");
    assert_eq!(url.as_str(), id, "not normalized");
    assert_eq!(url.scheme(), "https");
    assert!(url.fragment().is_none() && !id.contains('#'));
    assert!(url.username().is_empty() && url.password().is_none());
    assert!(url.path() != "/" && !url.path().is_empty());
    let segments = url.path().split('/');
    assert!(
        segments.clone().all(|s| !matches!(
            s.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )),
        "dot segment in {id:?}"
    );
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(ip) = ip {
        assert!(!special(ip), "{id:?} names a special address");
    }
}

fn cache(values: &[Vec<u8>]) {
    let mut headers = HeaderMap::new();
    let mut directives = Vec::new();
    for v in values {
        let Ok(value) = HeaderValue::from_bytes(v) else {
            continue;
        };
        if let Ok(text) = value.to_str() {
            directives.extend(text.split(',').map(|d| d.trim().to_ascii_lowercase()));
        }
        headers.append(http::header::CACHE_CONTROL, value);
    }
    let no_store = directives
        .iter()
        .any(|d| d == "no-store" || d == "no-cache");
    match cache_ttl(&headers) {
        None => assert!(no_store),
        Some(ttl) => {
            assert!(!no_store);
            assert!(ttl >= Duration::from_secs(60) && ttl <= Duration::from_secs(24 * 3600));
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Document(body) => document(&body),
    Input::Fields {
        redirect_uris,
        method,
        name,
        other,
    } => {
        let mut doc = json!({ "client_id": URL, "redirect_uris": redirect_uris });
        if let Some(m) = method {
            doc["token_endpoint_auth_method"] = json!(m);
        }
        if let Some(n) = name {
            doc["client_name"] = json!(n);
        }
        if let Some((k, v)) = other {
            doc[k.as_str()] = json!(v);
        }
        document(doc.to_string().as_bytes());
    }
    Input::ClientId(id) => client_id(&id),
    Input::CacheControl(values) => cache(&values),
});
