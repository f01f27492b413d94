//! `hangar-everything`: Hangar's reference MCP server.
//!
//! Every conformance fixture of the 2025-11-25 and 2026-07-28 requirement
//! sets, plus the demo tools `echo`, `add`, `whoami` and `sleep`. It serves
//! over stdio ([`stdio::serve`]) or as a [`Service`] behind the shared
//! Streamable HTTP transport.

pub mod app;
pub mod catalog;
pub mod error;
pub mod modern_only;
pub mod mrtr;
pub mod stdio;

use std::sync::Arc;

use async_trait::async_trait;
use mcp_transport::{OpenError, RequestContext, Service, Session, UnsolicitedSender};

pub use app::{Conn, Identity, Shared};

/// The HTTP face: a [`Conn`] per legacy session, one shared for modern requests.
pub struct Everything {
    shared: Arc<Shared>,
    stateless: Arc<Conn>,
}

impl Everything {
    pub fn new(identity: Identity) -> Everything {
        let shared = Shared::new(identity);
        let stateless = Arc::new(Conn::new(shared.clone(), None));
        Everything { shared, stateless }
    }

    /// A server that speaks only 2026-07-28: `server/discover` lists no
    /// legacy version. Put [`modern_only::refuse_legacy`] in front of the
    /// transport so legacy requests are refused too.
    pub fn modern_only(self) -> Everything {
        self.shared.set_modern_only();
        self
    }
}

#[async_trait]
impl Service for Everything {
    async fn open_session(
        &self,
        _ctx: &RequestContext,
        unsolicited: UnsolicitedSender,
    ) -> Result<Arc<dyn Session>, OpenError> {
        Ok(Arc::new(Conn::new(self.shared.clone(), Some(unsolicited))))
    }

    async fn stateless(&self, _ctx: &RequestContext) -> Result<Arc<dyn Session>, OpenError> {
        Ok(self.stateless.clone())
    }
}
