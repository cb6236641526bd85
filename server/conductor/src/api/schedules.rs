use std::sync::Arc;

use aerekos_common::ApiResult;
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{ApiTags, UserAuth, workers::Removed};
use crate::{
    AppState,
    model::{Schedule, ScheduleFire, ScheduleRequest},
};

pub struct SchedulesApi;

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<Schedule>),
}

#[OpenApi(tag = "ApiTags::Schedules")]
impl SchedulesApi {
    /// Make a schedule (admin only): a cron expression in a time zone, or a fixed interval, that
    /// submits a job or calls a platform service's endpoint. 409 `schedule_exists` when the name
    /// is taken.
    #[oai(
        path = "/api/schedules",
        method = "post",
        operation_id = "create_schedule"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<ScheduleRequest>,
    ) -> ApiResult<Created> {
        auth.0.require_admin()?;
        state
            .schedules
            .create(&auth.0.username, body.0)
            .await
            .map(|s| Created::Created(Json(s)))
    }

    /// Every schedule, by name.
    #[oai(
        path = "/api/schedules",
        method = "get",
        operation_id = "list_schedules"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<Schedule>>> {
        state.schedules.list().await.map(Json)
    }

    #[oai(
        path = "/api/schedules/:name",
        method = "get",
        operation_id = "get_schedule"
    )]
    /// One schedule.
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Schedule>> {
        state.schedules.get(&name.0).await.map(Json)
    }

    /// Replace what a schedule does and when (admin only); its clock starts again from now.
    #[oai(
        path = "/api/schedules/:name",
        method = "put",
        operation_id = "replace_schedule"
    )]
    async fn replace(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
        body: Json<ScheduleRequest>,
    ) -> ApiResult<Json<Schedule>> {
        auth.0.require_admin()?;
        state.schedules.replace(&name.0, body.0).await.map(Json)
    }

    /// Delete a schedule and its history (admin only); jobs it submitted are left as they are.
    #[oai(
        path = "/api/schedules/:name",
        method = "delete",
        operation_id = "delete_schedule"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state
            .schedules
            .delete(&name.0)
            .await
            .map(|()| Removed::NoContent)
    }

    /// Pause a schedule (admin only): it does not fire, and nothing counts as missed.
    #[oai(
        path = "/api/schedules/:name/pause",
        method = "post",
        operation_id = "pause_schedule"
    )]
    async fn pause(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Schedule>> {
        auth.0.require_admin()?;
        state.schedules.set_paused(&name.0, true).await.map(Json)
    }

    /// Resume a paused schedule (admin only): it fires at its next due time from now.
    #[oai(
        path = "/api/schedules/:name/resume",
        method = "post",
        operation_id = "resume_schedule"
    )]
    async fn resume(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Schedule>> {
        auth.0.require_admin()?;
        state.schedules.set_paused(&name.0, false).await.map(Json)
    }

    /// A schedule's fires, newest first (the last 1000 are kept), each with the job it submitted
    /// or the status its call got.
    #[oai(
        path = "/api/schedules/:name/fires",
        method = "get",
        operation_id = "list_schedule_fires"
    )]
    async fn fires(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        name: Path<String>,
        /// At most this many (1–1000, default 100).
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Vec<ScheduleFire>>> {
        state.schedules.fires(&name.0, limit.0).await.map(Json)
    }
}
