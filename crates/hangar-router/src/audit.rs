//! The audit log of tool calls, written off the request path.
//!
//! Each record goes into a bounded queue; one writer task stores what
//! arrives within a short window in a single transaction, so many calls
//! share one write instead of paying one each.

use std::sync::Arc;
use std::time::Duration;

use hangar_store::{AuditEntry, Store};
use tokio::sync::mpsc;

/// Records queued beyond this are dropped (with a warning): an audit
/// backlog must not grow without bound or slow tool calls down.
const QUEUE: usize = 16 * 1024;
/// Most records written in one transaction.
const BATCH: usize = 512;
/// How long the writer waits for more records before writing a batch: a
/// record reaches the store at most this late, and a busy router writes a
/// few times a second instead of once per call.
const LINGER: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEntry>,
}

impl AuditLog {
    /// Starts the writer task.
    pub fn start(store: Arc<Store>) -> AuditLog {
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(entry)) => batch.push(entry),
                        Ok(None) | Err(_) => break,
                    }
                }
                if let Err(e) = store.audit_many(&batch).await {
                    tracing::warn!(records = batch.len(), "audit write failed: {e}");
                }
                batch.clear();
            }
        });
        AuditLog { tx }
    }

    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(entry).is_err() {
            tracing::warn!("audit queue full; a tool-call record was dropped");
        }
    }
}
