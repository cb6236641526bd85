//! The audit log: one record per use of a key (who, key, version, operation, request id, outcome),
//! never plaintext or key material.
//!
//! Records are group-committed: a writer task takes every record waiting, stores them in one
//! transaction, then answers each request. A request is answered only after its record is stored,
//! and thousands of requests a second share a handful of commits.

use aerekos_common::{ApiError, ApiResult, db::Db};
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, AuditRow};

const MAX_BATCH: usize = 2048;

/// What a key use is recorded as.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    pub operation: &'static str,
    pub request_id: String,
    /// `ok`, or the error code of a refusal.
    pub outcome: String,
    pub detail: Option<String>,
}

type Job = (AuditEntry, oneshot::Sender<bool>);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
}

impl AuditLog {
    /// Starts the writer; it ends when every `AuditLog` clone is dropped.
    pub fn start(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Job>(16 * 1024);
        let task = tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                let now = aerekos_common::db::now_ms();
                let rows: Vec<AuditRow> = jobs.iter().map(|(e, _)| AuditRow::from_entry(e, now)).collect();
                let stored = match store::insert_audit(&db, &rows).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, records = rows.len(), "writing audit records failed");
                        false
                    }
                };
                for (_, done) in jobs.drain(..) {
                    let _ = done.send(stored);
                }
            }
        });
        (Self { tx }, task)
    }

    /// Stores `entry`; an operation whose use cannot be recorded does not happen (503).
    pub async fn record(&self, entry: AuditEntry) -> ApiResult<()> {
        let (done, stored) = oneshot::channel();
        let unavailable = || ApiError::unavailable("audit_unavailable", "the audit log cannot be written; the operation was not performed");
        self.tx.send((entry, done)).await.map_err(|_| unavailable())?;
        match stored.await {
            Ok(true) => Ok(()),
            _ => Err(unavailable()),
        }
    }
}
