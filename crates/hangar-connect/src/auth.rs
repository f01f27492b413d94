//! Sign-in. OAuth is not implemented yet: this authorizer is the seam it
//! will fill. On a 401 it says so on stderr (once) and fails the request, so
//! the local client gets a JSON-RPC error instead of waiting forever.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use mcp_transport::client::{AuthError, Authorizer, Challenge};

/// The authorizer until OAuth sign-in exists.
#[derive(Debug, Default)]
pub struct SignInNotImplemented {
    /// An `Authorization` header was given with `--header` (and refused).
    has_static_token: bool,
    reported: AtomicBool,
}

impl SignInNotImplemented {
    pub fn new(has_static_token: bool) -> SignInNotImplemented {
        SignInNotImplemented {
            has_static_token,
            reported: AtomicBool::new(false),
        }
    }

    fn explain(&self, challenge: &Challenge) -> String {
        let refused = if self.has_static_token {
            "the server refused the Authorization header given with --header (HTTP 401)"
        } else {
            "the server requires sign-in (HTTP 401)"
        };
        let detail = challenge
            .param("error_description")
            .or(challenge.error())
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        format!(
            "{refused}{detail}; OAuth sign-in is not implemented yet in hangar connect: \
             pass a valid token with --header \"Authorization: Bearer ${{TOKEN}}\""
        )
    }
}

#[async_trait]
impl Authorizer for SignInNotImplemented {
    async fn unauthorized(&self, challenge: &Challenge) -> Result<(), AuthError> {
        let why = self.explain(challenge);
        if !self.reported.swap(true, Ordering::SeqCst) {
            tracing::error!("{why}");
            if let Some(metadata) = challenge.resource_metadata() {
                tracing::info!("the server's authorization metadata: {metadata}");
            }
        }
        Err(AuthError::Unavailable(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn explains_what_to_do() {
        let a = SignInNotImplemented::new(false);
        let c = Challenge::new(401, Some("Bearer resource_metadata=\"x\""), String::new());
        let e = a.unauthorized(&c).await.unwrap_err().to_string();
        assert!(e.contains("requires sign-in"), "{e}");
        assert!(e.contains("not implemented yet"), "{e}");
        let b = SignInNotImplemented::new(true);
        let c = Challenge::new(401, Some("Bearer error=\"invalid_token\""), String::new());
        let e = b.unauthorized(&c).await.unwrap_err().to_string();
        assert!(e.contains("refused the Authorization header"), "{e}");
        assert!(e.contains("invalid_token"), "{e}");
    }
}
