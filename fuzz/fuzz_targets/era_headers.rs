#![no_main]
//! Era and header rules: `era::detect`, the modern (2026-07-28) header
//! validation of the server (`server::validate_modern`), the headers the
//! client half sends (`client::modern_headers`), the `=?base64?…?=` header
//! encoding, and the request guards (`guard`: Host/Origin, bearer, Accept,
//! Content-Type).
//!
//! Properties:
//! * the era is modern exactly when the version header is modern or a peer
//!   reading the body (the `JSON.parse` model) finds the `_meta` version;
//! * what our client sends for a valid modern request passes our server's
//!   validation, and changing a mirrored header makes it fail;
//! * whenever validation passes, the headers say what the body says;
//! * header values round-trip through the encoding and are always sendable;
//! * the loopback guard accepts exactly the browser origins on loopback or
//!   the request's own host, and a bearer check passes only the token.

use arbitrary::Arbitrary;
use hangar_fuzz::json::{self, J};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_transport::era::{self, meta, Era};
use mcp_transport::guard::{self, OriginPolicy, LOOPBACK_HOSTS};
use mcp_transport::server::{validate_modern, METHOD_HEADER, NAME_HEADER, VERSION_HEADER};
use mcp_transport::{client, Kind, Message};

#[derive(Arbitrary, Debug)]
enum Input {
    /// A modern request built from parts, through our client and server.
    RoundTrip {
        method: u8,
        other_method: String,
        name: String,
        version: u8,
        capabilities: bool,
        /// Raw JSON put in `params.arguments` when it is JSON.
        arguments: String,
    },
    /// Any body with any headers.
    Headers {
        body: String,
        version: Option<Vec<u8>>,
        method: Option<Vec<u8>>,
        name: Option<Vec<u8>>,
    },
    Encode(String),
    Guard {
        host: Option<Vec<u8>>,
        origin: Option<Vec<u8>>,
        authorization: Option<Vec<u8>>,
        accept: Option<Vec<u8>>,
    },
}

const METHODS: &[&str] = &["tools/call", "resources/read", "prompts/get", "tools/list"];
const VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2027-01-01", ""];

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn header_map(pairs: &[(&'static str, Option<&[u8]>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h
}

/// The era a peer reading the body and the header would pick.
fn model_era(j: &J, version_header: Option<&str>) -> Era {
    let declared = j
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(meta::PROTOCOL_VERSION));
    if version_header.is_some_and(era::is_modern_version) || declared.is_some() {
        Era::Modern
    } else {
        Era::Legacy
    }
}

fn round_trip(method: &str, name: &str, version: &str, capabilities: bool, arguments: &str) {
    let field = era::name_param(method);
    let mut meta_members = vec![format!(
        "{}:{}",
        json_string(meta::PROTOCOL_VERSION),
        json_string(version)
    )];
    if capabilities {
        meta_members.push(format!("{}:{{}}", json_string(meta::CLIENT_CAPABILITIES)));
    }
    let mut params = vec![format!(r#""_meta":{{{}}}"#, meta_members.join(","))];
    if let Some(field) = field {
        params.push(format!("{}:{}", json_string(field), json_string(name)));
    }
    if serde_json::from_str::<&serde_json::value::RawValue>(arguments).is_ok() {
        params.push(format!(r#""arguments":{arguments}"#));
    }
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":{},"params":{{{}}}}}"#,
        json_string(method),
        params.join(",")
    );
    let m = Message::parse(text.as_str()).expect("a well-formed request");
    assert_eq!(era::detect(&m, None), Era::Modern, "{text}");
    let mut headers = HeaderMap::new();
    for (k, v) in client::modern_headers(&m) {
        headers.insert(k, v);
    }
    let header_version = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    let valid = version == era::LATEST && capabilities;
    let outcome = validate_modern(&headers, &m, header_version);
    assert_eq!(
        outcome.is_ok(),
        valid,
        "the server and the client disagree on {text} with {headers:?}"
    );
    if !valid {
        return;
    }
    // A mirrored header that no longer says what the body says is refused.
    let mut bad = headers.clone();
    let other = era::encode_header_value(&format!("{method}x"));
    bad.insert(METHOD_HEADER, HeaderValue::from_str(&other).unwrap());
    assert!(validate_modern(&bad, &m, header_version).is_err());
    if field.is_some() {
        let mut bad = headers.clone();
        let other = era::encode_header_value(&format!("{name}x"));
        bad.insert(NAME_HEADER, HeaderValue::from_str(&other).unwrap());
        assert!(validate_modern(&bad, &m, header_version).is_err());
        bad.remove(NAME_HEADER);
        assert!(validate_modern(&bad, &m, header_version).is_err());
    }
}

fn any_headers(body: &str, version: Option<&[u8]>, method: Option<&[u8]>, name: Option<&[u8]>) {
    let Ok(m) = Message::parse(body) else { return };
    let j = json::parse(body).expect("a parsed message is JSON");
    let headers = header_map(&[
        (VERSION_HEADER, version),
        (METHOD_HEADER, method),
        (NAME_HEADER, name),
    ]);
    let header_version = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    assert_eq!(
        era::detect(&m, header_version),
        model_era(&j, header_version),
        "era of {body:?} with version {header_version:?}"
    );
    let Ok(version) = validate_modern(&headers, &m, header_version) else {
        return;
    };
    if m.kind() != Kind::Request {
        return;
    }
    // Validation passed: the headers say what the body says.
    let params = j.get("params");
    let declared = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
        .and_then(J::as_string);
    assert_eq!(declared.as_deref(), Some(version.as_str()), "{body:?}");
    assert_eq!(header_version, Some(version.as_str()));
    assert_eq!(version, era::LATEST);
    let decoded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(era::decode_header_value)
    };
    let method = j.get("method").and_then(J::as_string);
    assert_eq!(decoded(METHOD_HEADER), method, "{body:?}");
    if let Some(field) = method.as_deref().and_then(era::name_param) {
        let body_name = params.and_then(|p| p.get(field)).and_then(J::as_string);
        assert!(body_name.is_some(), "{body:?}");
        assert_eq!(decoded(NAME_HEADER), body_name, "{body:?}");
    }
}

fn encode(value: &str) {
    let encoded = era::encode_header_value(value);
    assert!(
        HeaderValue::from_str(&encoded).is_ok(),
        "{encoded:?} cannot be sent"
    );
    assert_eq!(era::decode_header_value(&encoded).as_deref(), Some(value));
}

fn guards(host: Option<&[u8]>, origin: Option<&[u8]>, auth: Option<&[u8]>, accept: Option<&[u8]>) {
    let headers = header_map(&[
        ("host", host),
        ("origin", origin),
        ("authorization", auth),
        ("accept", accept),
    ]);
    let _ = guard::Accept::from_headers(&headers);
    let _ = guard::is_json_content(&headers);

    let expected = "s3cret-token";
    if guard::bearer_matches(&headers, expected) {
        let value = headers["authorization"].to_str().unwrap();
        let (scheme, token) = value.split_once(' ').unwrap();
        assert!(scheme.eq_ignore_ascii_case("bearer") && token.trim() == expected);
    }

    let policy = OriginPolicy::for_listener(&"127.0.0.1:8000".parse().unwrap());
    let outcome = policy.check(&headers);
    let loopback = |name: &str| LOOPBACK_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(name));
    // What a browser sends: a Host that is exactly a URL's host[:port]
    // (DNS rebinding is a browser attack), and serialized origins.
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let Some((host, host_name)) = host.and_then(|h| {
        let u = url::Url::parse(&format!("http://{h}/")).ok()?;
        let name = u.host_str()?.to_owned();
        let authority = match u.port() {
            Some(p) => format!("{name}:{p}"),
            None => name.clone(),
        };
        authority.eq_ignore_ascii_case(h).then_some((h, name))
    }) else {
        return;
    };
    let origin = match headers.get("origin") {
        None => None,
        Some(o) => {
            let Some(o) = o.to_str().ok() else { return };
            let Ok(url) = url::Url::parse(o) else { return };
            if url.origin().ascii_serialization() != o {
                return;
            }
            Some((o.to_owned(), url.host_str().unwrap_or_default().to_owned()))
        }
    };
    let origin_ok = origin.as_ref().is_none_or(|(o, name)| {
        loopback(name)
            || o.split_once("://")
                .is_some_and(|(_, a)| a.eq_ignore_ascii_case(host))
    });
    assert_eq!(
        outcome.is_ok(),
        loopback(&host_name) && origin_ok,
        "host {host:?}, origin {origin:?}: {outcome:?}"
    );
}

fuzz_target!(|input: Input| match input {
    Input::RoundTrip {
        method,
        other_method,
        name,
        version,
        capabilities,
        arguments,
    } => {
        let method = if method as usize % (METHODS.len() + 1) == METHODS.len() {
            other_method.as_str()
        } else {
            hangar_fuzz::pick(METHODS, method)
        };
        round_trip(
            method,
            &name,
            hangar_fuzz::pick(VERSIONS, version),
            capabilities,
            &arguments,
        );
    }
    Input::Headers {
        body,
        version,
        method,
        name,
    } => any_headers(
        &body,
        version.as_deref(),
        method.as_deref(),
        name.as_deref()
    ),
    Input::Encode(value) => encode(&value),
    Input::Guard {
        host,
        origin,
        authorization,
        accept,
    } => guards(
        host.as_deref(),
        origin.as_deref(),
        authorization.as_deref(),
        accept.as_deref(),
    ),
});
