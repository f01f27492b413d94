#![no_main]
//! The `/oauth/register` JSON of `hangar-auth` (RFC 7591 Dynamic Client
//! Registration: `clients::check_registration`) and the redirect URI rules
//! that follow a client to `/oauth/authorize` (`clients::redirect_matches`,
//! `clients::check_redirect_uri`).
//!
//! Properties:
//! * an accepted registration has 1 to 16 redirect URIs, each within the
//!   rules (HTTPS, or HTTP on loopback, or a private-use scheme for native
//!   apps; no fragment, credentials or script scheme), a supported
//!   authentication method, and keeps only the known metadata fields;
//! * the authorization server only redirects within the rules: a URI that
//!   matches a registered one is exactly that one, or (loopback, RFC 8252)
//!   differs in the port only, and meets the same rules itself.

use arbitrary::Arbitrary;
use hangar_auth::clients::{check_redirect_uri, check_registration, redirect_matches};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
enum Input {
    Json(Vec<u8>),
    Uris {
        uris: Vec<String>,
        native: bool,
        /// How the requested URI is made from the first registered one.
        how: u8,
        piece: String,
        method: Option<String>,
    },
}

const METADATA: &[&str] = &[
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "software_id",
    "software_version",
];

fn registration(body: &Value) -> Option<(Vec<String>, bool)> {
    let new = match check_registration(body) {
        Ok(n) => n,
        Err((error, _)) => {
            assert!(matches!(
                error,
                "invalid_client_metadata" | "invalid_redirect_uri"
            ));
            return None;
        }
    };
    let native = new.application_type == "native";
    assert!((1..=16).contains(&new.redirect_uris.len()));
    for uri in &new.redirect_uris {
        assert!(uri.len() <= 2048);
        if let Err(e) = check_redirect_uri(uri, native) {
            panic!("registered {uri:?} breaks the rules: {e}");
        }
    }
    assert!(matches!(
        new.token_endpoint_auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ));
    let metadata: Value = serde_json::from_str(&new.metadata).expect("metadata is JSON");
    let metadata = metadata.as_object().expect("metadata is an object");
    assert!(metadata.keys().all(|k| METADATA.contains(&k.as_str())));
    if let Some(name) = &new.name {
        assert!(name.chars().count() <= 100);
    }
    Some((new.redirect_uris, native))
}

fn requested_within_rules(registered: &[String], native: bool, requested: &str) {
    if !redirect_matches(registered, requested) {
        return;
    }
    if registered.iter().any(|r| r == requested) {
        return; // exactly a registered URI
    }
    if let Err(e) = check_redirect_uri(requested, native) {
        panic!("redirecting to {requested:?} (registered {registered:?}) breaks the rules: {e}");
    }
    // Only the port of a loopback URI may differ.
    let req = url::Url::parse(requested).expect("a matched URI parses");
    let same_but_port = registered.iter().any(|r| {
        url::Url::parse(r).is_ok_and(|mut reg| {
            let mut req = req.clone();
            let _ = reg.set_port(None);
            let _ = req.set_port(None);
            reg == req
        })
    });
    assert!(same_but_port, "{requested:?} matched {registered:?}");
}

fuzz_target!(|input: Input| match input {
    Input::Json(bytes) => {
        let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
            return;
        };
        registration(&body);
    }
    Input::Uris {
        uris,
        native,
        how,
        piece,
        method,
    } => {
        let mut body = json!({ "redirect_uris": uris });
        if native {
            body["application_type"] = json!("native");
        }
        if let Some(m) = method {
            body["token_endpoint_auth_method"] = json!(m);
        }
        let Some((registered, native)) = registration(&body) else {
            return;
        };
        let first = &registered[0];
        let requested = match how % 3 {
            0 => piece,
            1 => format!("{first}{piece}"),
            _ => match first.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{piece}{rest}"),
                None => format!("{piece}{first}"),
            },
        };
        requested_within_rules(&registered, native, &requested);
    }
});
