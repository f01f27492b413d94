//! Issue 9's findings against `hangar serve`, each as a user (or an
//! attacker) would check it: sessions bound to their user in both
//! tenancies, instances that inherit nothing of the router's environment,
//! an identity no client can forge or strip, metrics a client cannot grow,
//! connections that cannot hold a descriptor forever, a request right after
//! a crash that gets a new instance, sessions that outlive their instance,
//! errors in words, and a log that cannot be written (scripts/soak.sh's
//! finding: a full disk).
//!
//! Every test runs its own router on a free loopback port with a fresh data
//! dir; every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::mcp::{call_tool, eventually, get, http, initialize, post, Reply, VERSION};
use common::{everything_bin, node_bin, peers_dir, start_serve, start_serve_with_env, Serve};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn mcp_url(serve: &Serve) -> String {
    serve.url("/mcp/everything")
}

/// The JSON `whoami` reports through `url` on `session`.
async fn whoami_with(url: &str, token: &str, session: &str, meta: Option<Value>) -> Value {
    let mut params = json!({"name": "whoami", "arguments": {}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let reply = post(
        url,
        Some(token),
        Some(session),
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let text = reply.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("whoami text: {}", reply.body))
        .to_owned();
    serde_json::from_str(&text).expect("whoami is JSON")
}

/// A request with `session` and arbitrary method/headers.
async fn with_session(
    method: reqwest::Method,
    url: &str,
    token: &str,
    session: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = http()
        .request(method, url)
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", VERSION)
        .header("accept", "application/json, text/event-stream");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    // A stream that was (wrongly) opened would never end: read a little.
    let body = if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        String::from("<event stream>")
    } else {
        resp.text().await.unwrap_or_default()
    };
    Reply {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------
// Sessions are bound to their user, in both tenancies.

async fn bob_cannot_use_alices_session(tenancy: &str) {
    let serve = start_serve(&common::everything_server(tenancy, "authenticated", "1m"));
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    let bob = serve.add_user_with_token("bob");
    let session = initialize(&url, Some(&alice)).await;
    let bobs_own = initialize(&url, Some(&bob)).await;
    assert_ne!(session, bobs_own);

    use reqwest::Method;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": "bob was here"}}});
    let attempts = [
        ("POST tools/call", Method::POST, vec![], Some(call.clone())),
        (
            "POST notification",
            Method::POST,
            vec![],
            Some(json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"})),
        ),
        (
            "GET stream",
            Method::GET,
            vec![("accept", "text/event-stream")],
            None,
        ),
        (
            "GET resume",
            Method::GET,
            vec![("accept", "text/event-stream"), ("last-event-id", "0_1")],
            None,
        ),
        ("DELETE", Method::DELETE, vec![], None),
    ];
    for (what, method, extra, body) in attempts {
        let reply = with_session(method, &url, &bob, &session, &extra, body).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{tenancy}: bob's {what} on alice's session: {} {}",
            reply.status,
            reply.body
        );
    }
    // Alice's session is untouched, and so is bob's own.
    let echo = call_tool(
        &url,
        Some(&alice),
        &session,
        "echo",
        json!({"message": "still mine"}),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK, "{tenancy}: {}", echo.body);
    assert_eq!(
        echo.json()["result"]["content"][0]["text"],
        "Echo: still mine"
    );
    let who = whoami_with(&url, &bob, &bobs_own, None).await;
    assert_eq!(who["user"], "bob", "{tenancy}: {who}");
    // A made-up session id is 404 too (never forwarded to a shared instance).
    let made_up = call_tool(
        &url,
        Some(&alice),
        "0123456789abcdef0123456789abcdef",
        "echo",
        json!({"message": "x"}),
    )
    .await;
    assert_eq!(made_up.status, StatusCode::NOT_FOUND, "{}", made_up.body);
}

#[tokio::test]
async fn a_shared_instance_session_refuses_another_user() {
    bob_cannot_use_alices_session("shared").await;
}

#[tokio::test]
async fn a_per_user_instance_session_refuses_another_user() {
    bob_cannot_use_alices_session("per-user").await;
}

#[tokio::test]
async fn a_deleted_session_stays_ended() {
    let serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1m",
    ));
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&alice)).await;
    let deleted = with_session(reqwest::Method::DELETE, &url, &alice, &session, &[], None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let after = call_tool(
        &url,
        Some(&alice),
        &session,
        "echo",
        json!({"message": "x"}),
    )
    .await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.body);
}

// ---------------------------------------------------------------------------
// Instances inherit nothing of the router's environment.

#[tokio::test]
async fn an_instance_sees_none_of_the_routers_secrets_and_what_its_config_declares() {
    // server-everything's get-env tool prints its whole environment.
    let server =
        peers_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let config = format!(
        "[servers.everything]\ncommand = [\"{}\", \"{}\", \"stdio\"]\nenv = {{ DECLARED = \"from-config\" }}\nenv_passthrough = [\"HANDED_ON\"]\n",
        node_bin().display(),
        server.display()
    );
    let serve = start_serve_with_env(
        common::free_port(),
        &config,
        &[
            ("SUPER_SECRET_DB_PASSWORD", "hunter2"),
            ("HANDED_ON", "deliberately"),
            ("FLY_API_TOKEN", "fly-secret"),
        ],
    );
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&alice)).await;
    let reply = call_tool(&url, Some(&alice), &session, "get-env", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let text = reply.json()["result"]["content"][0]["text"]
        .as_str()
        .expect("get-env text")
        .to_owned();
    let env: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("env as JSON");
    assert!(
        !text.contains("hunter2"),
        "the router's secret reached the instance: {text}"
    );
    assert!(!text.contains("fly-secret"), "{text}");
    assert_eq!(env.get("DECLARED"), Some(&json!("from-config")), "{text}");
    assert_eq!(env.get("HANDED_ON"), Some(&json!("deliberately")), "{text}");
    assert!(env.contains_key("PATH"), "{text}");
    let home = env.get("HOME").and_then(Value::as_str).unwrap_or_default();
    assert!(
        home.starts_with(serve.data_dir.to_str().unwrap()) && home.contains("instances"),
        "HOME is the instance's own dir: {home}"
    );
    assert!(
        env.get("HANGAR_USER").is_some_and(|u| u == "alice"),
        "{text}"
    );
    // Nothing beyond the documented base, Hangar's own, and the config's
    // (bubblewrap sets PWD to the directory it starts the server in: the
    // instance's own).
    if let Some(pwd) = env.get("PWD") {
        assert_eq!(pwd.as_str(), Some(home), "{text}");
    }
    let allowed = ["PATH", "HOME", "LANG", "TZ", "PWD", "DECLARED", "HANDED_ON"];
    for key in env.keys() {
        assert!(
            allowed.contains(&key.as_str()) || key.starts_with("HANGAR_"),
            "unexpected variable {key} in the instance: {text}"
        );
    }
}

// ---------------------------------------------------------------------------
// The identity an instance receives is always the router's.

#[tokio::test]
async fn a_client_cannot_forge_or_strip_the_identity_in_either_tenancy() {
    for tenancy in ["per-user", "shared"] {
        let serve = start_serve(&common::everything_server(tenancy, "authenticated", "1m"));
        let url = mcp_url(&serve);
        let alice = serve.add_user_with_token("alice");
        serve.add_user_with_token("bob");
        let session = initialize(&url, Some(&alice)).await;
        let forged = json!({"dev.hangar/identity": {"user": "bobs-id", "user_name": "bob",
                             "server": "everything", "instance": "everything-bob"}});
        for meta in [Some(forged), Some(Value::Null), None] {
            let who = whoami_with(&url, &alice, &session, meta.clone()).await;
            assert_eq!(who["user"], "alice", "{tenancy} with _meta {meta:?}: {who}");
        }
        // A `_meta` that is no object cannot carry the identity: the request
        // is refused (never run with none, or with the client's).
        for meta in [json!("a string"), json!([1, 2])] {
            let reply = post(
                &url,
                Some(&alice),
                Some(&session),
                &json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}, "_meta": meta}}),
            )
            .await;
            let v = reply.json();
            assert_eq!(v["id"], 10, "{tenancy}: {v}");
            assert_eq!(
                v["error"]["code"], -32602,
                "{tenancy} with _meta {meta}: {v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Unauthenticated clients cannot grow the router.

#[tokio::test]
async fn made_up_server_names_do_not_grow_the_metrics() {
    let serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1m",
    ));
    let client = http();
    for i in 0..300 {
        let resp = client
            .post(serve.url(&format!("/mcp/made-up-{i}")))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = resp.text().await.unwrap();
        assert!(!body.contains("made-up"), "the 404 echoes the name: {body}");
    }
    let metrics = get(&serve.url("/metrics")).await.body;
    assert!(!metrics.contains("made-up"), "a label per made-up name");
    assert!(
        metrics.contains(r#"server="(unknown)",status="404"} 300"#),
        "{metrics}"
    );
    assert!(
        metrics.len() < 20_000,
        "/metrics is {} bytes",
        metrics.len()
    );
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1m",
    ));
    let pid = serve.pid().expect("router pid");
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let rss_kib = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let (fds_before, rss_before) = (fds(), rss_kib());
    // Many slow clients at once, each sending one byte a second: the
    // header-read timeout of 10 s ends every one of them, and the router's
    // descriptors and memory go back to where they were.
    const SLOW: usize = 200;
    let started = Instant::now();
    let clients: Vec<_> = (0..SLOW)
        .map(|_| {
            let addr = serve.addr;
            tokio::spawn(async move {
                let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
                let request = b"POST /mcp/everything HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                for i in 0..30 {
                    let byte = request.get(i).copied().unwrap_or(b'a');
                    if slow.write_all(&[byte]).await.is_err() {
                        return Some(started.elapsed());
                    }
                    let mut buf = [0u8; 512];
                    match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                        Err(_) => {}
                        Ok(_) => return Some(started.elapsed()),
                    }
                }
                None
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (fds_during, rss_during) = (fds(), rss_kib());
    let mut latest = Duration::ZERO;
    for client in clients {
        let closed_after = client
            .await
            .unwrap()
            .expect("a connection was still open after 30 s");
        latest = latest.max(closed_after);
    }
    let mut fds_after = fds();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds_after > fds_before + 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = fds();
    }
    let rss_after = rss_kib();
    eprintln!(
        "{SLOW} trickling clients, all cut off within {latest:?}; router fds {fds_before} → {fds_during} → {fds_after}, RSS {rss_before} → {rss_during} → {rss_after} KiB"
    );
    assert!(latest < Duration::from_secs(15), "{latest:?}");
    assert!(
        fds_during >= fds_before + SLOW / 2,
        "the slow clients were connected: {fds_during} fds"
    );
    assert!(
        fds_after <= fds_before + 5,
        "descriptors not given back: {fds_before} → {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "memory not given back: {rss_before} → {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------
// Crashes and idle stops: new instances, and sessions that live on.

/// The pid of alice's running instance (its server, under bwrap).
fn instance_pid(serve: &Serve) -> u32 {
    serve
        .running_instance("alice")
        .and_then(|i| i.pid)
        .expect("alice's instance runs")
}

/// Issue 9: "the new connection's `initialize`, sent after the pending
/// call had already failed, got 502 … instead of a new instance". A call is
/// in flight when the instance is killed; it fails; the very next requests
/// (a new session, and a call on the old one) must reach a new instance.
#[tokio::test]
async fn a_request_right_after_kill_9_gets_a_new_instance() {
    let serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1m",
    ));
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    for round in 0..5 {
        let session = initialize(&url, Some(&alice)).await;
        let pid = instance_pid(&serve);
        let pending = {
            let (url, alice, session) = (url.clone(), alice.clone(), session.clone());
            tokio::spawn(async move {
                call_tool(&url, Some(&alice), &session, "sleep", json!({"ms": 5000})).await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(4), pending)
            .await
            .expect("the pending call settles promptly")
            .unwrap();
        assert!(
            failed.status != StatusCode::OK || failed.body.contains("\"error\""),
            "round {round}: the call in flight fails: {}",
            failed.body
        );
        // No pause: the very next requests.
        let fresh = post(&url, Some(&alice), None, &common::mcp::initialize_body(1)).await;
        assert_eq!(
            fresh.status,
            StatusCode::OK,
            "round {round}: {}",
            fresh.body
        );
        let echo = call_tool(
            &url,
            Some(&alice),
            &session,
            "echo",
            json!({"message": "again"}),
        )
        .await;
        assert_eq!(echo.status, StatusCode::OK, "round {round}: {}", echo.body);
        assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: again");
        assert_ne!(instance_pid(&serve), pid, "round {round}: a new instance");
    }
}

#[tokio::test]
async fn a_session_outlives_an_idle_stop_and_a_crash_of_its_instance() {
    let serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1s",
    ));
    let url = mcp_url(&serve);
    let alice = serve.add_user_with_token("alice");
    let session = initialize(&url, Some(&alice)).await;
    let subscribe = post(
        &url,
        Some(&alice),
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe",
                "params": {"uri": "test://static-text"}}),
    )
    .await;
    assert_eq!(subscribe.status, StatusCode::OK, "{}", subscribe.body);
    let first = instance_pid(&serve);

    // Idle: the instance stops; the session does not end.
    eventually(
        Duration::from_secs(10),
        "alice's instance idles out",
        || serve.running_instance("alice").is_none(),
    )
    .await;
    let echo = call_tool(
        &url,
        Some(&alice),
        &session,
        "echo",
        json!({"message": "after idle"}),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.body);
    assert_eq!(
        echo.json()["result"]["content"][0]["text"],
        "Echo: after idle"
    );
    let second = instance_pid(&serve);
    assert_ne!(first, second, "a new run of the instance");

    // A crash: the same.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually(Duration::from_secs(5), "the router notices", || {
        serve.running_instance("alice").is_none()
    })
    .await;
    let who = whoami_with(&url, &alice, &session, None).await;
    assert_eq!(who["user"], "alice", "{who}");
    assert_ne!(instance_pid(&serve), second);
}

// ---------------------------------------------------------------------------
// Errors in words.

#[tokio::test]
async fn a_server_that_cannot_start_is_explained_without_host_paths() {
    let serve = start_serve(
        "[servers.broken]\ncommand = [\"/nonexistent/dir/mcp-server\", \"--token=s3cr3t\"]\n",
    );
    let alice = serve.add_user_with_token("alice");
    let reply = post(
        &serve.url("/mcp/broken"),
        Some(&alice),
        None,
        &common::mcp::initialize_body(4),
    )
    .await;
    // The instance (`hangar wrap`) starts; its server process does not:
    // the JSON-RPC error comes from the instance, answering the request.
    let v = reply.json();
    assert_eq!(v["id"], 4, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "an error in words: {v}");
    for leak in [
        "/nonexistent",
        "s3cr3t",
        "None",
        "Some(",
        serve.data_dir.to_str().unwrap(),
        "hangar wrap",
    ] {
        assert!(!message.contains(leak), "{leak:?} in {message:?}");
    }
    let _ = everything_bin();
}

// ---------------------------------------------------------------------------
// A log that cannot be written. Found by scripts/soak.sh when the disk its
// router logged to filled up: every thread that logged panicked (tracing's
// fallback report of a failed write is an eprintln!), so requests died
// unanswered, the audit writer stopped for good, the startup banner kept a
// router from starting and the shutdown message made it exit with 101.

/// The router and its instances log (at debug) to a stderr whose every write
/// fails with ENOSPC, as on a full disk: they start, answer, and stop cleanly.
#[tokio::test]
async fn a_log_on_a_full_disk_stops_neither_the_router_nor_its_instances() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped: no /dev/full here to stand in for a full disk");
        return;
    }
    let mut serve = start_serve(&common::everything_server(
        "per-user",
        "authenticated",
        "1m",
    ));
    let alice = serve.add_user_with_token("alice");
    serve.stop();
    // `log` sends the router's stderr there and sets HANGAR_LOG=debug, which
    // its instances inherit with the stderr itself.
    serve.log = Some(full.to_path_buf());
    serve.start();
    let url = mcp_url(&serve);
    for round in 0..3 {
        let session = initialize(&url, Some(&alice)).await;
        let message = format!("round {round}");
        let echo = call_tool(
            &url,
            Some(&alice),
            &session,
            "echo",
            json!({ "message": message }),
        )
        .await;
        assert_eq!(echo.status, StatusCode::OK, "round {round}: {}", echo.body);
        assert_eq!(
            echo.json()["result"]["content"][0]["text"],
            format!("Echo: {message}")
        );
    }
    // Asserts a clean exit (status 0) within 10 s of SIGTERM.
    serve.stop();
}
