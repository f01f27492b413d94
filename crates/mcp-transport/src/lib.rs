//! The MCP protocol layer shared by every Hangar component: the JSON-RPC
//! envelope ([`message`]), protocol eras ([`era`]), SSE encoding ([`sse`]),
//! request guards ([`guard`]) and the Streamable HTTP server half
//! ([`server`]) behind the [`service::Service`] seam, and (feature `client`)
//! the client half (`client`).

#[cfg(feature = "client")]
pub mod client;
pub mod era;
pub mod guard;
pub mod lines;
pub mod message;
pub mod server;
pub mod service;
pub mod sse;
pub mod stream;

pub use message::{codes, Kind, Message};
pub use server::{CallerCheck, Limits, ServerConfig, StreamableHttp, IDENTITY_META};
pub use service::{EventSender, OpenError, RequestContext, Service, Session, UnsolicitedSender};
