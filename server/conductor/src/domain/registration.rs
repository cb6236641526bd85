//! The worker registration token: one shared secret per cluster, shown to admins, replaced on demand.

use aerekos_common::{ApiError, ApiResult};
use subtle::ConstantTimeEq as _;

use super::{from_ms, random_secret};
use crate::{
    model::RegistrationToken,
    store::{Db, tokens},
};

const PREFIX: &str = "aerekos_reg_";

pub struct RegistrationTokens {
    db: Db,
}

impl RegistrationTokens {
    /// Creates the token on first start: `configured`, or a random one.
    pub async fn start(db: Db, configured: Option<&str>) -> Result<Self, sqlx::Error> {
        let initial = configured.map_or_else(|| random_secret(PREFIX, 32), str::to_owned);
        tokens::insert_if_missing(&db, &initial).await?;
        Ok(Self { db })
    }

    pub async fn current(&self) -> ApiResult<RegistrationToken> {
        let row = tokens::get(&self.db).await.map_err(ApiError::internal)?;
        let row = row.ok_or_else(|| ApiError::internal("registration token row missing"))?;
        Ok(RegistrationToken {
            token: row.token,
            created_at: from_ms(row.created_at),
        })
    }

    /// A new token; the previous one is refused from now on.
    pub async fn regenerate(&self) -> ApiResult<RegistrationToken> {
        let row = tokens::put(&self.db, &random_secret(PREFIX, 32))
            .await
            .map_err(ApiError::internal)?;
        tracing::info!("registration token regenerated");
        Ok(RegistrationToken {
            token: row.token,
            created_at: from_ms(row.created_at),
        })
    }

    /// 401 unless `presented` is the current token (compared in constant time).
    pub async fn check(&self, presented: &str) -> ApiResult<()> {
        let current = tokens::get(&self.db).await.map_err(ApiError::internal)?;
        let ok =
            current.is_some_and(|row| bool::from(row.token.as_bytes().ct_eq(presented.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "invalid_registration_token",
                "the registration token is not this cluster's current one; an admin can show it with GET /api/token",
            ))
        }
    }
}
