//! Instance lifecycle: start on the first request, stop when idle, restart
//! after a crash, never more than `max_instances` at once.
//!
//! Each (server, user) — or (server) for shared tenancy — has a [`Slot`].
//! Its async mutex is held while starting, so concurrent first requests
//! start exactly one instance and the rest wait for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use hangar_identity::{Identity, Signer};
use hangar_machines::{Address, Backend, InstanceSpec, Running};
use hangar_store::{Instance as InstanceRecord, Store};
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_transport::StreamableHttp;

use crate::auth::Principal;
use crate::config::{Config, ServerConfig, Tenancy};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("all {0} instance slots are in use; try again shortly")]
    Full(usize),
    #[error(transparent)]
    Backend(#[from] hangar_machines::BackendError),
}

/// Why a request did not get an answer from an instance.
#[derive(Debug)]
pub struct SendError {
    /// The request never reached the instance (it could not be connected
    /// to): safe to send again, to a new instance.
    pub undelivered: bool,
    /// For the log only (it may hold host paths).
    pub detail: String,
}

/// Tells runs of instances apart: a session opened on one run must be
/// reopened on the next.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A running instance and how the router speaks to it.
pub struct Live {
    pub id: String,
    /// Unique to this run of the instance.
    pub generation: u64,
    running: Box<dyn Running>,
    /// Set when the instance could not be reached: dead whatever its
    /// process looks like (it may not have been reaped yet).
    unreachable: AtomicBool,
    link: Link,
    inflight: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// How a request reaches an instance.
enum Link {
    /// A local instance's endpoint, in this process: a function call, with
    /// the verified identity handed over as is (nothing to sign: no one
    /// else can make this call).
    InProcess(StreamableHttp),
    /// HTTP/1.1 with a pool of kept-alive connections (a connection per
    /// request in flight, reused after), each request carrying the
    /// router's signed identity assertion.
    Http(Box<HttpLink>),
}

struct HttpLink {
    client: UpstreamClient,
    signer: Arc<Signer>,
}

impl Live {
    pub fn is_alive(&self) -> bool {
        !self.unreachable.load(Ordering::SeqCst) && self.running.is_alive()
    }

    pub fn pid(&self) -> Option<u32> {
        self.running.pid()
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Counts a request (or an open stream) until the guard is dropped.
    pub fn enter(self: &Arc<Live>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }

    /// Sends a request to the instance on behalf of `identity`.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        identity: &Identity,
    ) -> Result<http::Response<Body>, SendError> {
        match &self.link {
            Link::InProcess(endpoint) => {
                if !self.running.is_alive() {
                    // Its server has exited: nothing was sent.
                    self.unreachable.store(true, Ordering::SeqCst);
                    return Err(SendError {
                        undelivered: true,
                        detail: "the instance's server has exited".into(),
                    });
                }
                let caller = serde_json::to_string(identity).map_err(|e| SendError {
                    undelivered: true,
                    detail: e.to_string(),
                })?;
                Ok(endpoint
                    .handle_admitted(request.map(Body::from), Some(caller))
                    .await)
            }
            Link::Http(http) => {
                let HttpLink { client, signer } = &**http;
                let (mut head, body) = request.into_parts();
                let assertion = signer
                    .assertion(identity)
                    .ok()
                    .and_then(|a| HeaderValue::from_str(&a).ok())
                    .ok_or_else(|| SendError {
                        undelivered: true,
                        detail: "could not sign the identity assertion".into(),
                    })?;
                head.headers.insert(hangar_identity::HEADER, assertion);
                let request = http::Request::from_parts(head, Full::new(body));
                match client.request(request).await {
                    Ok(resp) => Ok(resp.map(Body::new)),
                    Err(e) => {
                        let undelivered = e.is_connect();
                        if undelivered {
                            // Its socket refuses connections: the process is
                            // gone or going, even if it has not been reaped yet.
                            self.unreachable.store(true, Ordering::SeqCst);
                        }
                        Err(SendError {
                            undelivered,
                            detail: mcp_transport::error_chain(&e),
                        })
                    }
                }
            }
        }
    }
}

type UpstreamClient = hyper_util::client::legacy::Client<UnixConnector, Full<Bytes>>;

/// Connects to one instance's Unix socket, whatever the request's URI says.
#[derive(Clone)]
struct UnixConnector(Arc<std::path::PathBuf>);

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            tokio::net::UnixStream::connect(&*path)
                .await
                .map(TokioIo::new)
        })
    }
}

/// How the router will speak to an instance at `address`.
fn link(address: &Address, signer: &Arc<Signer>) -> Link {
    match address {
        Address::InProcess(endpoint) => Link::InProcess(endpoint.clone()),
        Address::Unix(path) => Link::Http(Box::new(HttpLink {
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(UnixConnector(Arc::new(path.clone()))),
            signer: signer.clone(),
        })),
    }
}

/// Writes instance records to the store in the order they are made, on a
/// task of its own. Bounded: when the store is down for long, the oldest
/// states are not queued forever (the records are what `hangar instances`
/// shows, not what the router runs on).
struct RecordWriter {
    tx: tokio::sync::mpsc::Sender<Record>,
}

enum Record {
    Upsert(InstanceRecord),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Most instance records waiting to be written.
const RECORD_QUEUE: usize = 4096;

impl RecordWriter {
    fn start(store: Arc<Store>) -> RecordWriter {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Record>(RECORD_QUEUE);
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                match record {
                    Record::Upsert(record) => {
                        if let Err(e) = store.upsert_instance(&record).await {
                            tracing::warn!(instance = %record.id, "could not record the instance: {e}");
                        }
                    }
                    Record::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        RecordWriter { tx }
    }

    fn write(&self, record: InstanceRecord) {
        if let Err(e) = self.tx.try_send(Record::Upsert(record)) {
            tracing::warn!("instance record not written: {e}");
        }
    }

    async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Record::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
    }
}

/// Keeps an instance from idling out while a request or stream is open.
pub struct InflightGuard(Arc<Live>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.last_used.lock() {
            *t = Instant::now();
        }
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Slot {
    server: String,
    user: Option<Principal>,
    idle_timeout: Duration,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
    /// The generation of the newest run started (0: none yet), for streams
    /// that wait for the instance to come back.
    started: tokio::sync::watch::Sender<u64>,
}

/// What `hangar instances` and the admin views show.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub id: String,
    pub server: String,
    pub user: Option<String>,
    pub pid: Option<u32>,
    pub inflight: usize,
    pub idle_for: Duration,
}

pub struct Instances {
    backend: Arc<dyn Backend>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    /// Signs the identity assertions of requests that go over HTTP.
    signer: Arc<Signer>,
    records: RecordWriter,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    running: AtomicUsize,
}

/// The variables a server's config gives its instances: `env`, then the
/// `env_passthrough` names that the router's environment has.
fn instance_env(server: &ServerConfig) -> Vec<(String, String)> {
    let mut env = server.env.clone();
    for name in &server.env_passthrough {
        if let Ok(value) = std::env::var(name) {
            env.push((name.clone(), value));
        }
    }
    env
}

/// The instance id for (server, user): stable, so the data dir persists.
pub fn instance_id(server: &ServerConfig, user: Option<&Principal>) -> String {
    match (server.tenancy, user) {
        (Tenancy::PerUser, Some(user)) => {
            let short: String = user.user_id.chars().take(16).collect();
            format!("{}-{short}", server.name)
        }
        _ => format!("{}-shared", server.name),
    }
}

impl Instances {
    pub fn new(
        backend: Arc<dyn Backend>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        store: Arc<Store>,
        signer: Arc<Signer>,
    ) -> Arc<Instances> {
        let instances = Arc::new(Instances {
            backend,
            config,
            metrics,
            records: RecordWriter::start(store),
            signer,
            slots: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&instances);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(instances) = weak.upgrade() else {
                    return;
                };
                instances.reap().await;
            }
        });
        instances
    }

    fn slot(&self, server: &ServerConfig, user: Option<&Principal>) -> (String, Arc<Slot>) {
        let id = instance_id(server, user);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    server: server.name.clone(),
                    user: if server.tenancy == Tenancy::PerUser {
                        user.cloned()
                    } else {
                        None
                    },
                    idle_timeout: server.idle_timeout,
                    live: tokio::sync::Mutex::new(None),
                    started: tokio::sync::watch::channel(0).0,
                })
            })
            .clone();
        (id, slot)
    }

    /// The running instance for (server, user), started if needed.
    pub async fn get(
        &self,
        server: &ServerConfig,
        user: Option<&Principal>,
    ) -> Result<Arc<Live>, InstanceError> {
        let (id, slot) = self.slot(server, user);
        let mut live = slot.live.lock().await;
        if let Some(current) = live.as_ref() {
            if current.is_alive() {
                return Ok(current.clone());
            }
            tracing::warn!(instance = %id, "instance died; starting it again");
            // Unreachable is dead: make sure its process is gone too.
            current.running.stop().await;
            self.forget(&id, &slot, "crashed");
            *live = None;
        }
        if self.running.fetch_add(1, Ordering::SeqCst) >= self.config.max_instances {
            self.running.fetch_sub(1, Ordering::SeqCst);
            return Err(InstanceError::Full(self.config.max_instances));
        }
        let started = Instant::now();
        let spec = InstanceSpec {
            id: id.clone(),
            server: server.name.clone(),
            user: slot
                .user
                .as_ref()
                .map(|u| (u.user_id.clone(), u.user_name.clone())),
            command: server.command.clone(),
            env: instance_env(server),
            data_dir: self.config.instance_dir(&id),
            network: server.network,
            shared: server.tenancy == Tenancy::Shared,
        };
        let running = match self.backend.start(&spec).await {
            Ok(r) => r,
            Err(e) => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        let elapsed = started.elapsed();
        self.metrics.instances_running.inc();
        self.metrics
            .cold_starts
            .with_label_values(&[&server.name])
            .inc();
        self.metrics
            .cold_start_seconds
            .with_label_values(&[&server.name])
            .observe(elapsed.as_secs_f64());
        tracing::info!(instance = %id, pid = ?running.pid(), ms = elapsed.as_millis() as u64, "instance started");
        let fresh = Arc::new(Live {
            id: id.clone(),
            generation: GENERATION.fetch_add(1, Ordering::SeqCst),
            link: link(running.address(), &self.signer),
            running,
            unreachable: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        });
        self.record(&fresh, &slot, "running");
        *live = Some(fresh.clone());
        slot.started.send_replace(fresh.generation);
        Ok(fresh)
    }

    /// The running instance for (server, user), if there is one; never
    /// starts one (a client's GET stream alone must not wake an instance).
    pub async fn running(
        &self,
        server: &ServerConfig,
        user: Option<&Principal>,
    ) -> Option<Arc<Live>> {
        let (_, slot) = self.slot(server, user);
        let live = slot.live.lock().await;
        live.as_ref().filter(|l| l.is_alive()).cloned()
    }

    /// Changes each time (server, user) gets a new instance.
    pub fn starts(
        &self,
        server: &ServerConfig,
        user: Option<&Principal>,
    ) -> tokio::sync::watch::Receiver<u64> {
        self.slot(server, user).1.started.subscribe()
    }

    /// Records the instance as running (for `hangar instances`), off the
    /// request path: the store write, with its disk sync, was a
    /// millisecond or more of every cold start.
    fn record(&self, live: &Live, slot: &Slot, state: &str) {
        let now = hangar_store::now();
        self.records.write(InstanceRecord {
            id: live.id.clone(),
            server: slot.server.clone(),
            user_id: slot.user.as_ref().map(|u| u.user_id.clone()),
            state: state.to_owned(),
            pid: live.pid().map(i64::from),
            address: None,
            started_at: Some(now),
            last_used_at: Some(now),
        });
    }

    fn forget(&self, id: &str, slot: &Slot, state: &str) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.metrics.instances_running.dec();
        self.records.write(InstanceRecord {
            id: id.to_owned(),
            server: slot.server.clone(),
            user_id: slot.user.as_ref().map(|u| u.user_id.clone()),
            state: state.to_owned(),
            pid: None,
            address: None,
            started_at: None,
            last_used_at: Some(hangar_store::now()),
        });
    }

    /// Every slot, copied out so no lock is held across an await.
    fn snapshot(&self) -> Vec<(String, Arc<Slot>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Stops instances idle past their server's timeout, and notices crashes.
    async fn reap(&self) {
        let slots = self.snapshot();
        for (id, slot) in slots {
            // A slot being started (or used by `get`) is busy: skip it this round.
            let Ok(mut live) = slot.live.try_lock() else {
                continue;
            };
            let Some(current) = live.as_ref() else {
                continue;
            };
            if !current.is_alive() {
                tracing::warn!(instance = %id, "instance exited");
                current.running.stop().await;
                self.forget(&id, &slot, "crashed");
                *live = None;
                continue;
            }
            if current.inflight.load(Ordering::SeqCst) == 0
                && current.idle_for() >= slot.idle_timeout
            {
                tracing::info!(instance = %id, "instance idle; stopping it");
                current.running.stop().await;
                self.forget(&id, &slot, "stopped");
                *live = None;
            }
        }
    }

    /// Stops everything (router shutdown).
    /// All at once: each gets its grace in parallel, so a thousand
    /// instances stop in about the time of the slowest.
    pub async fn stop_all(&self) {
        let slots = self.snapshot();
        let stops = slots.iter().map(|(id, slot)| async move {
            let mut live = slot.live.lock().await;
            if let Some(current) = live.take() {
                current.running.stop().await;
                self.forget(id, slot, "stopped");
            }
        });
        futures_util::future::join_all(stops).await;
        // The last states reach the store before the router exits.
        self.records.flush().await;
    }

    pub async fn list(&self) -> Vec<InstanceView> {
        let slots = self.snapshot();
        let mut out = Vec::new();
        for (id, slot) in slots {
            let live = slot.live.lock().await;
            if let Some(current) = live.as_ref() {
                out.push(InstanceView {
                    id,
                    server: slot.server.clone(),
                    user: slot.user.as_ref().map(|u| u.user_name.clone()),
                    pid: current.pid(),
                    inflight: current.inflight.load(Ordering::SeqCst),
                    idle_for: current.idle_for(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that looks alive (not reaped yet) but whose socket is gone.
    struct Dying(Address);

    #[async_trait::async_trait]
    impl Running for Dying {
        fn address(&self) -> &Address {
            &self.0
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn is_alive(&self) -> bool {
            true
        }
        async fn stop(&self) {}
    }

    /// Issue 9: a request right after an instance died went to the dead
    /// instance. A refused connection now says "undelivered" (the proxy
    /// sends it again) and makes the instance dead at once, whatever its
    /// process looks like, so `Instances::get` starts a new one.
    #[tokio::test]
    async fn an_instance_whose_socket_refuses_is_dead_at_once() {
        let socket = std::env::temp_dir().join(format!(
            "hangar-router-test-{}.sock",
            hangar_common::random::hex(8)
        ));
        let address = Address::Unix(socket);
        let signer = Arc::new(Signer::from_seed(&[7; 32]).unwrap());
        let live = Live {
            id: "i".into(),
            generation: 1,
            link: link(&address, &signer),
            running: Box::new(Dying(address)),
            unreachable: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        };
        assert!(live.is_alive());
        let req = http::Request::post("http://instance/mcp")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let identity = Identity {
            user: None,
            user_name: None,
            server: "s".into(),
            instance: "i".into(),
        };
        let err = live
            .send(req, &identity)
            .await
            .expect_err("nothing listens there");
        assert!(err.undelivered, "{}", err.detail);
        assert!(!live.is_alive());
    }
}
