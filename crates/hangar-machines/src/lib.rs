//! Where instances run.
//!
//! An instance is one running copy of a catalog server, for one user
//! (per-user tenancy) or for everyone (shared). The router speaks MCP's
//! Streamable HTTP to every instance, so every backend hands back an
//! [`Address`]: an endpoint in the router's own process for local
//! instances (the process backend, the embedded default), or one to reach
//! over HTTP (the Fly Machines backend and other replicas, later). The
//! [`Backend`] trait is the seam where they plug in.

pub mod process;
pub mod sandbox;

use std::path::PathBuf;

use async_trait::async_trait;
use mcp_transport::StreamableHttp;

pub use process::{ProcessBackend, ProcessBackendConfig};
pub use sandbox::{Sandbox, SandboxMode};

/// Whether the server may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Host,
    None,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Unique and stable for (server, user): names sockets and data dirs.
    pub id: String,
    pub server: String,
    /// `(id, name)` of the user for a per-user instance.
    pub user: Option<(String, String)>,
    /// The stdio MCP server's command line.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The instance's own persistent, writable directory.
    pub data_dir: PathBuf,
    pub network: Network,
    /// One instance serves many users: pass each caller's identity in `_meta`.
    pub shared: bool,
}

/// How the router reaches an instance.
#[derive(Clone)]
pub enum Address {
    /// The instance's Streamable HTTP endpoint, in this process: the router
    /// hands it each request as a function call
    /// ([`StreamableHttp::handle_admitted`]).
    InProcess(StreamableHttp),
    /// HTTP/1.1 on a Unix socket (`hangar wrap --listen unix:PATH`).
    Unix(PathBuf),
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::InProcess(_) => f.write_str("InProcess"),
            Address::Unix(path) => f.debug_tuple("Unix").field(path).finish(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("could not start the instance: {0}")]
    Start(String),
    #[error("the instance did not become ready: {0}")]
    NotReady(String),
    #[error("instances must be sandboxed (sandbox = \"required\") but {0}")]
    SandboxUnavailable(String),
}

/// A started instance.
#[async_trait]
pub trait Running: Send + Sync {
    fn address(&self) -> &Address;
    fn pid(&self) -> Option<u32>;
    /// False once the instance has exited (crashed or killed).
    fn is_alive(&self) -> bool;
    /// Stops it (gracefully, then forcibly).
    async fn stop(&self);
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// Starts an instance and returns once it accepts requests.
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn Running>, BackendError>;
}
