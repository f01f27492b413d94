//! ID token verification against a key made in the test and a provider
//! faked by an in-test server on 127.0.0.1 (discovery + JWKS).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::SigningKey;
use hangar_auth::upstream::{OidcProvider, OidcProviderConfig, UpstreamError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const CLIENT_ID: &str = "hangar";
const NONCE: &str = "n-0S6_WzA2Mj";

#[derive(Clone)]
struct Fake {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    jwks_hits: Arc<AtomicUsize>,
}

async fn discovery(State(fake): State<Fake>) -> Json<Value> {
    let i = &fake.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/auth"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
    }))
}

async fn jwks(State(fake): State<Fake>) -> Json<Value> {
    fake.jwks_hits.fetch_add(1, Ordering::SeqCst);
    Json(fake.jwks.lock().unwrap().clone())
}

struct Key {
    kid: &'static str,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &'static str, seed: u8) -> Key {
        Key {
            kid,
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn jwk(&self) -> Value {
        let x = URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_bytes());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"})
    }

    fn sign(&self, claims: &Value) -> String {
        let der = self.signing.to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

async fn fake(keys: &[&Key]) -> (OidcProvider, Fake) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let fake = Fake {
        issuer: issuer.clone(),
        jwks: Arc::new(Mutex::new(
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}),
        )),
        jwks_hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let provider = OidcProvider::new(OidcProviderConfig {
        name: "fake".into(),
        display_name: None,
        issuer,
        client_id: CLIENT_ID.into(),
        client_secret: None,
        scopes: vec![],
    });
    (provider, fake)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "sub": "user-1", "aud": CLIENT_ID, "nonce": NONCE,
        "iat": now(), "exp": now() + 300,
        "email": "u1@example.test", "email_verified": true,
    })
}

fn refused(result: Result<impl std::fmt::Debug, UpstreamError>, needle: &str) {
    let err = result.unwrap_err();
    assert!(matches!(err, UpstreamError::IdToken(_)), "{err}");
    assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
}

#[tokio::test]
async fn valid_token_verifies() {
    let key = Key::new("k1", 1);
    let (provider, fake) = fake(&[&key]).await;
    let got = provider
        .verify_id_token(&key.sign(&claims(&fake.issuer)), NONCE)
        .await
        .unwrap();
    assert_eq!(got.subject, "user-1");
    assert_eq!(got.email.as_deref(), Some("u1@example.test"));
    assert!(got.email_verified);
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let key = Key::new("k1", 1);
    let (provider, fake) = fake(&[&key]).await;
    let token = key.sign(&claims(&fake.issuer));
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims(&fake.issuer);
    forged["sub"] = json!("admin");
    let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    refused(provider.verify_id_token(&tampered, NONCE).await, "Invalid");
}

#[tokio::test]
async fn wrong_nonce_audience_issuer_or_expired_are_refused() {
    let key = Key::new("k1", 1);
    let (provider, fake) = fake(&[&key]).await;
    let good = claims(&fake.issuer);
    refused(
        provider.verify_id_token(&key.sign(&good), "other").await,
        "nonce",
    );
    let mut c = good.clone();
    c["aud"] = json!("someone-else");
    refused(
        provider.verify_id_token(&key.sign(&c), NONCE).await,
        "Audience",
    );
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    refused(
        provider.verify_id_token(&key.sign(&c), NONCE).await,
        "Issuer",
    );
    let mut c = good.clone();
    c["exp"] = json!(now() - 3600);
    refused(
        provider.verify_id_token(&key.sign(&c), NONCE).await,
        "Expired",
    );
    let mut c = good.clone();
    c["iat"] = json!(now() + 3600);
    refused(
        provider.verify_id_token(&key.sign(&c), NONCE).await,
        "future",
    );
    let mut c = good.clone();
    c["aud"] = json!([CLIENT_ID, "other"]);
    refused(provider.verify_id_token(&key.sign(&c), NONCE).await, "azp");
    c["azp"] = json!("other");
    refused(provider.verify_id_token(&key.sign(&c), NONCE).await, "azp");
    c["azp"] = json!(CLIENT_ID);
    provider
        .verify_id_token(&key.sign(&c), NONCE)
        .await
        .unwrap();
}

#[tokio::test]
async fn unpublished_key_is_refused_after_one_refetch() {
    let published = Key::new("k1", 1);
    let stranger = Key::new("k1", 2); // same kid, other key: bad signature
    let unknown = Key::new("k9", 3);
    let (provider, fake) = fake(&[&published]).await;
    let c = claims(&fake.issuer);
    refused(
        provider.verify_id_token(&stranger.sign(&c), NONCE).await,
        "Invalid",
    );
    assert_eq!(fake.jwks_hits.load(Ordering::SeqCst), 1);
    refused(
        provider.verify_id_token(&unknown.sign(&c), NONCE).await,
        "does not publish",
    );
    assert_eq!(fake.jwks_hits.load(Ordering::SeqCst), 2, "one refetch");
}

#[tokio::test]
async fn rotated_key_is_found_by_refetching() {
    let old = Key::new("old", 1);
    let new = Key::new("new", 4);
    let (provider, fake) = fake(&[&old]).await;
    let c = claims(&fake.issuer);
    provider
        .verify_id_token(&old.sign(&c), NONCE)
        .await
        .unwrap();
    *fake.jwks.lock().unwrap() = json!({"keys": [old.jwk(), new.jwk()]});
    provider
        .verify_id_token(&new.sign(&c), NONCE)
        .await
        .unwrap();
    assert_eq!(fake.jwks_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn symmetric_and_unsigned_tokens_are_refused() {
    let key = Key::new("k1", 1);
    let (provider, fake) = fake(&[&key]).await;
    let c = claims(&fake.issuer);
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(b"client-secret"),
    )
    .unwrap();
    refused(provider.verify_id_token(&hs, NONCE).await, "not accepted");
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(c.to_string());
    refused(
        provider
            .verify_id_token(&format!("{none_header}.{body}."), NONCE)
            .await,
        "",
    );
    refused(provider.verify_id_token("garbage", NONCE).await, "");
}
