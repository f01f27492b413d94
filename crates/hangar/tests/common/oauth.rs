//! A scripted browser and an OAuth client for the authorization-server
//! tests: signs in on Hangar's pages, approves on the consent page, and
//! exchanges codes, all over real HTTP on loopback. It follows no redirect
//! by itself, so every hop can be checked.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One answer from the server.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

/// A browser: a cookie jar and no automatic redirects.
pub struct Browser {
    client: Client,
    /// The router's origin, sent as `Origin` on form posts like a browser.
    pub origin: String,
}

impl Browser {
    pub fn new(origin: &str) -> Browser {
        Browser {
            client: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(15))
                .build()
                .expect("browser client"),
            origin: origin.trim_end_matches('/').to_owned(),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            url.to_owned()
        }
    }

    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Page {
            status,
            location,
            body: resp.text().await.expect("read the body"),
            headers,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let resp = self
            .client
            .get(self.absolute(url))
            .send()
            .await
            .expect("GET");
        Self::read(resp).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(String, String)]) -> Page {
        let resp = self
            .client
            .post(self.absolute(url))
            .header("origin", &self.origin)
            .form(fields)
            .send()
            .await
            .expect("POST");
        Self::read(resp).await
    }

    /// POSTs a form to another site (an upstream identity provider).
    pub async fn post_form_to(&self, url: &str, fields: &[(String, String)]) -> Page {
        let origin = url::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let resp = self
            .client
            .post(url)
            .header("origin", origin)
            .form(fields)
            .send()
            .await
            .expect("POST");
        Self::read(resp).await
    }

    /// Signs in on the sign-in page `signin_url` (a redirect target).
    pub async fn sign_in(&self, signin_url: &str, user: &str, password: &str) -> Page {
        let page = self.get(signin_url).await;
        assert_eq!(page.status, StatusCode::OK, "sign-in page: {}", page.body);
        let mut fields = hidden_fields(&page.body);
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), password.into()));
        self.post_form("/signin", &fields).await
    }

    /// Runs an authorization request through sign-in (if needed) and the
    /// consent page, approving; returns where the server sends the browser
    /// back (the client's redirect URI with `code`, `state`, `iss`).
    pub async fn authorize(&self, auth_url: &str, user: &str, password: &str) -> String {
        let mut page = self.get(auth_url).await;
        if page.status == StatusCode::SEE_OTHER
            && page
                .location
                .as_deref()
                .is_some_and(|l| l.starts_with("/signin"))
        {
            let signin = page.location.clone().unwrap_or_default();
            let signed = self.sign_in(&signin, user, password).await;
            assert_eq!(
                signed.status,
                StatusCode::SEE_OTHER,
                "sign-in failed: {}",
                signed.body
            );
            let next = signed.location.expect("sign-in redirects on");
            page = self.get(&next).await;
        }
        let consent = self.consent_page(page);
        let mut fields = hidden_fields(&consent);
        fields.push(("decision".into(), "approve".into()));
        let decided = self.post_form("/oauth/authorize", &fields).await;
        assert_eq!(
            decided.status,
            StatusCode::SEE_OTHER,
            "consent: {}",
            decided.body
        );
        decided
            .location
            .expect("the decision redirects to the client")
    }

    fn consent_page(&self, page: Page) -> String {
        assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
        assert!(
            page.body.contains("Allow access?"),
            "not the consent page: {}",
            page.body
        );
        page.body
    }
}

/// The `<input type="hidden">` fields of a page, unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[at + "<input type=\"hidden\" name=\"".len()..];
        let Some((name, after)) = rest.split_once("\" value=\"") else {
            break;
        };
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        out.push((unescape(name), unescape(value)));
        rest = after;
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization request URL.
pub fn auth_url(
    origin: &str,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    resource: &str,
    scope: Option<&str>,
) -> String {
    let mut url = url::Url::parse(&format!("{origin}/oauth/authorize")).expect("URL");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", "st4te")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", resource);
        if let Some(s) = scope {
            q.append_pair("scope", s);
        }
    }
    url.to_string()
}

/// A query parameter of a URL.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// POSTs a form to the token endpoint; returns status and JSON.
pub async fn token_request(origin: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = Client::new()
        .post(format!("{origin}/oauth/token"))
        .form(fields)
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    let cache = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(cache.contains("no-store"), "token answers are not cached");
    (status, resp.json().await.expect("token JSON"))
}

/// Exchanges a code (public client, PKCE).
pub async fn exchange_code(
    origin: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token_request(
        origin,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code", code),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(origin: &str, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
    token_request(
        origin,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Registers a client with DCR; returns the registration answer.
pub async fn register(origin: &str, body: &Value) -> (StatusCode, Value) {
    let resp = Client::new()
        .post(format!("{origin}/oauth/register"))
        .json(body)
        .send()
        .await
        .expect("register");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}
