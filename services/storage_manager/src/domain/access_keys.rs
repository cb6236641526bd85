//! S3 access key pairs: created and revoked by admins through the API, looked up by the S3
//! endpoint to check SigV4 signatures (which needs the secret itself, so it is stored; the
//! database lives in the service's private data directory). Every S3 request needs one, so the
//! active pairs are also kept in memory; this service is the only writer of its database, and the
//! map changes only after the database has.

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    db::{Db, from_ms, now_ms},
};
use rand::{Rng as _, distributions::Alphanumeric};

use crate::{
    model::AccessKey,
    store::{self, AccessKeyRow},
};

#[derive(Clone)]
struct ActiveKey {
    secret: String,
    owner: String,
}

pub struct AccessKeys {
    db: Db,
    /// Active (not revoked) key id → its secret and who created it.
    active: std::sync::RwLock<std::collections::HashMap<String, ActiveKey>>,
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(format!("database: {e}"))
}

impl AccessKeys {
    pub async fn load(db: Db) -> Result<Self, sqlx::Error> {
        let rows = store::list_access_keys(&db).await?;
        let active = rows
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| (r.id, ActiveKey { secret: r.secret, owner: r.created_by }))
            .collect();
        Ok(Self { db, active: std::sync::RwLock::new(active) })
    }

    pub async fn create(&self, caller: &Caller, description: &str) -> ApiResult<AccessKey> {
        let description = description.trim();
        if description.is_empty() || description.len() > 256 {
            return Err(ApiError::bad_request("invalid_description", "describe what the key is for in 1 to 256 characters"));
        }
        // AWS's shapes: a 20-character upper-case id, a 40-character secret.
        let (id, secret) = {
            let mut rng = rand::thread_rng();
            let id: String = "AK".chars().chain((0..18).map(|_| rng.sample(Alphanumeric).to_ascii_uppercase() as char)).collect();
            let secret: String = (0..40).map(|_| rng.sample(Alphanumeric) as char).collect();
            (id, secret)
        };
        let created_by = match caller {
            Caller::User { username, .. } => username.clone(),
            other => other.actor(),
        };
        let row = AccessKeyRow {
            id,
            secret: secret.clone(),
            description: description.to_owned(),
            created_by,
            created_at: now_ms(),
            revoked_at: None,
        };
        store::insert_access_key(&self.db, &row).await.map_err(db_err)?;
        let active = ActiveKey { secret: row.secret.clone(), owner: row.created_by.clone() };
        self.active.write().expect("access keys lock").insert(row.id.clone(), active);
        Ok(AccessKey { secret: Some(secret), ..model(row) })
    }

    pub async fn list(&self) -> ApiResult<Vec<AccessKey>> {
        Ok(store::list_access_keys(&self.db).await.map_err(db_err)?.into_iter().map(model).collect())
    }

    pub async fn revoke(&self, id: &str) -> ApiResult<AccessKey> {
        if !store::revoke_access_key(&self.db, id, now_ms()).await.map_err(db_err)? {
            return Err(ApiError::not_found("access_key_not_found", format!("no access key {id:?}")));
        }
        self.active.write().expect("access keys lock").remove(id);
        let row = store::get_access_key(&self.db, id).await.map_err(db_err)?.ok_or_else(|| ApiError::internal("revoked key vanished"))?;
        Ok(model(row))
    }

    /// The secret of an active (not revoked) key.
    pub fn active_secret(&self, id: &str) -> Option<String> {
        self.active.read().expect("access keys lock").get(id).map(|k| k.secret.clone())
    }

    /// Who created an active key: the owner S3 answers name (ListBuckets, listings with owners).
    pub fn owner(&self, id: &str) -> Option<String> {
        self.active.read().expect("access keys lock").get(id).map(|k| k.owner.clone())
    }
}

fn model(row: AccessKeyRow) -> AccessKey {
    AccessKey {
        id: row.id,
        secret: None,
        description: row.description,
        created_by: row.created_by,
        created_at: from_ms(row.created_at),
        revoked_at: row.revoked_at.map(from_ms),
    }
}
