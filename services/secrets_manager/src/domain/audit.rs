//! The audit log: one record per read or change of a secret, refused ones too (who, which secret
//! and version, what came of it), never a value. Stored before the request is answered
//! ([`GroupCommit`]); what cannot be recorded does not happen.

use aerekos_common::{ApiResult, db::Db, group_commit::GroupCommit};

use crate::store::{self, AuditRow};

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub secret: Option<String>,
    pub version: Option<u64>,
    pub request_id: String,
    /// `ok`, or the error code of a refusal.
    pub outcome: String,
}

#[derive(Clone)]
pub struct AuditLog(GroupCommit<AuditEntry>);

impl AuditLog {
    pub fn start(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (log, task) = GroupCommit::start(move |entries: Vec<AuditEntry>| {
            let db = db.clone();
            async move {
                let at = aerekos_common::db::now_ms();
                let rows: Vec<AuditRow> = entries
                    .into_iter()
                    .map(|e| AuditRow {
                        id: 0,
                        at,
                        actor: e.actor,
                        action: e.action.to_owned(),
                        secret: e.secret,
                        version: e.version.map(|v| v as i64),
                        request_id: e.request_id,
                        outcome: e.outcome,
                    })
                    .collect();
                store::insert_audit(&db, &rows).await
            }
        });
        (Self(log), task)
    }

    pub async fn record(&self, entry: AuditEntry) -> ApiResult<()> {
        self.0.record(entry).await
    }
}
