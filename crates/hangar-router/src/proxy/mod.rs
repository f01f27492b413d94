//! The proxy: one MCP request from a client to the caller's instance and
//! its answer back, as a pipeline of small steps. Each step either hands
//! the next one what it found or ends the request with a [`ProxyError`],
//! which becomes the client's response in one place ([`error`]).
//!
//! ```text
//! check_origin → authenticate → read_body → authorize (scopes)
//!   → bind_session (the router's session table: owner check, 404)
//!   → instance (found or started; a GET stream never starts one)
//!   → exchange (session opened or replayed on this run of the instance,
//!               sent; resent once if it never arrived)
//!   → respond (session ids swapped, audit, streamed back)
//! ```

pub mod error;
pub mod outcome;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hangar_identity::Identity;
use hangar_store::AuditEntry;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use mcp_transport::server::{Parsed, SESSION_HEADER};
use mcp_transport::{Kind, Message};

use crate::app::AppState;
use crate::auth::{self, Principal};
use crate::config::{Access, ServerConfig};
use crate::instances::{InstanceError, Live};
use crate::sessions::{Lookup, Owner, Recorded, Session, Upstream, MAX_RECORDED};
pub use error::{ProxyError, Rejection};
use outcome::{AnswerReader, Outcome};

/// Largest request body the router accepts (instances apply their own limit too).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest answer read (and dropped) while replaying a session.
const MAX_REPLAY_ANSWER: usize = 1024 * 1024;
/// A GET stream of a session whose instance is stopped is held by the
/// router (keep-alive comments) until the instance runs again, at most this
/// long; then it ends and the client reconnects.
const PARKED_STREAM: Duration = Duration::from_secs(300);
const PARKED_KEEPALIVE: Duration = Duration::from_secs(15);

/// Serves one MCP request for `server`.
pub async fn serve(state: &Arc<AppState>, server: &ServerConfig, req: Request<Body>) -> Response {
    match pipeline(state, server, req).await {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    }
}

async fn pipeline(
    state: &Arc<AppState>,
    server: &ServerConfig,
    req: Request<Body>,
) -> Result<Response, Rejection> {
    let (parts, body) = req.into_parts();
    check_origin(state, &parts.headers)?;
    let principal = authenticate(state, server, &parts.headers).await?;
    let body = read_body(body).await?;
    let call = Call::peek(&parts.method, &body);
    authorize(state, server, principal.as_ref(), &call)?;
    let owner = Owner {
        server: server.name.clone(),
        user: principal.as_ref().map(|p| p.user_id.clone()),
    };
    let session = bind_session(state, &owner, &parts.headers, &call)?;
    let ctx = Ctx {
        state,
        server,
        principal: principal.as_ref(),
        call: &call,
    };
    if let Some(session) = &session {
        if parts.method == Method::DELETE {
            return Ok(end_session(&ctx, session, &parts).await);
        }
        if parts.method == Method::GET {
            if let Some(parked) = park_stream(&ctx).await {
                return Ok(parked);
            }
        }
    }
    let live = ctx.instance().await?;
    let guard = live.enter();
    let started = Instant::now();
    let (live, response) = exchange(&ctx, live, &parts, body.clone(), session.as_deref()).await?;
    let response = record_session(&ctx, &parts, &body, &live, response);
    Ok(respond(&ctx, &parts.method, response, guard, started).await)
}

/// What every step after authentication knows about the request.
struct Ctx<'a> {
    state: &'a Arc<AppState>,
    server: &'a ServerConfig,
    principal: Option<&'a Principal>,
    call: &'a Call,
}

impl Ctx<'_> {
    fn identity(&self, live: &Live) -> Identity {
        Identity {
            user: self.principal.map(|p| p.user_id.clone()),
            user_name: self.principal.map(|p| p.user_name.clone()),
            server: self.server.name.clone(),
            instance: live.id.clone(),
        }
    }

    /// The caller's running instance, started if needed.
    async fn instance(&self) -> Result<Arc<Live>, Rejection> {
        match self.state.instances.get(self.server, self.principal).await {
            Ok(live) => Ok(live),
            Err(InstanceError::Full(n)) => Err(ProxyError::Full(n).answering(self.id())),
            Err(InstanceError::Backend(e)) => {
                tracing::error!(server = %self.server.name, "instance unavailable: {e}");
                Err(ProxyError::Unavailable {
                    server: self.server.name.clone(),
                    reason: error::unavailable_reason(&e),
                }
                .answering(self.id()))
            }
        }
    }

    fn id(&self) -> Option<&str> {
        self.call.id.as_deref()
    }

    fn stopped(&self) -> Rejection {
        ProxyError::Stopped {
            server: self.server.name.clone(),
        }
        .answering(self.id())
    }
}

/// The part of a request the router reads: enough to answer errors with the
/// right id, to keep sessions, and to audit tool calls.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
#[derive(Default, Debug)]
pub struct Call {
    pub id: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
    /// `resources/subscribe` / `unsubscribe`: the URI.
    pub resource: Option<String>,
    pub kind: Option<Kind>,
    /// The body as parsed here, handed to a local instance so that it is
    /// not parsed twice (`mcp_transport::server::Parsed`).
    pub message: Option<Message>,
}

impl Call {
    /// Reads the request as the instance will: only the members it needs
    /// are decoded (`Message::param_str`), so nothing elsewhere in `params`
    /// can hide a tool name from the per-tool scope check.
    pub fn peek(method: &Method, body: &[u8]) -> Call {
        if method != Method::POST {
            return Call::default();
        }
        let Some(m) = std::str::from_utf8(body)
            .ok()
            .and_then(|t| Message::parse(t).ok())
        else {
            return Call::default();
        };
        let param = |name: &str| m.param_str(name);
        let method = m.method().map(str::to_owned);
        let is_request = m.kind() == Kind::Request;
        Call {
            id: m.id_raw().map(str::to_owned),
            tool: (is_request && method.as_deref() == Some("tools/call"))
                .then(|| param("name"))
                .flatten(),
            resource: matches!(
                method.as_deref(),
                Some("resources/subscribe" | "resources/unsubscribe")
            )
            .then(|| param("uri"))
            .flatten(),
            method,
            kind: Some(m.kind()),
            message: Some(m),
        }
    }
}

// ---------------------------------------------------------------------------
// The steps
// ---------------------------------------------------------------------------

/// Origin/Host against the allow-list (loopback plus `public_url`'s host).
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Rejection> {
    state
        .origins
        .check(headers)
        .map_err(|why| ProxyError::Origin(why).into())
}

/// The caller, from `Authorization: Bearer` (API token or access token for
/// this server); `None` on a public server.
async fn authenticate(
    state: &AppState,
    server: &ServerConfig,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Rejection> {
    if server.access == Access::Public {
        return Ok(None);
    }
    let unauthorized = |why, invalid_token| ProxyError::Unauthorized {
        why,
        invalid_token,
        metadata_url: crate::app::metadata_url(&state.config, &server.name),
    };
    let Some(token) = auth::bearer(headers) else {
        return Err(unauthorized("authorization required", false).into());
    };
    let audiences = crate::config::resource_urls(
        &state.config.public_url,
        &server.name,
        &state.config.default_server,
    );
    match state.auth.authenticate(token, &audiences).await {
        Ok(Some(p)) => Ok(Some(p)),
        Ok(None) => Err(unauthorized("invalid or expired token", true).into()),
        Err(e) => {
            tracing::error!("token check failed: {e}");
            Err(ProxyError::TokenStoreUnavailable.into())
        }
    }
}

/// The body, bounded.
async fn read_body(body: Body) -> Result<Bytes, Rejection> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(ProxyError::BodyTooLarge(MAX_BODY).into()),
    }
}

/// `mcp` for everything, and a tool's `tool_scopes` entry for its calls.
fn authorize(
    state: &AppState,
    server: &ServerConfig,
    principal: Option<&Principal>,
    call: &Call,
) -> Result<(), Rejection> {
    let Some(principal) = principal else {
        return Ok(());
    };
    let base = hangar_auth::server::BASE_SCOPE;
    let needed = if !principal.has_scope(base) {
        Some(base)
    } else {
        call.tool
            .as_ref()
            .and_then(|t| server.tool_scopes.get(t))
            .map(String::as_str)
            .filter(|n| !principal.has_scope(n))
    };
    let Some(needed) = needed else {
        return Ok(());
    };
    let mut scopes: Vec<String> = principal.scopes.clone().unwrap_or_default();
    if !scopes.iter().any(|s| s == needed) {
        scopes.push(needed.to_owned());
    }
    Err(ProxyError::InsufficientScope {
        needed: needed.to_owned(),
        scopes,
        metadata_url: crate::app::metadata_url(&state.config, &server.name),
    }
    .into())
}

/// The client's `Mcp-Session-Id`, if it sent one: a session of this
/// router, for this server and this user, or 404 (whatever the tenancy and
/// the method: POST, GET, a resumed GET, DELETE).
fn bind_session(
    state: &AppState,
    owner: &Owner,
    headers: &HeaderMap,
    call: &Call,
) -> Result<Option<Arc<Session>>, Rejection> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let found = id.to_str().ok().map(|id| state.sessions.lookup(id, owner));
    match found {
        Some(Lookup::Found(session)) => {
            if call.method.as_deref() == Some("notifications/initialized") {
                session.mark_initialized();
            }
            Ok(Some(session))
        }
        _ => Err(ProxyError::SessionNotFound.answering(call.id.as_deref())),
    }
}

/// The client ends its session: it is gone from the table at once; the
/// instance hears of it only if it still runs the session.
async fn end_session(ctx: &Ctx<'_>, session: &Session, parts: &Parts) -> Response {
    ctx.state.sessions.end(&session.id);
    let live = ctx.state.instances.running(ctx.server, ctx.principal).await;
    let upstream = session.upstream.lock().await.clone();
    if let Some(live) = live.filter(|l| l.generation == upstream.generation) {
        let identity = ctx.identity(&live);
        if let Ok(req) = upstream::request(
            &parts.method,
            &parts.headers,
            Bytes::new(),
            Some(&upstream.session_id),
        ) {
            if let Err(e) = live.send(req, &identity).await {
                tracing::debug!(instance = %live.id, "DELETE not delivered: {}", e.detail);
            }
        }
    }
    (StatusCode::OK, "").into_response()
}

/// A GET stream for a session whose instance is not running: held here,
/// with keep-alive comments, until the instance runs again (then it ends
/// and the client's reconnect reaches the new run). Opening a stream must
/// not start an instance, or an idle one would never stay stopped.
async fn park_stream(ctx: &Ctx<'_>) -> Option<Response> {
    if ctx
        .state
        .instances
        .running(ctx.server, ctx.principal)
        .await
        .is_some()
    {
        return None;
    }
    let mut starts = ctx.state.instances.starts(ctx.server, ctx.principal);
    starts.borrow_and_update();
    let deadline = tokio::time::Instant::now() + PARKED_STREAM;
    let stream = futures_util::stream::unfold(
        (starts, false),
        move |(mut starts, done)| async move {
            if done {
                return None;
            }
            let tick = tokio::time::sleep(PARKED_KEEPALIVE);
            tokio::select! {
                _ = tick => {
                    let over = tokio::time::Instant::now() >= deadline;
                    Some((Ok::<_, std::io::Error>(Bytes::from_static(b": parked\n\n")), (starts, over)))
                }
                changed = starts.changed() => {
                    // Back (or the router is going away): end the stream.
                    let _ = changed;
                    None
                }
            }
        },
    );
    let first = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b": waiting for the instance\n\n"))
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(first, stream));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Some(resp)
}

/// Sends the request to the instance, after opening the client's session
/// on this run of it (replaying it if the instance restarted). A request
/// that never reached the instance (its socket refused: it had just died)
/// goes once more, to a new instance; so does a session request the
/// instance no longer knows (its own session expired), after a replay.
async fn exchange(
    ctx: &Ctx<'_>,
    mut live: Arc<Live>,
    parts: &Parts,
    body: Bytes,
    session: Option<&Session>,
) -> Result<(Arc<Live>, http::Response<Body>), Rejection> {
    let mut retried = false;
    loop {
        let upstream_session = match session {
            Some(s) => Some(open_on(ctx, &live, s).await?),
            None => None,
        };
        let identity = ctx.identity(&live);
        let mut req = upstream::request(
            &parts.method,
            &parts.headers,
            body.clone(),
            upstream_session.as_deref(),
        )
        .map_err(|e| {
            tracing::error!("building the instance request: {e}");
            ctx.stopped()
        })?;
        if let Some(message) = &ctx.call.message {
            req.extensions_mut().insert(Parsed(message.clone()));
        }
        match live.send(req, &identity).await {
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND && session.is_some() && !retried => {
                // The instance forgot the session (its own idle expiry):
                // open it again on the same run, once.
                if let Some(s) = session {
                    s.upstream.lock().await.generation = 0;
                }
                retried = true;
            }
            Ok(resp) => return Ok((live, resp)),
            Err(e) if e.undelivered && !retried => {
                tracing::warn!(instance = %live.id, "instance unreachable ({}); starting it again", e.detail);
                retried = true;
                live = ctx.instance().await?;
            }
            Err(e) => {
                tracing::warn!(instance = %live.id, "instance did not answer: {}", e.detail);
                audit(ctx, Outcome::Error, Instant::now());
                return Err(ctx.stopped());
            }
        }
    }
}

/// The instance's session id for `session` on this run of the instance:
/// the current one, or a new one made by replaying the client's
/// `initialize`, `notifications/initialized` and resource subscriptions.
async fn open_on(ctx: &Ctx<'_>, live: &Live, session: &Session) -> Result<String, Rejection> {
    let mut upstream = session.upstream.lock().await;
    if upstream.generation == live.generation {
        return Ok(upstream.session_id.clone());
    }
    let not_found = || ProxyError::SessionNotFound.answering(ctx.id());
    let Some(init) = &session.initialize else {
        return Err(not_found());
    };
    let identity = ctx.identity(live);
    let send = |body: Bytes, sid: Option<String>| {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(v) = init
            .protocol_version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("mcp-protocol-version", v);
        }
        let req = upstream::request(&Method::POST, &headers, body, sid.as_deref());
        let identity = &identity;
        async move {
            let req = req.map_err(|_| ())?;
            let resp = live.send(req, identity).await.map_err(|_| ())?;
            let (head, incoming) = resp.into_parts();
            // Read to the end (and drop): the answer was the first run's.
            let _ = http_body_util::Limited::new(incoming, MAX_REPLAY_ANSWER)
                .collect()
                .await;
            Ok::<_, ()>(head)
        }
    };
    let head = send(init.body.clone(), None)
        .await
        .map_err(|_| ctx.stopped())?;
    let new_id = head
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|_| head.status.is_success())
        .map(str::to_owned);
    let Some(new_id) = new_id else {
        tracing::warn!(instance = %live.id, status = %head.status, "replayed initialize opened no session");
        return Err(not_found());
    };
    if session.initialized() {
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let _ = send(note, Some(new_id.clone())).await;
    }
    for subscribe in session.subscriptions() {
        let _ = send(subscribe, Some(new_id.clone())).await;
    }
    tracing::info!(instance = %live.id, "session reopened on a new run of its instance");
    *upstream = Upstream {
        session_id: new_id.clone(),
        generation: live.generation,
    };
    Ok(new_id)
}

/// A new legacy session gets the router's id (the instance's stays here);
/// subscriptions are remembered for replay.
fn record_session(
    ctx: &Ctx<'_>,
    parts: &Parts,
    body: &Bytes,
    live: &Live,
    mut response: http::Response<Body>,
) -> http::Response<Body> {
    if ctx.call.method.as_deref() == Some("initialize") && ctx.call.kind == Some(Kind::Request) {
        let Some(inner) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return response;
        };
        let recorded = (body.len() <= MAX_RECORDED).then(|| Recorded {
            body: body.clone(),
            protocol_version: parts
                .headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        let owner = Owner {
            server: ctx.server.name.clone(),
            user: ctx.principal.map(|p| p.user_id.clone()),
        };
        let session = ctx.state.sessions.open(
            owner,
            Upstream {
                session_id: inner,
                generation: live.generation,
            },
            recorded,
        );
        // The instance's own id never reaches the client.
        match HeaderValue::from_str(&session.id) {
            Ok(v) => response.headers_mut().insert(SESSION_HEADER, v),
            Err(_) => response.headers_mut().remove(SESSION_HEADER),
        };
        return response;
    }
    if let (Some(uri), Some(id)) = (&ctx.call.resource, parts.headers.get(SESSION_HEADER)) {
        let owner = Owner {
            server: ctx.server.name.clone(),
            user: ctx.principal.map(|p| p.user_id.clone()),
        };
        if let (Some(id), true) = (id.to_str().ok(), response.status().is_success()) {
            if let Lookup::Found(s) = ctx.state.sessions.lookup(id, &owner) {
                match ctx.call.method.as_deref() {
                    Some("resources/subscribe") => s.subscribe(uri, body),
                    _ => s.unsubscribe(uri),
                }
            }
        }
    }
    response
}

/// The instance's answer, back to the client: streamed as it comes, with a
/// tool call's outcome read on the way ([`outcome`]) and audited when the
/// answer ends (or the client goes away). A request's guard lives as long
/// as its answer streams; a GET stream's does not (an open stream alone
/// does not keep an instance from idling out: it ends when the instance
/// stops, and the client reconnects).
async fn respond(
    ctx: &Ctx<'_>,
    method: &Method,
    response: http::Response<Body>,
    guard: crate::instances::InflightGuard,
    started: Instant,
) -> Response {
    let (mut head, body) = response.into_parts();
    upstream::strip_hop_by_hop(&mut head.headers);
    if *method == Method::GET {
        drop(guard);
        return Response::from_parts(head, body);
    }
    let audit = ctx.call.tool.is_some().then(|| {
        let content_type = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let reader = if content_type.starts_with("text/event-stream") {
            AnswerReader::sse()
        } else {
            AnswerReader::json()
        };
        Audit {
            reader: Some(reader),
            failed: !head.status.is_success(),
            record: audit_record(ctx, started),
        }
    });
    Response::from_parts(
        head,
        Body::new(Answer {
            body,
            audit,
            _guard: guard,
        }),
    )
}

/// The body of an answer on its way to the client: the instance's body as
/// it is (its size too, so a JSON answer keeps its `Content-Length`), each
/// chunk shown to the tool call's audit, and the instance kept from idling
/// out until the body is done with.
struct Answer {
    body: Body,
    audit: Option<Audit>,
    _guard: crate::instances::InflightGuard,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(audit)) = (frame.data_ref(), this.audit.as_mut()) {
                audit.feed(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Audits a tool call once, when its answer has streamed to its end or is
/// dropped (the client went away): the record is made in `Drop`.
struct Audit {
    reader: Option<AnswerReader>,
    failed: bool,
    record: Option<Box<dyn FnOnce(Outcome) + Send>>,
}

impl Audit {
    fn feed(&mut self, chunk: &[u8]) {
        if let Some(reader) = self.reader.as_mut() {
            reader.feed(chunk);
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let outcome = match self.reader.take() {
            _ if self.failed => Outcome::Error,
            Some(reader) => reader.finish(),
            None => Outcome::Error,
        };
        if let Some(record) = self.record.take() {
            record(outcome);
        }
    }
}

/// What records the call's audit entry, with what it needs owned.
fn audit_record(ctx: &Ctx<'_>, started: Instant) -> Option<Box<dyn FnOnce(Outcome) + Send>> {
    let tool = ctx.call.tool.clone()?;
    let audit = ctx.state.audit.clone();
    let user_id = ctx.principal.map(|p| p.user_id.clone());
    let server = ctx.server.name.clone();
    Some(Box::new(move |outcome: Outcome| {
        audit.record(AuditEntry {
            at: hangar_store::now(),
            user_id,
            server,
            tool,
            outcome: outcome.as_str().to_owned(),
            duration_ms: started.elapsed().as_millis() as i64,
        });
    }))
}

fn audit(ctx: &Ctx<'_>, outcome: Outcome, started: Instant) {
    if let Some(record) = audit_record(ctx, started) {
        record(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_ids_tool_names_and_subscriptions() {
        let p = Call::peek(
            &Method::POST,
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo"}}"#,
        );
        assert_eq!(
            (p.id.as_deref(), p.tool.as_deref()),
            (Some("\"x\""), Some("echo"))
        );
        let p = Call::peek(
            &Method::POST,
            br#"{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"test://a"}}"#,
        );
        assert_eq!(p.resource.as_deref(), Some("test://a"));
        let p = Call::peek(&Method::POST, b"not json");
        assert!(p.id.is_none() && p.tool.is_none());
        let p = Call::peek(&Method::GET, b"");
        assert!(p.method.is_none());
    }

    // The tool name was read by decoding all of params into a serde_json
    // Value, which fails where the server behind reads the call fine (a
    // lone surrogate, a number too large for f64, nesting past 128): the
    // call went through without the tool's scope (found by fuzz/message).
    #[test]
    fn the_tool_name_cannot_be_hidden_from_the_scope_check() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for arguments in [r#"{"t":"\ude00"}"#, r#"{"n":1e999}"#, deep.as_str()] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"admin","arguments":{arguments}}}}}"#
            );
            assert_eq!(
                Call::peek(&Method::POST, body.as_bytes()).tool.as_deref(),
                Some("admin"),
                "{body}"
            );
        }
    }
}
