//! `bench-echo [--listen ADDR]`: the "bare hyper" anchor of `bench/run.sh`.
//!
//! A plain hyper 1 HTTP/1.1 server on a multi-threaded tokio runtime (the same
//! runtime shape `hangar-everything` uses) that reads each POST body in full and
//! answers with a fixed JSON-RPC result shaped like an `echo` tool result. It does
//! no MCP work at all — no JSON parsing, no sessions, no header checks — so it is
//! the ceiling a Rust HTTP MCP server can approach on this machine.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Echo: hello"}]}}"#;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(res);
    }
    // Read the request body in full, as any real server must before answering.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(Bytes::from_static(BODY)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

#[tokio::main]
async fn main() {
    let mut addr: SocketAddr = "127.0.0.1:8090".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next().and_then(|a| a.parse().ok()) {
                Some(a) => addr = a,
                None => {
                    eprintln!("bench-echo: --listen needs an address like 127.0.0.1:8090");
                    std::process::exit(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: bench-echo [--listen ADDR]   (default 127.0.0.1:8090)");
                return;
            }
            other => {
                eprintln!("bench-echo: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-echo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "bench-echo: serving at http://{}/mcp",
        listener.local_addr().unwrap()
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => continue,
        };
        // No TCP_NODELAY: axum::serve (what hangar uses) does not set it either.
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
