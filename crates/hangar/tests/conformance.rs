//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in tests/peers) against `hangar-everything --listen` and against
//! `hangar wrap -- hangar-everything`, for both requirement sets. The suite
//! exits non-zero when any scored scenario fails.

mod common;

use common::run_conformance;

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
