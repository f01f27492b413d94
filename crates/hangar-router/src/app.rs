//! The router's HTTP face: `/mcp/{server}` and `/mcp`, the RFC 9728
//! metadata documents, health, readiness and metrics.
//!
//! A request to an MCP endpoint goes through the proxy pipeline
//! ([`crate::proxy`]); this module holds the routes around it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hangar_store::Store;
use http::{header, HeaderValue, Request, StatusCode};
use mcp_transport::codes;
use mcp_transport::guard::OriginPolicy;
use mcp_transport::server::rpc_error;
use serde_json::json;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::instances::Instances;
use crate::metrics::Metrics;
use crate::sessions::{SessionLimits, Sessions};

/// Everything a request handler needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    pub instances: Arc<Instances>,
    pub metrics: Arc<Metrics>,
    pub origins: OriginPolicy,
    pub(crate) audit: AuditLog,
    /// The legacy sessions of this router's clients.
    pub sessions: Arc<Sessions>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        auth: Arc<dyn Authenticator>,
        instances: Arc<Instances>,
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
            metrics,
            origins,
            sessions: Sessions::start(SessionLimits::default()),
            audit,
        }
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

pub(crate) fn metadata_url(config: &Config, server: &str) -> String {
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
    let (label, response) = match state.config.servers.get(&name) {
        Some(server) => (
            name.as_str(),
            crate::proxy::serve(&state, server, req).await,
        ),
        // Unknown names share one label: a client must not be able to grow
        // the metrics (one series per name it makes up).
        None => (
            crate::metrics::UNKNOWN_SERVER,
            rpc_error(
                StatusCode::NOT_FOUND,
                None,
                codes::SERVER_ERROR,
                "no such MCP server",
                None,
            ),
        ),
    };
    state
        .metrics
        .requests
        .with_label_values(&[label, response.status().as_str()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[label])
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
