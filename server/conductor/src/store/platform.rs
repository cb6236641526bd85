//! The whole conductor state, for the platform backup (`aerekos backup`) and its restore.

use super::{Db, DbResult};

/// Copies the database to `to` online: one read transaction, writers carry on.
pub async fn snapshot(db: &Db, to: &std::path::Path) -> DbResult<()> {
    sqlx::query("VACUUM INTO ?")
        .bind(to.display().to_string())
        .execute(&db.write)
        .await
        .map(|_| ())
}

/// Makes a restored database fit a cluster of new machines: the old workers (and what was
/// placed on them), the volume records naming them and deployments' worker lists are forgotten, so
/// the workers that join adopt the restored volumes; what was under way is ended.
pub async fn forget_machines(db: &Db) -> DbResult<()> {
    let mut tx = db.write.begin().await?;
    for statement in [
        "DELETE FROM instances",
        "DELETE FROM workers",
        "DELETE FROM volumes",
        "UPDATE services SET deployment = json_set(deployment, '$.worker_ids', json('[]')) WHERE deployment IS NOT NULL",
        "UPDATE volume_moves SET state = 'failed', error = 'the platform was restored from a backup' WHERE state NOT IN ('done', 'failed')",
        "UPDATE backups SET state = 'failed', error = 'the platform was restored from a backup' WHERE state = 'running'",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}
