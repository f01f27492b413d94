//! Every test body runs against both backends: SQLite in a fresh temp dir and
//! the PostgreSQL at `HANGAR_STORE_TEST_PG` (default
//! postgres://postgres@127.0.0.1:5432/test), in a database created for the
//! run and dropped after it. `HANGAR_STORE_TEST_PG=skip` runs SQLite only.

use super::*;
use std::future::Future;
use std::path::PathBuf;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What a test body gets: an open store and the means to reopen it.
struct Ctx {
    store: Store,
    /// Reopens the same database.
    url: String,
    /// The SQLite data dir (None on PostgreSQL).
    data_dir: Option<PathBuf>,
}

impl Ctx {
    fn backend(&self) -> Backend {
        self.store.backend()
    }
}

/// Runs `body` once on SQLite, then once on PostgreSQL.
async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // SQLite in a temp dir, through open_data_dir as the router does.
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let store = Store::open_data_dir(&data_dir)
        .await
        .expect("open SQLite store");
    assert_eq!(store.backend(), Backend::Sqlite);
    let url = format!("sqlite://{}", data_dir.join(DB_FILE_NAME).display());
    eprintln!("--- SQLite: {url}");
    run_body(body(Ctx {
        store,
        url,
        data_dir: Some(data_dir),
    }))
    .await;
    drop(tmp);

    // PostgreSQL in a database of its own.
    let Some(pg) = PgTestDb::create().await else {
        eprintln!("--- PostgreSQL skipped (HANGAR_STORE_TEST_PG=skip)");
        return;
    };
    eprintln!("--- PostgreSQL: database {}", pg.name);
    let outcome = match Store::open(&pg.url).await {
        Ok(store) => {
            assert_eq!(store.backend(), Backend::Postgres);
            let ctx = Ctx {
                store,
                url: pg.url.clone(),
                data_dir: None,
            };
            tokio::spawn(body(ctx)).await
        }
        Err(e) => {
            pg.drop_db().await;
            panic!("open PostgreSQL store: {e}");
        }
    };
    pg.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs a body on its own task so that a panic is reported like any other.
async fn run_body<Fut: Future<Output = ()> + Send + 'static>(fut: Fut) {
    if let Err(e) = tokio::spawn(fut).await {
        std::panic::resume_unwind(e.into_panic());
    }
}

struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDb {
    async fn create() -> Option<PgTestDb> {
        let admin_url =
            std::env::var("HANGAR_STORE_TEST_PG").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        if admin_url == "skip" {
            return None;
        }
        sqlx::any::install_default_drivers();
        let name = format!("hangar_store_test_{}", new_id());
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("connect to {admin_url} (set HANGAR_STORE_TEST_PG=skip to skip): {e}")
            });
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        sqlx::Connection::close(conn).await.expect("close");
        // Swap the last path segment (the database) for the new one.
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (admin_url.as_str(), None),
        };
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Some(PgTestDb {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_db(&self) {
        let conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin_url).await;
        match conn {
            Ok(mut conn) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = sqlx::raw_sql(&sql).execute(&mut conn).await {
                    eprintln!("dropping test database {}: {e}", self.name);
                }
                let _ = sqlx::Connection::close(conn).await;
            }
            Err(e) => eprintln!("dropping test database {}: {e}", self.name),
        }
    }
}

fn foreign_secret_token(id: &str) -> String {
    format!("{TOKEN_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))
}

#[tokio::test]
async fn users_add_duplicate_list_remove() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s
            .add_user("alice", Some("$argon2id$fake"), true)
            .await
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.admin);
        assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$fake"));
        assert_eq!(alice.id.len(), 32);
        assert!((now() - alice.created_at).abs() <= 5);
        let bob = s
            .add_user("bob.smith@example-1_x", None, false)
            .await
            .unwrap();
        assert!(!bob.admin);
        assert_eq!(bob.password_hash, None);

        let dup = s.add_user("alice", None, false).await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

        let long = "x".repeat(65);
        for bad in ["", "a b", "é", "a/b", "a;drop", long.as_str()] {
            let r = s.add_user(bad, None, false).await;
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
        }
        s.add_user(&"y".repeat(64), None, false).await.unwrap();

        assert_eq!(s.user_by_name("alice").await.unwrap(), Some(alice.clone()));
        assert_eq!(s.user_by_id(&bob.id).await.unwrap(), Some(bob.clone()));
        assert_eq!(s.user_by_name("nobody").await.unwrap(), None);
        assert_eq!(s.user_by_id("0000").await.unwrap(), None);

        let names: Vec<String> = s
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["alice", "bob.smith@example-1_x", &"y".repeat(64)]);

        assert!(s.remove_user("bob.smith@example-1_x").await.unwrap());
        assert!(!s.remove_user("bob.smith@example-1_x").await.unwrap());
        assert_eq!(s.user_by_id(&bob.id).await.unwrap(), None);
        assert_eq!(s.list_users().await.unwrap().len(), 2);
        // The name is free again.
        s.add_user("bob.smith@example-1_x", None, false)
            .await
            .unwrap();
        // Debug output does not show the password hash.
        assert!(!format!("{alice:?}").contains("argon2"));
    })
    .await;
}

#[tokio::test]
async fn tokens_verify_reject_revoke() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, true).await.unwrap();
        let bob = s.add_user("bob", None, false).await.unwrap();

        let (info, token) = s.create_token(&alice.id, None).await.unwrap();
        assert_eq!(info.user_id, alice.id);
        assert!(!info.revoked);
        assert_eq!(info.last_used_at, None);
        assert_eq!(token.len(), 4 + 32 + 1 + 43);
        assert!(token.starts_with(&format!("hgr_{}_", info.id)));

        let (user, verified) = s.verify_token(&token).await.unwrap().expect("valid token");
        assert_eq!(user, alice);
        assert_eq!(verified.id, info.id);
        let used = verified.last_used_at.expect("last_used_at set");
        assert!((now() - used).abs() <= 5);
        let listed = s.list_tokens(Some(&alice.id)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].last_used_at, Some(used));

        // Wrong secret for a real id, unknown id, and malformed tokens.
        assert_eq!(
            s.verify_token(&foreign_secret_token(&info.id))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.verify_token(&foreign_secret_token(&new_id()))
                .await
                .unwrap(),
            None
        );
        let upper = token.replacen(&info.id, &info.id.to_uppercase(), 1);
        let garbage = [
            String::new(),
            "hgr_".into(),
            "hgr_abc_def".into(),
            format!("Bearer {token}"),
            format!("{token}x"),
            token[..token.len() - 1].to_string(),
            token.replacen("hgr_", "hgx_", 1),
            token.replacen(&format!("{}_", info.id), &format!("{}-", info.id), 1),
            format!("{}=", &token[..token.len() - 1]),
            format!("{}é", &token[..token.len() - 2]),
            "hgr_' OR 1=1 --".into(),
        ];
        for bad in garbage.iter().chain([&upper]) {
            assert_eq!(s.verify_token(bad).await.unwrap(), None, "{bad:?}");
        }

        // Expiry: now >= expires_at is expired.
        let (_, expired) = s.create_token(&alice.id, Some(now() - 1)).await.unwrap();
        assert_eq!(s.verify_token(&expired).await.unwrap(), None);
        let (_, expiring_now) = s.create_token(&alice.id, Some(now())).await.unwrap();
        assert_eq!(s.verify_token(&expiring_now).await.unwrap(), None);
        let (later_info, later) = s.create_token(&bob.id, Some(now() + 3600)).await.unwrap();
        let (user, _) = s
            .verify_token(&later)
            .await
            .unwrap()
            .expect("not expired yet");
        assert_eq!(user, bob);

        // Revocation.
        assert!(s.revoke_token(&later_info.id).await.unwrap());
        assert_eq!(s.verify_token(&later).await.unwrap(), None);
        assert!(!s.revoke_token("nope").await.unwrap());
        let bobs = s.list_tokens(Some(&bob.id)).await.unwrap();
        assert_eq!(bobs.len(), 1);
        assert!(bobs[0].revoked);
        assert_eq!(bobs[0].expires_at, later_info.expires_at);
        // The first token still works.
        assert!(s.verify_token(&token).await.unwrap().is_some());

        assert_eq!(s.list_tokens(None).await.unwrap().len(), 4);
        assert_eq!(s.list_tokens(Some("nobody")).await.unwrap().len(), 0);

        let r = s.create_token("no-such-user", None).await;
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn removing_a_user_invalidates_their_tokens() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let bob = s.add_user("bob", None, false).await.unwrap();
        let (_, alice_token) = s.create_token(&alice.id, None).await.unwrap();
        let (_, bob_token) = s.create_token(&bob.id, None).await.unwrap();
        assert!(s.verify_token(&bob_token).await.unwrap().is_some());

        assert!(s.remove_user("bob").await.unwrap());
        assert_eq!(s.verify_token(&bob_token).await.unwrap(), None);
        assert!(s.list_tokens(Some(&bob.id)).await.unwrap().is_empty());
        // A new user with the same name gets a new id: the old token stays dead.
        s.add_user("bob", None, false).await.unwrap();
        assert_eq!(s.verify_token(&bob_token).await.unwrap(), None);
        // Other users are untouched.
        assert!(s.verify_token(&alice_token).await.unwrap().is_some());
        assert_eq!(s.list_tokens(None).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn instances_upsert_list_remove() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let shared = Instance {
            id: "inst-shared".into(),
            server: "everything".into(),
            user_id: None,
            state: "starting".into(),
            pid: None,
            address: None,
            started_at: None,
            last_used_at: None,
        };
        let mut mine = Instance {
            id: "inst-alice".into(),
            server: "echo".into(),
            user_id: Some("user-alice".into()),
            state: "running".into(),
            pid: Some(4242),
            address: Some("127.0.0.1:40001".into()),
            started_at: Some(1_700_000_000),
            last_used_at: Some(1_700_000_100),
        };
        s.upsert_instance(&shared).await.unwrap();
        s.upsert_instance(&mine).await.unwrap();
        assert_eq!(
            s.list_instances().await.unwrap(),
            [mine.clone(), shared.clone()]
        );

        mine.state = "crashed".into();
        mine.pid = None;
        mine.address = None;
        mine.last_used_at = Some(i64::MAX);
        s.upsert_instance(&mine).await.unwrap();
        assert_eq!(
            s.list_instances().await.unwrap(),
            [mine.clone(), shared.clone()]
        );

        let mut bad = shared.clone();
        bad.state = "zombie".into();
        let r = s.upsert_instance(&bad).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        bad.state = "stopped".into();
        bad.id = String::new();
        let r = s.upsert_instance(&bad).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");

        assert!(s.remove_instance("inst-alice").await.unwrap());
        assert!(!s.remove_instance("inst-alice").await.unwrap());
        assert_eq!(s.list_instances().await.unwrap(), [shared]);
    })
    .await;
}

#[tokio::test]
async fn audit_write_and_read() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let entry = |at: i64, tool: &str, outcome: &str| AuditEntry {
            at,
            user_id: (outcome != "error").then(|| "user-1".to_string()),
            server: "everything".into(),
            tool: tool.into(),
            outcome: outcome.into(),
            duration_ms: at % 1000,
        };
        let a = entry(1_000, "echo", "ok");
        let b = entry(2_000, "add", "error");
        let c = entry(2_000, "fail", "tool_error"); // same second as b
        let d = entry(1_500, "late", "ok"); // written last, but older
        for e in [&a, &b, &c, &d] {
            s.audit(e).await.unwrap();
        }
        assert_eq!(s.recent_audit(2).await.unwrap(), [c.clone(), b.clone()]);
        assert_eq!(s.recent_audit(100).await.unwrap(), [c, b, d, a]);
        assert!(s.recent_audit(0).await.unwrap().is_empty());
        assert!(s.recent_audit(-1).await.unwrap().is_empty());

        let r = s.audit(&entry(3_000, "x", "maybe")).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        assert_eq!(s.recent_audit(100).await.unwrap().len(), 4);
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_everything() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", Some("hash"), true).await.unwrap();
        let (info, token) = s.create_token(&alice.id, None).await.unwrap();
        let (revoked_info, revoked) = s.create_token(&alice.id, None).await.unwrap();
        s.revoke_token(&revoked_info.id).await.unwrap();
        let inst = Instance {
            id: "i1".into(),
            server: "everything".into(),
            user_id: Some(alice.id.clone()),
            state: "running".into(),
            pid: Some(1),
            address: Some("unix:/run/x.sock".into()),
            started_at: Some(now()),
            last_used_at: None,
        };
        s.upsert_instance(&inst).await.unwrap();
        let entry = AuditEntry {
            at: now(),
            user_id: Some(alice.id.clone()),
            server: "everything".into(),
            tool: "echo".into(),
            outcome: "ok".into(),
            duration_ms: 12,
        };
        s.audit(&entry).await.unwrap();
        s.close().await;
        assert!(s.list_users().await.is_err(), "closed store still answers");

        // Reopen by URL (runs the migrations again, which must be a no-op)…
        let reopened = Store::open(&ctx.url).await.unwrap();
        // …and for SQLite also the way the router does, by data dir.
        let reopened = match &ctx.data_dir {
            Some(dir) => {
                reopened.close().await;
                Store::open_data_dir(dir).await.unwrap()
            }
            None => reopened,
        };
        assert_eq!(reopened.backend(), ctx.backend());
        assert_eq!(
            reopened.list_users().await.unwrap(),
            std::slice::from_ref(&alice)
        );
        let (user, verified) = reopened.verify_token(&token).await.unwrap().unwrap();
        assert_eq!(user, alice);
        assert_eq!(verified.id, info.id);
        assert_eq!(reopened.verify_token(&revoked).await.unwrap(), None);
        assert_eq!(reopened.list_tokens(None).await.unwrap().len(), 2);
        assert_eq!(reopened.list_instances().await.unwrap(), [inst]);
        assert_eq!(reopened.recent_audit(10).await.unwrap(), [entry]);
        reopened.close().await;
    })
    .await;
}

#[tokio::test]
async fn token_secret_is_never_stored() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let mut secrets = Vec::new();
        for _ in 0..3 {
            let (info, token) = s.create_token(&alice.id, None).await.unwrap();
            assert!(s.verify_token(&token).await.unwrap().is_some());
            let secret = token[token.len() - 43..].to_string();
            let raw = URL_SAFE_NO_PAD.decode(&secret).unwrap();
            secrets.push((info, token, secret, raw));
        }

        // What the table holds: the id and the SHA-256 of the secret only.
        for (info, token, secret, raw) in &secrets {
            let row = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
                .bind(&info.id)
                .fetch_one(&s.pool)
                .await
                .unwrap();
            let hash: String = row.try_get("secret_hash").unwrap();
            assert_eq!(hash, hash_secret(raw));
            for col in ["id", "user_id", "secret_hash"] {
                let v: String = row.try_get(col).unwrap();
                assert!(!v.contains(secret.as_str()) && !v.contains(token.as_str()));
            }
        }

        // SQLite: no trace in the database file or its WAL, with the store
        // open and after it has been closed (checkpointed).
        if let Some(dir) = &ctx.data_dir {
            let scan = |when: &str| {
                let mut scanned = 0;
                for name in ["hangar.db", "hangar.db-wal", "hangar.db-shm"] {
                    let Ok(bytes) = std::fs::read(dir.join(name)) else {
                        continue;
                    };
                    scanned += bytes.len();
                    for (_, token, secret, raw) in &secrets {
                        for needle in [token.as_bytes(), secret.as_bytes(), raw.as_slice()] {
                            assert!(
                                !bytes.windows(needle.len()).any(|w| w == needle),
                                "{when}: secret found in {name}"
                            );
                        }
                    }
                }
                assert!(scanned > 0, "{when}: nothing to scan");
            };
            scan("open");
            s.close().await;
            scan("closed");
            // The scan does see the token rows: their hashes are there (in the
            // database file, or in its WAL if no checkpoint has run yet).
            let mut db = std::fs::read(dir.join("hangar.db")).unwrap();
            db.extend(std::fs::read(dir.join("hangar.db-wal")).unwrap_or_default());
            for (_, _, _, raw) in &secrets {
                let hash = hash_secret(raw);
                assert!(
                    db.windows(hash.len()).any(|w| w == hash.as_bytes()),
                    "the scan should find the stored hash"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_use() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let (_, token) = s.create_token(&alice.id, None).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s = s.clone();
            let token = token.clone();
            let user_id = alice.id.clone();
            tasks.push(tokio::spawn(async move {
                for j in 0..5 {
                    assert!(s.verify_token(&token).await.unwrap().is_some());
                    s.audit(&AuditEntry {
                        at: now(),
                        user_id: Some(user_id.clone()),
                        server: format!("srv{i}"),
                        tool: format!("tool{j}"),
                        outcome: "ok".into(),
                        duration_ms: 1,
                    })
                    .await
                    .unwrap();
                    s.upsert_instance(&Instance {
                        id: format!("inst{i}"),
                        server: format!("srv{i}"),
                        user_id: None,
                        state: "running".into(),
                        pid: Some(j),
                        address: None,
                        started_at: None,
                        last_used_at: Some(now()),
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.recent_audit(1000).await.unwrap().len(), 80);
        assert_eq!(s.list_instances().await.unwrap().len(), 16);
    })
    .await;
}

#[tokio::test]
async fn sqlite_files_are_private_and_wal() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing parents, and characters that sqlx's URL parser treats specially.
    let dir = tmp.path().join("nested").join("da?ta %41 #1");
    let store = Store::open_data_dir(&dir).await.unwrap();
    store.add_user("alice", None, false).await.unwrap();
    let db = dir.join(DB_FILE_NAME);
    assert!(db.is_file(), "database at {db:?}");

    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(busy, 5000);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "data dir");
        assert_eq!(mode(&db), 0o600, "database file");
        for side in ["hangar.db-wal", "hangar.db-shm"] {
            let p = dir.join(side);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{side}");
            }
        }
    }
    store.close().await;

    // A plain sqlite:// URL also creates a missing file, owner-only.
    let plain = tmp.path().join("plain.db");
    let store = Store::open(&format!("sqlite://{}", plain.display()))
        .await
        .unwrap();
    store.add_user("bob", None, false).await.unwrap();
    store.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // In-memory databases work too (one connection, kept).
    let mem = Store::open("sqlite::memory:").await.unwrap();
    mem.add_user("carol", None, false).await.unwrap();
    assert_eq!(mem.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unsupported_urls_are_rejected() {
    for url in ["mysql://root@localhost/x", "", "file:///tmp/x.db"] {
        let r = Store::open(url).await;
        assert!(
            matches!(r, Err(StoreError::UnsupportedUrl(_))),
            "{url}: {r:?}"
        );
    }
}

#[test]
fn token_parsing() {
    let id = new_id();
    let secret = [0xabu8; 32];
    let token = format!("hgr_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    assert_eq!(parse_token(&token), Some((id.as_str(), secret)));
    // A secret containing '_' and '-' still parses (split by position).
    let secret = [0xffu8; 32];
    let token = format!("hgr_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    assert!(token[37..].contains('_'));
    assert_eq!(parse_token(&token), Some((id.as_str(), secret)));
    // Non-canonical trailing bits are rejected.
    let mut bad = token.clone();
    bad.pop();
    bad.push('_');
    assert_eq!(parse_token(&bad), None);
}

#[test]
fn sqlite_path_encoding_round_trips() {
    for p in ["/tmp/a", "/tmp/da?ta %41 #1/h.db", "/x%y/z"] {
        assert_eq!(decode_sqlite_path(&encode_sqlite_path(p)).unwrap(), p);
    }
}

// ---- OAuth records ------------------------------------------------------------

fn new_code(client_id: &str, user_id: &str, expires_at: i64) -> AuthorizationCode {
    AuthorizationCode {
        client_id: client_id.into(),
        user_id: user_id.into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        resource: "http://127.0.0.1:8080/mcp/everything".into(),
        scope: "mcp".into(),
        code_challenge: "c".repeat(43),
        nonce: None,
        expires_at,
    }
}

#[tokio::test]
async fn codes_are_spent_once_and_a_replay_revokes_their_grant() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let code = s
            .create_code(&new_code("c1", &alice.id, now() + 60))
            .await
            .unwrap();
        let CodeRedemption::Fresh(record) = s.redeem_code(&code).await.unwrap() else {
            panic!("first use is fresh")
        };
        assert_eq!(record.client_id, "c1");
        let grant = s
            .create_grant(&alice.id, "c1", Some("Client"), &record.resource, "mcp")
            .await
            .unwrap();
        s.attach_code_grant(&code, &grant.id).await.unwrap();
        assert_eq!(
            s.redeem_code(&code).await.unwrap(),
            CodeRedemption::Replayed
        );
        assert!(s.grant(&grant.id).await.unwrap().unwrap().revoked);
        // Expired, unknown and malformed codes.
        let old = s
            .create_code(&new_code("c1", &alice.id, now() - 1))
            .await
            .unwrap();
        assert_eq!(s.redeem_code(&old).await.unwrap(), CodeRedemption::Invalid);
        assert_eq!(
            s.redeem_code("hgc_nope").await.unwrap(),
            CodeRedemption::Invalid
        );
        let unknown = format!("hgc_{}", "A".repeat(43));
        assert_eq!(
            s.redeem_code(&unknown).await.unwrap(),
            CodeRedemption::Invalid
        );
        // Only a hash is stored.
        let stored: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM oauth_codes")
            .fetch_all(&s.pool)
            .await
            .unwrap();
        assert!(stored
            .iter()
            .all(|h| !code.contains(h.as_str()) && h.len() == 64));
    })
    .await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_grant() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let grant = s
            .create_grant(&alice.id, "c1", None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        let first = s
            .issue_refresh_token(&grant.id, now() + 3600)
            .await
            .unwrap();
        assert!(first.starts_with(REFRESH_TOKEN_PREFIX));
        let Refresh::Rotated {
            refresh_token: second,
            grant: g,
        } = s.rotate_refresh_token(&first).await.unwrap()
        else {
            panic!("a fresh token rotates")
        };
        assert_eq!(g.id, grant.id);
        assert_ne!(second, first);
        let Refresh::Rotated {
            refresh_token: third,
            ..
        } = s.rotate_refresh_token(&second).await.unwrap()
        else {
            panic!("its successor rotates")
        };
        // A spent one again after its successor was used: theft, so the
        // grant and all its tokens end.
        assert_eq!(
            s.rotate_refresh_token(&first).await.unwrap(),
            Refresh::Reused {
                grant_id: grant.id.clone()
            }
        );
        assert_eq!(
            s.rotate_refresh_token(&third).await.unwrap(),
            Refresh::Invalid
        );
        assert!(s.list_grants(&alice.id).await.unwrap().is_empty());
        // A forged secret with a real id is invalid, not a reuse.
        let grant2 = s
            .create_grant(&alice.id, "c1", None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        let t = s
            .issue_refresh_token(&grant2.id, now() + 3600)
            .await
            .unwrap();
        let forged = format!("{}{}", &t[..t.len() - 43], "B".repeat(43));
        assert_eq!(
            s.rotate_refresh_token(&forged).await.unwrap(),
            Refresh::Invalid
        );
        assert!(!s.grant(&grant2.id).await.unwrap().unwrap().revoked);
        // Revocation (RFC 7009) by another client leaves the grant alone;
        // by its own client, ends it.
        assert_eq!(s.revoke_refresh_token(&t, "c2").await.unwrap(), None);
        assert!(!s.grant(&grant2.id).await.unwrap().unwrap().revoked);
        let revoked = s.revoke_refresh_token(&t, "c1").await.unwrap().unwrap();
        assert_eq!(revoked.id, grant2.id);
        assert_eq!(s.rotate_refresh_token(&t).await.unwrap(), Refresh::Invalid);
        // Expired tokens do not rotate.
        let grant3 = s
            .create_grant(&alice.id, "c1", None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        let old = s.issue_refresh_token(&grant3.id, now() - 1).await.unwrap();
        assert_eq!(
            s.rotate_refresh_token(&old).await.unwrap(),
            Refresh::Invalid
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_have_one_winner() {
    each_backend(|ctx| async move {
        let s = ctx.store.clone();
        let alice = s.add_user("alice", None, false).await.unwrap();
        let grant = s
            .create_grant(&alice.id, "c1", None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        let token = s
            .issue_refresh_token(&grant.id, now() + 3600)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            s.rotate_refresh_token(&token),
            s.rotate_refresh_token(&token)
        );
        // The second is taken for a retry (it waits for the first to commit,
        // then finds its successor unused): both answer, and only the
        // tokens of the last answer stay valid, so there is one chain.
        let issued: Vec<String> = [a.unwrap(), b.unwrap()]
            .into_iter()
            .map(|o| match o {
                Refresh::Rotated { refresh_token, .. } => refresh_token,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut valid = 0;
        let mut reused = 0;
        for token in &issued {
            match s.rotate_refresh_token(token).await.unwrap() {
                Refresh::Rotated { .. } => valid += 1,
                Refresh::Reused { .. } => reused += 1,
                Refresh::Invalid => {}
            }
        }
        assert!(valid <= 1, "{issued:?}");
        assert!(valid + reused >= 1);
    })
    .await;
}

/// Found by scripts/soak.sh: a client whose refresh answer was lost (the
/// router restarted, PostgreSQL stopped between spending the token and
/// answering) presented the same token again and lost its grant as if the
/// token had been stolen. A retry within the grace, before the successor is
/// used, gets new tokens; the superseded successor then counts as stolen.
#[tokio::test]
async fn a_refresh_retried_after_a_lost_answer_keeps_the_grant() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let alice = s.add_user("alice", None, false).await.unwrap();
        let grant = s
            .create_grant(&alice.id, "c1", None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        let first = s
            .issue_refresh_token(&grant.id, now() + 3600)
            .await
            .unwrap();
        let Refresh::Rotated {
            refresh_token: lost,
            ..
        } = s.rotate_refresh_token(&first).await.unwrap()
        else {
            panic!("a fresh token rotates")
        };
        // The answer carrying `lost` never reached the client: it retries.
        let Refresh::Rotated {
            refresh_token: retried,
            ..
        } = s.rotate_refresh_token(&first).await.unwrap()
        else {
            panic!("a retry within the grace rotates")
        };
        assert!(!s.grant(&grant.id).await.unwrap().unwrap().revoked);
        let Refresh::Rotated { .. } = s.rotate_refresh_token(&retried).await.unwrap() else {
            panic!("the retry's token works")
        };
        // The lost answer's token, if it turns up, is a stolen copy.
        assert_eq!(
            s.rotate_refresh_token(&lost).await.unwrap(),
            Refresh::Reused {
                grant_id: grant.id.clone()
            }
        );
        assert!(s.grant(&grant.id).await.unwrap().unwrap().revoked);
    })
    .await;
}

#[tokio::test]
async fn clients_sessions_and_upstream_identities() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        let (public, secret) = s
            .register_client(&NewClient {
                kind: "dcr".into(),
                name: Some("Public".into()),
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                token_endpoint_auth_method: "none".into(),
                application_type: "native".into(),
                metadata: "{}".into(),
            })
            .await
            .unwrap();
        assert!(secret.is_none() && !public.has_secret);
        let (conf, secret) = s
            .register_client(&NewClient {
                kind: "static".into(),
                name: None,
                redirect_uris: vec!["https://app.example/cb".into()],
                token_endpoint_auth_method: "client_secret_basic".into(),
                application_type: "web".into(),
                metadata: "{}".into(),
            })
            .await
            .unwrap();
        let secret = secret.expect("a confidential client gets a secret");
        assert!(s.verify_client_secret(&conf.id, &secret).await.unwrap());
        assert!(!s
            .verify_client_secret(&conf.id, "hgcs_wrong")
            .await
            .unwrap());
        assert!(!s.verify_client_secret(&public.id, &secret).await.unwrap());
        assert_eq!(
            s.client(&conf.id).await.unwrap().unwrap().redirect_uris,
            vec!["https://app.example/cb"]
        );
        assert_eq!(s.list_clients().await.unwrap().len(), 2);

        let alice = s.add_user("alice", None, false).await.unwrap();
        let cookie = s
            .create_browser_session(&alice.id, now() + 60)
            .await
            .unwrap();
        assert_eq!(
            s.browser_session_user(&cookie).await.unwrap().unwrap().id,
            alice.id
        );
        assert!(s.browser_session_user("garbage").await.unwrap().is_none());
        s.end_browser_session(&cookie).await.unwrap();
        assert!(s.browser_session_user(&cookie).await.unwrap().is_none());
        let stale = s
            .create_browser_session(&alice.id, now() - 1)
            .await
            .unwrap();
        assert!(s.browser_session_user(&stale).await.unwrap().is_none());

        s.set_user_email(&alice.id, Some("Alice@Example.test"))
            .await
            .unwrap();
        assert_eq!(
            s.user_by_email("alice@example.test")
                .await
                .unwrap()
                .unwrap()
                .id,
            alice.id
        );
        s.link_external("corp", "sub-1", &alice.id, Some("alice@example.test"))
            .await
            .unwrap();
        s.link_external("corp", "sub-1", &alice.id, None)
            .await
            .unwrap();
        assert_eq!(
            s.external_user("corp", "sub-1").await.unwrap().unwrap().id,
            alice.id
        );
        assert!(s.external_user("other", "sub-1").await.unwrap().is_none());

        assert_eq!(s.count_clients("dcr").await.unwrap(), 1);
        let sessions = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM browser_sessions")
                .fetch_one(&s.pool)
                .await
                .unwrap()
        };
        assert_eq!(sessions().await, 1, "the expired session is still stored");
        assert!(s.purge_expired().await.unwrap() >= 1);
        assert_eq!(sessions().await, 0, "purged");
        // Removing a client revokes its grants.
        let g = s
            .create_grant(&alice.id, &conf.id, None, "http://x/mcp/a", "mcp")
            .await
            .unwrap();
        assert!(s.remove_client(&conf.id).await.unwrap());
        assert!(s.grant(&g.id).await.unwrap().unwrap().revoked);
    })
    .await;
}

#[tokio::test]
async fn audit_batches_keep_every_record_in_order() {
    each_backend(|ctx| async move {
        let s = &ctx.store;
        // More than one multi-row statement's worth, and not a multiple of it.
        let entries: Vec<AuditEntry> = (0..250)
            .map(|i| AuditEntry {
                at: now(),
                user_id: (i % 2 == 0).then(|| format!("u{i}")),
                server: "everything".into(),
                tool: format!("tool{i}"),
                outcome: AUDIT_OUTCOMES[i % AUDIT_OUTCOMES.len()].into(),
                duration_ms: i as i64,
            })
            .collect();
        s.audit_many(&entries).await.unwrap();
        let mut back = s.recent_audit(1000).await.unwrap();
        back.reverse();
        assert_eq!(back, entries);
        let mut bad = entries[0].clone();
        bad.outcome = "maybe".into();
        assert!(s.audit_many(&[entries[1].clone(), bad]).await.is_err());
        assert_eq!(
            s.recent_audit(1000).await.unwrap().len(),
            250,
            "all or nothing"
        );
        s.audit_many(&[]).await.unwrap();
    })
    .await;
}
