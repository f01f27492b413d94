//! What crosses from the client's request into the instance's, and back.
//!
//! To the instance: the method, the body and the client's headers minus its
//! credentials (`Authorization`, cookies: the router never forwards a
//! client's token), `Origin`, `Host`, hop-by-hop headers and any
//! `Hangar-Identity` the client made up; plus the instance's session id in
//! place of the client's. The router's verified identity goes with the
//! request as [`crate::instances::Live::send`] sees fit for the instance
//! (handed over in-process, or a signed assertion over HTTP).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mcp_transport::server::SESSION_HEADER;

/// Headers that describe one hop, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The request to the instance. `session` is the instance's session id
/// (the client's id is the router's, never the instance's).
pub fn request(
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
    session: Option<&str>,
) -> Result<http::Request<Bytes>, String> {
    let mut out = http::Request::builder()
        .method(method.clone())
        .uri("http://instance/mcp")
        .body(body)
        .map_err(|e| e.to_string())?;
    let h = out.headers_mut();
    for (name, value) in headers {
        if forwardable(name) {
            h.append(name.clone(), value.clone());
        }
    }
    if let Some(session) = session {
        h.insert(
            HeaderName::from_static(SESSION_HEADER),
            HeaderValue::from_str(session).map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

fn forwardable(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(HOP_BY_HOP.contains(&n)
        || n == "host"
        || n == "authorization"
        || n == "cookie"
        || n == "origin"
        || n == "content-length"
        || n == SESSION_HEADER
        || n == hangar_identity::HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_and_spoofed_assertions_never_reach_instances() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer client-secret".parse().unwrap());
        headers.insert("cookie", "sid=1".parse().unwrap());
        headers.insert(hangar_identity::HEADER, "forged".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        headers.insert("mcp-session-id", "the-routers-id".parse().unwrap());
        headers.insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
        let req = request(
            &Method::POST,
            &headers,
            Bytes::new(),
            Some("the-instances-id"),
        )
        .unwrap();
        let h = req.headers();
        assert!(h.get("authorization").is_none());
        assert!(h.get("cookie").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get(hangar_identity::HEADER).is_none());
        assert_eq!(h.get("mcp-protocol-version").unwrap(), "2025-06-18");
        assert_eq!(h.get_all("mcp-session-id").iter().count(), 1);
        assert_eq!(h.get("mcp-session-id").unwrap(), "the-instances-id");
    }
}
