//! `hangar wrap`: any stdio MCP server as a Streamable HTTP endpoint.
//!
//! [`Wrap`] is a [`Service`] for the shared transport: each legacy session
//! gets its own child process (servers keep per-connection state), or all
//! share one (`shared_child`); modern stateless requests go to one child
//! kept for them. [`child`] holds the process and the id-rewriting mux.
//!
//! The kept child is asked which era it speaks when it starts: a modern
//! server gets modern requests untouched; a legacy-only one gets one legacy
//! session, opened by the wrap, behind every modern request ([`bridge`]).

pub mod bridge;
pub mod child;

use std::sync::Arc;

use async_trait::async_trait;
use mcp_transport::{
    EventSender, Message, OpenError, RequestContext, Service, Session, UnsolicitedSender,
};
use tokio::sync::Mutex;

use bridge::handshake::Probe;
use bridge::{Bridge, BridgeSession};
pub use child::{Child, Launch, SessionKey};

/// How `hangar wrap` runs its server.
#[derive(Debug, Clone)]
pub struct WrapConfig {
    pub launch: Launch,
    /// Serve every session from one child instead of one child each.
    pub shared_child: bool,
}

/// The child kept for modern requests, and how it is spoken to.
#[derive(Clone)]
enum Kept {
    /// It speaks the modern era: requests pass through untouched.
    Modern(Arc<Child>),
    /// It speaks only the legacy era: the bridge serves modern requests.
    Bridged(Arc<Bridge>),
}

impl Kept {
    fn child(&self) -> &Arc<Child> {
        match self {
            Kept::Modern(child) => child,
            Kept::Bridged(bridge) => bridge.child(),
        }
    }
}

pub struct Wrap {
    config: WrapConfig,
    /// The child every legacy session shares (`shared_child`).
    common: Mutex<Option<Arc<Child>>>,
    /// The child answering modern requests.
    modern: Mutex<Option<Kept>>,
    /// Every per-session child, so shutdown can end them.
    children: std::sync::Mutex<Vec<std::sync::Weak<Child>>>,
}

impl Wrap {
    pub fn new(config: WrapConfig) -> Wrap {
        Wrap {
            config,
            common: Mutex::new(None),
            modern: Mutex::new(None),
            children: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self, shared: bool) -> Result<Arc<Child>, OpenError> {
        let child = Child::spawn(&self.config.launch, shared)
            .map_err(|e| OpenError::Unavailable(e.to_string()))?;
        if let Ok(mut all) = self.children.lock() {
            all.retain(|c| c.strong_count() > 0);
            all.push(Arc::downgrade(&child));
        }
        Ok(child)
    }

    /// Starts the child every legacy session shares (`shared_child`) now
    /// rather than on the first session, and returns it: how the router
    /// starts a local instance (its first call then finds the server
    /// running, and a server that cannot start fails the start).
    pub async fn start(&self) -> Result<Arc<Child>, OpenError> {
        self.common_child().await
    }

    /// The common child, started (again) if it is not running.
    async fn common_child(&self) -> Result<Arc<Child>, OpenError> {
        let mut common = self.common.lock().await;
        if let Some(child) = common.as_ref().filter(|c| c.is_alive()) {
            return Ok(child.clone());
        }
        let child = self.spawn(true)?;
        *common = Some(child.clone());
        Ok(child)
    }

    /// The child kept for modern requests, started (again) and probed if it
    /// is not running. Concurrent first requests wait for one start.
    async fn kept_child(&self) -> Result<Kept, OpenError> {
        let mut kept = self.modern.lock().await;
        if let Some(k) = kept.as_ref().filter(|k| k.child().is_alive()) {
            return Ok(k.clone());
        }
        let child = self.spawn(true)?;
        let started = match bridge::handshake::probe(&child).await {
            Probe::Modern => Kept::Modern(child),
            Probe::Legacy => {
                // Some servers exit on any request before `initialize`.
                let child = if child.is_alive() {
                    child
                } else {
                    self.spawn(true)?
                };
                match Bridge::open(child.clone()).await {
                    Ok(bridge) => Kept::Bridged(bridge),
                    Err(e) => {
                        child.stop().await;
                        return Err(e);
                    }
                }
            }
        };
        *kept = Some(started.clone());
        Ok(started)
    }
}

#[async_trait]
impl Service for Wrap {
    async fn open_session(
        &self,
        _ctx: &RequestContext,
        unsolicited: UnsolicitedSender,
    ) -> Result<Arc<dyn Session>, OpenError> {
        let (child, owned) = if self.config.shared_child {
            (self.common_child().await?, false)
        } else {
            (self.spawn(false)?, true)
        };
        let key = child.attach(Some(unsolicited));
        Ok(Arc::new(ChildSession { child, key, owned }))
    }

    async fn stateless(&self, _ctx: &RequestContext) -> Result<Arc<dyn Session>, OpenError> {
        match self.kept_child().await? {
            Kept::Modern(child) => {
                let key = child.attach(None);
                Ok(Arc::new(ChildSession {
                    child,
                    key,
                    owned: false,
                }))
            }
            Kept::Bridged(bridge) => Ok(Arc::new(BridgeSession(bridge))),
        }
    }

    async fn shutdown(&self) {
        let children: Vec<Arc<Child>> = match self.children.lock() {
            Ok(all) => all.iter().filter_map(|c| c.upgrade()).collect(),
            Err(_) => Vec::new(),
        };
        for child in children {
            child.stop().await;
        }
    }
}

/// A logical session on a child.
struct ChildSession {
    child: Arc<Child>,
    key: SessionKey,
    /// True when the child exists for this session alone (stopped with it).
    owned: bool,
}

#[async_trait]
impl Session for ChildSession {
    async fn request(&self, request: Message, events: EventSender) -> Message {
        self.child.request(self.key, request, events).await
    }

    async fn notify(&self, notification: Message) {
        // The transport cancels by dropping the request, which sends the child
        // a cancellation with the id the child knows; the client's own names
        // an id the child never saw.
        if notification.method() == Some("notifications/cancelled") {
            return;
        }
        self.child.notify(notification).await;
    }

    async fn respond(&self, response: Message) {
        self.child.respond(self.key, response).await;
    }

    async fn close(&self) {
        self.child.detach(self.key);
        if self.owned {
            self.child.stop().await;
        }
    }

    fn is_alive(&self) -> bool {
        self.child.is_alive()
    }
}
