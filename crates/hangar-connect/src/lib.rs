//! `hangar connect`: the stdio shim. A local MCP client that speaks only
//! stdio (Claude Desktop, …) runs `hangar connect URL`; every line it writes
//! on our stdin goes to the remote Streamable HTTP server through the
//! transport's client half, and everything the server sends comes back as
//! lines on our stdout. Legacy HTTP+SSE servers (2024-11-05) are reached
//! through [`sse`]; `--transport` picks one or the other, or tries one then
//! the other ([`remote`]).
//!
//! * stdio framing: newline-delimited JSON-RPC, lines bounded by
//!   [`Options::max_line_bytes`]; stdout carries nothing but protocol (logs
//!   go to stderr through `tracing`).
//! * Requests run concurrently, each in its own task, so a server→client
//!   request (sampling, elicitation, roots) arriving on a request's SSE
//!   stream can be answered while that request is in flight; the client's
//!   answer is POSTed back. Notifications and responses are sent in order.
//! * A request that cannot be answered (server unreachable, a failed
//!   sign-in, broken stream) gets a JSON-RPC error with its id.
//! * Sign-in: on a 401 the transport asks [`auth::OAuth`] (OAuth 2.1 in the
//!   browser, see `auth`); with `--header "Authorization: …"` there is no
//!   OAuth ([`auth::StaticToken`]).
//! * `notifications/cancelled` also stops our own wait for the request; for
//!   a modern (2026-07-28) request, closing its stream *is* the cancellation,
//!   so the notification is not POSTed.
//! * When stdin closes (or on SIGTERM, through `shutdown`), in-flight
//!   requests are dropped and the session is DELETEd.
//! * A legacy host on a modern-only (2026-07-28) server goes through the
//!   era bridge ([`bridge`], `--protocol`): the host's `initialize` decides,
//!   and from then on its messages are translated instead of forwarded.

pub mod auth;
pub mod bridge;
pub mod browser;
pub mod oauth;
pub mod options;
pub mod params;
pub mod remote;
pub mod sse;
pub mod stdio;
pub mod store;

use mcp_transport::lines::{next_line, Line};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use bridge::ProtocolMode;
use bridge::{Bridge, Initialize};
pub use mcp_transport::client::{Authorizer, ClientConfig, Url};
use mcp_transport::client::{Client, ClientError};
use mcp_transport::era::{self, Era};
use mcp_transport::{Kind, Message};
pub use remote::{Remote, TransportMode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Bounds of the stdio side.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest line accepted on stdin.
    pub max_line_bytes: usize,
    /// Messages waiting for stdout before senders wait.
    pub out_queue: usize,
    /// `--transport`: Streamable HTTP, legacy HTTP+SSE, or one then the other.
    pub transport: TransportMode,
    /// `--protocol`: whether a legacy host may be bridged to a modern server.
    pub protocol: ProtocolMode,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_line_bytes: 16 * 1024 * 1024,
            out_queue: 1024,
            transport: TransportMode::default(),
            protocol: ProtocolMode::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The shim: one remote endpoint, one local client.
pub struct Shim {
    client: Arc<Remote>,
    bridge: Arc<Bridge>,
    out_tx: mpsc::Sender<Message>,
    out_rx: mpsc::Receiver<Message>,
    options: Options,
}

type Inflight = Arc<Mutex<HashMap<String, (AbortHandle, Era)>>>;

impl Shim {
    pub fn new(
        config: ClientConfig,
        authorizer: Arc<dyn Authorizer>,
        options: Options,
    ) -> Result<Shim, ConnectError> {
        let (out_tx, out_rx) = mpsc::channel(options.out_queue.max(1));
        let resume = config.resume;
        let client = Arc::new(Remote::new(
            config,
            authorizer,
            out_tx.clone(),
            options.transport,
        )?);
        let bridge = Arc::new(Bridge::new(
            client.http().clone(),
            out_tx.clone(),
            options.protocol,
            options.transport,
            resume,
        ));
        Ok(Shim {
            client,
            bridge,
            out_tx,
            out_rx,
            options,
        })
    }

    /// The Streamable HTTP client half (for its session id, in tests and logs).
    pub fn client(&self) -> &Arc<Client> {
        self.client.http()
    }

    /// Serves until `input` ends or `shutdown` resolves, then ends the session.
    pub async fn run<R, W>(self, input: R, output: W, shutdown: impl Future<Output = ()>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Shim {
            client,
            bridge,
            out_tx,
            out_rx,
            options,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn(write_lines(out_rx, output, stop_rx));
        let inflight: Inflight = Arc::default();
        let upstream = Upstream {
            remote: client.clone(),
            bridge: bridge.clone(),
        };
        tokio::select! {
            _ = read_lines(&upstream, &out_tx, &inflight, input, options.max_line_bytes) => {
                tracing::debug!("stdin closed; ending the session");
            }
            _ = shutdown => tracing::debug!("shutting down; ending the session"),
        }
        for (_, (task, _)) in lock(&inflight).drain() {
            task.abort();
        }
        bridge.stop();
        client.close().await;
        // The writer writes what is queued, then ends (aborted tasks may
        // still hold senders for a moment: do not wait for them).
        let _ = stop_tx.send(());
        drop(out_tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
}

/// Where the host's messages go: the remote as they are, or the era bridge.
struct Upstream {
    remote: Arc<Remote>,
    bridge: Arc<Bridge>,
}

async fn read_lines<R: AsyncRead + Unpin>(
    upstream: &Upstream,
    out: &mpsc::Sender<Message>,
    inflight: &Inflight,
    input: R,
    max_line: usize,
) {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let parsed = match next_line(&mut input, &mut buf, max_line).await {
            Ok(Line::Eof) => return,
            Err(e) => {
                tracing::warn!("cannot read stdin: {e}");
                return;
            }
            Ok(Line::TooLong) => {
                tracing::warn!("a line on stdin is longer than {max_line} bytes; dropped");
                Err((
                    mcp_transport::codes::INVALID_REQUEST,
                    format!("message longer than {max_line} bytes"),
                ))
            }
            Ok(Line::Complete) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match std::str::from_utf8(&buf) {
                    Ok(text) => Message::parse(text).map_err(|e| (e.code(), e.to_string())),
                    Err(_) => Err((
                        mcp_transport::codes::PARSE_ERROR,
                        "parse error: the line is not UTF-8".to_owned(),
                    )),
                }
            }
        };
        let message = match parsed {
            Ok(m) => m,
            Err((code, why)) => {
                tracing::warn!("not a JSON-RPC message on stdin: {why}");
                let _ = out
                    .send(Message::error_response(None, code, &why, None))
                    .await;
                continue;
            }
        };
        let client = &upstream.remote;
        let bridge = &upstream.bridge;
        let bridged = bridge.takes(&message);
        match message.kind() {
            Kind::Request if bridged => spawn_bridged(upstream, out, inflight, message),
            Kind::Request => spawn_request(client, out, inflight, message),
            Kind::Notification if message.method() == Some("notifications/cancelled") => {
                let era = cancel(inflight, &message);
                // A modern request is cancelled by closing its stream (done
                // above); the 2026-07-28 transport has no client notifications.
                if era != Some(Era::Modern) && !bridged {
                    send_in_order(client, message).await;
                }
            }
            Kind::Notification if bridged => bridge.notify(message).await,
            Kind::Response if bridged => bridge.respond(message),
            _ => send_in_order(client, message).await,
        }
    }
}

/// Sends a notification or a response before reading the next line, so the
/// server sees them in the order the client wrote them.
async fn send_in_order(client: &Remote, message: Message) {
    let what = message.method().unwrap_or("response").to_owned();
    if let Err(e) = client.send(message).await {
        tracing::warn!("could not deliver {what}: {e}");
    }
}

fn spawn_request(
    client: &Arc<Remote>,
    out: &mpsc::Sender<Message>,
    inflight: &Inflight,
    message: Message,
) {
    let id = message.id_raw().unwrap_or("null").to_owned();
    let era = era::detect(&message, None);
    let (client, out, map) = (client.clone(), out.clone(), inflight.clone());
    let key = id.clone();
    // Hold the table while spawning so the task cannot remove its entry
    // before it is inserted.
    let mut table = lock(inflight);
    let task = tokio::spawn(async move {
        let method = message.method().unwrap_or_default().to_owned();
        if let Err(e) = client.send(message).await {
            tracing::warn!("{method} failed: {e}");
            let _ = out
                .send(Message::error_response(
                    Some(&key),
                    e.code(),
                    &e.to_string(),
                    None,
                ))
                .await;
        }
        lock(&map).remove(&key);
    });
    table.insert(id, (task.abort_handle(), era));
}

/// A request the era bridge handles: the host's `initialize` (which may
/// still go to the server as it is) or, once bridging, any request.
fn spawn_bridged(
    upstream: &Upstream,
    out: &mpsc::Sender<Message>,
    inflight: &Inflight,
    message: Message,
) {
    let id = message.id_raw().unwrap_or("null").to_owned();
    let (remote, bridge, out, map) = (
        upstream.remote.clone(),
        upstream.bridge.clone(),
        out.clone(),
        inflight.clone(),
    );
    let key = id.clone();
    let mut table = lock(inflight);
    let task = tokio::spawn(async move {
        let method = message.method().unwrap_or_default().to_owned();
        let sent = if method == "initialize" {
            match bridge.initialize(&message).await {
                Ok(Initialize::Forward) => remote.send(message).await,
                Ok(Initialize::Answer(answer)) => {
                    out.send(answer).await.map_err(|_| ClientError::Closed)
                }
                Err(e) => Err(e),
            }
        } else {
            bridge.request(message).await
        };
        if let Err(e) = sent {
            tracing::warn!("{method} failed: {e}");
            let _ = out
                .send(Message::error_response(
                    Some(&key),
                    e.code(),
                    &e.to_string(),
                    None,
                ))
                .await;
        }
        lock(&map).remove(&key);
    });
    // Cancelling a bridged request closes its modern stream: nothing to POST.
    table.insert(id, (task.abort_handle(), Era::Modern));
}

/// Stops waiting for the request a `notifications/cancelled` names; returns
/// that request's era, if it was in flight.
fn cancel(inflight: &Inflight, message: &Message) -> Option<Era> {
    let id = message.params()?.get("requestId")?.to_string();
    let (task, era) = lock(inflight).remove(&id)?;
    task.abort();
    Some(era)
}

/// Writes each message as one line; flushes when the queue is empty. Ends
/// when every sender is gone, or on `stop` after writing what is queued.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Message>,
    mut output: W,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut stopping = false;
    loop {
        let first = if stopping {
            match rx.try_recv() {
                Ok(m) => m,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = &mut stop => {
                    stopping = true;
                    continue;
                }
            }
        };
        buf.clear();
        frame(&first, &mut buf);
        while let Ok(m) = rx.try_recv() {
            frame(&m, &mut buf);
        }
        if output.write_all(&buf).await.is_err() || output.flush().await.is_err() {
            tracing::debug!("stdout closed");
            return;
        }
    }
}

/// Appends `m` as one stdio line. Raw line breaks can only be JSON
/// whitespace (strings cannot hold them), so they become spaces; every other
/// byte is kept.
pub fn frame(m: &Message, buf: &mut Vec<u8>) {
    let text = m.as_str().as_bytes();
    if text.iter().any(|&b| b == b'\n' || b == b'\r') {
        buf.extend(
            text.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        buf.extend_from_slice(text);
    }
    buf.push(b'\n');
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_one_line_per_message() {
        let mut buf = Vec::new();
        let pretty = Message::parse(
            "{\r\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\"t\": \"a\\nb\"}\n}",
        )
        .unwrap();
        frame(&pretty, &mut buf);
        let plain = Message::parse(r#"{"jsonrpc":"2.0","method":"x"}"#).unwrap();
        frame(&plain, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["result"]["t"], "a\nb");
        assert_eq!(lines[1], plain.as_str());
    }
}
