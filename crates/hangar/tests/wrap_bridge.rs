//! The era bridge of `hangar wrap`: modern (2026-07-28) clients served by a
//! legacy-only stdio server (`@modelcontextprotocol/server-everything`, pinned
//! in tests/peers), and a modern server still getting modern requests
//! untouched. The external peer is the official conformance suite; the
//! focused checks below speak plain HTTP. Every wait is bounded.

mod common;

use std::time::Duration;

use common::Running;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

const MODERN: &str = "2026-07-28";
/// The longest any single HTTP exchange may take in these tests.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

fn wrap_server_everything() -> Running {
    let command = common::server_everything_command();
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    common::start_wrap(&[], &command)
}

/// The JSON-RPC messages of a response body, JSON or SSE.
fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(body).into_iter().collect()
    }
}

/// What a modern POST got back: the HTTP status and every message, the
/// response last.
struct Answer {
    status: u16,
    messages: Vec<Value>,
}

impl Answer {
    fn response(&self) -> &Value {
        self.messages.last().expect("a response")
    }

    fn result(&self) -> &Value {
        let r = self.response();
        assert!(r.get("result").is_some(), "expected a result, got {r}");
        &r["result"]
    }
}

/// Sends one modern request: `params` plus the required `_meta`, declaring
/// `capabilities`, with the headers the 2026-07-28 transport requires.
async fn modern(
    url: &str,
    id: u64,
    method: &str,
    mut params: Value,
    capabilities: Value,
) -> Answer {
    let meta = params
        .as_object_mut()
        .expect("params is an object")
        .entry("_meta")
        .or_insert_with(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
    meta["io.modelcontextprotocol/clientCapabilities"] = capabilities;
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = reqwest::Client::new()
        .post(url)
        .timeout(HTTP_TIMEOUT)
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", method);
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    let resp = req.body(body.to_string()).send().await.expect("POST");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.expect("read the body");
    Answer {
        status,
        messages: messages(&content_type, &text),
    }
}

/// The official conformance suite's 2026-07-28 server scenarios, as a modern
/// client, through the bridge to server-everything. The baseline lists what
/// fails and why (fixtures server-everything does not have); anything else
/// failing, or a listed check passing, fails the test.
#[test]
fn conformance_2026_07_28_through_the_bridge_to_server_everything() {
    let wrap = wrap_server_everything();
    common::run_conformance_with(
        &format!("http://localhost:{}/mcp", wrap.addr.port()),
        MODERN,
        Some("tests/conformance/wrap-server-everything-2026-07-28.yaml"),
    );
}

/// `server/discover` is answered from the legacy server's own `initialize`
/// result; tools are listed and called; removed methods are "not found".
#[tokio::test]
async fn a_modern_client_discovers_lists_and_calls_a_legacy_server() {
    let wrap = wrap_server_everything();
    let url = wrap.url("/mcp");

    let discover = modern(&url, 1, "server/discover", json!({}), json!({})).await;
    assert_eq!(discover.status, 200);
    let d = discover.result();
    assert_eq!(d["resultType"], "complete");
    assert!(d["supportedVersions"]
        .as_array()
        .is_some_and(|v| v.contains(&json!(MODERN))));
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcp-servers/everything",
        "{d}"
    );
    assert!(d["instructions"]
        .as_str()
        .is_some_and(|i| i.contains("Everything")));
    assert!(d["capabilities"]["tools"].is_object());

    let list = modern(&url, 2, "tools/list", json!({}), json!({})).await;
    let tools = list.result();
    assert_eq!(tools["resultType"], "complete");
    assert!(tools["ttlMs"].is_u64() && tools["cacheScope"].is_string());
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");

    let call = modern(
        &url,
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hello, modern"}}),
        json!({}),
    )
    .await;
    let r = call.result();
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["content"][0]["text"], "Echo: hello, modern");
    assert_eq!(call.response()["id"], 3);

    for removed in ["ping", "logging/setLevel", "initialize"] {
        let a = modern(&url, 4, removed, json!({"level": "info"}), json!({})).await;
        assert_eq!(a.status, 404, "{removed}: {:?}", a.messages);
        assert_eq!(a.response()["error"]["code"], -32601, "{removed}");
    }
}

/// A server that speaks the modern era itself gets modern requests untouched:
/// its `server/discover` answer through the wrap is its own.
#[tokio::test]
async fn a_modern_server_answers_discover_itself() {
    let direct = common::start_everything_http();
    let wrap = common::start_wrap_everything(&[]);
    let own = modern(
        &direct.url("/mcp"),
        1,
        "server/discover",
        json!({}),
        json!({}),
    )
    .await;
    let through = modern(
        &wrap.url("/mcp"),
        1,
        "server/discover",
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(through.result(), own.result());
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

/// The text content of a tool result.
fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A sampling request of the legacy server becomes an input-required result;
/// the retry's answer reaches the server, whose result is the retry's answer.
/// The request state is signed, bound to its request and used once.
#[tokio::test]
async fn the_servers_sampling_request_round_trips_as_an_input_required_result() {
    let wrap = wrap_server_everything();
    let url = wrap.url("/mcp");
    let sampling = json!({"sampling": {}});
    let prompt = "What is the capital of France?";
    let call = || tool_call("trigger-sampling-request", json!({"prompt": prompt}));

    let first = modern(&url, 1, "tools/call", call(), sampling.clone()).await;
    assert_eq!(first.status, 200);
    let r = first.result();
    assert_eq!(r["resultType"], "input_required", "{r}");
    let requests = r["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{r}");
    let (key, asked) = requests.iter().next().unwrap();
    assert_eq!(asked["method"], "sampling/createMessage");
    assert!(
        asked["params"]["messages"].to_string().contains(prompt),
        "{asked}"
    );
    let state = r["requestState"].as_str().expect("requestState").to_owned();

    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "Paris, said the model"},
        "model": "test-model"});
    let retry = |id: u64, name: &str, responses: Value, state: &str| {
        let mut params = tool_call(name, json!({"prompt": prompt}));
        params["inputResponses"] = responses;
        params["requestState"] = json!(state);
        modern(&url, id, "tools/call", params, json!({"sampling": {}}))
    };

    // Tampered state, another tool, a malformed answer: refused, and the
    // waiting request is still there for the real retry.
    let tampered = retry(
        2,
        "trigger-sampling-request",
        json!({key: answer}),
        &format!("{state}x"),
    )
    .await;
    assert_eq!(
        tampered.response()["error"]["code"],
        -32602,
        "{:?}",
        tampered.messages
    );
    let other = retry(3, "echo", json!({key: answer}), &state).await;
    assert_eq!(
        other.response()["error"]["code"],
        -32602,
        "{:?}",
        other.messages
    );
    let malformed = retry(4, "trigger-sampling-request", json!({key: 12345}), &state).await;
    assert_eq!(
        malformed.response()["error"]["code"],
        -32602,
        "{:?}",
        malformed.messages
    );

    let done = retry(5, "trigger-sampling-request", json!({key: answer}), &state).await;
    assert_eq!(done.response()["id"], 5);
    let r = done.result();
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_ne!(r["isError"], true, "{r}");
    assert!(text_of(r).contains("Paris, said the model"), "{r}");

    // Used once.
    let replay = retry(6, "trigger-sampling-request", json!({key: answer}), &state).await;
    assert_eq!(
        replay.response()["error"]["code"],
        -32602,
        "{:?}",
        replay.messages
    );
}

/// A request whose client did not declare sampling is never answered with a
/// sampling input request: the server is told the client cannot, and its own
/// answer to that is the result.
#[tokio::test]
async fn no_input_request_for_a_capability_the_client_did_not_declare() {
    let wrap = wrap_server_everything();
    let url = wrap.url("/mcp");
    let a = modern(
        &url,
        1,
        "tools/call",
        tool_call("trigger-sampling-request", json!({"prompt": "hi"})),
        json!({"elicitation": {}}),
    )
    .await;
    let r = a.result();
    assert_eq!(r["resultType"], "complete", "{r}");
    assert!(r.get("inputRequests").is_none(), "{r}");
    assert_eq!(r["isError"], true, "{r}");
    assert!(text_of(r).contains("client capabilities"), "{r}");
    assert!(
        a.messages.iter().all(|m| m.get("method").is_none()),
        "no request or notification may reach a modern client here: {:?}",
        a.messages
    );
}
