//! The JSON-RPC 2.0 envelope, kept as the exact bytes that arrived.
//!
//! A proxy must pass what it does not understand through unchanged, so a
//! [`Message`] never re-serialises its payload: it keeps the original text and
//! remembers where the `id` sits in it. Rewriting an id (the shared-child mux
//! does this) splices new bytes into that span and leaves every other byte,
//! including unknown fields, `_meta` and whitespace, as it was.
//!
//! We parse with serde_json's borrowed `RawValue` rather than a typed model
//! (rmcp's) because we need byte spans, not values, and it is several times
//! cheaper than building a `Value` tree on the hot path.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Standard JSON-RPC and MCP error codes used across Hangar.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Legacy-era implementation-defined server error (transport faults).
    pub const SERVER_ERROR: i64 = -32000;
    /// 2026-07-28: an `Mcp-*` header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request needs a client capability that was not declared.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the requested protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// What a JSON-RPC message is, decided by which members it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// A result or an error answer to a request.
    Response,
}

/// Why a body is not a usable JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("parse error: {0}")]
    Json(String),
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl ParseError {
    /// The JSON-RPC code a peer should see for this fault.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => codes::PARSE_ERROR,
            ParseError::Invalid(_) => codes::INVALID_REQUEST,
        }
    }
}

/// One JSON-RPC message: its original text plus the spans we need to route it.
/// Cloning is cheap (the text is shared).
#[derive(Clone)]
pub struct Message {
    text: Arc<str>,
    kind: Kind,
    id: Option<Range<usize>>,
    method: Option<Arc<str>>,
    params: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Byte range of `inner` inside `outer`; `inner` must borrow from `outer`.
fn span_of(outer: &str, inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

impl Message {
    /// Parses one JSON-RPC message. Batches (arrays) are refused: they were
    /// removed from MCP in 2025-06-18.
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Message, ParseError> {
        let text: Arc<str> = text.into();
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            return Err(ParseError::Invalid("JSON-RPC batches are not supported"));
        }
        let env: Envelope<'_> =
            serde_json::from_str(&text).map_err(|e| classify_serde_error(&text, e))?;
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let id = match env.id {
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => {
                let first = raw.get().as_bytes()[0];
                if !(first == b'"' || first == b'-' || first.is_ascii_digit()) {
                    return Err(ParseError::Invalid("\"id\" must be a string or a number"));
                }
                Some(span_of(&text, raw.get()))
            }
            None => None,
        };
        let kind = match (
            &env.method,
            &id,
            env.result.is_some() || env.error.is_some(),
        ) {
            (Some(_), Some(_), false) => Kind::Request,
            (Some(_), None, false) => Kind::Notification,
            (None, _, true) if env.result.is_some() != env.error.is_some() => Kind::Response,
            _ => {
                return Err(ParseError::Invalid(
                    "not a request, notification or response",
                ))
            }
        };
        let method = env.method.map(|m| Arc::from(m.as_ref()));
        let params = env.params.map(|p| span_of(&text, p.get()));
        Ok(Message {
            text,
            kind,
            id,
            method,
            params,
        })
    }

    /// Builds a message from a value we constructed ourselves.
    pub fn from_value(value: &Value) -> Message {
        // A Value we built always serialises to a valid envelope; the fallback
        // keeps request paths free of unwrap.
        Message::parse(value.to_string()).unwrap_or_else(|_| {
            Message::error_response(None, codes::INTERNAL_ERROR, "malformed message", None)
        })
    }

    /// A JSON-RPC error response. `id` is the raw JSON of the request id.
    pub fn error_response(
        id: Option<&str>,
        code: i64,
        message: &str,
        data: Option<Value>,
    ) -> Message {
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(data) = data {
            error["data"] = data;
        }
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
            id.unwrap_or("null"),
            error
        );
        let id_span = id.map(|raw| {
            let start = r#"{"jsonrpc":"2.0","id":"#.len();
            start..start + raw.len()
        });
        Message {
            text: text.into(),
            kind: Kind::Response,
            id: id_span,
            method: None,
            params: None,
        }
    }

    /// A successful response carrying `result` (a serialisable value).
    pub fn result_response(id: &str, result: &Value) -> Message {
        let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
        let start = r#"{"jsonrpc":"2.0","id":"#.len();
        Message {
            text: text.into(),
            kind: Kind::Response,
            id: Some(start..start + id.len()),
            method: None,
            params: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The id exactly as it was written (`1`, `"abc"`), if any.
    pub fn id_raw(&self) -> Option<&str> {
        self.id.clone().map(|r| &self.text[r])
    }

    /// The raw JSON of `params`, if present.
    pub fn params_raw(&self) -> Option<&str> {
        self.params.clone().map(|r| &self.text[r])
    }

    /// `params` parsed into a value (allocates; off the hot path).
    pub fn params(&self) -> Option<Value> {
        self.params_raw().and_then(|p| serde_json::from_str(p).ok())
    }

    /// The whole message parsed into a value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// True for an error response.
    pub fn is_error(&self) -> bool {
        self.kind == Kind::Response && self.error_code().is_some()
    }

    /// The `error.code` of an error response.
    pub fn error_code(&self) -> Option<i64> {
        if self.kind != Kind::Response {
            return None;
        }
        #[derive(Deserialize)]
        struct Err {
            code: i64,
        }
        #[derive(Deserialize)]
        struct Resp {
            error: Option<Err>,
        }
        serde_json::from_str::<Resp>(&self.text)
            .ok()
            .and_then(|r| r.error.map(|e| e.code))
    }

    /// A copy with the id replaced by `raw_id` (raw JSON); every other byte is kept.
    pub fn with_id(&self, raw_id: &str) -> Message {
        let Some(span) = self.id.clone() else {
            return self.clone();
        };
        let mut text = String::with_capacity(self.text.len() + raw_id.len());
        text.push_str(&self.text[..span.start]);
        text.push_str(raw_id);
        text.push_str(&self.text[span.end..]);
        let shift = |r: Range<usize>| -> Range<usize> {
            if r.start >= span.end {
                let delta = raw_id.len() as isize - span.len() as isize;
                (r.start as isize + delta) as usize..(r.end as isize + delta) as usize
            } else {
                r
            }
        };
        Message {
            text: text.into(),
            kind: self.kind,
            id: Some(span.start..span.start + raw_id.len()),
            method: self.method.clone(),
            params: self.params.clone().map(shift),
        }
    }

    /// Byte span (in [`Message::as_str`]) of the value at `path` inside
    /// `params`, e.g. `["_meta", "progressToken"]`.
    pub fn params_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let params = self.params_raw()?;
        let mut current: &str = params;
        for key in path {
            let object: std::collections::HashMap<Cow<'_, str>, &RawValue> =
                serde_json::from_str(current).ok()?;
            current = object.get(*key)?.get();
        }
        // Every level borrows from `params`, which borrows from the text.
        let start = current.as_ptr() as usize - self.text.as_ptr() as usize;
        Some(start..start + current.len())
    }

    /// A copy with the bytes at `span` (from [`Message::params_span`])
    /// replaced by `raw` JSON; every other byte is kept.
    pub fn with_replaced(&self, span: Range<usize>, raw: &str) -> Message {
        let mut text = String::with_capacity(self.text.len() + raw.len());
        text.push_str(&self.text[..span.start]);
        text.push_str(raw);
        text.push_str(&self.text[span.end..]);
        // Re-deriving the spans is simpler than shifting each one and the
        // result is valid JSON-RPC by construction.
        Message::parse(text).unwrap_or_else(|_| self.clone())
    }

    /// A copy with `params._meta[key] = raw` (raw JSON), replacing any value
    /// the sender put there; `params` and `_meta` are created if missing.
    /// Afterwards every JSON parser, whether the first or the last duplicate
    /// wins, reads exactly `raw` under `key`: a sender cannot smuggle in a
    /// value of its own (a second `_meta`, a second `key`, a `_meta` that is
    /// `null`, a string or an array). In the common case only the inserted
    /// bytes change; when the sender's `params` are ambiguous they are
    /// rewritten, keeping every other entry's text.
    pub fn with_meta_entry(&self, key: &str, raw: &str) -> Message {
        let key_json = Value::String(key.to_owned()).to_string();
        let Some(params) = self.params.clone() else {
            let end = self.text.trim_end().len() - 1; // the closing brace
            return self.with_replaced(
                end..end,
                &format!(r#","params":{{"_meta":{{{key_json}:{raw}}}}}"#),
            );
        };
        let Some(entries) = object_entries(&self.text[params.clone()]) else {
            return self.clone(); // positional params: nowhere to put _meta
        };
        let metas: Vec<&RawValue> = entries
            .iter()
            .filter(|(k, _)| k == "_meta")
            .map(|(_, v)| *v)
            .collect();
        let insert_after_brace = |span: Range<usize>, entry: String| {
            let body = &self.text[span.clone()];
            let empty = body[1..body.len() - 1].trim().is_empty();
            let at = span.start + 1;
            let entry = if empty { entry } else { format!("{entry},") };
            self.with_replaced(at..at, &entry)
        };
        let span_of = |v: &RawValue| {
            let start = v.get().as_ptr() as usize - self.text.as_ptr() as usize;
            start..start + v.get().len()
        };
        match metas.as_slice() {
            [] => {
                return insert_after_brace(params, format!(r#""_meta":{{{key_json}:{raw}}}"#));
            }
            [meta] => {
                if let Some(meta_entries) = object_entries(meta.get()) {
                    let existing: Vec<&RawValue> = meta_entries
                        .iter()
                        .filter(|(k, _)| k == key)
                        .map(|(_, v)| *v)
                        .collect();
                    match existing.as_slice() {
                        [] => {
                            return insert_after_brace(span_of(meta), format!("{key_json}:{raw}"))
                        }
                        [one] => return self.with_replaced(span_of(one), raw),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        // Ambiguous: one `_meta` object (the sender's last one, if it is an
        // object, minus every `key`), then the other entries as they were.
        let mut meta_body: Vec<String> = vec![format!("{key_json}:{raw}")];
        if let Some(meta_entries) = metas.last().and_then(|m| object_entries(m.get())) {
            for (k, v) in meta_entries.iter().filter(|(k, _)| k != key) {
                meta_body.push(format!("{}:{}", Value::String(k.to_string()), v.get()));
            }
        }
        let mut body: Vec<String> = vec![format!(r#""_meta":{{{}}}"#, meta_body.join(","))];
        for (k, v) in entries.iter().filter(|(k, _)| k != "_meta") {
            body.push(format!("{}:{}", Value::String(k.to_string()), v.get()));
        }
        self.with_replaced(params, &format!("{{{}}}", body.join(",")))
    }

    /// `params._meta.progressToken` as raw JSON, if the request asked for progress.
    pub fn progress_token(&self) -> Option<String> {
        self.meta_field("progressToken")
    }

    /// A field of `params._meta`, as raw JSON.
    pub fn meta_field(&self, key: &str) -> Option<String> {
        let params = self.params_raw()?;
        if !params.contains("_meta") {
            return None;
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "_meta")]
            meta: Option<std::collections::HashMap<Cow<'a, str>, &'a RawValue>>,
        }
        let p: Params<'_> = serde_json::from_str(params).ok()?;
        p.meta?.get(key).map(|v| v.get().to_owned())
    }
}

/// The entries of a JSON object in order, duplicates included (`None` if
/// `raw` is not an object). Values borrow from `raw`.
fn object_entries(raw: &str) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    serde::Deserializer::deserialize_map(&mut de, Entries).ok()
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("id", &self.id_raw())
            .finish()
    }
}

fn classify_serde_error(text: &str, e: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    match e.classify() {
        // Syntactically valid JSON of the wrong shape is an invalid request.
        Category::Data if serde_json::from_str::<&RawValue>(text).is_ok() => {
            ParseError::Invalid("the body is JSON but not a JSON-RPC object")
        }
        _ => ParseError::Json(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kinds() {
        let r = Message::parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert_eq!(r.kind(), Kind::Request);
        assert_eq!(r.id_raw(), Some("7"));
        let n =
            Message::parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind(), Kind::Notification);
        let s = Message::parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(s.kind(), Kind::Response);
        let e = Message::parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#)
            .unwrap();
        assert_eq!(e.error_code(), Some(-1));
    }

    #[test]
    fn rejects_bad_input_with_the_right_code() {
        assert_eq!(
            Message::parse("{nope").unwrap_err().code(),
            codes::PARSE_ERROR
        );
        assert_eq!(
            Message::parse("[1]").unwrap_err().code(),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            Message::parse("42").unwrap_err().code(),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            Message::parse(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#)
                .unwrap_err()
                .code(),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            Message::parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .unwrap_err()
                .code(),
            codes::INVALID_REQUEST
        );
        assert_eq!(
            Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#)
                .unwrap_err()
                .code(),
            codes::INVALID_REQUEST
        );
    }

    #[test]
    fn with_id_keeps_every_other_byte() {
        let text = r#"{ "jsonrpc": "2.0",  "id" : "orig-1", "method":"x/unknown", "params":{"_meta":{"z":1},"weird":[1.50, 1e3]}, "extra": true }"#;
        let m = Message::parse(text).unwrap();
        let r = m.with_id("42");
        assert_eq!(r.as_str(), text.replace(r#""orig-1""#, "42"));
        assert_eq!(
            r.params_raw(),
            Some(r#"{"_meta":{"z":1},"weird":[1.50, 1e3]}"#)
        );
        let back = r.with_id(r#""orig-1""#);
        assert_eq!(back.as_str(), text);
    }

    #[test]
    fn replaces_a_nested_value_and_nothing_else() {
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken": 7 ,"z":[1]}}}"#;
        let m = Message::parse(text).unwrap();
        let span = m.params_span(&["_meta", "progressToken"]).unwrap();
        assert_eq!(&m.as_str()[span.clone()], "7");
        let r = m.with_replaced(span, r#""p-1""#);
        assert_eq!(r.as_str(), text.replace(" 7 ", r#" "p-1" "#));
        assert_eq!(r.progress_token().as_deref(), Some(r#""p-1""#));
        assert!(m.params_span(&["_meta", "missing"]).is_none());
    }

    #[test]
    fn inserts_meta_entries_and_overwrites_spoofed_ones() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1}}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1}}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":2}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1},"a":2}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"x":0}}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1,"x":0}}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":"spoofed"}}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1}}}"#,
            ),
        ];
        for (input, expected) in cases {
            let m = Message::parse(input).unwrap().with_meta_entry("k", "1");
            assert_eq!(m.as_str(), expected);
            assert_eq!(m.meta_field("k").as_deref(), Some("1"));
        }
    }

    /// A sender cannot keep its own value under the key, whatever the shape
    /// of its `_meta` (issue 9: a `null`, string or array `_meta`, or a
    /// second `_meta`, left a shared server with the client's identity or
    /// none), for first-wins and last-wins parsers alike.
    #[test]
    fn meta_entry_cannot_be_smuggled_past_the_rewrite() {
        let cases = [
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":null,"a":2}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[1,2]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"x":0},"_meta":{"k":"evil"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":"evil","k":"evil2"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_\u006deta":{"k":"evil"},"_meta":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"\u006b":"evil"}}}"#,
        ];
        for input in cases {
            let m = Message::parse(input)
                .unwrap()
                .with_meta_entry("k", r#"{"u":1}"#);
            let text = m.as_str();
            // Every `_meta` and every `k` in the result: exactly one each.
            let params = object_entries(m.params_raw().unwrap()).unwrap();
            let metas: Vec<_> = params.iter().filter(|(k, _)| k == "_meta").collect();
            assert_eq!(metas.len(), 1, "{input} became {text}");
            let ks: Vec<_> = object_entries(metas[0].1.get())
                .unwrap()
                .into_iter()
                .filter(|(k, _)| k == "k")
                .map(|(_, v)| v.get().to_owned())
                .collect();
            assert_eq!(ks, vec![r#"{"u":1}"#.to_owned()], "{input} became {text}");
            assert!(Message::parse(text).is_ok(), "{text}");
        }
        // The other entries keep their text.
        let m = Message::parse(cases[0]).unwrap().with_meta_entry("k", "1");
        assert_eq!(m.params_raw(), Some(r#"{"_meta":{"k":1},"a":2}"#));
        let m = Message::parse(cases[3]).unwrap().with_meta_entry("k", "1");
        assert_eq!(m.params_raw(), Some(r#"{"_meta":{"k":1}}"#));
    }

    #[test]
    fn reads_meta_fields() {
        let m = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"tok"}}}"#,
        )
        .unwrap();
        assert_eq!(m.progress_token().as_deref(), Some(r#""tok""#));
        assert_eq!(m.meta_field("missing"), None);
    }

    #[test]
    fn builds_responses() {
        let e = Message::error_response(Some("\"x\""), codes::METHOD_NOT_FOUND, "nope", None);
        assert_eq!(e.id_raw(), Some("\"x\""));
        assert_eq!(e.error_code(), Some(codes::METHOD_NOT_FOUND));
        let ok = Message::result_response("3", &serde_json::json!({"a":1}));
        assert_eq!(ok.kind(), Kind::Response);
        assert_eq!(ok.id_raw(), Some("3"));
    }
}
