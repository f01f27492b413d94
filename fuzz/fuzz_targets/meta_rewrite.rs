#![no_main]
//! `Message::with_meta_entry`: how `hangar wrap` puts the router's verified
//! identity into `params._meta["dev.hangar/identity"]` (and how other
//! entries are set), over any message a client can send.
//!
//! Property (not just "no panic"), against the `JSON.parse` model:
//! * the result is still a JSON-RPC message;
//! * every peer reads our entry, whichever repeated member it keeps (the
//!   path `params._meta[key]` has exactly one member at each level), so a
//!   client cannot hide its own value behind ours;
//! * nothing else changed: with the entry removed (and `params` / `_meta`
//!   removed where they were created), both messages read the same.
//! A message whose `params` or `_meta` is not an object may be left as it
//! is (positional params have no `_meta`) or refused.

use hangar_fuzz::json::{self, J};
use hangar_fuzz::pick;
use libfuzzer_sys::fuzz_target;
use mcp_transport::{Kind, Message};

const KEYS: &[&str] = &[
    mcp_transport::IDENTITY_META,
    "progressToken",
    "io.modelcontextprotocol/protocolVersion",
    "k",
    "a\"b\\c",
    "é\u{2028}",
];

const RAWS: &[&str] = &[
    r#"{"user":"alice","instance":"i-1"}"#,
    r#""x""#,
    "7",
    "null",
    "[1,{}]",
    r#""\ud83d\ude00""#,
];

/// The message as a program reads it, with `params._meta[key]` removed and
/// `_meta` / `params` dropped when nothing else is left in them (so a
/// created container and an absent one read the same).
fn without_entry(top: &J, key: &str) -> J {
    let top = top.canonical();
    let params = match top.get("params") {
        None | Some(J::Null) => return top.without("params"),
        Some(p) if !p.is_object() => return top,
        Some(p) => p.clone(),
    };
    let params = match params.get("_meta") {
        None | Some(J::Null) => params.without("_meta"),
        Some(meta) if meta.is_object() => {
            let meta = meta.without(key);
            let mut params = params.without("_meta");
            if meta != J::Obj(vec![]) {
                if let J::Obj(m) = &mut params {
                    m.push((json::utf16("_meta"), meta));
                }
            }
            params
        }
        Some(_) => params,
    };
    let mut top = top.without("params");
    if params != J::Obj(vec![]) {
        if let J::Obj(m) = &mut top {
            m.push((json::utf16("params"), params));
        }
    }
    top.canonical()
}

/// Why the entry may not be settable: `params` or `_meta` is not an object
/// (and not null), or a member on the path repeats.
fn unsettable(j: &J, key: &str) -> bool {
    let Some(params) = j.get("params").filter(|p| **p != J::Null) else {
        return false;
    };
    if !params.is_object() || params.count("_meta") > 1 {
        return true;
    }
    match params.get("_meta") {
        None | Some(J::Null) => false,
        Some(meta) => !meta.is_object() || meta.count(key) > 1,
    }
}

/// Checks the property; true when the entry was set.
fn check(text: &str, j: &J, key: &str, raw: &str, out: Result<&str, &str>) -> bool {
    let out = match out {
        Err(why) => {
            assert!(
                unsettable(j, key),
                "refused ({why}) though settable: {text:?}"
            );
            return false;
        }
        Ok(out) if out == text && unsettable(j, key) => return false, // left as it was
        Ok(out) => out,
    };
    let o = json::parse(out).unwrap_or_else(|| panic!("not JSON after rewriting: {out:?}"));
    if let Err(e) = Message::parse(out) {
        panic!("not a message after rewriting ({e}): {out:?}");
    }
    let params = o.get("params").expect("no params after rewriting");
    assert_eq!(o.count("params"), 1, "{out:?}");
    assert_eq!(
        params.count("_meta"),
        1,
        "repeated _meta after rewriting: {out:?}"
    );
    let meta = params.get("_meta").unwrap();
    assert_eq!(
        meta.count(key),
        1,
        "repeated {key:?} after rewriting: {out:?}"
    );
    assert_eq!(
        meta.get(key),
        json::parse(raw).as_ref(),
        "a peer does not read our entry in {out:?} (from {text:?})"
    );
    assert_eq!(
        without_entry(&o, key),
        without_entry(j, key),
        "more than the entry changed: {text:?} became {out:?}"
    );
    true
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let key = pick(KEYS, data[0]);
    let raw = pick(RAWS, data[1]);
    let Ok(text) = std::str::from_utf8(&data[2..]) else {
        return;
    };
    let Ok(m) = Message::parse(text) else {
        return;
    };
    if m.kind() == Kind::Response {
        return; // the server sets entries on requests and notifications only
    }
    let j = json::parse(text).expect("a parsed message is JSON");
    let r = m.with_meta_entry(key, raw);
    let out = r.as_ref().map(Message::as_str).map_err(|why| *why);
    if check(text, &j, key, raw, out) {
        // The reading side agrees with the writing side.
        let r = r.unwrap();
        assert_eq!(
            r.meta_field(key).as_deref(),
            Some(raw),
            "meta_field misses it: {:?}",
            r.as_str()
        );
    }
});
