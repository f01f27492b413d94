//! Every way the proxy refuses or fails a request, and the one place where
//! each becomes a response.
//!
//! What a client reads names the server and says what went wrong in words;
//! details (host paths, exit statuses, error chains) go to the log where the
//! error is made, never into these messages.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use mcp_transport::codes;
use mcp_transport::server::rpc_error;

/// Why a request ended before (or instead of) the instance's answer.
#[derive(Debug)]
pub enum ProxyError {
    /// Origin or Host not allowed (DNS rebinding protection).
    Origin(&'static str),
    /// No token, or not a valid one for this server: RFC 9728 challenge.
    Unauthorized {
        why: &'static str,
        invalid_token: bool,
        metadata_url: String,
    },
    /// The token lacks a scope this call needs (RFC 6750 §3.1, step-up).
    InsufficientScope {
        needed: String,
        /// What to ask for: the token's scopes plus `needed`.
        scopes: Vec<String>,
        metadata_url: String,
    },
    /// The token could not be checked.
    TokenStoreUnavailable,
    BodyTooLarge(usize),
    /// Unknown, ended, expired or another user's session.
    SessionNotFound,
    /// `max_instances` reached.
    Full(usize),
    /// The server's instance could not be started; `reason` is for people.
    Unavailable {
        server: String,
        reason: String,
    },
    /// The instance went away before it answered.
    Stopped {
        server: String,
    },
}

/// A [`ProxyError`] and the JSON-RPC id of the request it answers.
#[derive(Debug)]
pub struct Rejection {
    pub error: ProxyError,
    pub id: Option<String>,
}

impl From<ProxyError> for Rejection {
    fn from(error: ProxyError) -> Rejection {
        Rejection { error, id: None }
    }
}

impl ProxyError {
    /// This error, answering the request with JSON-RPC id `id`.
    pub fn answering(self, id: Option<&str>) -> Rejection {
        Rejection {
            error: self,
            id: id.map(str::to_owned),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let id = self.id.as_deref();
        match self.error {
            ProxyError::Origin(why) => {
                rpc_error(StatusCode::FORBIDDEN, None, codes::SERVER_ERROR, why, None)
            }
            ProxyError::Unauthorized {
                why,
                invalid_token,
                metadata_url,
            } => {
                let error = if invalid_token {
                    r#"error="invalid_token", "#
                } else {
                    ""
                };
                challenge(
                    StatusCode::UNAUTHORIZED,
                    why,
                    &format!(
                        r#"Bearer {error}resource_metadata="{metadata_url}", scope="{}""#,
                        hangar_auth::server::BASE_SCOPE
                    ),
                )
            }
            ProxyError::InsufficientScope {
                needed,
                scopes,
                metadata_url,
            } => challenge(
                StatusCode::FORBIDDEN,
                &format!("this call needs the scope {needed:?}"),
                &format!(
                    r#"Bearer error="insufficient_scope", scope="{}", resource_metadata="{metadata_url}", error_description="this call needs the scope {needed}""#,
                    scopes.join(" "),
                ),
            ),
            ProxyError::TokenStoreUnavailable => rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                codes::SERVER_ERROR,
                "the token store is unavailable",
                None,
            ),
            ProxyError::BodyTooLarge(max) => rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                codes::INVALID_REQUEST,
                &format!("the body exceeds {max} bytes"),
                None,
            ),
            ProxyError::SessionNotFound => rpc_error(
                StatusCode::NOT_FOUND,
                id,
                codes::SERVER_ERROR,
                "Session not found",
                None,
            ),
            ProxyError::Full(n) => {
                let mut resp = rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    codes::SERVER_ERROR,
                    &format!("all {n} instance slots are in use; try again shortly"),
                    None,
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                resp
            }
            ProxyError::Unavailable { server, reason } => rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                codes::INTERNAL_ERROR,
                &format!("the MCP server {server:?} is unavailable: {reason}"),
                None,
            ),
            ProxyError::Stopped { server } => rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                codes::INTERNAL_ERROR,
                &format!(
                    "the MCP server {server:?} stopped before answering; try again (it restarts on the next request)"
                ),
                None,
            ),
        }
    }
}

fn challenge(status: StatusCode, why: &str, challenge: &str) -> Response {
    let mut resp = rpc_error(status, None, codes::SERVER_ERROR, why, None);
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// What a client may read about a backend that failed to start an instance.
pub fn unavailable_reason(e: &hangar_machines::BackendError) -> String {
    use hangar_machines::BackendError as E;
    match e {
        E::SandboxUnavailable(_) => "instances must run sandboxed, and the sandbox (bubblewrap) \
             is not available on the router's machine; an operator can install bubblewrap \
             (e.g. apt-get install bubblewrap) or set sandbox = \"off\" in the configuration"
            .to_owned(),
        E::NotReady(_) => "its process exited or did not become ready".to_owned(),
        E::Start(_) => "its process could not be started".to_owned(),
    }
}
