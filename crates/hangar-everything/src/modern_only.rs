//! `--modern-only`: serve protocol 2026-07-28 and nothing older, the way a
//! server that never spoke the legacy era answers (so the shim's era bridge
//! and modern clients can be tested against one). In front of the shared
//! transport, which is dual-era:
//!
//! * a POST without `MCP-Protocol-Version` is 400 with -32020 (the header
//!   is required; a legacy `initialize` carries none);
//! * a POST naming a version older than the first modern one is 400 with
//!   -32022 (`data.supported`, `data.requested`);
//! * GET and DELETE (legacy streams and sessions) are 405.
//!
//! `server/discover` then lists only the modern versions
//! ([`crate::Everything::modern_only`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use mcp_transport::codes;
use mcp_transport::era;
use mcp_transport::server::{rpc_error, VERSION_HEADER};
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
    let version = req
        .headers()
        .get(VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    match version {
        None => rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            codes::HEADER_MISMATCH,
            &format!(
                "Missing MCP-Protocol-Version header (this server speaks only {})",
                versions().join(", ")
            ),
            None,
        ),
        Some(v) if !era::is_modern_version(&v) => rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            codes::UNSUPPORTED_PROTOCOL_VERSION,
            &format!("Unsupported protocol version: {v}"),
            Some(json!({"supported": versions(), "requested": v})),
        ),
        Some(_) => next.run(req).await,
    }
}
