//! The process backend: each instance is a `hangar wrap` process on this
//! machine, listening on a Unix socket in Hangar's run dir, running the
//! server (sandboxed) as its child. `hangar wrap` itself stays outside the
//! sandbox: it is ours, holds only the router's public key, and is the one
//! thing the router talks to.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::sandbox::{Sandbox, SandboxMode};
use crate::{Address, Backend, BackendError, InstanceSpec, Running};

/// How long an instance may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopping instance gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ProcessBackendConfig {
    /// The `hangar` executable (runs `hangar wrap`).
    pub hangar: PathBuf,
    /// Where instance sockets live (inside Hangar's data dir, hidden from instances).
    pub run_dir: PathBuf,
    /// The router's public key, for `--identity-key`.
    pub identity_key: String,
    /// Sessions inside an instance end after this long idle.
    pub session_idle_timeout: Duration,
}

pub struct ProcessBackend {
    config: ProcessBackendConfig,
    sandbox: Sandbox,
}

impl ProcessBackend {
    pub fn new(config: ProcessBackendConfig, sandbox: Sandbox) -> ProcessBackend {
        if !sandbox.active() {
            match sandbox.mode() {
                SandboxMode::Off => tracing::warn!("instances run UNSANDBOXED (sandbox = \"off\")"),
                _ => tracing::warn!(
                    "instances run UNSANDBOXED: {}. Install bubblewrap, or set sandbox = \"required\" to refuse instead.",
                    sandbox.problem().unwrap_or("no sandbox")
                ),
            }
        }
        ProcessBackend { config, sandbox }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    fn command(&self, spec: &InstanceSpec, socket: &std::path::Path) -> Command {
        let mut cmd = Command::new(&self.config.hangar);
        cmd.arg("wrap")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--ready-line")
            // One server process per instance: a user's sessions share it.
            .arg("--shared-child")
            .arg("--identity-key")
            .arg(&self.config.identity_key)
            .arg("--instance")
            .arg(&spec.id)
            .arg("--session-idle-timeout")
            .arg(
                self.config
                    .session_idle_timeout
                    .as_secs()
                    .max(1)
                    .to_string(),
            )
            .arg("--grace")
            .arg("2");
        if spec.shared {
            cmd.arg("--inject-identity");
        }
        cmd.arg("--").args(self.sandbox.wrap_command(spec));
        cmd.env("HANGAR_SERVER", &spec.server)
            .env("HANGAR_INSTANCE", &spec.id);
        match &spec.user {
            Some((id, name)) => cmd.env("HANGAR_USER_ID", id).env("HANGAR_USER", name),
            None => cmd.env_remove("HANGAR_USER_ID").env_remove("HANGAR_USER"),
        };
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(
                "HANGAR_LOG",
                std::env::var("HANGAR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn Running>, BackendError> {
        if !self.sandbox.active() && self.sandbox.mode() == SandboxMode::Required {
            return Err(BackendError::SandboxUnavailable(
                self.sandbox
                    .problem()
                    .unwrap_or("it is unusable")
                    .to_owned(),
            ));
        }
        create_private_dir(&spec.data_dir)
            .map_err(|e| BackendError::Start(format!("{}: {e}", spec.data_dir.display())))?;
        create_private_dir(&self.config.run_dir)
            .map_err(|e| BackendError::Start(format!("{}: {e}", self.config.run_dir.display())))?;
        let socket = self.config.run_dir.join(format!("{}.sock", spec.id));
        let mut child = self
            .command(spec, &socket)
            .spawn()
            .map_err(|e| BackendError::Start(format!("{}: {e}", self.config.hangar.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BackendError::Start("no stdout pipe".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            Ok(Ok(other)) => {
                let status = child.try_wait().ok().flatten();
                return Err(BackendError::NotReady(format!(
                    "it said {other:?} (exit status {status:?})"
                )));
            }
            Ok(Err(e)) => return Err(BackendError::NotReady(e.to_string())),
            Err(_) => {
                let _ = child.kill().await;
                return Err(BackendError::NotReady(format!(
                    "not ready within {READY_TIMEOUT:?}"
                )));
            }
        }
        let pid = child.id();
        let alive = Arc::new(AtomicBool::new(true));
        let child = Arc::new(Mutex::new(Some(child)));
        tokio::spawn(watch_exit(child.clone(), alive.clone(), spec.id.clone()));
        Ok(Box::new(ProcessInstance {
            address: Address::Unix(socket),
            pid,
            alive,
            child,
        }))
    }
}

/// Marks the instance dead as soon as its process exits, however it exits.
async fn watch_exit(child: Arc<Mutex<Option<Child>>>, alive: Arc<AtomicBool>, id: String) {
    loop {
        {
            let mut guard = child.lock().await;
            let Some(process) = guard.as_mut() else { break };
            match process.try_wait() {
                Ok(Some(status)) => {
                    tracing::info!(instance = %id, %status, "instance exited");
                    break;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alive.store(false, Ordering::SeqCst);
}

struct ProcessInstance {
    address: Address,
    pid: Option<u32>,
    alive: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
}

#[async_trait]
impl Running for ProcessInstance {
    fn address(&self) -> &Address {
        &self.address
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    async fn stop(&self) {
        let taken = self.child.lock().await.take();
        let Some(mut child) = taken else { return };
        if let Some(pid) = child.id() {
            // SIGTERM lets `hangar wrap` drain and stop its server.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        self.alive.store(false, Ordering::SeqCst);
        let Address::Unix(path) = &self.address;
        let _ = std::fs::remove_file(path);
    }
}

fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}
