//! Serving an axum app on a TCP listener with the limits every Hangar
//! endpoint keeps at the connection level: a request's headers must arrive
//! within [`ListenLimits::header_read_timeout`] (a client that sends one
//! byte every few seconds is cut off instead of holding a descriptor
//! forever), and at most [`ListenLimits::max_connections`] connections are
//! open at once (the rest wait in the kernel's backlog).
//!
//! `axum::serve` has neither knob, hence this loop over hyper-util's
//! connection builder. Each request carries `ConnectInfo<SocketAddr>` like
//! axum's `into_make_service_with_connect_info`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Connection-level bounds.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Time allowed for a request's head (request line and headers).
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting and lets open connections finish (graceful: in-flight
/// requests complete, idle keep-alive connections close).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let resp = app.oneshot(req.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(match resp {
                        Ok(r) => r,
                        Err(never) => match never {},
                    })
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The peer of a connection served by [`serve`].
pub type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ListenLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): Peer| async move { peer.ip().to_string() }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// A client that trickles its headers is cut off (issue 9: one byte
    /// every 5 s kept a connection open past 65 s).
    #[tokio::test]
    async fn a_slow_header_sender_is_cut_off() {
        let (addr, _stop) = start(ListenLimits {
            header_read_timeout: Duration::from_millis(600),
            max_connections: 8,
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n".iter().take(20) {
            if slow.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => {
                    // hyper answers 408 before closing.
                    closed = true;
                    break;
                }
                Err(_) => {}
            }
        }
        assert!(closed, "still open after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(2));
        // A normal request on another connection is served, with its peer.
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        ok.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("127.0.0.1"), "{out}");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_free_one() {
        let (addr, _stop) = start(ListenLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1,
        })
        .await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = first.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // The first connection is kept alive: a second one is not served yet.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(waited.is_err(), "served beyond max_connections");
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("served once the first connection closed")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
}
