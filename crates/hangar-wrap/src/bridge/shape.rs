//! The modern form of a legacy child's answers.
//!
//! A 2026-07-28 result carries what a legacy server cannot know to say:
//! `resultType`, caching hints on the cacheable results, the server's
//! identity in `_meta`. The bridge adds exactly those when they are absent
//! and keeps every byte the child wrote; nothing else about an answer changes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use mcp_transport::era::meta;
use mcp_transport::{codes, Message};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Results that carry `ttlMs` and `cacheScope` (SEP-2549).
const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// The caching hints the bridge gives for a legacy server: do not cache, and
/// if you do, only for this user (a wrapped server's answers may be per user).
pub const NO_CACHE: [(&str, &str); 2] = [("ttlMs", "0"), ("cacheScope", "\"private\"")];

/// A legacy child's answer to `method`, in modern form, with `id` as its id.
pub fn modern_answer(response: &Message, id: &str, method: &str, server_info: &str) -> Message {
    if response.is_error() {
        return modern_error(response, id);
    }
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    let result = serde_json::from_str::<Envelope<'_>>(response.as_str())
        .ok()
        .and_then(|e| e.result)
        .map(RawValue::get)
        .filter(|r| r.starts_with('{'));
    let Some(result) = result else {
        return response.with_id(id);
    };
    let mut added: Vec<(&str, &str)> = vec![("resultType", "\"complete\"")];
    if CACHEABLE.contains(&method) {
        added.extend(NO_CACHE);
    }
    let result = with_server_info(&with_absent(result, &added), server_info);
    Message::parse(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
    ))
    .unwrap_or_else(|_| response.with_id(id))
}

/// Legacy error codes the modern era retired, mapped to their successors:
/// -32002 (resource not found) is -32602 since 2026-07-28 (SEP-2164).
fn modern_error(response: &Message, id: &str) -> Message {
    if response.error_code() != Some(-32002) {
        return response.with_id(id);
    }
    let value = response.to_value();
    let error = &value["error"];
    Message::error_response(
        Some(id),
        codes::INVALID_PARAMS,
        error["message"].as_str().unwrap_or("Resource not found"),
        error.get("data").cloned(),
    )
}

/// `result` with `_meta["io.modelcontextprotocol/serverInfo"]` added when absent.
fn with_server_info(result: &str, server_info: &str) -> String {
    let entry = [(meta::SERVER_INFO, server_info)];
    match member(result, "_meta").filter(|span| result[span.clone()].starts_with('{')) {
        Some(span) => {
            let meta = with_absent(&result[span.clone()], &entry);
            format!("{}{meta}{}", &result[..span.start], &result[span.end..])
        }
        None if member(result, "_meta").is_some() => result.to_owned(), // not an object: leave it
        None => {
            let meta = with_absent("{}", &entry);
            with_absent(result, &[("_meta", &meta)])
        }
    }
}

/// The byte span of the value of `key` in the JSON object `object`.
fn member(object: &str, key: &str) -> Option<Range<usize>> {
    let members: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(object).ok()?;
    let value = members.get(key)?.get();
    let start = value.as_ptr() as usize - object.as_ptr() as usize;
    Some(start..start + value.len())
}

/// The JSON object `object` with each `(key, raw value)` inserted first, for
/// the keys it does not have; the object's own bytes follow unchanged.
fn with_absent(object: &str, entries: &[(&str, &str)]) -> String {
    let present: HashMap<Cow<'_, str>, &RawValue> =
        serde_json::from_str(object).unwrap_or_default();
    let new: Vec<String> = entries
        .iter()
        .filter(|(k, _)| !present.contains_key(*k))
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::String((*k).to_owned())))
        .collect();
    if new.is_empty() {
        return object.to_owned();
    }
    let body = object.trim_start();
    let inner = &body[1..];
    let separator = if present.is_empty() { "" } else { "," };
    format!("{{{}{separator}{inner}", new.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(text: &str, method: &str) -> serde_json::Value {
        let response = Message::parse(text).unwrap();
        let out = modern_answer(&response, "\"x\"", method, r#"{"name":"s","version":"1"}"#);
        out.to_value()
    }

    #[test]
    fn adds_only_what_is_missing_and_keeps_the_rest() {
        let v = answer(
            r#"{"result":{"tools":[{"name":"t","odd":1e3}]},"jsonrpc":"2.0","id":7}"#,
            "tools/list",
        );
        assert_eq!(v["id"], "x");
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["tools"][0]["odd"], 1000.0);
        assert_eq!(v["result"]["_meta"][meta::SERVER_INFO]["name"], "s");

        let v = answer(
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","_meta":{"k":true}}}"#,
            "tools/call",
        );
        assert_eq!(v["result"]["resultType"], "input_required");
        assert_eq!(v["result"]["_meta"]["k"], true);
        assert_eq!(v["result"]["_meta"][meta::SERVER_INFO]["version"], "1");
        assert!(v["result"].get("ttlMs").is_none());

        let v = answer(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, "tools/call");
        assert_eq!(
            v["result"],
            json!({"resultType": "complete", "_meta": {meta::SERVER_INFO: {"name": "s", "version": "1"}}})
        );
    }

    #[test]
    fn retired_error_codes_become_their_successors() {
        let v = answer(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"a://b"}}}"#,
            "resources/read",
        );
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "a://b");
        let v = answer(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}"#,
            "tools/call",
        );
        assert_eq!(v["error"]["code"], -32601);
        assert_eq!(v["id"], "x");
    }
}
