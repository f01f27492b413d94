//! The era bridge (`--protocol`): a legacy host — one that sends
//! `initialize` and expects a session, like Claude Desktop or the TypeScript
//! SDK 1.x `StdioClientTransport` — on a server that speaks only the modern
//! protocol (2026-07-28: stateless, no `initialize`, no session).
//!
//! * **Which era.** On the host's `initialize` (`--protocol auto`, the
//!   default) the shim first POSTs `server/discover`. A server that answers
//!   with a `DiscoverResult` listing no legacy version is bridged; anything
//!   else (a legacy server's 400/404/-32601, a dual-era server that lists
//!   the legacy versions) keeps today's path: the `initialize` is forwarded
//!   and the session is the server's. `--protocol legacy` never probes;
//!   `--protocol modern` always bridges (a failed discover fails the
//!   `initialize`). A host that sends modern requests itself is never
//!   bridged: its messages pass through untouched.
//! * **`initialize`** is answered by the shim from the discover result:
//!   capabilities, `serverInfo` (from `_meta`), instructions, and the
//!   version the host asked for when it is a legacy version we know (else
//!   the newest legacy one). `notifications/initialized` and the host's
//!   other notifications stay here: the modern transport has none.
//! * **Requests** get the modern `_meta` (protocol version, the host's
//!   capabilities and clientInfo, `logLevel` once the host set one) added to
//!   what the host put there (progress tokens stay); the transport adds
//!   `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`. `ping`,
//!   `logging/setLevel`, `resources/subscribe` and `resources/unsubscribe`
//!   do not exist in the modern era and are answered here.
//! * **`Mcp-Param-*`**: tools whose `x-mcp-header` annotations are invalid
//!   are left out of `tools/list`; `tools/call` mirrors the annotated
//!   arguments into headers ([`crate::params`]).
//! * **Results** lose `resultType`, which no legacy schema has (the SDK 1.32
//!   accepts unknown fields in most results but its empty result is strict).
//! * **Input-required results** (MRTR) become the host's own requests
//!   (`elicitation/create`, `sampling/createMessage`, `roots/list`), sent
//!   together; their answers go back in `inputResponses` with the server's
//!   `requestState`, under a new id, at most [`MAX_INPUT_ROUNDS`] times. If
//!   the host's request is cancelled, so are the questions still open.
//! * **Notifications.** One `subscriptions/listen` stream carries what the
//!   server's capabilities offer (tools/prompts/resources list changes) and
//!   `notifications/resources/updated` for the URIs the host subscribed to.
//!   It is opened (and its acknowledgement awaited, bounded) before the
//!   `initialize` answer, its notifications are held until the host's
//!   `notifications/initialized`, and it is reopened with backoff when it
//!   breaks (bounded attempts).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_transport::client::{Backoff, Client, ClientError};
use mcp_transport::era::{self, meta};
use mcp_transport::{codes, Kind, Message};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::params::ToolHeaders;
use crate::remote::TransportMode;
use http::HeaderMap;

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolMode {
    /// Probe with `server/discover`; bridge a modern-only server.
    #[default]
    Auto,
    /// Never bridge (the host's messages go as they are).
    Legacy,
    /// Always bridge a legacy host.
    Modern,
}

/// Input-required rounds for one host request before we give up.
pub const MAX_INPUT_ROUNDS: u32 = 10;
/// How long the host has to answer one of the server's questions.
const INPUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `initialize` (or `resources/subscribe`) waits for the
/// subscription stream's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Notifications held until the host's `notifications/initialized`.
const MAX_HELD: usize = 64;

/// What the shim does with the host's `initialize`.
pub enum Initialize {
    /// Forward it: the server speaks the host's era.
    Forward,
    /// The answer, made here: the server is bridged from now on.
    Answer(Message),
}

/// What the host told us in its `initialize`, as raw JSON for `_meta`.
#[derive(Debug, Clone)]
struct Host {
    capabilities: String,
    client_info: String,
}

/// The bridge's view of the session it simulates.
#[derive(Default)]
struct State {
    /// Bridging (decided on the host's latest `initialize`).
    active: bool,
    host: Option<Host>,
    /// The modern version we speak to the server.
    version: String,
    /// The server's capabilities (from discover).
    capabilities: Value,
    /// `logging/setLevel`, as raw JSON.
    log_level: Option<String>,
    /// `resources/subscribe`d URIs.
    subscriptions: BTreeSet<String>,
    /// The subscription stream's task.
    listener: Option<AbortHandle>,
    /// The host sent `notifications/initialized`.
    initialized: bool,
    /// Notifications that arrived before that.
    held: Vec<Message>,
}

/// The bridge; see the module docs.
pub struct Bridge {
    http: Arc<Client>,
    /// To the host (stdout).
    out: mpsc::Sender<Message>,
    mode: ProtocolMode,
    transport: TransportMode,
    resume: Backoff,
    state: Mutex<State>,
    /// Our requests to the host (MRTR questions), by raw id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    next_id: AtomicU64,
    /// The listed tools' `x-mcp-header` parameters.
    tool_headers: ToolHeaders,
}

impl Bridge {
    pub fn new(
        http: Arc<Client>,
        out: mpsc::Sender<Message>,
        mode: ProtocolMode,
        transport: TransportMode,
        resume: Backoff,
    ) -> Bridge {
        Bridge {
            http,
            out,
            mode,
            transport,
            resume,
            state: Mutex::default(),
            waiting: Mutex::default(),
            next_id: AtomicU64::new(1),
            tool_headers: ToolHeaders::default(),
        }
    }

    /// Whether the host is being bridged to a modern server.
    pub fn is_active(&self) -> bool {
        self.lock().active
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_id(&self, what: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Value::String(format!("hangar-{what}-{n}")).to_string()
    }

    /// Whether a message from the host is the bridge's to handle: a legacy
    /// `initialize` always is (it decides the era), anything legacy is once
    /// bridging. Modern messages never are.
    pub fn takes(&self, message: &Message) -> bool {
        if era::detect(message, None) == era::Era::Modern {
            return false;
        }
        (message.kind() == Kind::Request && message.method() == Some("initialize"))
            || self.is_active()
    }

    /// The host's `initialize`: decides the era and, when bridging, answers it.
    pub async fn initialize(
        self: &Arc<Self>,
        message: &Message,
    ) -> Result<Initialize, ClientError> {
        self.stop();
        if self.mode == ProtocolMode::Legacy || self.transport == TransportMode::SseOnly {
            return Ok(Initialize::Forward);
        }
        let params = message.params().unwrap_or_else(|| json!({}));
        let mut capabilities = params.get("capabilities").cloned().unwrap_or(json!({}));
        if let Some(c) = capabilities.as_object_mut() {
            // Tasks are an extension in 2026-07-28; the bridge does not carry them.
            c.remove("tasks");
        }
        let client_info = params
            .get("clientInfo")
            .cloned()
            .unwrap_or_else(|| json!({"name": "unknown", "version": "0"}));
        let host = Host {
            capabilities: capabilities.to_string(),
            client_info: client_info.to_string(),
        };
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(era::LATEST_LEGACY);
        let id = message.id_raw().unwrap_or("null");
        // A -32022 names the versions the server speaks: one more try with
        // the newest modern one among them (SEP-2575).
        let mut version = era::LATEST.to_owned();
        let mut answer = None;
        for _ in 0..2 {
            let a = match self.discover(&host, &version).await {
                Ok(a) => a,
                Err(
                    e @ (ClientError::Connect { .. }
                    | ClientError::Unauthorized { .. }
                    | ClientError::Closed),
                ) => return Err(e),
                Err(e) if self.mode == ProtocolMode::Modern => return Err(e),
                Err(e) => {
                    tracing::info!("server/discover failed ({e}); speaking the host's protocol");
                    return Ok(Initialize::Forward);
                }
            };
            let retry_with = (a.error_code() == Some(codes::UNSUPPORTED_PROTOCOL_VERSION))
                .then(|| spoken_modern_version(&a))
                .flatten();
            answer = Some(a);
            match retry_with {
                Some(v) => version = v,
                None => break,
            }
        }
        let Some(answer) = answer else {
            return Ok(Initialize::Forward);
        };
        let result = match classify(&answer) {
            Ok(result) => result,
            Err(why) if self.mode == ProtocolMode::Modern => {
                return Ok(Initialize::Answer(Message::error_response(
                    Some(id),
                    answer.error_code().unwrap_or(codes::INTERNAL_ERROR),
                    &format!("the server does not speak protocol {}: {why}", era::LATEST),
                    None,
                )));
            }
            Err(why) => {
                tracing::info!("{why}; speaking the host's protocol");
                return Ok(Initialize::Forward);
            }
        };
        let lists_legacy = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .any(|v| !era::is_modern_version(v))
            });
        if lists_legacy && self.mode == ProtocolMode::Auto {
            tracing::info!("the server also speaks the legacy protocol; forwarding initialize");
            return Ok(Initialize::Forward);
        }
        tracing::info!(
            "the server speaks only protocol {version}; the shim answers initialize and bridges"
        );
        let server_capabilities = result.get("capabilities").cloned().unwrap_or(json!({}));
        let server_info = result
            .pointer(&format!("/_meta/{}", meta::SERVER_INFO.replace('/', "~1")))
            .or_else(|| result.get("serverInfo"))
            .cloned()
            .unwrap_or_else(|| json!({"name": "mcp-server", "version": "unknown"}));
        let negotiated = if era::LEGACY_VERSIONS.contains(&asked) {
            asked
        } else {
            era::LATEST_LEGACY
        };
        let mut answer = json!({
            "protocolVersion": negotiated,
            "capabilities": server_capabilities.clone(),
            "serverInfo": server_info,
        });
        if let Some(i) = result.get("instructions") {
            answer["instructions"] = i.clone();
        }
        {
            let mut st = self.lock();
            *st = State {
                active: true,
                host: Some(host),
                version,
                capabilities: server_capabilities,
                ..State::default()
            };
        }
        self.restart_listener().await;
        Ok(Initialize::Answer(Message::result_response(id, &answer)))
    }

    /// One `server/discover` in protocol `version`, with the host's
    /// capabilities and clientInfo.
    async fn discover(&self, host: &Host, version: &str) -> Result<Message, ClientError> {
        let request = Message::from_value(&json!({
            "jsonrpc": "2.0",
            "id": format!("hangar-discover-{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
            "method": "server/discover", "params": {}
        }));
        let request = modernize(&request, version, host, None);
        // Nothing the server sends before its answer concerns the host yet.
        let (related, mut drain) = mpsc::channel(8);
        tokio::spawn(async move { while drain.recv().await.is_some() {} });
        self.http
            .request_modern(&request, &related, HeaderMap::new())
            .await
    }

    /// A request from the host while bridging; its answer (or error) goes to
    /// the host. `Err` means no answer was sent.
    pub async fn request(self: &Arc<Self>, message: Message) -> Result<(), ClientError> {
        let id = message.id_raw().unwrap_or("null").to_owned();
        let params = message.params().unwrap_or(Value::Null);
        let answer = match message.method().unwrap_or_default() {
            "ping" => Message::result_response(&id, &json!({})),
            "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
                Some(level) => {
                    self.lock().log_level = Some(Value::String(level.to_owned()).to_string());
                    Message::result_response(&id, &json!({}))
                }
                None => Message::error_response(
                    Some(&id),
                    codes::INVALID_PARAMS,
                    "Invalid params: \"level\" is required",
                    None,
                ),
            },
            m @ ("resources/subscribe" | "resources/unsubscribe") => {
                match params.get("uri").and_then(Value::as_str) {
                    Some(uri) => {
                        let changed = {
                            let mut st = self.lock();
                            if m == "resources/subscribe" {
                                st.subscriptions.insert(uri.to_owned())
                            } else {
                                st.subscriptions.remove(uri)
                            }
                        };
                        if changed {
                            self.restart_listener().await;
                        }
                        Message::result_response(&id, &json!({}))
                    }
                    None => Message::error_response(
                        Some(&id),
                        codes::INVALID_PARAMS,
                        "Invalid params: \"uri\" is required",
                        None,
                    ),
                }
            }
            _ => self.call(&message, &id).await?,
        };
        self.to_host(answer).await
    }

    /// Sends a host request to the server in the modern form, answering
    /// input-required results with the host's help; returns the final
    /// answer with the host's id.
    async fn call(&self, message: &Message, id: &str) -> Result<Message, ClientError> {
        let (version, host, level) = {
            let st = self.lock();
            (st.version.clone(), st.host.clone(), st.log_level.clone())
        };
        let Some(host) = host else {
            return Ok(Message::error_response(
                Some(id),
                codes::INVALID_REQUEST,
                "the client has not sent initialize",
                None,
            ));
        };
        let first = modernize(message, &version, &host, level.as_deref());
        let mut request = first.clone();
        let mut rounds = 0u32;
        loop {
            let extra: HeaderMap = self.tool_headers.headers(&request).into_iter().collect();
            let answer = self.http.request_modern(&request, &self.out, extra).await?;
            let result = match input_required(&answer) {
                Some(result) => result,
                None => {
                    let mut answer = strip_result_field(&answer, "resultType");
                    if message.method() == Some("tools/list") {
                        answer = self.tool_headers.learn(answer);
                    }
                    return Ok(answer.with_id(id));
                }
            };
            rounds += 1;
            if rounds > MAX_INPUT_ROUNDS {
                return Ok(Message::error_response(
                    Some(id),
                    codes::INTERNAL_ERROR,
                    &format!("the server still asked for input after {MAX_INPUT_ROUNDS} rounds"),
                    None,
                ));
            }
            let responses = match self.ask_host(&result).await {
                Ok(r) => r,
                Err(why) => {
                    return Ok(Message::error_response(
                        Some(id),
                        codes::INTERNAL_ERROR,
                        &why,
                        None,
                    ))
                }
            };
            request = retry(
                &first,
                &self.fresh_id("retry"),
                responses,
                result.get("requestState"),
            );
        }
    }

    /// Asks the host every question of an input-required result at once;
    /// returns the answers by key.
    async fn ask_host(&self, result: &Value) -> Result<Map<String, Value>, String> {
        let requests = match result.get("inputRequests") {
            None => return Ok(Map::new()),
            Some(Value::Object(r)) => r.clone(),
            Some(_) => return Err("the server sent a malformed inputRequests".to_owned()),
        };
        let asks = requests.into_iter().map(|(key, request)| async move {
            let method = request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if method.is_empty() {
                return Err(format!("inputRequests.{key} has no method"));
            }
            let answer = self
                .ask(method, request.get("params").cloned().unwrap_or(json!({})))
                .await?;
            Ok((key, answer))
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect()
    }

    /// Sends the host one request and waits for its result (bounded).
    async fn ask(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.fresh_id("input");
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id.clone(), tx);
        let _pending = Pending {
            bridge: self,
            id: &id,
        };
        let request = Message::from_value(&json!({
            "jsonrpc": "2.0", "id": serde_json::from_str::<Value>(&id).unwrap_or(Value::Null),
            "method": method, "params": params,
        }));
        if self.out.send(request).await.is_err() {
            return Err("the client has gone".to_owned());
        }
        let answer = match tokio::time::timeout(INPUT_TIMEOUT, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => return Err("the client has gone".to_owned()),
            Err(_) => {
                return Err(format!(
                    "the client did not answer {method} within {} s",
                    INPUT_TIMEOUT.as_secs()
                ));
            }
        };
        let value = answer.to_value();
        if let Some(error) = value.get("error") {
            return Err(format!(
                "the client could not answer {method}: {}",
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
            ));
        }
        Ok(value.get("result").cloned().unwrap_or(json!({})))
    }

    /// The host's answer to one of our questions.
    pub fn respond(&self, message: Message) {
        let waiter = message
            .id_raw()
            .and_then(|id| lock(&self.waiting).remove(id));
        match waiter {
            Some(w) => {
                let _ = w.send(message);
            }
            None => tracing::debug!("an answer from the client to no open question; dropped"),
        }
    }

    /// A notification from the host while bridging: the modern transport
    /// carries none, so only `notifications/initialized` matters (it
    /// releases the held notifications).
    pub async fn notify(&self, message: Message) {
        if message.method() != Some("notifications/initialized") {
            tracing::debug!(
                "{} has no modern equivalent; not sent",
                message.method().unwrap_or("notification")
            );
            return;
        }
        let held = {
            let mut st = self.lock();
            st.initialized = true;
            std::mem::take(&mut st.held)
        };
        for m in held {
            let _ = self.out.send(m).await;
        }
    }

    async fn to_host(&self, message: Message) -> Result<(), ClientError> {
        self.out
            .send(message)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Stops the subscription stream and forgets the simulated session.
    pub fn stop(&self) {
        let mut st = self.lock();
        if let Some(task) = st.listener.take() {
            task.abort();
        }
        *st = State::default();
    }

    /// The `subscriptions/listen` filter for what the server offers and the
    /// host subscribed to; `None` when there is nothing to listen for.
    fn filter(&self) -> Option<Value> {
        let st = self.lock();
        let caps = &st.capabilities;
        let offers =
            |what: &str| caps.pointer(&format!("/{what}/listChanged")) == Some(&json!(true));
        let mut filter = Map::new();
        for (what, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if offers(what) {
                filter.insert(key.to_owned(), json!(true));
            }
        }
        if !st.subscriptions.is_empty() {
            filter.insert("resourceSubscriptions".to_owned(), json!(st.subscriptions));
        }
        (!filter.is_empty()).then_some(Value::Object(filter))
    }

    /// Opens a subscription stream for the current filter, waits (bounded)
    /// for its acknowledgement, then ends the previous one.
    async fn restart_listener(self: &Arc<Self>) {
        let Some(filter) = self.filter() else {
            if let Some(old) = self.lock().listener.take() {
                old.abort();
            }
            return;
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        let this = self.clone();
        let task = tokio::spawn(async move { this.listen(filter, ack_tx).await });
        let old = self.lock().listener.replace(task.abort_handle());
        if tokio::time::timeout(ACK_WAIT, ack_rx).await.is_err() {
            tracing::debug!("the subscription stream is not acknowledged yet; going on");
        }
        if let Some(old) = old {
            old.abort();
        }
    }

    /// One subscription stream, reopened when it breaks.
    async fn listen(&self, filter: Value, ack: oneshot::Sender<()>) {
        let mut ack = Some(ack);
        let mut failures = 0u32;
        loop {
            let (version, host) = {
                let st = self.lock();
                (st.version.clone(), st.host.clone())
            };
            let Some(host) = host else { return };
            let id = self.fresh_id("listen");
            let request = Message::from_value(&json!({
                "jsonrpc": "2.0", "id": serde_json::from_str::<Value>(&id).unwrap_or(Value::Null),
                "method": "subscriptions/listen", "params": {"notifications": filter},
            }));
            let request = modernize(&request, &version, &host, None);
            let (tx, mut rx) = mpsc::channel::<Message>(64);
            let call = self.http.request_modern(&request, &tx, HeaderMap::new());
            tokio::pin!(call);
            let mut acknowledged = false;
            let outcome = loop {
                tokio::select! {
                    r = &mut call => break r,
                    Some(m) = rx.recv() => self.on_listen_message(m, &mut ack, &mut acknowledged).await,
                }
            };
            while let Ok(m) = rx.try_recv() {
                self.on_listen_message(m, &mut ack, &mut acknowledged).await;
            }
            if acknowledged {
                failures = 0;
            }
            match outcome {
                Ok(answer) if answer.is_error() => {
                    let v = answer.to_value();
                    let why = v
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("error");
                    tracing::warn!(
                        "the server refused subscriptions/listen ({why}); list changes will not arrive"
                    );
                    return;
                }
                Ok(_) => tracing::debug!("the server ended the subscription stream; reopening"),
                Err(e) => tracing::debug!("the subscription stream broke: {e}"),
            }
            failures += 1;
            if failures >= self.resume.max_attempts {
                tracing::warn!(
                    "the subscription stream could not be reopened after {failures} attempts; \
                     list changes will not arrive"
                );
                return;
            }
            tokio::time::sleep(self.resume.delay(None, failures - 1)).await;
        }
    }

    async fn on_listen_message(
        &self,
        message: Message,
        ack: &mut Option<oneshot::Sender<()>>,
        acknowledged: &mut bool,
    ) {
        match message.method() {
            Some("notifications/subscriptions/acknowledged") => {
                *acknowledged = true;
                if let Some(ack) = ack.take() {
                    let _ = ack.send(());
                }
            }
            Some(
                "notifications/tools/list_changed"
                | "notifications/prompts/list_changed"
                | "notifications/resources/list_changed"
                | "notifications/resources/updated",
            ) => {
                let legacy = without_subscription_id(&message);
                let hold = {
                    let mut st = self.lock();
                    if st.initialized {
                        false
                    } else {
                        if st.held.len() < MAX_HELD
                            && !st.held.iter().any(|h| h.as_str() == legacy.as_str())
                        {
                            st.held.push(legacy.clone());
                        }
                        true
                    }
                };
                if !hold {
                    let _ = self.out.send(legacy).await;
                }
            }
            other => tracing::debug!(
                "{} on the subscription stream; dropped",
                other.unwrap_or("a message")
            ),
        }
    }
}

/// Withdraws a question the host has not answered when the wait ends
/// without it (the host request that needed it was cancelled, or the wait
/// timed out): the host gets `notifications/cancelled` for it.
struct Pending<'a> {
    bridge: &'a Bridge,
    id: &'a str,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if lock(&self.bridge.waiting).remove(self.id).is_some() {
            let id: Value = serde_json::from_str(self.id).unwrap_or(Value::Null);
            let cancel = Message::from_value(&json!({
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "the request that needed this answer ended"},
            }));
            let _ = self.bridge.out.try_send(cancel);
        }
    }
}

/// A host message with the modern request metadata added to its `_meta`
/// (what the host put there stays).
fn modernize(message: &Message, version: &str, host: &Host, log_level: Option<&str>) -> Message {
    // A `_meta` that cannot take an entry (not an object, or repeated) is
    // left as the host sent it: the server refuses it with its own error.
    let set = |m: Message, key: &str, raw: &str| match m.with_meta_entry(key, raw) {
        Ok(with) => with,
        Err(_) => m,
    };
    let mut m = set(
        message.clone(),
        meta::PROTOCOL_VERSION,
        &Value::String(version.to_owned()).to_string(),
    );
    m = set(m, meta::CLIENT_CAPABILITIES, &host.capabilities);
    m = set(m, meta::CLIENT_INFO, &host.client_info);
    if let Some(level) = log_level {
        m = set(m, meta::LOG_LEVEL, level);
    }
    m
}

/// The retry of `first` under `id` with the host's answers and the server's
/// request state (echoed exactly; absent when the server sent none).
fn retry(
    first: &Message,
    id: &str,
    responses: Map<String, Value>,
    state: Option<&Value>,
) -> Message {
    let mut v = first.to_value();
    v["id"] = serde_json::from_str(id).unwrap_or(Value::Null);
    if let Some(params) = v.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("inputResponses");
        params.remove("requestState");
        if !responses.is_empty() {
            params.insert("inputResponses".to_owned(), Value::Object(responses));
        }
        if let Some(state) = state {
            params.insert("requestState".to_owned(), state.clone());
        }
    }
    Message::from_value(&v)
}

/// The result of a discover answer that shows a modern server, or why not.
fn classify(answer: &Message) -> Result<Value, String> {
    let v = answer.to_value();
    if let Some(error) = v.get("error") {
        return Err(format!(
            "server/discover answered {}",
            error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("an error")
        ));
    }
    match v.get("result") {
        Some(r) if r.get("supportedVersions").is_some_and(Value::is_array) => Ok(r.clone()),
        _ => Err("server/discover did not answer with a DiscoverResult".to_owned()),
    }
}

/// The newest modern version we speak among those a -32022 error lists.
fn spoken_modern_version(error: &Message) -> Option<String> {
    let v = error.to_value();
    let supported = v.pointer("/error/data/supported")?.as_array()?;
    era::MODERN_VERSIONS
        .iter()
        .rev()
        .find(|ours| supported.iter().any(|s| s.as_str() == Some(ours)))
        .map(|v| (*v).to_owned())
}

/// The result of an input-required answer.
fn input_required(answer: &Message) -> Option<Value> {
    if answer.is_error() || !answer.as_str().contains("input_required") {
        return None;
    }
    let result = answer.to_value().get_mut("result").map(Value::take)?;
    (result.get("resultType").and_then(Value::as_str) == Some("input_required")).then_some(result)
}

/// A response without `result[field]`; every other byte is kept.
fn strip_result_field(m: &Message, field: &str) -> Message {
    if !m.as_str().contains(field) {
        return m.clone();
    }
    #[derive(serde::Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    let text = m.as_str();
    let Ok(Response {
        result: Some(result),
    }) = serde_json::from_str::<Response<'_>>(text)
    else {
        return m.clone();
    };
    let Ok(members) = serde_json::from_str::<HashMap<Cow<'_, str>, &RawValue>>(result.get()) else {
        return m.clone();
    };
    let Some(value) = members.get(field) else {
        return m.clone();
    };
    let start = value.get().as_ptr() as usize - text.as_ptr() as usize;
    let end = start + value.get().len();
    // Back over `"field" :` to the key.
    let before = text[..start].trim_end();
    let Some(before) = before.strip_suffix(':') else {
        return m.clone();
    };
    let key = Value::String(field.to_owned()).to_string();
    let Some(before) = before.trim_end().strip_suffix(key.as_str()) else {
        return m.clone();
    };
    let key_start = before.len();
    let after = &text[end..];
    let rest = after.trim_start();
    let (cut_start, cut_end) = if let Some(tail) = rest.strip_prefix(',') {
        // Not the last member: drop it and its comma.
        let next = tail.len() - tail.trim_start().len();
        (key_start, text.len() - tail.len() + next)
    } else {
        // The last member: drop the comma before it, if any.
        let prev = before.trim_end();
        match prev.strip_suffix(',') {
            Some(p) => (p.len(), end),
            None => (key_start, end),
        }
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..cut_start]);
    out.push_str(&text[cut_end..]);
    Message::parse(out).unwrap_or_else(|_| m.clone())
}

/// A subscription notification as a legacy host gets it: without the
/// modern subscription id in `_meta` (and without an emptied `_meta`).
fn without_subscription_id(message: &Message) -> Message {
    let mut v = message.to_value();
    if let Some(params) = v.get_mut("params").and_then(Value::as_object_mut) {
        if let Some(m) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            m.remove(meta::SUBSCRIPTION_ID);
            if m.is_empty() {
                params.remove("_meta");
            }
        }
        if params.is_empty() {
            if let Some(o) = v.as_object_mut() {
                o.remove("params");
            }
        }
    }
    Message::from_value(&v)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str) -> Message {
        Message::parse(t).unwrap()
    }

    #[test]
    fn strips_result_type_and_keeps_every_other_byte() {
        for (text, want) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","tools":[ 1.50 ]}}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ 1.50 ]}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],  "resultType" : "complete" }}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[] }}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"a":{"resultType":"x"},"b":2}}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{"a":{"resultType":"x"},"b":2}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"resultType"}}"#,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"resultType"}}"#,
            ),
        ] {
            assert_eq!(strip_result_field(&msg(text), "resultType").as_str(), want);
        }
    }

    #[test]
    fn adds_modern_meta_and_keeps_the_hosts() {
        let host = Host {
            capabilities: r#"{"elicitation":{}}"#.into(),
            client_info: r#"{"name":"h","version":"1"}"#.into(),
        };
        let m = modernize(
            &msg(
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p"}}}"#,
            ),
            "2026-07-28",
            &host,
            Some(r#""info""#),
        );
        let v = m.to_value();
        assert_eq!(v["params"]["_meta"]["progressToken"], "p");
        assert_eq!(v["params"]["_meta"][meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(
            v["params"]["_meta"][meta::CLIENT_CAPABILITIES]["elicitation"],
            json!({})
        );
        assert_eq!(v["params"]["_meta"][meta::CLIENT_INFO]["name"], "h");
        assert_eq!(v["params"]["_meta"][meta::LOG_LEVEL], "info");
        assert_eq!(era::detect(&m, None), era::Era::Modern);
        let bare = modernize(
            &msg(r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#),
            "2026-07-28",
            &host,
            None,
        );
        assert_eq!(
            bare.to_value()["params"]["_meta"][meta::PROTOCOL_VERSION],
            "2026-07-28"
        );
    }

    #[test]
    fn retries_carry_answers_and_the_exact_state_under_a_new_id() {
        let first = msg(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"k":1}}}"#,
        );
        let mut answers = Map::new();
        answers.insert(
            "q".into(),
            json!({"action": "accept", "content": {"name": "a"}}),
        );
        let r = retry(
            &first,
            r#""hangar-retry-1""#,
            answers,
            Some(&json!("opaque.state")),
        );
        let v = r.to_value();
        assert_eq!(v["id"], "hangar-retry-1");
        assert_eq!(v["params"]["name"], "x");
        assert_eq!(v["params"]["_meta"]["k"], 1);
        assert_eq!(v["params"]["inputResponses"]["q"]["content"]["name"], "a");
        assert_eq!(v["params"]["requestState"], "opaque.state");
        let again = retry(&r, r#""hangar-retry-2""#, Map::new(), None);
        let v = again.to_value();
        assert!(v["params"].get("inputResponses").is_none());
        assert!(
            v["params"].get("requestState").is_none(),
            "no state unless the server sent one"
        );
    }

    #[test]
    fn only_a_discover_result_means_modern() {
        assert!(classify(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#)).is_ok());
        assert!(classify(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)).is_err());
        assert!(classify(&msg(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#
        ))
        .is_err());
        assert!(input_required(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","requestState":"s"}}"#)).is_some());
        assert!(input_required(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[{"type":"text","text":"input_required"}]}}"#)).is_none());
    }

    #[test]
    fn subscription_notifications_lose_the_subscription_id() {
        let n = without_subscription_id(&msg(
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":3}}}"#,
        ));
        assert_eq!(
            n.to_value(),
            json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})
        );
        let u = without_subscription_id(&msg(
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"a://b","_meta":{"io.modelcontextprotocol/subscriptionId":3,"x":1}}}"#,
        ));
        assert_eq!(
            u.to_value()["params"],
            json!({"uri":"a://b","_meta":{"x":1}})
        );
    }
}
