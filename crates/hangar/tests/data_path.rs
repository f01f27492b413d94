//! Issue 10's data path, as a user would check it: answers of any size pass
//! through the router intact, as JSON and as SSE, without the router
//! holding them more than briefly; and the audit records what a tool call's
//! answer really said, however it came.
//!
//! Every test runs its own router on a free loopback port with a fresh data
//! dir; every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{initialize, VERSION};
use common::{everything_server, start_serve, Serve};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn mcp_url(serve: &Serve) -> String {
    serve.url("/mcp/everything")
}

/// What hangar-everything's `large_text` tool answers, made here
/// independently (its pattern is documented with the tool).
fn expected_text(len: usize) -> String {
    (0..len)
        .map(|i| (b'a' + ((i * 7 + i / 26) % 26) as u8) as char)
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("router status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Resets the peak RSS the kernel reports (VmHWM) to the current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// POSTs a tools/call with the given Accept and returns the status, the
/// content type and the whole body.
async fn call(
    url: &str,
    token: &str,
    session: &str,
    accept: &str,
    name: &str,
    arguments: Value,
) -> (StatusCode, String, Vec<u8>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let resp = client
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", VERSION)
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": name, "arguments": arguments}})
            .to_string(),
        )
        .send()
        .await
        .expect("send the call");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.bytes().await.expect("read the answer").to_vec();
    (status, content_type, body)
}

/// The JSON-RPC response in an SSE body: the last `data` event.
fn sse_response(body: &[u8]) -> Value {
    let text = std::str::from_utf8(body).expect("UTF-8 stream");
    let events = text.split("\n\n").filter_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        (!data.is_empty()).then(|| data.join("\n"))
    });
    let last = events.last().expect("a data event");
    serde_json::from_str(&last).expect("the event is JSON")
}

/// Issue 10: an answer over 4 MiB was buffered for the audit, and what did
/// not fit became an empty body with the instance's status and
/// Content-Length. Now 64 MiB arrive byte for byte, as JSON and as SSE, and
/// the router's memory rises by a bounded multiple of the answer while it
/// passes and falls back after.
#[tokio::test]
async fn a_64_mib_answer_arrives_intact_as_json_and_as_sse() {
    let serve = start_serve(&everything_server("per-user", "authenticated", "5m"));
    let url = mcp_url(&serve);
    let token = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&token)).await;
    let pid = serve.pid().expect("router pid");
    let size = 64 * MIB;
    let expected = sha256(expected_text(size).as_bytes());

    for (accept, sse) in [
        ("application/json, text/event-stream", false),
        ("text/event-stream", true),
    ] {
        let before = status_kib(pid, "VmRSS:");
        reset_peak(pid);
        let started = Instant::now();
        let (status, content_type, body) = call(
            &url,
            &token,
            &session,
            accept,
            "large_text",
            json!({"bytes": size}),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{accept}");
        assert_eq!(
            content_type.starts_with("text/event-stream"),
            sse,
            "{content_type}"
        );
        let answer: Value = if sse {
            sse_response(&body)
        } else {
            serde_json::from_slice(&body).expect("a JSON answer")
        };
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text in an answer of {} bytes", body.len()));
        assert_eq!(text.len(), size, "{accept}");
        assert_eq!(sha256(text.as_bytes()), expected, "{accept}: not intact");

        let peak = status_kib(pid, "VmHWM:");
        let grown_mib = peak.saturating_sub(before) as f64 / 1024.0;
        // Settle: the answer's buffers are freed once it has been sent.
        let mut after = status_kib(pid, "VmRSS:");
        let deadline = Instant::now() + Duration::from_secs(5);
        while after > before + 32 * 1024 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = status_kib(pid, "VmRSS:");
        }
        eprintln!(
            "{}: {} MiB in {took:?}; router RSS {before} KiB before, peak +{grown_mib:.0} MiB, {after} KiB after",
            if sse { "SSE" } else { "JSON" },
            size / MIB
        );
        // The line from the server is held once while its id is mapped
        // back, and its encoding for the client once: a few copies at most,
        // never a buffer per chunk or one kept after.
        assert!(
            grown_mib <= 4.0 * (size / MIB) as f64,
            "router peak grew {grown_mib:.0} MiB for a {} MiB answer",
            size / MIB
        );
        assert!(
            after <= before + 32 * 1024,
            "router RSS stayed at {after} KiB (was {before} KiB) after the answer"
        );
    }
}

/// Reads the audit log until `want` rows are there (the router writes them
/// off the request path), at most 5 s.
async fn audit_rows(serve: &Serve, want: usize) -> Vec<hangar_store::AuditEntry> {
    let store = hangar_store::Store::open_data_dir(&serve.data_dir)
        .await
        .expect("open the router's store");
    let deadline = Instant::now() + Duration::from_secs(5);
    let rows = loop {
        let rows = store.recent_audit(50).await.expect("read the audit log");
        if rows.len() >= want || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    store.close().await;
    rows
}

/// Issue 10: a tool call answered over SSE was audited "ok" as soon as the
/// stream opened. Now the audit reads the response on the stream: a tool
/// that fails is "tool_error", a JSON-RPC error "error", a success "ok",
/// for SSE answers as for JSON ones.
#[tokio::test]
async fn the_audit_records_what_an_sse_answer_said() {
    let serve = start_serve(&everything_server("per-user", "authenticated", "5m"));
    let url = mcp_url(&serve);
    let token = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&token)).await;
    let cases = [
        ("test_error_handling", json!({}), "tool_error"),
        ("echo", json!({}), "error"),
        ("echo", json!({"message": "fine"}), "ok"),
    ];
    for (accept, sse) in [
        ("text/event-stream", true),
        ("application/json, text/event-stream", false),
    ] {
        for (tool, arguments, _) in &cases {
            let (status, content_type, body) =
                call(&url, &token, &session, accept, tool, arguments.clone()).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(content_type.starts_with("text/event-stream"), sse);
            assert!(!body.is_empty());
        }
    }
    let rows = audit_rows(&serve, 2 * cases.len()).await;
    // Rows of one second come in no set order: compare them sorted. Each
    // case twice, once per round (before the fix the SSE round's failures
    // were "ok").
    let mut got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.tool.clone(), r.outcome.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = cases
        .iter()
        .chain(cases.iter())
        .map(|(tool, _, outcome)| (tool.to_string(), outcome.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "{rows:?}");
}
