//! The era bridge: modern (2026-07-28) requests served by a legacy-only child.
//!
//! The wrap keeps one child for modern requests. When that child speaks only
//! the legacy protocol ([`handshake`]), the wrap opens one legacy session on
//! it itself and serves every modern request through it:
//!
//! * `server/discover` is answered from the child's `initialize` result;
//!   methods the modern era removed (`initialize`, `ping`, ...) are -32601;
//! * everything else goes to the child, and its answer comes back in modern
//!   form ([`shape`]): `resultType`, caching hints, `serverInfo` added;
//! * progress goes to the request's stream; log messages only when the
//!   request asked for them (`_meta` logLevel) and at its level;
//! * what the child asks its client meanwhile becomes an input-required
//!   result, and the client's retry answers the child ([`park`]);
//! * `subscriptions/listen` relays the child's change notifications and
//!   resource updates ([`listen`]).

pub mod handshake;
pub mod listen;
pub mod park;
pub mod shape;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mcp_transport::era::{self, meta};
use mcp_transport::mrtr::{self, StateSigner};
use mcp_transport::{codes, EventSender, Message, OpenError, Session};
use serde_json::{json, Value};

use crate::child::{Child, SessionKey};
use handshake::Init;
use park::{Call, Ctx};

/// Legacy methods the modern era removed: a modern request for one is
/// "method not found", never a call the legacy child would happily answer.
const RETIRED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Messages a child may send about one request before answering it.
const EVENTS_PER_REQUEST: usize = 64;

/// One legacy session on the kept child, serving every modern client.
pub struct Bridge {
    child: Arc<Child>,
    init: Init,
    /// The `server/discover` result, raw JSON (it never changes).
    discover: String,
    /// Signs the request states that name parked calls.
    signer: StateSigner,
    /// Calls waiting for their clients' answers, by name ([`park`]).
    parked: Mutex<HashMap<String, park::Parked>>,
    /// The bridge's own session on the child: its requests, and what the
    /// child sends outside any request.
    own: SessionKey,
    listeners: Mutex<listen::Listeners>,
}

impl Bridge {
    /// Opens the bridge's legacy session on `child`.
    pub async fn open(child: Arc<Child>) -> Result<Arc<Bridge>, OpenError> {
        let init = handshake::initialize(&child).await?;
        let discover = discover_result(&init).to_string();
        let (unsolicited, rx) = listen::unsolicited();
        let own = child.attach(Some(unsolicited));
        let bridge = Arc::new(Bridge {
            child,
            init,
            discover,
            signer: StateSigner::random(),
            parked: Mutex::new(HashMap::new()),
            own,
            listeners: Mutex::new(listen::Listeners::default()),
        });
        tokio::spawn(listen::relay_unsolicited(Arc::downgrade(&bridge), rx));
        Ok(bridge)
    }

    pub fn child(&self) -> &Arc<Child> {
        &self.child
    }

    async fn request(self: &Arc<Self>, request: Message, events: EventSender) -> Message {
        let id = request.id_raw().unwrap_or("null").to_owned();
        let method = request.method().unwrap_or_default().to_owned();
        match method.as_str() {
            "server/discover" => Message::parse(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#,
                self.discover
            ))
            .unwrap_or_else(|_| internal_error(&id, "could not build the discover result")),
            "subscriptions/listen" => self.listen(&request, events).await,
            m if RETIRED.contains(&m) => Message::error_response(
                Some(&id),
                codes::METHOD_NOT_FOUND,
                &format!("Method not found: {m} (protocol {})", era::LATEST),
                None,
            ),
            _ => {
                let ctx = Ctx::of(&request, events);
                if mrtr::METHODS.contains(&method.as_str()) {
                    self.call(request, ctx).await
                } else {
                    let call = Call::start(&self.child, request);
                    self.drive(call, &ctx).await
                }
            }
        }
    }
}

/// Passes a message the child sent about a request on to its client: progress
/// always, a log message only at or above the level the request asked for
/// (a modern server sends none to a request without `logLevel`).
async fn relay(event: Message, wanted_logs: Option<usize>, events: &EventSender) {
    let pass = match event.method() {
        Some("notifications/progress") => true,
        Some("notifications/message") => wanted_logs.is_some_and(|min| {
            event
                .params()
                .and_then(|p| p.get("level").and_then(Value::as_str).map(str::to_owned))
                .and_then(|level| era::log_level_rank(&level))
                .is_some_and(|rank| rank >= min)
        }),
        _ => false,
    };
    if pass {
        let _ = events.send(event).await;
    }
}

/// The `server/discover` result for a bridged legacy server: its identity,
/// instructions and the capabilities the bridge can honour in the modern era.
fn discover_result(init: &Init) -> Value {
    let mut capabilities = init.capabilities.clone();
    if let Some(caps) = capabilities.as_object_mut() {
        // Legacy tasks are not the modern tasks extension.
        caps.remove("tasks");
    }
    let server_info: Value = serde_json::from_str(&init.server_info).unwrap_or(Value::Null);
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": era::supported_versions(),
        "capabilities": capabilities,
        "_meta": {meta::SERVER_INFO: server_info},
    });
    for (key, raw) in shape::NO_CACHE {
        result[key] = serde_json::from_str(raw).unwrap_or(Value::Null);
    }
    if let Some(instructions) = &init.instructions {
        result["instructions"] = instructions.clone();
    }
    result
}

fn internal_error(id: &str, why: &str) -> Message {
    Message::error_response(Some(id), codes::INTERNAL_ERROR, why, None)
}

/// The session the transport sees for a modern request to a bridged child.
pub struct BridgeSession(pub Arc<Bridge>);

#[async_trait]
impl Session for BridgeSession {
    async fn request(&self, request: Message, events: EventSender) -> Message {
        self.0.request(request, events).await
    }

    /// The modern era defines no client notifications over HTTP (cancelling
    /// is closing the stream); none is something the legacy session expects.
    async fn notify(&self, notification: Message) {
        tracing::debug!(
            method = notification.method().unwrap_or_default(),
            "dropping a modern client notification"
        );
    }

    async fn respond(&self, _response: Message) {}

    async fn close(&self) {}

    fn is_alive(&self) -> bool {
        self.0.child.is_alive()
    }
}
