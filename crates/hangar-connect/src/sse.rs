//! The legacy HTTP+SSE transport (protocol 2024-11-05), for servers that
//! predate Streamable HTTP: `GET URL` opens an SSE stream whose first event,
//! `endpoint`, names where to POST messages (same origin as the URL); every
//! answer and server-initiated message arrives on that stream as a `message`
//! event. POSTs are only acknowledged (202).
//!
//! * The local client's `initialize` opens a fresh stream. When the stream
//!   breaks, requests still waiting get a JSON-RPC error, and the next
//!   message opens a new stream and replays the local client's
//!   `initialize` and `notifications/initialized` (their answer is not
//!   forwarded): the session lives as long as the stream, so this is how
//!   the client survives a server restart.
//! * Sign-in: the same [`Authorizer`] seam as Streamable HTTP; a 401 (or a
//!   403 `insufficient_scope`) on the GET or a POST asks it once, then retries.
//! * Bounds: each event at most [`ClientConfig::max_message_bytes`]; the
//!   `endpoint` event within [`ClientConfig::connect_timeout`]; POSTs and
//!   the replayed handshake within [`ClientConfig::ack_timeout`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method};
use mcp_transport::client::{
    self, authorized_exchange, Authorizer, ClientConfig, ClientError, Url,
};
use mcp_transport::{Kind, Message};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// A legacy HTTP+SSE client for one server, speaking for one local client.
pub struct SseClient {
    inner: Arc<Inner>,
}

struct Conn {
    endpoint: Url,
    alive: Arc<AtomicBool>,
    reader: AbortHandle,
}

#[derive(Default)]
struct State {
    /// Request ids POSTed and not answered yet (answered with an error if
    /// the stream breaks).
    pending: HashSet<String>,
    /// Answers we wait for ourselves (the replayed `initialize`).
    waiters: HashMap<String, oneshot::Sender<Message>>,
    initialize: Option<Message>,
    initialized: Option<Message>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    authorizer: Arc<dyn Authorizer>,
    incoming: mpsc::Sender<Message>,
    state: Mutex<State>,
    /// The current stream; held across (re)connecting so only one happens.
    conn: tokio::sync::Mutex<Option<Conn>>,
    closed: AtomicBool,
}

impl SseClient {
    /// `http` is the Streamable HTTP half's client (one connection pool and
    /// one set of root certificates per server).
    pub fn new(
        config: ClientConfig,
        authorizer: Arc<dyn Authorizer>,
        incoming: mpsc::Sender<Message>,
        http: reqwest::Client,
    ) -> SseClient {
        SseClient {
            inner: Arc::new(Inner {
                http,
                config,
                authorizer,
                incoming,
                state: Mutex::default(),
                conn: tokio::sync::Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Sends one message from the local client. For a request, `Ok` means
    /// the server accepted it: its answer arrives on the stream and goes to
    /// `incoming` (or an error answer does, if the stream breaks first).
    pub async fn send(&self, message: Message) -> Result<(), ClientError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        let kind = message.kind();
        let endpoint = if kind == Kind::Request && message.method() == Some("initialize") {
            {
                let mut st = inner.lock();
                st.initialize = Some(message.clone());
                st.initialized = None;
            }
            // A new initialize starts a new session: a new stream.
            let mut conn = inner.conn.lock().await;
            if let Some(old) = conn.take() {
                old.reader.abort();
            }
            let fresh = inner.connect().await?;
            let endpoint = fresh.endpoint.clone();
            *conn = Some(fresh);
            endpoint
        } else {
            if kind == Kind::Notification && message.method() == Some("notifications/initialized") {
                inner.lock().initialized = Some(message.clone());
            }
            inner.endpoint().await?
        };
        let id = (kind == Kind::Request).then(|| message.id_raw().unwrap_or("null").to_owned());
        if let Some(id) = &id {
            inner.lock().pending.insert(id.clone());
        }
        let posted = inner.post(&endpoint, &message).await;
        if let (Err(_), Some(id)) = (&posted, &id) {
            inner.lock().pending.remove(id);
        }
        posted
    }

    /// Stops the stream (the legacy transport has no DELETE).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(conn) = self.inner.conn.lock().await.take() {
            conn.reader.abort();
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        if let Ok(mut conn) = self.inner.conn.try_lock() {
            if let Some(c) = conn.take() {
                c.reader.abort();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The POST endpoint of a live stream; reconnects (replaying the
    /// handshake) when the stream is gone.
    async fn endpoint(self: &Arc<Self>) -> Result<Url, ClientError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            if c.alive.load(Ordering::SeqCst) {
                return Ok(c.endpoint.clone());
            }
            tracing::info!("the SSE stream ended; opening a new one");
        }
        let fresh = self.connect().await?;
        let endpoint = fresh.endpoint.clone();
        *conn = Some(fresh);
        self.replay(&endpoint)
            .await
            .map_err(|e| ClientError::SessionLost(e.to_string()))?;
        Ok(endpoint)
    }

    /// Replays the local client's handshake on a new stream.
    async fn replay(&self, endpoint: &Url) -> Result<(), ClientError> {
        let (init, initialized) = {
            let st = self.lock();
            (st.initialize.clone(), st.initialized.clone())
        };
        let Some(init) = init else {
            return Ok(());
        };
        let id = init.id_raw().unwrap_or("null").to_owned();
        let (tx, rx) = oneshot::channel();
        self.lock().waiters.insert(id.clone(), tx);
        let answered = async {
            self.post(endpoint, &init).await?;
            tokio::time::timeout(self.config.ack_timeout, rx)
                .await
                .map_err(|_| ClientError::Transport("no answer to initialize".into()))?
                .map_err(|_| ClientError::StreamEnded)
        }
        .await;
        self.lock().waiters.remove(&id);
        let answer = answered?;
        if answer.is_error() {
            return Err(ClientError::BadMessage(format!(
                "the server refused the replayed initialize: {}",
                answer.as_str()
            )));
        }
        if let Some(initialized) = initialized {
            self.post(endpoint, &initialized).await?;
        }
        tracing::info!("new SSE session established");
        Ok(())
    }

    /// One HTTP exchange with the static headers and the authorizer's
    /// `Authorization`, signing in or stepping up as the Streamable HTTP
    /// half does ([`authorized_exchange`]).
    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Message>,
    ) -> Result<reqwest::Response, ClientError> {
        authorized_exchange(self.authorizer.as_ref(), url, |authorization| {
            let mut headers: HeaderMap = self.config.headers.clone();
            if let Some(auth) = authorization {
                headers.insert(header::AUTHORIZATION, auth);
            }
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(body) = body {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                req = req.body(body.as_str().to_owned());
            } else {
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("text/event-stream"),
                );
            }
            req.headers(headers)
        })
        .await
    }

    /// POSTs a message to the endpoint; any 2xx is an acknowledgement.
    async fn post(&self, endpoint: &Url, message: &Message) -> Result<(), ClientError> {
        let resp = tokio::time::timeout(
            self.config.ack_timeout,
            self.exchange(Method::POST, endpoint, Some(message)),
        )
        .await
        .map_err(|_| ClientError::Transport("the POST timed out".into()))??;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(ClientError::Http {
            status: status.as_u16(),
            detail: mcp_transport::client::read_snippet(resp).await,
        })
    }

    /// Opens the SSE stream and waits for its `endpoint` event.
    async fn connect(self: &Arc<Self>) -> Result<Conn, ClientError> {
        let url = self.config.url.clone();
        let resp = tokio::time::timeout(
            self.config.ack_timeout,
            self.exchange(Method::GET, &url, None),
        )
        .await
        .map_err(|_| ClientError::Transport("the SSE GET timed out".into()))??;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::Http {
                status: status.as_u16(),
                detail: mcp_transport::client::read_snippet(resp).await,
            });
        }
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !ct.starts_with("text/event-stream") {
            return Err(ClientError::ContentType(ct));
        }
        let (tx, rx) = oneshot::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn(self.clone().read(resp, tx, alive.clone())).abort_handle();
        let endpoint = match tokio::time::timeout(self.config.connect_timeout, rx).await {
            Ok(Ok(Ok(endpoint))) => endpoint,
            Ok(Ok(Err(e))) => {
                reader.abort();
                return Err(e);
            }
            Ok(Err(_)) => {
                reader.abort();
                return Err(ClientError::StreamEnded);
            }
            Err(_) => {
                reader.abort();
                return Err(ClientError::Transport(
                    "the SSE stream sent no endpoint event".into(),
                ));
            }
        };
        tracing::info!("connected over the legacy HTTP+SSE transport");
        tracing::debug!(%endpoint, "SSE message endpoint");
        Ok(Conn {
            endpoint,
            alive,
            reader,
        })
    }

    /// Reads the stream: the `endpoint` event first, then messages.
    async fn read(
        self: Arc<Self>,
        resp: reqwest::Response,
        endpoint_tx: oneshot::Sender<Result<Url, ClientError>>,
        alive: Arc<AtomicBool>,
    ) {
        // The same bounded decoder as the Streamable HTTP half.
        let mut events = client::events(resp, self.config.max_message_bytes);
        let mut endpoint_tx = Some(endpoint_tx);
        let why = loop {
            let ev = match events.next().await {
                None => break "the server closed the SSE stream".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(ev)) => ev,
            };
            match ev.event.as_str() {
                "endpoint" => {
                    let parsed = self.endpoint_from(ev.data.trim());
                    match endpoint_tx.take() {
                        Some(tx) => {
                            let failed = parsed.is_err();
                            let _ = tx.send(parsed);
                            if failed {
                                break "bad endpoint event".to_owned();
                            }
                        }
                        None => tracing::debug!("ignoring a second endpoint event"),
                    }
                }
                "message" => match Message::parse(ev.data) {
                    Ok(m) => {
                        if self.deliver(m).await.is_err() {
                            break "the local client is gone".to_owned();
                        }
                    }
                    Err(e) => tracing::warn!("skipping an SSE event that is not JSON-RPC: {e}"),
                },
                other => tracing::debug!("ignoring an SSE event of type {other:?}"),
            }
        };
        tracing::info!("SSE stream ended: {why}");
        alive.store(false, Ordering::SeqCst);
        // Requests still waiting will get no answer on this stream.
        let pending: Vec<String> = {
            let mut st = self.lock();
            st.waiters.clear();
            st.pending.drain().collect()
        };
        for id in pending {
            let e = Message::error_response(
                Some(&id),
                mcp_transport::codes::SERVER_ERROR,
                &format!("the SSE stream to the MCP server ended before the answer ({why})"),
                None,
            );
            if self.incoming.send(e).await.is_err() {
                return;
            }
        }
    }

    /// Resolves the `endpoint` event against the server URL; it must stay on
    /// the same origin (credentials go there).
    fn endpoint_from(&self, data: &str) -> Result<Url, ClientError> {
        let url =
            self.config.url.join(data).map_err(|e| {
                ClientError::BadMessage(format!("bad endpoint event {data:?}: {e}"))
            })?;
        if url.origin() != self.config.url.origin() {
            return Err(ClientError::BadMessage(format!(
                "the endpoint event names another origin ({}); refusing to send messages there",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// Hands a message from the stream to whoever waits for it.
    async fn deliver(&self, m: Message) -> Result<(), ClientError> {
        if m.kind() == Kind::Response {
            let id = m.id_raw().unwrap_or("null").to_owned();
            let waiter = {
                let mut st = self.lock();
                st.pending.remove(&id);
                st.waiters.remove(&id)
            };
            if let Some(w) = waiter {
                let _ = w.send(m);
                return Ok(());
            }
        }
        self.incoming.send(m).await.map_err(|_| ClientError::Closed)
    }
}
