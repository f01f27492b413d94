//! Server→client requests of a legacy child, put to modern clients as input
//! requests (MRTR, SEP-2322).
//!
//! A legacy server asks its client mid-request (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) and waits. A modern client cannot be
//! sent a request, so the bridge answers the client's request at once with an
//! `InputRequiredResult` carrying what the child asked, and keeps the child's
//! request waiting ("parked") under a random name. The `requestState` names
//! it, HMAC-signed. The client's retry (a new JSON-RPC id, the same request,
//! `inputResponses`, the state) resumes it: each answer goes to the child as
//! the response to its request, and the child's eventual answer (or its next
//! question) is the retry's answer.
//!
//! A parked request is bound to the method, target and caller of the request
//! that started it, used once, and cancelled in the child when its client
//! does not come back within [`PARK_TTL`].

use std::sync::Arc;
use std::time::Duration;

use mcp_transport::era::meta;
use mcp_transport::{codes, era, mrtr, EventSender, Kind, Message, IDENTITY_META};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinError, JoinHandle};

use super::{relay, shape, Bridge, EVENTS_PER_REQUEST};
use crate::child::{Child, SessionKey};

/// How long a parked request waits for its client's retry.
pub const PARK_TTL: Duration = Duration::from_secs(300);
/// Most requests parked at once (all clients together).
pub const MAX_PARKED: usize = 128;
/// Most questions one request may have outstanding.
const MAX_ASKS: usize = 16;

/// What the request being answered now declares about its client.
pub struct Ctx {
    /// The JSON-RPC id of this HTTP request (a retry has its own).
    pub id: String,
    pub capabilities: Value,
    /// The least log level the request asked for.
    pub wanted_logs: Option<usize>,
    pub events: EventSender,
}

impl Ctx {
    pub fn of(request: &Message, events: EventSender) -> Ctx {
        let capabilities = request
            .meta_field(meta::CLIENT_CAPABILITIES)
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or(json!({}));
        let wanted_logs = request
            .meta_field(meta::LOG_LEVEL)
            .and_then(|raw| serde_json::from_str::<String>(&raw).ok())
            .and_then(|level| era::log_level_rank(&level));
        Ctx {
            id: request.id_raw().unwrap_or("null").to_owned(),
            capabilities,
            wanted_logs,
            events,
        }
    }
}

/// Who a request's retry must be: the same method on the same target from the same caller.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    method: String,
    target: Option<String>,
    /// The router's verified identity of the caller, when it sends one.
    caller: Option<Value>,
}

impl Origin {
    fn of(request: &Message) -> Origin {
        let method = request.method().unwrap_or_default().to_owned();
        let target = era::name_param(&method).and_then(|field| {
            request
                .params()
                .and_then(|p| p.get(field).and_then(Value::as_str).map(str::to_owned))
        });
        let caller = request
            .meta_field(IDENTITY_META)
            .and_then(|raw| serde_json::from_str(&raw).ok());
        Origin {
            method,
            target,
            caller,
        }
    }
}

/// A question of the child's, put to the client under `key`.
struct Ask {
    key: String,
    /// The child's id for its request, raw JSON.
    id: String,
    method: String,
    /// Its params as the child wrote them.
    params: String,
}

/// A request in the child, served across its client's retries. Dropping it
/// cancels the child's request.
pub struct Call {
    child: Arc<Child>,
    key: SessionKey,
    origin: Origin,
    task: JoinHandle<Message>,
    /// What the child sends about the request; `None` while parked.
    events: Option<mpsc::Receiver<Message>>,
    events_open: bool,
    /// Questions put (or to be put) to the client and not answered yet.
    asks: Vec<Ask>,
    asked: u64,
}

impl Call {
    /// Sends `request` to the child.
    pub fn start(child: &Arc<Child>, request: Message) -> Call {
        let origin = Origin::of(&request);
        let key = child.attach(None);
        let (tx, rx) = mpsc::channel(EVENTS_PER_REQUEST);
        let may_ask = mrtr::METHODS.contains(&origin.method.as_str());
        let task = {
            let child = child.clone();
            tokio::spawn(async move { child.request_as(key, request, tx, may_ask).await })
        };
        Call {
            child: child.clone(),
            key,
            origin,
            task,
            events: Some(rx),
            events_open: true,
            asks: Vec::new(),
            asked: 0,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Aborting the task drops the child request's future, which tells the
        // child `notifications/cancelled` (a finished task ignores this).
        self.task.abort();
        self.child.detach(self.key);
    }
}

/// A call waiting for its client's retry.
pub struct Parked {
    call: Call,
    drain: Drain,
    timer: AbortHandle,
}

/// Reads what the child sends about a parked call, so the child is never
/// blocked by a client that is away: notifications are dropped (there is no
/// stream to put them on), questions are kept for the retry.
struct Drain {
    stop: oneshot::Sender<()>,
    task: JoinHandle<(mpsc::Receiver<Message>, Vec<Message>)>,
}

impl Drain {
    fn start(child: Arc<Child>, key: SessionKey, mut events: mpsc::Receiver<Message>) -> Drain {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut questions = Vec::new();
            let mut open = true;
            loop {
                let event = tokio::select! {
                    biased;
                    // Asked to stop, or the parked call was dropped.
                    _ = &mut stopped => break,
                    event = events.recv(), if open => event,
                };
                match event {
                    Some(m) if m.kind() == Kind::Request && questions.len() < MAX_ASKS => {
                        questions.push(m)
                    }
                    Some(m) if m.kind() == Kind::Request => {
                        refuse(&child, key, &m, "too many questions for one request").await
                    }
                    Some(_) => {}
                    None => open = false,
                }
            }
            (events, questions)
        });
        Drain { stop, task }
    }

    /// The events again, with the questions that came meanwhile.
    async fn finish(self) -> Result<(mpsc::Receiver<Message>, Vec<Message>), JoinError> {
        let _ = self.stop.send(());
        self.task.await
    }
}

/// Answers a question of the child's with an error.
pub(super) async fn refuse(child: &Child, key: SessionKey, question: &Message, why: &str) {
    let Some(id) = question.id_raw() else { return };
    tracing::warn!(
        method = question.method().unwrap_or_default(),
        "refusing a request from the MCP server: {why}"
    );
    deny(child, key, id, why).await;
}

/// Answers the child's request `id` (raw JSON) with an error.
async fn deny(child: &Child, key: SessionKey, id: &str, why: &str) {
    let refusal = Message::error_response(
        Some(id),
        codes::METHOD_NOT_FOUND,
        &format!("hangar wrap cannot put this request to the client: {why}"),
        None,
    );
    child.respond(key, refusal).await;
}

/// A fault of the bridge itself (never expected), as -32603.
fn internal(ctx: &Ctx, why: &str) -> Message {
    Message::error_response(Some(&ctx.id), codes::INTERNAL_ERROR, why, None)
}

fn invalid(ctx: &Ctx, why: &str) -> Message {
    Message::error_response(
        Some(&ctx.id),
        codes::INVALID_PARAMS,
        &format!("Invalid params: {why}"),
        None,
    )
}

/// What the drive loop saw first.
enum Step {
    Event(Option<Message>),
    Answer(Result<Message, JoinError>),
}

impl Bridge {
    /// A request for one of the MRTR methods: a retry resumes its parked
    /// call, anything else starts a new one.
    pub(super) async fn call(self: &Arc<Self>, request: Message, ctx: Ctx) -> Message {
        let params = request.params().unwrap_or(json!({}));
        let retry = match mrtr::Retry::from_params(&params, &self.signer) {
            Ok(retry) => retry,
            Err(e) => return invalid(&ctx, &e.0),
        };
        match retry.state {
            Some(ref state) => self.resume(&request, state, &retry.responses, ctx).await,
            None => {
                let call = Call::start(&self.child, request);
                self.drive(call, &ctx).await
            }
        }
    }

    /// Relays what the child sends about `call` until it answers (the
    /// answer, in modern form) or asks the client (an input-required result).
    pub(super) async fn drive(self: &Arc<Self>, mut call: Call, ctx: &Ctx) -> Message {
        loop {
            if !call.asks.is_empty() && call.task.is_finished() {
                // The child answered without waiting for these any more.
                for ask in std::mem::take(&mut call.asks) {
                    deny(
                        &call.child,
                        call.key,
                        &ask.id,
                        "the request has been answered",
                    )
                    .await;
                }
            }
            if !call.asks.is_empty() {
                // Questions sent together are asked together.
                while let Some(Ok(event)) = call.events.as_mut().map(|e| e.try_recv()) {
                    self.take(&mut call, event, ctx).await;
                }
                return self.park(call, ctx).await;
            }
            let step = {
                let Some(events) = call.events.as_mut() else {
                    return internal(ctx, "the bridge lost track of the request");
                };
                tokio::select! {
                    biased;
                    event = events.recv(), if call.events_open => Step::Event(event),
                    answer = &mut call.task => Step::Answer(answer),
                }
            };
            match step {
                Step::Event(Some(event)) => self.take(&mut call, event, ctx).await,
                Step::Event(None) => call.events_open = false,
                Step::Answer(answer) => {
                    // What the child sent before its answer is already queued;
                    // a question it can no longer be waiting on is refused.
                    while let Some(Ok(event)) = call.events.as_mut().map(|e| e.try_recv()) {
                        match event.kind() {
                            Kind::Notification => relay(event, ctx.wanted_logs, &ctx.events).await,
                            Kind::Request => {
                                let why = "the request it was for has been answered";
                                refuse(&call.child, call.key, &event, why).await
                            }
                            Kind::Response => {}
                        }
                    }
                    let answer = answer.unwrap_or_else(|_| {
                        Message::error_response(
                            Some(&ctx.id),
                            codes::INTERNAL_ERROR,
                            "the request to the MCP server ended unexpectedly",
                            None,
                        )
                    });
                    return shape::modern_answer(
                        &answer,
                        &ctx.id,
                        &call.origin.method,
                        &self.init.server_info,
                    );
                }
            }
        }
    }

    /// Handles one message the child sent about `call`.
    async fn take(&self, call: &mut Call, event: Message, ctx: &Ctx) {
        if event.kind() != Kind::Request {
            return relay(event, ctx.wanted_logs, &ctx.events).await;
        }
        let Some(id) = event.id_raw().map(str::to_owned) else {
            return;
        };
        let method = event.method().unwrap_or_default().to_owned();
        let params = event.params().unwrap_or(json!({}));
        let params_raw = event.params_raw().unwrap_or("{}").to_owned();
        if method == "ping" {
            // Liveness is ours to answer; the client is not needed.
            let pong = Message::result_response(&id, &json!({}));
            return call.child.respond(call.key, pong).await;
        }
        let Some(required) = mrtr::required_capability(&method, &params) else {
            return refuse(
                &call.child,
                call.key,
                &event,
                "a modern client cannot be asked it",
            )
            .await;
        };
        if !mrtr::covers(&ctx.capabilities, &required) {
            // As a legacy client without the capability would answer: the
            // server decides what to do without it.
            let why = format!("this request's client capabilities do not include {required}");
            return refuse(&call.child, call.key, &event, &why).await;
        }
        if call.asks.len() >= MAX_ASKS {
            return refuse(
                &call.child,
                call.key,
                &event,
                "too many questions for one request",
            )
            .await;
        }
        call.asked += 1;
        let topic = method.split('/').next().unwrap_or("input");
        call.asks.push(Ask {
            key: format!("{topic}-{}", call.asked),
            id,
            method,
            params: params_raw,
        });
    }

    /// Answers the client with the call's questions and parks the call.
    async fn park(self: &Arc<Self>, mut call: Call, ctx: &Ctx) -> Message {
        // The child's questions go out as it wrote them.
        let requests: Vec<String> = call
            .asks
            .iter()
            .map(|ask| {
                format!(
                    r#"{}:{{"method":{},"params":{}}}"#,
                    Value::String(ask.key.clone()),
                    Value::String(ask.method.clone()),
                    ask.params
                )
            })
            .collect();
        let Some(events) = call.events.take() else {
            return internal(ctx, "the bridge lost track of the request");
        };
        let name = random_name();
        let state = self.signer.sign(&json!({ "call": name }));
        let drain = Drain::start(call.child.clone(), call.key, events);
        let timer = {
            let bridge = Arc::downgrade(self);
            let name = name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(PARK_TTL).await;
                if let Some(bridge) = bridge.upgrade() {
                    bridge.expire(&name).await;
                }
            })
            .abort_handle()
        };
        let entry = Parked { call, drain, timer };
        let refused = {
            let mut parked = self.parked();
            if parked.len() < MAX_PARKED {
                parked.insert(name, entry);
                None
            } else {
                Some(entry)
            }
        };
        let Some(entry) = refused else {
            return self.input_required(ctx, requests, state);
        };
        // Dropping the entry below cancels the child's request.
        entry.timer.abort();
        let why = "too many requests are waiting for their clients' answers";
        for ask in &entry.call.asks {
            deny(&entry.call.child, entry.call.key, &ask.id, why).await;
        }
        Message::error_response(
            Some(&ctx.id),
            codes::INTERNAL_ERROR,
            &format!("{why}; try again later"),
            None,
        )
    }

    /// An `InputRequiredResult` carrying `requests` (raw `"key":{…}` entries).
    fn input_required(&self, ctx: &Ctx, requests: Vec<String>, state: String) -> Message {
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"input_required","inputRequests":{{{}}},"requestState":{}}}}}"#,
            ctx.id,
            requests.join(","),
            Value::String(state)
        );
        match Message::parse(text) {
            Ok(response) => shape::modern_answer(&response, &ctx.id, "", &self.init.server_info),
            Err(_) => internal(ctx, "the MCP server's question is not valid JSON"),
        }
    }

    /// A retry: the parked call it names, answered and driven on.
    async fn resume(
        self: &Arc<Self>,
        request: &Message,
        state: &Value,
        responses: &Map<String, Value>,
        ctx: Ctx,
    ) -> Message {
        let Some(name) = state.get("call").and_then(Value::as_str) else {
            return invalid(&ctx, "requestState was not issued for this request");
        };
        let origin = Origin::of(request);
        let taken = {
            let mut parked = self.parked();
            match parked.get(name) {
                None => Err("requestState names a request that has ended or expired; send the request again without inputResponses and requestState".to_owned()),
                Some(p) if p.call.origin != origin => {
                    Err("requestState belongs to another request".to_owned())
                }
                // (Every answer is an object: `mrtr::Retry` checked.)
                Some(_) => parked.remove(name).ok_or_else(String::new),
            }
        };
        let parked = match taken {
            Ok(parked) => parked,
            Err(why) => return invalid(&ctx, &why),
        };
        parked.timer.abort();
        let mut call = parked.call;
        let (events, questions) = match parked.drain.finish().await {
            Ok(finished) => finished,
            Err(_) => return internal(&ctx, "the bridge lost track of the request"),
        };
        call.events = Some(events);
        for ask in std::mem::take(&mut call.asks) {
            match responses.get(&ask.key) {
                Some(answer) => {
                    let answer = Message::result_response(&ask.id, answer);
                    call.child.respond(call.key, answer).await;
                }
                // Not answered: asked again.
                None => call.asks.push(ask),
            }
        }
        for question in questions {
            self.take(&mut call, question, &ctx).await;
        }
        self.drive(call, &ctx).await
    }

    /// A parked call whose client did not come back: its questions are
    /// refused and its request in the child cancelled.
    async fn expire(&self, name: &str) {
        let Some(parked) = self.parked().remove(name) else {
            return;
        };
        tracing::info!(
            "a client did not answer the MCP server's questions within {} s; cancelling its request",
            PARK_TTL.as_secs()
        );
        let call = parked.call;
        for ask in &call.asks {
            deny(
                &call.child,
                call.key,
                &ask.id,
                "the client did not answer in time",
            )
            .await;
        }
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Parked>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 128 random bits, hex: the name of a parked call.
fn random_name() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
