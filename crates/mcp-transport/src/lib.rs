//! The MCP protocol layer shared by every Hangar component: the JSON-RPC
//! envelope ([`message`]), protocol eras ([`era`]), multi-round-trip
//! requests ([`mrtr`]), SSE encoding ([`sse`]),
//! request guards ([`guard`]) and the Streamable HTTP server half
//! ([`server`]) behind the [`service::Service`] seam, and (feature `client`)
//! the client half (`client`).

#[cfg(feature = "client")]
pub mod client;
pub mod era;
pub mod guard;
pub mod lines;
pub mod listen;
pub mod message;
pub mod mrtr;
pub mod server;
pub mod service;
pub mod sse;
pub mod stream;

pub use message::{codes, Kind, Message};

/// An error and its causes on one line (`a: b: c`), skipping a cause whose
/// text the line already holds (many errors repeat their source's message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
pub use server::{CallerCheck, Limits, ServerConfig, StreamableHttp, IDENTITY_META};
pub use service::{EventSender, OpenError, RequestContext, Service, Session, UnsolicitedSender};
