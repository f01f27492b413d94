//! MCP over HTTP for the router tests: one POST per JSON-RPC message, the
//! answer read in full (JSON or SSE), sessions and bearer tokens.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

pub const VERSION: &str = "2025-11-25";
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

pub fn http() -> Client {
    Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("build the HTTP client")
}

/// One HTTP answer, read in full.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC response in the body, whether it came as JSON or SSE.
    pub fn json(&self) -> Value {
        let is_sse = self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let text = if is_sse {
            self.body
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .rfind(|d| !d.is_empty())
                .unwrap_or_default()
                .to_owned()
        } else {
            self.body.clone()
        };
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }
}

/// POSTs one JSON-RPC message to `url` with an optional bearer token and session.
pub async fn post(url: &str, token: Option<&str>, session: Option<&str>, body: &Value) -> Reply {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        req = req
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", VERSION);
    }
    let resp = req.send().await.expect("POST to the router");
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.expect("read the body"),
    }
}

pub async fn get(url: &str) -> Reply {
    let resp = http().get(url).send().await.expect("GET");
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.expect("read the body"),
    }
}

pub fn initialize_body(id: i64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "hangar-router-test", "version": "1.0.0"}
        }
    })
}

/// `initialize` with `token`: asserts it succeeds and returns the session id.
pub async fn initialize(url: &str, token: Option<&str>) -> String {
    let reply = post(url, token, None, &initialize_body(1)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "initialize failed: {}",
        reply.body
    );
    let v = reply.json();
    assert_eq!(
        v["result"]["protocolVersion"], VERSION,
        "initialize result: {v}"
    );
    let session = reply
        .header("mcp-session-id")
        .expect("initialize returned an Mcp-Session-Id")
        .to_owned();
    let done = post(
        url,
        token,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(done.status, StatusCode::ACCEPTED, "{}", done.body);
    session
}

pub async fn call_tool(
    url: &str,
    token: Option<&str>,
    session: &str,
    name: &str,
    args: Value,
) -> Reply {
    post(
        url,
        token,
        Some(session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": name, "arguments": args}}),
    )
    .await
}

/// Polls `check` every 100 ms until it is true; panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
