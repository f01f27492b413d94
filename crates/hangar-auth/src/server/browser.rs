//! The pages a person sees: sign-in (password or an upstream provider),
//! sign-out and the account page (connected clients and API tokens).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use hangar_store::User;
use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::AuthServer;
use crate::pages::{self, GrantRow, SignIn, TokenRow};
use crate::upstream::{UpstreamClaims, UpstreamLogin};
use crate::web::{LimitedBody, PeerIp, Unsealed};

/// Where to go after signing in when `next` is missing or refused.
const DEFAULT_NEXT: &str = "/account";

/// Where to go after signing in: only a path on this server. `next` must
/// start with a single `/` (never `//host` or `/\host`, which browsers
/// treat as another origin) and hold only visible ASCII without a
/// backslash: browsers drop tabs and newlines from a URL, so `/\t/host`
/// would become `//host`, and CR/LF/NUL cannot go in a `Location` header.
/// The same holds for its percent-decoded forms. Anything else: the
/// account page.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_owned(),
        _ => DEFAULT_NEXT.to_owned(),
    }
}

fn is_local_path(next: &str) -> bool {
    /// Decoding rounds tried; a value still changing after them is refused.
    const ROUNDS: usize = 3;
    let shape_ok = |s: &str| {
        s.starts_with('/')
            && !s.starts_with("//")
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    if !shape_ok(next) {
        return false;
    }
    let mut current = next.to_owned();
    for _ in 0..ROUNDS {
        let decoded = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return true;
        }
        // Decoded, a space or a non-ASCII character is harmless; what
        // must not appear is what would change the origin.
        let origin_safe = decoded.starts_with('/')
            && !decoded.starts_with("//")
            && decoded.chars().all(|c| !c.is_control() && c != '\\');
        if !origin_safe {
            return false;
        }
        current = decoded;
    }
    false
}

/// 303 to a path or URL of ours; a value that cannot be a header (which a
/// checked `next` never is) gives the account page, never a panic.
fn see_other(to: &str) -> Response {
    let location = http::HeaderValue::from_str(to)
        .unwrap_or_else(|_| http::HeaderValue::from_static(DEFAULT_NEXT));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

impl AuthServer {
    fn sign_in_response(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        next: &str,
        error: Option<&str>,
        user_name: &str,
    ) -> Response {
        let (csrf, set_cookie) = self.csrf(headers);
        let encoded_next: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        let providers = self
            .providers
            .iter()
            .map(|p| {
                let label = p
                    .config
                    .display_name
                    .clone()
                    .unwrap_or_else(|| p.config.name.clone());
                (
                    format!("/signin/oidc/{}?{encoded_next}", p.config.name),
                    label,
                )
            })
            .collect();
        let mut resp = pages::sign_in(
            status,
            &SignIn {
                csrf: &csrf,
                next,
                error,
                user_name,
                passwords: self.settings.password_sign_in,
                providers,
            },
        );
        if let Some(c) = set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }

    /// Starts a browser session for `user` and sends the browser on.
    async fn signed_in(&self, user: &User, next: &str) -> Response {
        let expires = hangar_store::now() + self.settings.session_ttl.as_secs() as i64;
        let cookie = match self.store.create_browser_session(&user.id, expires).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("creating a session: {e}");
                return pages::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in failed",
                    "The server could not start your session; try again.",
                );
            }
        };
        tracing::info!(user = %user.name, "signed in");
        let mut resp = see_other(next);
        resp.headers_mut().append(
            header::SET_COOKIE,
            self.cookies.set(
                "hangar_session",
                &cookie,
                self.settings.session_ttl.as_secs() as i64,
            ),
        );
        resp
    }
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

pub(super) async fn sign_in_page(
    State(auth): State<Arc<AuthServer>>,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if auth.session_user(&headers).await.is_some() {
        return see_other(&next);
    }
    auth.sign_in_response(&headers, StatusCode::OK, &next, None, "")
}

pub(super) async fn sign_in(
    State(auth): State<Arc<AuthServer>>,
    peer: PeerIp,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    let form = match super::page_form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = safe_next(form.get("next").map(String::as_str));
    let name = form.get("username").map(String::as_str).unwrap_or_default();
    if !auth.form_is_ours(&headers, &form) {
        return auth.sign_in_response(
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            Some("The form expired or did not come from this page. Please try again."),
            name,
        );
    }
    if !auth.settings.password_sign_in {
        return auth.sign_in_response(
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            Some("Password sign-in is turned off."),
            "",
        );
    }
    if auth.sign_in_ip_limit.check(&peer.key()).is_err()
        || auth.sign_in_limit.check(&name.to_lowercase()).is_err()
    {
        let mut resp = auth.sign_in_response(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some("Too many sign-in attempts. Wait a minute and try again."),
            name,
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("60"));
        return resp;
    }
    let password = form.get("password").cloned().unwrap_or_default();
    let user = match auth.store.user_by_name(name).await {
        Ok(u) => u,
        Err(hangar_store::StoreError::Invalid(_)) => None,
        Err(e) => {
            tracing::error!("user lookup: {e}");
            return pages::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                "Try again shortly.",
            );
        }
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = match auth.passwords.verify(password, hash).await {
        Ok(ok) => ok,
        Err(busy) => {
            tracing::warn!("sign-in refused: {busy}");
            let mut resp = auth.sign_in_response(
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                Some("The server is busy checking other sign-ins. Try again in a moment."),
                name,
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(crate::passwords::RETRY_AFTER_SECS),
            );
            return resp;
        }
    };
    match user {
        Some(user) if ok && user.password_hash.is_some() => auth.signed_in(&user, &next).await,
        _ => {
            tracing::info!("sign-in refused (wrong user name or password)");
            auth.sign_in_response(
                &headers,
                StatusCode::UNAUTHORIZED,
                &next,
                Some("Wrong user name or password."),
                name,
            )
        }
    }
}

pub(super) async fn sign_out(
    State(auth): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    // A form that cannot be read has no CSRF token: refused below.
    let form = super::page_form(&body).unwrap_or_default();
    if !auth.form_is_ours(&headers, &form) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "Missing or wrong anti-forgery token.",
        );
    }
    if let Some(cookie) = auth.cookies.get(&headers, "hangar_session") {
        if let Err(e) = auth.store.end_browser_session(cookie).await {
            tracing::error!("ending a session: {e}");
        }
    }
    let mut resp = see_other("/signin");
    resp.headers_mut()
        .append(header::SET_COOKIE, auth.cookies.clear("hangar_session"));
    resp
}

// ---- upstream OpenID Connect ------------------------------------------------

/// What the browser carries between leaving for the provider and coming
/// back, encrypted ([`crate::web::Sealer::seal`]): the PKCE verifier and
/// the nonce must stay secret, and the whole must not be changed.
#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

/// How long an upstream sign-in may take (sealed into the cookie, and its
/// `Max-Age`).
const PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// The cookie that carries [`Pending`].
const PENDING_COOKIE: &str = "hangar_oidc";

pub(super) async fn upstream_start(
    State(auth): State<Arc<AuthServer>>,
    Path(provider): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    let Some(p) = auth.providers.iter().find(|p| p.config.name == provider) else {
        return pages::error_page(
            StatusCode::NOT_FOUND,
            "Unknown provider",
            "No such sign-in provider.",
        );
    };
    let redirect_uri = auth
        .settings
        .url(&format!("/signin/oidc/{provider}/callback"));
    let login = match p.begin(&redirect_uri).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(provider = %provider, "upstream sign-in unavailable: {e}");
            return pages::error_page(
                StatusCode::BAD_GATEWAY,
                "Sign-in provider unavailable",
                "The identity provider could not be reached. Try again shortly.",
            );
        }
    };
    let pending = Pending {
        provider: provider.clone(),
        state: login.state.clone(),
        nonce: login.nonce.clone(),
        verifier: login.verifier.clone(),
        next: safe_next(q.next.as_deref()),
    };
    let sealed = auth.sealer.seal(
        &auth.cookies.name(PENDING_COOKIE),
        &serde_json::to_string(&pending).unwrap_or_default(),
        PENDING_TTL,
    );
    let mut resp = see_other(&login.url);
    resp.headers_mut().append(
        header::SET_COOKIE,
        auth.cookies
            .set(PENDING_COOKIE, &sealed, PENDING_TTL.as_secs() as i64),
    );
    resp
}

pub(super) async fn upstream_callback(
    State(auth): State<Arc<AuthServer>>,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let fail = |message: &str| {
        let mut resp = pages::error_page(StatusCode::BAD_REQUEST, "Sign-in failed", message);
        resp.headers_mut()
            .append(header::SET_COOKIE, auth.cookies.clear(PENDING_COOKIE));
        resp
    };
    let Some(cookie) = auth.cookies.get(&headers, PENDING_COOKIE) else {
        return fail("This sign-in expired or was started in another browser. Start again.");
    };
    let opened = auth
        .sealer
        .open(&auth.cookies.name(PENDING_COOKIE), cookie)
        .and_then(|json| serde_json::from_str::<Pending>(&json).map_err(|_| Unsealed::Invalid));
    let pending = match opened {
        Ok(p) if p.provider == provider => p,
        Ok(_) => return fail("This sign-in was started with another provider. Start again."),
        Err(Unsealed::Expired) => {
            return fail("This sign-in took longer than 10 minutes and expired. Start again.")
        }
        Err(Unsealed::Invalid) => {
            tracing::warn!(provider = %provider, "upstream sign-in cookie refused (changed or foreign)");
            return fail(
                "This sign-in could not be verified (its cookie was changed or comes from another server). Start again.",
            );
        }
    };
    if q.get("state") != Some(&pending.state) {
        return fail("The provider's answer does not belong to this sign-in.");
    }
    if let Some(e) = q.get("error") {
        return fail(&format!("The provider refused the sign-in: {e}"));
    }
    let (Some(code), Some(p)) = (
        q.get("code"),
        auth.providers.iter().find(|p| p.config.name == provider),
    ) else {
        return fail("The provider sent no authorization code.");
    };
    let login = UpstreamLogin {
        url: String::new(),
        state: pending.state.clone(),
        nonce: pending.nonce.clone(),
        verifier: pending.verifier.clone(),
    };
    let redirect_uri = auth
        .settings
        .url(&format!("/signin/oidc/{provider}/callback"));
    let claims = match p.finish(code, &login, &redirect_uri).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider = %provider, "upstream sign-in failed: {e}");
            return fail("The identity provider's answer could not be verified.");
        }
    };
    let user =
        match auth.upstream_user(&provider, &claims).await {
            Ok(Some(u)) => u,
            Ok(None) => return fail(
                "There is no Hangar account for this identity. Ask an administrator to create one.",
            ),
            Err(e) => {
                tracing::error!("linking an upstream identity: {e}");
                return fail("The server could not look up your account; try again.");
            }
        };
    let mut resp = auth.signed_in(&user, &pending.next).await;
    resp.headers_mut()
        .append(header::SET_COOKIE, auth.cookies.clear(PENDING_COOKIE));
    resp
}

impl AuthServer {
    /// The Hangar user for an upstream identity: linked before; else the
    /// user with the same verified email (if the config says so); else a new
    /// user (if the config says so).
    async fn upstream_user(
        &self,
        provider: &str,
        claims: &UpstreamClaims,
    ) -> Result<Option<User>, hangar_store::StoreError> {
        if let Some(user) = self.store.external_user(provider, &claims.subject).await? {
            return Ok(Some(user));
        }
        let email = claims.email.as_deref().filter(|_| claims.email_verified);
        let mut user = None;
        if self.settings.oidc_match_email {
            if let Some(email) = email {
                user = self.store.user_by_email(email).await?;
            }
        }
        if user.is_none() && self.settings.oidc_create_users {
            user = Some(self.create_upstream_user(claims, email).await?);
        }
        if let Some(u) = &user {
            self.store
                .link_external(provider, &claims.subject, &u.id, email)
                .await?;
        }
        Ok(user)
    }

    async fn create_upstream_user(
        &self,
        claims: &UpstreamClaims,
        email: Option<&str>,
    ) -> Result<User, hangar_store::StoreError> {
        let base: String = claims
            .preferred_username
            .as_deref()
            .or(email)
            .unwrap_or("user")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
            .take(56)
            .collect();
        let base = if base.is_empty() {
            "user".to_owned()
        } else {
            base
        };
        for n in 0..20 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            match self.store.add_user(&name, None, false).await {
                Ok(user) => {
                    self.store.set_user_email(&user.id, email).await?;
                    return Ok(User {
                        email: email.map(str::to_owned),
                        ..user
                    });
                }
                Err(hangar_store::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(hangar_store::StoreError::Conflict(format!(
            "no free user name for {base:?}"
        )))
    }
}

// ---- account page -----------------------------------------------------------

fn when(t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let ago = hangar_store::now() - t;
            match ago {
                i64::MIN..=59 => "just now".into(),
                60..=3599 => format!("{} min ago", ago / 60),
                3600..=86_399 => format!("{} h ago", ago / 3600),
                _ => format!("{} days ago", ago / 86_400),
            }
        }
    }
}

pub(super) async fn account(State(auth): State<Arc<AuthServer>>, headers: HeaderMap) -> Response {
    let Some(user) = auth.session_user(&headers).await else {
        return see_other("/signin?next=%2Faccount");
    };
    render_account(&auth, &headers, &user, None).await
}

async fn render_account(
    auth: &AuthServer,
    headers: &HeaderMap,
    user: &User,
    notice: Option<&str>,
) -> Response {
    let (grants, tokens) = match (
        auth.store.list_grants(&user.id).await,
        auth.store.list_tokens(Some(&user.id)).await,
    ) {
        (Ok(g), Ok(t)) => (g, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("account page: {e}");
            return pages::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Account unavailable",
                "Try again shortly.",
            );
        }
    };
    let grants: Vec<GrantRow> = grants
        .into_iter()
        .map(|g| GrantRow {
            client: g.client_name.clone().unwrap_or_else(|| g.client_id.clone()),
            resource: g.resource,
            scope: g.scope,
            created: when(Some(g.created_at)),
            last_used: g
                .last_used_at
                .map_or_else(|| "not yet".to_owned(), |t| when(Some(t))),
            id: g.id,
        })
        .collect();
    let now = hangar_store::now();
    let tokens: Vec<TokenRow> = tokens
        .into_iter()
        .filter(|t| !t.revoked && t.expires_at.is_none_or(|e| e > now))
        .map(|t| TokenRow {
            created: when(Some(t.created_at)),
            expires: t
                .expires_at
                .map(|e| format!("in {} days", (e - now) / 86_400))
                .unwrap_or_else(|| "never".into()),
            last_used: when(t.last_used_at),
            id: t.id,
        })
        .collect();
    let (csrf, set_cookie) = auth.csrf(headers);
    let mut resp = pages::account(&user.name, &csrf, &grants, &tokens, notice);
    if let Some(c) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `POST /account/{kind}/{id}/revoke`, `kind` being `grants` (a connected
/// client) or `tokens` (an API token); only the signed-in user's own.
pub(super) async fn revoke(
    State(auth): State<Arc<AuthServer>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    let user = match account_post(&auth, &headers, &body).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let revoked = match kind.as_str() {
        "grants" => {
            let owned = matches!(auth.store.grant(&id).await, Ok(Some(g)) if g.user_id == user.id);
            owned && auth.store.revoke_grant(&id).await.unwrap_or(false)
        }
        "tokens" => {
            let owned = auth
                .store
                .list_tokens(Some(&user.id))
                .await
                .is_ok_and(|ts| ts.iter().any(|t| t.id == id));
            owned && auth.store.revoke_token(&id).await.unwrap_or(false)
        }
        _ => false,
    };
    let notice = match (revoked, kind.as_str()) {
        (false, _) => "Nothing to revoke.",
        (true, "grants") => "Access revoked: that client must sign in again.",
        (true, _) => "Token revoked.",
    };
    if revoked {
        auth.check.forget();
        tracing::info!(user = %user.name, kind = %kind, id = %id, "revoked from the account page");
    }
    render_account(&auth, &headers, &user, Some(notice)).await
}

/// The signed-in user of an account-page form, after the CSRF check.
async fn account_post(
    auth: &AuthServer,
    headers: &HeaderMap,
    body: &LimitedBody,
) -> Result<User, Response> {
    let form = super::page_form(body).unwrap_or_default();
    if !auth.form_is_ours(headers, &form) {
        return Err(pages::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "Missing or wrong anti-forgery token.",
        ));
    }
    auth.session_user(headers)
        .await
        .ok_or_else(|| see_other("/signin?next=%2Faccount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `next` arrives percent-decoded once (by the query or form parser).
    #[test]
    fn next_is_a_path_on_this_server_or_the_account_page() {
        for good in [
            "/account",
            "/oauth/authorize?client_id=x&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=a-b",
            "/",
        ] {
            assert_eq!(safe_next(Some(good)), good, "{good:?}");
        }
        for bad in [
            "/\t/evil.example",
            "/\t\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: a=b",
            "/\0",
            "/a\u{7f}b",
            "/a\u{85}b",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "/%2F/evil.example",
            "/%2f/evil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/%0d%0aSet-Cookie:%20a=b",
            "/%00",
            "/%252F/evil.example",
            "/ü",
            "/a b",
            "https://evil.example/",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/account", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/account");
    }

    #[test]
    fn see_other_never_panics() {
        for to in ["/account", "/\r\n", "/\0"] {
            let resp = see_other(to);
            assert!(resp.status().is_redirection() || resp.status().is_client_error());
        }
    }
}
