//! The era bridge in process, against a scripted modern-only server (axum,
//! 127.0.0.1) that records what it is sent: the headers and `_meta` of the
//! translated requests, resource subscriptions through
//! `subscriptions/listen`, a dual-era server left alone, and questions
//! withdrawn when the host cancels the request that needed them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hangar_connect::auth::StaticToken;
use hangar_connect::{ClientConfig, Options, Shim, Url};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);
const V: &str = "2026-07-28";

struct Harness {
    stdin: Option<DuplexStream>,
    stdout: Lines<BufReader<DuplexStream>>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(url: &str) -> Harness {
        let cfg = ClientConfig::new(Url::parse(url).unwrap());
        let shim = Shim::new(cfg, Arc::new(StaticToken), Options::default()).unwrap();
        let (stdin, shim_in) = tokio::io::duplex(1 << 20);
        let (shim_out, stdout) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(shim.run(shim_in, shim_out, std::future::pending()));
        Harness {
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            task,
        }
    }

    async fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(v.to_string().as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("a line on stdout in time")
            .unwrap()
            .expect("stdout still open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
    }

    async fn close(mut self) {
        self.stdin.take();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the shim ends when stdin closes")
            .unwrap();
    }
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},
        "clientInfo":{"name":"legacy-host","version":"9"}}})
}

/// What the scripted server was sent.
#[derive(Default, Clone)]
struct Seen {
    requests: Vec<(HeaderMap, Value)>,
}

impl Seen {
    fn method(&self, method: &str) -> Vec<(HeaderMap, Value)> {
        self.requests
            .iter()
            .filter(|(_, b)| b["method"] == method)
            .cloned()
            .collect()
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// A modern-only server (or, with `dual`, one that also lists 2025-06-18).
async fn modern(seen: Arc<Mutex<Seen>>, dual: bool, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(StatusCode::BAD_REQUEST, json!({}));
    };
    seen.lock()
        .unwrap()
        .requests
        .push((parts.headers.clone(), message.clone()));
    let id = message["id"].clone();
    if parts.headers.get("mcp-protocol-version").is_none() {
        if dual && message["method"] == "initialize" {
            return Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", "dual-1")
                .body(Body::from(
                    json!({"jsonrpc":"2.0","id":id,"result":{
                    "protocolVersion":"2025-06-18","capabilities":{},
                    "serverInfo":{"name":"dual","version":"1"}}})
                    .to_string(),
                ))
                .unwrap();
        }
        if dual {
            return Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::empty())
                .unwrap();
        }
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Missing MCP-Protocol-Version header"}}),
        );
    }
    match message["method"].as_str().unwrap_or_default() {
        "server/discover" => {
            let versions = if dual {
                json!([V, "2025-06-18"])
            } else {
                json!([V])
            };
            json_response(
                StatusCode::OK,
                json!({"jsonrpc":"2.0","id":id,"result":{
                "resultType":"complete","supportedVersions":versions,"ttlMs":0,"cacheScope":"private",
                "capabilities":{"tools":{},"resources":{"subscribe":true}},
                "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"scripted","version":"2"}}}}),
            )
        }
        "subscriptions/listen" => {
            let filter = message["params"]["notifications"].clone();
            let mut events = vec![
                json!({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged",
                "params":{"notifications":filter,"_meta":{"io.modelcontextprotocol/subscriptionId":id}}}),
            ];
            for uri in filter["resourceSubscriptions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                events.push(
                    json!({"jsonrpc":"2.0","method":"notifications/resources/updated",
                    "params":{"uri":uri,"_meta":{"io.modelcontextprotocol/subscriptionId":id}}}),
                );
            }
            let chunks: Vec<Result<String, std::io::Error>> = events
                .iter()
                .map(|e| Ok(format!("data: {e}\n\n")))
                .collect();
            // The stream stays open after its events, as a real one does.
            let stream = futures_util::stream::StreamExt::chain(
                futures_util::stream::iter(chunks),
                futures_util::stream::pending(),
            );
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        "tools/call" if message["params"]["name"] == "ask" => json_response(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":id,"result":{"resultType":"input_required",
                "inputRequests":{"q":{"method":"elicitation/create","params":{"mode":"form","message":"?",
                "requestedSchema":{"type":"object","properties":{}}}}}}}),
        ),
        "tools/call" => json_response(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":id,"result":{"resultType":"complete","content":[]}}),
        ),
        m => json_response(
            StatusCode::NOT_FOUND,
            json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":format!("Method not found: {m}")}}),
        ),
    }
}

async fn server(dual: bool) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::any(move |req: Request<Body>| modern(s.clone(), dual, req)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

#[tokio::test]
async fn requests_carry_the_modern_headers_and_meta_of_the_host() {
    let (addr, seen) = server(false).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"));
    shim.send(initialize()).await;
    let init = shim.recv().await;
    assert_eq!(init["id"], 0);
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "the host's version"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "scripted");
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"],
        true
    );
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;

    shim.send(
        json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{
        "name":"héllo","arguments":{},"_meta":{"progressToken":7}}}),
    )
    .await;
    let r = shim.recv().await;
    assert_eq!(
        r,
        json!({"jsonrpc":"2.0","id":"c1","result":{"content":[]}})
    );

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.method("initialize").is_empty(),
        "the host's initialize is not forwarded"
    );
    assert!(seen.method("notifications/initialized").is_empty());
    let (headers, body) = &seen.method("tools/call")[0];
    assert_eq!(headers["mcp-protocol-version"], V);
    assert_eq!(headers["mcp-method"], "tools/call");
    assert_eq!(
        mcp_transport::era::decode_header_value(headers["mcp-name"].to_str().unwrap()).as_deref(),
        Some("héllo")
    );
    assert!(headers.get("mcp-session-id").is_none());
    let meta = &body["params"]["_meta"];
    assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], V);
    assert_eq!(
        meta["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation":{}})
    );
    assert_eq!(
        meta["io.modelcontextprotocol/clientInfo"]["name"],
        "legacy-host"
    );
    assert_eq!(meta["progressToken"], 7, "the host's own _meta stays");
    assert_eq!(body["id"], "c1");
    shim.close().await;
}

#[tokio::test]
async fn resources_subscribe_becomes_a_listen_filter_and_updates_reach_the_host() {
    let (addr, seen) = server(false).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"));
    shim.send(initialize()).await;
    shim.recv().await;
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;

    shim.send(json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://watched"}}))
        .await;
    // The update the new stream sends may come before or after the answer.
    let mut got = [shim.recv().await, shim.recv().await];
    got.sort_by_key(|m| m.get("id").is_some());
    assert_eq!(
        got[0],
        json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://watched"}}),
        "no subscription id for a legacy host"
    );
    assert_eq!(got[1], json!({"jsonrpc":"2.0","id":1,"result":{}}));

    let listens = seen.lock().unwrap().method("subscriptions/listen");
    let (headers, last) = listens.last().unwrap();
    assert_eq!(headers["mcp-method"], "subscriptions/listen");
    assert_eq!(
        last["params"]["notifications"],
        json!({"resourceSubscriptions":["test://watched"]}),
        "only what the server offers and the host asked for"
    );
    assert!(seen
        .lock()
        .unwrap()
        .method("resources/subscribe")
        .is_empty());
    shim.close().await;
}

#[tokio::test]
async fn a_cancelled_request_withdraws_its_open_question() {
    let (addr, _seen) = server(false).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"));
    shim.send(initialize()).await;
    shim.recv().await;
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;

    shim.send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask"}}))
        .await;
    let question = shim.recv().await;
    assert_eq!(question["method"], "elicitation/create");
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}))
        .await;
    let withdrawn = shim.recv().await;
    assert_eq!(withdrawn["method"], "notifications/cancelled");
    assert_eq!(withdrawn["params"]["requestId"], question["id"]);
    shim.close().await;
}

#[tokio::test]
async fn a_dual_era_server_keeps_the_hosts_session() {
    let (addr, seen) = server(true).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"));
    shim.send(initialize()).await;
    let init = shim.recv().await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "dual",
        "the server's own answer"
    );
    shim.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    shim.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}))
        .await;
    shim.recv().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.method("server/discover").len(), 1, "one probe");
    let (headers, body) = &seen.method("tools/call")[0];
    assert_eq!(headers["mcp-session-id"], "dual-1");
    assert!(
        body["params"].get("_meta").is_none(),
        "forwarded as the host wrote it"
    );
    shim.close().await;
}
