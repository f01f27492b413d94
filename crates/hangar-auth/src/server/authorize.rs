//! `/oauth/authorize`: the authorization request is checked, the user signs
//! in (if needed) and approves or denies on the consent page; the decision
//! goes back to the client's redirect URI with `code`, `state` and `iss`
//! (RFC 9207).
//!
//! Errors about the client or its redirect URI are shown as a page and never
//! redirected: redirecting to an unverified URI would make this server an
//! open redirector. Every other error goes back to the client.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use hangar_store::{AuthorizationCode, User};
use http::{header, HeaderMap, StatusCode};
use url::Url;

use super::{AuthServer, BASE_SCOPE};
use crate::clients::{self, Client, ClientError, ClientOrigin};
use crate::pages;
use crate::web::{parse_form, same_origin, LimitedBody};

/// The parameters of an authorization request that are carried from the
/// consent page to the decision.
const CARRIED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "resource",
    "nonce",
];

/// A checked authorization request.
pub(super) struct Checked {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    resource: String,
    server: String,
    nonce: Option<String>,
    /// The request as received (the carried parameters only).
    params: Vec<(String, String)>,
}

/// Why a request cannot go on.
pub(super) enum Refusal {
    /// Shown to the user; the client is not told.
    Page(String),
    /// Sent back to the client's (verified) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl AuthServer {
    async fn check_request(&self, params: &HashMap<String, String>) -> Result<Checked, Refusal> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let client_id =
            get("client_id").ok_or_else(|| Refusal::Page("client_id is missing".into()))?;
        let client = match clients::resolve(&self.store, self.cimd.as_deref(), client_id).await {
            Ok(c) => c,
            Err(ClientError::Unknown) => {
                return Err(Refusal::Page(format!("unknown client {client_id:?}")))
            }
            Err(ClientError::Metadata(e)) => {
                return Err(Refusal::Page(format!(
                    "the client's metadata document was refused: {e}"
                )))
            }
            Err(ClientError::Store(e)) => {
                tracing::error!("client lookup: {e}");
                return Err(Refusal::Page(
                    "the server cannot look up clients right now".into(),
                ));
            }
        };
        let redirect_uri =
            get("redirect_uri").ok_or_else(|| Refusal::Page("redirect_uri is missing".into()))?;
        if !clients::redirect_matches(&client.redirect_uris, redirect_uri) {
            return Err(Refusal::Page(format!(
                "the redirect URI {redirect_uri:?} is not registered for this client"
            )));
        }
        let state = get("state").map(str::to_owned);
        let refuse = |error: &'static str, description: String| Refusal::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            error,
            description,
        };
        if get("response_type") != Some("code") {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
        let Some(challenge) = get("code_challenge") else {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
            ));
        };
        if get("code_challenge_method") != Some("S256") {
            return Err(refuse(
                "invalid_request",
                "only code_challenge_method=S256 is supported".into(),
            ));
        }
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be a base64url SHA-256 (43 characters)".into(),
            ));
        }
        let resource = match get("resource") {
            None => self.settings.resources.first(),
            Some(r) => self.settings.resource(r),
        };
        let Some(resource) = resource else {
            return Err(refuse(
                "invalid_target",
                format!(
                    "{:?} is not a resource of this server",
                    get("resource").unwrap_or("")
                ),
            ));
        };
        // The token's audience is the URL the client asked for, so that it
        // matches what the client will check; any of the server's URLs
        // is accepted by the server.
        let audience = get("resource")
            .map(|r| r.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| resource.urls[0].clone());
        let supported = self.settings.scopes_supported();
        let mut scopes = vec![BASE_SCOPE.to_owned()];
        for s in get("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !supported.iter().any(|x| x == s) {
                return Err(refuse("invalid_scope", format!("unknown scope {s:?}")));
            }
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_owned());
            }
        }
        let params = CARRIED
            .iter()
            .filter_map(|k| params.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        Ok(Checked {
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            code_challenge: challenge.to_owned(),
            scopes,
            resource: audience,
            server: resource.server.clone(),
            nonce: get("nonce").map(str::to_owned),
            client,
            params,
        })
    }

    pub(super) async fn session_user(&self, headers: &HeaderMap) -> Option<User> {
        let cookie = self.cookies.get(headers, "hangar_session")?;
        match self.store.browser_session_user(cookie).await {
            Ok(user) => user,
            Err(e) => {
                tracing::error!("session lookup: {e}");
                None
            }
        }
    }
}

fn refusal_response(refusal: Refusal, issuer: &str) -> Response {
    match refusal {
        Refusal::Page(message) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            &message,
        ),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut pairs = vec![
                ("error", error.to_owned()),
                ("error_description", description),
            ];
            if let Some(s) = state {
                pairs.push(("state", s));
            }
            pairs.push(("iss", issuer.to_owned()));
            redirect_with(&redirect_uri, &pairs)
        }
    }
}

/// 303 to `uri` with `pairs` appended to its query.
fn redirect_with(uri: &str, pairs: &[(&str, String)]) -> Response {
    match Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            let mut resp = Redirect::to(url.as_str()).into_response();
            crate::web::no_store(resp.headers_mut());
            resp
        }
        Err(_) => pages::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "bad redirect URI",
        ),
    }
}

/// GET: check, then sign in or show the consent page.
pub(super) async fn start(
    State(auth): State<Arc<AuthServer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let params = match parse_form(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in request is not valid",
                &e,
            )
        }
    };
    let checked = match auth.check_request(&params).await {
        Ok(c) => c,
        Err(r) => return refusal_response(r, &auth.settings.issuer),
    };
    let Some(user) = auth.session_user(&headers).await else {
        let next = format!("/oauth/authorize?{query}");
        let target: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &next)
            .finish();
        return Redirect::to(&format!("/signin?{target}")).into_response();
    };
    let (csrf, set_cookie) = auth.csrf(&headers);
    let client_name = checked
        .client
        .name
        .clone()
        .unwrap_or_else(|| checked.client.id.clone());
    let note = match checked.client.origin {
        ClientOrigin::PreRegistered => "registered by your administrator".to_owned(),
        ClientOrigin::Dynamic => format!(
            "registered by itself, name unverified; id {}",
            checked.client.id
        ),
        ClientOrigin::MetadataDocument => format!("identified by {}", checked.client.id),
    };
    let redirect_host = Url::parse(&checked.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut resp = pages::consent(&pages::Consent {
        user_name: &user.name,
        client_name: &client_name,
        client_note: &note,
        server: &checked.server,
        resource: &checked.resource,
        scopes: &checked.scopes,
        redirect_host: &redirect_host,
        csrf: &csrf,
        params: &checked.params,
    });
    if let Some(c) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// POST: the user's decision on the consent page.
pub(super) async fn decide(
    State(auth): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    let form = match super::page_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !auth.form_is_ours(&headers, &form) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was not submitted from Hangar's consent page (its anti-forgery token is missing or wrong). Go back to the application and start again.",
        );
    }
    let Some(user) = auth.session_user(&headers).await else {
        return Redirect::to("/signin").into_response();
    };
    let checked = match auth.check_request(&form).await {
        Ok(c) => c,
        Err(r) => return refusal_response(r, &auth.settings.issuer),
    };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if form.get("decision").map(String::as_str) != Some("approve") {
        pairs.push(("error", "access_denied".into()));
        pairs.push(("error_description", "the user denied access".into()));
    } else {
        let code = auth
            .store
            .create_code(&AuthorizationCode {
                client_id: checked.client.id.clone(),
                user_id: user.id.clone(),
                redirect_uri: checked.redirect_uri.clone(),
                resource: checked.resource.clone(),
                scope: checked.scopes.join(" "),
                code_challenge: checked.code_challenge.clone(),
                nonce: checked.nonce.clone(),
                expires_at: hangar_store::now() + auth.settings.code_ttl.as_secs() as i64,
            })
            .await;
        match code {
            Ok(code) => pairs.push(("code", code)),
            Err(e) => {
                tracing::error!("issuing a code: {e}");
                pairs.push(("error", "server_error".into()));
            }
        }
        tracing::info!(user = %user.name, client = %checked.client.id, resource = %checked.resource, "authorization approved");
    }
    if let Some(s) = &checked.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", auth.settings.issuer.clone()));
    redirect_with(&checked.redirect_uri, &pairs)
}

impl AuthServer {
    /// The CSRF token for this browser, and a cookie to set if it has none.
    pub(super) fn csrf(&self, headers: &HeaderMap) -> (String, Option<http::HeaderValue>) {
        match self.cookies.get(headers, "hangar_csrf") {
            Some(c) if !c.is_empty() => (self.sealer.csrf_token(c), None),
            _ => {
                let fresh = crate::web::random_token();
                let token = self.sealer.csrf_token(&fresh);
                (token, Some(self.cookies.set("hangar_csrf", &fresh, 86_400)))
            }
        }
    }

    /// Whether a POSTed form came from our pages: same origin and a CSRF
    /// token that matches this browser's cookie.
    pub(super) fn form_is_ours(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
        same_origin(headers, &self.origin())
            && self.sealer.check_csrf(
                self.cookies.get(headers, "hangar_csrf"),
                form.get("csrf").map(String::as_str),
            )
    }
}
