//! Where instances run.
//!
//! An instance is one running copy of a catalog server, for one user
//! (per-user tenancy) or for everyone (shared). The router only ever talks
//! HTTP to an instance, so every backend hands back an [`Address`]; the
//! [`Backend`] trait is the seam where the process backend (here, the embedded
//! default) and the Fly Machines backend (later) plug in.

pub mod process;
pub mod sandbox;

use std::path::PathBuf;

use async_trait::async_trait;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
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
