//! The Streamable HTTP server half, dual-era on one endpoint.
//!
//! Request flow for a POST: guard (Host/Origin, bearer token, content type,
//! Accept, body size) → parse the envelope → decide the era → legacy: find or
//! open the session; modern: validate the `Mcp-*` headers against the body →
//! hand the message to the [`Service`]'s session → answer with JSON, or switch
//! to SSE as soon as the server sends a message that belongs to the request.
//!
//! Legacy requests run in their own task so a dropped connection does not
//! cancel them (the spec says disconnection is not cancellation); their SSE
//! events are kept for replay. Modern requests are cancelled when the client
//! closes the stream, as the 2026-07-28 transport requires.

// The `Err` of the checks below is the HTTP refusal itself (`Result<_, Response>`,
// the usual axum shape); it is built once on a path that ends the request, so
// boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use rand::Rng;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

use crate::era::{self, meta, Era};
use crate::guard::{self, Accept, OriginPolicy};
use crate::message::{codes, Kind, Message};
use crate::service::{RequestContext, Service, Session};
use crate::stream::{self, SseBody, Streams, STANDALONE};

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
const LAST_EVENT_ID: &str = "last-event-id";

/// Bounds on what one endpoint will hold. Every one has a test.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_sessions: usize,
    pub max_pending_per_session: usize,
    pub session_idle_timeout: Duration,
    /// Events kept per SSE stream for `Last-Event-ID` replay.
    pub replay_events_per_stream: usize,
    /// Finished request streams kept per session for replay.
    pub finished_streams_per_session: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_sessions: 1024,
            max_pending_per_session: 128,
            session_idle_timeout: Duration::from_secs(30 * 60),
            replay_events_per_stream: 256,
            finished_streams_per_session: 32,
        }
    }
}

/// The `_meta` key under which a verified caller identity reaches the server.
pub const IDENTITY_META: &str = "dev.hangar/identity";

/// Verifies who is calling before a request reaches MCP (the router's signed
/// identity assertion). `Ok(Some(json))` is the caller's identity, injected
/// into each request's `_meta` when [`ServerConfig::inject_identity`] is set.
pub trait CallerCheck: Send + Sync + std::fmt::Debug {
    fn check(&self, headers: &HeaderMap) -> Result<Option<String>, String>;
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub origins: OriginPolicy,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    pub limits: Limits,
    /// Sent in the SSE `retry` field.
    pub sse_retry_ms: u64,
    pub keep_alive: Duration,
    pub caller_check: Option<Arc<dyn CallerCheck>>,
    /// Put the verified identity in `params._meta["dev.hangar/identity"]` of
    /// every request (shared, multi-tenant servers), overwriting any a client sent.
    pub inject_identity: bool,
}

impl ServerConfig {
    pub fn new(origins: OriginPolicy) -> ServerConfig {
        ServerConfig {
            origins,
            auth_token: None,
            limits: Limits::default(),
            sse_retry_ms: 1000,
            keep_alive: Duration::from_secs(15),
            caller_check: None,
            inject_identity: false,
        }
    }
}

/// One legacy session held by the transport.
struct SessionEntry {
    session: Arc<dyn Session>,
    streams: Mutex<Streams>,
    pending: AtomicUsize,
    /// In-flight requests by raw id, so `notifications/cancelled` can stop them.
    inflight: Mutex<HashMap<String, AbortHandle>>,
    last_active: Mutex<Instant>,
    closed: AtomicBool,
}

impl SessionEntry {
    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    fn idle_since(&self) -> Duration {
        self.last_active
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A poisoned lock only means another request panicked mid-update; the
        // stream table is still structurally sound, so keep serving.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    config: ServerConfig,
    service: Arc<dyn Service>,
    sessions: RwLock<HashMap<Arc<str>, Arc<SessionEntry>>>,
    draining: AtomicBool,
    /// Requests being answered right now, for the shutdown drain.
    busy: Arc<Busy>,
}

/// A Streamable HTTP endpoint serving one [`Service`].
#[derive(Clone)]
pub struct StreamableHttp {
    inner: Arc<Inner>,
}

impl StreamableHttp {
    /// Creates the endpoint and starts its idle-session reaper.
    pub fn new(service: Arc<dyn Service>, config: ServerConfig) -> StreamableHttp {
        let inner = Arc::new(Inner {
            config,
            service,
            sessions: RwLock::new(HashMap::new()),
            draining: AtomicBool::new(false),
            busy: Arc::default(),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let period = Duration::from_secs(1);
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.reap_idle_sessions().await;
            }
        });
        StreamableHttp { inner }
    }

    /// An axum router serving the endpoint at `path`.
    pub fn router(&self, path: &str) -> axum::Router {
        let this = self.clone();
        axum::Router::new().route(
            path,
            axum::routing::any(move |req: Request<Body>| {
                let this = this.clone();
                async move { this.handle(req).await }
            }),
        )
    }

    /// Answers one HTTP request to the MCP endpoint.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let identity = match self.inner.guard(req.headers()) {
            Ok(identity) => identity,
            Err(resp) => return resp,
        };
        self.dispatch(req, identity).await
    }

    /// Answers a request that the process embedding this endpoint has
    /// already admitted: the router serving a local instance in-process
    /// checked Host/Origin and the caller's token itself, so none of that
    /// happens here. `caller` is the verified identity (JSON), injected into
    /// `_meta` when [`ServerConfig::inject_identity`] is set, as an identity
    /// from a [`CallerCheck`] would be. Nothing outside the process can reach
    /// this: it is a function call, not a listener.
    pub async fn handle_admitted(&self, req: Request<Body>, caller: Option<String>) -> Response {
        let identity = caller.filter(|_| self.inner.config.inject_identity);
        self.dispatch(req, identity).await
    }

    async fn dispatch(&self, req: Request<Body>, identity: Option<String>) -> Response {
        let inner = &self.inner;
        match *req.method() {
            Method::POST => {
                let _busy = inner.busy.enter();
                inner.post(req, identity).await
            }
            Method::GET => inner.get(req.headers()),
            Method::DELETE => inner.delete(req.headers()).await,
            _ => {
                let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                resp
            }
        }
    }

    /// Number of open legacy sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Stops taking new work, ends standalone streams, waits up to `grace` for
    /// in-flight requests, then closes every session and the service.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        for entry in inner.all_sessions() {
            // Only the GET streams: a request's stream must stay attached so
            // its response, which the drain below waits for, reaches the client.
            entry
                .streams()
                .detach(STANDALONE, inner.config.sse_retry_ms);
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Register for the wake-up before reading the count: `notify_waiters`
            // wakes only registered waiters, so a request ending in between
            // would otherwise leave us waiting out the whole grace period.
            let idle = inner.busy.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner.busy.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(
                    requests = inner.busy.count.load(Ordering::SeqCst),
                    "grace period over; abandoning in-flight requests"
                );
                break;
            }
        }
        let entries: Vec<_> = match inner.sessions.write() {
            Ok(mut s) => s.drain().map(|(_, e)| e).collect(),
            Err(_) => Vec::new(),
        };
        for entry in entries {
            inner.close_entry(&entry).await;
        }
        inner.service.shutdown().await;
    }
}

/// The count of requests in flight, for the shutdown drain. Shared so that
/// the task feeding an SSE response can keep its request counted after the
/// handler has returned the response's headers.
#[derive(Default)]
struct Busy {
    count: AtomicUsize,
    idle: Notify,
}

impl Busy {
    fn enter(self: &Arc<Busy>) -> BusyGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }
}

/// Counts a request as in flight while it lives.
struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Decrements a session's pending count and forgets the request when it ends.
struct PendingGuard {
    entry: Arc<SessionEntry>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.entry.pending.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut inflight) = self.entry.inflight.lock() {
            inflight.remove(&self.id);
        }
        self.entry.touch();
    }
}

/// Aborts a task when dropped: ties a modern request's work to its HTTP body.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Inner {
    /// Host/Origin, bearer token and caller checks; returns the caller's
    /// identity to inject, if any.
    fn guard(&self, headers: &HeaderMap) -> Result<Option<String>, Response> {
        if let Err(why) = self.config.origins.check(headers) {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                None,
                codes::SERVER_ERROR,
                why,
                None,
            ));
        }
        if let Some(token) = &self.config.auth_token {
            if !guard::bearer_matches(headers, token) {
                let mut resp = rpc_error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    codes::SERVER_ERROR,
                    "missing or invalid bearer token",
                    None,
                );
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(resp);
            }
        }
        let Some(check) = &self.config.caller_check else {
            return Ok(None);
        };
        match check.check(headers) {
            Ok(identity) => Ok(identity.filter(|_| self.config.inject_identity)),
            Err(why) => {
                tracing::warn!("refused a request without a valid caller assertion: {why}");
                Err(rpc_error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    codes::SERVER_ERROR,
                    "caller assertion missing or invalid",
                    None,
                ))
            }
        }
    }

    fn all_sessions(&self) -> Vec<Arc<SessionEntry>> {
        self.sessions
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    fn lookup(&self, headers: &HeaderMap) -> Result<(Arc<str>, Arc<SessionEntry>), Response> {
        let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                codes::SERVER_ERROR,
                "Bad Request: Mcp-Session-Id header is required",
                None,
            ));
        };
        let found = self
            .sessions
            .read()
            .ok()
            .and_then(|s| s.get_key_value(id).map(|(k, v)| (k.clone(), v.clone())));
        match found {
            Some((key, entry)) if entry.session.is_alive() => Ok((key, entry)),
            Some((key, _)) => {
                // The server behind it is gone: end the session so the client starts anew.
                self.remove_session(&key);
                Err(session_not_found())
            }
            None => Err(session_not_found()),
        }
    }

    fn remove_session(&self, id: &str) -> Option<Arc<SessionEntry>> {
        let entry = self.sessions.write().ok()?.remove(id)?;
        let entry2 = entry.clone();
        let inner_close = async move {
            if !entry2.closed.swap(true, Ordering::SeqCst) {
                entry2.session.close().await;
            }
        };
        tokio::spawn(inner_close);
        Some(entry)
    }

    async fn close_entry(&self, entry: &SessionEntry) {
        if !entry.closed.swap(true, Ordering::SeqCst) {
            entry.streams().detach_all(self.config.sse_retry_ms);
            entry.session.close().await;
        }
    }

    async fn reap_idle_sessions(&self) {
        let timeout = self.config.limits.session_idle_timeout;
        let idle: Vec<Arc<str>> = match self.sessions.read() {
            Ok(s) => s
                .iter()
                .filter(|(_, e)| {
                    e.pending.load(Ordering::SeqCst) == 0
                        && !e.streams().any_live()
                        && e.idle_since() >= timeout
                })
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => return,
        };
        for id in idle {
            tracing::debug!(session = %id, "session idle; closing");
            self.remove_session(&id);
        }
    }

    fn version_header<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Response> {
        match headers.get(VERSION_HEADER) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    codes::SERVER_ERROR,
                    "Bad Request: MCP-Protocol-Version is not valid",
                    None,
                )
            }),
        }
    }

    async fn post(self: &Inner, req: Request<Body>, identity: Option<String>) -> Response {
        if self.draining.load(Ordering::SeqCst) {
            return unavailable("server is shutting down", 1);
        }
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        if !guard::is_json_content(headers) {
            return rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                codes::INVALID_REQUEST,
                "Unsupported Media Type: Content-Type must be application/json",
                None,
            );
        }
        let accept = Accept::from_headers(headers);
        if !accept.json && !accept.sse {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                None,
                codes::INVALID_REQUEST,
                "Not Acceptable: Accept must include application/json and text/event-stream",
                None,
            );
        }
        let mut message = match parts.extensions.get::<Parsed>() {
            Some(Parsed(message)) => message.clone(),
            None => match read_message(body, self.config.limits.max_body_bytes).await {
                Ok(message) => message,
                Err(refused) => return refused,
            },
        };
        if let Some(identity) = identity.filter(|_| message.kind() != Kind::Response) {
            message = match message.with_meta_entry(IDENTITY_META, &identity) {
                Ok(m) => m,
                Err(why) => {
                    return rpc_error(
                        StatusCode::BAD_REQUEST,
                        message.id_raw(),
                        codes::INVALID_PARAMS,
                        &format!("Invalid params: {why}"),
                        None,
                    )
                }
            };
        }
        let version = match self.version_header(headers) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        match era::detect(&message, version) {
            Era::Legacy => self.post_legacy(headers, message, version, accept).await,
            Era::Modern => self.post_modern(headers, message, version, accept).await,
        }
    }

    async fn post_legacy(
        &self,
        headers: &HeaderMap,
        message: Message,
        version: Option<&str>,
        accept: Accept,
    ) -> Response {
        if let Some(v) = version {
            if !era::LEGACY_VERSIONS.contains(&v) {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    message.id_raw(),
                    codes::SERVER_ERROR,
                    &format!(
                        "Bad Request: unsupported MCP-Protocol-Version: {v} (supported: {})",
                        era::LEGACY_VERSIONS.join(", ")
                    ),
                    None,
                );
            }
        }
        if message.kind() == Kind::Request && message.method() == Some("initialize") {
            return self.initialize(message).await;
        }
        let (_, entry) = match self.lookup(headers) {
            Ok(found) => found,
            Err(resp) => return resp,
        };
        entry.touch();
        match message.kind() {
            Kind::Notification => {
                if message.method() == Some("notifications/cancelled") {
                    cancel_inflight(&entry, &message);
                }
                entry.session.notify(message).await;
                accepted()
            }
            Kind::Response => {
                entry.session.respond(message).await;
                accepted()
            }
            Kind::Request => self.answer_legacy(entry, message, accept).await,
        }
    }

    async fn initialize(&self, message: Message) -> Response {
        let full = self
            .sessions
            .read()
            .map(|s| s.len() >= self.config.limits.max_sessions)
            .unwrap_or(true);
        if full {
            return unavailable("too many sessions; try again later", 5);
        }
        let requested = message.params().and_then(|p| {
            p.get("protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let ctx = RequestContext {
            protocol_version: requested,
        };
        let (unsolicited_tx, mut unsolicited_rx) = mpsc::channel::<Message>(256);
        let session = match self.service.open_session(&ctx, unsolicited_tx).await {
            Ok(s) => s,
            Err(e) => return server_unavailable(&message, &e),
        };
        // Messages sent during the handshake have no stream to go to yet.
        let (events_tx, _events_rx) = mpsc::channel(16);
        let response = session.request(message, events_tx).await;
        if response.is_error() {
            session.close().await;
            return json_response(StatusCode::OK, response.to_bytes());
        }
        let entry = Arc::new(SessionEntry {
            session,
            streams: Mutex::new(Streams::new(
                self.config.limits.replay_events_per_stream,
                self.config.limits.finished_streams_per_session,
            )),
            pending: AtomicUsize::new(0),
            inflight: Mutex::new(HashMap::new()),
            last_active: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
        });
        let id: Arc<str> = new_session_id().into();
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.insert(id.clone(), entry.clone());
        }
        let weak = Arc::downgrade(&entry);
        tokio::spawn(async move {
            while let Some(msg) = unsolicited_rx.recv().await {
                let Some(entry) = weak.upgrade() else { return };
                entry.streams().push(STANDALONE, msg.as_str());
            }
        });
        let mut resp = json_response(StatusCode::OK, response.to_bytes());
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
        resp
    }

    async fn answer_legacy(
        &self,
        entry: Arc<SessionEntry>,
        message: Message,
        accept: Accept,
    ) -> Response {
        let id = message.id_raw().unwrap_or("null").to_owned();
        let pending = entry.pending.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = PendingGuard {
            entry: entry.clone(),
            id: id.clone(),
        };
        if pending > self.config.limits.max_pending_per_session {
            drop(guard);
            return rpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(&id),
                codes::SERVER_ERROR,
                "Too Many Requests: this session has too many requests in flight",
                None,
            );
        }
        let (events_tx, mut events_rx) = mpsc::channel::<Message>(64);
        let (response_tx, mut response_rx) = oneshot::channel::<Message>();
        let session = entry.session.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let response = session.request(message, events_tx).await;
            let _ = response_tx.send(response);
        });
        if let Ok(mut inflight) = entry.inflight.lock() {
            inflight.insert(id.clone(), task.abort_handle());
        }

        match race(accept, &mut events_rx, &mut response_rx).await {
            Outcome::Json(response) => json_response(StatusCode::OK, response.to_bytes()),
            Outcome::Cancelled => cancelled_response(&id),
            Outcome::Stream { first, ready } => {
                self.stream_legacy(entry, first, events_rx, ready, response_rx)
            }
        }
    }

    /// Answers with a resumable SSE stream fed by a task that outlives the HTTP body.
    fn stream_legacy(
        &self,
        entry: Arc<SessionEntry>,
        first_event: Option<Message>,
        mut events_rx: mpsc::Receiver<Message>,
        ready_response: Option<Message>,
        response_rx: oneshot::Receiver<Message>,
    ) -> Response {
        let (stream_id, live_rx) = entry.streams().open(self.config.sse_retry_ms);
        if let Some(ev) = &first_event {
            entry.streams().push(stream_id, ev.as_str());
        }
        // The request is in flight until its response is on the stream, not
        // merely until the headers are sent: the shutdown drain waits for it.
        let busy = self.busy.enter();
        tokio::spawn(async move {
            let _busy = busy;
            let response = match ready_response {
                Some(r) => Some(r),
                None => {
                    let mut response_rx = response_rx;
                    loop {
                        tokio::select! {
                            biased;
                            Some(ev) = events_rx.recv() => entry.streams().push(stream_id, ev.as_str()),
                            r = &mut response_rx => break r.ok(),
                        }
                    }
                }
            };
            let mut streams = entry.streams();
            while let Ok(ev) = events_rx.try_recv() {
                streams.push(stream_id, ev.as_str());
            }
            if let Some(r) = response {
                streams.push(stream_id, r.as_str());
            }
            streams.finish(stream_id);
        });
        sse_response(SseBody::new(live_rx, self.config.keep_alive))
    }

    fn get(&self, headers: &HeaderMap) -> Response {
        if !Accept::from_headers(headers).sse {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                None,
                codes::INVALID_REQUEST,
                "Not Acceptable: Accept must include text/event-stream",
                None,
            );
        }
        if let Ok(Some(v)) = self.version_header(headers) {
            if era::is_modern_version(v) {
                return plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "GET is not part of the 2026-07-28 transport; use subscriptions/listen\n",
                );
            }
        }
        let (_, entry) = match self.lookup(headers) {
            Ok(found) => found,
            Err(resp) => return resp,
        };
        entry.touch();
        let retry = self.config.sse_retry_ms;
        let resumed = headers
            .get(LAST_EVENT_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(stream::parse_event_id)
            .and_then(|(stream, seq)| entry.streams().resume(stream, Some(seq), retry));
        let rx = match resumed {
            Some(rx) => rx,
            None => match entry.streams().resume(STANDALONE, None, retry) {
                Some(rx) => rx,
                None => return session_not_found(),
            },
        };
        sse_response(SseBody::new(rx, self.config.keep_alive))
    }

    async fn delete(&self, headers: &HeaderMap) -> Response {
        let (id, _) = match self.lookup(headers) {
            Ok(found) => found,
            Err(resp) => return resp,
        };
        if let Some(entry) = self.remove_session(&id) {
            entry.streams().detach_all(self.config.sse_retry_ms);
        }
        plain(StatusCode::OK, "")
    }

    async fn post_modern(
        &self,
        headers: &HeaderMap,
        message: Message,
        version: Option<&str>,
        accept: Accept,
    ) -> Response {
        if message.kind() == Kind::Response {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                codes::INVALID_REQUEST,
                "Bad Request: clients do not send JSON-RPC responses in protocol 2026-07-28",
                None,
            );
        }
        let declared = match validate_modern(headers, &message, version) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let ctx = RequestContext {
            protocol_version: Some(declared),
        };
        let session = match self.service.stateless(&ctx).await {
            Ok(s) => s,
            Err(e) => return server_unavailable(&message, &e),
        };
        if message.kind() == Kind::Notification {
            session.notify(message).await;
            return accepted();
        }
        self.answer_modern(session, message, accept).await
    }

    async fn answer_modern(
        &self,
        session: Arc<dyn Session>,
        message: Message,
        accept: Accept,
    ) -> Response {
        let id = message.id_raw().unwrap_or("null").to_owned();
        let (events_tx, mut events_rx) = mpsc::channel::<Message>(64);
        let (response_tx, mut response_rx) = oneshot::channel::<Message>();
        let task = tokio::spawn(async move {
            let response = session.request(message, events_tx).await;
            let _ = response_tx.send(response);
        });
        // Dropping this (the client went away) cancels the request.
        let cancel = AbortOnDrop(task.abort_handle());
        match race(accept, &mut events_rx, &mut response_rx).await {
            Outcome::Json(response) => modern_json(&response),
            Outcome::Cancelled => cancelled_response(&id),
            Outcome::Stream { first, ready } => {
                self.stream_modern(first, events_rx, ready, response_rx, cancel)
            }
        }
    }

    /// Streams a modern request's events and response; the stream ends the work when dropped.
    fn stream_modern(
        &self,
        first_event: Option<Message>,
        mut events_rx: mpsc::Receiver<Message>,
        ready_response: Option<Message>,
        response_rx: oneshot::Receiver<Message>,
        cancel: AbortOnDrop,
    ) -> Response {
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        // In flight until the response is sent (see `stream_legacy`).
        let busy = self.busy.enter();
        tokio::spawn(async move {
            let _busy = busy;
            if let Some(ev) = first_event {
                if tx.send(crate::sse::event(None, ev.as_str())).await.is_err() {
                    return;
                }
            }
            let response = match ready_response {
                Some(r) => Some(r),
                None => {
                    let mut response_rx = response_rx;
                    loop {
                        tokio::select! {
                            biased;
                            Some(ev) = events_rx.recv() => {
                                if tx.send(crate::sse::event(None, ev.as_str())).await.is_err() { return; }
                            }
                            r = &mut response_rx => break r.ok(),
                        }
                    }
                }
            };
            while let Ok(ev) = events_rx.try_recv() {
                let _ = tx.send(crate::sse::event(None, ev.as_str())).await;
            }
            if let Some(r) = response {
                let _ = tx.send(crate::sse::event(None, r.as_str())).await;
            }
        });
        sse_response(SseBody::new(rx, self.config.keep_alive).with_guard(cancel))
    }
}

/// How a request will be answered, decided by what the server sends first.
enum Outcome {
    /// The response came first: answer with plain JSON (the fast path).
    Json(Message),
    /// A related message came first (or the client takes only SSE): stream.
    Stream {
        first: Option<Message>,
        ready: Option<Message>,
    },
    Cancelled,
}

/// Waits for the response or the first related message. Clients that accept
/// only JSON get the response alone; their related messages are dropped (the
/// server must not block on them).
async fn race(
    accept: Accept,
    events_rx: &mut mpsc::Receiver<Message>,
    response_rx: &mut oneshot::Receiver<Message>,
) -> Outcome {
    if accept.sse && !accept.json {
        return Outcome::Stream {
            first: None,
            ready: None,
        };
    }
    let mut events_open = true;
    loop {
        tokio::select! {
            biased;
            ev = events_rx.recv(), if events_open => match ev {
                Some(ev) if accept.sse => return Outcome::Stream { first: Some(ev), ready: None },
                Some(ev) => tracing::debug!(?ev, "client accepts only JSON; dropping a related message"),
                None => events_open = false,
            },
            response = &mut *response_rx => {
                return match response {
                    Ok(response) => match events_rx.try_recv() {
                        // A related message raced the response: stream both, in order.
                        Ok(ev) if accept.sse => Outcome::Stream { first: Some(ev), ready: Some(response) },
                        _ => Outcome::Json(response),
                    },
                    Err(_) => Outcome::Cancelled,
                };
            }
        }
    }
}

/// Checks a modern request's headers against its body (2026-07-28 request
/// metadata) and returns the version it declares.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn validate_modern(
    headers: &HeaderMap,
    message: &Message,
    header_version: Option<&str>,
) -> Result<String, Response> {
    let id = message.id_raw();
    let mismatch = |why: String| {
        rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            codes::HEADER_MISMATCH,
            &format!("Header mismatch: {why}"),
            None,
        )
    };
    let fault = |f: era::Fault| rpc_error(StatusCode::BAD_REQUEST, id, f.code, &f.message, f.data);
    if message.kind() == Kind::Request {
        // Order matters (the conformance suite checks it): header present,
        // then required _meta, then header = _meta, then version supported.
        let Some(header_version) = header_version else {
            return Err(mismatch("MCP-Protocol-Version header is required".into()));
        };
        let body_version = era::declared_version(message).map_err(fault)?;
        if header_version != body_version {
            return Err(mismatch(format!(
                "MCP-Protocol-Version header {header_version:?} does not match _meta protocolVersion {body_version:?}"
            )));
        }
        era::check_supported(&body_version).map_err(fault)?;
        let method = message.method().unwrap_or_default();
        match headers
            .get(METHOD_HEADER)
            .map(|v| v.to_str().ok().and_then(era::decode_header_value))
        {
            None => return Err(mismatch("Mcp-Method header is required".into())),
            Some(None) => return Err(mismatch("Mcp-Method header is not valid".into())),
            Some(Some(h)) if h != method => {
                return Err(mismatch(format!(
                    "Mcp-Method {h:?} does not match method {method:?}"
                )))
            }
            _ => {}
        }
        if let Some(field) = era::name_param(method) {
            let body_name = message.param_str(field);
            match headers
                .get(NAME_HEADER)
                .map(|v| v.to_str().ok().and_then(era::decode_header_value))
            {
                None => return Err(mismatch("Mcp-Name header is required".into())),
                Some(None) => return Err(mismatch("Mcp-Name header is not valid".into())),
                Some(Some(h)) if Some(&h) != body_name.as_ref() => {
                    return Err(mismatch(format!(
                        "Mcp-Name {h:?} does not match params.{field}"
                    )))
                }
                _ => {}
            }
        }
        return Ok(body_version);
    }
    Ok(message
        .meta_field(meta::PROTOCOL_VERSION)
        .and_then(|raw| serde_json::from_str::<String>(&raw).ok())
        .or(header_version.map(str::to_owned))
        .unwrap_or_else(|| era::LATEST.to_owned()))
}

/// Removes the in-flight request a `notifications/cancelled` names; dropping
/// its future is what tells the upstream server to stop.
fn cancel_inflight(entry: &SessionEntry, message: &Message) {
    let Some(params) = message.params() else {
        return;
    };
    let Some(request_id) = params.get("requestId") else {
        return;
    };
    let key = request_id.to_string();
    let handle = entry.inflight.lock().ok().and_then(|mut m| m.remove(&key));
    if let Some(handle) = handle {
        handle.abort();
    }
}

/// The HTTP status for a modern JSON-RPC answer: errors the 2026-07-28
/// transport names get their statuses; everything else is 200.
fn modern_status(response: &Message) -> StatusCode {
    match response.error_code() {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::HEADER_MISMATCH
            | codes::MISSING_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn modern_json(response: &Message) -> Response {
    json_response(modern_status(response), response.to_bytes())
}

fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn sse_response(body: SseBody) -> Response {
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp
}

fn accepted() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

/// An HTTP error whose body is a JSON-RPC error, as the transport allows.
pub fn rpc_error(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    json_response(
        status,
        Message::error_response(id, code, message, data).to_bytes(),
    )
}

/// A request body already read and parsed by the process that embeds the
/// endpoint (the router, which reads every body to check it before it
/// reaches a local instance): put in the request's extensions, it is used
/// instead of parsing the body again. It must be the body's message; only
/// code in this process can set it.
#[derive(Clone)]
pub struct Parsed(pub Message);

/// Reads a POST body (at most `limit` bytes) as one JSON-RPC message, or
/// the error response that refuses it.
async fn read_message(body: Body, limit: usize) -> Result<Message, Response> {
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err(rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                codes::INVALID_REQUEST,
                &format!("Payload Too Large: the body exceeds {limit} bytes"),
                None,
            ))
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(_) => {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                codes::PARSE_ERROR,
                "Parse error: the body is not UTF-8",
                None,
            ))
        }
    };
    Message::parse(text).map_err(|e| {
        rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            e.code(),
            &e.to_string(),
            None,
        )
    })
}

/// 502 with a JSON-RPC error: the service could not give us a session.
fn server_unavailable(message: &Message, error: &crate::service::OpenError) -> Response {
    rpc_error(
        StatusCode::BAD_GATEWAY,
        message.id_raw(),
        codes::INTERNAL_ERROR,
        &error.to_string(),
        None,
    )
}

fn session_not_found() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        codes::SERVER_ERROR,
        "Session not found: it has ended or never existed; send initialize to start a new one",
        None,
    )
}

fn unavailable(why: &str, retry_after_secs: u32) -> Response {
    let mut resp = rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        codes::SERVER_ERROR,
        why,
        None,
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

fn cancelled_response(id: &str) -> Response {
    json_response(
        StatusCode::OK,
        Message::error_response(
            Some(id),
            codes::INTERNAL_ERROR,
            "request was cancelled",
            None,
        )
        .to_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{EventSender, UnsolicitedSender};
    use crate::OpenError;
    use async_trait::async_trait;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// Answers every request with the exact text it received, as a string.
    struct Echo;

    #[async_trait]
    impl Session for Echo {
        async fn request(&self, request: Message, _events: EventSender) -> Message {
            let text = Value::String(request.as_str().to_owned());
            Message::result_response(request.id_raw().unwrap_or("null"), &text)
        }
        async fn notify(&self, _: Message) {}
        async fn respond(&self, _: Message) {}
        async fn close(&self) {}
    }

    #[async_trait]
    impl Service for Echo {
        async fn open_session(
            &self,
            _: &RequestContext,
            _: UnsolicitedSender,
        ) -> Result<Arc<dyn Session>, OpenError> {
            Ok(Arc::new(Echo))
        }
        async fn stateless(&self, _: &RequestContext) -> Result<Arc<dyn Session>, OpenError> {
            Ok(Arc::new(Echo))
        }
    }

    #[derive(Debug)]
    struct Alice;

    impl CallerCheck for Alice {
        fn check(&self, _: &HeaderMap) -> Result<Option<String>, String> {
            Ok(Some(r#"{"user":"alice"}"#.to_owned()))
        }
    }

    /// POSTs a legacy `initialize` whose `params._meta` is `meta`.
    async fn initialize(meta: &str) -> (StatusCode, Value) {
        let mut config = ServerConfig::new(OriginPolicy::default());
        config.caller_check = Some(Arc::new(Alice));
        config.inject_identity = true;
        let app = StreamableHttp::new(Arc::new(Echo), config).router("/mcp");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}},"_meta":{meta}}}}}"#
        );
        let req = Request::post("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Body::from(body))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    // Found by fuzz/meta_rewrite: with a lone surrogate in a `_meta` key,
    // the server added its identity in front of the client's, and a
    // `JSON.parse` server read the client's (the last one).
    #[tokio::test]
    async fn the_injected_identity_cannot_be_shadowed() {
        let (status, answer) =
            initialize(r#"{"dev.hangar/identity":{"user":"mallory"},"\udead":0}"#).await;
        assert_eq!(status, StatusCode::OK);
        let received = answer["result"].as_str().unwrap();
        assert!(
            received.ends_with(r#""_meta":{"dev.hangar/identity":{"user":"alice"},"\udead":0}}}"#),
            "{received}"
        );
        assert!(!received.contains("mallory"), "{received}");

        // Where peers would disagree on which entry counts: refused.
        let (status, answer) =
            initialize(r#"{"dev.hangar/identity":{"user":"mallory"},"dev.hangar/identity":{}}"#)
                .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["code"], codes::INVALID_PARAMS);
    }
}
