//! Identity assertions: how an instance learns who is calling.
//!
//! The router never forwards a client's token to an instance. Instead it
//! signs a short-lived JWT (EdDSA) naming the user, the server and the
//! instance, sent in the `Hangar-Identity` header. Instances (`hangar wrap`)
//! hold only the public key, so a compromised server process cannot mint
//! assertions for anyone else; the audience names the instance, so an
//! assertion for one instance is refused by every other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The HTTP header carrying the assertion.
pub const HEADER: &str = "hangar-identity";
const ISSUER: &str = "hangar-router";
/// Assertions live this long.
const TTL_SECS: u64 = 60;
/// The router reuses an assertion this long (so it is always valid for at
/// least `TTL_SECS - REUSE` more), sparing an Ed25519 signature per request.
const REUSE: Duration = Duration::from_secs(20);
/// An instance remembers a verified assertion this long (less than what is
/// left of its life when the router last hands it out), sparing a
/// signature check per request.
const REMEMBER: Duration = Duration::from_secs(30);
/// Most assertions either cache holds; past it the cache starts afresh.
const CACHE_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("identity key is malformed: {0}")]
    BadKey(String),
    #[error("assertion refused: {0}")]
    Refused(String),
}

/// Who is calling, as the instance sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The user's id; `None` for public (unauthenticated) access.
    pub user: Option<String>,
    /// The user's name, for display.
    pub user_name: Option<String>,
    pub server: String,
    pub instance: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    #[serde(flatten)]
    identity: Identity,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn audience(instance: &str) -> String {
    format!("hangar-instance:{instance}")
}

/// The router's signing key.
pub struct Signer {
    encoding: EncodingKey,
    public: String,
    recent: Mutex<HashMap<Identity, (String, Instant)>>,
}

impl Signer {
    /// Loads the key from `path` (32 secret bytes, base64url), creating it
    /// with mode 0600 on first use.
    pub fn load_or_create(path: &Path) -> Result<Signer, IdentityError> {
        let io = |source| IdentityError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let seed: [u8; 32] = match std::fs::read_to_string(path) {
            Ok(text) => URL_SAFE_NO_PAD
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| IdentityError::BadKey(path.display().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::random();
                write_private(path, &URL_SAFE_NO_PAD.encode(seed)).map_err(io)?;
                seed
            }
            Err(e) => return Err(io(e)),
        };
        Signer::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> Result<Signer, IdentityError> {
        let key = SigningKey::from_bytes(seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        Ok(Signer {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            recent: Mutex::new(HashMap::new()),
        })
    }

    /// The public key (base64url), what instances are given.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// An assertion for `identity`: a recent one when there is one, else a
    /// freshly signed one.
    pub fn assertion(&self, identity: &Identity) -> Result<String, IdentityError> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, at)) = recent.get(identity) {
            if at.elapsed() < REUSE {
                return Ok(token.clone());
            }
        }
        let token = self.sign(identity)?;
        if recent.len() >= CACHE_LIMIT {
            recent.clear();
        }
        recent.insert(identity.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    pub fn sign(&self, identity: &Identity) -> Result<String, IdentityError> {
        let now = now();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: audience(&identity.instance),
            exp: now + TTL_SECS,
            iat: now,
            identity: identity.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| IdentityError::BadKey(e.to_string()))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// What an instance uses to check assertions.
pub struct Verifier {
    decoding: DecodingKey,
    validation: Validation,
    known: Mutex<HashMap<String, (Identity, Instant)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// `public_key` as printed by [`Signer::public_key`]; `instance` is the
    /// instance this verifier guards.
    pub fn new(public_key: &str, instance: &str) -> Result<Verifier, IdentityError> {
        let decoding = DecodingKey::from_ed_components(public_key)
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience(instance)]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        Ok(Verifier {
            decoding,
            validation,
            known: Mutex::new(HashMap::new()),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Identity, IdentityError> {
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((identity, at)) = known.get(token) {
                if at.elapsed() < REMEMBER {
                    return Ok(identity.clone());
                }
            }
        }
        let identity = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims.identity)
            .map_err(|e| IdentityError::Refused(e.to_string()))?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= CACHE_LIMIT {
            known.clear();
        }
        known.insert(token.to_owned(), (identity.clone(), Instant::now()));
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(instance: &str) -> Identity {
        Identity {
            user: Some("u1".into()),
            user_name: Some("alice".into()),
            server: "everything".into(),
            instance: instance.into(),
        }
    }

    #[test]
    fn round_trip_and_audience_binding() {
        let signer = Signer::from_seed(&[9; 32]).unwrap();
        let token = signer.sign(&alice("i-1")).unwrap();
        let mine = Verifier::new(signer.public_key(), "i-1").unwrap();
        assert_eq!(mine.verify(&token).unwrap(), alice("i-1"));
        let other = Verifier::new(signer.public_key(), "i-2").unwrap();
        assert!(
            other.verify(&token).is_err(),
            "an assertion for one instance must not open another"
        );
    }

    #[test]
    fn assertions_are_reused_briefly_and_stay_verifiable() {
        let signer = Signer::from_seed(&[9; 32]).unwrap();
        let a = signer.assertion(&alice("i-1")).unwrap();
        assert_eq!(
            a,
            signer.assertion(&alice("i-1")).unwrap(),
            "reused within the window"
        );
        assert_ne!(
            a,
            signer.assertion(&alice("i-2")).unwrap(),
            "one per identity"
        );
        let v = Verifier::new(signer.public_key(), "i-1").unwrap();
        assert_eq!(v.verify(&a).unwrap(), alice("i-1"));
        assert_eq!(v.verify(&a).unwrap(), alice("i-1"), "remembered");
        // The cache holds only tokens this verifier accepted: another
        // instance still refuses it.
        let other = Verifier::new(signer.public_key(), "i-2").unwrap();
        assert!(other.verify(&a).is_err());
    }

    #[test]
    fn another_key_or_a_tampered_token_is_refused() {
        let signer = Signer::from_seed(&[9; 32]).unwrap();
        let forger = Signer::from_seed(&[7; 32]).unwrap();
        let v = Verifier::new(signer.public_key(), "i-1").unwrap();
        assert!(v.verify(&forger.sign(&alice("i-1")).unwrap()).is_err());
        let mut token = signer.sign(&alice("i-1")).unwrap();
        token.insert(10, 'x');
        assert!(v.verify(&token).is_err());
        assert!(v.verify("garbage").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("hangar-identity-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.key");
        let _ = std::fs::remove_file(&path);
        let a = Signer::load_or_create(&path).unwrap();
        let b = Signer::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
