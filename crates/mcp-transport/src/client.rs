//! The Streamable HTTP client half: what `hangar connect` speaks to a remote
//! MCP server on behalf of a local stdio client (feature `client`).
//!
//! Every message the local client sends becomes one POST with
//! `Accept: application/json, text/event-stream`. A request's answer is
//! plain JSON or an SSE stream; the stream's other messages (progress, logs,
//! server→client requests) go to the `incoming` channel in the order they
//! arrive, and the request's response is forwarded after them.
//!
//! Legacy era (≤ 2025-11-25): the `Mcp-Session-Id` from the `initialize`
//! answer and the negotiated `MCP-Protocol-Version` go on every later
//! request; after `notifications/initialized` a GET stream listens for
//! server-initiated messages (405: the server has none); a broken SSE stream
//! is resumed with GET + `Last-Event-ID` after the server's `retry`, with
//! bounded attempts and backoff; a 404 for a request that carried a session
//! id means the session ended, so the client replays the local client's
//! original `initialize` (and `notifications/initialized`) and retries the
//! request: the local client never notices.
//!
//! Modern era (2026-07-28, a request whose `_meta` names the version): no
//! session; `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` mirror the
//! body; dropping the future returned by [`Client::send`] closes the stream,
//! which the server treats as cancellation.
//!
//! Messages are forwarded byte for byte ([`Message`] keeps the text it was
//! parsed from); nothing is re-serialised except errors we make ourselves.
//!
//! Authorization is a seam: on HTTP 401, or 403 with `insufficient_scope`
//! (step-up), the [`Authorizer`] is asked for credentials and the request
//! is retried (at most once for each).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::{Event, EventStream, EventStreamError};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use reqwest::Url;

use crate::era::{self, meta, Era};
use crate::error_chain;
use crate::message::{codes, Kind, Message};
use crate::server::{METHOD_HEADER, NAME_HEADER, SESSION_HEADER, VERSION_HEADER};

const LAST_EVENT_ID: &str = "last-event-id";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// How much of an error body we keep for a message.
const SNIPPET_BYTES: usize = 4096;

/// How to reach the server and the bounds the client keeps.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The MCP endpoint.
    pub url: Url,
    /// Sent on every request (`--header`). An `Authorization` from the
    /// [`Authorizer`] replaces one given here.
    pub headers: HeaderMap,
    /// Largest message (JSON body or SSE event) accepted from the server.
    pub max_message_bytes: usize,
    /// Reconnecting broken SSE streams.
    pub resume: Backoff,
    pub connect_timeout: Duration,
    /// Bounds POSTs that carry no request (notifications, responses) and the DELETE.
    pub ack_timeout: Duration,
    /// Honour `HTTP(S)_PROXY`/`NO_PROXY` (off by default, like mcp-remote
    /// without `--enable-proxy`).
    pub proxy_from_env: bool,
    pub user_agent: String,
}

impl ClientConfig {
    pub fn new(url: Url) -> ClientConfig {
        ClientConfig {
            url,
            headers: HeaderMap::new(),
            max_message_bytes: 16 * 1024 * 1024,
            resume: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            proxy_from_env: false,
            user_agent: concat!("hangar/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Reconnection policy for broken SSE streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failed reconnections before giving up.
    pub max_attempts: u32,
    /// The first wait when the server named no `retry`.
    pub initial: Duration,
    /// The longest wait (never shorter than the server's `retry`).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            max_attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before reconnection attempt `attempt` (0-based): the
    /// server's `retry` (which the client must respect) or `initial`,
    /// doubled per failed attempt, capped at `max` but never below `retry`.
    pub fn delay(&self, server_retry: Option<Duration>, attempt: u32) -> Duration {
        let base = server_retry.unwrap_or(self.initial);
        let factor = 1u32 << attempt.min(16);
        base.saturating_mul(factor).min(self.max.max(base))
    }
}

/// A server's `401`, or `403` with `insufficient_scope` (step-up): what the
/// [`Authorizer`] needs to obtain credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub status: u16,
    /// The `WWW-Authenticate` scheme, e.g. `Bearer`.
    pub scheme: Option<String>,
    /// Its auth-params, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
    /// The start of the response body, for messages.
    pub body: String,
}

impl Challenge {
    /// Builds a challenge from a status and a `WWW-Authenticate` value.
    pub fn new(status: u16, www_authenticate: Option<&str>, body: String) -> Challenge {
        let (scheme, params) = match www_authenticate.and_then(parse_www_authenticate) {
            Some((scheme, params)) => (Some(scheme), params),
            None => (None, Vec::new()),
        };
        Challenge {
            status,
            scheme,
            params,
            body,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// RFC 9728: where the protected resource metadata is.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.param("resource_metadata")
    }

    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

/// Parses the first challenge of a `WWW-Authenticate` value into its scheme
/// and auth-params (RFC 9110 §11.6.1). `None` when there is no scheme.
pub fn parse_www_authenticate(value: &str) -> Option<(String, Vec<(String, String)>)> {
    let value = value.trim();
    let scheme_end = value
        .find(|c: char| c.is_ascii_whitespace() || c == ',')
        .unwrap_or(value.len());
    let scheme = &value[..scheme_end];
    if scheme.is_empty() {
        return None;
    }
    let mut rest = &value[scheme_end..];
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let name_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let after = rest[name_end..].trim_start();
        let Some(after) = after.strip_prefix('=') else {
            // A token68 or the next challenge's scheme: this challenge is over.
            break;
        };
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &quoted[end..])
        } else {
            let end = after
                .find(|c: char| c == ',' || c.is_ascii_whitespace())
                .unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        params.push((name.to_ascii_lowercase(), value));
        rest = remainder;
    }
    Some((scheme.to_owned(), params))
}

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// There is no way to sign in (yet): the message says what to do instead.
    #[error("{0}")]
    Unavailable(String),
    #[error("sign-in failed: {0}")]
    Failed(String),
}

/// The seam for sign-in: supplies `Authorization` and, on 401, is asked for
/// (new) credentials.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The `Authorization` value for the next request, if this authorizer
    /// has one (it replaces one given in [`ClientConfig::headers`]).
    async fn authorization(&self) -> Option<HeaderValue> {
        None
    }

    /// The server answered 401. `Ok(())` means new credentials are ready:
    /// the request is retried once with [`Authorizer::authorization`].
    async fn unauthorized(&self, challenge: &Challenge) -> Result<(), AuthError>;
}

/// An authorizer that cannot sign in: a 401 is final.
#[derive(Debug, Default)]
pub struct NoAuthorizer;

#[async_trait]
impl Authorizer for NoAuthorizer {
    async fn unauthorized(&self, _challenge: &Challenge) -> Result<(), AuthError> {
        Err(AuthError::Unavailable(
            "no credentials are configured".to_owned(),
        ))
    }
}

/// Why a message could not be delivered or answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot reach the MCP server at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the connection to the MCP server broke: {0}")]
    Transport(String),
    #[error("the MCP server answered HTTP {status}{}", detail_suffix(.detail))]
    Http { status: u16, detail: String },
    #[error("the MCP server requires authorization (HTTP {status}): {source}")]
    Unauthorized {
        status: u16,
        #[source]
        source: AuthError,
    },
    #[error("{url} does not answer as a Streamable HTTP MCP endpoint (HTTP {status}); it may be a legacy HTTP+SSE server")]
    NotStreamableHttp { url: String, status: u16 },
    #[error("the MCP server sent a message larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the MCP server sent an invalid message: {0}")]
    BadMessage(String),
    #[error("the MCP server answered with an unexpected content type {0:?}")]
    ContentType(String),
    #[error("the MCP server ended the stream before answering, and it cannot be resumed")]
    StreamEnded,
    #[error("the stream broke and could not be resumed after {attempts} attempts: {last}")]
    ResumeFailed { attempts: u32, last: String },
    #[error("the session ended and a new one could not be started: {0}")]
    SessionLost(String),
    #[error("the connection to the MCP server is closed")]
    Closed,
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl ClientError {
    /// The JSON-RPC code the local client sees for this fault.
    pub fn code(&self) -> i64 {
        match self {
            ClientError::BadMessage(_) => codes::INTERNAL_ERROR,
            _ => codes::SERVER_ERROR,
        }
    }
}

/// The headers a message needs beyond the static ones: for a modern request,
/// `MCP-Protocol-Version` from its `_meta`, `Mcp-Method`, and `Mcp-Name` for
/// the methods that name a target (values base64-wrapped when not header-safe).
pub fn modern_headers(message: &Message) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let version = message
        .meta_field(meta::PROTOCOL_VERSION)
        .and_then(|raw| serde_json::from_str::<String>(&raw).ok());
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        out.push((HeaderName::from_static(VERSION_HEADER), v));
    }
    if message.kind() != Kind::Request {
        return out;
    }
    let Some(method) = message.method() else {
        return out;
    };
    if let Ok(v) = HeaderValue::from_str(&era::encode_header_value(method)) {
        out.push((HeaderName::from_static(METHOD_HEADER), v));
    }
    if let Some(field) = era::name_param(method) {
        let name = message.param_str(field);
        if let Some(v) =
            name.and_then(|n| HeaderValue::from_str(&era::encode_header_value(&n)).ok())
        {
            out.push((HeaderName::from_static(NAME_HEADER), v));
        }
    }
    out
}

/// True when two raw JSON ids name the same id (`1` and `1.0` do not).
fn same_id(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// What an SSE stream has told us so far: where to resume and how long to wait.
#[derive(Debug, Default, Clone)]
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub struct Cursor {
    last_id: Option<HeaderValue>,
    retry: Option<Duration>,
}

impl Cursor {
    /// Records an event's id and retry; returns its message, if it carries one.
    pub fn accept(&mut self, ev: Event) -> Result<Option<Message>, ClientError> {
        if !ev.id.is_empty() {
            self.last_id = HeaderValue::from_str(&ev.id).ok();
        }
        if let Some(retry) = ev.retry {
            self.retry = Some(retry);
        }
        if ev.event != "message" || ev.data.trim().is_empty() {
            return Ok(None);
        }
        Message::parse(ev.data)
            .map(Some)
            .map_err(|e| ClientError::BadMessage(e.to_string()))
    }
}

#[doc(hidden)]
pub type Events = Pin<Box<dyn Stream<Item = Result<Event, ClientError>> + Send>>;

/// The SSE events of a response body, each event bounded to `limit` bytes
/// (plus at most the network chunk that completed the previous one). Both
/// shim transports read their streams with it.
pub fn events(resp: reqwest::Response, limit: usize) -> Events {
    let pending = Arc::new(AtomicUsize::new(0));
    let counter = pending.clone();
    let bytes = resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| ClientError::Transport(error_chain(&e)))?;
        let seen = counter.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
        if seen > limit {
            return Err(ClientError::TooLarge { limit });
        }
        Ok(chunk)
    });
    Box::pin(
        EventStream::new(without_bom(bytes)).map(move |item| match item {
            Ok(ev) => {
                pending.store(0, Ordering::Relaxed);
                Ok(ev)
            }
            Err(EventStreamError::Transport(e)) => Err(e),
            Err(e) => Err(ClientError::BadMessage(format!("bad SSE stream: {e}"))),
        }),
    )
}

/// The byte stream with the one byte order mark the SSE format allows
/// removed, starting with an empty line (a no-op at the start of a
/// stream). eventsource-stream 0.2.3 must never see a mark first: it
/// slices the 3-byte character at byte 1 and panics
/// (jpopesculian/eventsource-stream#10, unmerged).
fn without_bom<S>(bytes: S) -> impl Stream<Item = Result<bytes::Bytes, ClientError>> + Send
where
    S: Stream<Item = Result<bytes::Bytes, ClientError>> + Send,
{
    const BOM: &[u8] = b"\xef\xbb\xbf";
    // The stream's first bytes, until we know whether they are a mark.
    let mut head = Some(Vec::new());
    bytes.map(move |chunk| {
        let chunk = chunk?;
        let Some(mut start) = head.take() else {
            return Ok(chunk);
        };
        start.extend_from_slice(&chunk);
        if start.len() < BOM.len() && BOM.starts_with(&start) {
            head = Some(start);
            return Ok(bytes::Bytes::new());
        }
        let rest = start.strip_prefix(BOM).unwrap_or(&start);
        let mut out = Vec::with_capacity(rest.len() + 1);
        out.push(b'\n');
        out.extend_from_slice(rest);
        Ok(bytes::Bytes::from(out))
    })
}

fn is_sse(resp: &reqwest::Response) -> bool {
    content_type(resp).starts_with("text/event-stream")
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ClientError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClientError::TooLarge { limit });
    }
    let hint = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut buf = Vec::with_capacity(hint);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::Transport(error_chain(&e)))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(ClientError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The start of a body, for error messages; never fails.
/// The start of a body (a few KiB, trimmed), for error messages; never fails.
pub async fn read_snippet(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= SNIPPET_BYTES {
            buf.truncate(SNIPPET_BYTES);
            break;
        }
    }
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// An HTTP error's body as the answer to request `id`: a JSON-RPC error for
/// that id (or for none) is the answer; anything else is an [`ClientError::Http`].
fn answer_from_error(status: StatusCode, body: &str, id: &str) -> Result<Message, ClientError> {
    if let Ok(m) = Message::parse(body.trim()) {
        if m.is_error() {
            match m.id_raw() {
                Some(rid) if same_id(rid, id) => return Ok(m),
                None => {
                    let v = m.to_value();
                    let error = v.get("error").cloned().unwrap_or(Value::Null);
                    let code = error
                        .get("code")
                        .and_then(Value::as_i64)
                        .unwrap_or(codes::SERVER_ERROR);
                    let text = error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error");
                    return Ok(Message::error_response(
                        Some(id),
                        code,
                        &format!("{text} (HTTP {})", status.as_u16()),
                        error.get("data").cloned(),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Err(ClientError::Http {
        status: status.as_u16(),
        detail: body.chars().take(512).collect(),
    })
}

/// The session as seen when a message was sent.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    session: Option<HeaderValue>,
    version: Option<HeaderValue>,
    generation: u64,
}

impl Snapshot {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(s) = &self.session {
            h.insert(SESSION_HEADER, s.clone());
        }
        if let Some(v) = &self.version {
            h.insert(VERSION_HEADER, v.clone());
        }
        h
    }
}

#[derive(Default)]
struct State {
    session: Option<HeaderValue>,
    /// The negotiated protocol version (legacy).
    version: Option<HeaderValue>,
    /// Bumped whenever a session starts, so concurrent 404s re-initialize once.
    generation: u64,
    /// The local client's own `initialize` and `notifications/initialized`,
    /// replayed to start a new session when the server ends ours.
    initialize: Option<Message>,
    initialized: Option<Message>,
    /// The GET stream's task.
    listener: Option<AbortHandle>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    authorizer: Arc<dyn Authorizer>,
    incoming: mpsc::Sender<Message>,
    state: Mutex<State>,
    reinit: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

/// A Streamable HTTP client for one remote MCP endpoint, speaking for one
/// local client. What the server sends goes to the `incoming` channel.
pub struct Client {
    inner: Arc<Inner>,
}

/// One HTTP exchange made with `authorizer`'s credentials: `request`
/// builds it (again for a retry) given the current `Authorization` value.
/// On 401, or 403 `insufficient_scope`, the authorizer is told and the
/// exchange retried: at most one sign-in and one step-up per exchange, so a
/// server that keeps refusing gets an error, not a loop. Any other answer is
/// returned as it is. `url` names the server in connection errors.
pub async fn authorized_exchange(
    authorizer: &dyn Authorizer,
    url: &Url,
    mut request: impl FnMut(Option<HeaderValue>) -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, ClientError> {
    let mut asked_401 = false;
    let mut asked_403 = false;
    loop {
        let resp = request(authorizer.authorization().await)
            .send()
            .await
            .map_err(|e| ClientError::Connect {
                url: url.to_string(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let www = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let challenge = match status {
            StatusCode::UNAUTHORIZED => Challenge::new(401, www.as_deref(), String::new()),
            StatusCode::FORBIDDEN => {
                let c = Challenge::new(403, www.as_deref(), String::new());
                if c.error() != Some("insufficient_scope") {
                    return Ok(resp);
                }
                c
            }
            _ => return Ok(resp),
        };
        let challenge = Challenge {
            body: read_snippet(resp).await,
            ..challenge
        };
        let asked = if status == StatusCode::UNAUTHORIZED {
            &mut asked_401
        } else {
            &mut asked_403
        };
        if *asked {
            return Err(ClientError::Unauthorized {
                status: status.as_u16(),
                source: AuthError::Failed("the server refused the new credentials too".to_owned()),
            });
        }
        *asked = true;
        authorizer
            .unauthorized(&challenge)
            .await
            .map_err(|source| ClientError::Unauthorized {
                status: status.as_u16(),
                source,
            })?;
    }
}

/// The HTTP client for `config`'s server: timeouts, user agent, proxy
/// choice; shared by every transport talking to that server.
pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .user_agent(config.user_agent.clone());
    if !config.proxy_from_env {
        builder = builder.no_proxy();
    }
    if config.url.scheme() == "http" {
        // Nothing to verify on plain HTTP: skip loading the root
        // certificates (several milliseconds of start-up).
        builder = builder.tls_built_in_root_certs(false);
    }
    builder
        .build()
        .map_err(|e| ClientError::Setup(error_chain(&e)))
}

impl Client {
    /// The HTTP client this half uses (to share it with another transport).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn new(
        config: ClientConfig,
        authorizer: Arc<dyn Authorizer>,
        incoming: mpsc::Sender<Message>,
    ) -> Result<Client, ClientError> {
        let http = http_client(&config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                config,
                authorizer,
                incoming,
                state: Mutex::new(State::default()),
                reinit: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Sends one message from the local client. For a request, its answer
    /// (and the messages related to it) go to `incoming`; an `Err` means no
    /// answer will come, and the caller should answer the request itself.
    pub async fn send(&self, message: Message) -> Result<(), ClientError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        match era::detect(&message, None) {
            Era::Modern => self.inner.send_modern(message).await,
            Era::Legacy => self.inner.send_legacy(message).await,
        }
    }

    /// Sends one modern (2026-07-28) request and returns its response
    /// instead of forwarding it (the era bridge answers the local client
    /// itself). The messages the server sends on the request's stream before
    /// the response (progress, logs, subscription notifications) go to
    /// `related`, in order. `extra` headers go with the request (beside the
    /// mirrored ones, see [`modern_headers`]). Dropping the future closes the
    /// stream, which the server treats as cancellation.
    pub async fn request_modern(
        &self,
        request: &Message,
        related: &mpsc::Sender<Message>,
        extra: HeaderMap,
    ) -> Result<Message, ClientError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        self.inner.request_modern(request, related, extra).await
    }

    /// The current `Mcp-Session-Id`, if the server gave one.
    pub fn session_id(&self) -> Option<String> {
        self.inner
            .lock()
            .session
            .as_ref()
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// Ends the session: stops the GET stream and sends DELETE (bounded wait).
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        inner.stop_listener();
        let snap = inner.snapshot();
        if snap.session.is_none() {
            return;
        }
        let delete = inner.exchange(Method::DELETE, None, snap.headers());
        match tokio::time::timeout(inner.config.ack_timeout, delete).await {
            Ok(Ok(resp)) => tracing::debug!(status = %resp.status(), "session deleted"),
            Ok(Err(e)) => tracing::debug!("DELETE of the session failed: {e}"),
            Err(_) => tracing::debug!("DELETE of the session timed out"),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.stop_listener();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            session: st.session.clone(),
            version: st.version.clone(),
            generation: st.generation,
        }
    }

    fn stop_listener(&self) {
        if let Some(task) = self.lock().listener.take() {
            task.abort();
        }
    }

    async fn forward(&self, message: Message) -> Result<(), ClientError> {
        self.incoming
            .send(message)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// One HTTP exchange with the static headers, the authorizer's
    /// `Authorization` and `extra` (see [`authorized_exchange`]).
    async fn exchange(
        &self,
        method: Method,
        body: Option<&Message>,
        extra: HeaderMap,
    ) -> Result<reqwest::Response, ClientError> {
        authorized_exchange(
            self.authorizer.as_ref(),
            &self.config.url,
            |authorization| {
                let mut headers = self.config.headers.clone();
                if let Some(auth) = authorization {
                    headers.insert(header::AUTHORIZATION, auth);
                }
                for (name, value) in &extra {
                    headers.insert(name.clone(), value.clone());
                }
                let mut req = self.http.request(method.clone(), self.config.url.clone());
                if let Some(body) = body {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
                    req = req.body(body.as_str().to_owned());
                } else if !headers.contains_key(header::ACCEPT) {
                    headers.insert(
                        header::ACCEPT,
                        HeaderValue::from_static("text/event-stream"),
                    );
                }
                req.headers(headers)
            },
        )
        .await
    }

    /// A 2xx answer to a message that is not a request.
    async fn acknowledge(&self, resp: reqwest::Response) -> Result<(), ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_snippet(resp).await;
        let detail = match Message::parse(body.as_str()) {
            Ok(m) if m.is_error() => m
                .to_value()
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or(&body)
                .to_owned(),
            _ => body,
        };
        Err(ClientError::Http {
            status: status.as_u16(),
            detail,
        })
    }

    async fn send_modern(self: &Arc<Self>, message: Message) -> Result<(), ClientError> {
        if message.kind() != Kind::Request {
            let extra: HeaderMap = modern_headers(&message).into_iter().collect();
            let resp = tokio::time::timeout(
                self.config.ack_timeout,
                self.exchange(Method::POST, Some(&message), extra),
            )
            .await
            .map_err(|_| ClientError::Transport("timed out".into()))??;
            return self.acknowledge(resp).await;
        }
        let response = self
            .request_modern(&message, &self.incoming, HeaderMap::new())
            .await?;
        self.forward(response).await
    }

    async fn request_modern(
        &self,
        request: &Message,
        related: &mpsc::Sender<Message>,
        mut extra: HeaderMap,
    ) -> Result<Message, ClientError> {
        extra.extend(modern_headers(request));
        let resp = self.exchange(Method::POST, Some(request), extra).await?;
        self.read_answer(resp, request, None, Some(related)).await
    }

    async fn send_legacy(self: &Arc<Self>, message: Message) -> Result<(), ClientError> {
        let kind = message.kind();
        if kind == Kind::Request && message.method() == Some("initialize") {
            return self.initialize(message).await;
        }
        let is_initialized =
            kind == Kind::Notification && message.method() == Some("notifications/initialized");
        if is_initialized {
            self.lock().initialized = Some(message.clone());
        }
        let mut reinitialized = false;
        let (resp, snap) = loop {
            let snap = self.snapshot();
            let post = self.exchange(Method::POST, Some(&message), snap.headers());
            let resp = if kind == Kind::Request {
                post.await?
            } else {
                tokio::time::timeout(self.config.ack_timeout, post)
                    .await
                    .map_err(|_| ClientError::Transport("timed out".into()))??
            };
            if resp.status() == StatusCode::NOT_FOUND && snap.session.is_some() && !reinitialized {
                tracing::info!("the server ended the session (HTTP 404); starting a new one");
                self.reinitialize(snap.generation).await?;
                reinitialized = true;
                if kind == Kind::Response || is_initialized {
                    // An answer to the old session's request has nowhere to
                    // go; `initialized` was just replayed.
                    return Ok(());
                }
                continue;
            }
            break (resp, snap);
        };
        if kind != Kind::Request {
            self.acknowledge(resp).await?;
            if is_initialized {
                self.start_listener();
            }
            return Ok(());
        }
        let response = self
            .read_answer(resp, &message, Some(&snap), Some(&self.incoming))
            .await?;
        self.forward(response).await
    }

    /// The local client's `initialize`: opens a session and remembers the
    /// message for replay.
    async fn initialize(self: &Arc<Self>, message: Message) -> Result<(), ClientError> {
        {
            // A new initialize starts a new session: forget the old one.
            let mut st = self.lock();
            st.initialize = Some(message.clone());
            st.initialized = None;
            st.session = None;
            st.version = None;
            st.generation += 1;
            if let Some(task) = st.listener.take() {
                task.abort();
            }
        }
        let response = self.open_session(&message, true).await?;
        self.forward(response).await
    }

    /// POSTs an `initialize` and adopts the session it opens; returns the
    /// answer (not forwarded, so the session is in place before the local
    /// client can send its next message).
    async fn open_session(
        self: &Arc<Self>,
        message: &Message,
        forward_related: bool,
    ) -> Result<Message, ClientError> {
        let resp = self
            .exchange(Method::POST, Some(message), HeaderMap::new())
            .await?;
        let session = resp.headers().get(SESSION_HEADER).cloned();
        let response = self
            .read_answer(
                resp,
                message,
                None,
                forward_related.then_some(&self.incoming),
            )
            .await
            .map_err(|e| match e {
                ClientError::Http { status, .. } if matches!(status, 400 | 404 | 405) => {
                    ClientError::NotStreamableHttp {
                        url: self.config.url.to_string(),
                        status,
                    }
                }
                e => e,
            })?;
        if response.is_error() {
            return Ok(response);
        }
        let version = response
            .to_value()
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok());
        let session = session.filter(|s| {
            let ok = !s.is_empty() && s.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b));
            if !ok {
                tracing::warn!("ignoring an Mcp-Session-Id that is not visible ASCII");
            }
            ok
        });
        let mut st = self.lock();
        match &session {
            Some(id) => {
                tracing::info!("session established");
                tracing::debug!(session = ?id, "Mcp-Session-Id");
            }
            None => tracing::info!("connected (the server keeps no session)"),
        }
        st.session = session;
        st.version = version;
        st.generation += 1;
        Ok(response)
    }

    /// The server ended the session seen at `generation`: replay the local
    /// client's handshake to open a new one, unless another request already did.
    async fn reinitialize(self: &Arc<Self>, generation: u64) -> Result<(), ClientError> {
        let _one_at_a_time = self.reinit.lock().await;
        let (init, initialized) = {
            let st = self.lock();
            if st.generation != generation {
                return Ok(());
            }
            (st.initialize.clone(), st.initialized.clone())
        };
        let lost = |e: ClientError| ClientError::SessionLost(e.to_string());
        let init = init.ok_or_else(|| {
            ClientError::SessionLost("the local client never sent initialize".into())
        })?;
        self.stop_listener();
        let response = self.open_session(&init, false).await.map_err(lost)?;
        if response.is_error() {
            let why = response
                .to_value()
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned();
            return Err(ClientError::SessionLost(format!(
                "the server refused the replayed initialize: {why}"
            )));
        }
        if let Some(initialized) = initialized {
            let snap = self.snapshot();
            let post = self.exchange(Method::POST, Some(&initialized), snap.headers());
            let resp = tokio::time::timeout(self.config.ack_timeout, post)
                .await
                .map_err(|_| {
                    ClientError::SessionLost("notifications/initialized timed out".into())
                })?
                .map_err(lost)?;
            self.acknowledge(resp).await.map_err(lost)?;
            self.start_listener();
        }
        tracing::info!("new session established; retrying");
        Ok(())
    }

    /// Reads the answer to `request`: returns its response (not yet
    /// forwarded) and forwards the related messages that come before it.
    /// `resume` is the session a broken SSE stream may be resumed in.
    async fn read_answer(
        &self,
        resp: reqwest::Response,
        request: &Message,
        resume: Option<&Snapshot>,
        related: Option<&mpsc::Sender<Message>>,
    ) -> Result<Message, ClientError> {
        let id = request.id_raw().unwrap_or("null");
        let status = resp.status();
        if !status.is_success() {
            let body = read_snippet(resp).await;
            return answer_from_error(status, &body, id);
        }
        if is_sse(&resp) {
            return self.read_stream(resp, id, resume, related).await;
        }
        let ct = content_type(&resp);
        if !(ct.is_empty() || ct.starts_with("application/json")) || status != StatusCode::OK {
            return Err(ClientError::ContentType(if ct.is_empty() {
                format!("(none, HTTP {})", status.as_u16())
            } else {
                ct
            }));
        }
        let body = read_bounded(resp, self.config.max_message_bytes).await?;
        let text = String::from_utf8(body)
            .map_err(|_| ClientError::BadMessage("the body is not UTF-8".into()))?;
        let message = Message::parse(text).map_err(|e| ClientError::BadMessage(e.to_string()))?;
        match message.id_raw() {
            Some(rid) if message.kind() == Kind::Response && same_id(rid, id) => Ok(message),
            _ => Err(ClientError::BadMessage(
                "the JSON answer is not the response to the request".into(),
            )),
        }
    }

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        id: &str,
        resume: Option<&Snapshot>,
        related: Option<&mpsc::Sender<Message>>,
    ) -> Result<Message, ClientError> {
        let limit = self.config.max_message_bytes;
        let policy = self.config.resume;
        let mut cursor = Cursor::default();
        let mut stream = events(resp, limit);
        let mut attempts = 0u32;
        loop {
            let last_error = match stream.next().await {
                Some(Ok(ev)) => {
                    attempts = 0;
                    match cursor.accept(ev) {
                        Ok(Some(msg)) => {
                            if msg.kind() == Kind::Response
                                && msg.id_raw().is_some_and(|rid| same_id(rid, id))
                            {
                                return Ok(msg);
                            }
                            if let Some(related) = related {
                                related.send(msg).await.map_err(|_| ClientError::Closed)?;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!("skipping an SSE event: {e}"),
                    }
                    continue;
                }
                Some(Err(e @ (ClientError::TooLarge { .. } | ClientError::BadMessage(_)))) => {
                    return Err(e)
                }
                Some(Err(e)) => e.to_string(),
                None => "the server closed the stream".to_owned(),
            };
            // The stream broke before the response: resume it, if we can.
            let (Some(snap), Some(last_id)) = (resume, cursor.last_id.clone()) else {
                return Err(ClientError::StreamEnded);
            };
            tracing::debug!("SSE stream broke ({last_error}); resuming");
            let mut last_error = last_error;
            stream = loop {
                if attempts >= policy.max_attempts {
                    return Err(ClientError::ResumeFailed {
                        attempts,
                        last: last_error,
                    });
                }
                tokio::time::sleep(policy.delay(cursor.retry, attempts)).await;
                attempts += 1;
                let mut headers = snap.headers();
                headers.insert(LAST_EVENT_ID, last_id.clone());
                match self.exchange(Method::GET, None, headers).await {
                    Ok(r) if r.status().is_success() && is_sse(&r) => break events(r, limit),
                    Ok(r) => {
                        let status = r.status();
                        last_error = format!("GET with Last-Event-ID answered HTTP {status}");
                        if matches!(status.as_u16(), 400 | 404 | 405) {
                            // The session or the stream is gone; retrying will not help.
                            return Err(ClientError::ResumeFailed {
                                attempts,
                                last: last_error,
                            });
                        }
                    }
                    Err(e @ ClientError::Unauthorized { .. }) => return Err(e),
                    Err(e) => last_error = e.to_string(),
                }
            };
        }
    }

    /// Opens the GET stream for server-initiated messages, once per session.
    fn start_listener(self: &Arc<Self>) {
        let mut st = self.lock();
        if st.listener.is_some() || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let snap = Snapshot {
            session: st.session.clone(),
            version: st.version.clone(),
            generation: st.generation,
        };
        let this = self.clone();
        st.listener = Some(tokio::spawn(async move { this.listen(snap).await }).abort_handle());
    }

    async fn listen(self: Arc<Self>, snap: Snapshot) {
        let policy = self.config.resume;
        let mut cursor = Cursor::default();
        let mut failures = 0u32;
        loop {
            let mut headers = snap.headers();
            if let Some(id) = &cursor.last_id {
                headers.insert(LAST_EVENT_ID, id.clone());
            }
            match self.exchange(Method::GET, None, headers).await {
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!("the server offers no GET stream (405)");
                    return;
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    tracing::debug!("GET stream: the session has ended (404)");
                    return;
                }
                Ok(r) if r.status().is_success() && is_sse(&r) => {
                    let mut stream = events(r, self.config.max_message_bytes);
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(ev) => {
                                failures = 0;
                                match cursor.accept(ev) {
                                    Ok(Some(msg)) => {
                                        if self.forward(msg).await.is_err() {
                                            return;
                                        }
                                    }
                                    Ok(None) => {}
                                    Err(e) => tracing::warn!("GET stream: skipping an event: {e}"),
                                }
                            }
                            Err(e) => {
                                tracing::debug!("GET stream broke: {e}");
                                break;
                            }
                        }
                    }
                }
                Ok(r) => {
                    failures += 1;
                    tracing::debug!(status = %r.status(), "GET stream refused");
                }
                Err(e @ ClientError::Unauthorized { .. }) => {
                    tracing::warn!("GET stream: {e}");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!("GET stream: {e}");
                }
            }
            if failures >= policy.max_attempts {
                tracing::warn!(
                    "the GET stream could not be reopened after {failures} attempts; \
                     server-initiated messages outside requests will not arrive"
                );
                return;
            }
            tokio::time::sleep(policy.delay(cursor.retry, failures)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    #[test]
    fn backoff_respects_retry_and_caps() {
        let b = Backoff {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(None, 0), Duration::from_millis(100));
        assert_eq!(b.delay(None, 1), Duration::from_millis(200));
        assert_eq!(b.delay(None, 3), Duration::from_millis(800));
        assert_eq!(b.delay(None, 4), Duration::from_secs(1));
        assert_eq!(b.delay(None, 400), Duration::from_secs(1));
        // The server's retry wins over our initial wait, and is never cut short.
        assert_eq!(
            b.delay(Some(Duration::from_millis(30)), 0),
            Duration::from_millis(30)
        );
        assert_eq!(
            b.delay(Some(Duration::from_secs(5)), 3),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn parses_www_authenticate() {
        let (scheme, params) = parse_www_authenticate(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="a b",error=insufficient_scope"#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        let c = Challenge {
            status: 401,
            scheme: Some(scheme),
            params,
            body: String::new(),
        };
        assert_eq!(
            c.resource_metadata(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope(), Some("a b"));
        assert_eq!(c.error(), Some("insufficient_scope"));

        assert_eq!(
            parse_www_authenticate("Bearer"),
            Some(("Bearer".into(), vec![]))
        );
        assert_eq!(parse_www_authenticate("   "), None);
        let (_, p) =
            parse_www_authenticate(r#"Bearer realm="a \"q\" b", Basic realm="x""#).unwrap();
        assert_eq!(p, vec![("realm".to_owned(), r#"a "q" b"#.to_owned())]);
        let c = Challenge::new(401, Some(r#"Bearer Scope="x""#), String::new());
        assert_eq!(c.scope(), Some("x"));
        let unterminated = Challenge::new(401, Some(r#"Bearer error="oops"#), String::new());
        assert_eq!(unterminated.error(), Some("oops"));
    }

    fn msg(text: &str) -> Message {
        Message::parse(text).unwrap()
    }

    #[test]
    fn modern_requests_get_mirrored_headers() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"échø","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        );
        let h: HeaderMap = modern_headers(&m).into_iter().collect();
        assert_eq!(h[VERSION_HEADER], "2026-07-28");
        assert_eq!(h[METHOD_HEADER], "tools/call");
        let name = h[NAME_HEADER].to_str().unwrap();
        assert!(name.starts_with("=?base64?"));
        assert_eq!(era::decode_header_value(name).as_deref(), Some("échø"));

        let read = msg(
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"test://x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        let h: HeaderMap = modern_headers(&read).into_iter().collect();
        assert_eq!(h[NAME_HEADER], "test://x");

        let list = msg(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        let h: HeaderMap = modern_headers(&list).into_iter().collect();
        assert_eq!(h[METHOD_HEADER], "tools/list");
        assert!(!h.contains_key(NAME_HEADER));
        assert!(!h.contains_key(VERSION_HEADER));
    }

    // Found by fuzz/era_headers: with a number too large for f64 (or a lone
    // surrogate, or deep nesting) in `arguments`, neither our client nor our
    // server could read `params.name`: no Mcp-Name was sent and the server
    // refused the request (-32020).
    #[test]
    fn odd_arguments_keep_the_name_header() {
        for arguments in [r#"666666e66666"#, r#"{"t":"\ude00"}"#] {
            let m = msg(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}},"name":"p","arguments":{arguments}}}}}"#
            ));
            let h: HeaderMap = modern_headers(&m).into_iter().collect();
            assert_eq!(h[NAME_HEADER], "p");
            let version = h[VERSION_HEADER].to_str().ok();
            assert!(crate::server::validate_modern(&h, &m, version).is_ok());
        }
    }

    #[test]
    fn matches_ids_by_value() {
        assert!(same_id("1", "1"));
        assert!(same_id(r#""a""#, r#""a""#));
        assert!(same_id(r#""\u0061""#, r#""a""#));
        assert!(!same_id("1", r#""1""#));
        assert!(!same_id("1", "2"));
    }

    #[test]
    fn http_errors_become_answers_when_they_are_json_rpc() {
        let e = answer_from_error(
            StatusCode::NOT_FOUND,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Session not found"}}"#,
            "7",
        )
        .unwrap();
        assert_eq!(e.id_raw(), Some("7"));
        assert_eq!(e.error_code(), Some(-32000));
        assert!(e.as_str().contains("Session not found (HTTP 404)"));

        let own = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32020,"message":"Header mismatch"}}"#;
        assert_eq!(
            answer_from_error(StatusCode::BAD_REQUEST, own, "7")
                .unwrap()
                .as_str(),
            own
        );
        match answer_from_error(StatusCode::BAD_GATEWAY, "<html>nope</html>", "7") {
            Err(ClientError::Http {
                status: 502,
                detail,
            }) => assert_eq!(detail, "<html>nope</html>"),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn parse_events(chunks: &[&'static str]) -> Vec<Event> {
        let source = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::convert::Infallible>(c.as_bytes()))
                .collect::<Vec<_>>(),
        );
        EventStream::new(source).try_collect().await.unwrap()
    }

    /// The events `events()` decodes from a body delivered in `chunks`.
    async fn client_events(chunks: &[&'static [u8]]) -> Vec<Result<Event, String>> {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c)))
            .collect();
        let stream = futures_util::stream::iter(chunks);
        let body = reqwest::Body::wrap_stream(stream);
        let resp = reqwest::Response::from(http::Response::new(body));
        events(resp, 1 << 20)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    // Found by fuzz/sse: a stream that starts with a UTF-8 byte order mark
    // (which SSE allows) panicked the decoder (eventsource-stream 0.2.3
    // slices the 3-byte BOM at byte 1), so the request never got an answer.
    #[tokio::test]
    async fn a_byte_order_mark_is_skipped_not_a_panic() {
        let data = |evs: Vec<Result<Event, String>>| -> Vec<String> {
            evs.into_iter().map(|e| e.unwrap().data).collect()
        };
        let body: &[&[u8]] = &[b"\xef\xbb\xbfdata: one\n\ndata: two\n\n"];
        assert_eq!(data(client_events(body).await), ["one", "two"]);
        // Split anywhere inside the mark.
        let split: &[&[u8]] = &[b"\xef", b"\xbb", b"", b"\xbfdata: one\n\n"];
        assert_eq!(data(client_events(split).await), ["one"]);
        // Only one mark is the format's: a second one starts a field name
        // (an unknown field, ignored), as the HTML standard says.
        let two: &[&[u8]] = &[b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n"];
        assert_eq!(data(client_events(two).await), ["y"]);
    }

    #[tokio::test]
    async fn cursor_tracks_ids_retry_and_messages() {
        // Our server's own framing: a priming event, events split across
        // chunks, keep-alive comments, CRLF line ends.
        let evs = parse_events(&[
            "id: 3_0\nretry: 250\ndata: \n\n",
            ": keep-alive\n\n",
            "id: 3_1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",",
            "\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            "id: 3_2\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{}}\r\n\r\n",
        ])
        .await;
        let mut cursor = Cursor::default();
        let mut messages = Vec::new();
        for ev in evs {
            if let Some(m) = cursor.accept(ev).unwrap() {
                messages.push(m);
            }
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].method(), Some("notifications/progress"));
        assert_eq!(messages[1].kind(), Kind::Response);
        assert_eq!(messages[1].id_raw(), Some("1"));
        assert_eq!(cursor.last_id.as_ref().unwrap(), "3_2");
        assert_eq!(cursor.retry, Some(Duration::from_millis(250)));

        let mut c = Cursor::default();
        let bad = Event {
            event: "message".into(),
            data: "{nope".into(),
            id: "9_9".into(),
            retry: None,
        };
        assert!(matches!(c.accept(bad), Err(ClientError::BadMessage(_))));
        assert_eq!(c.last_id.as_ref().unwrap(), "9_9");
        let other = Event {
            event: "endpoint".into(),
            data: "/messages?x=1".into(),
            id: String::new(),
            retry: None,
        };
        assert!(c.accept(other).unwrap().is_none());
    }

    #[test]
    fn errors_map_to_json_rpc_codes() {
        assert_eq!(ClientError::StreamEnded.code(), codes::SERVER_ERROR);
        assert_eq!(
            ClientError::BadMessage("x".into()).code(),
            codes::INTERNAL_ERROR
        );
        let e = ClientError::Http {
            status: 500,
            detail: String::new(),
        };
        assert_eq!(e.to_string(), "the MCP server answered HTTP 500");
    }
}
