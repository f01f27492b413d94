//! The authorization server's signing keys: Ed25519, one file each under
//! `<data_dir>/oauth-keys/`, named `<created>-<kid>.key`.
//!
//! The newest key signs; every key in the directory verifies and is
//! published in the JWKS. Rotating (`hangar oauth rotate-key`) adds a new
//! key and keeps the previous one, so tokens signed before the rotation stay
//! valid until they expire: nobody is logged out. Routers notice a rotation
//! by the directory's modification time, checked at most once a second.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

/// How many keys a rotation keeps: the new one and the one before it.
pub const KEYS_KEPT: usize = 2;
/// How often the directory is checked for a rotation.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing keys in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {0} is malformed")]
    Malformed(String),
}

/// One signing key.
pub struct Key {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key, base64url (the JWK's `x`).
    pub public: String,
}

/// The keys on disk, newest first.
struct Loaded {
    keys: Vec<Arc<Key>>,
    stamp: Option<SystemTime>,
    checked: Instant,
}

pub struct KeySet {
    dir: PathBuf,
    loaded: Mutex<Loaded>,
}

impl KeySet {
    /// Loads the keys in `dir`, creating the directory and a first key if
    /// there are none.
    pub fn open(dir: &Path) -> Result<KeySet, KeyError> {
        create_dir(dir)?;
        if list(dir)?.is_empty() {
            generate(dir)?;
        }
        let keys = load(dir)?;
        Ok(KeySet {
            dir: dir.to_owned(),
            loaded: Mutex::new(Loaded {
                keys,
                stamp: stamp(dir),
                checked: Instant::now(),
            }),
        })
    }

    fn keys(&self) -> Vec<Arc<Key>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = stamp(&self.dir);
            if now != loaded.stamp {
                match load(&self.dir) {
                    Ok(keys) if !keys.is_empty() => {
                        loaded.keys = keys;
                        loaded.stamp = now;
                    }
                    Ok(_) => tracing::error!("no signing keys left in {}", self.dir.display()),
                    Err(e) => tracing::error!("reloading signing keys: {e}"),
                }
            }
        }
        loaded.keys.clone()
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> Arc<Key> {
        // `open` guarantees at least one key and a reload never empties it.
        self.keys().swap_remove(0)
    }

    pub fn by_kid(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys().into_iter().find(|k| k.kid == kid)
    }

    /// RFC 7517 JSON Web Key Set of every verifying key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys()
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": k.kid, "x": k.public,
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// Adds a new signing key and removes all but the newest [`KEYS_KEPT`].
/// Returns the new key's id.
pub fn rotate(dir: &Path) -> Result<String, KeyError> {
    create_dir(dir)?;
    let kid = generate(dir)?;
    for old in list(dir)?.into_iter().skip(KEYS_KEPT) {
        std::fs::remove_file(&old).map_err(io_err(&old))?;
    }
    Ok(kid)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

fn stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
}

/// Key files, newest first (names start with a zero-padded creation time).
fn list(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    files.sort();
    files.reverse();
    Ok(files)
}

fn load(dir: &Path) -> Result<Vec<Arc<Key>>, KeyError> {
    list(dir)?
        .iter()
        .map(|path| load_key(path).map(Arc::new))
        .collect()
}

fn load_key(path: &Path) -> Result<Key, KeyError> {
    let name = path.display().to_string();
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split_once('-'))
        .map(|(_, kid)| kid.to_owned())
        .ok_or_else(|| KeyError::Malformed(name.clone()))?;
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Malformed(name.clone()))?;
    let signing = SigningKey::from_bytes(&seed);
    let der = signing
        .to_pkcs8_der()
        .map_err(|_| KeyError::Malformed(name.clone()))?;
    let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    let decoding =
        DecodingKey::from_ed_components(&public).map_err(|_| KeyError::Malformed(name))?;
    Ok(Key {
        kid,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding,
        public,
    })
}

/// Writes a new key file (mode 0600) and returns its kid.
fn generate(dir: &Path) -> Result<String, KeyError> {
    let seed: [u8; 32] = rand::random();
    let kid_bytes: [u8; 9] = rand::random();
    let kid = URL_SAFE_NO_PAD.encode(kid_bytes);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("{created:020}-{kid}.key"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(URL_SAFE_NO_PAD.encode(seed).as_bytes()))
        .map_err(io_err(&path))?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_and_drops_older_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let set = KeySet::open(&dir).unwrap();
        let first = set.current().kid.clone();
        let second = rotate(&dir).unwrap();
        let third = rotate(&dir).unwrap();
        let kids: Vec<String> = load(&dir).unwrap().iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![third.clone(), second]);
        assert!(!kids.contains(&first));
        #[cfg(unix)]
        for f in list(&dir).unwrap() {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
