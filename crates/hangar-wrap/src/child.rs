//! One stdio MCP server process, multiplexed.
//!
//! Several logical sessions may share a child (`--shared-child`, and the
//! child that answers modern stateless requests), so every request we send
//! gets a fresh numeric id and the child's answer is mapped back to the
//! client's original id. Only the id bytes change; the rest of every message
//! passes through as it came (see [`Message::with_id`]).
//!
//! The child's own messages are routed by what they say about themselves:
//! a response by its id; a progress notification by its `progressToken`; a
//! subscription notification by its subscription id; a server→client request
//! or a log message to the most recent request still in flight (stdio carries
//! no better hint); anything else to the sessions' standalone streams.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_transport::era::meta;
use mcp_transport::lines::{next_line, Line};
use mcp_transport::{codes, EventSender, Kind, Message, UnsolicitedSender};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child as Process, Command};
use tokio::sync::{mpsc, oneshot};

/// Longest line we read from a child's stdout: the largest message a
/// server can send (one line is one message, held whole while its id is
/// mapped back). Answers of 64 MiB pass; a longer line is dropped, with a
/// warning, and its request answered with an error when the server exits.
const MAX_LINE: usize = 128 * 1024 * 1024;
/// Lines up to this size are copied out of the reader's buffer, which is
/// kept; a longer one takes the buffer with it.
const KEEP_LINE_BUFFER: usize = 64 * 1024;
/// Most requests one child may have in flight (all sessions together).
const MAX_PENDING: usize = 4096;
/// How long a child gets to exit after its stdin closes, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Identifies a logical session on a child.
pub type SessionKey = u64;

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (plus `env`) instead of this
    /// process's: how the router starts instances, which inherit nothing.
    pub clear_env: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not start `{program}`: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

struct Pending {
    session: SessionKey,
    original_id: String,
    reply: oneshot::Sender<Message>,
    events: EventSender,
    /// The progress token the child sees (raw JSON).
    progress_token: Option<String>,
    /// The client's own token when we replaced it (shared children only).
    original_token: Option<String>,
    /// Whether a server→client request may be this request's doing. Modern
    /// requests other than `tools/call`, `prompts/get` and `resources/read`
    /// cannot be answered with input requests, so nothing is attributed to them.
    may_ask: bool,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    /// Server→client requests in flight: which session may answer them.
    server_requests: HashMap<String, SessionKey>,
    /// Each session's standalone stream.
    sessions: HashMap<SessionKey, UnsolicitedSender>,
}

pub struct Child {
    stdin: mpsc::Sender<String>,
    /// Tells the writer task to close the child's stdin. The sender above
    /// lives as long as the `Child`, so dropping it cannot be the signal.
    close_stdin: Mutex<Option<oneshot::Sender<()>>>,
    routes: Mutex<Routes>,
    next_id: AtomicU64,
    next_session: AtomicU64,
    alive: AtomicBool,
    /// Wakes whoever waits in [`Child::exited`].
    gone: tokio::sync::Notify,
    process: Mutex<Option<Process>>,
    pid: Option<u32>,
    /// Several clients share this child: their progress tokens may collide,
    /// so each request's token is replaced by a child-unique one.
    shared: bool,
}

impl Child {
    /// Starts the process and its reader and writer tasks.
    pub fn spawn(launch: &Launch, shared: bool) -> Result<Arc<Child>, SpawnError> {
        let mut cmd = Command::new(&launch.program);
        if launch.clear_env {
            cmd.env_clear();
        }
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut process = cmd.spawn().map_err(|source| SpawnError::Io {
            program: launch.program.clone(),
            source,
        })?;
        let (stdin, stdout) = match (process.stdin.take(), process.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                return Err(SpawnError::Io {
                    program: launch.program.clone(),
                    source: std::io::Error::other("no stdio pipes"),
                })
            }
        };
        let (tx, rx) = mpsc::channel::<String>(1024);
        let (close_tx, close_rx) = oneshot::channel();
        let child = Arc::new(Child {
            stdin: tx,
            close_stdin: Mutex::new(Some(close_tx)),
            routes: Mutex::new(Routes::default()),
            next_id: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            gone: tokio::sync::Notify::new(),
            pid: process.id(),
            process: Mutex::new(Some(process)),
            shared,
        });
        tokio::spawn(write_lines(stdin, rx, close_rx));
        tokio::spawn(read_lines(Arc::downgrade(&child), stdout));
        tracing::debug!(pid = ?child.pid, program = %launch.program, "started MCP server");
        Ok(child)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Resolves once the process has exited or been stopped.
    pub async fn exited(&self) {
        loop {
            // Registered before the check, so an exit in between still wakes us.
            let gone = self.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if !self.is_alive() {
                return;
            }
            gone.await;
        }
    }

    fn mark_gone(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.gone.notify_waiters();
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// True once the process has exited, even before its pipes have told
    /// the reader (a `kill -9` is seen at once, not after the reader's EOF).
    pub fn has_exited(&self) -> bool {
        if !self.is_alive() {
            return true;
        }
        match self.process.try_lock() {
            Ok(mut process) => match process.as_mut() {
                Some(p) => !matches!(p.try_wait(), Ok(None)),
                // Taken by `stop`: it is going away.
                None => true,
            },
            // `stop` holds it right now; trust the flag.
            Err(_) => false,
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a logical session; its unsolicited messages go to `stream`.
    pub fn attach(&self, stream: Option<UnsolicitedSender>) -> SessionKey {
        let key = self.next_session.fetch_add(1, Ordering::Relaxed);
        if let Some(stream) = stream {
            self.routes().sessions.insert(key, stream);
        }
        key
    }

    pub fn detach(&self, session: SessionKey) {
        let mut routes = self.routes();
        routes.sessions.remove(&session);
        routes.server_requests.retain(|_, s| *s != session);
    }

    /// Sends a request and waits for its answer. Dropping the future sends
    /// `notifications/cancelled` to the child.
    pub async fn request(
        &self,
        session: SessionKey,
        request: Message,
        events: EventSender,
    ) -> Message {
        self.request_as(session, request, events, true).await
    }

    /// [`Child::request`], saying whether server→client requests the child
    /// sends meanwhile may belong to this request (`may_ask`).
    pub async fn request_as(
        &self,
        session: SessionKey,
        request: Message,
        events: EventSender,
        may_ask: bool,
    ) -> Message {
        let original_id = request.id_raw().unwrap_or("null").to_owned();
        if !self.is_alive() {
            return exited_error(&original_id, "the MCP server process has exited");
        }
        let child_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (request, progress_token, original_token) = self.own_progress_token(request, child_id);
        let (reply, answer) = oneshot::channel();
        {
            let mut routes = self.routes();
            if routes.pending.len() >= MAX_PENDING {
                return Message::error_response(
                    Some(&original_id),
                    codes::SERVER_ERROR,
                    "too many requests in flight to the MCP server",
                    None,
                );
            }
            routes.pending.insert(
                child_id,
                Pending {
                    session,
                    original_id: original_id.clone(),
                    reply,
                    events,
                    progress_token,
                    original_token,
                    may_ask,
                },
            );
        }
        // The child may have died between the check above and the insert;
        // `fail_all` would then have missed this entry.
        if !self.is_alive() {
            self.routes().pending.remove(&child_id);
            return exited_error(&original_id, "the MCP server process has exited");
        }
        let mut guard = CancelOnDrop {
            child: self,
            child_id,
            armed: true,
        };
        let line = request.with_id(&child_id.to_string()).as_str().to_owned();
        if self.stdin.send(line).await.is_err() {
            guard.armed = false;
            self.routes().pending.remove(&child_id);
            return exited_error(&original_id, "the MCP server process has exited");
        }
        let result = answer.await;
        guard.armed = false;
        result.unwrap_or_else(|_| {
            exited_error(
                &original_id,
                "the MCP server process exited before answering",
            )
        })
    }

    /// On a shared child, replaces the request's progress token with one no
    /// other client can be using; returns the request, the token the child
    /// will see and the client's original token.
    fn own_progress_token(
        &self,
        request: Message,
        child_id: u64,
    ) -> (Message, Option<String>, Option<String>) {
        let Some(token) = request.progress_token() else {
            return (request, None, None);
        };
        if !self.shared {
            return (request, Some(token), None);
        }
        let ours = format!("\"hangar-progress-{child_id}\"");
        match request.params_span(&["_meta", "progressToken"]) {
            Some(span) => (request.with_replaced(span, &ours), Some(ours), Some(token)),
            None => (request, Some(token), None),
        }
    }

    /// Forwards a client notification unchanged.
    pub async fn notify(&self, notification: Message) {
        let _ = self.stdin.send(notification.as_str().to_owned()).await;
    }

    /// Forwards the client's answer to a server→client request, if this
    /// session is the one that was asked.
    pub async fn respond(&self, session: SessionKey, response: Message) {
        let Some(id) = response.id_raw() else { return };
        let asked = self.routes().server_requests.get(id) == Some(&session);
        if asked {
            self.routes().server_requests.remove(id);
            let _ = self.stdin.send(response.as_str().to_owned()).await;
        } else {
            tracing::debug!(
                id,
                "dropping a response to a request this session was not sent"
            );
        }
    }

    /// Ends the process: close stdin, give it a moment, then kill it.
    pub async fn stop(&self) {
        let process = self.process.lock().ok().and_then(|mut p| p.take());
        let Some(mut process) = process else { return };
        // EOF on stdin is how a stdio server learns to exit (and clean up);
        // the writer task owns the pipe, so ask it to drop it.
        if let Some(close) = self.close_stdin.lock().ok().and_then(|mut c| c.take()) {
            let _ = close.send(());
        }
        if tokio::time::timeout(EXIT_GRACE, process.wait())
            .await
            .is_err()
        {
            let _ = process.kill().await;
        }
        self.mark_gone();
    }

    /// Sends `notifications/cancelled` for a request that will not be awaited.
    fn cancel(&self, child_id: u64) {
        if self.routes().pending.remove(&child_id).is_none() {
            return; // already answered
        }
        let line = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{child_id},"reason":"The client cancelled the request"}}}}"#
        );
        let _ = self.stdin.try_send(line);
    }

    /// Routes one message the child wrote.
    async fn route(&self, message: Message) {
        match message.kind() {
            Kind::Response => self.route_response(message),
            Kind::Request => self.route_server_request(message).await,
            Kind::Notification => self.route_notification(message).await,
        }
    }

    fn route_response(&self, message: Message) {
        let pending = message
            .id_raw()
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| self.routes().pending.remove(&id));
        match pending {
            Some(p) => {
                let _ = p.reply.send(message.with_id(&p.original_id));
            }
            None => tracing::debug!(?message, "response to no pending request; dropped"),
        }
    }

    /// The request most likely related to a message with no explicit link:
    /// the most recent one still in flight (for a server→client request,
    /// `asking`, only among those that may ask).
    ///
    /// When requests of more than one session are in flight on a shared
    /// child the answer is unknowable, and guessing could hand one user's
    /// prompt to another, so this is `Ambiguous` instead.
    fn latest_pending(&self, asking: bool) -> Related {
        let routes = self.routes();
        let candidates = || routes.pending.iter().filter(|(_, p)| !asking || p.may_ask);
        let Some((_, newest)) = candidates().max_by_key(|(id, _)| **id) else {
            return Related::None;
        };
        if candidates().any(|(_, p)| p.session != newest.session) {
            return Related::Ambiguous;
        }
        Related::Request(newest.session, newest.events.clone())
    }

    async fn route_server_request(&self, message: Message) {
        let id = message.id_raw().unwrap_or("null").to_owned();
        let target = match self.latest_pending(true) {
            Related::Request(session, events) => Some((session, Some(events))),
            Related::Ambiguous => None,
            // No request in flight: the session's GET stream, if there is
            // exactly one session to ask.
            Related::None => {
                let routes = self.routes();
                let mut sessions = routes.sessions.keys();
                match (sessions.next(), sessions.next()) {
                    (Some(only), None) => Some((*only, None)),
                    _ => None,
                }
            }
        };
        let Some((session, events)) = target else {
            // Nobody (or nobody certain) to ask: answer for the client so the
            // server does not hang, and never guess across sessions.
            tracing::warn!(
                method = message.method().unwrap_or_default(),
                "cannot tell which client a server request is for; refusing it (use per-session children)"
            );
            let refusal = Message::error_response(
                Some(&id),
                codes::INTERNAL_ERROR,
                "hangar wrap cannot tell which client this request is for",
                None,
            );
            let _ = self.stdin.send(refusal.as_str().to_owned()).await;
            return;
        };
        self.routes().server_requests.insert(id, session);
        match events {
            Some(events) => {
                let _ = events.send(message).await;
            }
            None => self.to_session_stream(session, message).await,
        }
    }

    async fn route_notification(&self, message: Message) {
        let method = message.method().unwrap_or_default();
        if let Some(span) = message.params_span(&["progressToken"]) {
            let token = &message.as_str()[span.clone()];
            let target = self
                .routes()
                .pending
                .values()
                .find(|p| p.progress_token.as_deref() == Some(token))
                .map(|p| (p.events.clone(), p.original_token.clone()));
            if let Some((events, original)) = target {
                let message = match original {
                    Some(original) => message.with_replaced(span, &original),
                    None => message,
                };
                let _ = events.send(message).await;
                return;
            }
        }
        if let Some(sub) = message.meta_field(meta::SUBSCRIPTION_ID) {
            if let Some((events, original)) = sub.parse::<u64>().ok().and_then(|id| {
                self.routes()
                    .pending
                    .get(&id)
                    .map(|p| (p.events.clone(), p.original_id.clone()))
            }) {
                let _ = events
                    .send(rewrite_subscription_id(&message, &original))
                    .await;
                return;
            }
        }
        if method == "notifications/message" {
            match self.latest_pending(false) {
                Related::Request(_, events) => {
                    let _ = events.send(message).await;
                    return;
                }
                // A log line could carry one user's data: never guess.
                Related::Ambiguous => return,
                Related::None => {}
            }
        }
        let streams: Vec<UnsolicitedSender> = self.routes().sessions.values().cloned().collect();
        for stream in streams {
            let _ = stream.send(message.clone()).await;
        }
    }

    async fn to_session_stream(&self, session: SessionKey, message: Message) {
        let stream = self.routes().sessions.get(&session).cloned();
        if let Some(stream) = stream {
            let _ = stream.send(message).await;
        }
    }

    /// The child is gone: every pending request gets an error now.
    fn fail_all(&self, why: &str) {
        self.mark_gone();
        let pending: Vec<Pending> = self.routes().pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            let _ = p.reply.send(exited_error(&p.original_id, why));
        }
    }
}

/// Which request a message without an explicit link belongs to.
enum Related {
    Request(SessionKey, EventSender),
    /// Several sessions have requests in flight on a shared child.
    Ambiguous,
    None,
}

/// A subscription notification with our id for the listen request put back
/// to the client's. Only this one field changes.
fn rewrite_subscription_id(message: &Message, original: &str) -> Message {
    match message.params_span(&["_meta", meta::SUBSCRIPTION_ID]) {
        Some(span) => message.with_replaced(span, original),
        None => message.clone(),
    }
}

struct CancelOnDrop<'a> {
    child: &'a Child,
    child_id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.child.cancel(self.child_id);
        }
    }
}

fn exited_error(id: &str, why: &str) -> Message {
    Message::error_response(Some(id), codes::INTERNAL_ERROR, why, None)
}

async fn write_lines(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<String>,
    mut close: oneshot::Receiver<()>,
) {
    loop {
        let mut line = tokio::select! {
            line = rx.recv() => match line {
                Some(line) => line,
                None => return,
            },
            // Asked to stop (or the `Child` is gone): dropping `stdin` closes the pipe.
            _ = &mut close => return,
        };
        // Stdio framing is one message per line, but a client may send
        // pretty-printed JSON over HTTP. A raw CR or LF in valid JSON can only
        // be whitespace between tokens (inside strings they must be escaped),
        // so turning them into spaces keeps the message's meaning and bytes
        // otherwise intact.
        if line.contains(['\n', '\r']) {
            line = line.replace(['\n', '\r'], " ");
        }
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() {
            return;
        }
        // Batch: flush only when nothing else is queued.
        if rx.is_empty() && stdin.flush().await.is_err() {
            return;
        }
    }
}

async fn read_lines(child: std::sync::Weak<Child>, stdout: tokio::process::ChildStdout) {
    let mut input = tokio::io::BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        let read = next_line(&mut input, &mut buf, MAX_LINE).await;
        let Some(child) = child.upgrade() else { return };
        let line = match read {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                tracing::warn!(pid = ?child.pid, "MCP server wrote a line over {MAX_LINE} bytes; skipped");
                continue;
            }
            Ok(Line::Complete) => {
                // A large line's buffer becomes the message's text (no copy)
                // and is not kept for the next line: the reader must not hold
                // the biggest answer it ever saw.
                let bytes = if buf.len() > KEEP_LINE_BUFFER {
                    std::mem::take(&mut buf)
                } else {
                    buf.clone()
                };
                match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        tracing::warn!(pid = ?child.pid, "MCP server wrote a line that is not UTF-8; skipped");
                        continue;
                    }
                }
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match Message::parse(line.as_str()) {
            Ok(message) => {
                drop(line); // the message has its own copy
                child.route(message).await
            }
            Err(e) => {
                let shown: String = line.chars().take(200).collect();
                tracing::warn!(pid = ?child.pid, "MCP server wrote a non-JSON-RPC line to stdout ({e}): {shown}");
            }
        }
    }
    let Some(child) = child.upgrade() else { return };
    let status = {
        let process = child.process.lock().ok().and_then(|mut p| p.take());
        match process {
            Some(mut p) => match tokio::time::timeout(Duration::from_millis(500), p.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                _ => "stdout closed".to_owned(),
            },
            None => "stopped".to_owned(),
        }
    };
    if status == "stopped" {
        tracing::debug!(pid = ?child.pid, "MCP server process stopped");
    } else {
        tracing::warn!(pid = ?child.pid, %status, "MCP server process ended");
    }
    child.fail_all(&format!(
        "the MCP server process exited ({status}) before answering"
    ));
}
