//! Serving over stdio: newline-delimited JSON-RPC on stdin and stdout.
//!
//! Requests run concurrently, each in its own task; everything written to
//! stdout goes through one writer task so lines never interleave. Nothing but
//! protocol is written to stdout (logs go to stderr).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mcp_transport::era;
use mcp_transport::lines::{next_line, Line};
use mcp_transport::{Kind, Message, Session};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::app::{Conn, Identity, Shared};

/// Longest line accepted on stdin.
const MAX_LINE: usize = 16 * 1024 * 1024;

pub async fn serve(identity: Identity) -> std::io::Result<()> {
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(1024);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(m) = out_rx.recv().await {
            let mut line = m.as_str().to_owned();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            if out_rx.is_empty() && stdout.flush().await.is_err() {
                return;
            }
        }
    });
    let conn = Arc::new(Conn::new(Shared::new(identity), Some(out_tx.clone())));
    let inflight: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    loop {
        let line = match next_line(&mut input, &mut buf, MAX_LINE).await {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                let _ = out_tx
                    .send(Message::error_response(
                        None,
                        mcp_transport::codes::INVALID_REQUEST,
                        &format!("line over {MAX_LINE} bytes"),
                        None,
                    ))
                    .await;
                continue;
            }
            Ok(Line::Complete) => match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(text) => text,
                Err(_) => {
                    let _ = out_tx
                        .send(Message::error_response(
                            None,
                            mcp_transport::codes::PARSE_ERROR,
                            "the line is not UTF-8",
                            None,
                        ))
                        .await;
                    continue;
                }
            },
        };
        if line.trim().is_empty() {
            continue;
        }
        let message = match Message::parse(line) {
            Ok(m) => m,
            Err(e) => {
                let _ = out_tx
                    .send(Message::error_response(
                        None,
                        e.code(),
                        &e.to_string(),
                        None,
                    ))
                    .await;
                continue;
            }
        };
        match message.kind() {
            Kind::Request => spawn_request(&conn, &inflight, &out_tx, message),
            Kind::Response => conn.respond(message).await,
            Kind::Notification => {
                if message.method() == Some("notifications/cancelled") {
                    let id = message
                        .params()
                        .and_then(|p| p.get("requestId").map(|v| v.to_string()));
                    if let Some(handle) = id.and_then(|id| lock(&inflight).remove(&id)) {
                        handle.abort();
                    }
                }
            }
        }
    }
    // stdin closed: the client is gone. Stop in-flight work, let go of every
    // sender (the connection holds some) so the writer drains and ends, and
    // exit promptly, as the spec asks of stdio servers.
    for (_, task) in lock(&inflight).drain() {
        task.abort();
    }
    drop(conn);
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(())
}

fn spawn_request(
    conn: &Arc<Conn>,
    inflight: &Arc<Mutex<HashMap<String, AbortHandle>>>,
    out: &mpsc::Sender<Message>,
    message: Message,
) {
    // Over stdio there are no headers: a modern request is checked on its _meta alone.
    if era::detect(&message, None) == era::Era::Modern {
        let fault = era::declared_version(&message).and_then(|v| era::check_supported(&v));
        if let Err(f) = fault {
            let reply = Message::error_response(message.id_raw(), f.code, &f.message, f.data);
            let out = out.clone();
            tokio::spawn(async move { out.send(reply).await });
            return;
        }
    }
    let id = message.id_raw().unwrap_or("null").to_owned();
    let (conn, out, map) = (conn.clone(), out.clone(), inflight.clone());
    let key = id.clone();
    let task = tokio::spawn(async move {
        let response = conn.request(message, out.clone()).await;
        lock(&map).remove(&key);
        let _ = out.send(response).await;
    });
    lock(inflight).insert(id, task.abort_handle());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
