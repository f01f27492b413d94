//! `hangar serve` end to end, over real HTTP: the official conformance suite
//! through the router, API-token checks and the RFC 9728 metadata, health
//! and metrics, restarts that keep users and tokens, the instance limit and
//! the audit log.
//!
//! Every test runs its own `hangar serve` (built by `cargo build --workspace
//! --bins`, with `hangar-everything` beside it) with a fresh data dir, on a
//! free loopback port. Instances run under bubblewrap when it works here.
//! Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{call_tool, eventually, get, http, initialize, initialize_body, post};
use common::{everything_server, start_serve, Serve};
use reqwest::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn per_user(access: &str, idle: &str) -> String {
    everything_server("per-user", access, idle)
}

fn mcp_url(serve: &Serve) -> String {
    serve.url("/mcp/everything")
}

// ---------------------------------------------------------------------------
// The conformance suite through the router.

fn conformance_through_router(requirements: &str) {
    let serve = start_serve(&per_user("public", "1m"));
    // The DNS-rebinding scenario needs a localhost URL.
    let url = format!("http://localhost:{}/mcp/everything", serve.addr.port());
    common::run_conformance(&url, requirements);
}

#[test]
fn conformance_through_router_2025_11_25() {
    conformance_through_router("2025-11-25");
}

#[test]
fn conformance_through_router_2026_07_28() {
    conformance_through_router("2026-07-28");
}

// ---------------------------------------------------------------------------
// API tokens and the protected-resource metadata.

#[tokio::test]
async fn api_tokens_are_checked_and_401s_point_at_the_metadata() {
    let serve = start_serve(&per_user("authenticated", "1m"));
    let url = mcp_url(&serve);
    let public_url = format!("http://{}", serve.addr);
    let metadata_url = format!("{public_url}/.well-known/oauth-protected-resource/mcp/everything");

    // No token: 401 with the RFC 9728 challenge.
    let reply = post(&url, None, None, &initialize_body(1)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let challenge = reply
        .header(WWW_AUTHENTICATE)
        .expect("a 401 carries WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "challenge: {challenge}"
    );
    assert!(reply.json().get("error").is_some(), "{}", reply.body);

    // The metadata it points at, and the root document.
    for doc_url in [
        metadata_url.clone(),
        format!("{public_url}/.well-known/oauth-protected-resource"),
    ] {
        let doc = get(&doc_url).await;
        assert_eq!(doc.status, StatusCode::OK, "{doc_url}: {}", doc.body);
        let v = doc.json();
        assert_eq!(
            v["resource"],
            format!("{public_url}/mcp/everything"),
            "{doc_url}: {v}"
        );
        let servers = v["authorization_servers"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc_url}: no authorization_servers: {v}"));
        assert!(!servers.is_empty(), "{doc_url}: {v}");
    }
    let missing = get(&serve.url("/.well-known/oauth-protected-resource/mcp/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A made-up token, and a malformed header.
    let bad = post(&url, Some("hgr_nope_nope"), None, &initialize_body(1)).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{}", bad.body);
    assert!(bad.header(WWW_AUTHENTICATE).is_some());
    let basic = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Basic YWxpY2U6cHc=")
        .body(initialize_body(1).to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    // A real token works…
    let token = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&token)).await;
    let echo = call_tool(
        &url,
        Some(&token),
        &session,
        "echo",
        json!({"message": "hi"}),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.body);
    assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: hi");

    // …until it is revoked: then neither new nor established sessions get in.
    let list = serve.cli(&["token", "list", "--user", "alice"]);
    let list = String::from_utf8_lossy(&list.stdout);
    let ids: Vec<&str> = list.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(ids.len(), 1, "alice has one token: {list}");
    serve.cli(&["token", "revoke", ids[0]]);
    let revoked = post(&url, Some(&token), None, &initialize_body(1)).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{}", revoked.body);
    let revoked = call_tool(
        &url,
        Some(&token),
        &session,
        "echo",
        json!({"message": "hi"}),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{}", revoked.body);
    assert!(revoked.header(WWW_AUTHENTICATE).is_some());
}

// ---------------------------------------------------------------------------
// Health, readiness, metrics.

#[tokio::test]
async fn health_readiness_and_metrics() {
    let serve = start_serve(&per_user("authenticated", "1m"));
    let token = serve.add_user_with_token("alice");
    for path in ["/healthz", "/readyz"] {
        let reply = get(&serve.url(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
    // One request, so that the per-server series exist.
    initialize(&mcp_url(&serve), Some(&token)).await;
    let metrics = get(&serve.url("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        metrics.headers
    );
    for name in [
        "hangar_requests_total{server=\"everything\",status=\"200\"}",
        "hangar_instances_running 1",
        "hangar_cold_starts_total{server=\"everything\"} 1",
    ] {
        assert!(
            metrics.body.contains(name),
            "/metrics lacks {name}:\n{}",
            metrics.body
        );
    }
}

// ---------------------------------------------------------------------------
// Restarts.

#[tokio::test]
async fn a_restart_keeps_users_and_tokens_and_stops_instances() {
    let mut serve = start_serve(&per_user("authenticated", "1m"));
    let token = serve.add_user_with_token("alice");
    initialize(&mcp_url(&serve), Some(&token)).await;
    let instance = serve
        .running_instance("alice")
        .expect("alice's instance is recorded as running");
    let pid = instance.pid.expect("the instance has a pid");
    assert!(common::process_alive(pid));

    let stopping = Instant::now();
    serve.stop();
    eprintln!("hangar serve stopped in {:?}", stopping.elapsed());
    assert!(
        !common::process_alive(pid),
        "alice's instance (pid {pid}) outlived the router"
    );
    assert_eq!(
        serve
            .instances()
            .iter()
            .find(|i| i.id == instance.id)
            .map(|i| i.state.as_str()),
        Some("stopped")
    );

    serve.start();
    let session = initialize(&mcp_url(&serve), Some(&token)).await;
    let who = call_tool(
        &mcp_url(&serve),
        Some(&token),
        &session,
        "whoami",
        json!({}),
    )
    .await;
    let who: Value = serde_json::from_str(
        who.json()["result"]["content"][0]["text"]
            .as_str()
            .expect("whoami text"),
    )
    .expect("whoami is JSON");
    assert_eq!(who["user"], "alice");
    assert_eq!(
        who["instance"],
        instance.id.as_str(),
        "the same stable instance id"
    );
    let again = serve.running_instance("alice").expect("running again");
    assert_ne!(again.pid, Some(pid), "a new process");
}

// ---------------------------------------------------------------------------
// The instance limit.

#[tokio::test]
async fn beyond_max_instances_callers_get_503_with_retry_after() {
    let serve = start_serve(&format!(
        "max_instances = 1\n{}",
        per_user("authenticated", "2s")
    ));
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    let bob = serve.add_user_with_token("bob");

    initialize(&url, Some(&alice)).await;
    let full = post(&url, Some(&bob), None, &initialize_body(7)).await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.body
    );
    let retry: u64 = full
        .header(RETRY_AFTER)
        .expect("a 503 carries Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After: {retry}");
    let v = full.json();
    assert_eq!(v["id"], 7, "the error answers bob's request: {v}");
    assert!(v["error"]["message"].is_string(), "{v}");

    // Alice keeps working meanwhile.
    let again = post(&url, Some(&alice), None, &initialize_body(1)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);

    // Once alice's instance idles out (2 s), bob's slot frees up.
    eventually(Duration::from_secs(10), "alice's instance stops", || {
        serve.running_instance("alice").is_none()
    })
    .await;
    initialize(&url, Some(&bob)).await;
}

// ---------------------------------------------------------------------------
// Audit.

#[tokio::test]
async fn tool_calls_are_audited() {
    let serve = start_serve(&per_user("authenticated", "1m"));
    let url = mcp_url(&serve);
    let token = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&token)).await;
    let echo = call_tool(
        &url,
        Some(&token),
        &session,
        "echo",
        json!({"message": "audit me"}),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.body);
    let bad = call_tool(&url, Some(&token), &session, "echo", json!({})).await;
    assert!(bad.json().get("error").is_some(), "{}", bad.body);

    // The router writes audit rows off the request path: poll the store.
    let store = hangar_store::Store::open_data_dir(&serve.data_dir)
        .await
        .expect("open the router's store");
    let alice = store
        .user_by_name("alice")
        .await
        .expect("read users")
        .expect("alice exists");
    let deadline = Instant::now() + Duration::from_secs(5);
    let rows = loop {
        let rows = store.recent_audit(10).await.expect("read the audit log");
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["error", "ok"], "{rows:?}");
    for row in &rows {
        assert_eq!(row.tool, "echo", "{row:?}");
        assert_eq!(row.server, "everything", "{row:?}");
        assert_eq!(row.user_id.as_deref(), Some(alice.id.as_str()), "{row:?}");
        assert!(row.duration_ms >= 0, "{row:?}");
    }
    store.close().await;
}
