//! Hangar router's persistent store: users, API tokens, server instances and
//! an audit log of tool calls.
//!
//! One set of migrations and one set of queries serve both backends through
//! sqlx's `Any` driver: SQLite (the embedded default, `sqlite://PATH`) and
//! PostgreSQL (`postgres://…`, for running at scale). The SQL is kept
//! portable: `$1, $2…` placeholders (SQLite accepts them), TEXT primary keys
//! generated here, timestamps as BIGINT unix seconds and booleans as BIGINT
//! 0/1 (the `Any` driver maps SQLite values by their runtime type, so a
//! SQLite BOOLEAN column comes back as an integer and will not decode as
//! `bool`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};
use subtle::ConstantTimeEq as _;

mod oauth;
pub use oauth::*;

/// The store's migrations, embedded at compile time and run by [`Store::open`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// File name of the SQLite database inside a data directory.
pub const DB_FILE_NAME: &str = "hangar.db";

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "hgr_";

/// Random bytes in a token's secret part (256 bits).
const SECRET_BYTES: usize = 32;
/// Length of the secret part: 32 bytes as unpadded base64url.
const SECRET_LEN: usize = 43;
/// Random bytes in a generated id.
const ID_BYTES: usize = 16;
/// Length of a generated id: 16 bytes as lowercase hex.
const ID_LEN: usize = ID_BYTES * 2;

/// Instance states accepted by [`Store::upsert_instance`].
pub const INSTANCE_STATES: &[&str] = &["starting", "running", "stopped", "crashed"];
/// Audit outcomes accepted by [`Store::audit`].
pub const AUDIT_OUTCOMES: &[&str] = &["ok", "error", "tool_error"];

/// Errors from the store. A bad API token is not an error: `verify_token`
/// answers `None` for it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (such as a user name) is already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An argument failed validation.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database URL names a backend this store does not support.
    #[error("unsupported database URL scheme {0:?} (use sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub password_hash: Option<String>,
    pub created_at: i64,
    /// Set for users from an upstream OpenID Connect provider.
    pub email: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .field("email", &self.email)
            .finish()
    }
}

/// What the store knows about an API token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub last_used_at: Option<i64>,
}

/// A running (or recently running) server instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub server: String,
    /// `None` for an instance shared by all users.
    pub user_id: Option<String>,
    /// One of [`INSTANCE_STATES`]: "starting", "running", "stopped", "crashed".
    pub state: String,
    pub pid: Option<i64>,
    pub address: Option<String>,
    pub started_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// One tool call in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    pub user_id: Option<String>,
    pub server: String,
    pub tool: String,
    /// One of [`AUDIT_OUTCOMES`]: "ok", "error", "tool_error".
    pub outcome: String,
    pub duration_ms: i64,
}

/// The current time in unix seconds.
/// How fresh `TokenInfo::last_used_at` is kept, in seconds.
pub const LAST_USED_RESOLUTION_SECS: i64 = 60;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The router's persistent store. Cheap to clone (it wraps a pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `url` and runs the migrations.
    ///
    /// `sqlite://PATH` creates the file (mode 0600 on Unix) if it is missing
    /// and turns on WAL, foreign keys and a busy timeout;
    /// `postgres://…` (or `postgresql://…`) connects to an existing database.
    ///
    /// This installs sqlx's default `Any` drivers; an application that
    /// installed its own driver set beforehand must include SQLite and
    /// PostgreSQL.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Self::open_sqlite(url).await,
            "postgres" | "postgresql" => Self::open_postgres(url).await,
            _ => Err(StoreError::UnsupportedUrl(scheme.to_string())),
        }
    }

    /// Opens SQLite at `dir/hangar.db`, creating `dir` (mode 0700) and the
    /// database file (mode 0600) if they are missing.
    pub async fn open_data_dir(dir: &Path) -> Result<Store> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE_NAME);
        create_private_file(&path)?;
        let path = path.to_str().ok_or_else(|| {
            StoreError::Invalid(format!("data directory {dir:?} is not valid UTF-8"))
        })?;
        Self::open(&format!("sqlite://{}", encode_sqlite_path(path))).await
    }

    async fn open_sqlite(url: &str) -> Result<Store> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let (path, params) = match rest.split_once('?') {
            Some((path, params)) => (path, Some(params)),
            None => (rest, None),
        };
        let memory = path.is_empty()
            || path == ":memory:"
            || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"));
        let has_mode = params.is_some_and(|p| p.split('&').any(|kv| kv.starts_with("mode=")));
        if !memory && !has_mode {
            // Create the file ourselves so that it gets owner-only permissions.
            create_private_file(Path::new(&decode_sqlite_path(path)?))?;
        }
        let url = if memory || has_mode {
            url.to_string()
        } else if params.is_some() {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };

        let options = AnyConnectOptions::from_str(&url)?;
        if !memory {
            // WAL is a persistent property of the database file; switching to
            // it needs an exclusive lock that the busy timeout does not wait
            // for, so do it once on a lone connection before the pool exists.
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options).await?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&mut conn)
                .await?;
            sqlx::Connection::close(conn).await?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Invalid(format!(
                    "SQLite refused WAL mode (journal_mode is {mode:?})"
                )));
            }
        }

        let mut pool_options = AnyPoolOptions::new()
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    // With WAL, NORMAL syncs at checkpoints rather than at
                    // every commit: a crash of Hangar loses nothing, a power
                    // cut at most the last commits, and a commit is no longer
                    // a disk flush (SQLite's own recommendation for WAL).
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(30));
        if memory {
            // Every connection to an in-memory database is its own database
            // unless they share a cache, and it vanishes with the last
            // connection: keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            pool_options = pool_options.max_connections(4);
        }
        let pool = pool_options.connect_with(options).await?;
        Self::migrate(pool, Backend::Sqlite).await
    }

    async fn open_postgres(url: &str) -> Result<Store> {
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Self::migrate(pool, Backend::Postgres).await
    }

    async fn migrate(pool: AnyPool, backend: Backend) -> Result<Store> {
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users ----------------------------------------------------------

    /// Adds a user. A name already taken gives [`StoreError::Conflict`].
    pub async fn add_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        admin: bool,
    ) -> Result<User> {
        validate_user_name(name)?;
        let user = User {
            id: new_id(),
            name: name.to_string(),
            admin,
            password_hash: password_hash.map(str::to_string),
            created_at: now(),
            email: None,
        };
        let res = sqlx::query(
            "INSERT INTO users (id, name, password_hash, admin, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.password_hash.as_deref())
        .bind(i64::from(user.admin))
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(user),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a user named {name:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, name, admin, password_hash, created_at, email FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, name, admin, password_hash, created_at, email FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// All users, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, name, admin, password_hash, created_at, email FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(user_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Removes a user and their API tokens; `false` if there was no such user.
    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The foreign key cascades too; deleting explicitly does not depend on
        // the connection having foreign keys enabled.
        sqlx::query(
            "DELETE FROM api_tokens WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    // ---- API tokens -----------------------------------------------------

    /// Creates an API token for `user_id`, returning its info and the token
    /// itself, `hgr_<id>_<secret>`. The token is shown only here: the store
    /// keeps just a hash of its secret.
    pub async fn create_token(
        &self,
        user_id: &str,
        expires_at: Option<i64>,
    ) -> Result<(TokenInfo, String)> {
        if self.user_by_id(user_id).await?.is_none() {
            return Err(StoreError::NotFound(format!("no user with id {user_id:?}")));
        }
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let info = TokenInfo {
            id: new_id(),
            user_id: user_id.to_string(),
            created_at: now(),
            expires_at,
            revoked: false,
            last_used_at: None,
        };
        let res = sqlx::query(
            "INSERT INTO api_tokens (id, user_id, secret_hash, created_at, expires_at, revoked) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&info.id)
        .bind(&info.user_id)
        .bind(hash_secret(&secret))
        .bind(info.created_at)
        .bind(info.expires_at)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => {}
            // The user was removed between the check and the insert.
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound(format!("no user with id {user_id:?}")))
            }
            Err(e) => return Err(e.into()),
        }
        let token = format!(
            "{TOKEN_PREFIX}{}_{}",
            info.id,
            URL_SAFE_NO_PAD.encode(secret)
        );
        Ok((info, token))
    }

    /// Checks an API token. `Some((user, info))` for a well-formed token whose
    /// secret matches and which is neither revoked nor expired (expired when
    /// `now() >= expires_at`); `None` for anything else, never an error for a
    /// bad token. Records the time of use in `last_used_at`, to the minute:
    /// it is written only when older than [`LAST_USED_RESOLUTION_SECS`], so
    /// verifying is a read, not a disk flush, on almost every request.
    pub async fn verify_token(&self, token: &str) -> Result<Option<(User, TokenInfo)>> {
        let Some((id, secret)) = parse_token(token) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT t.id AS t_id, t.user_id AS t_user_id, t.secret_hash AS t_secret_hash, \
                    t.created_at AS t_created_at, t.expires_at AS t_expires_at, \
                    t.revoked AS t_revoked, t.last_used_at AS t_last_used_at, \
                    u.id AS id, u.name AS name, u.admin AS admin, \
                    u.password_hash AS password_hash, u.created_at AS created_at, u.email AS email \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored_hash: String = row.try_get("t_secret_hash")?;
        let presented_hash = hash_secret(&secret);
        if !bool::from(stored_hash.as_bytes().ct_eq(presented_hash.as_bytes())) {
            return Ok(None);
        }
        let mut info = TokenInfo {
            id: row.try_get("t_id")?,
            user_id: row.try_get("t_user_id")?,
            created_at: row.try_get("t_created_at")?,
            expires_at: row.try_get("t_expires_at")?,
            revoked: row.try_get::<i64, _>("t_revoked")? != 0,
            last_used_at: row.try_get("t_last_used_at")?,
        };
        let user = user_from_row(&row)?;
        let now = now();
        if info.revoked || info.expires_at.is_some_and(|exp| now >= exp) {
            return Ok(None);
        }
        // Every request verifies its token: writing (and syncing) the store
        // each time would cost a disk flush per request, so `last_used_at`
        // is only refreshed when it is older than a minute.
        if info
            .last_used_at
            .is_none_or(|last| now - last >= LAST_USED_RESOLUTION_SECS)
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&info.id)
                .execute(&self.pool)
                .await?;
            info.last_used_at = Some(now);
        }
        Ok(Some((user, info)))
    }

    /// Revokes a token; `false` if there was no such token.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Tokens of one user, or of everyone; oldest first.
    pub async fn list_tokens(&self, user_id: Option<&str>) -> Result<Vec<TokenInfo>> {
        const COLUMNS: &str =
            "SELECT id, user_id, created_at, expires_at, revoked, last_used_at FROM api_tokens";
        let rows = match user_id {
            Some(user_id) => {
                sqlx::query(&format!(
                    "{COLUMNS} WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{COLUMNS} ORDER BY created_at, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(token_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    // ---- instances ------------------------------------------------------

    /// Inserts an instance, or replaces every field of the one with its id.
    pub async fn upsert_instance(&self, instance: &Instance) -> Result<()> {
        if instance.id.is_empty() {
            return Err(StoreError::Invalid("instance id is empty".into()));
        }
        if !INSTANCE_STATES.contains(&instance.state.as_str()) {
            return Err(StoreError::Invalid(format!(
                "instance state {:?} is not one of {INSTANCE_STATES:?}",
                instance.state
            )));
        }
        sqlx::query(
            "INSERT INTO instances \
                 (id, server, user_id, state, pid, address, started_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET \
                 server = excluded.server, user_id = excluded.user_id, \
                 state = excluded.state, pid = excluded.pid, address = excluded.address, \
                 started_at = excluded.started_at, last_used_at = excluded.last_used_at",
        )
        .bind(&instance.id)
        .bind(&instance.server)
        .bind(instance.user_id.as_deref())
        .bind(&instance.state)
        .bind(instance.pid)
        .bind(instance.address.as_deref())
        .bind(instance.started_at)
        .bind(instance.last_used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// All instances, by server then id.
    pub async fn list_instances(&self) -> Result<Vec<Instance>> {
        let rows = sqlx::query(
            "SELECT id, server, user_id, state, pid, address, started_at, last_used_at \
             FROM instances ORDER BY server, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(instance_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Removes an instance; `false` if there was no such instance.
    pub async fn remove_instance(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    // ---- audit ----------------------------------------------------------

    /// Appends a tool call to the audit log.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<()> {
        self.audit_many(std::slice::from_ref(entry)).await
    }

    /// Writes several audit entries in one transaction (one disk flush for
    /// the lot: the router batches tool-call records this way).
    pub async fn audit_many(&self, entries: &[AuditEntry]) -> Result<()> {
        if let Some(bad) = entries
            .iter()
            .find(|e| !AUDIT_OUTCOMES.contains(&e.outcome.as_str()))
        {
            return Err(StoreError::Invalid(format!(
                "audit outcome {:?} is not one of {AUDIT_OUTCOMES:?}",
                bad.outcome
            )));
        }
        // One multi-row INSERT per chunk: with SQLite every statement is a
        // round trip to sqlx's worker thread, so a statement per row cost
        // more than the rows themselves. 7 columns × 100 rows stays under
        // SQLite's oldest limit of 999 parameters.
        //
        // SQLite gets anonymous `?` placeholders: for `$N` ones, sqlx looks
        // every parameter's name up in SQLite's list of names, a linear scan
        // each (`sqlite3_bind_parameter_name`: 6 % of the router's CPU under
        // load in the profile of docs/benchmarks.md).
        const ROWS: usize = 100;
        let numbered = self.backend == Backend::Postgres;
        let mut tx = self.pool.begin().await?;
        for chunk in entries.chunks(ROWS) {
            let mut sql = String::from(
                "INSERT INTO audit_log (id, at, user_id, server, tool, outcome, duration_ms) VALUES ",
            );
            for row in 0..chunk.len() {
                let first = row * 7;
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for column in 1..=7 {
                    if column > 1 {
                        sql.push_str(", ");
                    }
                    if numbered {
                        sql.push_str(&format!("${}", first + column));
                    } else {
                        sql.push('?');
                    }
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for entry in chunk {
                query = query
                    .bind(new_audit_id())
                    .bind(entry.at)
                    .bind(entry.user_id.as_deref())
                    .bind(&entry.server)
                    .bind(&entry.tool)
                    .bind(&entry.outcome)
                    .bind(entry.duration_ms);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT at, user_id, server, tool, outcome, duration_ms FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

// ---- rows -----------------------------------------------------------------

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        email: row.try_get("email")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn instance_from_row(row: &AnyRow) -> Result<Instance, sqlx::Error> {
    Ok(Instance {
        id: row.try_get("id")?,
        server: row.try_get("server")?,
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
        pid: row.try_get("pid")?,
        address: row.try_get("address")?,
        started_at: row.try_get("started_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        at: row.try_get("at")?,
        user_id: row.try_get("user_id")?,
        server: row.try_get("server")?,
        tool: row.try_get("tool")?,
        outcome: row.try_get("outcome")?,
        duration_ms: row.try_get("duration_ms")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

// ---- ids, tokens, validation ------------------------------------------------

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A random 16-byte id as 32 lowercase hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    to_hex(&bytes)
}

/// An audit id that sorts in insertion order: a zero-padded, strictly
/// increasing nanosecond clock from this process, then random bits so that
/// ids from several processes sharing one database never collide.
fn new_audit_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    let seq = loop {
        let next = clock.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    let mut random = [0u8; 8];
    rand::rng().fill_bytes(&mut random);
    format!("{seq:020}{}", to_hex(&random))
}

/// The stored form of a token secret: hex SHA-256.
///
/// A plain fast hash is the right choice here, unlike for passwords: the
/// secret is 256 bits from a CSPRNG, so there is nothing to brute-force and a
/// slow, salted KDF would only cost CPU on every request.
fn hash_secret(secret: &[u8]) -> String {
    to_hex(&Sha256::digest(secret))
}

/// Splits `hgr_<id>_<secret>` into the id and the decoded secret bytes.
fn parse_token(token: &str) -> Option<(&str, [u8; SECRET_BYTES])> {
    parse_id_secret(token, TOKEN_PREFIX)
}

/// Splits `<prefix><id>_<secret>` (API and refresh tokens) into its id and
/// decoded secret; `None` for anything malformed.
fn parse_id_secret<'t>(token: &'t str, prefix: &str) -> Option<(&'t str, [u8; SECRET_BYTES])> {
    let rest = token.strip_prefix(prefix)?;
    // The base64url secret may itself contain '_', so split by position.
    if rest.len() != ID_LEN + 1 + SECRET_LEN || !rest.is_ascii() {
        return None;
    }
    let (id, rest) = rest.split_at(ID_LEN);
    let secret = rest.strip_prefix('_')?;
    if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; SECRET_BYTES];
    // The engine rejects padding and non-canonical trailing bits, so each
    // secret has exactly one spelling.
    match URL_SAFE_NO_PAD.decode_slice(secret, &mut out) {
        Ok(SECRET_BYTES) => Some((id, out)),
        _ => None,
    }
}

fn validate_user_name(name: &str) -> Result<()> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "user name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ . @ -"
        )))
    }
}

// ---- files ------------------------------------------------------------------

/// Percent-encodes the characters that sqlx's SQLite URL parser treats
/// specially ('%' is decoded, '?' starts the parameters, '#' for safety).
fn encode_sqlite_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes URL percent-encoding in a SQLite path, as sqlx does.
fn decode_sqlite_path(path: &str) -> Result<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| StoreError::Invalid("SQLite path is not valid UTF-8 once decoded".into()))
}

/// Creates `dir` (and missing parents) with mode 0700; an existing directory
/// is left as it is.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    Ok(())
}

/// Creates `path` empty with mode 0600 unless it exists (SQLite gives its
/// -wal and -shm files the database file's mode).
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
