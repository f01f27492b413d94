#![no_main]
//! The JSON-RPC envelope: `mcp_transport::Message::parse` (batches are
//! refused: MCP removed them in 2025-06-18) and what the router reads from a
//! body (`hangar_router::proxy::Call::peek`: id, method, the tool name its per-tool
//! scopes depend on).
//!
//! Properties, against the `JSON.parse` model (`hangar_fuzz::json`):
//! * -32700 exactly when the body is not JSON; anything else refused is -32600;
//! * every message a peer would take as a valid envelope is accepted, and
//!   nothing with a repeated envelope member is;
//! * kind, id, method and params are what the peer reads;
//! * `with_id` changes the id and nothing else, and round-trips;
//! * the router reads the same id, method and tool name as the peer.

use hangar_fuzz::json::{self, J};
use libfuzzer_sys::fuzz_target;
use mcp_transport::{codes, Kind, Message};

const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// The kind a peer gives a JSON value, or `None` when it is no valid
/// JSON-RPC 2.0 message (the spec's rules; a null id counts as none, the
/// method must be a string of valid Unicode, which Hangar has to decode).
fn model_kind(j: &J) -> Option<Kind> {
    if !j.is_object() || MEMBERS.iter().any(|k| j.count(k) > 1) {
        return None;
    }
    if j.get("jsonrpc").and_then(J::as_string).as_deref() != Some("2.0") {
        return None;
    }
    let id = match j.get("id") {
        None | Some(J::Null) => false,
        Some(J::Str(_) | J::Num(_)) => true,
        Some(_) => return None,
    };
    // `"error": null` is no error (JSON-RPC 1.0 peers write it next to
    // their result); `"result": null` is a result.
    let answer = (
        j.get("result").is_some(),
        j.get("error").is_some_and(|e| *e != J::Null),
    );
    match (j.get("method"), answer) {
        // A method name Hangar must decode, so it must be valid Unicode.
        (Some(m), (false, false)) if m.as_string().is_some() => Some(if id {
            Kind::Request
        } else {
            Kind::Notification
        }),
        (None, (true, false) | (false, true)) => Some(Kind::Response),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let model = json::parse(text);
    let peek = hangar_router::proxy::Call::peek(&http::Method::POST, data);
    let m = match Message::parse(text) {
        Err(e) => {
            let expected = if model.is_none() {
                codes::PARSE_ERROR
            } else {
                codes::INVALID_REQUEST
            };
            assert_eq!(e.code(), expected, "{e} for {text:?}");
            if let Some(kind) = model.as_ref().and_then(model_kind) {
                panic!("a valid {kind:?} was refused ({e}): {text:?}");
            }
            assert!(peek.id.is_none() && peek.method.is_none() && peek.tool.is_none());
            return;
        }
        Ok(m) => m,
    };
    let j = model.expect("Message::parse accepted a body JSON.parse refuses");
    assert_eq!(Some(m.kind()), model_kind(&j), "kind of {text:?}");
    assert_eq!(m.as_str(), text);

    // The id, method and params a peer reads.
    let id = j.get("id").filter(|v| **v != J::Null);
    match (m.id_raw(), id) {
        (Some(raw), Some(v)) => assert_eq!(json::parse(raw).as_ref(), Some(v)),
        (None, None) => {}
        other => panic!("id: ours and the peer's differ: {other:?} in {text:?}"),
    }
    assert_eq!(
        m.method().map(json::utf16),
        j.get("method").map(|v| match v {
            J::Str(u) => u.clone(),
            other => panic!("method {other:?} accepted"),
        })
    );
    match (m.params_raw(), j.get("params")) {
        (Some(raw), Some(v)) => assert_eq!(json::parse(raw).as_ref(), Some(v)),
        (None, None | Some(J::Null)) => {}
        other => panic!("params: {other:?} in {text:?}"),
    }

    // with_id replaces the id and nothing else.
    if let Some(orig) = m.id_raw() {
        let new = m.with_id("987654321");
        assert_eq!(new.id_raw(), Some("987654321"));
        assert_eq!(new.kind(), m.kind());
        assert_eq!(new.method(), m.method());
        assert_eq!(new.params_raw(), m.params_raw());
        let reread = json::parse(new.as_str()).expect("with_id made invalid JSON");
        let mut expected = j.without("id");
        if let J::Obj(members) = &mut expected {
            members.push((json::utf16("id"), J::Num("987654321".into())));
        }
        assert_eq!(reread.canonical(), expected.canonical());
        assert_eq!(
            new.with_id(orig).as_str(),
            text,
            "with_id does not round-trip"
        );
    }

    // The router sees what the peer sees.
    if m.kind() == Kind::Request {
        assert_eq!(peek.id.as_deref(), m.id_raw());
        assert_eq!(peek.method.as_deref(), m.method());
        let tool = if m.method() == Some("tools/call") {
            j.get("params")
                .and_then(|p| p.get("name"))
                .and_then(J::as_string)
        } else {
            None
        };
        assert_eq!(
            peek.tool, tool,
            "the router reads another tool name: {text:?}"
        );
    } else {
        // A notification or a response: the router reads its id (a
        // response's, to answer an error with it) and method as the peer
        // does, and never a tool name (only a tools/call request has one).
        assert_eq!(peek.id.as_deref(), m.id_raw());
        assert_eq!(peek.method.as_deref(), m.method());
        assert!(peek.tool.is_none());
    }
});
