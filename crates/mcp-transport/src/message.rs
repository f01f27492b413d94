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

/// The members of a JSON-RPC message, found with the same key rules as
/// [`member`]: an unknown member is skipped whatever its name (a lone
/// surrogate in it included), a repeated envelope member is an error.
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<Text<'a>>,
    id: Option<&'a RawValue>,
    method: Option<Text<'a>>,
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    /// An unknown member's name has a control character: keys are read
    /// without string validation, so whether it was raw (not JSON) or
    /// escaped (fine) is checked afterwards, on this rare path only.
    control_in_key: bool,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                fn once<T, E: Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
                    match slot.replace(value) {
                        None => Ok(()),
                        Some(_) => Err(E::custom("a repeated member")),
                    }
                }
                let mut env = Envelope::default();
                while let Some(KeyBytes(key)) = map.next_key()? {
                    match &*key {
                        b"jsonrpc" => once(&mut env.jsonrpc, map.next_value()?)?,
                        b"id" => once(&mut env.id, map.next_value()?)?,
                        b"method" => once(&mut env.method, map.next_value()?)?,
                        b"params" => once(&mut env.params, map.next_value()?)?,
                        b"result" => once(&mut env.result, map.next_value()?)?,
                        b"error" => once(&mut env.error, map.next_value()?)?,
                        other => {
                            env.control_in_key |= other.iter().any(|&b| b < 0x20);
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
}

/// An object key as bytes: serde_json hands keys over unescaped but,
/// unlike a `str`, without refusing lone surrogates (they become WTF-8,
/// which never equals a valid key).
struct KeyBytes<'de>(Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for KeyBytes<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KeyBytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(KeyBytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(KeyBytes(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyBytes(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyBytes(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A JSON string, borrowed from the text when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Byte range of `inner` inside `outer`; `inner` must borrow from `outer`.
fn span_of(outer: &str, inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// The whitespace JSON allows between tokens (RFC 8259 §2).
const JSON_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// A member of a JSON object, found the way the peers behind a proxy read
/// it (JavaScript's `JSON.parse`, Python, Go, `serde_json::Value`): keys are
/// compared after unescaping (`"\u005fmeta"` is `_meta`), the last of
/// repeated keys wins, and nothing else in the object needs to be valid
/// Unicode or shallow (a lone surrogate or deep nesting elsewhere must not
/// hide a member a peer will see).
struct Member<'a> {
    /// The raw JSON of the last member with the key.
    last: Option<&'a str>,
    /// How many members have the key (more than one is ambiguous to peers
    /// that keep the first).
    count: usize,
}

/// Looks `key` up in `object` (raw JSON); `None` when it is not an object.
fn member<'a>(object: &'a str, key: &str) -> Option<Member<'a>> {
    use serde::de::{DeserializeSeed, MapAccess, Visitor};

    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Member<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member<'de>, A::Error> {
            let mut found = Member {
                last: None,
                count: 0,
            };
            while let Some(k) = map.next_key::<KeyBytes<'de>>()? {
                let value: &'de RawValue = map.next_value()?;
                if *k.0 == *self.0.as_bytes() {
                    found.last = Some(value.get());
                    found.count += 1;
                }
            }
            Ok(found)
        }
    }
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Member<'de>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Member<'de>, D::Error> {
            d.deserialize_map(self)
        }
    }

    let mut de = serde_json::Deserializer::from_str(object);
    Find(key).deserialize(&mut de).ok()
}

impl Message {
    /// Parses one JSON-RPC message. Batches (arrays) are refused: they were
    /// removed from MCP in 2025-06-18.
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Message, ParseError> {
        let text: Arc<str> = text.into();
        // JSON whitespace only: other Unicode spaces make the body not JSON
        // (-32700), not a batch.
        if text.trim_start_matches(JSON_WHITESPACE).starts_with('[') {
            return Err(match serde_json::from_str::<&RawValue>(&text) {
                Ok(_) => ParseError::Invalid("JSON-RPC batches are not supported"),
                Err(e) => ParseError::Json(e.to_string()),
            });
        }
        let env: Envelope<'_> =
            serde_json::from_str(&text).map_err(|e| classify_serde_error(&text, e))?;
        if env.control_in_key {
            serde_json::from_str::<&RawValue>(&text)
                .map_err(|e| ParseError::Json(e.to_string()))?;
        }
        if env.jsonrpc.as_ref().map(|v| v.0.as_ref()) != Some("2.0") {
            return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let is_null = |raw: &&RawValue| raw.get() == "null";
        let id = match env.id.filter(|raw| !is_null(raw)) {
            Some(raw) => {
                let first = raw.get().as_bytes()[0];
                if !(first == b'"' || first == b'-' || first.is_ascii_digit()) {
                    return Err(ParseError::Invalid("\"id\" must be a string or a number"));
                }
                Some(span_of(&text, raw.get()))
            }
            None => None,
        };
        // `"result": null` is a result; `"error": null` is no error (as
        // JSON-RPC 1.0 peers write it next to their result).
        let answer = (
            env.result.is_some(),
            env.error.filter(|e| !is_null(e)).is_some(),
        );
        let kind = match (&env.method, &id, answer) {
            (Some(_), Some(_), (false, false)) => Kind::Request,
            (Some(_), None, (false, false)) => Kind::Notification,
            (None, _, (true, false) | (false, true)) => Kind::Response,
            _ => {
                return Err(ParseError::Invalid(
                    "not a request, notification or response",
                ))
            }
        };
        let method = env.method.map(|m| Arc::from(m.0.as_ref()));
        let params = env
            .params
            .filter(|p| !is_null(p))
            .map(|p| span_of(&text, p.get()));
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

    /// The message's bytes, sharing its text (no copy: an answer of many
    /// megabytes becomes an HTTP body as it is).
    pub fn to_bytes(&self) -> bytes::Bytes {
        struct Text(Arc<str>);
        impl AsRef<[u8]> for Text {
            fn as_ref(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }
        bytes::Bytes::from_owner(Text(self.text.clone()))
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
    /// `params`, e.g. `["_meta", "progressToken"]`, read as the receiving
    /// peer reads it (the last of repeated keys, escapes decoded).
    pub fn params_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let mut current: &str = self.params_raw()?;
        for key in path {
            current = member(current, key)?.last?;
        }
        // Every level borrows from `params`, which borrows from the text.
        Some(span_of(&self.text, current))
    }

    /// The raw JSON of `params[key]`, if `params` is an object that has it.
    pub fn param_raw(&self, key: &str) -> Option<&str> {
        member(self.params_raw()?, key)?.last
    }

    /// `params[key]` when it is a string (`params.name` of `tools/call`).
    /// Only that member is decoded: the rest of `params` may be as deep or
    /// as odd as the receiving peer accepts, it cannot hide the name (the
    /// router's per-tool scopes depend on it).
    pub fn param_str(&self, key: &str) -> Option<String> {
        serde_json::from_str(self.param_raw(key)?).ok()
    }

    /// A copy with the bytes at `span` (from [`Message::params_span`])
    /// replaced by `raw` JSON; every other byte is kept.
    pub fn with_replaced(&self, span: Range<usize>, raw: &str) -> Message {
        self.spliced(span, raw).unwrap_or_else(|_| self.clone())
    }

    /// The text with `span` replaced by `raw`, parsed again (re-deriving
    /// the spans is simpler than shifting each one).
    fn spliced(&self, span: Range<usize>, raw: &str) -> Result<Message, ParseError> {
        let mut text = String::with_capacity(self.text.len() + raw.len());
        text.push_str(&self.text[..span.start]);
        text.push_str(raw);
        text.push_str(&self.text[span.end..]);
        Message::parse(text)
    }

    /// A copy with `params._meta[key] = raw` (`raw` is valid JSON), replacing
    /// any value the sender put there; `params` and `_meta` are created when
    /// missing or `null`. Only the bytes of that one entry change.
    ///
    /// `Err` (the request's params are invalid, -32602) when the entry
    /// cannot be set so that every peer reads it: `params` or `_meta` is
    /// not an object, or `_meta` or the key is repeated (peers disagree on
    /// which one counts, so a client could hide its own value behind ours).
    pub fn with_meta_entry(&self, key: &str, raw: &str) -> Result<Message, &'static str> {
        const NOT_SET: &str = "params._meta could not be rewritten";
        let key_json = Value::String(key.to_owned()).to_string();
        fn unique(m: Member<'_>) -> Result<Option<&str>, &'static str> {
            match m.count {
                0 | 1 => Ok(m.last),
                _ => Err("a repeated member in params or params._meta"),
            }
        }
        let set = |span: Range<usize>, with: &str| self.spliced(span, with).map_err(|_| NOT_SET);
        // `{…}` at `span` gets `entry` as its first member.
        let prepend = |span: Range<usize>, entry: String| {
            let body = &self.text[span.start + 1..span.end - 1];
            let entry = if body.trim_matches(JSON_WHITESPACE).is_empty() {
                entry
            } else {
                format!("{entry},")
            };
            set(span.start + 1..span.start + 1, &entry)
        };
        let params = match self.params.clone() {
            Some(params) => params,
            None => {
                // No params, or `"params": null` (serde reads both as none).
                let found = member(&self.text, "params").ok_or(NOT_SET)?;
                let fresh = format!(r#"{{"_meta":{{{key_json}:{raw}}}}}"#);
                return match unique(found)? {
                    Some(null) => set(span_of(&self.text, null), &fresh),
                    None => {
                        let end = self.text.trim_end_matches(JSON_WHITESPACE).len() - 1;
                        set(end..end, &format!(r#","params":{fresh}"#))
                    }
                };
            }
        };
        let params_text = &self.text[params.clone()];
        let meta = member(params_text, "_meta").ok_or("params is not an object")?;
        let Some(meta_text) = unique(meta)? else {
            return prepend(params, format!(r#""_meta":{{{key_json}:{raw}}}"#));
        };
        let meta_span = span_of(&self.text, meta_text);
        if meta_text == "null" {
            return set(meta_span, &format!("{{{key_json}:{raw}}}"));
        }
        let entry = member(meta_text, key).ok_or("params._meta is not an object")?;
        match unique(entry)? {
            Some(old) => set(span_of(&self.text, old), raw),
            None => prepend(meta_span, format!("{key_json}:{raw}")),
        }
    }

    /// `params._meta.progressToken` as raw JSON, if the request asked for progress.
    pub fn progress_token(&self) -> Option<String> {
        self.meta_field("progressToken")
    }

    /// A field of `params._meta`, as raw JSON, read as the receiving peer
    /// reads it (see [`Message::params_span`]).
    pub fn meta_field(&self, key: &str) -> Option<String> {
        let params = self.params_raw()?;
        // Fast path: without `_meta` spelled out or an escape that could
        // spell it, there is nothing to find.
        if !params.contains("_meta") && !params.contains("\\u") {
            return None;
        }
        let meta = member(params, "_meta")?.last?;
        member(meta, key)?.last.map(str::to_owned)
    }
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
    // JSON of the wrong shape (or with a string Hangar must read that is not
    // valid Unicode) is an invalid request; only what is not JSON is -32700.
    if serde_json::from_str::<&RawValue>(text).is_ok() {
        ParseError::Invalid("the body is JSON but not a JSON-RPC message")
    } else {
        ParseError::Json(e.to_string())
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
            let m = Message::parse(input)
                .unwrap()
                .with_meta_entry("k", "1")
                .unwrap();
            assert_eq!(m.as_str(), expected);
            assert_eq!(m.meta_field("k").as_deref(), Some("1"));
        }
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

    // Found by fuzz/message: a body that is not JSON at all was answered
    // -32600 ("batches are not supported") when it began with `[`.
    #[test]
    fn a_broken_body_is_a_parse_error_even_when_it_looks_like_a_batch() {
        let broken = r#"[{"jsonrpc":"2.0","id":1,"meth:"do"ping"}]"#;
        assert_eq!(
            Message::parse(broken).unwrap_err().code(),
            codes::PARSE_ERROR
        );
        // Only JSON whitespace may come before a batch's `[`.
        assert_eq!(
            Message::parse("\u{85}[1]").unwrap_err().code(),
            codes::PARSE_ERROR
        );
        assert_eq!(
            Message::parse(" \r\n[1]").unwrap_err().code(),
            codes::INVALID_REQUEST
        );
    }

    // Found by fuzz/message: JSON whose member names Hangar could not
    // decode (a lone surrogate) was answered -32700, "not JSON". Such a
    // name is an unknown member like any other; `"result": null` is a
    // result (a peer would take it for one).
    #[test]
    fn envelopes_are_read_as_peers_read_them() {
        let odd_name = r#"{"jsonrpc":"2.0","id":null,"\ud800error":{"code":-32700,"message":"x"}}"#;
        assert_eq!(
            Message::parse(odd_name).unwrap_err().code(),
            codes::INVALID_REQUEST
        );
        let unknown = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","\ud800":1}"#);
        assert_eq!(unknown.unwrap().kind(), Kind::Request);
        let escaped_control = r#"{"jsonrpc":"2.0","id":1,"method":"ping","a\u0000":1}"#;
        assert_eq!(
            Message::parse(escaped_control).unwrap().kind(),
            Kind::Request
        );
        let raw_control = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"a\u{0}\":1}";
        assert_eq!(
            Message::parse(raw_control).unwrap_err().code(),
            codes::PARSE_ERROR
        );
        let null_result = Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":null}"#).unwrap();
        assert_eq!(null_result.kind(), Kind::Response);
        assert!(!null_result.is_error());
        let v1_style =
            Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":null}"#).unwrap();
        assert_eq!(v1_style.kind(), Kind::Response);
        for invalid in [
            r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":null}"#,
        ] {
            assert_eq!(
                Message::parse(invalid).unwrap_err().code(),
                codes::INVALID_REQUEST,
                "{invalid}"
            );
        }
    }

    // Found by fuzz/meta_rewrite: with `"params": null` the entry was not
    // set at all (the spliced text had two `params` and was dropped).
    #[test]
    fn meta_entries_go_into_null_params_and_null_meta() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1}}}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":null,"a":2}}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1},"a":2}}"#,
            ),
        ];
        for (input, expected) in cases {
            let m = Message::parse(input).unwrap();
            assert_eq!(m.with_meta_entry("k", "1").unwrap().as_str(), expected);
        }
    }

    // Found by fuzz/meta_rewrite: a client could keep its own value of the
    // entry (the identity the server injects) where peers would read it: a
    // lone surrogate in a key made the lookup fail, so ours was added in
    // front and theirs stayed last (what `JSON.parse` reads); a second
    // `_meta` got our entry while peers read the first or the last.
    #[test]
    fn a_client_cannot_shadow_a_meta_entry() {
        let spoofed = r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":"spoofed","\udead":0}}}"#;
        let m = Message::parse(spoofed).unwrap();
        assert_eq!(
            m.with_meta_entry("k", "1").unwrap().as_str(),
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":1,"\udead":0}}}"#
        );
        for ambiguous in [
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":"spoofed"},"_meta":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"k":"a","k":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":"k"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[{"_meta":{"k":"spoofed"}}]}"#,
        ] {
            let m = Message::parse(ambiguous).unwrap();
            assert!(m.with_meta_entry("k", "1").is_err(), "{ambiguous}");
        }
    }

    // `_meta` is found as a peer finds it: an escaped key is the same key,
    // and the last of repeated ones counts. (Before, a message whose
    // `_meta` was spelled `"\u005fmeta"` or repeated was legacy to
    // `era::detect` and modern to the server behind the proxy.)
    #[test]
    fn meta_fields_are_read_as_peers_read_them() {
        let escaped = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\u005fmeta":{"progressToken":7}}}"#,
        )
        .unwrap();
        assert_eq!(escaped.progress_token().as_deref(), Some("7"));
        let repeated = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{},"_meta":{"progressToken":8}}}"#,
        )
        .unwrap();
        assert_eq!(repeated.progress_token().as_deref(), Some("8"));
        let odd_key = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\ud800":1,"_meta":{"progressToken":9}}}"#,
        )
        .unwrap();
        assert_eq!(odd_key.progress_token().as_deref(), Some("9"));
        let span = odd_key.params_span(&["_meta", "progressToken"]).unwrap();
        assert_eq!(&odd_key.as_str()[span], "9");
    }
}
