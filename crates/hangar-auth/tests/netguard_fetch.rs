//! The guarded fetch end to end, against servers on 127.0.0.1 only.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use hangar_auth::netguard::{fetch_limited, guarded_client, FetchError, NetPolicy};

const DEV: NetPolicy = NetPolicy {
    allow_loopback: true,
};
const STRICT: NetPolicy = NetPolicy {
    allow_loopback: false,
};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://localhost:{port}")
}

fn app() -> Router {
    Router::new()
        .route("/small", get(|| async { "hello" }))
        .route(
            "/big",
            // Streamed (no Content-Length): the reader must stop by itself.
            get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024]));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/redirect",
            get(|| async { axum::response::Redirect::temporary("/small") }),
        )
}

#[tokio::test]
async fn fetches_within_limit_from_allowed_loopback() {
    let base = serve(app()).await;
    let client = guarded_client(DEV).unwrap();
    let (status, _, body) = fetch_limited(&client, &format!("{base}/small"), 100)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello");
}

#[tokio::test]
async fn stops_reading_past_the_limit() {
    let base = serve(app()).await;
    let client = guarded_client(DEV).unwrap();
    let err = fetch_limited(&client, &format!("{base}/big"), 5 * 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge(5120)), "{err}");
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let base = serve(app()).await;
    let client = guarded_client(DEV).unwrap();
    let (status, headers, _) = fetch_limited(&client, &format!("{base}/redirect"), 100)
        .await
        .unwrap();
    assert_eq!(status, 307);
    assert_eq!(headers["location"], "/small");
}

#[tokio::test]
async fn refuses_a_name_resolving_to_loopback_when_loopback_is_forbidden() {
    // A real server listens, so a refusal can only come from the guard. The
    // URL is https (the only scheme allowed), which the server would not
    // speak anyway: nothing is ever sent to it.
    let base = serve(app()).await;
    let url = base.replace("http://", "https://") + "/small";
    let client = guarded_client(STRICT).unwrap();
    let err = fetch_limited(&client, &url, 100).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: localhost resolves only to private addresses"
    );
}

#[tokio::test]
async fn refuses_private_ip_literals_before_connecting() {
    let client = guarded_client(STRICT).unwrap();
    for url in [
        "https://10.1.2.3/x",
        "https://169.254.169.254/",
        "https://[fd00::1]/",
        "https://[::ffff:192.168.0.1]/",
    ] {
        let started = Instant::now();
        let err = fetch_limited(&client, url, 100).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
        assert!(matches!(err, FetchError::Refused(_)), "{url}: {err}");
        assert!(err.to_string().contains("private or reserved"), "{err}");
    }
}

#[tokio::test]
async fn refuses_plain_http_unless_loopback_is_allowed() {
    let base = serve(app()).await;
    let client = guarded_client(STRICT).unwrap();
    let err = fetch_limited(&client, &format!("{base}/small"), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused(_)), "{err}");
}
