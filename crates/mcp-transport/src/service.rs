//! The seam between the HTTP transport and whatever answers MCP messages.
//!
//! The transport owns HTTP: sessions, streams, event ids, replay, limits. A
//! [`Service`] owns MCP semantics: `hangar-everything` answers in process,
//! `hangar-wrap` forwards to a stdio child. Both see the same small interface:
//! a request goes in and its response comes back, while messages that belong
//! to that request (progress, logs, server→client requests) are sent on the
//! request's [`EventSender`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::message::Message;

/// Messages a server sends that belong to one client request. When the
/// transport sees one before the response it answers with an SSE stream.
pub type EventSender = mpsc::Sender<Message>;

/// Messages a server sends outside any request (list changes, resource
/// updates). In the legacy era they go to the session's GET stream.
pub type UnsolicitedSender = mpsc::Sender<Message>;

/// Who is calling and over which request; extended by the router.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The negotiated (legacy) or declared (modern) protocol version.
    pub protocol_version: Option<String>,
}

/// One logical connection to an MCP server: a legacy session, or the shared
/// context in which modern (stateless) requests run.
#[async_trait]
pub trait Session: Send + Sync {
    /// Sends a client request and resolves to its response (a result or an
    /// error, always with the request's id). Dropping the future cancels the
    /// request upstream.
    async fn request(&self, request: Message, events: EventSender) -> Message;
    /// Delivers a client notification.
    async fn notify(&self, notification: Message);
    /// Delivers the client's answer to a server→client request.
    async fn respond(&self, response: Message);
    /// Ends the session; called once, when it is deleted, idles out or the server stops.
    async fn close(&self);
    /// False once the server behind the session is gone for good (its process
    /// exited); the transport then ends the session so the client starts anew.
    fn is_alive(&self) -> bool {
        true
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the MCP server could not be started: {0}")]
    Unavailable(String),
}

/// A source of sessions: what a Streamable HTTP endpoint serves.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Opens a legacy session; called for each `initialize`. Messages not tied
    /// to a request go to `unsolicited`.
    async fn open_session(
        &self,
        ctx: &RequestContext,
        unsolicited: UnsolicitedSender,
    ) -> Result<Arc<dyn Session>, OpenError>;

    /// The session that answers modern (stateless) requests.
    async fn stateless(&self, ctx: &RequestContext) -> Result<Arc<dyn Session>, OpenError>;

    /// Ends everything (children, tasks); called once at shutdown.
    async fn shutdown(&self) {}
}
