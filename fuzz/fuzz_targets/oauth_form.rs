#![no_main]
//! The `/oauth/token` (and `/oauth/revoke`) inputs of `hangar-auth`: the
//! form body (`web::parse_form`), HTTP Basic client credentials
//! (`web::basic_credentials`, RFC 6749 §2.3.1) and the PKCE check
//! (`server::pkce_matches`, RFC 7636 S256).
//!
//! Properties, against an independent form decoder (`hangar_fuzz::form_*`):
//! * a body reads as the pairs a form decoder finds, and a parameter given
//!   twice is refused (OAuth 2.1 §3.1), never silently chosen;
//! * pairs written by a form encoder read back exactly;
//! * Basic credentials read as the two form-decoded halves around the
//!   first `:`, and credentials encoded as the RFC says round-trip;
//! * PKCE passes only a well-formed verifier whose S256 is the challenge.

use std::collections::HashMap;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hangar_auth::server::pkce_matches;
use hangar_auth::web::basic_credentials;
use hangar_auth::web::parse_form;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
enum Input {
    Body(Vec<u8>),
    Pairs(Vec<(String, String)>),
    Basic(Vec<u8>),
    Credentials {
        id: String,
        secret: String,
    },
    Pkce {
        verifier: String,
        challenge: String,
        own: bool,
    },
}

fn basic(decoded: &[u8]) -> Option<(String, String)> {
    let value = format!("Basic {}", STANDARD.encode(decoded));
    // As a header value reaches the server: only what HTTP allows.
    HeaderValue::from_str(&value).ok()?;
    basic_credentials(&value)
}

fn body(body: &[u8]) {
    let pairs = hangar_fuzz::form_pairs(body);
    let mut expected = HashMap::new();
    let mut repeated = false;
    for (k, v) in pairs {
        repeated |= expected.insert(k, v).is_some();
    }
    match parse_form(body) {
        Ok(map) => {
            assert!(!repeated, "a repeated parameter was accepted: {body:?}");
            assert_eq!(map, expected, "{body:?}");
        }
        Err(_) => assert!(repeated, "refused without a repeated parameter: {body:?}"),
    }
}

fn pairs(pairs: Vec<(String, String)>) {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    let encoded = ser.finish();
    let mut expected = HashMap::new();
    let mut repeated = false;
    for (k, v) in pairs {
        repeated |= expected.insert(k, v).is_some();
    }
    match parse_form(encoded.as_bytes()) {
        Ok(map) => assert_eq!(map, expected, "{encoded:?}"),
        Err(_) => assert!(repeated, "{encoded:?}"),
    }
}

fn basic_any(decoded: &[u8]) {
    let got = basic(decoded);
    let expected = std::str::from_utf8(decoded).ok().and_then(|s| {
        let (id, secret) = s.split_once(':')?;
        Some((
            hangar_fuzz::form_decode(id.as_bytes()),
            hangar_fuzz::form_decode(secret.as_bytes()),
        ))
    });
    assert_eq!(got, expected, "Basic {decoded:?}");
}

fn credentials(id: &str, secret: &str) {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let decoded = format!("{}:{}", enc(id), enc(secret));
    assert_eq!(
        basic(decoded.as_bytes()),
        Some((id.to_owned(), secret.to_owned())),
        "{decoded:?}"
    );
}

fn pkce(verifier: &str, challenge: &str, own: bool) {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let challenge = if own { s256.as_str() } else { challenge };
    assert_eq!(
        pkce_matches(verifier, challenge),
        well_formed && challenge == s256,
        "{verifier:?} {challenge:?}"
    );
}

fuzz_target!(|input: Input| match input {
    Input::Body(b) => body(&b),
    Input::Pairs(p) => pairs(p),
    Input::Basic(b) => basic_any(&b),
    Input::Credentials { id, secret } => credentials(&id, &secret),
    Input::Pkce {
        verifier,
        challenge,
        own,
    } => pkce(&verifier, &challenge, own),
});
