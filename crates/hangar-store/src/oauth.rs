//! The OAuth authorization server's records: registered clients, grants,
//! authorization codes, refresh tokens, browser sessions and links to
//! upstream identity providers.
//!
//! Every secret (client secret, code, refresh token, session id) is made
//! here from 256 random bits and only its SHA-256 is stored, as for API
//! tokens. The one-use rules (a code is exchanged once, a refresh token is
//! rotated once) are single conditional `UPDATE`s, so two racing requests
//! can never both win, on SQLite or on PostgreSQL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sqlx::any::AnyRow;
use sqlx::Row as _;
use subtle::ConstantTimeEq as _;

use super::{
    hash_secret, is_unique_violation, new_id, now, parse_id_secret, user_from_row, Result, Store,
    StoreError, User, SECRET_BYTES,
};

/// Prefix of refresh tokens: `hgrt_<id>_<secret>`.
pub const REFRESH_TOKEN_PREFIX: &str = "hgrt_";
/// Prefix of authorization codes.
const CODE_PREFIX: &str = "hgc_";
/// Prefix of client secrets.
const CLIENT_SECRET_PREFIX: &str = "hgcs_";

/// How a client was registered.
pub const CLIENT_KINDS: &[&str] = &["dcr", "static"];

/// A stored OAuth client (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub id: String,
    /// "dcr" (Dynamic Client Registration) or "static" (`hangar client add`).
    pub kind: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// "none", "client_secret_basic" or "client_secret_post".
    pub token_endpoint_auth_method: String,
    /// "web" or "native".
    pub application_type: String,
    /// The registration as the client sent it, normalized (JSON).
    pub metadata: String,
    pub has_secret: bool,
    pub created_at: i64,
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub kind: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub metadata: String,
}

/// What a user approved: one client, one resource, some scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub resource: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// What an authorization code stands for (issued, then redeemed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub resource: String,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub expires_at: i64,
}

/// The outcome of presenting an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code is now spent.
    Fresh(AuthorizationCode),
    /// Already used: whatever it produced has been revoked.
    Replayed,
    /// Unknown or expired.
    Invalid,
}

/// The outcome of presenting a refresh token.
/// How long after a refresh token is spent the same client may present it
/// again and be taken for retrying (see `Store::rotate_refresh_token`).
pub const REFRESH_RETRY_GRACE: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Valid: it is now spent, and here is its replacement.
    Rotated { grant: Grant, refresh_token: String },
    /// Already used: a sign of theft, so the whole grant has been revoked.
    Reused { grant_id: String },
    /// Unknown, expired, or its grant was revoked.
    Invalid,
}

fn random_secret() -> [u8; SECRET_BYTES] {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// A fresh `<prefix><secret>` and the hash the store keeps of it.
fn new_opaque(prefix: &str) -> (String, String) {
    let secret = random_secret();
    (
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(secret)),
        hash_secret(&secret),
    )
}

/// The hash of an opaque `<prefix><secret>` value, `None` if malformed.
fn opaque_hash(value: &str, prefix: &str) -> Option<String> {
    let encoded = value.strip_prefix(prefix)?;
    let mut secret = [0u8; SECRET_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut secret) {
        Ok(SECRET_BYTES) => Some(hash_secret(&secret)),
        _ => None,
    }
}

impl Store {
    // ---- clients --------------------------------------------------------

    /// Registers a client; returns it and, for confidential clients (any
    /// auth method but "none"), its secret, shown only here.
    pub async fn register_client(&self, new: &NewClient) -> Result<(OAuthClient, Option<String>)> {
        if !CLIENT_KINDS.contains(&new.kind.as_str()) {
            return Err(StoreError::Invalid(format!("client kind {:?}", new.kind)));
        }
        let (secret, secret_hash) = if new.token_endpoint_auth_method == "none" {
            (None, None)
        } else {
            let (s, h) = new_opaque(CLIENT_SECRET_PREFIX);
            (Some(s), Some(h))
        };
        let redirect_uris = serde_json::to_string(&new.redirect_uris)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let client = OAuthClient {
            id: new_id(),
            kind: new.kind.clone(),
            name: new.name.clone(),
            redirect_uris: new.redirect_uris.clone(),
            token_endpoint_auth_method: new.token_endpoint_auth_method.clone(),
            application_type: new.application_type.clone(),
            metadata: new.metadata.clone(),
            has_secret: secret.is_some(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO oauth_clients (id, kind, name, secret_hash, redirect_uris, \
             token_endpoint_auth_method, application_type, metadata, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&client.id)
        .bind(&client.kind)
        .bind(client.name.as_deref())
        .bind(secret_hash.as_deref())
        .bind(&redirect_uris)
        .bind(&client.token_endpoint_auth_method)
        .bind(&client.application_type)
        .bind(&client.metadata)
        .bind(client.created_at)
        .execute(&self.pool)
        .await?;
        Ok((client, secret))
    }

    pub async fn client(&self, id: &str) -> Result<Option<OAuthClient>> {
        let row = sqlx::query(
            "SELECT id, kind, name, secret_hash, redirect_uris, token_endpoint_auth_method, \
             application_type, metadata, created_at FROM oauth_clients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Whether `secret` is the client's secret (constant-time).
    pub async fn verify_client_secret(&self, id: &str, secret: &str) -> Result<bool> {
        let Some(presented) = opaque_hash(secret, CLIENT_SECRET_PREFIX) else {
            return Ok(false);
        };
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT secret_hash FROM oauth_clients WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(stored
            .flatten()
            .is_some_and(|h| bool::from(h.as_bytes().ct_eq(presented.as_bytes()))))
    }

    pub async fn list_clients(&self) -> Result<Vec<OAuthClient>> {
        let rows = sqlx::query(
            "SELECT id, kind, name, secret_hash, redirect_uris, token_endpoint_auth_method, \
             application_type, metadata, created_at FROM oauth_clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Removes a client and revokes every grant it holds.
    pub async fn remove_client(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE oauth_grants SET revoked = 1 WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    // ---- authorization codes ----------------------------------------------

    /// Issues an authorization code; only its hash is kept.
    pub async fn create_code(&self, new: &AuthorizationCode) -> Result<String> {
        let (code, hash) = new_opaque(CODE_PREFIX);
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, resource, \
             scope, code_challenge, nonce, expires_at, used) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
        )
        .bind(&hash)
        .bind(&new.client_id)
        .bind(&new.user_id)
        .bind(&new.redirect_uri)
        .bind(&new.resource)
        .bind(&new.scope)
        .bind(&new.code_challenge)
        .bind(new.nonce.as_deref())
        .bind(new.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(code)
    }

    /// Spends a code. A second presentation revokes the grant the first one
    /// produced (RFC 9700 §4.2.4 / OAuth 2.1 §4.1.3).
    pub async fn redeem_code(&self, code: &str) -> Result<CodeRedemption> {
        let Some(hash) = opaque_hash(code, CODE_PREFIX) else {
            return Ok(CodeRedemption::Invalid);
        };
        let won = sqlx::query("UPDATE oauth_codes SET used = 1 WHERE code_hash = $1 AND used = 0")
            .bind(&hash)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT client_id, user_id, redirect_uri, resource, scope, code_challenge, nonce, \
             expires_at, grant_id FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(CodeRedemption::Invalid);
        };
        if !won {
            let grant: Option<String> = row.try_get("grant_id")?;
            if let Some(grant) = grant {
                self.revoke_grant(&grant).await?;
            }
            return Ok(CodeRedemption::Replayed);
        }
        let record = AuthorizationCode {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            resource: row.try_get("resource")?,
            scope: row.try_get("scope")?,
            code_challenge: row.try_get("code_challenge")?,
            nonce: row.try_get("nonce")?,
            expires_at: row.try_get("expires_at")?,
        };
        if record.expires_at <= now() {
            return Ok(CodeRedemption::Invalid);
        }
        Ok(CodeRedemption::Fresh(record))
    }

    /// Records which grant a code produced, so that a replay can revoke it.
    pub async fn attach_code_grant(&self, code: &str, grant_id: &str) -> Result<()> {
        if let Some(hash) = opaque_hash(code, CODE_PREFIX) {
            sqlx::query("UPDATE oauth_codes SET grant_id = $1 WHERE code_hash = $2")
                .bind(grant_id)
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Deletes what can no longer be used: codes that expired more than a
    /// day ago (until then they serve replay detection), expired refresh
    /// tokens and browser sessions. Returns how many rows went.
    pub async fn purge_expired(&self) -> Result<u64> {
        let now = now();
        let mut n = 0;
        for (sql, before) in [
            (
                "DELETE FROM oauth_codes WHERE expires_at < $1",
                now - 86_400,
            ),
            (
                "DELETE FROM oauth_refresh_tokens WHERE expires_at < $1",
                now,
            ),
            ("DELETE FROM browser_sessions WHERE expires_at < $1", now),
        ] {
            n += sqlx::query(sql)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// How many clients of `kind` are registered.
    pub async fn count_clients(&self, kind: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM oauth_clients WHERE kind = $1")
                .bind(kind)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    // ---- grants and refresh tokens -----------------------------------------

    pub async fn create_grant(
        &self,
        user_id: &str,
        client_id: &str,
        client_name: Option<&str>,
        resource: &str,
        scope: &str,
    ) -> Result<Grant> {
        let grant = Grant {
            id: new_id(),
            user_id: user_id.to_owned(),
            client_id: client_id.to_owned(),
            client_name: client_name.map(str::to_owned),
            resource: resource.to_owned(),
            scope: scope.to_owned(),
            created_at: now(),
            last_used_at: None,
            revoked: false,
        };
        sqlx::query(
            "INSERT INTO oauth_grants (id, user_id, client_id, client_name, resource, scope, \
             created_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
        )
        .bind(&grant.id)
        .bind(&grant.user_id)
        .bind(&grant.client_id)
        .bind(grant.client_name.as_deref())
        .bind(&grant.resource)
        .bind(&grant.scope)
        .bind(grant.created_at)
        .execute(&self.pool)
        .await?;
        Ok(grant)
    }

    pub async fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(&format!("{GRANT_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(grant_from_row).transpose()?)
    }

    /// A user's grants that are still in force, newest first.
    pub async fn list_grants(&self, user_id: &str) -> Result<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "{GRANT_COLUMNS} WHERE user_id = $1 AND revoked = 0 ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(grant_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Revokes a grant and its refresh tokens; `false` if there was none.
    pub async fn revoke_grant(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE oauth_grants SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM oauth_refresh_tokens WHERE grant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Issues a refresh token for a grant.
    pub async fn issue_refresh_token(&self, grant_id: &str, expires_at: i64) -> Result<String> {
        insert_refresh_token(&self.pool, grant_id, expires_at).await
    }

    /// Spends a refresh token and issues its replacement (same grant, same
    /// expiry), in one transaction. A token used twice revokes its whole
    /// grant — unless it is the same client retrying a refresh whose answer
    /// it never got (the router restarted, or the database went away,
    /// between spending the token and answering): spent at most
    /// [`REFRESH_RETRY_GRACE`] ago, and no token of the grant issued since
    /// has been used. Then the tokens issued for the lost answer are
    /// superseded (`used = -1`: presenting one later is a reuse, with no
    /// grace) and the retry gets new ones, so there is still one chain.
    pub async fn rotate_refresh_token(&self, token: &str) -> Result<Refresh> {
        let Some((grant, expires_at)) = self.check_refresh_token(token).await? else {
            return Ok(Refresh::Invalid);
        };
        let Some((id, _)) = parse_id_secret(token, REFRESH_TOKEN_PREFIX) else {
            return Ok(Refresh::Invalid);
        };
        let now = now();
        if grant.revoked || expires_at <= now {
            return Ok(Refresh::Invalid);
        }
        let mut tx = self.pool.begin().await?;
        // The row stays locked (Postgres) or the database (SQLite) until the
        // commit: a concurrent rotation of the same token waits, then sees it
        // spent and the successor issued.
        let won =
            sqlx::query("UPDATE oauth_refresh_tokens SET used = $1 WHERE id = $2 AND used = 0")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !won {
            let used: i64 = sqlx::query("SELECT used FROM oauth_refresh_tokens WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("used")?;
            // 1: spent before the grace existed; -1: superseded.
            let in_grace = used > 1 && now - used <= REFRESH_RETRY_GRACE;
            let later_used: i64 = if in_grace {
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM oauth_refresh_tokens \
                     WHERE grant_id = $1 AND id <> $2 AND created_at >= $3 AND used <> 0",
                )
                .bind(&grant.id)
                .bind(id)
                .bind(used)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?
            } else {
                0
            };
            if !in_grace || later_used > 0 {
                tx.rollback().await?;
                self.revoke_grant(&grant.id).await?;
                return Ok(Refresh::Reused { grant_id: grant.id });
            }
            sqlx::query(
                "UPDATE oauth_refresh_tokens SET used = -1 WHERE grant_id = $1 AND used = 0",
            )
            .bind(&grant.id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&grant.id)
            .execute(&mut *tx)
            .await?;
        let refresh_token = insert_refresh_token(&mut *tx, &grant.id, expires_at).await?;
        tx.commit().await?;
        Ok(Refresh::Rotated {
            grant,
            refresh_token,
        })
    }

    /// The grant of a well-formed refresh token whose secret matches, with
    /// the token's expiry (used or not).
    async fn check_refresh_token(&self, token: &str) -> Result<Option<(Grant, i64)>> {
        let Some((id, secret)) = parse_id_secret(token, REFRESH_TOKEN_PREFIX) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT grant_id, secret_hash, expires_at FROM oauth_refresh_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("secret_hash")?;
        if !bool::from(stored.as_bytes().ct_eq(hash_secret(&secret).as_bytes())) {
            return Ok(None);
        }
        let grant_id: String = row.try_get("grant_id")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Ok(self.grant(&grant_id).await?.map(|g| (g, expires_at)))
    }

    /// RFC 7009: revokes the grant a refresh token belongs to, if it was
    /// issued to `client_id` (§2.1: a client revokes only its own tokens).
    /// Returns the revoked grant, or `None` for a token that is not ours or
    /// is another client's (which is left alone).
    pub async fn revoke_refresh_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<Option<Grant>> {
        let Some((grant, _)) = self.check_refresh_token(token).await? else {
            return Ok(None);
        };
        if grant.client_id != client_id {
            return Ok(None);
        }
        self.revoke_grant(&grant.id).await?;
        Ok(Some(grant))
    }

    // ---- browser sessions ------------------------------------------------------

    /// Starts a signed-in browser session; returns its cookie value.
    pub async fn create_browser_session(&self, user_id: &str, expires_at: i64) -> Result<String> {
        let secret = random_secret();
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_secret(&secret))
        .bind(user_id)
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(URL_SAFE_NO_PAD.encode(secret))
    }

    /// The user a session cookie stands for, if it is live.
    pub async fn browser_session_user(&self, cookie: &str) -> Result<Option<User>> {
        let Some(hash) = session_hash(cookie) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT u.id AS id, u.name AS name, u.admin AS admin, \
             u.password_hash AS password_hash, u.created_at AS created_at, u.email AS email \
             FROM browser_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(&hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn end_browser_session(&self, cookie: &str) -> Result<()> {
        if let Some(hash) = session_hash(cookie) {
            sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1 OR expires_at <= $2")
                .bind(&hash)
                .bind(now())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    // ---- upstream identities -------------------------------------------------

    /// The user linked to an upstream provider's subject.
    pub async fn external_user(&self, provider: &str, subject: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id AS id, u.name AS name, u.admin AS admin, \
             u.password_hash AS password_hash, u.created_at AS created_at, u.email AS email \
             FROM external_identities e JOIN users u ON u.id = e.user_id \
             WHERE e.provider = $1 AND e.subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Links an upstream provider's subject to a user (idempotent).
    pub async fn link_external(
        &self,
        provider: &str,
        subject: &str,
        user_id: &str,
        email: Option<&str>,
    ) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO external_identities (provider, subject, user_id, email, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(provider)
        .bind(subject)
        .bind(user_id)
        .bind(email)
        .bind(now())
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, name, admin, password_hash, created_at, email FROM users \
             WHERE LOWER(email) = LOWER($1)",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Replaces a user's password hash; `false` if there is no such user.
    pub async fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
                .bind(hash)
                .bind(name)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    pub async fn set_user_email(&self, user_id: &str, email: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn session_hash(cookie: &str) -> Option<String> {
    let mut secret = [0u8; SECRET_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(cookie, &mut secret) {
        Ok(SECRET_BYTES) => Some(hash_secret(&secret)),
        _ => None,
    }
}

const GRANT_COLUMNS: &str = "SELECT id, user_id, client_id, client_name, resource, scope, \
     created_at, last_used_at, revoked FROM oauth_grants";

fn grant_from_row(row: &AnyRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        resource: row.try_get("resource")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

fn client_from_row(row: &AnyRow) -> Result<OAuthClient> {
    let uris: String = row.try_get("redirect_uris")?;
    let secret_hash: Option<String> = row.try_get("secret_hash")?;
    Ok(OAuthClient {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        redirect_uris: serde_json::from_str(&uris)
            .map_err(|e| StoreError::Invalid(format!("stored redirect_uris: {e}")))?,
        token_endpoint_auth_method: row.try_get("token_endpoint_auth_method")?,
        application_type: row.try_get("application_type")?,
        metadata: row.try_get("metadata")?,
        has_secret: secret_hash.is_some(),
        created_at: row.try_get("created_at")?,
    })
}

/// Stores a new refresh token of `grant_id` (its secret hashed) and returns
/// it, on the pool or inside a transaction.
async fn insert_refresh_token<'e, E>(exec: E, grant_id: &str, expires_at: i64) -> Result<String>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let id = new_id();
    let secret = random_secret();
    sqlx::query(
        "INSERT INTO oauth_refresh_tokens (id, grant_id, secret_hash, created_at, expires_at, \
         used) VALUES ($1, $2, $3, $4, $5, 0)",
    )
    .bind(&id)
    .bind(grant_id)
    .bind(hash_secret(&secret))
    .bind(now())
    .bind(expires_at)
    .execute(exec)
    .await?;
    Ok(format!(
        "{REFRESH_TOKEN_PREFIX}{id}_{}",
        URL_SAFE_NO_PAD.encode(secret)
    ))
}
