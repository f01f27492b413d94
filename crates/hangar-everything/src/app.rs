//! The MCP behaviour of `hangar-everything`, in both eras.
//!
//! A [`Conn`] answers one logical connection: a legacy session (HTTP
//! session, or the stdio connection) or the shared stateless context of
//! modern requests. Each request is handled by era: legacy requests may ask
//! the client through real server→client requests; modern requests never
//! do — they return an input-required result instead (see [`crate::mrtr`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mcp_transport::era::{self, meta};
use mcp_transport::{EventSender, Message, Session, UnsolicitedSender};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::catalog::{self, text, tool_error, tool_result};
use crate::error::RpcError;
use crate::mrtr::{self, Retry, StateSigner};

/// How long a legacy tool waits for the client to answer its request.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest `sleep` accepts.
const MAX_SLEEP_MS: u64 = 10 * 60 * 1000;
/// Largest answer `large_text` makes.
const MAX_LARGE_TEXT: u64 = 100 * 1024 * 1024;

/// `large_text`'s text: `len` lowercase letters in a fixed pattern that
/// does not repeat within short spans, so a test can check every byte.
pub fn large_text(len: usize) -> String {
    (0..len)
        .map(|i| (b'a' + ((i * 7 + i / 26) % 26) as u8) as char)
        .collect()
}

/// Who Hangar says is calling: from the environment (a per-user instance),
/// or, when Hangar started this server as a shared instance
/// (`HANGAR_IDENTITY=request`), from each request's
/// `_meta["dev.hangar/identity"]`, which Hangar overwrites on every request.
/// A `_meta` identity is never trusted otherwise: any client can write one.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub user: Option<String>,
    pub user_id: Option<String>,
    pub server: Option<String>,
    pub instance: Option<String>,
    /// Take the caller from each request (a shared instance).
    pub from_request: bool,
}

impl Identity {
    pub fn from_env() -> Identity {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Identity {
            user: var("HANGAR_USER"),
            user_id: var("HANGAR_USER_ID"),
            server: var("HANGAR_SERVER"),
            instance: var("HANGAR_INSTANCE"),
            from_request: var("HANGAR_IDENTITY").as_deref() == Some("request"),
        }
    }
}

/// A `subscriptions/listen` stream (modern era).
struct Listener {
    subscription_id: Value,
    filter: Map<String, Value>,
    events: EventSender,
}

/// State shared by every connection of the process.
pub struct Shared {
    server_info: Value,
    signer: StateSigner,
    identity: Identity,
    listeners: Mutex<HashMap<u64, Listener>>,
    next_listener: AtomicU64,
    /// Legacy connections' GET streams, for list-changed notifications.
    legacy_streams: Mutex<Vec<UnsolicitedSender>>,
    /// `--modern-only`: `server/discover` lists only the modern versions.
    modern_only: AtomicBool,
}

impl Shared {
    pub fn new(identity: Identity) -> Arc<Shared> {
        Arc::new(Shared {
            server_info: json!({"name": "hangar-everything", "version": env!("CARGO_PKG_VERSION")}),
            signer: StateSigner::random(),
            identity,
            listeners: Mutex::new(HashMap::new()),
            next_listener: AtomicU64::new(1),
            legacy_streams: Mutex::new(Vec::new()),
            modern_only: Default::default(),
        })
    }

    pub fn set_modern_only(&self) {
        self.modern_only.store(true, Ordering::Relaxed);
    }

    /// Sends `method` to every listener (modern) whose filter asks for it and
    /// to every legacy connection.
    fn broadcast_list_changed(&self, method: &str, filter_key: &str) {
        if let Ok(listeners) = self.listeners.lock() {
            for l in listeners.values() {
                if l.filter.get(filter_key) == Some(&Value::Bool(true)) {
                    let n = json!({"jsonrpc": "2.0", "method": method,
                        "params": {"_meta": {meta::SUBSCRIPTION_ID: l.subscription_id}}});
                    let _ = l.events.try_send(Message::from_value(&n));
                }
            }
        }
        if let Ok(mut streams) = self.legacy_streams.lock() {
            streams.retain(|s| !s.is_closed());
            let n = Message::from_value(&json!({"jsonrpc": "2.0", "method": method}));
            for s in streams.iter() {
                let _ = s.try_send(n.clone());
            }
        }
    }
}

/// Legacy per-connection state.
#[derive(Default)]
struct LegacyState {
    client_capabilities: Mutex<Value>,
    log_level: Mutex<Option<usize>>,
    subscriptions: Mutex<HashSet<String>>,
    /// Our requests to the client, waiting for its answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    next_request: AtomicU64,
}

/// One logical connection; see the module docs.
pub struct Conn {
    shared: Arc<Shared>,
    legacy: LegacyState,
}

/// What a handler knows about the request it answers.
struct Ctx<'a> {
    modern: bool,
    params: Value,
    events: &'a EventSender,
}

impl Ctx<'_> {
    fn meta(&self, key: &str) -> Option<&Value> {
        self.params.get("_meta").and_then(|m| m.get(key))
    }

    fn str_param(&self, key: &str) -> Result<&str, RpcError> {
        self.params
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params(&format!("\"{key}\" is required")))
    }

    fn arguments(&self) -> Value {
        self.params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    async fn notify(&self, method: &str, params: Value) {
        let n = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let _ = self.events.send(Message::from_value(&n)).await;
    }
}

impl Conn {
    pub fn new(shared: Arc<Shared>, unsolicited: Option<UnsolicitedSender>) -> Conn {
        if let Some(u) = unsolicited {
            if let Ok(mut s) = shared.legacy_streams.lock() {
                s.push(u);
            }
        }
        Conn {
            shared,
            legacy: LegacyState::default(),
        }
    }

    async fn handle(&self, request: &Message, events: &EventSender) -> Result<Value, RpcError> {
        let params = request.params().unwrap_or_else(|| json!({}));
        let modern = params
            .get("_meta")
            .and_then(|m| m.get(meta::PROTOCOL_VERSION))
            .is_some();
        let method = request.method().unwrap_or_default();
        let ctx = Ctx {
            modern,
            params,
            events,
        };
        if modern {
            self.handle_modern(method, &ctx, request.id_raw().unwrap_or("null"))
                .await
        } else {
            self.handle_legacy(method, &ctx).await
        }
    }

    async fn handle_modern(
        &self,
        method: &str,
        ctx: &Ctx<'_>,
        id: &str,
    ) -> Result<Value, RpcError> {
        let mut result = match method {
            "server/discover" => json!({
                "supportedVersions": if self.shared.modern_only.load(Ordering::Relaxed) {
                    crate::modern_only::versions()
                } else {
                    era::supported_versions()
                },
                "capabilities": capabilities(true),
                "instructions": INSTRUCTIONS,
                "ttlMs": 0, "cacheScope": "public",
            }),
            "tools/list" => cacheable(json!({"tools": catalog::tools()})),
            "prompts/list" => cacheable(json!({"prompts": catalog::prompts()})),
            "resources/list" => cacheable(json!({"resources": catalog::resources()})),
            "resources/templates/list" => {
                cacheable(json!({"resourceTemplates": catalog::resource_templates()}))
            }
            "resources/read" => cacheable(read_resource(ctx)?),
            "tools/call" => self.call_tool(ctx).await?,
            "prompts/get" => self.get_prompt(ctx)?,
            "completion/complete" => complete(ctx),
            "subscriptions/listen" => return self.listen(ctx, id).await,
            _ => return Err(RpcError::method_not_found(method)),
        };
        if let Value::Object(map) = &mut result {
            map.entry("resultType").or_insert_with(|| json!("complete"));
            let meta = map.entry("_meta").or_insert_with(|| json!({}));
            meta[meta::SERVER_INFO] = self.shared.server_info.clone();
        }
        Ok(result)
    }

    async fn handle_legacy(&self, method: &str, ctx: &Ctx<'_>) -> Result<Value, RpcError> {
        match method {
            "initialize" => Ok(self.initialize(ctx)),
            "ping" => Ok(json!({})),
            "logging/setLevel" => {
                let level = ctx.str_param("level")?;
                let rank = era::log_level_rank(level)
                    .ok_or_else(|| RpcError::invalid_params("unknown log level"))?;
                *lock(&self.legacy.log_level) = Some(rank);
                Ok(json!({}))
            }
            "tools/list" => Ok(json!({"tools": catalog::tools()})),
            "prompts/list" => Ok(json!({"prompts": catalog::prompts()})),
            "resources/list" => Ok(json!({"resources": catalog::resources()})),
            "resources/templates/list" => {
                Ok(json!({"resourceTemplates": catalog::resource_templates()}))
            }
            "resources/read" => read_resource(ctx),
            "resources/subscribe" => {
                let uri = ctx.str_param("uri")?.to_owned();
                lock(&self.legacy.subscriptions).insert(uri);
                Ok(json!({}))
            }
            "resources/unsubscribe" => {
                let uri = ctx.str_param("uri")?;
                lock(&self.legacy.subscriptions).remove(uri);
                Ok(json!({}))
            }
            "tools/call" => self.call_tool(ctx).await,
            "prompts/get" => self.get_prompt(ctx),
            "completion/complete" => Ok(complete(ctx)),
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    fn initialize(&self, ctx: &Ctx<'_>) -> Value {
        let requested = ctx
            .params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if era::LEGACY_VERSIONS.contains(&requested) {
            requested
        } else {
            era::LATEST_LEGACY
        };
        *lock(&self.legacy.client_capabilities) =
            ctx.params.get("capabilities").cloned().unwrap_or_default();
        json!({
            "protocolVersion": version,
            "capabilities": capabilities(false),
            "serverInfo": self.shared.server_info,
            "instructions": INSTRUCTIONS,
        })
    }

    fn client_has(&self, ctx: &Ctx<'_>, capability: &str) -> bool {
        if ctx.modern {
            ctx.meta(meta::CLIENT_CAPABILITIES)
                .and_then(|c| c.get(capability))
                .is_some()
        } else {
            lock(&self.legacy.client_capabilities)
                .get(capability)
                .is_some()
        }
    }

    /// Sends a log message if the request (modern) or session (legacy) wants it.
    async fn log(&self, ctx: &Ctx<'_>, level: &str, data: &str) {
        let wanted = if ctx.modern {
            ctx.meta(meta::LOG_LEVEL)
                .and_then(Value::as_str)
                .and_then(era::log_level_rank)
        } else {
            Some(lock(&self.legacy.log_level).unwrap_or(0))
        };
        if wanted.is_some_and(|min| era::log_level_rank(level).unwrap_or(0) >= min) {
            ctx.notify(
                "notifications/message",
                json!({"level": level, "logger": "hangar-everything", "data": data}),
            )
            .await;
        }
    }

    /// Asks the client (legacy era): sends a request on the request's stream
    /// and waits for the answer the client POSTs back.
    async fn ask_client(
        &self,
        ctx: &Ctx<'_>,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let n = self.legacy.next_request.fetch_add(1, Ordering::Relaxed);
        let id = format!("\"hangar-everything-{n}\"");
        let (tx, rx) = oneshot::channel();
        lock(&self.legacy.waiting).insert(id.clone(), tx);
        let request =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        let sent = match Message::parse(request) {
            Ok(m) => ctx.events.send(m).await.is_ok(),
            Err(_) => false,
        };
        let answer = if sent {
            tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        lock(&self.legacy.waiting).remove(&id);
        let answer = answer.ok_or_else(|| {
            RpcError::new(
                mcp_transport::codes::INTERNAL_ERROR,
                format!("the client did not answer {method}"),
            )
        })?;
        let value = answer.to_value();
        if let Some(error) = value.get("error") {
            return Err(RpcError::new(
                mcp_transport::codes::INTERNAL_ERROR,
                format!(
                    "the client refused {method}: {}",
                    error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                ),
            ));
        }
        Ok(value.get("result").cloned().unwrap_or_default())
    }

    /// Gets one input from the client in either era: a real request (legacy)
    /// or an input-required result to return (modern, `Err(Ok(result))`).
    async fn input(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        request: Value,
    ) -> Result<Value, Result<Value, RpcError>> {
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let capability = match method.as_str() {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            _ => "roots",
        };
        if !self.client_has(ctx, capability) {
            return Err(if ctx.modern {
                Err(RpcError::missing_capability(capability))
            } else {
                Ok(tool_error(format!(
                    "the client does not support {capability}"
                )))
            });
        }
        if !ctx.modern {
            return self
                .ask_client(ctx, &method, request["params"].clone())
                .await
                .map_err(|e| Ok(tool_error(e.message)));
        }
        let retry = Retry::from_params(&ctx.params, &self.shared.signer).map_err(Err)?;
        match retry.responses.get(key) {
            Some(answer) => Ok(answer.clone()),
            None => {
                let mut requests = Map::new();
                requests.insert(key.to_owned(), request);
                Err(Ok(mrtr::input_required(requests, None)))
            }
        }
    }

    async fn call_tool(&self, ctx: &Ctx<'_>) -> Result<Value, RpcError> {
        let name = ctx.str_param("name")?;
        if let Some(result) = catalog::simple_tool(name) {
            return Ok(result);
        }
        let args = ctx.arguments();
        let arg_str = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_owned);
        match name {
            "echo" => {
                let message = arg_str("message").ok_or_else(|| {
                    RpcError::invalid_params("argument \"message\" (a string) is required")
                })?;
                Ok(tool_result(vec![text(format!("Echo: {message}"))]))
            }
            "add" => {
                let (Some(a), Some(b)) = (
                    args.get("a").and_then(Value::as_f64),
                    args.get("b").and_then(Value::as_f64),
                ) else {
                    return Err(RpcError::invalid_params(
                        "arguments \"a\" and \"b\" (numbers) are required",
                    ));
                };
                let sum = a + b;
                let shown = if sum.fract() == 0.0 && sum.abs() < 9e15 {
                    format!("{}", sum as i64)
                } else {
                    sum.to_string()
                };
                Ok(tool_result(vec![text(shown)]))
            }
            "whoami" => Ok(tool_result(vec![text(self.whoami(ctx).to_string())])),
            // Not listed (a test hook, like `test_trigger_*`): an answer of
            // any size, for the tests of large answers through the router.
            "large_text" => {
                let bytes = args.get("bytes").and_then(Value::as_u64).ok_or_else(|| {
                    RpcError::invalid_params(
                        "argument \"bytes\" (a non-negative integer) is required",
                    )
                })?;
                if bytes > MAX_LARGE_TEXT {
                    return Err(RpcError::invalid_params(&format!(
                        "at most {MAX_LARGE_TEXT} bytes"
                    )));
                }
                Ok(tool_result(vec![text(large_text(bytes as usize))]))
            }
            "sleep" => {
                let ms = args.get("ms").and_then(Value::as_u64).ok_or_else(|| {
                    RpcError::invalid_params("argument \"ms\" (a non-negative integer) is required")
                })?;
                let ms = ms.min(MAX_SLEEP_MS);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(tool_result(vec![text(format!("Slept {ms} ms"))]))
            }
            "test_tool_with_logging" => {
                for (i, data) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    self.log(ctx, "info", data).await;
                }
                Ok(tool_result(vec![text(
                    "Tool with logging executed successfully",
                )]))
            }
            "test_logging_tool" => {
                self.log(ctx, "info", "test_logging_tool ran").await;
                Ok(tool_result(vec![text("Logging tool completed")]))
            }
            "test_tool_with_progress" => {
                if let Some(token) = ctx.meta("progressToken").cloned() {
                    for (i, progress) in [0, 50, 100].iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        ctx.notify(
                            "notifications/progress",
                            json!({"progressToken": token, "progress": progress, "total": 100,
                            "message": format!("Completed step {progress} of 100")}),
                        )
                        .await;
                    }
                }
                Ok(tool_result(vec![text("Progress test completed")]))
            }
            "json_schema_2020_12_tool" => Ok(tool_result(vec![text(format!("Received: {args}"))])),
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(tool_result(vec![text(
                    "Reconnection test completed successfully.",
                )]))
            }
            "test_sampling" => {
                let prompt = arg_str("prompt").unwrap_or_else(|| "Hello".into());
                match self
                    .input(ctx, "sampling", mrtr::sample(&prompt, 100))
                    .await
                {
                    Ok(answer) => {
                        let reply = answer
                            .pointer("/content/text")
                            .and_then(Value::as_str)
                            .unwrap_or("(no text)");
                        Ok(tool_result(vec![text(format!("LLM response: {reply}"))]))
                    }
                    Err(r) => r,
                }
            }
            "test_elicitation" => {
                let message =
                    arg_str("message").unwrap_or_else(|| "Please provide your information".into());
                let request = mrtr::elicit(
                    &message,
                    json!({
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"},
                    }),
                    &["username", "email"],
                );
                self.elicitation_tool(ctx, "User response", request).await
            }
            "test_elicitation_sep1034_defaults" => {
                let request = mrtr::elicit(
                    "Please review and update the form fields with defaults",
                    json!({
                        "name": {"type": "string", "description": "User name", "default": "John Doe"},
                        "age": {"type": "integer", "description": "User age", "default": 30},
                        "score": {"type": "number", "description": "User score", "default": 95.5},
                        "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "description": "Verification status", "default": true},
                    }),
                    &[],
                );
                self.elicitation_tool(ctx, "Elicitation completed", request)
                    .await
            }
            "test_elicitation_sep1330_enums" => {
                let request = mrtr::elicit(
                    "Please select options from the enum fields",
                    json!({
                        "untitledSingle": {"type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": [
                            {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]},
                        "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                            "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                        "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3,
                            "items": {"anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}},
                    }),
                    &[],
                );
                self.elicitation_tool(ctx, "Elicitation completed", request)
                    .await
            }
            "test_missing_capability" => {
                if !self.client_has(ctx, "sampling") {
                    return Err(RpcError::missing_capability("sampling"));
                }
                Ok(tool_result(vec![text("Success")]))
            }
            "test_streaming_elicitation" => {
                let request = mrtr::elicit(
                    "What is your name?",
                    json!({"name": {"type": "string"}}),
                    &["name"],
                );
                self.elicitation_tool(ctx, "Streaming elicitation completed", request)
                    .await
            }
            "test_trigger_tool_change" => {
                self.shared
                    .broadcast_list_changed("notifications/tools/list_changed", "toolsListChanged");
                Ok(tool_result(vec![text(
                    "Sent notifications/tools/list_changed",
                )]))
            }
            "test_trigger_prompt_change" => {
                self.shared.broadcast_list_changed(
                    "notifications/prompts/list_changed",
                    "promptsListChanged",
                );
                Ok(tool_result(vec![text(
                    "Sent notifications/prompts/list_changed",
                )]))
            }
            n if n.starts_with("test_input_required_result_") => {
                if !ctx.modern {
                    return Ok(tool_error(
                        "this tool returns an input-required result; it needs protocol 2026-07-28",
                    ));
                }
                self.mrtr_tool(ctx, n)
            }
            _ => Err(RpcError::invalid_params(&format!("Unknown tool: {name}"))),
        }
    }

    async fn elicitation_tool(
        &self,
        ctx: &Ctx<'_>,
        label: &str,
        request: Value,
    ) -> Result<Value, RpcError> {
        match self.input(ctx, "user_input", request).await {
            Ok(answer) => {
                let action = answer
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                let content = answer.get("content").cloned().unwrap_or(json!({}));
                Ok(tool_result(vec![text(format!(
                    "{label}: action={action}, content={content}"
                ))]))
            }
            Err(r) => r,
        }
    }

    fn whoami(&self, ctx: &Ctx<'_>) -> Value {
        // A shared instance gets the caller in each request's _meta (put there
        // by `hangar wrap` from the router's verified assertion); a per-user
        // instance gets it in its environment.
        let id = &self.shared.identity;
        let (user, user_id, server, instance, source) = if id.from_request {
            let m = ctx.meta(mcp_transport::IDENTITY_META);
            let field = |k: &str| m.and_then(|m| m.get(k).cloned());
            (
                field("user_name"),
                field("user"),
                field("server"),
                field("instance"),
                "request",
            )
        } else {
            (
                Some(json!(id.user)),
                Some(json!(id.user_id)),
                Some(json!(id.server)),
                Some(json!(id.instance)),
                "environment",
            )
        };
        json!({
            "user": user, "user_id": user_id, "server": server, "instance": instance,
            "pid": std::process::id(), "identity_from": source,
        })
    }

    /// The `test_input_required_result_*` tools (modern era only).
    fn mrtr_tool(&self, ctx: &Ctx<'_>, name: &str) -> Result<Value, RpcError> {
        let signer = &self.shared.signer;
        let retry = Retry::from_params(&ctx.params, signer)?;
        let one = |key: &str, request: Value, state: Option<String>| {
            let mut m = Map::new();
            m.insert(key.to_owned(), request);
            mrtr::input_required(m, state)
        };
        let ask_name = || {
            mrtr::elicit(
                "What is your name?",
                json!({"name": {"type": "string"}}),
                &["name"],
            )
        };
        let done = |t: String| Ok(tool_result(vec![text(t)]));
        match name {
            "test_input_required_result_elicitation" => match retry.elicited("user_name")? {
                Some(c) => {
                    let who = c.get("name").and_then(Value::as_str).ok_or_else(|| {
                        RpcError::invalid_params("user_name.content.name must be a string")
                    })?;
                    done(format!("Hello, {who}!"))
                }
                None => Ok(one("user_name", ask_name(), None)),
            },
            "test_input_required_result_sampling" => match retry.sampled("capital_question")? {
                Some(answer) => done(format!("The model said: {answer}")),
                None => Ok(one(
                    "capital_question",
                    mrtr::sample("What is the capital of France?", 100),
                    None,
                )),
            },
            "test_input_required_result_list_roots" => match retry.roots("client_roots")? {
                Some(roots) => done(format!("The client has {} root(s)", roots.len())),
                None => Ok(one("client_roots", mrtr::list_roots(), None)),
            },
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                let confirm = || {
                    mrtr::elicit(
                        "Please confirm",
                        json!({"ok": {"type": "boolean"}}),
                        &["ok"],
                    )
                };
                match (&retry.state, retry.elicited("confirm")?) {
                    (Some(state), Some(_)) if state["tool"] == json!(name) => {
                        done("state-ok: confirmed".into())
                    }
                    _ => Ok(one(
                        "confirm",
                        confirm(),
                        Some(signer.sign(&json!({"tool": name, "round": 1}))),
                    )),
                }
            }
            "test_input_required_result_multiple_inputs" => {
                let name_answer = retry.elicited("user_name")?;
                let greeting = retry.sampled("greeting")?;
                let roots = retry.roots("client_roots")?;
                if let (Some(n), Some(g), Some(r)) = (&name_answer, &greeting, &roots) {
                    let who = n.get("name").and_then(Value::as_str).unwrap_or("?");
                    return done(format!("{g} {who}, you have {} root(s)", r.len()));
                }
                let mut requests = Map::new();
                if name_answer.is_none() {
                    requests.insert("user_name".into(), ask_name());
                }
                if greeting.is_none() {
                    requests.insert("greeting".into(), mrtr::sample("Generate a greeting", 50));
                }
                if roots.is_none() {
                    requests.insert("client_roots".into(), mrtr::list_roots());
                }
                Ok(mrtr::input_required(
                    requests,
                    Some(signer.sign(&json!({"tool": name, "round": 1}))),
                ))
            }
            "test_input_required_result_multi_round" => {
                let round = retry
                    .state
                    .as_ref()
                    .filter(|s| s["tool"] == json!(name))
                    .and_then(|s| s["round"].as_u64())
                    .unwrap_or(0);
                let step1 = || {
                    one(
                        "step1",
                        mrtr::elicit(
                            "Step 1: What is your name?",
                            json!({"name": {"type": "string"}}),
                            &["name"],
                        ),
                        Some(signer.sign(&json!({"tool": name, "round": 1}))),
                    )
                };
                match round {
                    1 => match retry.elicited("step1")? {
                        Some(c) => {
                            let who = c.get("name").and_then(Value::as_str).unwrap_or("?");
                            Ok(one(
                                "step2",
                                mrtr::elicit(
                                    "Step 2: What is your favorite color?",
                                    json!({"color": {"type": "string"}}),
                                    &["color"],
                                ),
                                Some(signer.sign(&json!({"tool": name, "round": 2, "name": who}))),
                            ))
                        }
                        None => Ok(step1()),
                    },
                    2 => match retry.elicited("step2")? {
                        Some(c) => {
                            let who = retry
                                .state
                                .as_ref()
                                .and_then(|s| s["name"].as_str())
                                .unwrap_or("?");
                            let color = c.get("color").and_then(Value::as_str).unwrap_or("?");
                            done(format!("Hello {who}, your favorite color is {color}"))
                        }
                        None => Err(RpcError::invalid_params("inputResponses.step2 is required")),
                    },
                    _ => Ok(step1()),
                }
            }
            "test_input_required_result_capabilities" => {
                let mut requests = Map::new();
                if self.client_has(ctx, "elicitation") && retry.elicited("user_name")?.is_none() {
                    requests.insert("user_name".into(), ask_name());
                }
                if self.client_has(ctx, "sampling") && retry.sampled("greeting")?.is_none() {
                    requests.insert("greeting".into(), mrtr::sample("Generate a greeting", 50));
                }
                if self.client_has(ctx, "roots") && retry.roots("client_roots")?.is_none() {
                    requests.insert("client_roots".into(), mrtr::list_roots());
                }
                if requests.is_empty() {
                    if retry.responses.is_empty() {
                        return Err(RpcError::missing_capability("elicitation"));
                    }
                    return done("Got every input the client can give".into());
                }
                Ok(mrtr::input_required(requests, None))
            }
            _ => Err(RpcError::invalid_params(&format!("Unknown tool: {name}"))),
        }
    }

    fn get_prompt(&self, ctx: &Ctx<'_>) -> Result<Value, RpcError> {
        let name = ctx.str_param("name")?;
        let args = ctx.arguments();
        if name == "test_input_required_result_prompt" {
            if !ctx.modern {
                return Err(RpcError::invalid_params(
                    "this prompt needs protocol 2026-07-28",
                ));
            }
            let retry = Retry::from_params(&ctx.params, &self.shared.signer)?;
            return match retry.elicited("user_context")? {
                Some(c) => {
                    let context = c.get("context").and_then(Value::as_str).unwrap_or("");
                    Ok(
                        json!({"description": "A prompt built from the user's context",
                        "messages": [{"role": "user", "content": {"type": "text", "text": format!("Use this context: {context}")}}]}),
                    )
                }
                None => {
                    let mut m = Map::new();
                    m.insert(
                        "user_context".into(),
                        mrtr::elicit(
                            "What context should the prompt use?",
                            json!({"context": {"type": "string"}}),
                            &["context"],
                        ),
                    );
                    Ok(mrtr::input_required(m, None))
                }
            };
        }
        match catalog::prompt_messages(name, &args) {
            Some(Ok(messages)) => Ok(json!({ "messages": messages })),
            Some(Err(why)) => Err(RpcError::invalid_params(&why)),
            None => Err(RpcError::invalid_params(&format!("Unknown prompt: {name}"))),
        }
    }

    /// `subscriptions/listen`: acknowledge, then stream matching notifications
    /// until the client closes the stream (which drops this future).
    async fn listen(&self, ctx: &Ctx<'_>, id: &str) -> Result<Value, RpcError> {
        let requested = ctx
            .params
            .get("notifications")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let supported = ["toolsListChanged", "promptsListChanged"];
        let honoured: Map<String, Value> = requested
            .into_iter()
            .filter(|(k, v)| supported.contains(&k.as_str()) && *v == Value::Bool(true))
            .collect();
        let subscription_id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
        ctx.notify(
            "notifications/subscriptions/acknowledged",
            json!({
            "notifications": honoured, "_meta": {meta::SUBSCRIPTION_ID: subscription_id}}),
        )
        .await;
        let key = self.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.listeners).insert(
            key,
            Listener {
                subscription_id,
                filter: honoured,
                events: ctx.events.clone(),
            },
        );
        let _unregister = Unregister {
            shared: &self.shared,
            key,
        };
        // Ends when the client goes away: the transport drops this future.
        ctx.events.closed().await;
        Ok(json!({"resultType": "complete"}))
    }
}

struct Unregister<'a> {
    shared: &'a Shared,
    key: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        lock(&self.shared.listeners).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const INSTRUCTIONS: &str = "hangar-everything: Hangar's reference MCP server. Demo tools: echo, add, whoami, sleep; plus every conformance fixture.";

fn capabilities(modern: bool) -> Value {
    if modern {
        json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true}, "resources": {}, "completions": {}, "logging": {}})
    } else {
        json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true}, "logging": {}, "completions": {}})
    }
}

fn cacheable(mut result: Value) -> Value {
    result["ttlMs"] = json!(0);
    result["cacheScope"] = json!("public");
    result
}

fn read_resource(ctx: &Ctx<'_>) -> Result<Value, RpcError> {
    let uri = ctx.str_param("uri")?;
    match catalog::read_resource(uri) {
        Some(contents) => Ok(json!({ "contents": [contents] })),
        None => Err(
            RpcError::invalid_params(&format!("Resource not found: {uri}"))
                .with_data(json!({ "uri": uri })),
        ),
    }
}

fn complete(ctx: &Ctx<'_>) -> Value {
    let value = ctx
        .params
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let candidates = ["test", "testValue1", "testValue2", "example"];
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(value))
        .collect();
    json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
}

#[async_trait]
impl Session for Conn {
    async fn request(&self, request: Message, events: EventSender) -> Message {
        let id = request.id_raw().unwrap_or("null").to_owned();
        match self.handle(&request, &events).await {
            Ok(result) => Message::result_response(&id, &result),
            Err(e) => Message::error_response(Some(&id), e.code, &e.message, e.data),
        }
    }

    async fn notify(&self, _notification: Message) {}

    async fn respond(&self, response: Message) {
        let Some(id) = response.id_raw() else { return };
        if let Some(waiter) = lock(&self.legacy.waiting).remove(id) {
            let _ = waiter.send(response);
        }
    }

    async fn close(&self) {
        lock(&self.legacy.waiting).clear();
    }
}
