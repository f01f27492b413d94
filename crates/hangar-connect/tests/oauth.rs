//! Sign-in against a tiny in-test authorization server (axum, 127.0.0.1):
//! concurrent sign-ins for one server produce one authorization request,
//! tokens are refreshed before they expire, and a forgotten client is
//! registered again. The "browser" follows the authorization redirect to
//! the shim's loopback callback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use hangar_connect::auth::{OAuth, OAuthConfig};
use hangar_connect::browser::Browser;
use hangar_connect::Url;
use mcp_transport::client::{Authorizer, Challenge};

#[derive(Default)]
struct Counts {
    register: AtomicU32,
    authorize: AtomicU32,
    code: AtomicU32,
    refresh: AtomicU32,
    /// Answer the next code grant with invalid_client.
    forget_client_once: AtomicU32,
}

struct As {
    base: String,
    counts: Arc<Counts>,
    /// expires_in of issued tokens.
    expires_in: u64,
}

fn json(status: u16, v: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

async fn start_as(expires_in: u64) -> (String, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Counts::default());
    let state = Arc::new(As {
        base: base.clone(),
        counts: counts.clone(),
        expires_in,
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(|State(s): State<Arc<As>>| async move {
                json(
                    200,
                    serde_json::json!({
                        "resource": format!("{}/mcp", s.base),
                        "authorization_servers": [s.base],
                    }),
                )
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(|State(s): State<Arc<As>>| async move {
                json(
                    200,
                    serde_json::json!({
                        "issuer": s.base,
                        "authorization_endpoint": format!("{}/authorize", s.base),
                        "token_endpoint": format!("{}/token", s.base),
                        "registration_endpoint": format!("{}/register", s.base),
                        "code_challenge_methods_supported": ["S256"],
                        "authorization_response_iss_parameter_supported": true,
                    }),
                )
            }),
        )
        .route(
            "/register",
            post(|State(s): State<Arc<As>>| async move {
                let n = s.counts.register.fetch_add(1, Ordering::SeqCst);
                json(201, serde_json::json!({"client_id": format!("client-{n}")}))
            }),
        )
        .route(
            "/authorize",
            get(
                |State(s): State<Arc<As>>, Query(q): Query<HashMap<String, String>>| async move {
                    s.counts.authorize.fetch_add(1, Ordering::SeqCst);
                    // Give concurrent sign-ins time to pile up on the lock.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let mut to = Url::parse(&q["redirect_uri"]).unwrap();
                    to.query_pairs_mut()
                        .append_pair("code", "the-code")
                        .append_pair("state", &q["state"])
                        .append_pair("iss", &s.base);
                    Response::builder()
                        .status(302)
                        .header("location", to.as_str())
                        .body(Body::empty())
                        .unwrap()
                },
            ),
        )
        .route(
            "/token",
            post(|State(s): State<Arc<As>>, body: String| async move {
                let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                assert!(form.contains_key("resource"));
                match form.get("grant_type").map(String::as_str) {
                    Some("authorization_code") => {
                        if s.counts.forget_client_once.swap(0, Ordering::SeqCst) == 1 {
                            return json(400, serde_json::json!({"error": "invalid_client"}));
                        }
                        assert!(form.contains_key("code_verifier"));
                        let n = s.counts.code.fetch_add(1, Ordering::SeqCst);
                        json(
                            200,
                            serde_json::json!({
                                "access_token": format!("at-{n}"),
                                "token_type": "Bearer",
                                "refresh_token": "rt",
                                "expires_in": s.expires_in,
                            }),
                        )
                    }
                    Some("refresh_token") => {
                        assert_eq!(form.get("refresh_token").map(String::as_str), Some("rt"));
                        let n = s.counts.refresh.fetch_add(1, Ordering::SeqCst);
                        json(
                            200,
                            serde_json::json!({
                                "access_token": format!("refreshed-{n}"),
                                "token_type": "Bearer",
                                "expires_in": 3600,
                            }),
                        )
                    }
                    _ => json(400, serde_json::json!({"error": "unsupported_grant_type"})),
                }
            }),
        )
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, counts)
}

/// A browser that follows the redirects (reqwest follows up to 10).
fn test_browser() -> Browser {
    Browser::Func(Arc::new(|url: Url| {
        tokio::runtime::Handle::current().spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let _ = http.get(url).send().await;
        });
    }))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hangar-connect-oauth-{name}-{}-{}",
        std::process::id(),
        hangar_connect::oauth::random_token(6)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn oauth(base: &str, dir: &std::path::Path) -> OAuth {
    let mut cfg = OAuthConfig::new(Url::parse(&format!("{base}/mcp")).unwrap(), dir.into());
    cfg.browser = test_browser();
    cfg.store = Some("file".into());
    cfg.sign_in_timeout = Duration::from_secs(20);
    // Port 0: any free port for each sign-in (tests run in parallel).
    cfg.callback_port = Some(0);
    OAuth::new(cfg).unwrap()
}

fn challenge(base: &str) -> Challenge {
    Challenge::new(
        401,
        Some(&format!(
            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
        )),
        String::new(),
    )
}

async fn bearer(a: &OAuth) -> String {
    a.authorization()
        .await
        .expect("a token")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ins_make_one_authorization_request() {
    let (base, counts) = start_as(3600).await;
    let dir = temp_dir("one");
    // Three shims for the same server, each with its own state (like three
    // processes); they share only the store directory and its lock file.
    let shims: Vec<Arc<OAuth>> = (0..3).map(|_| Arc::new(oauth(&base, &dir))).collect();
    for s in &shims {
        assert!(s.authorization().await.is_none());
    }
    let tasks: Vec<_> = shims
        .iter()
        .map(|s| {
            let (s, c) = (s.clone(), challenge(&base));
            tokio::spawn(async move { s.unauthorized(&c).await })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("sign-in ends")
            .unwrap()
            .expect("signed in");
    }
    assert_eq!(counts.authorize.load(Ordering::SeqCst), 1);
    assert_eq!(counts.register.load(Ordering::SeqCst), 1);
    assert_eq!(counts.code.load(Ordering::SeqCst), 1);
    for s in &shims {
        assert_eq!(bearer(s).await, "Bearer at-0");
    }
    let total: u32 = shims.iter().map(|s| s.authorizations()).sum();
    assert_eq!(total, 1);
    // A new process later uses the stored tokens without signing in.
    let later = oauth(&base, &dir);
    assert_eq!(bearer(&later).await, "Bearer at-0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    // Tokens that live 4 s: shorter than the one-minute margin, so they are
    // refreshed a quarter of their lifetime (1 s) before they expire, not
    // before every request.
    let (base, counts) = start_as(4).await;
    let dir = temp_dir("refresh");
    let a = oauth(&base, &dir);
    a.unauthorized(&challenge(&base)).await.unwrap();
    assert_eq!(counts.code.load(Ordering::SeqCst), 1);
    assert_eq!(bearer(&a).await, "Bearer at-0");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(bearer(&a).await, "Bearer refreshed-0");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    // The refreshed token lives an hour: no more refreshing.
    assert_eq!(bearer(&a).await, "Bearer refreshed-0");
    assert_eq!(counts.refresh.load(Ordering::SeqCst), 1);
    assert_eq!(a.authorizations(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_401_with_a_refresh_token_refreshes_instead_of_signing_in() {
    let (base, counts) = start_as(3600).await;
    let dir = temp_dir("refresh401");
    let a = oauth(&base, &dir);
    a.unauthorized(&challenge(&base)).await.unwrap();
    assert_eq!(bearer(&a).await, "Bearer at-0");
    // The server refuses the token: refresh, no new authorization request.
    a.unauthorized(&challenge(&base)).await.unwrap();
    assert_eq!(bearer(&a).await, "Bearer refreshed-0");
    assert_eq!(counts.authorize.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_client_is_registered_again() {
    let (base, counts) = start_as(3600).await;
    let dir = temp_dir("invalid-client");
    counts.forget_client_once.store(1, Ordering::SeqCst);
    let a = oauth(&base, &dir);
    a.unauthorized(&challenge(&base)).await.unwrap();
    assert_eq!(counts.register.load(Ordering::SeqCst), 2);
    assert_eq!(bearer(&a).await, "Bearer at-0");
    let _ = std::fs::remove_dir_all(&dir);
}
