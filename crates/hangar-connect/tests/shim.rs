//! The shim end to end, in process: stdin/stdout are in-memory pipes; the
//! remote is either our own Streamable HTTP server (hangar-everything) or a
//! scripted axum handler that breaks streams on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hangar_connect::auth::StaticToken;
use hangar_connect::{ClientConfig, Options, Shim, Url};
use http::{HeaderMap, Method, Request, StatusCode};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::{ServerConfig, StreamableHttp};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    client: Arc<mcp_transport::client::Client>,
    stdin: Option<DuplexStream>,
    stdout: Lines<BufReader<DuplexStream>>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(url: &str, config: impl FnOnce(&mut ClientConfig), options: Options) -> Harness {
        let mut cfg = ClientConfig::new(Url::parse(url).unwrap());
        config(&mut cfg);
        let shim = Shim::new(cfg, Arc::new(StaticToken), options).unwrap();
        let client = shim.client().clone();
        let (stdin, shim_in) = tokio::io::duplex(1 << 20);
        let (shim_out, stdout) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(shim.run(shim_in, shim_out, std::future::pending()));
        Harness {
            client,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            task,
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
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

fn init(id: u32) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
    .to_string()
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn through_hangar_everything_and_deletes_the_session_at_eof() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let transport = StreamableHttp::new(
        Arc::new(hangar_everything::Everything::new(
            hangar_everything::Identity::from_env(),
        )),
        ServerConfig::new(OriginPolicy::for_listener(&addr)),
    );
    let addr = serve(transport.router("/mcp")).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());

    shim.send(&init(1)).await;
    let r = shim.recv().await;
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"]["serverInfo"]["name"], "hangar-everything");
    shim.send(INITIALIZED).await;
    assert_eq!(transport.session_count(), 1);

    shim.send(r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"tok"}}}"#).await;
    for step in [0, 50, 100] {
        let p = shim.recv().await;
        assert_eq!(p["method"], "notifications/progress");
        assert_eq!(p["params"]["progressToken"], "tok");
        assert_eq!(p["params"]["progress"], step);
    }
    let r = shim.recv().await;
    assert_eq!(r["id"], "a");
    assert_eq!(r["result"]["content"][0]["text"], "Progress test completed");

    shim.close().await;
    assert_eq!(transport.session_count(), 0, "the session was deleted");
}

/// What the scripted server saw.
#[derive(Default)]
struct Seen {
    requests: Vec<(Method, HeaderMap, String)>,
}

fn sse(body: &'static str) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}

fn json_body(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn scripted(seen: Arc<Mutex<Seen>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    seen.lock()
        .unwrap()
        .requests
        .push((parts.method.clone(), parts.headers.clone(), text.clone()));
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if parts.method == Method::GET && header("mcp-session-id").as_deref() == Some("sess-listen") {
        // The standalone stream, closed after each event (polling): a
        // notification, then a server→client request, then no more.
        return match header("last-event-id").as_deref() {
            None => sse("id: g_1\nretry: 10\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"),
            Some("g_1") => sse("id: g_2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}\n\n"),
            _ => Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .body(Body::empty())
                .unwrap(),
        };
    }
    if parts.method == Method::GET {
        return match header("last-event-id").as_deref() {
            // Resuming the broken stream: the rest of it, up to the response.
            Some("s1_1") => sse(
                "id: s1_2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":2}}\n\n\
                 id: s1_3\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resumed\":true}}\n\n",
            ),
            Some(_) => json_body(StatusCode::NOT_FOUND, json!({})),
            None => Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .body(Body::empty())
                .unwrap(),
        };
    }
    if parts.method == Method::DELETE {
        return Response::new(Body::empty());
    }
    let message: Value = serde_json::from_str(&text).unwrap();
    match message["method"].as_str() {
        Some("initialize") => Response::builder()
            .header("content-type", "application/json")
            .header(
                "mcp-session-id",
                if message["params"]["clientInfo"]["name"] == "listener" {
                    "sess-listen"
                } else {
                    "sess-1"
                },
            )
            .body(Body::from(
                json!({"jsonrpc":"2.0","id":message["id"],"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}})
                    .to_string(),
            ))
            .unwrap(),
        // A pretty-printed answer: the shim must still write one line.
        Some("tools/list") => json_body(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":message["id"],"result":{"tools":[]}}),
        )
        .map(|_| Body::from(format!("{{\n  \"jsonrpc\": \"2.0\",\n  \"id\": {},\n  \"result\": {{\"tools\": []}}\n}}", message["id"]))),
        // A stream that breaks after one event; the rest comes on resumption.
        Some("tools/call") if message["params"]["name"] == "breaks" => sse(
            "id: s1_0\nretry: 20\ndata: \n\n\
             id: s1_1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n",
        ),
        // A stream that breaks before any event id: cannot be resumed.
        Some("tools/call") if message["params"]["name"] == "dies" => sse(": nothing\n\n"),
        Some("tools/call") => json_body(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":message["id"],"result":{"ok":true}}),
        ),
        _ if message.get("id").is_none() => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Body::empty())
            .unwrap(),
        _ => json_body(
            StatusCode::BAD_REQUEST,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"no such method"}}),
        ),
    }
}

async fn scripted_server() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::any(move |req: Request<Body>| scripted(s.clone(), req)),
    );
    (serve(router).await, seen)
}

#[tokio::test]
async fn resumes_a_broken_stream_and_sends_session_headers() {
    let (addr, seen) = scripted_server().await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());
    shim.send(&init(1)).await;
    assert_eq!(shim.recv().await["result"]["protocolVersion"], "2025-06-18");
    shim.send(INITIALIZED).await;

    shim.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"breaks","_meta":{"progressToken":"t"}}}"#).await;
    assert_eq!(shim.recv().await["params"]["progress"], 1);
    assert_eq!(shim.recv().await["params"]["progress"], 2);
    assert_eq!(
        shim.recv().await,
        json!({"jsonrpc":"2.0","id":2,"result":{"resumed":true}})
    );

    // Pretty-printed JSON still comes out as one line.
    shim.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .await;
    assert_eq!(shim.recv().await["result"]["tools"], json!([]));

    // No event id: nothing to resume from, a clear error for this request.
    shim.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"dies"}}"#)
        .await;
    let e = shim.recv().await;
    assert_eq!(e["id"], 4);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ended the stream before answering"));

    // An HTTP error carrying a JSON-RPC error without id answers this request.
    shim.send(r#"{"jsonrpc":"2.0","id":"x","method":"nope"}"#)
        .await;
    let e = shim.recv().await;
    assert_eq!(e["id"], "x");
    assert_eq!(e["error"]["code"], -32601);

    shim.close().await;
    let seen = seen.lock().unwrap();
    let post_call = seen
        .requests
        .iter()
        .find(|(m, _, body)| m == Method::POST && body.contains("\"breaks\""))
        .unwrap();
    assert_eq!(post_call.1["mcp-session-id"], "sess-1");
    assert_eq!(post_call.1["mcp-protocol-version"], "2025-06-18");
    assert_eq!(post_call.1["accept"], "application/json, text/event-stream");
    assert_eq!(post_call.1["content-type"], "application/json");
    let init_post = &seen.requests[0];
    assert!(!init_post.1.contains_key("mcp-session-id"));
    // The listening GET (405 here), the resumption with Last-Event-ID, the DELETE.
    assert!(seen
        .requests
        .iter()
        .any(|(m, h, _)| m == Method::GET && !h.contains_key("last-event-id")));
    let resume = seen
        .requests
        .iter()
        .find(|(m, h, _)| m == Method::GET && h.contains_key("last-event-id"))
        .unwrap();
    assert_eq!(resume.1["last-event-id"], "s1_1");
    assert_eq!(resume.1["mcp-session-id"], "sess-1");
    assert!(seen
        .requests
        .iter()
        .any(|(m, h, _)| m == Method::DELETE && h["mcp-session-id"] == "sess-1"));
    // The body went out byte for byte.
    assert!(seen.requests.iter().any(|(_, _, b)| b
        == r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"breaks","_meta":{"progressToken":"t"}}}"#));
}

#[tokio::test]
async fn modern_requests_carry_mirrored_headers_and_no_session() {
    let (addr, seen) = scripted_server().await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());
    shim.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#).await;
    assert_eq!(shim.recv().await["result"]["ok"], true);
    shim.close().await;
    let seen = seen.lock().unwrap();
    let (_, h, _) = &seen.requests[0];
    assert_eq!(h["mcp-protocol-version"], "2026-07-28");
    assert_eq!(h["mcp-method"], "tools/call");
    assert_eq!(h["mcp-name"], "echo");
    assert!(!h.contains_key("mcp-session-id"));
    assert_eq!(
        seen.requests.len(),
        1,
        "no GET, no DELETE without a session"
    );
}

#[tokio::test]
async fn bad_lines_get_errors_and_the_shim_keeps_going() {
    let (addr, _) = scripted_server().await;
    let mut shim = Harness::start(
        &format!("http://{addr}/mcp"),
        |_| {},
        Options {
            max_line_bytes: 256,
            ..Options::default()
        },
    );
    shim.send(&"x".repeat(1000)).await;
    let e = shim.recv().await;
    assert_eq!(e["id"], Value::Null);
    assert_eq!(e["error"]["code"], -32600);
    shim.send("{not json").await;
    assert_eq!(shim.recv().await["error"]["code"], -32700);
    shim.send(&init(7)).await;
    assert_eq!(shim.recv().await["id"], 7);
    shim.close().await;
}

#[tokio::test]
async fn an_unreachable_server_answers_requests_with_errors() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut shim = Harness::start(
        &format!("http://127.0.0.1:{port}/mcp"),
        |c| c.connect_timeout = Duration::from_secs(2),
        Options::default(),
    );
    shim.send(&init(1)).await;
    let e = shim.recv().await;
    assert_eq!(e["id"], 1);
    let text = e["error"]["message"].as_str().unwrap();
    assert!(text.contains("cannot reach the MCP server"), "{text}");
    shim.close().await;
}

#[tokio::test]
async fn unauthorized_is_a_clear_error() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::any(|| async {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    "www-authenticate",
                    r#"Bearer resource_metadata="http://x/.well-known/oauth-protected-resource/mcp""#,
                )
                .body(Body::empty())
                .unwrap()
        }),
    );
    let addr = serve(router).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());
    shim.send(&init(1)).await;
    let e = shim.recv().await;
    let text = e["error"]["message"].as_str().unwrap();
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("requires authorization"), "{text}");
    assert!(text.contains("refused the Authorization header"), "{text}");
    shim.close().await;
}

#[tokio::test]
async fn the_get_stream_delivers_server_messages_and_answers_go_back() {
    let (addr, seen) = scripted_server().await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());
    shim.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"listener","version":"1"}}}"#).await;
    assert_eq!(shim.recv().await["id"], 1);
    shim.send(INITIALIZED).await;
    assert_eq!(
        shim.recv().await,
        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})
    );
    let request = shim.recv().await;
    assert_eq!(request["method"], "roots/list");
    let answer = r#"{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}"#;
    shim.send(answer).await;
    shim.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#)
        .await;
    assert_eq!(shim.recv().await["id"], 2);
    // Time for the listener's last GET (answered 405: it stops).
    tokio::time::sleep(Duration::from_millis(300)).await;
    shim.close().await;
    let seen = seen.lock().unwrap();
    let gets: Vec<Option<&str>> = seen
        .requests
        .iter()
        .filter(|(m, _, _)| m == Method::GET)
        .map(|(_, h, _)| h.get("last-event-id").and_then(|v| v.to_str().ok()))
        .collect();
    assert_eq!(gets, vec![None, Some("g_1"), Some("g_2")]);
    let posted = seen
        .requests
        .iter()
        .find(|(m, _, b)| m == Method::POST && b == answer)
        .expect("the client's answer was POSTed byte for byte");
    assert_eq!(posted.1["mcp-session-id"], "sess-listen");
}

#[tokio::test]
async fn concurrent_requests_after_the_session_ended_start_one_new_session() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let transport = StreamableHttp::new(
        Arc::new(hangar_everything::Everything::new(
            hangar_everything::Identity::from_env(),
        )),
        ServerConfig::new(OriginPolicy::for_listener(&addr)),
    );
    let addr = serve(transport.router("/mcp")).await;
    let mut shim = Harness::start(&format!("http://{addr}/mcp"), |_| {}, Options::default());
    shim.send(&init(1)).await;
    assert_eq!(shim.recv().await["id"], 1);
    shim.send(INITIALIZED).await;

    // The server ends the session behind the shim's back.
    let session = shim.client.session_id().expect("a session");
    let resp = transport
        .handle(
            Request::delete("/mcp")
                .header("host", addr.to_string())
                .header("mcp-session-id", &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(transport.session_count(), 0);

    let mut batch = String::new();
    for i in 10..15 {
        batch.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}}}}"#
        ));
        batch.push('\n');
    }
    shim.send(batch.trim_end()).await;
    let mut ids = Vec::new();
    for _ in 10..15 {
        let r = shim.recv().await;
        assert_eq!(
            r["result"]["content"][0]["text"],
            format!("Echo: m{}", r["id"]),
            "{r}"
        );
        ids.push(r["id"].as_u64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, vec![10, 11, 12, 13, 14]);
    assert_eq!(transport.session_count(), 1, "exactly one new session");
    assert_ne!(shim.client.session_id().unwrap(), session);
    shim.close().await;
    assert_eq!(transport.session_count(), 0);
}
