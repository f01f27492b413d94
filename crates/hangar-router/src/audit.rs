//! The audit log of tool calls, written off the request path.
//!
//! Each record goes into a bounded queue; one writer task stores whatever
//! has queued up in a single transaction, so under load many calls share
//! one disk flush instead of paying one each.

use std::sync::Arc;

use hangar_store::{AuditEntry, Store};
use tokio::sync::mpsc;

/// Records queued beyond this are dropped (with a warning): an audit
/// backlog must not grow without bound or slow tool calls down.
const QUEUE: usize = 16 * 1024;
/// Most records written in one transaction.
const BATCH: usize = 512;

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
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
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
