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

use std::sync::Arc;

use super::policy::{KeyScopes, Principal};
use crate::{
    model::AccessKey,
    store::{self, AccessKeyRow},
};

#[derive(Clone)]
struct ActiveKey {
    secret: String,
    owner: String,
    /// None: everything (no scopes were given).
    scopes: Option<Arc<KeyScopes>>,
}

impl ActiveKey {
    fn of(row: &AccessKeyRow) -> Self {
        let scopes: Vec<String> = serde_json::from_str(&row.scopes).unwrap_or_default();
        let scopes = match KeyScopes::parse(&scopes) {
            Ok(parsed) if parsed.0.is_empty() => None,
            Ok(parsed) => Some(Arc::new(parsed)),
            Err(e) => {
                // Stored scopes were checked when the key was made; if they no longer parse, the
                // key may do nothing rather than everything.
                tracing::error!(key = %row.id, error = %e.body().message, "an access key's stored scopes do not parse");
                Some(Arc::new(KeyScopes::default()))
            }
        };
        Self {
            secret: row.secret.clone(),
            owner: row.created_by.clone(),
            scopes,
        }
    }
}

pub struct AccessKeys {
    db: Db,
    /// Active (not revoked) key id → its secret and who created it.
    active: std::sync::RwLock<std::collections::HashMap<String, ActiveKey>>,
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(format!("database: {e}"))
}

/// The longest description an access key takes.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

impl AccessKeys {
    pub async fn load(db: Db) -> Result<Self, sqlx::Error> {
        let rows = store::list_access_keys(&db).await?;
        let active = rows
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| (r.id.clone(), ActiveKey::of(r)))
            .collect();
        Ok(Self {
            db,
            active: std::sync::RwLock::new(active),
        })
    }

    pub async fn create(
        &self,
        caller: &Caller,
        description: &str,
        scopes: &[String],
    ) -> ApiResult<AccessKey> {
        let description = description.trim();
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::bad_request(
                "invalid_description",
                format!("describe what the key is for in 1 to {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        KeyScopes::parse(scopes)?;
        // AWS's shapes: a 20-character upper-case id, a 40-character secret.
        let (id, secret) = {
            let mut rng = rand::thread_rng();
            let id: String = "AK"
                .chars()
                .chain((0..18).map(|_| rng.sample(Alphanumeric).to_ascii_uppercase() as char))
                .collect();
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
            scopes: serde_json::to_string(scopes).map_err(ApiError::internal)?,
        };
        store::insert_access_key(&self.db, &row)
            .await
            .map_err(db_err)?;
        self.active
            .write()
            .expect("access keys lock")
            .insert(row.id.clone(), ActiveKey::of(&row));
        Ok(AccessKey {
            secret: Some(secret),
            ..model(row)
        })
    }

    pub async fn list(&self) -> ApiResult<Vec<AccessKey>> {
        Ok(store::list_access_keys(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(model)
            .collect())
    }

    pub async fn revoke(&self, id: &str) -> ApiResult<AccessKey> {
        if !store::revoke_access_key(&self.db, id, now_ms())
            .await
            .map_err(db_err)?
        {
            return Err(ApiError::not_found(
                "access_key_not_found",
                format!("no access key {id:?}"),
            ));
        }
        self.active.write().expect("access keys lock").remove(id);
        let row = store::get_access_key(&self.db, id)
            .await
            .map_err(db_err)?
            .ok_or_else(|| ApiError::internal("revoked key vanished"))?;
        Ok(model(row))
    }

    /// The secret of an active (not revoked) key.
    pub fn active_secret(&self, id: &str) -> Option<String> {
        self.active
            .read()
            .expect("access keys lock")
            .get(id)
            .map(|k| k.secret.clone())
    }

    /// The principal an active key signs as: the key, its owner and its scopes.
    pub fn principal(&self, id: &str) -> Option<Principal> {
        let active = self.active.read().expect("access keys lock");
        let key = active.get(id)?;
        Some(Principal {
            access_key: Some(id.to_owned()),
            owner: Some(key.owner.clone()),
            scopes: key.scopes.clone(),
        })
    }
}

fn model(row: AccessKeyRow) -> AccessKey {
    AccessKey {
        id: row.id,
        secret: None,
        description: row.description,
        scopes: serde_json::from_str(&row.scopes).unwrap_or_default(),
        created_by: row.created_by,
        created_at: from_ms(row.created_at),
        revoked_at: row.revoked_at.map(from_ms),
    }
}
