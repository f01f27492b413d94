//! `--modern-only`: serve protocol 2026-07-28 and nothing older, the way a
//! server that never spoke the legacy era answers (so the shim's era bridge
//! and modern clients can be tested against one). In front of the shared
//! transport, which is dual-era:
//!
//! * a POST without `MCP-Protocol-Version` is 400 with -32020 (the header
//!   is required; a legacy `initialize` carries none);
//! * a request naming a version we do not speak is 400 with -32022 naming
//!   only the modern versions (`data.supported`, `data.requested`), after the
//!   checks the transport makes first (required `_meta`: -32602; header =
//!   `_meta`: -32020);
//! * GET and DELETE (legacy streams and sessions) are 405.
//!
//! `server/discover` then lists only the modern versions
//! ([`crate::Everything::modern_only`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use mcp_transport::era;
use mcp_transport::server::{rpc_error, VERSION_HEADER};
use mcp_transport::{codes, Kind, Limits, Message};
use serde_json::json;

/// The versions a modern-only server speaks, newest first.
pub fn versions() -> Vec<&'static str> {
    era::MODERN_VERSIONS.iter().rev().copied().collect()
}

/// An axum middleware (`axum::middleware::from_fn(refuse_legacy)`).
pub async fn refuse_legacy(req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::DELETE {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "POST")
            .body(Body::empty())
            .unwrap_or_default();
    }
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(version) = req
        .headers()
        .get(VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("").to_owned())
    else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            codes::HEADER_MISMATCH,
            &format!(
                "Missing MCP-Protocol-Version header (this server speaks only {})",
                versions().join(", ")
            ),
            None,
        );
    };
    if era::MODERN_VERSIONS.contains(&version.as_str()) {
        return next.run(req).await;
    }
    // A version we do not speak: the checks in the order the transport
    // makes them (required _meta, header = _meta), then -32022 naming only
    // the modern versions.
    let (parts, body) = req.into_parts();
    let limit = Limits::default().max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            codes::INVALID_REQUEST,
            &format!("Payload Too Large: the body exceeds {limit} bytes"),
            None,
        );
    };
    let message = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| Message::parse(t).ok());
    if let Some(m) = message.filter(|m| m.kind() == Kind::Request) {
        let id = m.id_raw();
        match era::declared_version(&m) {
            Err(f) => return rpc_error(StatusCode::BAD_REQUEST, id, f.code, &f.message, f.data),
            Ok(declared) if declared != version => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    codes::HEADER_MISMATCH,
                    &format!(
                        "Header mismatch: MCP-Protocol-Version {version:?} does not match _meta protocolVersion {declared:?}"
                    ),
                    None,
                )
            }
            Ok(_) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    codes::UNSUPPORTED_PROTOCOL_VERSION,
                    &format!("Unsupported protocol version: {version}"),
                    Some(json!({"supported": versions(), "requested": version})),
                )
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
