//! The process backend: each instance is its server's process on this
//! machine, sandboxed, and the router speaks to it itself. The
//! `hangar-wrap` machinery (the Streamable HTTP endpoint, its sessions, the
//! id-rewriting mux over the child's stdio) runs inside the router, one
//! [`StreamableHttp`] per instance: a request goes from the router's
//! handler to the instance's endpoint as a function call and to the server
//! as a line on its stdin, with no second HTTP exchange and no process in
//! between. The server itself is as isolated as before (its own process,
//! under bubblewrap, an empty environment); a server that crashes ends its
//! pipes, never the router.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hangar_wrap::{Child, Launch, Wrap, WrapConfig};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::{Limits, ServerConfig, StreamableHttp};

use crate::sandbox::{Sandbox, SandboxMode};
use crate::{Address, Backend, BackendError, InstanceSpec, Running};

/// How long a stopping instance's requests get to finish before its
/// sessions are closed and its server is asked to exit (then killed: see
/// `hangar_wrap::child`).
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ProcessBackendConfig {
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

    /// How the instance's server is started: the sandbox's command line
    /// around the server's, from an empty environment plus
    /// [`instance_env`]: nothing of the router's (database URL, client
    /// secrets, API tokens) reaches an instance unless its config hands it on.
    fn launch(&self, spec: &InstanceSpec) -> Result<Launch, BackendError> {
        let mut command = self.sandbox.wrap_command(spec).into_iter();
        let program = command
            .next()
            .ok_or_else(|| BackendError::Start("the server has no command".into()))?;
        Ok(Launch {
            program,
            args: command.collect(),
            env: instance_env(spec, |k| std::env::var(k).ok()),
            clear_env: true,
        })
    }

    /// The instance's endpoint: one server process for all of its sessions
    /// (`shared_child`; ids are rewritten so they never collide), and the
    /// router's verified identity put in every request's `_meta`, over
    /// whatever `dev.hangar/identity` a client sent, in both tenancies.
    fn endpoint(&self, wrap: Arc<Wrap>) -> StreamableHttp {
        let mut config = ServerConfig::new(OriginPolicy::default());
        config.inject_identity = true;
        config.limits = Limits {
            session_idle_timeout: self.config.session_idle_timeout.max(Duration::from_secs(1)),
            ..Limits::default()
        };
        StreamableHttp::new(wrap, config)
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
        let wrap = Arc::new(Wrap::new(WrapConfig {
            launch: self.launch(spec)?,
            shared_child: true,
        }));
        let server = wrap
            .start()
            .await
            .map_err(|e| BackendError::Start(e.to_string()))?;
        Ok(Box::new(LocalInstance {
            address: Address::InProcess(self.endpoint(wrap)),
            server,
            stopped: AtomicBool::new(false),
        }))
    }
}

/// A running local instance: its endpoint in this process (the address)
/// and its server.
struct LocalInstance {
    /// Always `Address::InProcess`.
    address: Address,
    /// The server process every legacy session talks to; the instance lives
    /// as long as it does. (A modern request's server is started on the
    /// first modern request and started again by the endpoint if it exits.)
    server: Arc<Child>,
    stopped: AtomicBool,
}

#[async_trait]
impl Running for LocalInstance {
    fn address(&self) -> &Address {
        &self.address
    }

    fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    fn is_alive(&self) -> bool {
        // `has_exited` looks at the process itself, so a request right after
        // a `kill -9` starts a new instance instead of failing on this one.
        !self.stopped.load(Ordering::SeqCst) && !self.server.has_exited()
    }

    async fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // Requests in flight finish (up to the grace), streams end, then
        // every server process of the instance is asked to exit, then killed.
        if let Address::InProcess(endpoint) = &self.address {
            endpoint.shutdown(STOP_GRACE).await;
        }
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

    /// The backend with no sandbox: these tests are about processes.
    fn unsandboxed() -> ProcessBackend {
        ProcessBackend::new(
            ProcessBackendConfig {
                session_idle_timeout: Duration::from_secs(60),
            },
            Sandbox::detect(SandboxMode::Off, vec![]),
        )
    }

    #[tokio::test]
    async fn a_killed_instance_is_dead_at_once_and_a_stopped_one_too() {
        let dir = std::env::temp_dir().join(format!(
            "hangar-machines-test-{}",
            hangar_common::random::hex(8)
        ));
        let backend = unsandboxed();
        // Stands in for a stdio server: reads its stdin until it closes.
        let spec = |id: &str| InstanceSpec {
            id: id.into(),
            server: "s".into(),
            user: None,
            command: vec!["sh".into(), "-c".into(), "exec cat >/dev/null".into()],
            env: vec![],
            data_dir: dir.join(id),
            network: crate::Network::Host,
            shared: false,
        };

        let killed = backend.start(&spec("a")).await.unwrap();
        assert!(killed.is_alive());
        assert!(matches!(killed.address(), Address::InProcess(_)));
        let pid = nix::unistd::Pid::from_raw(killed.pid().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        // At once: not after the reader has seen its pipe close.
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
        let pid = stopped.pid().unwrap();
        stopped.stop().await;
        assert!(!stopped.is_alive());
        // Its server was asked to exit (stdin closed) and is gone.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'))
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_server_that_cannot_be_started_fails_the_start() {
        let dir = std::env::temp_dir().join(format!(
            "hangar-machines-test-{}",
            hangar_common::random::hex(8)
        ));
        let backend = unsandboxed();
        let spec = InstanceSpec {
            id: "c".into(),
            server: "s".into(),
            user: None,
            command: vec!["/nonexistent/server".into()],
            env: vec![],
            data_dir: dir.join("c"),
            network: crate::Network::Host,
            shared: false,
        };
        let err = match backend.start(&spec).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started a server that does not exist"),
        };
        assert!(err.contains("could not start"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
