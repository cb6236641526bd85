use std::sync::Arc;

use aerekos_common::ApiResult;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{OpenApi, param::Query, payload::Json};

use super::{ApiTags, UserAuth};
use crate::{AppState, domain::audit, model::AuditPage, store::audit::AuditFilter};

pub struct AuditApi;

#[OpenApi(tag = "ApiTags::Audit")]
impl AuditApi {
    /// The audit trail, newest first (admin only): every change asked of the conductor (and the
    /// reads that hand out secrets), who asked, and the status answered. Filters combine.
    #[oai(
        path = "/api/audit",
        method = "get",
        operation_id = "list_audit_events"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        /// Exactly this actor, e.g. `user:alice`.
        actor: Query<Option<String>>,
        /// Exactly this operation id, e.g. `deploy_service`.
        action: Query<Option<String>>,
        /// Paths starting with this, e.g. `/api/services/key_manager`.
        target: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        /// Only refused and failed requests (status 400 and up).
        #[oai(default)]
        failed: Query<bool>,
        /// Older than this event id (`next_before` of the previous page).
        before: Query<Option<i64>>,
        /// 1–1000, default 100.
        #[oai(default = "default_limit")]
        limit: Query<i64>,
    ) -> ApiResult<Json<AuditPage>> {
        auth.0.require_admin()?;
        let filter = AuditFilter {
            actor: actor.0,
            action: action.0,
            target_prefix: target.0,
            since_ms: since.0.map(|t| t.timestamp_millis()),
            until_ms: until.0.map(|t| t.timestamp_millis()),
            failed_only: failed.0,
            before: before.0,
            limit: limit.0,
        };
        audit::list(&state.db, filter).await.map(Json)
    }
}

fn default_limit() -> i64 {
    100
}
