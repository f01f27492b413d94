//! Client ID Metadata Documents served by an in-test server on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hangar_auth::cimd::{CimdError, CimdFetcher};
use hangar_auth::netguard::NetPolicy;

const DEV: NetPolicy = NetPolicy {
    allow_loopback: true,
};

struct Peer {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Peer {
    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Ctx {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn doc(client_id: &str, extra: &str) -> String {
    format!(
        r#"{{"client_id":"{client_id}","client_name":"Test","redirect_uris":["http://127.0.0.1:9/cb"]{extra}}}"#
    )
}

async fn document(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    ctx.hits.fetch_add(1, Ordering::SeqCst);
    let own = format!("{}/{name}", ctx.base);
    let json = [(header::CONTENT_TYPE, "application/json")];
    match name.as_str() {
        "valid.json" | "slow.json" => {
            if name == "slow.json" {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (json, doc(&own, "")).into_response()
        }
        "nostore.json" => {
            ([(header::CACHE_CONTROL, "no-store")], json, doc(&own, "")).into_response()
        }
        "mismatch.json" => (json, doc(&format!("{}/other.json", ctx.base), "")).into_response(),
        "big.json" => {
            let padding = format!(r#","client_uri":"https://x.example/{}""#, "a".repeat(6000));
            (json, doc(&own, &padding)).into_response()
        }
        "html.json" => "<html>not json</html>".into_response(),
        "secret.json" => (json, doc(&own, r#","client_secret":"s3cret""#)).into_response(),
        "jwt.json" => (
            json,
            doc(&own, r#","token_endpoint_auth_method":"private_key_jwt""#),
        )
            .into_response(),
        "redirect-js.json" | "redirect-data.json" | "redirect-http.json" | "redirect-frag.json"
        | "redirect-many.json" | "redirect-private-scheme.json" => {
            let uris = match name.as_str() {
                "redirect-js.json" => r#"["https://a.example/cb","javascript:alert(1)"]"#.into(),
                "redirect-data.json" => r#"["data:text/html,<script>alert(1)</script>"]"#.into(),
                "redirect-http.json" => r#"["http://evil.example/cb"]"#.into(),
                "redirect-frag.json" => r#"["https://a.example/cb#x"]"#.into(),
                "redirect-private-scheme.json" => r#"["com.example.app:/cb"]"#.into(),
                _ => serde_json::to_string(&vec!["https://a.example/cb"; 17]).unwrap(),
            };
            let body = format!(r#"{{"client_id":"{own}","redirect_uris":{uris}}}"#);
            (json, body).into_response()
        }
        "native.json" => (
            json,
            format!(
                r#"{{"client_id":"{own}","application_type":"native","redirect_uris":["com.example.app:/cb"]}}"#
            ),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn peer() -> Peer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let ctx = Ctx {
        base: base.clone(),
        hits: hits.clone(),
    };
    let app = Router::new()
        .route("/{name}", get(document))
        .with_state(ctx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Peer { base, hits }
}

#[tokio::test]
async fn valid_document_is_returned_and_cached() {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(DEV);
    let url = peer.url("valid.json");
    assert!(fetcher.accepts(&url));
    let got = fetcher.get(&url).await.unwrap();
    assert_eq!(got.client_id, url);
    assert_eq!(got.client_name.as_deref(), Some("Test"));
    assert_eq!(got.redirect_uris, ["http://127.0.0.1:9/cb"]);
    assert_eq!(got.token_endpoint_auth_method, "none");
    let again = fetcher.get(&url).await.unwrap();
    assert_eq!(again, got);
    assert_eq!(peer.hits(), 1, "the second get is a cache hit");
}

#[tokio::test]
async fn concurrent_gets_share_one_fetch() {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(DEV);
    let url = peer.url("slow.json");
    let gets = (0..5).map(|_| fetcher.get(&url));
    for got in futures_util::future::join_all(gets).await {
        assert_eq!(got.unwrap().client_id, url);
    }
    assert_eq!(peer.hits(), 1);
}

#[tokio::test]
async fn no_store_is_not_cached() {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(DEV);
    let url = peer.url("nostore.json");
    fetcher.get(&url).await.unwrap();
    fetcher.get(&url).await.unwrap();
    assert_eq!(peer.hits(), 2);
}

async fn refusal(name: &str) -> (CimdError, Peer) {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(DEV);
    let err = fetcher.get(&peer.url(name)).await.unwrap_err();
    assert_eq!(err.oauth_error(), "invalid_client");
    (err, peer)
}

#[tokio::test]
async fn mismatched_client_id_is_invalid() {
    let (err, _) = refusal("mismatch.json").await;
    assert!(matches!(err, CimdError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("client_id different"), "{err}");
}

#[tokio::test]
async fn oversized_document_is_invalid() {
    let (err, _) = refusal("big.json").await;
    assert!(err.to_string().contains("larger than 5120 bytes"), "{err}");
}

#[tokio::test]
async fn non_json_is_invalid() {
    let (err, _) = refusal("html.json").await;
    assert!(err.to_string().contains("is not JSON"), "{err}");
}

#[tokio::test]
async fn not_found_fails_and_the_failure_is_cached() {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(DEV);
    let url = peer.url("missing.json");
    let err = fetcher.get(&url).await.unwrap_err();
    assert!(matches!(err, CimdError::Fetch(_)), "{err}");
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert_eq!(fetcher.get(&url).await.unwrap_err(), err);
    assert_eq!(peer.hits(), 1, "the failure is remembered");
}

#[tokio::test]
async fn secret_in_document_is_invalid() {
    let (err, _) = refusal("secret.json").await;
    assert!(
        err.to_string().contains("must not contain client_secret"),
        "{err}"
    );
}

#[tokio::test]
async fn private_key_jwt_is_refused_clearly() {
    let (err, _) = refusal("jwt.json").await;
    assert!(err.to_string().contains("private_key_jwt"), "{err}");
    assert!(err.to_string().contains("does not support"), "{err}");
}

#[tokio::test]
async fn private_address_is_refused_without_connecting() {
    let fetcher = CimdFetcher::new(NetPolicy::default());
    let started = Instant::now();
    let err = fetcher
        .get("https://10.0.0.1/client.json")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, CimdError::Refused(_)), "{err}");
    assert!(err.to_string().contains("private or reserved"), "{err}");
}

#[tokio::test]
async fn localhost_is_refused_when_loopback_is_not_allowed() {
    let peer = peer().await;
    let fetcher = CimdFetcher::new(NetPolicy::default());
    // http is refused outright; https://localhost reaches the resolver,
    // which drops the loopback addresses before any connection.
    let http = peer.url("valid.json").replace("127.0.0.1", "localhost");
    assert!(!fetcher.accepts(&http));
    let err = fetcher.get(&http).await.unwrap_err();
    assert!(matches!(err, CimdError::Refused(_)), "{err}");
    let https = http.replace("http://", "https://");
    let err = fetcher.get(&https).await.unwrap_err();
    assert!(matches!(err, CimdError::Refused(_)), "{err}");
    assert!(
        err.to_string()
            .contains("localhost resolves only to private addresses"),
        "{err}"
    );
    assert_eq!(peer.hits(), 0);
}

/// A metadata document is held to the same redirect URI rules as Dynamic
/// Client Registration: no script or data scheme, plain http only on
/// loopback, no fragment, a bounded list, private-use schemes only for
/// native applications.
#[tokio::test]
async fn unsafe_redirect_uris_are_refused_like_dcr() {
    for (name, needle) in [
        ("redirect-js.json", "javascript scheme is not allowed"),
        ("redirect-data.json", "data scheme is not allowed"),
        (
            "redirect-http.json",
            "plain http is allowed only for loopback",
        ),
        ("redirect-frag.json", "has a fragment"),
        ("redirect-many.json", "redirect_uris must list 1 to 16"),
        (
            "redirect-private-scheme.json",
            "only for native applications",
        ),
    ] {
        let (err, _) = refusal(name).await;
        assert!(matches!(err, CimdError::Invalid(_)), "{name}: {err}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
    let peer = peer().await;
    let native = CimdFetcher::new(DEV)
        .get(&peer.url("native.json"))
        .await
        .expect("a native app may use its private-use scheme");
    assert_eq!(native.redirect_uris, ["com.example.app:/cb"]);
}
