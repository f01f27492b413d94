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
        // Values go in `--flag=VALUE` form: a base64url key (or an id) may
        // begin with '-', which would otherwise read as another flag.
        cmd.arg("wrap")
            .arg(format!("--listen=unix:{}", socket.display()))
            .arg("--ready-line")
            // One server process per instance: a user's sessions share it.
            .arg("--shared-child")
            .arg(format!("--identity-key={}", self.config.identity_key))
            .arg(format!("--instance={}", spec.id))
            .arg(format!(
                "--session-idle-timeout={}",
                self.config.session_idle_timeout.as_secs().max(1)
            ))
            .arg("--grace=2");
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
                // Without a ready line it has usually exited (its reason is
                // on stderr): report how, waiting a moment for the status.
                let status = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running".to_owned(),
                };
                return Err(BackendError::NotReady(format!(
                    "it said {other:?} ({status})"
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
        if !self.alive.load(Ordering::SeqCst) {
            return false;
        }
        // The watcher only polls: look now as well, so that a request right
        // after a crash starts a new instance instead of failing on the dead one.
        match self.child.try_lock() {
            Ok(mut child) => match child.as_mut() {
                Some(process) => matches!(process.try_wait(), Ok(None)),
                // Taken by `stop`: it is going away.
                None => false,
            },
            // The watcher (or `stop`) holds it right now; trust the flag.
            Err(_) => true,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_that_look_like_flags_stay_values() {
        let backend = ProcessBackend::new(
            ProcessBackendConfig {
                hangar: "hangar".into(),
                run_dir: "/run/hangar".into(),
                // base64url keys may begin with '-'.
                identity_key: "-pKey".into(),
                session_idle_timeout: Duration::from_secs(60),
            },
            Sandbox::detect(SandboxMode::Off, vec![]),
        );
        let spec = InstanceSpec {
            id: "-odd-id".into(),
            server: "s".into(),
            user: None,
            command: vec!["server".into()],
            env: vec![],
            data_dir: "/data/i".into(),
            network: crate::Network::Host,
            shared: false,
        };
        let cmd = backend.command(&spec, std::path::Path::new("/run/hangar/i.sock"));
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "--listen=unix:/run/hangar/i.sock",
            "--identity-key=-pKey",
            "--instance=-odd-id",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("server"));
    }

    #[tokio::test]
    async fn a_killed_instance_is_dead_at_once_and_a_stopped_one_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hangar-machines-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Stands in for `hangar wrap`: says it is ready, then waits.
        let fake = dir.join("fake-hangar");
        std::fs::write(&fake, "#!/bin/sh\necho ready\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let backend = ProcessBackend::new(
            ProcessBackendConfig {
                hangar: fake,
                run_dir: dir.join("run"),
                identity_key: "key".into(),
                session_idle_timeout: Duration::from_secs(60),
            },
            Sandbox::detect(SandboxMode::Off, vec![]),
        );
        let spec = |id: &str| InstanceSpec {
            id: id.into(),
            server: "s".into(),
            user: None,
            command: vec!["server".into()],
            env: vec![],
            data_dir: dir.join(id),
            network: crate::Network::Host,
            shared: false,
        };

        let killed = backend.start(&spec("a")).await.unwrap();
        assert!(killed.is_alive());
        let pid = nix::unistd::Pid::from_raw(killed.pid().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        // Well before the exit watcher's next poll.
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        while killed.is_alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "still alive after kill -9"
            );
            std::thread::sleep(Duration::from_millis(1));
        }

        let stopped = backend.start(&spec("b")).await.unwrap();
        assert!(stopped.is_alive());
        stopped.stop().await;
        assert!(!stopped.is_alive());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
