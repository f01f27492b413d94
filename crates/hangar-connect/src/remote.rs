//! Which transport reaches the server: Streamable HTTP (`mcp_transport`'s
//! client half) or the legacy HTTP+SSE transport ([`crate::sse`]), chosen
//! with `--transport` as in mcp-remote:
//!
//! * `http-first` (the default): the local client's `initialize` is POSTed
//!   (Streamable HTTP); if the server answers with an HTTP 4xx that is not
//!   about credentials (404, 405, …), it is a legacy server: the same
//!   `initialize` goes over HTTP+SSE instead (the MCP specification's
//!   backwards-compatibility procedure).
//! * `sse-first`: the reverse; the SSE GET refused with a 4xx, or answered
//!   with something that is not an event stream, means Streamable HTTP.
//! * `http-only`, `sse-only`: no fallback.
//!
//! The choice is made once, on the first `initialize`, and kept.

use std::sync::{Arc, Mutex};

use mcp_transport::client::{Authorizer, Client, ClientConfig, ClientError};
use mcp_transport::{Kind, Message};
use tokio::sync::mpsc;

use crate::sse::SseClient;

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    #[default]
    HttpFirst,
    SseFirst,
    HttpOnly,
    SseOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    Undecided,
    Http,
    Sse,
}

/// The remote server, over whichever transport it speaks.
pub struct Remote {
    mode: TransportMode,
    http: Arc<Client>,
    sse: SseClient,
    active: Mutex<Active>,
    probing: tokio::sync::Mutex<()>,
}

/// A Streamable HTTP answer that means "not a Streamable HTTP endpoint".
fn http_refused(e: &ClientError) -> bool {
    match e {
        ClientError::NotStreamableHttp { .. } => true,
        ClientError::Http { status, .. } => legacy_status(*status),
        _ => false,
    }
}

/// An SSE GET answer that means "not a legacy SSE endpoint".
fn sse_refused(e: &ClientError) -> bool {
    match e {
        ClientError::Http { status, .. } => legacy_status(*status),
        ClientError::ContentType(_) => true,
        _ => false,
    }
}

/// 4xx, except those about credentials, timing or rate.
fn legacy_status(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429)
}

impl Remote {
    pub fn new(
        config: ClientConfig,
        authorizer: Arc<dyn Authorizer>,
        incoming: mpsc::Sender<Message>,
        mode: TransportMode,
    ) -> Result<Remote, ClientError> {
        let http = Arc::new(Client::new(
            config.clone(),
            authorizer.clone(),
            incoming.clone(),
        )?);
        let sse = SseClient::new(config, authorizer, incoming, http.http_client().clone());
        let active = match mode {
            TransportMode::HttpOnly => Active::Http,
            TransportMode::SseOnly => Active::Sse,
            _ => Active::Undecided,
        };
        Ok(Remote {
            mode,
            http,
            sse,
            active: Mutex::new(active),
            probing: tokio::sync::Mutex::new(()),
        })
    }

    /// The Streamable HTTP client half.
    pub fn http(&self) -> &Arc<Client> {
        &self.http
    }

    /// Whether the legacy HTTP+SSE transport is in use.
    pub fn is_sse(&self) -> bool {
        self.active() == Active::Sse
    }

    fn active(&self) -> Active {
        *self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_active(&self, a: Active) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = a;
    }

    async fn send_on(&self, a: Active, message: Message) -> Result<(), ClientError> {
        match a {
            Active::Sse => self.sse.send(message).await,
            _ => self.http.send(message).await,
        }
    }

    /// Sends one message from the local client (see [`Client::send`]).
    pub async fn send(&self, message: Message) -> Result<(), ClientError> {
        let active = self.active();
        if active != Active::Undecided {
            return self.send_on(active, message).await;
        }
        let is_initialize =
            message.kind() == Kind::Request && message.method() == Some("initialize");
        let (first, second) = match self.mode {
            TransportMode::SseFirst => (Active::Sse, Active::Http),
            _ => (Active::Http, Active::Sse),
        };
        if !is_initialize {
            return self.send_on(first, message).await;
        }
        let _one = self.probing.lock().await;
        let active = self.active();
        if active != Active::Undecided {
            return self.send_on(active, message).await;
        }
        match self.send_on(first, message.clone()).await {
            Err(e)
                if (first == Active::Http && http_refused(&e))
                    || (first == Active::Sse && sse_refused(&e)) =>
            {
                tracing::info!(
                    "{e}; trying the {} transport",
                    if second == Active::Sse {
                        "legacy HTTP+SSE"
                    } else {
                        "Streamable HTTP"
                    }
                );
                self.set_active(second);
                self.send_on(second, message).await
            }
            Ok(()) => {
                self.set_active(first);
                Ok(())
            }
            // Unreachable, a failed sign-in, …: decide on the next initialize.
            Err(e) => Err(e),
        }
    }

    /// Ends the session on whichever transport carries it.
    pub async fn close(&self) {
        match self.active() {
            Active::Sse => self.sse.close().await,
            Active::Http => self.http.close().await,
            Active::Undecided => {
                self.sse.close().await;
                self.http.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_failures_fall_back() {
        let http = |status| ClientError::Http {
            status,
            detail: String::new(),
        };
        assert!(http_refused(&ClientError::NotStreamableHttp {
            url: "x".into(),
            status: 405
        }));
        for s in [400, 404, 405, 406, 415] {
            assert!(http_refused(&http(s)), "{s}");
            assert!(sse_refused(&http(s)), "{s}");
        }
        for s in [401, 403, 408, 429, 500, 502] {
            assert!(!http_refused(&http(s)), "{s}");
            assert!(!sse_refused(&http(s)), "{s}");
        }
        assert!(!http_refused(&ClientError::Connect {
            url: "x".into(),
            reason: "refused".into()
        }));
        assert!(sse_refused(&ClientError::ContentType(
            "application/json".into()
        )));
    }
}
