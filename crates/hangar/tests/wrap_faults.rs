//! Fault handling of `hangar wrap`, driven over real HTTP: the guards and
//! limits of the Streamable HTTP endpoint, children that exit, crash or
//! chatter on stdout, transparency of the id-rewriting mux, shared children,
//! the SIGTERM drain and the session limit.
//!
//! The wrapped servers are `hangar-everything` (built beside `hangar` by
//! `cargo build --workspace --bins`) or a small Python 3 fixture written to a
//! temporary directory at test time. Every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::Running;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// The legacy protocol version the tests speak.
const VERSION: &str = "2025-11-25";
/// The modern protocol version.
const MODERN: &str = "2026-07-28";
/// The longest any single HTTP exchange may take in these tests.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// A small MCP-over-HTTP client.

/// One HTTP answer, read in full.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("read the response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The JSON-RPC messages in the body, whether it is JSON or SSE.
    fn messages(&self) -> Vec<String> {
        if self.content_type().starts_with("text/event-stream") {
            sse_data(&self.body)
        } else {
            vec![self.body.clone()]
        }
    }

    /// The JSON-RPC response (the message with `result` or `error`), as text.
    fn response_text(&self) -> String {
        self.messages()
            .into_iter()
            .find(|m| {
                serde_json::from_str::<Value>(m)
                    .is_ok_and(|v| v.get("result").is_some() || v.get("error").is_some())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no JSON-RPC response in the body (status {}): {}",
                    self.status, self.body
                )
            })
    }

    fn response(&self) -> Value {
        serde_json::from_str(&self.response_text()).expect("the response is JSON")
    }

    /// `(code, message)` of a JSON-RPC error body; panics on anything else.
    fn rpc_error(&self) -> (i64, String) {
        let v = self.response();
        let error = v.get("error").unwrap_or_else(|| {
            panic!(
                "expected a JSON-RPC error (status {}), got {}",
                self.status, self.body
            )
        });
        let code = error["code"].as_i64().expect("error.code is an integer");
        let message = error["message"]
            .as_str()
            .expect("error.message is a string")
            .to_owned();
        assert!(!message.trim().is_empty(), "empty error message: {v}");
        (code, message)
    }

    /// The text of the first content item of a `tools/call` result.
    fn tool_text(&self) -> String {
        let v = self.response();
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("not a tool result with text: {v}"))
            .to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The `data` of every event in an SSE body (events with empty data, such as
/// the priming event, are left out).
fn sse_data(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            (!data.is_empty()).then_some(data)
        })
        .collect()
}

/// A client of one endpoint, holding at most one session.
#[derive(Clone)]
struct Peer {
    http: Client,
    url: String,
    session: Option<String>,
    token: Option<String>,
}

impl Peer {
    fn new(running: &Running) -> Peer {
        Peer {
            http: Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("build the HTTP client"),
            url: running.url("/mcp"),
            session: None,
            token: None,
        }
    }

    fn with_token(mut self, token: &str) -> Peer {
        self.token = Some(token.to_owned());
        self
    }

    /// A POST as a well-behaved client sends it, session headers included.
    fn post(&self) -> reqwest::RequestBuilder {
        self.post_with(&[])
    }

    /// A POST with some of the usual headers replaced (or added).
    fn post_with(&self, overrides: &[(&'static str, &str)]) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            headers.insert(name, HeaderValue::from_str(value).expect("header value"));
        };
        set("content-type", "application/json");
        set("accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            set("mcp-session-id", session);
            set("mcp-protocol-version", VERSION);
        }
        if let Some(token) = &self.token {
            set("authorization", &format!("Bearer {token}"));
        }
        for (name, value) in overrides {
            set(name, value);
        }
        self.http.post(&self.url).headers(headers)
    }

    async fn send(&self, body: impl Into<String>) -> Reply {
        let resp = self.post().body(body.into()).send().await.expect("POST");
        Reply::read(resp).await
    }

    async fn request(&self, id: Value, method: &str, params: Value) -> Reply {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(body.to_string()).await
    }

    async fn call_tool(&self, id: Value, name: &str, arguments: Value) -> Reply {
        self.request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// Sends `initialize` and returns the reply without opening the session.
    async fn try_initialize(&self) -> Reply {
        self.send(initialize_body("0")).await
    }

    /// Opens a session (initialize + notifications/initialized).
    async fn initialize(&mut self) -> Reply {
        let reply = self.try_initialize().await;
        assert_eq!(reply.status, StatusCode::OK, "initialize: {}", reply.body);
        assert!(
            reply.response().get("result").is_some(),
            "initialize failed: {}",
            reply.body
        );
        let session = reply
            .header("mcp-session-id")
            .expect("initialize answers with Mcp-Session-Id")
            .to_owned();
        self.session = Some(session);
        let done = self
            .send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(
            done.status,
            StatusCode::ACCEPTED,
            "notifications/initialized: {}",
            done.body
        );
        reply
    }

    async fn delete(&self) -> Reply {
        let mut req = self.http.delete(&self.url);
        if let Some(session) = &self.session {
            req = req.header("mcp-session-id", session);
        }
        Reply::read(req.send().await.expect("DELETE")).await
    }

    /// A modern (2026-07-28) request: `params` with the `_meta` and the
    /// headers that era requires, no session.
    fn modern_post(&self, id: Value, method: &str, mut params: Value) -> reqwest::RequestBuilder {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.post_with(&[("mcp-protocol-version", MODERN), ("mcp-method", method)])
            .body(body.to_string())
    }

    async fn modern(&self, id: Value, method: &str, params: Value) -> Reply {
        let resp = self
            .modern_post(id, method, params)
            .send()
            .await
            .expect("POST");
        Reply::read(resp).await
    }

    /// Opens the session's standalone SSE stream (GET).
    async fn listen(&self) -> SseStream {
        let session = self.session.as_deref().expect("a session");
        let resp = self
            .http
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", VERSION)
            // The stream stays open: no overall timeout, reads are bounded instead.
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "GET stream");
        SseStream {
            resp,
            buf: String::new(),
        }
    }
}

fn initialize_body(raw_id: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{raw_id},"method":"initialize","params":{{"protocolVersion":"{VERSION}","capabilities":{{}},"clientInfo":{{"name":"wrap-faults","version":"0"}}}}}}"#
    )
}

/// A live SSE response read event by event.
struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    /// The next event's data that satisfies `want`, waiting at most `within`.
    async fn next_matching(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = sse_data(&event).into_iter().next() {
                    if want(&data) {
                        return data;
                    }
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no matching SSE event within {within:?}; unread: {:?}",
                        self.buf
                    )
                })
                .expect("read the SSE stream")
                .expect("the SSE stream ended early");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

// ---------------------------------------------------------------------------
// Fixtures.

/// A stdio MCP server in Python. `python3 fixture.py MODE [RECORD_FILE]`:
///
/// * `exit`: exits at once, before reading anything.
/// * `crash`: answers everything except `tools/call`, on which it dies (`os._exit`).
/// * `noise`: writes a non-JSON line to stdout before every answer.
/// * `record`: appends every line it receives to RECORD_FILE, byte for byte
///   (and `<EOF>` when its stdin closes), and answers every request other
///   than `initialize` with a fixed reply full of unknown fields.
///
/// * `legacy`: `record`, as a legacy-only server with resource subscriptions:
///   `server/discover` is "method not found".
/// * `picky`: `legacy`, but exits on any request before `initialize` (some
///   servers do).
///
/// In every mode the method `vendor/trigger` first makes the server send an
/// unknown notification of its own, and `vendor/never` is never answered.
const FIXTURE: &str = r#"
import json, os, sys

mode = sys.argv[1]
record = sys.argv[2] if len(sys.argv) > 2 else None

def send(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

def log(raw):
    if record:
        with open(record, "ab") as f:
            f.write(raw + b"\n")

if mode == "exit":
    sys.exit(0)

initialized = False

while True:
    raw = sys.stdin.buffer.readline()
    if not raw:
        log(b"<EOF>")
        break
    line = raw.rstrip(b"\n")
    log(line)
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if "id" not in msg or "method" not in msg:
        continue
    method = msg["method"]
    if mode == "picky" and method != "initialize" and not initialized:
        os._exit(1)
    if mode in ("legacy", "picky") and method == "server/discover":
        send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}))
        continue
    if mode == "noise":
        send("this is not JSON: a chatty server printing to stdout")
    if method == "initialize":
        initialized = True
        capabilities = {"tools": {}}
        if mode in ("legacy", "picky"):
            capabilities = {"tools": {"listChanged": True}, "resources": {"subscribe": True}}
        send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": capabilities,
            "serverInfo": {"name": "fixture-" + mode, "version": "0"}}}))
        continue
    if mode == "crash" and method == "tools/call":
        os._exit(3)
    if method == "vendor/never":
        continue
    if method == "vendor/trigger":
        send('{"jsonrpc":"2.0","method":"notifications/vendor.example/ping","params":{"_meta":{"vendor.example/n":1.50},"payload" : "hi"}}')
    if mode in ("record", "legacy", "picky"):
        send('{"jsonrpc":"2.0","id":%s,"result":{"_meta":{"vendor.example/trace":"t-1"},"unknownField":[1,2.50,{"z":null}]} ,"vendorExtra":true}' % json.dumps(msg["id"]))
    else:
        send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {
            "content": [{"type": "text", "text": "ok " + method}]}}))
"#;

/// The fixed reply of the `record` fixture, with `{ID}` for the id.
const RECORD_REPLY: &str = r#"{"jsonrpc":"2.0","id":{ID},"result":{"_meta":{"vendor.example/trace":"t-1"},"unknownField":[1,2.50,{"z":null}]} ,"vendorExtra":true}"#;

/// The notification every fixture sends on `vendor/trigger`.
const VENDOR_PING: &str = r#"{"jsonrpc":"2.0","method":"notifications/vendor.example/ping","params":{"_meta":{"vendor.example/n":1.50},"payload" : "hi"}}"#;

/// The real Python interpreter (resolved once, so no shim runs per child).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed for the fixture servers");
        assert!(out.status.success(), "python3 does not run");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// A fresh directory for one test's files.
fn scratch_dir(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hangar-wrap-faults-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes the fixture into `dir` and returns the wrapped command for `mode`.
fn fixture_command(dir: &Path, mode: &str, record: Option<&Path>) -> Vec<String> {
    let script = dir.join("fixture.py");
    std::fs::write(&script, FIXTURE).expect("write the fixture");
    let mut cmd = vec![
        python().to_owned(),
        "-u".to_owned(),
        script.display().to_string(),
        mode.to_owned(),
    ];
    if let Some(record) = record {
        cmd.push(record.display().to_string());
    }
    cmd
}

fn start_fixture(extra: &[&str], command: &[String]) -> Wrap {
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    Wrap(common::start_wrap(extra, &command))
}

fn wrap_everything(extra: &[&str]) -> Wrap {
    Wrap(common::start_wrap_everything(extra))
}

/// `hangar wrap` under test. Dropping it kills hangar and then the servers it
/// was running: a killed hangar cannot end its children, and hangar-everything
/// does not exit when its stdin closes, so they would outlive the test.
struct Wrap(Running);

impl std::ops::Deref for Wrap {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.0
    }
}

impl std::ops::DerefMut for Wrap {
    fn deref_mut(&mut self) -> &mut Running {
        &mut self.0
    }
}

impl Drop for Wrap {
    fn drop(&mut self) {
        let children = children_of(self.0.child.id());
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
        for pid in children {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`; comm may hold spaces, so split after ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
    .collect()
}

/// Lines the `record` fixture received so far.
fn recorded(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `check` every 20 ms until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_alive(running: &mut Running) {
    assert!(
        running
            .child
            .try_wait()
            .expect("query hangar wrap")
            .is_none(),
        "hangar wrap exited"
    );
}

fn process_exists(pid: u32) -> bool {
    // A zombie has exited; only its exit status waits to be collected.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// 1–7: the endpoint's guards.

#[tokio::test]
async fn malformed_bodies_get_400_with_jsonrpc_errors() {
    let wrap = wrap_everything(&[]);
    let peer = Peer::new(&wrap);

    let reply = peer.send(r#"{"jsonrpc":"2.0","id":1,"method":"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let (code, message) = reply.rpc_error();
    assert_eq!(code, -32700, "{message}");
    assert!(message.to_lowercase().contains("parse"), "{message}");

    let reply = peer.send(r#"{"hello":"world"}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let (code, message) = reply.rpc_error();
    assert_eq!(code, -32600, "{message}");
    assert!(message.contains("jsonrpc"), "{message}");

    // Batches were removed from MCP in 2025-06-18.
    let reply = peer
        .send(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let (code, message) = reply.rpc_error();
    assert_eq!(code, -32600, "{message}");
    assert!(message.contains("batch"), "{message}");
}

#[tokio::test]
async fn wrong_content_type_gets_415() {
    let wrap = wrap_everything(&[]);
    let peer = Peer::new(&wrap);
    let resp = peer
        .post_with(&[("content-type", "text/plain")])
        .body(initialize_body("1"))
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(resp).await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        reply.body
    );
    let (_, message) = reply.rpc_error();
    assert!(message.contains("application/json"), "{message}");
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let wrap = wrap_everything(&["--max-body-bytes", "1024"]);
    let peer = Peer::new(&wrap);
    let padding = "x".repeat(2048);
    let reply = peer
        .send(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{padding}"}}}}"#
        ))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    let (_, message) = reply.rpc_error();
    assert!(message.contains("1024"), "{message}");

    // A body under the limit still works.
    let mut peer = peer;
    peer.initialize().await;
}

#[tokio::test]
async fn session_ids_are_required_known_and_end_with_delete() {
    let wrap = wrap_everything(&[]);
    let mut peer = Peer::new(&wrap);

    // No initialize, no session header.
    let reply = peer.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("Mcp-Session-Id"), "{message}");

    // A session id the server never issued.
    let mut stranger = peer.clone();
    stranger.session = Some("0123456789abcdef0123456789abcdef".into());
    let reply = stranger.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("initialize"), "{message}");

    // A real session works until it is deleted.
    peer.initialize().await;
    let reply = peer.request(json!(2), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.response()["result"]["tools"].is_array());
    let reply = peer.delete().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = peer.request(json!(3), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("Session not found"), "{message}");
}

#[tokio::test]
async fn foreign_origin_and_host_get_403() {
    let wrap = wrap_everything(&[]);
    let peer = Peer::new(&wrap);
    let port = wrap.addr.port();

    let resp = peer
        .post_with(&[("origin", "http://evil.example.com")])
        .body(initialize_body("1"))
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(resp).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("Origin"), "{message}");

    let resp = peer
        .post_with(&[("host", "evil.example.com")])
        .body(initialize_body("1"))
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(resp).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("Host"), "{message}");

    let origin = format!("http://localhost:{port}");
    let resp = peer
        .post_with(&[("origin", &origin)])
        .body(initialize_body("1"))
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(resp).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.response().get("result").is_some(), "{}", reply.body);
}

#[tokio::test]
async fn unsupported_protocol_version_header_gets_400() {
    let wrap = wrap_everything(&[]);
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let resp = peer
        .post_with(&[("mcp-protocol-version", "1999-01-01")])
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(resp).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(
        message.contains("MCP-Protocol-Version") && message.contains("1999-01-01"),
        "{message}"
    );
    // The session itself is unharmed.
    let reply = peer.request(json!(6), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn bearer_token_is_required() {
    let wrap = wrap_everything(&["--auth-token", "s3cret"]);

    let reply = Peer::new(&wrap).try_initialize().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let (_, message) = reply.rpc_error();
    assert!(message.contains("bearer token"), "{message}");

    let reply = Peer::new(&wrap).with_token("wrong").try_initialize().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let mut peer = Peer::new(&wrap).with_token("s3cret");
    let reply = peer.initialize().await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = peer
        .call_tool(json!(1), "echo", json!({"message": "authorised"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.tool_text(), "Echo: authorised");
}

// ---------------------------------------------------------------------------
// 8–10: children that misbehave.

#[tokio::test]
async fn child_that_exits_at_once_gets_a_clear_error_and_wrap_keeps_serving() {
    let dir = scratch_dir("exit");
    let mut wrap = start_fixture(&[], &fixture_command(&dir, "exit", None));
    let peer = Peer::new(&wrap);
    for attempt in 1..=2 {
        let reply = tokio::time::timeout(Duration::from_secs(10), peer.try_initialize())
            .await
            .unwrap_or_else(|_| panic!("initialize #{attempt} hung"));
        assert!(
            reply.header("mcp-session-id").is_none(),
            "no session for a dead server"
        );
        let (code, message) = reply.rpc_error();
        assert_eq!(code, -32603, "{message}");
        assert!(
            message.contains("MCP server process exited"),
            "attempt {attempt}: {message}"
        );
        assert_alive(&mut wrap);
    }
}

#[tokio::test]
async fn missing_program_gets_a_clear_error() {
    let mut wrap = Wrap(common::start_wrap(
        &[],
        &["/nonexistent/hangar-test-server"],
    ));
    let reply = Peer::new(&wrap).try_initialize().await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(
        message.contains("could not start") && message.contains("/nonexistent/hangar-test-server"),
        "{message}"
    );
    assert_alive(&mut wrap);
}

#[tokio::test]
async fn child_crash_fails_the_pending_call_and_ends_only_its_session() {
    let dir = scratch_dir("crash");
    let mut wrap = start_fixture(&[], &fixture_command(&dir, "crash", None));
    let mut doomed = Peer::new(&wrap);
    doomed.initialize().await;
    let mut other = Peer::new(&wrap);
    other.initialize().await;

    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        doomed.call_tool(json!(7), "anything", json!({})),
    )
    .await
    .expect("the call on a crashed server must not hang");
    let response = reply.response();
    assert_eq!(response["id"], json!(7), "the client's id: {response}");
    let (code, message) = reply.rpc_error();
    assert_eq!(code, -32603, "{message}");
    assert!(message.contains("MCP server process exited"), "{message}");

    // The other session has its own child, untouched.
    let reply = other.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.tool_text(), "ok tools/list");

    // The crashed session is over: 404 tells the client to initialize again.
    let reply = doomed.request(json!(8), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("initialize"), "{message}");
    doomed.session = None;
    doomed.initialize().await;
    assert_alive(&mut wrap);
}

#[tokio::test]
async fn non_json_stdout_lines_are_skipped() {
    let dir = scratch_dir("noise");
    let wrap = start_fixture(&[], &fixture_command(&dir, "noise", None));
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        peer.call_tool(json!(1), "anything", json!({})),
    )
    .await
    .expect("the answer after the noise must arrive");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.response()["id"], json!(1));
    assert_eq!(reply.tool_text(), "ok tools/call");
}

// ---------------------------------------------------------------------------
// 11: transparency.

#[tokio::test]
async fn messages_pass_through_unchanged_except_the_id() {
    let dir = scratch_dir("record");
    let log = dir.join("received.jsonl");
    let wrap = start_fixture(&[], &fixture_command(&dir, "record", Some(&log)));
    let mut peer = Peer::new(&wrap);

    // What we send, with {ID} for the id. Unusual spacing, number spellings
    // and escapes show that nothing is re-serialised on the way.
    const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    const UNKNOWN_FIELDS: &str = r#"{"jsonrpc": "2.0", "id": {ID}, "method": "tools/call", "params": {"name": "anything", "arguments": {"n": 1.0, "big": 1e3, "s": "caf\u00e9 \"q\" \\ /"}, "_meta": {"progressToken": "p-1", "vendor.example/x": [true, null]}}, "x-unknown": {"deep": [1, 2, 3]}}"#;
    const UNKNOWN_NOTIFICATION: &str = r#"{"jsonrpc":"2.0","method":"notifications/vendor.example/hello","params":{"_meta":{"k":"v"},"x":1E3}}"#;
    const UNKNOWN_METHOD: &str = r#"{"jsonrpc":"2.0","id":{ID},"method":"vendor.example/frobnicate","params":{"z":[],"_meta":{}},"extra":{}}"#;
    let with_id = |template: &str, id: &str| template.replace("{ID}", id);

    peer.initialize().await;
    let mut sent: Vec<(String, Option<&str>)> = vec![
        (initialize_body("{ID}"), Some("0")),
        (INITIALIZED.to_owned(), None),
    ];

    let reply = peer.send(with_id(UNKNOWN_FIELDS, "42")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.response_text(), with_id(RECORD_REPLY, "42"));
    sent.push((UNKNOWN_FIELDS.to_owned(), Some("42")));

    let reply = peer.send(UNKNOWN_NOTIFICATION).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    sent.push((UNKNOWN_NOTIFICATION.to_owned(), None));

    // A string id comes back as the same string.
    let reply = peer.send(with_id(UNKNOWN_METHOD, r#""abc-1""#)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.response_text(), with_id(RECORD_REPLY, r#""abc-1""#));
    sent.push((UNKNOWN_METHOD.to_owned(), Some(r#""abc-1""#)));

    // What the child received: the same bytes, but for a numeric id of hangar's.
    let got = recorded(&log);
    assert_eq!(got.len(), sent.len(), "received: {got:#?}");
    let mut child_ids = Vec::new();
    for ((template, client_id), line) in sent.iter().zip(&got) {
        match client_id {
            Some(_) => {
                let v: Value = serde_json::from_str(line).expect("the child got JSON");
                let child_id = v["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("hangar sends the child numeric ids: {line}"));
                child_ids.push(child_id);
                assert_eq!(line, &with_id(template, &child_id.to_string()));
            }
            None => assert_eq!(line, template),
        }
    }
    let mut unique = child_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique, child_ids, "every request gets its own id");

    // A notification the server sends of its own accord reaches the client,
    // unchanged, on the standalone stream.
    let mut stream = peer.listen().await;
    let reply = peer.request(json!(9), "vendor/trigger", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.response_text(), with_id(RECORD_REPLY, "9"));
    let ping = stream
        .next_matching(Duration::from_secs(5), |d| {
            d.contains("vendor.example/ping")
        })
        .await;
    assert_eq!(ping, VENDOR_PING);
}

// ---------------------------------------------------------------------------
// Cancellation.

#[tokio::test]
async fn client_cancellation_reaches_the_child_with_its_own_id() {
    let dir = scratch_dir("cancel");
    let log = dir.join("received.jsonl");
    let wrap = start_fixture(&[], &fixture_command(&dir, "record", Some(&log)));
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;

    let pending = {
        let request = peer
            .post()
            .body(r#"{"jsonrpc":"2.0","id":"slow-1","method":"vendor/never","params":{}}"#);
        tokio::spawn(async move { request.send().await })
    };
    eventually(
        Duration::from_secs(5),
        "the child receives the request",
        || recorded(&log).iter().any(|l| l.contains("vendor/never")),
    )
    .await;
    let child_id = recorded(&log)
        .iter()
        .find(|l| l.contains("vendor/never"))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["id"].as_u64())
        .expect("the child saw a numeric id");

    let cancel = peer
        .send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user"}}"#)
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);

    // The pending HTTP request ends at once instead of hanging.
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the cancelled request ends")
        .expect("task")
        .expect("an HTTP answer");
    assert!(answer.status().is_success());
    // The child is told, in terms of the id it knows.
    eventually(
        Duration::from_secs(5),
        "the child receives notifications/cancelled",
        || {
            recorded(&log).iter().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["method"] == "notifications/cancelled"
                        && v["params"]["requestId"] == json!(child_id)
                })
            })
        },
    )
    .await;
}

#[tokio::test]
async fn multi_line_json_bodies_reach_the_child_as_one_line() {
    // Stdio framing is one message per line; a client may still send
    // pretty-printed JSON (here with CRLF line ends) over HTTP.
    let wrap = wrap_everything(&[]);
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let pretty = serde_json::to_string_pretty(&json!({
        "jsonrpc": "2.0",
        "id": "pretty-1",
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "line one\nline two"}}
    }))
    .unwrap()
    .replace('\n', "\r\n");
    assert!(pretty.lines().count() > 5);
    let reply = tokio::time::timeout(Duration::from_secs(5), peer.send(pretty))
        .await
        .expect("a pretty-printed request must be answered, not hang");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.response()["id"], json!("pretty-1"));
    assert_eq!(reply.tool_text(), "Echo: line one\nline two");
}

#[tokio::test]
async fn ending_a_session_closes_the_childs_stdin() {
    // A stdio server learns it should exit from EOF on stdin (and may clean
    // up then); a kill is only the fallback for servers that do not exit.
    let dir = scratch_dir("eof");
    let log = dir.join("received.jsonl");
    let wrap = start_fixture(&[], &fixture_command(&dir, "record", Some(&log)));
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    assert_eq!(peer.delete().await.status, StatusCode::OK);
    eventually(
        Duration::from_millis(1500),
        "the child sees EOF on stdin",
        || recorded(&log).last().map(String::as_str) == Some("<EOF>"),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 12–15: limits, shared children, shutdown.

#[tokio::test]
async fn too_many_pending_requests_get_429() {
    let wrap = wrap_everything(&["--max-pending", "2"]);
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let calls: Vec<_> = (1..=3)
        .map(|i| {
            let peer = peer.clone();
            tokio::spawn(
                async move { peer.call_tool(json!(i), "sleep", json!({"ms": 1000})).await },
            )
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for call in calls {
        let reply = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("calls finish")
            .expect("call task");
        match reply.status {
            StatusCode::OK => {
                assert_eq!(reply.tool_text(), "Slept 1000 ms");
                ok += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let (_, message) = reply.rpc_error();
                assert!(message.contains("Too Many Requests"), "{message}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!((ok, refused), (2, 1));
    // Once they are done the session takes requests again.
    let reply = peer
        .call_tool(json!(4), "echo", json!({"message": "again"}))
        .await;
    assert_eq!(reply.tool_text(), "Echo: again");
}

#[tokio::test]
async fn shared_child_keeps_colliding_ids_apart() {
    let wrap = wrap_everything(&["--shared-child"]);
    let mut alice = Peer::new(&wrap);
    alice.initialize().await;
    let mut bob = Peer::new(&wrap);
    bob.initialize().await;

    // Both sessions really are served by one process.
    let pid = |reply: Reply| -> u64 {
        let who: Value = serde_json::from_str(&reply.tool_text()).expect("whoami is JSON");
        who["pid"].as_u64().expect("whoami names its pid")
    };
    let a = pid(alice.call_tool(json!(1), "whoami", json!({})).await);
    let b = pid(bob.call_tool(json!(1), "whoami", json!({})).await);
    assert_eq!(a, b, "--shared-child runs one child");

    for round in 0..10 {
        let (ra, rb) = tokio::join!(
            alice.call_tool(
                json!(1),
                "echo",
                json!({"message": format!("alice {round}")})
            ),
            bob.call_tool(json!(1), "echo", json!({"message": format!("bob {round}")})),
        );
        for (reply, who) in [(ra, "alice"), (rb, "bob")] {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert_eq!(reply.response()["id"], json!(1));
            assert_eq!(reply.tool_text(), format!("Echo: {who} {round}"));
        }
    }
}

/// The pid of the server behind `peer`'s session (hangar-everything's `whoami`).
async fn server_pid(peer: &Peer) -> u32 {
    let who = peer.call_tool(json!("who"), "whoami", json!({})).await;
    let who: Value = serde_json::from_str(&who.tool_text()).expect("whoami is JSON");
    let pid = who["pid"].as_u64().expect("whoami names its pid");
    u32::try_from(pid).expect("a pid")
}

fn sigterm(wrap: &Wrap) {
    let killed = Command::new("kill")
        .args(["-TERM", &wrap.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
}

/// Waits (5 s at most) for `hangar wrap` to exit after SIGTERM, and checks it
/// exited cleanly and took its server with it.
async fn assert_clean_exit(wrap: &mut Wrap, server_pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = wrap.child.try_wait().expect("query hangar wrap") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "hangar wrap did not exit within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "hangar wrap exited with {status}");
    eventually(Duration::from_secs(2), "the server process ends", || {
        !process_exists(server_pid)
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_then_exits() {
    let mut wrap = wrap_everything(&["--grace", "10"]);
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let server = server_pid(&peer).await;
    assert!(process_exists(server));

    let call = {
        let peer = peer.clone();
        tokio::spawn(async move { peer.call_tool(json!(2), "sleep", json!({"ms": 1500})).await })
    };
    // A JSON answer gives no sign that the call arrived: give it ample time
    // to reach the server, well inside the 1.5 s it sleeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&wrap);

    let reply = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the in-flight call finishes during the drain")
        .expect("call task");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.tool_text(), "Slept 1500 ms");
    assert_clean_exit(&mut wrap, server).await;
}

#[tokio::test]
async fn sigterm_drains_calls_answered_over_sse() {
    // A client that takes only SSE gets its response headers at once, while
    // the call is still running; the drain must wait for the call all the same.
    let mut wrap = wrap_everything(&["--grace", "10"]);
    let mut peer = Peer::new(&wrap);
    peer.initialize().await;
    let server = server_pid(&peer).await;

    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"ms": 1000}}});
    let resp = peer
        .post_with(&[("accept", "text/event-stream")])
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::OK);
    sigterm(&wrap);

    let reply = tokio::time::timeout(Duration::from_secs(5), Reply::read(resp))
        .await
        .expect("the in-flight call finishes during the drain");
    assert!(reply.content_type().starts_with("text/event-stream"));
    let response = reply.response();
    assert_eq!(response["id"], json!(2), "{}", reply.body);
    assert_eq!(reply.tool_text(), "Slept 1000 ms", "{}", reply.body);
    assert_clean_exit(&mut wrap, server).await;
}

#[tokio::test]
async fn session_limit_gets_503_with_retry_after() {
    let wrap = wrap_everything(&["--max-sessions", "2"]);
    let mut first = Peer::new(&wrap);
    first.initialize().await;
    Peer::new(&wrap).initialize().await;

    let reply = Peer::new(&wrap).try_initialize().await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after > 0);
    let (_, message) = reply.rpc_error();
    assert!(message.contains("too many sessions"), "{message}");

    // Ending a session makes room.
    assert_eq!(first.delete().await.status, StatusCode::OK);
    Peer::new(&wrap).initialize().await;
}

// ---------------------------------------------------------------------------
// The era bridge: modern requests to a legacy-only server.

/// The methods of the recorded lines, in order.
fn methods(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["method"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn bridge_opens_one_legacy_session_and_subscribes_only_while_listened() {
    let dir = scratch_dir("bridge");
    let log = dir.join("received.jsonl");
    let wrap = start_fixture(&[], &fixture_command(&dir, "legacy", Some(&log)));
    let peer = Peer::new(&wrap);

    for id in [1, 2] {
        let reply = peer.modern(json!(id), "tools/list", json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let r = reply.response();
        assert_eq!(r["id"], json!(id));
        assert_eq!(r["result"]["resultType"], "complete", "{r}");
        // What the server said is all still there.
        assert_eq!(
            r["result"]["unknownField"],
            json!([1, 2.5, {"z": null}]),
            "{r}"
        );
        assert_eq!(r["result"]["_meta"]["vendor.example/trace"], "t-1", "{r}");
    }

    let uri = "test://watched";
    let resp = peer
        .modern_post(
            json!("listen-1"),
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": [uri]}}),
        )
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("POST subscriptions/listen");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = SseStream {
        resp,
        buf: String::new(),
    };
    let ack = stream
        .next_matching(Duration::from_secs(10), |d| d.contains("acknowledged"))
        .await;
    let ack: Value = serde_json::from_str(&ack).expect("the ack is JSON");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": [uri]})
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    let subscribed = |lines: &[String], method: &str| {
        lines.iter().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["method"] == method && v["params"]["uri"] == uri)
        })
    };
    assert!(subscribed(&recorded(&log), "resources/subscribe"));

    // The client goes away: nobody listens to the resource any more.
    drop(stream);
    eventually(Duration::from_secs(10), "resources/unsubscribe", || {
        subscribed(&recorded(&log), "resources/unsubscribe")
    })
    .await;

    let got = recorded(&log);
    assert_eq!(
        methods(&got),
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "resources/subscribe",
            "resources/unsubscribe",
        ],
        "{got:#?}"
    );
    let init: Value = serde_json::from_str(&got[1]).expect("initialize is JSON");
    assert_eq!(init["params"]["protocolVersion"], VERSION);
    for capability in ["sampling", "elicitation", "roots"] {
        assert!(
            init["params"]["capabilities"][capability].is_object(),
            "the bridge declares {capability}: {init}"
        );
    }
}

#[tokio::test]
async fn bridge_starts_again_a_server_that_exits_on_the_probe() {
    let dir = scratch_dir("picky");
    let log = dir.join("received.jsonl");
    let wrap = start_fixture(&[], &fixture_command(&dir, "picky", Some(&log)));
    let peer = Peer::new(&wrap);
    let reply = peer.modern(json!(1), "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.response()["result"]["resultType"],
        "complete",
        "{}",
        reply.body
    );
    assert_eq!(
        methods(&recorded(&log)),
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list"
        ]
    );
}
