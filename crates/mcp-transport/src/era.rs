//! Protocol versions and the two eras of MCP.
//!
//! *Legacy* (≤ 2025-11-25) is stateful: an `initialize` handshake opens a
//! session. *Modern* (2026-07-28) is stateless: every request names its
//! version in `params._meta`. A dual-era endpoint decides the era per request
//! from that `_meta` and the `MCP-Protocol-Version` header, never from the
//! method name (the modern conformance leg sends `initialize` and expects the
//! modern "method not found").

use base64::Engine;

use crate::message::Message;

/// Legacy protocol versions, oldest first.
pub const LEGACY_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Modern protocol versions, oldest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// The newest legacy version: what a legacy server answers when it does not know the client's.
pub const LATEST_LEGACY: &str = "2025-11-25";
/// The newest version.
pub const LATEST: &str = "2026-07-28";
/// What a request without a version header is assumed to speak (spec, 2025-06-18 transport).
pub const DEFAULT_HEADERLESS: &str = "2025-03-26";

/// `_meta` keys of the modern era.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
}

/// Log levels, least severe first (the syslog names MCP uses). A log message
/// goes out when its level ranks at or above the level asked for
/// (`logging/setLevel` in the legacy era, `_meta` logLevel in the modern).
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a log level in [`LOG_LEVELS`], `None` for an unknown one.
pub fn log_level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Legacy,
    Modern,
}

pub fn is_known_version(v: &str) -> bool {
    LEGACY_VERSIONS.contains(&v) || MODERN_VERSIONS.contains(&v)
}

pub fn is_modern_version(v: &str) -> bool {
    // Versions are dates, so any version on or after the first modern one is modern,
    // including ones we do not know yet (they get -32022, not legacy handling).
    v >= MODERN_VERSIONS[0]
}

/// The era of one incoming message, from its `_meta` and the version header.
pub fn detect(message: &Message, version_header: Option<&str>) -> Era {
    if version_header.is_some_and(is_modern_version) {
        return Era::Modern;
    }
    if message.meta_field(meta::PROTOCOL_VERSION).is_some() {
        return Era::Modern;
    }
    Era::Legacy
}

/// A modern request's fault, as a JSON-RPC error code, message and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: i64,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

/// The version a modern request declares in `_meta`, or -32602 when the
/// required `_meta` keys (protocol version, client capabilities) are missing.
pub fn declared_version(message: &Message) -> Result<String, Fault> {
    let version = message
        .meta_field(meta::PROTOCOL_VERSION)
        .and_then(|raw| serde_json::from_str::<String>(&raw).ok());
    match version {
        Some(v) if message.meta_field(meta::CLIENT_CAPABILITIES).is_some() => Ok(v),
        _ => Err(Fault {
            code: crate::codes::INVALID_PARAMS,
            message: format!(
                "Invalid params: _meta must carry \"{}\" and \"{}\"",
                meta::PROTOCOL_VERSION,
                meta::CLIENT_CAPABILITIES
            ),
            data: None,
        }),
    }
}

/// Every version a dual-era endpoint speaks, newest first (what
/// `server/discover` lists and -32022 names).
pub fn supported_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .rev()
        .chain(LEGACY_VERSIONS.iter().rev())
        .copied()
        .collect()
}

/// -32022 unless `version` is a modern version we speak.
pub fn check_supported(version: &str) -> Result<(), Fault> {
    if MODERN_VERSIONS.contains(&version) {
        return Ok(());
    }
    Err(Fault {
        code: crate::codes::UNSUPPORTED_PROTOCOL_VERSION,
        message: format!("Unsupported protocol version: {version}"),
        data: Some(serde_json::json!({ "supported": supported_versions(), "requested": version })),
    })
}

/// Decodes a header value that may use the `=?base64?…?=` form (2026-07-28, SEP-2243).
/// Returns `None` when the encoded form is malformed.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_owned()),
    }
}

/// Encodes a value for an `Mcp-*` header, using base64 when it is not header-safe
/// (or looks like the sentinel itself).
pub fn encode_header_value(value: &str) -> String {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?base64?");
    if safe {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// For methods whose target is named in `Mcp-Name`, the body field that names it.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_era_by_meta_or_header_not_method() {
        let legacy =
            Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
                .unwrap();
        assert_eq!(detect(&legacy, None), Era::Legacy);
        assert_eq!(detect(&legacy, Some("2025-06-18")), Era::Legacy);
        assert_eq!(detect(&legacy, Some("2026-07-28")), Era::Modern);
        let modern = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(detect(&modern, None), Era::Modern);
    }

    #[test]
    fn header_values_round_trip() {
        assert_eq!(encode_header_value("echo"), "echo");
        let odd = "héllo\nworld";
        let enc = encode_header_value(odd);
        assert!(enc.starts_with("=?base64?"));
        assert_eq!(decode_header_value(&enc).as_deref(), Some(odd));
        assert_eq!(decode_header_value("=?base64?!!!?="), None);
        assert!(encode_header_value("=?base64?x?=").starts_with("=?base64?"));
    }
}
