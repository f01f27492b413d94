//! The router's HTTP face: `/mcp/{server}` and `/mcp`, the RFC 9728
//! metadata documents, health, readiness and metrics.
//!
//! A request to an MCP endpoint: Origin/Host check → bearer token →
//! session binding → the caller's instance (started on demand) → the request
//! goes to the instance over HTTP/1.1 with the client's credentials stripped
//! and the router's signed identity assertion added → the response streams
//! back unbuffered (SSE included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use futures_util::TryStreamExt;
use hangar_identity::{Identity, Signer};
use hangar_store::{AuditEntry, Store};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::server::{rpc_error, SESSION_HEADER};
use mcp_transport::{codes, Kind, Message};
use serde_json::json;

use crate::audit::AuditLog;
use crate::auth::{self, Authenticator, Principal};
use crate::config::{Access, Config, ServerConfig};
use crate::instances::{InstanceError, Instances};
use crate::metrics::Metrics;

/// Largest request body the router accepts (instances apply their own limit too).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest JSON answer the router reads to audit a tool call.
const MAX_AUDITED_ANSWER: usize = 4 * 1024 * 1024;

/// Everything a request handler needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    pub instances: Arc<Instances>,
    pub signer: Arc<Signer>,
    pub metrics: Arc<Metrics>,
    pub origins: OriginPolicy,
    audit: AuditLog,
    /// Legacy session id → the instance (and so the user) that created it.
    sessions: Mutex<HashMap<String, String>>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        auth: Arc<dyn Authenticator>,
        instances: Arc<Instances>,
        signer: Arc<Signer>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        let mut origins = OriginPolicy::for_listener(&config.listen);
        if let Some(host) = public_host(&config.public_url) {
            if !origins.allowed_hosts.is_empty() && !origins.allowed_hosts.contains(&host) {
                origins.allowed_hosts.push(host);
            }
        }
        origins.allowed_origins = config.allowed_origins.clone();
        origins.allowed_origins.push(config.public_url.clone());
        let audit = AuditLog::start(store.clone());
        AppState {
            config,
            store,
            auth,
            instances,
            signer,
            metrics,
            origins,
            sessions: Mutex::new(HashMap::new()),
            audit,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn public_host(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]"))?
    } else {
        authority.split(':').next()?.to_owned()
    };
    Some(host)
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mcp", any(default_server))
        .route("/mcp/{server}", any(named_server))
        .route(
            "/.well-known/oauth-protected-resource",
            get(root_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(root_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(resource_metadata),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_instances().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!("not ready: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

fn resource_url(config: &Config, server: &str) -> String {
    format!("{}/mcp/{server}", config.public_url)
}

fn metadata_url(config: &Config, server: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/{server}",
        config.public_url
    )
}

/// RFC 9728 protected-resource metadata for one server.
fn metadata_document(config: &Config, server: &str) -> Response {
    axum::Json(json!({
        "resource": resource_url(config, server),
        "authorization_servers": [config.public_url],
        "bearer_methods_supported": ["header"],
        "scopes_supported": server_scopes(config, server),
        "resource_name": format!("Hangar: {server}"),
    }))
    .into_response()
}

async fn resource_metadata(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
) -> Response {
    if !state.config.servers.contains_key(&server) {
        return (StatusCode::NOT_FOUND, "no such server\n").into_response();
    }
    metadata_document(&state.config, &server)
}

async fn root_resource_metadata(State(state): State<Arc<AppState>>) -> Response {
    metadata_document(&state.config, &state.config.default_server)
}

async fn default_server(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let name = state.config.default_server.clone();
    serve_mcp(state, name, req).await
}

async fn named_server(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
    req: Request<Body>,
) -> Response {
    serve_mcp(state, server, req).await
}

async fn serve_mcp(state: Arc<AppState>, name: String, req: Request<Body>) -> Response {
    let started = Instant::now();
    let response = match state.config.servers.get(&name) {
        Some(server) => proxy(&state, server, req).await,
        None => rpc_error(
            StatusCode::NOT_FOUND,
            None,
            codes::SERVER_ERROR,
            &format!("no MCP server named {name:?}"),
            None,
        ),
    };
    state
        .metrics
        .requests
        .with_label_values(&[name.as_str(), response.status().as_str()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[name.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The scopes a server's tokens can carry: `mcp` and its tools' extras.
fn server_scopes(config: &Config, server: &str) -> Vec<String> {
    let mut scopes = vec![hangar_auth::server::BASE_SCOPE.to_owned()];
    if let Some(s) = config.servers.get(server) {
        for scope in s.tool_scopes.values() {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
    }
    scopes
}

/// 401 with the challenge that points clients at the metadata (RFC 9728 §5.1).
fn unauthorized(config: &Config, server: &str, why: &str) -> Response {
    let error = if why.starts_with("invalid") {
        r#"error="invalid_token", "#
    } else {
        ""
    };
    challenge(
        StatusCode::UNAUTHORIZED,
        why,
        &format!(
            r#"Bearer {error}resource_metadata="{}", scope="{}""#,
            metadata_url(config, server),
            hangar_auth::server::BASE_SCOPE
        ),
    )
}

/// 403 `insufficient_scope` (RFC 6750 §3.1) naming every scope the call
/// needs, so that the client can ask the user for them (step-up).
fn insufficient_scope(
    config: &Config,
    server: &str,
    principal: &Principal,
    needed: &str,
) -> Response {
    let mut scopes: Vec<String> = principal.scopes.clone().unwrap_or_default();
    if !scopes.iter().any(|s| s == needed) {
        scopes.push(needed.to_owned());
    }
    challenge(
        StatusCode::FORBIDDEN,
        &format!("this call needs the scope {needed:?}"),
        &format!(
            r#"Bearer error="insufficient_scope", scope="{}", resource_metadata="{}", error_description="this call needs the scope {needed}""#,
            scopes.join(" "),
            metadata_url(config, server)
        ),
    )
}

fn challenge(status: StatusCode, why: &str, challenge: &str) -> Response {
    let mut resp = rpc_error(status, None, codes::SERVER_ERROR, why, None);
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The part of a request the router reads: enough to answer errors with the
/// right id and to audit tool calls.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub struct Peek {
    pub id: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
}

#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn peek(body: &[u8]) -> Peek {
    let message = std::str::from_utf8(body)
        .ok()
        .and_then(|t| Message::parse(t).ok());
    let Some(m) = message.filter(|m| m.kind() == Kind::Request) else {
        return Peek {
            id: None,
            method: None,
            tool: None,
        };
    };
    let tool = (m.method() == Some("tools/call"))
        .then(|| {
            m.params()
                .and_then(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        })
        .flatten();
    Peek {
        id: m.id_raw().map(str::to_owned),
        method: m.method().map(str::to_owned),
        tool,
    }
}

async fn proxy(state: &Arc<AppState>, server: &ServerConfig, req: Request<Body>) -> Response {
    if let Err(why) = state.origins.check(req.headers()) {
        return rpc_error(StatusCode::FORBIDDEN, None, codes::SERVER_ERROR, why, None);
    }
    let principal = match server.access {
        Access::Public => None,
        Access::Authenticated => {
            let Some(token) = auth::bearer(req.headers()) else {
                return unauthorized(&state.config, &server.name, "authorization required");
            };
            let audiences = crate::config::resource_urls(
                &state.config.public_url,
                &server.name,
                &state.config.default_server,
            );
            match state.auth.authenticate(token, &audiences).await {
                Ok(Some(p)) => Some(p),
                Ok(None) => {
                    return unauthorized(&state.config, &server.name, "invalid or expired token")
                }
                Err(e) => {
                    tracing::error!("token check failed: {e}");
                    return rpc_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        None,
                        codes::SERVER_ERROR,
                        "the token store is unavailable",
                        None,
                    );
                }
            }
        }
    };
    let instance_id = crate::instances::instance_id(server, principal.as_ref());
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        let owner = state.sessions().get(session).cloned();
        if owner.is_some_and(|owner| owner != instance_id) {
            // Another user's (or server's) session: as if it did not exist.
            return rpc_error(
                StatusCode::NOT_FOUND,
                None,
                codes::SERVER_ERROR,
                "Session not found",
                None,
            );
        }
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                codes::INVALID_REQUEST,
                &format!("the body exceeds {MAX_BODY} bytes"),
                None,
            )
        }
    };
    let peeked = if parts.method == Method::POST {
        peek(&body)
    } else {
        Peek {
            id: None,
            method: None,
            tool: None,
        }
    };
    if let Some(principal) = &principal {
        if !principal.has_scope(hangar_auth::server::BASE_SCOPE) {
            return insufficient_scope(
                &state.config,
                &server.name,
                principal,
                hangar_auth::server::BASE_SCOPE,
            );
        }
        let needed = peeked.tool.as_ref().and_then(|t| server.tool_scopes.get(t));
        if let Some(needed) = needed.filter(|n| !principal.has_scope(n)) {
            return insufficient_scope(&state.config, &server.name, principal, needed);
        }
    }
    let live = match state.instances.get(server, principal.as_ref()).await {
        Ok(live) => live,
        Err(InstanceError::Full(n)) => {
            let mut resp = rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                peeked.id.as_deref(),
                codes::SERVER_ERROR,
                &format!("all {n} instance slots are in use; try again shortly"),
                None,
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return resp;
        }
        Err(e) => {
            tracing::error!(server = %server.name, "instance unavailable: {e}");
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                peeked.id.as_deref(),
                codes::INTERNAL_ERROR,
                &e.to_string(),
                None,
            );
        }
    };
    let guard = live.enter();
    let identity = Identity {
        user: principal.as_ref().map(|p| p.user_id.clone()),
        user_name: principal.as_ref().map(|p| p.user_name.clone()),
        server: server.name.clone(),
        instance: live.id.clone(),
    };
    let upstream = match upstream_request(
        &parts.method,
        &parts.headers,
        body,
        &state.signer,
        &identity,
    ) {
        Ok(r) => r,
        Err(e) => {
            return rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                peeked.id.as_deref(),
                codes::INTERNAL_ERROR,
                &e,
                None,
            )
        }
    };
    let started = Instant::now();
    let response = match live.send(upstream).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(instance = %live.id, "instance did not answer: {e}");
            audit(state, &principal, server, &peeked, "error", started);
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                peeked.id.as_deref(),
                codes::INTERNAL_ERROR,
                "the MCP server instance stopped before answering; try again",
                None,
            );
        }
    };
    track_sessions(
        state,
        &parts.method,
        session.as_deref(),
        &peeked,
        &response,
        &instance_id,
    );
    let (mut head, incoming) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let is_json = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if peeked.tool.is_some() && is_json {
        // Read a tool call's JSON answer to audit its outcome.
        let bytes = match http_body_util::Limited::new(incoming, MAX_AUDITED_ANSWER)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        audit(
            state,
            &principal,
            server,
            &peeked,
            outcome_of(head.status, &bytes),
            started,
        );
        drop(guard);
        return Response::from_parts(head, Body::from(bytes));
    }
    if peeked.tool.is_some() {
        let outcome = if head.status.is_success() {
            "ok"
        } else {
            "error"
        };
        audit(state, &principal, server, &peeked, outcome, started);
    }
    // Stream the rest; the guard lives as long as the body, so an open SSE
    // stream keeps the instance from idling out.
    let stream = incoming.into_data_stream().map_ok(move |chunk| {
        let _ = &guard;
        chunk
    });
    Response::from_parts(head, Body::from_stream(stream))
}

fn outcome_of(status: StatusCode, body: &[u8]) -> &'static str {
    /// Only what the audit needs: serde skips everything else without
    /// building it (the answer can be large; this runs on every tool call).
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<serde::de::IgnoredAny>,
        result: Option<ToolResult>,
    }
    #[derive(serde::Deserialize)]
    struct ToolResult {
        #[serde(rename = "isError")]
        is_error: Option<bool>,
    }
    if !status.is_success() {
        return "error";
    }
    match serde_json::from_slice::<Answer>(body) {
        Err(_) => "ok",
        Ok(Answer { error: Some(_), .. }) => "error",
        Ok(Answer {
            result: Some(ToolResult {
                is_error: Some(true),
            }),
            ..
        }) => "tool_error",
        Ok(_) => "ok",
    }
}

fn audit(
    state: &Arc<AppState>,
    principal: &Option<Principal>,
    server: &ServerConfig,
    peeked: &Peek,
    outcome: &str,
    started: Instant,
) {
    let Some(tool) = peeked.tool.clone() else {
        return;
    };
    let entry = AuditEntry {
        at: hangar_store::now(),
        user_id: principal.as_ref().map(|p| p.user_id.clone()),
        server: server.name.clone(),
        tool,
        outcome: outcome.to_owned(),
        duration_ms: started.elapsed().as_millis() as i64,
    };
    state.audit.record(entry);
}

/// Binds a new legacy session to the instance that created it, and forgets
/// one that was deleted.
fn track_sessions(
    state: &AppState,
    method: &Method,
    session: Option<&str>,
    peeked: &Peek,
    response: &http::Response<hyper::body::Incoming>,
    instance_id: &str,
) {
    if peeked.method.as_deref() == Some("initialize") {
        if let Some(new) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            state
                .sessions()
                .insert(new.to_owned(), instance_id.to_owned());
        }
    }
    if *method == Method::DELETE && response.status().is_success() {
        if let Some(old) = session {
            state.sessions().remove(old);
        }
    }
}

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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The request to the instance: the client's credentials removed (the
/// router never forwards a client's token), the identity assertion added.
fn upstream_request(
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
    signer: &Signer,
    identity: &Identity,
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut out = http::Request::builder()
        .method(method.clone())
        .uri("http://instance/mcp")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let h = out.headers_mut();
    for (name, value) in headers {
        if forwardable(name) {
            h.append(name.clone(), value.clone());
        }
    }
    let assertion = signer.assertion(identity).map_err(|e| e.to_string())?;
    h.insert(
        HeaderName::from_static(hangar_identity::HEADER),
        HeaderValue::from_str(&assertion).map_err(|e| e.to_string())?,
    );
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
        || n == hangar_identity::HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_and_spoofed_assertions_never_reach_instances() {
        let signer = Signer::from_seed(&[1; 32]).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer client-secret".parse().unwrap());
        headers.insert("cookie", "sid=1".parse().unwrap());
        headers.insert(hangar_identity::HEADER, "forged".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        headers.insert("mcp-session-id", "abc".parse().unwrap());
        let identity = Identity {
            user: Some("u".into()),
            user_name: Some("alice".into()),
            server: "s".into(),
            instance: "i".into(),
        };
        let req =
            upstream_request(&Method::POST, &headers, Bytes::new(), &signer, &identity).unwrap();
        let h = req.headers();
        assert!(h.get("authorization").is_none());
        assert!(h.get("cookie").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h.get("mcp-session-id").unwrap(), "abc");
        let assertion = h.get(hangar_identity::HEADER).unwrap().to_str().unwrap();
        assert_ne!(assertion, "forged");
        let verifier = hangar_identity::Verifier::new(signer.public_key(), "i").unwrap();
        assert_eq!(verifier.verify(assertion).unwrap(), identity);
    }

    #[test]
    fn peeks_ids_and_tool_names() {
        let p =
            peek(br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo"}}"#);
        assert_eq!(
            (p.id.as_deref(), p.tool.as_deref()),
            (Some("\"x\""), Some("echo"))
        );
        let p = peek(b"not json");
        assert!(p.id.is_none() && p.tool.is_none());
    }

    #[test]
    fn public_host_of_urls() {
        assert_eq!(
            public_host("https://mcp.example.com/x").as_deref(),
            Some("mcp.example.com")
        );
        assert_eq!(
            public_host("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(public_host("http://[::1]:8080").as_deref(), Some("[::1]"));
    }

    #[test]
    fn audit_outcomes_from_answers() {
        let ok = StatusCode::OK;
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{}"}}],"isError":false}}}}"#,
            "x".repeat(10_000)
        );
        assert_eq!(outcome_of(ok, big.as_bytes()), "ok");
        let tool_error = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#;
        assert_eq!(outcome_of(ok, tool_error), "tool_error");
        let rpc_error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}"#;
        assert_eq!(outcome_of(ok, rpc_error), "error");
        assert_eq!(outcome_of(StatusCode::BAD_GATEWAY, b""), "error");
        assert_eq!(outcome_of(ok, b"not json"), "ok");
    }
}
