//! Which era the kept child speaks, and the legacy session the bridge opens
//! on it.
//!
//! A dual-era stdio client probes with `server/discover` and falls back to
//! `initialize` on anything that is not a modern answer, or on silence (the
//! 2026-07-28 stdio transport). That is what happens here, once per kept
//! child: a modern answer means modern requests pass through untouched; any
//! other answer means the wrap opens one legacy session itself and bridges.

use std::time::Duration;

use mcp_transport::era::{self, meta};
use mcp_transport::{Message, OpenError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::child::Child;

/// How long the probe waits for an answer before taking silence as legacy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a legacy server gets to answer `initialize` (it may be an `npx`
/// that downloads itself first).
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the kept child's first answer said.
pub enum Probe {
    /// It answered `server/discover` with a modern version.
    Modern,
    /// It did not; the legacy handshake comes next.
    Legacy,
}

/// The capabilities the bridge declares for every modern client behind it:
/// whatever a modern client may be asked through an input request. Whether
/// the client of one request really has them is checked per request.
fn bridge_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}})
}

fn client_info() -> Value {
    json!({"name": "hangar-wrap", "version": env!("CARGO_PKG_VERSION")})
}

/// What the legacy child said about itself in `initialize`.
#[derive(Debug, Clone)]
pub struct Init {
    pub protocol_version: String,
    pub capabilities: Value,
    /// Raw JSON, put in every modern result's `_meta`.
    pub server_info: String,
    pub instructions: Option<Value>,
}

/// Asks the child `server/discover`.
pub async fn probe(child: &Child) -> Probe {
    let request = json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {
        "_meta": {
            meta::PROTOCOL_VERSION: era::LATEST,
            meta::CLIENT_CAPABILITIES: bridge_capabilities(),
            meta::CLIENT_INFO: client_info(),
        }
    }});
    let key = child.attach(None);
    // Nothing the child sends meanwhile is for anyone; a dropped receiver
    // makes the child's reader discard it instead of waiting.
    let (events, _) = mpsc::channel(1);
    let answer = tokio::time::timeout(
        PROBE_TIMEOUT,
        child.request_as(key, Message::from_value(&request), events, false),
    )
    .await;
    child.detach(key);
    match answer {
        Ok(response) if is_modern_discover(&response) => Probe::Modern,
        Ok(_) => Probe::Legacy,
        Err(_) => {
            tracing::debug!(pid = ?child.pid(), "no answer to server/discover; trying initialize");
            Probe::Legacy
        }
    }
}

fn is_modern_discover(response: &Message) -> bool {
    let value = response.to_value();
    value
        .pointer("/result/supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|versions| {
            versions
                .iter()
                .filter_map(Value::as_str)
                .any(|v| era::MODERN_VERSIONS.contains(&v))
        })
}

/// Opens the bridge's legacy session: `initialize`, then `notifications/initialized`.
pub async fn initialize(child: &Child) -> Result<Init, OpenError> {
    let request = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": era::LATEST_LEGACY,
        "capabilities": bridge_capabilities(),
        "clientInfo": client_info(),
    }});
    let key = child.attach(None);
    let (events, _) = mpsc::channel(1);
    let answer = tokio::time::timeout(
        INITIALIZE_TIMEOUT,
        child.request_as(key, Message::from_value(&request), events, false),
    )
    .await;
    child.detach(key);
    let unavailable = |why: String| OpenError::Unavailable(why);
    let response = answer.map_err(|_| {
        unavailable(format!(
            "the MCP server did not answer initialize within {} s",
            INITIALIZE_TIMEOUT.as_secs()
        ))
    })?;
    let value = response.to_value();
    if let Some(error) = value.get("error") {
        return Err(unavailable(format!(
            "the MCP server refused initialize: {}",
            error.get("message").and_then(Value::as_str).unwrap_or("?")
        )));
    }
    let result = value.get("result").cloned().unwrap_or_default();
    let Some(protocol_version) = result.get("protocolVersion").and_then(Value::as_str) else {
        return Err(unavailable(
            "the MCP server answered initialize without a protocolVersion".into(),
        ));
    };
    let init = Init {
        protocol_version: protocol_version.to_owned(),
        capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
        server_info: result
            .get("serverInfo")
            .cloned()
            .unwrap_or(json!({"name": "unknown", "version": "unknown"}))
            .to_string(),
        instructions: result.get("instructions").cloned(),
    };
    child
        .notify(Message::from_value(
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ))
        .await;
    tracing::info!(
        pid = ?child.pid(),
        version = %init.protocol_version,
        "the MCP server speaks only the legacy protocol; bridging modern requests to one legacy session"
    );
    Ok(init)
}
