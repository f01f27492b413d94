//! Where sign-in results live between runs: the client registration and
//! tokens for one server URL, per issuer (credentials from one
//! authorization server are never offered to another).
//!
//! The record goes to the OS keychain (the `keyring` crate: macOS
//! Keychain, Windows Credential Manager, the Secret Service) when one is
//! reachable, else to a 0600 file in a 0700 directory:
//! `$HANGAR_CONNECT_DIR`, else `$XDG_CONFIG_HOME/hangar/connect`, else
//! `~/.config/hangar/connect`. `HANGAR_CONNECT_STORE=file` (or `keyring`)
//! forces one. The directory always holds the lock files: one sign-in per
//! server at a time across processes (`flock`, released by the kernel if
//! the holder dies).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::oauth::ClientInfo;

const KEYRING_SERVICE: &str = "hangar-connect";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("token store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keychain: {0}")]
    Keyring(String),
    #[error("no directory for the token store: set HANGAR_CONNECT_DIR or HOME")]
    NoDir,
    #[error("timed out waiting for another hangar connect to finish signing in")]
    LockTimeout,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Tokens from one issuer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Unix seconds: when the token endpoint gave them (to size the
    /// refresh margin to the token's lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
}

impl Tokens {
    /// Time to refresh: the access token expires within `margin`, or within
    /// a quarter of its lifetime when that is shorter (so a token living
    /// less than `margin` is not refreshed before every request).
    pub fn refresh_due(&self, margin: Duration) -> bool {
        let margin = match (self.issued_at, self.expires_at) {
            (Some(issued), Some(expires)) => {
                margin.min(Duration::from_secs(expires.saturating_sub(issued) / 4))
            }
            _ => margin,
        };
        self.expires_within(margin)
    }

    /// Expired, or expiring within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        match self.expires_at {
            Some(at) => now_secs().saturating_add(margin.as_secs()) >= at,
            None => false,
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one issuer gave us for this server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuerEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

/// Everything stored for one server URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub server_url: String,
    /// The issuer whose tokens are in use.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub issuers: BTreeMap<String, IssuerEntry>,
}

impl Record {
    pub fn current_tokens(&self) -> Option<&Tokens> {
        let issuer = self.issuer.as_ref()?;
        self.issuers.get(issuer)?.tokens.as_ref()
    }
}

/// Which backend holds the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Files,
    Keyring,
}

/// The store for one server URL.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    server_url: String,
    key: String,
    backend: Backend,
}

/// `$HANGAR_CONNECT_DIR`, else `$XDG_CONFIG_HOME/hangar/connect`, else
/// `$HOME/.config/hangar/connect`.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, StoreError> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = set("HANGAR_CONNECT_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = set("XDG_CONFIG_HOME") {
        return Ok(Path::new(&d).join("hangar").join("connect"));
    }
    let home = set("HOME").ok_or(StoreError::NoDir)?;
    Ok(Path::new(&home)
        .join(".config")
        .join("hangar")
        .join("connect"))
}

/// Hex SHA-256 of the server URL, shortened: the record's name.
pub fn key_of(server_url: &str) -> String {
    Sha256::digest(server_url.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// Opens the store for `server_url`, choosing the backend:
    /// `HANGAR_CONNECT_STORE` = `file` | `keyring`, else the keychain when it
    /// answers (within two seconds), else files.
    pub async fn open(
        dir: PathBuf,
        server_url: &str,
        choice: Option<&str>,
    ) -> Result<Store, StoreError> {
        ensure_dir(&dir)?;
        let key = key_of(server_url);
        let backend = match choice {
            Some("file") | Some("files") => Backend::Files,
            Some("keyring") => Backend::Keyring,
            _ => {
                if keyring_usable(server_url).await {
                    Backend::Keyring
                } else {
                    Backend::Files
                }
            }
        };
        tracing::debug!(?backend, "token store");
        Ok(Store {
            dir,
            server_url: server_url.to_owned(),
            key,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn file_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.key))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.key))
    }

    pub async fn load(&self) -> Result<Record, StoreError> {
        let text = match self.backend {
            Backend::Files => {
                let path = self.file_path();
                tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
                    Ok(t) => Ok(Some(t)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&path)(e)),
                })
                .await
                .map_err(|e| StoreError::Keyring(e.to_string()))??
            }
            Backend::Keyring => {
                let user = self.server_url.clone();
                tokio::task::spawn_blocking(move || {
                    let entry = keyring::Entry::new(KEYRING_SERVICE, &user)
                        .map_err(|e| StoreError::Keyring(e.to_string()))?;
                    match entry.get_password() {
                        Ok(t) => Ok(Some(t)),
                        Err(keyring::Error::NoEntry) => Ok(None),
                        Err(e) => Err(StoreError::Keyring(e.to_string())),
                    }
                })
                .await
                .map_err(|e| StoreError::Keyring(e.to_string()))??
            }
        };
        let record = text
            .and_then(|t| match serde_json::from_str::<Record>(&t) {
                Ok(r) if r.server_url == self.server_url => Some(r),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(
                        "the stored sign-in for {} is unreadable ({e}); ignoring it",
                        self.server_url
                    );
                    None
                }
            })
            .unwrap_or_else(|| Record {
                server_url: self.server_url.clone(),
                ..Record::default()
            });
        Ok(record)
    }

    pub async fn save(&self, record: &Record) -> Result<(), StoreError> {
        let text =
            serde_json::to_string_pretty(record).map_err(|e| StoreError::Keyring(e.to_string()))?;
        match self.backend {
            Backend::Files => {
                let path = self.file_path();
                tokio::task::spawn_blocking(move || write_private(&path, text.as_bytes()))
                    .await
                    .map_err(|e| StoreError::Keyring(e.to_string()))?
            }
            Backend::Keyring => {
                let user = self.server_url.clone();
                tokio::task::spawn_blocking(move || {
                    keyring::Entry::new(KEYRING_SERVICE, &user)
                        .and_then(|e| e.set_password(&text))
                        .map_err(|e| StoreError::Keyring(e.to_string()))
                })
                .await
                .map_err(|e| StoreError::Keyring(e.to_string()))?
            }
        }
    }

    /// Takes the sign-in lock for this server, waiting at most `timeout`.
    /// The lock is held until the returned guard is dropped (or the process
    /// dies: `flock` locks go with the file descriptor).
    pub async fn lock(&self, timeout: Duration) -> Result<SignInLock, StoreError> {
        let path = self.lock_path();
        let deadline = tokio::time::Instant::now() + timeout;
        let file = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode_private()
                    .open(&path)
                    .map_err(io(&path))
            })
            .await
            .map_err(|e| StoreError::Keyring(e.to_string()))??
        };
        // Poll with try_lock: a blocking flock could not be given up at the
        // deadline. Bounded: at most `timeout` / 50 ms rounds.
        loop {
            match fs2::FileExt::try_lock_exclusive(&file) {
                Ok(()) => return Ok(SignInLock { file }),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(11) => {}
                Err(e) => return Err(io(&path)(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::LockTimeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The held sign-in lock.
#[derive(Debug)]
pub struct SignInLock {
    file: File,
}

impl Drop for SignInLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for OpenOptions {
    #[cfg(unix)]
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
    #[cfg(not(unix))]
    fn mode_private(&mut self) -> &mut Self {
        self
    }
}

fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(io(dir))
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file and a rename, so a
/// reader never sees half a record and the file is never world-readable.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode_private()
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Whether the OS keychain answers. On Linux without a session bus there is
/// no Secret Service: files, without asking.
async fn keyring_usable(server_url: &str) -> bool {
    if cfg!(target_os = "linux") && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return false;
    }
    let user = server_url.to_owned();
    let probe = tokio::task::spawn_blocking(move || {
        keyring::Entry::new(KEYRING_SERVICE, &user).map(|e| match e.get_password() {
            Ok(_) | Err(keyring::Error::NoEntry) => true,
            Err(e) => {
                tracing::debug!("keychain not usable: {e}");
                false
            }
        })
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(Ok(true)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hangar-connect-store-{name}-{}-{}",
            std::process::id(),
            crate::oauth::random_token(6)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dir_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_dir(env(&[("HANGAR_CONNECT_DIR", "/x"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            default_dir(env(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/c/hangar/connect")
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/hangar/connect")
        );
        assert!(default_dir(env(&[])).is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn records_are_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let store = Store::open(dir.clone(), "http://127.0.0.1:1/mcp", Some("file"))
            .await
            .unwrap();
        assert_eq!(store.backend(), Backend::Files);
        let mut record = store.load().await.unwrap();
        assert_eq!(record.current_tokens(), None);
        record.issuer = Some("http://127.0.0.1:2".into());
        record.issuers.insert(
            "http://127.0.0.1:2".into(),
            IssuerEntry {
                client: None,
                tokens: Some(Tokens {
                    access_token: "t".into(),
                    ..Tokens::default()
                }),
            },
        );
        store.save(&record).await.unwrap();
        let mode = std::fs::metadata(store.file_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(store.load().await.unwrap(), record);
        // Another server's store does not see it.
        let other = Store::open(dir.clone(), "http://127.0.0.1:1/other", Some("file"))
            .await
            .unwrap();
        assert_eq!(other.load().await.unwrap().current_tokens(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_and_released() {
        let dir = temp_dir("lock");
        let store = Store::open(dir.clone(), "http://127.0.0.1:1/mcp", Some("file"))
            .await
            .unwrap();
        let held = store.lock(Duration::from_secs(1)).await.unwrap();
        assert!(matches!(
            store.lock(Duration::from_millis(200)).await,
            Err(StoreError::LockTimeout)
        ));
        drop(held);
        store.lock(Duration::from_secs(1)).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn expiry_margin() {
        let t = Tokens {
            access_token: "a".into(),
            expires_at: Some(now_secs() + 30),
            ..Tokens::default()
        };
        assert!(t.expires_within(Duration::from_secs(60)));
        assert!(!t.expires_within(Duration::from_secs(5)));
        let forever = Tokens {
            access_token: "a".into(),
            ..Tokens::default()
        };
        assert!(!forever.expires_within(Duration::from_secs(3600)));
        // A token living 8 s is refreshed 2 s before it expires, not at once.
        let short = Tokens {
            access_token: "a".into(),
            issued_at: Some(now_secs()),
            expires_at: Some(now_secs() + 8),
            ..Tokens::default()
        };
        assert!(short.expires_within(Duration::from_secs(60)));
        assert!(!short.refresh_due(Duration::from_secs(60)));
        let due = Tokens {
            issued_at: Some(now_secs() - 7),
            expires_at: Some(now_secs() + 1),
            ..short.clone()
        };
        assert!(due.refresh_due(Duration::from_secs(60)));
        assert!(t.refresh_due(Duration::from_secs(60)));
    }
}
