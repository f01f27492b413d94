//! Server-sent events, the server half: encoding events and keep-alives.
//!
//! Encoding is a few lines, so it is written here; decoding (the client half,
//! used by the shim) uses the `eventsource-stream` crate.

use bytes::Bytes;

/// One `message` event carrying a JSON-RPC message, with an optional id.
pub fn event(id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: message\n");
    // JSON-RPC messages we forward never contain raw newlines (stdio framing
    // forbids them and serde never writes them), but guard anyway: each line
    // of a multi-line payload needs its own `data:` field.
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The priming event (2025-11-25, SEP-1699): an id with empty data, so the
/// client can resume from it, plus the reconnection delay.
pub fn priming(id: &str, retry_ms: u64) -> Bytes {
    Bytes::from(format!("id: {id}\nretry: {retry_ms}\ndata: \n\n"))
}

/// Tells the client how long to wait before reconnecting, sent before the
/// server closes a connection whose stream is not finished.
pub fn retry(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

/// A comment line; keeps idle connections (and proxies) from timing out.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_events() {
        assert_eq!(
            &event(Some("1_2"), "{}")[..],
            b"id: 1_2\nevent: message\ndata: {}\n\n"
        );
        assert_eq!(
            &event(None, "a\nb")[..],
            b"event: message\ndata: a\ndata: b\n\n"
        );
        assert_eq!(&priming("1_0", 500)[..], b"id: 1_0\nretry: 500\ndata: \n\n");
    }
}
