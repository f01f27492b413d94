//! The authorization server's endpoints in process, over real HTTP on
//! 127.0.0.1: a browser's sign-in (`next`), bad bodies on every endpoint,
//! revocation by the right client only, the sealed upstream sign-in cookie
//! and the bound on concurrent password hashes.
//!
//! Every server here runs on its own loopback port with a fresh SQLite data
//! dir; every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Json;
use hangar_auth::{AuthServer, AuthSettings, Resource};
use hangar_store::{NewClient, Store};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

struct Harness {
    base: String,
    store: Arc<Store>,
    auth: Arc<AuthServer>,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(configure: impl FnOnce(&mut AuthSettings)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let store = Arc::new(Store::open_data_dir(dir.path()).await.unwrap());
        let mut settings = AuthSettings::new(
            &base,
            vec![Resource {
                server: "everything".into(),
                urls: vec![format!("{base}/mcp/everything")],
            }],
        );
        configure(&mut settings);
        let auth = AuthServer::new(settings, store.clone(), dir.path()).unwrap();
        let app = auth
            .routes()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let hash = hangar_auth::resource::hash_password(PASSWORD).unwrap();
        store.add_user("alice", Some(&hash), false).await.unwrap();
        Harness {
            base,
            store,
            auth,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn browser(&self) -> Client {
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// A client registered in the store: `(id, secret)`.
    async fn client(&self, method: &str) -> (String, Option<String>) {
        let (client, secret) = self
            .store
            .register_client(&NewClient {
                kind: "dcr".into(),
                name: Some(format!("{method} client")),
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                token_endpoint_auth_method: method.into(),
                application_type: "web".into(),
                metadata: "{}".into(),
            })
            .await
            .unwrap();
        (client.id, secret)
    }

    /// A grant of alice's for `client_id` and a refresh token of it.
    async fn refresh_token_for(&self, client_id: &str) -> (String, String) {
        let alice = self.store.user_by_name("alice").await.unwrap().unwrap();
        let grant = self
            .store
            .create_grant(
                &alice.id,
                client_id,
                None,
                &self.url("/mcp/everything"),
                "mcp",
            )
            .await
            .unwrap();
        let token = self
            .store
            .issue_refresh_token(&grant.id, hangar_store::now() + 3600)
            .await
            .unwrap();
        (grant.id, token)
    }

    async fn grant_revoked(&self, id: &str) -> bool {
        self.store.grant(id).await.unwrap().unwrap().revoked
    }
}

/// The `<input type="hidden">` fields of a page, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    let start = "<input type=\"hidden\" name=\"";
    while let Some(at) = rest.find(start) {
        rest = &rest[at + start.len()..];
        let Some((name, after)) = rest.split_once("\" value=\"") else {
            break;
        };
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        let unescape = |s: &str| {
            s.replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        };
        out.push((unescape(name), unescape(value)));
        rest = after;
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn location(headers: &HeaderMap) -> Option<String> {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// POSTs the sign-in form of `page_query` (`/signin?…`) with `next` replaced
/// by `next` (when given) and the credentials.
async fn sign_in(
    h: &Harness,
    browser: &Client,
    page_query: &str,
    next: Option<&str>,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let page = browser.get(h.url(page_query)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let mut fields = hidden_fields(&page.text().await.unwrap());
    if let Some(n) = next {
        fields.retain(|(k, _)| k != "next");
        fields.push(("next".into(), n.into()));
    }
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    browser
        .post(h.url("/signin"))
        .header("origin", &h.base)
        .form(&fields)
        .send()
        .await
        .unwrap()
}

// ---- next -----------------------------------------------------------------

/// `next` may only name a path on this server: a tab (which browsers drop,
/// turning `/\t/evil.example` into `//evil.example`), CR/LF/NUL, a
/// backslash or an encoded `//` falls back to the account page, and never
/// makes the server fail.
#[tokio::test]
async fn sign_in_never_sends_the_browser_off_site_nor_fails() {
    let h = Harness::start(|_| {}).await;
    let browser = h.browser();
    // The page carries the checked `next` into its form.
    for query in [
        "/signin?next=/%09/evil.example",
        "/signin?next=/%0d%0aSet-Cookie:%20x=y",
        "/signin?next=/%00",
        "/signin?next=/%5Cevil.example",
        "/signin?next=/%252F/evil.example",
    ] {
        let page = browser.get(h.url(query)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{query}");
        let fields = hidden_fields(&page.text().await.unwrap());
        assert_eq!(field(&fields, "next"), Some("/account"), "{query}");
    }
    // The form's own `next`, forged (a fresh browser each time: once
    // signed in, the page redirects at once).
    for next in [
        "/\t/evil.example",
        "/\r\nSet-Cookie: x=y",
        "/\0",
        "/%2F/evil.example",
    ] {
        let resp = sign_in(&h, &h.browser(), "/signin", Some(next), "alice", PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(
            location(resp.headers()).as_deref(),
            Some("/account"),
            "{next:?}"
        );
    }
    // Signed in: the page redirects at once.
    let resp = sign_in(&h, &browser, "/signin", None, "alice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    for query in [
        "/signin?next=/%09/evil.example",
        "/signin?next=/%0d%0aSet-Cookie:%20x=y",
        "/signin?next=/%00",
    ] {
        let resp = browser.get(h.url(query)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{query}");
        assert_eq!(location(resp.headers()).as_deref(), Some("/account"));
    }
    // A good `next` still works.
    let resp = browser
        .get(h.url("/signin?next=%2Foauth%2Fauthorize%3Fclient_id%3Dx"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(resp.headers()).as_deref(),
        Some("/oauth/authorize?client_id=x")
    );
}

// ---- revocation -----------------------------------------------------------

async fn revoke(h: &Harness, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> StatusCode {
    let mut req = Client::new().post(h.url("/oauth/revoke")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap().status()
}

/// RFC 7009 §2.1: the server authenticates the client and revokes only the
/// tokens issued to that client. Another client (public or confidential,
/// authenticated or not) cannot end a confidential client's grant.
#[tokio::test]
async fn only_the_client_a_token_was_issued_to_can_revoke_it() {
    let h = Harness::start(|_| {}).await;
    let (confidential, secret) = h.client("client_secret_basic").await;
    let secret = secret.expect("a confidential client has a secret");
    let (public, _) = h.client("none").await;
    let (other_confidential, other_secret) = h.client("client_secret_post").await;
    let other_secret = other_secret.unwrap();
    let (grant, token) = h.refresh_token_for(&confidential).await;

    // A public client naming itself: 200 (RFC 7009 §2.2), nothing revoked.
    let status = revoke(&h, &[("token", &token), ("client_id", &public)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.grant_revoked(&grant).await, "revoked by a public client");
    // Another confidential client, properly authenticated: same.
    let status = revoke(
        &h,
        &[
            ("token", &token),
            ("client_id", &other_confidential),
            ("client_secret", &other_secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.grant_revoked(&grant).await, "revoked by another client");
    // The right client id without its secret, or with a wrong one: 401.
    let status = revoke(&h, &[("token", &token), ("client_id", &confidential)], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let status = revoke(&h, &[("token", &token)], Some((&confidential, "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!h.grant_revoked(&grant).await);
    // The client itself, authenticated: revoked.
    let status = revoke(&h, &[("token", &token)], Some((&confidential, &secret))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.grant_revoked(&grant).await, "the owner revokes its grant");

    // A public client's token: only that client id revokes it.
    let (public_grant, public_token) = h.refresh_token_for(&public).await;
    let (second_public, _) = h.client("none").await;
    let status = revoke(
        &h,
        &[("token", &public_token), ("client_id", &second_public)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.grant_revoked(&public_grant).await);
    let status = revoke(
        &h,
        &[("token", &public_token), ("client_id", &public)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.grant_revoked(&public_grant).await);
}

// ---- bad input --------------------------------------------------------------

/// Every endpoint a client calls answers a bad body with an OAuth error
/// (JSON with `error`), every page with a 4xx page: never a 5xx, never a
/// dropped connection.
#[tokio::test]
async fn bad_bodies_get_oauth_errors_never_a_failure() {
    let h = Harness::start(|_| {}).await;
    let (public, _) = h.client("none").await;
    let huge = vec![b'a'; 3 * 1024 * 1024];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let form = "application/x-www-form-urlencoded";
    let forms: Vec<(&str, Vec<u8>)> = vec![
        (form, b"".to_vec()),
        (form, b"%".to_vec()),
        (form, b"%zz=%zz&&&===".to_vec()),
        (form, b"grant_type=refresh_token&grant_type=refresh_token".to_vec()),
        (form, b"\xff\xfe=\xff\x00".to_vec()),
        (form, format!("client_id={public}&grant_type=%00").into_bytes()),
        (form, format!("client_id={public}&grant_type=authorization_code&code=%ff&redirect_uri=x&code_verifier=y").into_bytes()),
        (form, format!("client_id={public}&grant_type=refresh_token&refresh_token=hrt_%00_x").into_bytes()),
        (form, format!("client_id={public}&token_type_hint=%ff").into_bytes()),
        (form, b"client_id=https%3A%2F%2F10.0.0.1%2Fc&token=x".to_vec()),
        (form, huge.clone()),
        ("application/json", br#"{"grant_type":"refresh_token"}"#.to_vec()),
        ("text/plain", b"grant_type=refresh_token".to_vec()),
    ];
    for path in ["/oauth/token", "/oauth/revoke"] {
        for (content_type, body) in &forms {
            let what = format!(
                "{path} {content_type} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            let resp = Client::new()
                .post(h.url(path))
                .header(CONTENT_TYPE, *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            oauth_error_answer(resp, &what).await;
        }
    }
    let registrations: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        b"\xff\xfe".to_vec(),
        deep.clone().into_bytes(),
        huge.clone(),
        br#"{"redirect_uris":"https://a.example/cb"}"#.to_vec(),
        br#"{"redirect_uris":[1,null,{}]}"#.to_vec(),
        br#"{"redirect_uris":["https://a.example/cb"],"grant_types":"code"}"#.to_vec(),
        br#"{"redirect_uris":["https://a.example/cb"],"application_type":5}"#.to_vec(),
        br#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":7}"#.to_vec(),
        br#"{"redirect_uris":["\u0000"]}"#.to_vec(),
    ];
    for body in registrations {
        let what = format!(
            "/oauth/register {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        let resp = Client::new()
            .post(h.url("/oauth/register"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        oauth_error_answer(resp, &what).await;
    }
    // The pages: a 4xx page (from a browser of ours, so CSRF is not what
    // refuses them all).
    let browser = h.browser();
    browser.get(h.url("/signin")).send().await.unwrap();
    for path in [
        "/signin",
        "/signout",
        "/oauth/authorize",
        "/account/grants/x/revoke",
    ] {
        for (content_type, body) in &forms {
            let what = format!(
                "{path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            let resp = browser
                .post(h.url(path))
                .header("origin", &h.base)
                .header(CONTENT_TYPE, *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let status = resp.status();
            assert!(
                status.is_client_error() || status.is_redirection(),
                "{what}: {status}"
            );
        }
    }
    for query in [
        "%zz",
        "a=1&a=2",
        "client_id=%00&redirect_uri=%ff",
        "client_id=https%3A%2F%2F10.0.0.1%2Fc",
    ] {
        let resp = browser
            .get(h.url(&format!("/oauth/authorize?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(location(resp.headers()).is_none(), "{query}");
    }
}

async fn oauth_error_answer(resp: reqwest::Response, what: &str) {
    let status = resp.status();
    assert!(status.is_client_error(), "{what}: {status}");
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {content_type} {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert!(body["error"].is_string(), "{what}: {body}");
}

// ---- the upstream sign-in cookie ---------------------------------------------

/// A stand-in OpenID provider: only its discovery document (the tests stop
/// at the redirect to it).
async fn fake_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
    });
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

async fn with_provider() -> Harness {
    let issuer = fake_provider().await;
    Harness::start(|s| {
        s.oidc = vec![hangar_auth::upstream::OidcProviderConfig {
            name: "test".into(),
            display_name: None,
            issuer,
            client_id: "hangar".into(),
            client_secret: None,
            scopes: vec![],
        }];
    })
    .await
}

/// `(cookie value, state, nonce)` of a started upstream sign-in.
async fn start_upstream(h: &Harness) -> (String, String, String) {
    let resp = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(h.url("/signin/oidc/test?next=/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(&location(resp.headers()).unwrap()).unwrap();
    let param = |k: &str| {
        to.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("hangar_oidc="))
        .and_then(|c| c.split(';').next())
        .expect("the sign-in cookie")
        .to_owned();
    (cookie, param("state"), param("nonce"))
}

async fn callback(h: &Harness, cookie: &str, state: &str) -> (StatusCode, String) {
    let resp = Client::new()
        .get(h.url(&format!(
            "/signin/oidc/test/callback?state={state}&code=c0de"
        )))
        .header("cookie", format!("hangar_oidc={cookie}"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The cookie that carries the PKCE verifier and the nonce between leaving
/// for the provider and coming back is encrypted, not just signed: nothing
/// of it reads back, in whatever way one decodes it. A changed cookie is
/// refused with a page that says so.
#[tokio::test]
async fn the_upstream_sign_in_cookie_is_sealed() {
    use base64::Engine as _;
    let h = with_provider().await;
    let (cookie, state, nonce) = start_upstream(&h).await;
    let mut readable = vec![cookie.clone()];
    for part in cookie.split(['.', '~']) {
        for engine in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            if let Ok(bytes) = engine.decode(part) {
                readable.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    for text in &readable {
        for secret in [nonce.as_str(), state.as_str(), "verifier", "nonce"] {
            assert!(
                !text.contains(secret),
                "{secret:?} readable in the cookie: {text}"
            );
        }
    }
    // Tampered: every single-character change is refused, clearly.
    for at in [0, cookie.len() / 2, cookie.len() - 1] {
        let mut bytes = cookie.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let (status, page) = callback(&h, &tampered, &state).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(page.contains("Sign-in failed"), "{page}");
        assert!(page.contains("Start again"), "{page}");
    }
}

// ---- password hashing -------------------------------------------------------

/// argon2id takes 19 MiB and tens of milliseconds per hash: 24 concurrent
/// sign-ins must not run 24 hashes at once. At most
/// `passwords::HASHES_AT_ONCE` run (counted where they run), a few wait,
/// and the rest get a 503 page with `Retry-After` at once.
#[tokio::test]
async fn concurrent_sign_ins_run_a_bounded_number_of_hashes() {
    use hangar_auth::passwords::{HASHES_AT_ONCE, HASH_QUEUE};
    const SIGN_INS: usize = 24;
    let h = Harness::start(|_| {}).await;
    // Each browser loads the page first (its CSRF cookie), then all post
    // at once. Distinct names, so the per-name limit does not answer first.
    let mut posts = Vec::new();
    for i in 0..SIGN_INS {
        let browser = h.browser();
        let page = browser.get(h.url("/signin")).send().await.unwrap();
        let mut fields = hidden_fields(&page.text().await.unwrap());
        fields.push(("username".into(), format!("user{i}")));
        fields.push(("password".into(), "guess".into()));
        posts.push((browser, fields));
    }
    let start = Arc::new(tokio::sync::Barrier::new(SIGN_INS));
    let tasks: Vec<_> = posts
        .into_iter()
        .map(|(browser, fields)| {
            let (url, origin, start) = (h.url("/signin"), h.base.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let resp = browser
                    .post(url)
                    .header("origin", origin)
                    .form(&fields)
                    .send()
                    .await
                    .unwrap();
                let retry = resp.headers().get(RETRY_AFTER).cloned();
                (resp.status(), retry, resp.text().await.unwrap())
            })
        })
        .collect();
    let (mut refused, mut busy) = (0, 0);
    for task in tasks {
        let (status, retry, page) = task.await.unwrap();
        match status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert!(retry.is_some(), "a 503 says when to come back");
                assert!(page.contains("busy"), "{page}");
            }
            other => panic!("unexpected {other}: {page}"),
        }
    }
    let gate = h.auth.passwords();
    eprintln!(
        "{refused} checked, {busy} told to retry; at most {} hashes ran at once",
        gate.peak_running()
    );
    assert!(
        gate.peak_running() <= HASHES_AT_ONCE,
        "{} at once",
        gate.peak_running()
    );
    assert!(refused >= HASHES_AT_ONCE, "{refused}");
    assert!(
        refused < SIGN_INS && busy >= 1,
        "{busy} told to retry: the queue ({HASH_QUEUE}) is bounded"
    );
    assert_eq!(gate.refused(), busy as u64);
    // Once the wave has passed, a sign-in goes through as usual.
    let resp = sign_in(&h, &h.browser(), "/signin", None, "alice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

/// An authentic cookie past its sealed expiry (10 minutes) is refused with
/// a page that says it expired; the cookie is cleared.
#[tokio::test]
async fn an_expired_upstream_sign_in_says_so() {
    use base64::Engine as _;
    let h = with_provider().await;
    let (_, state, _) = start_upstream(&h).await;
    let key_text = std::fs::read_to_string(h.dir.path().join("cookie.key")).unwrap();
    let key: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key_text.trim())
        .unwrap()
        .try_into()
        .unwrap();
    let pending = json!({"provider": "test", "state": state, "nonce": "n",
                         "verifier": "v", "next": "/account"});
    let sealer = hangar_auth::web::Sealer::new(key);
    let now = hangar_store::now() as u64;
    let expired = sealer.seal_until("hangar_oidc", &pending.to_string(), now - 1);
    let (status, page) = callback(&h, &expired, &state).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("expired"), "{page}");
    // The same, still valid, gets past the cookie (to the provider's token
    // endpoint, which this stand-in lacks).
    let live = sealer.seal_until("hangar_oidc", &pending.to_string(), now + 600);
    let (status, page) = callback(&h, &live, &state).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("could not be verified"), "{page}");
    assert!(page.contains("identity provider"), "{page}");
    // Sealed for another cookie: refused.
    let other = sealer.seal_until("hangar_csrf", &pending.to_string(), now + 600);
    let (_, page) = callback(&h, &other, &state).await;
    assert!(page.contains("its cookie was changed"), "{page}");
}
