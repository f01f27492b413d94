//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in tests/peers) against `hangar-everything --listen` and against
//! `hangar wrap -- hangar-everything`, for both requirement sets. The suite
//! exits non-zero when any scored scenario fails.

mod common;

use std::process::Command;

fn run_conformance(url: &str, requirements: &str) {
    let peers = common::peers_dir();
    let node = common::node_bin();
    let cli = peers.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let out_dir = tempfile_dir();
    let output = Command::new(&node)
        .arg(&cli)
        .args(["server", "--url", url, "--requirements", requirements, "-o"])
        .arg(&out_dir)
        .env("PATH", format!("{}:{}", node.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗') || l.starts_with("Total")).collect();
    assert!(
        output.status.success(),
        "conformance {requirements} against {url} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The run must have actually exercised scenarios.
    assert!(stdout.contains("Total:"), "no summary from the suite:\n{stdout}");
    eprintln!("conformance {requirements} {url}: {}", summary.join(" | "));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hangar-conformance-{}-{}", std::process::id(), common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// The DNS-rebinding scenario needs a localhost URL, so use "localhost".
fn localhost(running: &common::Running) -> String {
    format!("http://localhost:{}/mcp", running.addr.port())
}

#[test]
fn everything_http_passes_2025_11_25() {
    let server = common::start_everything_http();
    run_conformance(&localhost(&server), "2025-11-25");
}

#[test]
fn everything_http_passes_2026_07_28() {
    let server = common::start_everything_http();
    run_conformance(&localhost(&server), "2026-07-28");
}

#[test]
fn wrap_everything_passes_2025_11_25() {
    let server = common::start_wrap_everything(&[]);
    run_conformance(&localhost(&server), "2025-11-25");
}

#[test]
fn wrap_everything_passes_2026_07_28() {
    let server = common::start_wrap_everything(&[]);
    run_conformance(&localhost(&server), "2026-07-28");
}

#[test]
fn wrap_shared_child_passes_2025_11_25() {
    let server = common::start_wrap_everything(&["--shared-child"]);
    run_conformance(&localhost(&server), "2025-11-25");
}
