//! The audit log: one record per use of a key (who, key, version, operation, request id, outcome),
//! never plaintext or key material.
//!
//! Records are group-committed: a writer task takes every record waiting, stores them in one
//! transaction, then answers each request. A request is answered only after its record is stored,
//! and thousands of requests a second share a handful of commits.

use aerekos_common::{ApiResult, db::Db, group_commit::GroupCommit};

use crate::store::{self, AuditRow};

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

/// key_manager's audit log: [`GroupCommit`] of [`AuditEntry`]s into the `audit` table.
#[derive(Clone)]
pub struct AuditLog(GroupCommit<AuditEntry>);

impl AuditLog {
    /// Starts the writer; it ends when every `AuditLog` clone is dropped.
    pub fn start(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (log, task) = GroupCommit::start(move |entries: Vec<AuditEntry>| {
            let db = db.clone();
            async move {
                let now = aerekos_common::db::now_ms();
                let rows: Vec<AuditRow> = entries
                    .iter()
                    .map(|e| AuditRow::from_entry(e, now))
                    .collect();
                store::insert_audit(&db, &rows).await
            }
        });
        (Self(log), task)
    }

    /// Stores `entry`; an operation whose use cannot be recorded does not happen (503).
    pub async fn record(&self, entry: AuditEntry) -> ApiResult<()> {
        self.0.record(entry).await
    }
}
