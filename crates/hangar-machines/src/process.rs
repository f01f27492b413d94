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
            let problem = sandbox.problem().unwrap_or("no sandbox");
            match sandbox.mode() {
                SandboxMode::Off => tracing::warn!("instances run UNSANDBOXED (sandbox = \"off\")"),
                SandboxMode::Required => tracing::error!(
                    "no instance can start: instances must run sandboxed and {problem}. Install bubblewrap (apt-get install bubblewrap), or set sandbox = \"off\" (or \"auto\") in the configuration to run them unsandboxed."
                ),
                SandboxMode::Auto => tracing::warn!(
                    "instances run UNSANDBOXED: {problem} (sandbox = \"auto\"). Install bubblewrap to sandbox them."
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
            .arg("--grace=2")
            // In both tenancies: the router's verified identity overwrites
            // whatever `dev.hangar/identity` a client put in `_meta`.
            .arg("--inject-identity");
        cmd.arg("--").args(self.sandbox.wrap_command(spec));
        // `hangar wrap` and the server start from an empty environment:
        // nothing of the router's (database URL, client secrets, API
        // tokens) reaches an instance unless the config hands it on.
        cmd.env_clear()
            .envs(instance_env(spec, |k| std::env::var(k).ok()));
        cmd.stdin(Stdio::null())
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
        hangar_common::fs::create_private_dir(&spec.data_dir)
            .map_err(|e| BackendError::Start(format!("{}: {e}", spec.data_dir.display())))?;
        hangar_common::fs::create_private_dir(&self.config.run_dir)
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
                    Ok(Ok(status)) => format!("it exited ({status})"),
                    _ => {
                        let _ = child.kill().await;
                        "it stopped talking".to_owned()
                    }
                };
                let said = match other {
                    Some(line) => format!(
                        "its first line was not \"ready\" but {:?}",
                        truncate(&line, 200)
                    ),
                    None => "it printed nothing".to_owned(),
                };
                return Err(BackendError::NotReady(format!("{said}; {status}")));
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

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
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

/// The environment an instance starts with, and nothing else: a minimal
/// base (`PATH`, `LANG`, `TZ` as the router has them; `HOME` = the
/// instance's data dir), Hangar's own `HANGAR_*` variables (who the instance
/// is for), then the server's `env` and `env_passthrough` from its config
/// (already resolved into `spec.env`). `router_env` reads the router's own
/// environment (a parameter, so that tests can give it one).
pub fn instance_env(
    spec: &InstanceSpec,
    router_env: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    set(
        "PATH",
        router_env("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned()),
    );
    set("HOME", spec.data_dir.display().to_string());
    set(
        "LANG",
        router_env("LANG").unwrap_or_else(|| "C.UTF-8".to_owned()),
    );
    if let Some(tz) = router_env("TZ") {
        set("TZ", tz);
    }
    for (k, v) in &spec.env {
        set(k, v.clone());
    }
    // Hangar's own last, so that no config can forge them.
    set("HANGAR_SERVER", spec.server.clone());
    set("HANGAR_INSTANCE", spec.id.clone());
    if let Some((id, name)) = &spec.user {
        set("HANGAR_USER_ID", id.clone());
        set("HANGAR_USER", name.clone());
    }
    if spec.shared {
        // Tells the server that each request's `_meta` carries the caller's
        // identity, put there by Hangar (a per-user server trusts only its
        // environment).
        set("HANGAR_IDENTITY", "request".to_owned());
    }
    set(
        "HANGAR_LOG",
        router_env("HANGAR_LOG").unwrap_or_else(|| "warn".to_owned()),
    );
    env
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

    #[test]
    fn an_instance_gets_the_base_hangars_own_and_its_config_and_nothing_else() {
        let spec = InstanceSpec {
            id: "i1".into(),
            server: "s".into(),
            user: Some(("uid".into(), "alice".into())),
            command: vec!["server".into()],
            env: vec![
                ("DECLARED".into(), "yes".into()),
                // A config cannot forge Hangar's own variables.
                ("HANGAR_USER".into(), "mallory".into()),
            ],
            data_dir: "/data/instances/i1".into(),
            network: crate::Network::Host,
            shared: false,
        };
        let router = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_owned()),
            "DATABASE_URL" => Some("postgres://secret".to_owned()),
            "TZ" => Some("Europe/Paris".to_owned()),
            _ => None,
        };
        let env: std::collections::BTreeMap<String, String> =
            instance_env(&spec, router).into_iter().collect();
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "DECLARED",
                "HANGAR_INSTANCE",
                "HANGAR_LOG",
                "HANGAR_SERVER",
                "HANGAR_USER",
                "HANGAR_USER_ID",
                "HOME",
                "LANG",
                "PATH",
                "TZ"
            ]
        );
        assert_eq!(env["HANGAR_USER"], "alice");
        assert_eq!(env["HOME"], "/data/instances/i1");
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["LANG"], "C.UTF-8");
        let shared = InstanceSpec {
            user: None,
            shared: true,
            ..spec
        };
        let env: std::collections::BTreeMap<String, String> =
            instance_env(&shared, router).into_iter().collect();
        assert_eq!(
            env.get("HANGAR_IDENTITY").map(String::as_str),
            Some("request")
        );
        assert!(!env.contains_key("HANGAR_USER_ID"));
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
