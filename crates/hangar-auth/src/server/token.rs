//! `/oauth/token`, `/oauth/register` and `/oauth/revoke`: the endpoints
//! clients call directly (no browser).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hangar_store::{CodeRedemption, Grant, Refresh};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::AuthServer;
use crate::clients::{self, Client, ClientError};
use crate::tokens::{self, AccessClaims};
use crate::web::{
    basic_credentials, no_store, oauth_error, random_token, read_form, LimitedBody, OAuthError,
    PeerIp,
};

/// Most dynamically registered clients kept (registration is open to
/// anyone, so the table must not grow without bound).
const MAX_DYNAMIC_CLIENTS: i64 = 10_000;

fn bad_request(error: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

fn invalid_client(description: &str, basic: bool) -> Response {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hangar\""),
        );
    }
    resp
}

fn server_error(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!("{what}: {e}");
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the authorization server failed; try again",
    )
}

/// The form of a token or revocation request (see [`read_form`]).
#[allow(clippy::result_large_err)]
fn form(headers: &HeaderMap, body: &LimitedBody) -> Result<HashMap<String, String>, Response> {
    let body = body
        .0
        .as_ref()
        .map_err(|_| OAuthError::too_large().into_response())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    read_form(content_type, body).map_err(IntoResponse::into_response)
}

fn basic_from(headers: &HeaderMap) -> Option<(String, String)> {
    basic_credentials(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

impl AuthServer {
    /// Authenticates the client making a token or revocation request with
    /// the method it registered.
    #[allow(clippy::result_large_err)]
    async fn authenticate_client(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<Client, Response> {
        let basic = basic_from(headers);
        let used_basic = basic.is_some();
        let (id, secret) = match basic {
            Some((id, secret)) => {
                if form.get("client_id").is_some_and(|f| *f != id) {
                    return Err(invalid_client(
                        "client_id does not match the credentials",
                        true,
                    ));
                }
                (id, Some(secret))
            }
            None => match form.get("client_id") {
                Some(id) => (id.clone(), form.get("client_secret").cloned()),
                None => return Err(invalid_client("client authentication is required", false)),
            },
        };
        let client = match clients::resolve(&self.store, self.cimd.as_deref(), &id).await {
            Ok(c) => c,
            Err(ClientError::Store(e)) => return Err(server_error("client lookup", e)),
            Err(_) => return Err(invalid_client("unknown client", used_basic)),
        };
        match (client.auth_method.as_str(), secret) {
            ("none", None) => Ok(client),
            ("none", Some(_)) => Err(invalid_client(
                "this client is public: it has no secret",
                used_basic,
            )),
            (_, Some(secret)) => match self.store.verify_client_secret(&client.id, &secret).await {
                Ok(true) => Ok(client),
                Ok(false) => Err(invalid_client("wrong client secret", used_basic)),
                Err(e) => Err(server_error("client secret check", e)),
            },
            (_, None) => Err(invalid_client(
                "this client must authenticate with its secret",
                used_basic,
            )),
        }
    }

    /// Signs an access token (and an ID token when `openid` was granted)
    /// and answers with them and the refresh token.
    fn token_response(
        &self,
        grant: &Grant,
        user_name: &str,
        refresh_token: &str,
        nonce: Option<&str>,
    ) -> Response {
        let now = tokens::now();
        let ttl = self.settings.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: grant.resource.clone(),
            exp: now + ttl,
            iat: now,
            jti: random_token(),
            scope: grant.scope.clone(),
            client_id: grant.client_id.clone(),
            preferred_username: user_name.to_owned(),
            gid: grant.id.clone(),
        };
        let access = match tokens::sign(&self.keys, &claims) {
            Ok(t) => t,
            Err(e) => return server_error("signing an access token", e),
        };
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "scope": grant.scope,
        });
        if grant.scope.split(' ').any(|s| s == "openid") {
            match self.id_token(grant, user_name, nonce, now) {
                Ok(t) => body["id_token"] = Value::String(t),
                Err(e) => return server_error("signing an ID token", e),
            }
        }
        let mut resp = axum::Json(body).into_response();
        no_store(resp.headers_mut());
        resp
    }

    fn id_token(
        &self,
        grant: &Grant,
        user_name: &str,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let key = self.keys.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let mut claims = json!({
            "iss": self.settings.issuer, "sub": grant.user_id, "aud": grant.client_id,
            "iat": now, "exp": now + self.settings.access_token_ttl.as_secs(),
            "preferred_username": user_name,
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        jsonwebtoken::encode(&header, &claims, &key.encoding)
    }

    async fn code_grant(&self, client: &Client, form: &HashMap<String, String>) -> Response {
        let (Some(code), Some(redirect_uri)) = (form.get("code"), form.get("redirect_uri")) else {
            return bad_request("invalid_request", "code and redirect_uri are required");
        };
        let Some(verifier) = form.get("code_verifier") else {
            return bad_request("invalid_request", "code_verifier is required (PKCE)");
        };
        let record = match self.store.redeem_code(code).await {
            Ok(CodeRedemption::Fresh(r)) => r,
            Ok(CodeRedemption::Replayed) => {
                tracing::warn!(client = %client.id, "authorization code replayed; its grant is revoked");
                self.check.forget();
                return bad_request("invalid_grant", "the authorization code was already used");
            }
            Ok(CodeRedemption::Invalid) => {
                return bad_request(
                    "invalid_grant",
                    "the authorization code is invalid or expired",
                )
            }
            Err(e) => return server_error("redeeming a code", e),
        };
        if record.client_id != client.id {
            return bad_request("invalid_grant", "the code was issued to another client");
        }
        if record.redirect_uri != *redirect_uri {
            return bad_request(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            );
        }
        if !pkce_matches(verifier, &record.code_challenge) {
            return bad_request(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            );
        }
        if let Some(refused) = other_resource(form, &record.resource) {
            return refused;
        }
        let user = match self.store.user_by_id(&record.user_id).await {
            Ok(Some(u)) => u,
            Ok(None) => return bad_request("invalid_grant", "the user no longer exists"),
            Err(e) => return server_error("user lookup", e),
        };
        let grant = match self
            .store
            .create_grant(
                &user.id,
                &client.id,
                client.name.as_deref(),
                &record.resource,
                &record.scope,
            )
            .await
        {
            Ok(g) => g,
            Err(e) => return server_error("creating a grant", e),
        };
        if let Err(e) = self.store.attach_code_grant(code, &grant.id).await {
            return server_error("recording the grant", e);
        }
        let expires = hangar_store::now() + self.settings.refresh_token_ttl.as_secs() as i64;
        let refresh = match self.store.issue_refresh_token(&grant.id, expires).await {
            Ok(r) => r,
            Err(e) => return server_error("issuing a refresh token", e),
        };
        tracing::info!(user = %user.name, client = %client.id, resource = %grant.resource, "tokens issued");
        self.token_response(&grant, &user.name, &refresh, record.nonce.as_deref())
    }

    async fn refresh_grant(&self, client: &Client, form: &HashMap<String, String>) -> Response {
        let Some(token) = form.get("refresh_token") else {
            return bad_request("invalid_request", "refresh_token is required");
        };
        let (mut grant, refresh) = match self.store.rotate_refresh_token(token).await {
            Ok(Refresh::Rotated {
                grant,
                refresh_token,
            }) => (grant, refresh_token),
            Ok(Refresh::Reused { grant_id }) => {
                tracing::warn!(grant = %grant_id, client = %client.id, "refresh token reused; grant revoked");
                self.check.forget();
                return bad_request(
                    "invalid_grant",
                    "the refresh token was already used; sign in again",
                );
            }
            Ok(Refresh::Invalid) => {
                return bad_request(
                    "invalid_grant",
                    "the refresh token is invalid, expired or revoked",
                )
            }
            Err(e) => return server_error("rotating a refresh token", e),
        };
        if grant.client_id != client.id {
            // A stolen token presented by another client: end the grant.
            let _ = self.store.revoke_grant(&grant.id).await;
            self.check.forget();
            return bad_request(
                "invalid_grant",
                "the refresh token was issued to another client",
            );
        }
        if let Some(refused) = other_resource(form, &grant.resource) {
            return refused;
        }
        if let Some(scope) = form.get("scope") {
            let granted: Vec<&str> = grant.scope.split(' ').collect();
            if !scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .all(|s| granted.contains(&s))
            {
                return bad_request("invalid_scope", "a refresh cannot widen the granted scopes");
            }
            if !scope.trim().is_empty() {
                grant.scope = scope.trim().to_owned();
            }
        }
        let user = match self.store.user_by_id(&grant.user_id).await {
            Ok(Some(u)) => u,
            Ok(None) => return bad_request("invalid_grant", "the user no longer exists"),
            Err(e) => return server_error("user lookup", e),
        };
        self.token_response(&grant, &user.name, &refresh, None)
    }
}

/// A `resource` in a token request may only repeat the one the grant is
/// bound to (RFC 8707: a token serves one resource).
fn other_resource(form: &HashMap<String, String>, bound: &str) -> Option<Response> {
    let asked = form.get("resource")?;
    (asked.trim_end_matches('/') != bound).then(|| {
        bad_request(
            "invalid_target",
            "the resource differs from the one this grant is for",
        )
    })
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge, in constant time.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

pub(super) async fn token(
    State(auth): State<Arc<AuthServer>>,
    peer: PeerIp,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    if auth.token_limit.check(&peer.key()).is_err() {
        return oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many token requests",
        );
    }
    let form = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let client = match auth.authenticate_client(&headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => auth.code_grant(&client, &form).await,
        Some("refresh_token") => auth.refresh_grant(&client, &form).await,
        Some(_) => bad_request(
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
        None => bad_request("invalid_request", "grant_type is required"),
    }
}

/// RFC 7009. The client authenticates as at the token endpoint (a
/// confidential client with its secret, else 401 `invalid_client`), and
/// only tokens issued to it are revoked. The answer is 200 whether or not
/// the token was known or someone else's (§2.2), so that the endpoint
/// reveals nothing about tokens.
pub(super) async fn revoke(
    State(auth): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Response {
    let form = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let client = match auth.authenticate_client(&headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = form.get("token") else {
        return bad_request("invalid_request", "token is required");
    };
    let grant_id = if token.starts_with(hangar_store::REFRESH_TOKEN_PREFIX) {
        // Revoked only if it was issued to this client (§2.1).
        match auth.store.revoke_refresh_token(token, &client.id).await {
            Ok(g) => g.map(|g| g.id),
            Err(e) => return server_error("revoking", e),
        }
    } else {
        let audiences: Vec<String> = auth
            .settings
            .resources
            .iter()
            .flat_map(|r| r.urls.clone())
            .collect();
        tokens::verify(&auth.keys, token, &auth.settings.issuer, &audiences)
            .ok()
            .filter(|c| c.client_id == client.id)
            .map(|c| c.gid)
    };
    if let Some(id) = grant_id {
        if let Err(e) = auth.store.revoke_grant(&id).await {
            return server_error("revoking", e);
        }
        auth.check.forget();
    }
    let mut resp = StatusCode::OK.into_response();
    no_store(resp.headers_mut());
    resp
}

/// RFC 7591 Dynamic Client Registration.
pub(super) async fn register(
    State(auth): State<Arc<AuthServer>>,
    peer: PeerIp,
    LimitedBody(body): LimitedBody,
) -> Response {
    if !auth.settings.dynamic_registration {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic registration is off",
        );
    }
    if auth.register_limit.check(&peer.key()).is_err() {
        return oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many registrations",
        );
    }
    let Ok(body) = body else {
        return OAuthError::too_large().into_response();
    };
    let new = match clients::parse_registration(&body) {
        Ok(n) => n,
        Err((error, description)) => return bad_request(error, &description),
    };
    match auth.store.count_clients("dcr").await {
        Ok(n) if n >= MAX_DYNAMIC_CLIENTS => {
            tracing::warn!("dynamic registration refused: {n} clients registered");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many registered clients; ask the administrator",
            );
        }
        Ok(_) => {}
        Err(e) => return server_error("counting clients", e),
    }
    let (client, secret) = match auth.store.register_client(&new).await {
        Ok(r) => r,
        Err(e) => return server_error("registering a client", e),
    };
    let mut doc: Value = serde_json::from_str(&client.metadata).unwrap_or_else(|_| json!({}));
    doc["client_id"] = json!(client.id);
    doc["client_id_issued_at"] = json!(client.created_at);
    doc["redirect_uris"] = json!(client.redirect_uris);
    doc["token_endpoint_auth_method"] = json!(client.token_endpoint_auth_method);
    doc["application_type"] = json!(client.application_type);
    doc["grant_types"] = json!(["authorization_code", "refresh_token"]);
    doc["response_types"] = json!(["code"]);
    if let Some(secret) = secret {
        doc["client_secret"] = json!(secret);
        doc["client_secret_expires_at"] = json!(0);
    }
    tracing::info!(client = %client.id, "client registered");
    let mut resp = (StatusCode::CREATED, axum::Json(doc)).into_response();
    no_store(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_only_accepts_the_right_verifier() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        // `plain` (verifier == challenge) never passes.
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
    }
}
