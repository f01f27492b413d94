//! `subscriptions/listen` for a legacy child: its unsolicited notifications,
//! filtered per listener.
//!
//! A legacy server announces changes to its session (`notifications/*/
//! list_changed`) and updates to resources the session subscribed to
//! (`resources/subscribe`, then `notifications/resources/updated`). The
//! bridge's session receives them all; each listener gets those its filter
//! asked for and the server can send, tagged with its subscription id (the
//! listen request's id). A resource is subscribed in the child while at least
//! one listener wants it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mcp_transport::era::meta;
use mcp_transport::{codes, EventSender, Kind, Message, UnsolicitedSender};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{park, Bridge};

/// Most listeners at once (all clients together).
const MAX_LISTENERS: usize = 256;
/// Most resources one listener may subscribe to.
const MAX_RESOURCES: usize = 64;
/// How long the child gets to answer `resources/(un)subscribe`.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Unsolicited messages of the child waiting to be relayed.
pub const UNSOLICITED_BACKLOG: usize = 256;

/// Which change notifications a listener asked for and the server can send.
#[derive(Debug, Default, Clone)]
struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

struct Listener {
    /// The listen request's id, raw JSON: its subscription id.
    id: String,
    filter: Filter,
    events: EventSender,
}

#[derive(Default)]
pub struct Listeners {
    next: u64,
    all: HashMap<u64, Listener>,
    /// Resources subscribed in the child, with how many listeners want each.
    resources: HashMap<String, usize>,
}

/// Ends a listener when its request ends (the client closed the stream).
struct Unlisten {
    bridge: Arc<Bridge>,
    key: u64,
}

impl Drop for Unlisten {
    fn drop(&mut self) {
        let unwanted = self.bridge.forget(self.key);
        if unwanted.is_empty() {
            return;
        }
        let bridge = self.bridge.clone();
        tokio::spawn(async move {
            for uri in unwanted {
                bridge
                    .ask_child("resources/unsubscribe", json!({ "uri": uri }))
                    .await;
            }
        });
    }
}

/// Relays the child's messages that belong to no request: notifications to
/// listeners, requests refused (no modern client could be asked them).
pub async fn relay_unsolicited(bridge: Weak<Bridge>, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        let Some(bridge) = bridge.upgrade() else {
            return;
        };
        match message.kind() {
            Kind::Notification => bridge.fan_out(&message),
            Kind::Request => {
                let why = "it came while no request that may ask the client was in flight";
                park::refuse(&bridge.child, bridge.own, &message, why).await;
            }
            Kind::Response => {}
        }
    }
}

/// A channel for the bridge's own session: what the child sends outside requests.
pub fn unsolicited() -> (UnsolicitedSender, mpsc::Receiver<Message>) {
    mpsc::channel(UNSOLICITED_BACKLOG)
}

impl Bridge {
    fn listeners(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `subscriptions/listen`: acknowledge what will be honoured, then relay
    /// until the client goes away (the transport drops this future) or the
    /// server exits (the subscription ends with a complete result).
    pub(super) async fn listen(
        self: &Arc<Self>,
        request: &Message,
        events: EventSender,
    ) -> Message {
        let id = request.id_raw().unwrap_or("null").to_owned();
        let requested = request
            .params()
            .and_then(|p| p.get("notifications").cloned())
            .unwrap_or(json!({}));
        let caps = &self.init.capabilities;
        let can =
            |cap: &str, what: &str| caps.get(cap).and_then(|c| c.get(what)) == Some(&json!(true));
        let wants = |key: &str| requested.get(key) == Some(&json!(true));
        let mut filter = Filter {
            tools: wants("toolsListChanged") && can("tools", "listChanged"),
            prompts: wants("promptsListChanged") && can("prompts", "listChanged"),
            resources: wants("resourcesListChanged") && can("resources", "listChanged"),
            uris: Vec::new(),
        };
        if self.listeners().all.len() >= MAX_LISTENERS {
            return Message::error_response(
                Some(&id),
                codes::INTERNAL_ERROR,
                "too many subscriptions are open; try again later",
                None,
            );
        }
        let uris = requested
            .get("resourceSubscriptions")
            .and_then(Value::as_array);
        if let (Some(uris), true) = (uris, can("resources", "subscribe")) {
            for uri in uris.iter().filter_map(Value::as_str).take(MAX_RESOURCES) {
                if !filter.uris.iter().any(|u| u == uri) && self.subscribe(uri).await {
                    filter.uris.push(uri.to_owned());
                }
            }
        }
        let subscription_id: Value = serde_json::from_str(&id).unwrap_or(Value::Null);
        let mut honoured = Map::new();
        for (key, on) in [
            ("toolsListChanged", filter.tools),
            ("promptsListChanged", filter.prompts),
            ("resourcesListChanged", filter.resources),
        ] {
            if on {
                honoured.insert(key.into(), json!(true));
            }
        }
        if requested.get("resourceSubscriptions").is_some() {
            honoured.insert("resourceSubscriptions".into(), json!(filter.uris));
        }
        // The acknowledgement goes first; registering only after it keeps
        // every notification behind it.
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {meta::SUBSCRIPTION_ID: subscription_id}}});
        let _ = events.send(Message::from_value(&ack)).await;
        let key = {
            let mut listeners = self.listeners();
            listeners.next += 1;
            let key = listeners.next;
            listeners.all.insert(
                key,
                Listener {
                    id: id.clone(),
                    filter,
                    events: events.clone(),
                },
            );
            key
        };
        let _unlisten = Unlisten {
            bridge: self.clone(),
            key,
        };
        tokio::select! {
            _ = events.closed() => {}
            _ = self.child.exited() => {}
        }
        let done =
            json!({"resultType": "complete", "_meta": {meta::SUBSCRIPTION_ID: subscription_id}});
        Message::result_response(&id, &done)
    }

    /// Subscribes the child to `uri` unless a listener already did; false if
    /// the child refused.
    async fn subscribe(&self, uri: &str) -> bool {
        let first = {
            let mut listeners = self.listeners();
            let count = listeners.resources.entry(uri.to_owned()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if !first {
            return true;
        }
        let ok = self
            .ask_child("resources/subscribe", json!({ "uri": uri }))
            .await;
        if !ok {
            self.listeners().resources.remove(uri);
        }
        ok
    }

    /// Removes a listener; returns the resources nobody wants any more.
    fn forget(&self, key: u64) -> Vec<String> {
        let mut listeners = self.listeners();
        let Some(listener) = listeners.all.remove(&key) else {
            return Vec::new();
        };
        let mut unwanted = Vec::new();
        for uri in listener.filter.uris {
            if let Some(count) = listeners.resources.get_mut(&uri) {
                *count -= 1;
                if *count == 0 {
                    listeners.resources.remove(&uri);
                    unwanted.push(uri);
                }
            }
        }
        unwanted
    }

    /// Sends one of the bridge's own requests to the child; true if it
    /// answered with a result in time.
    async fn ask_child(&self, method: &str, params: Value) -> bool {
        let request = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
        // Nothing the child says about it is for anyone.
        let (events, _) = mpsc::channel(1);
        let answer = tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            self.child
                .request_as(self.own, Message::from_value(&request), events, false),
        )
        .await;
        match answer {
            Ok(response) if !response.is_error() => true,
            _ => {
                tracing::warn!(
                    method,
                    "the MCP server refused or did not answer the bridge's request"
                );
                false
            }
        }
    }

    /// Gives a notification of the child to every listener that asked for it.
    fn fan_out(&self, notification: &Message) {
        let method = notification.method().unwrap_or_default();
        let updated = (method == "notifications/resources/updated")
            .then(|| {
                notification
                    .params()
                    .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned))
            })
            .flatten();
        let wanted = |f: &Filter| match method {
            "notifications/tools/list_changed" => f.tools,
            "notifications/prompts/list_changed" => f.prompts,
            "notifications/resources/list_changed" => f.resources,
            _ => updated.as_ref().is_some_and(|uri| f.uris.contains(uri)),
        };
        for listener in self.listeners().all.values().filter(|l| wanted(&l.filter)) {
            // The child's own notification: if its `_meta` cannot take the
            // tag, no listener can tell it is theirs; drop it.
            let Ok(tagged) = notification.with_meta_entry(meta::SUBSCRIPTION_ID, &listener.id)
            else {
                tracing::debug!(
                    method,
                    "a notification whose _meta cannot be tagged; dropped"
                );
                continue;
            };
            // A listener too far behind loses a notification rather than
            // holding up every other.
            if listener.events.try_send(tagged).is_err() {
                tracing::debug!(
                    method,
                    "a listener is not keeping up; dropped a notification"
                );
            }
        }
    }
}
