use std::sync::Arc;

use aerekos_common::ApiResult;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{ApiTags, UserAuth, workers::Removed};
use crate::{
    AppState,
    domain::jobs::ListQuery,
    model::{Job, JobAttempt, JobPage, JobQueue, JobQueueSettings, JobRequest, JobState},
};

pub struct JobsApi;

#[derive(ApiResponse)]
enum Submitted {
    /// Queued.
    #[oai(status = 201)]
    Created(Json<Job>),
    /// The job this idempotency key made earlier, as it stands now.
    #[oai(status = 200)]
    Existing(Json<Job>),
}

#[OpenApi(tag = "ApiTags::Jobs")]
impl JobsApi {
    /// Submit a job (admin only): queued durably, then run on a worker with room, in priority
    /// order. 201 with the new job; 200 with the earlier job when its `idempotency_key` was used
    /// before for the same request (409 `idempotency_key_reused` for another request).
    #[oai(path = "/api/jobs", method = "post", operation_id = "submit_job")]
    async fn submit(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        body: Json<JobRequest>,
    ) -> ApiResult<Submitted> {
        auth.0.require_admin()?;
        let (job, created) = state.jobs.submit(&auth.0.username, body.0).await?;
        Ok(if created {
            Submitted::Created(Json(job))
        } else {
            Submitted::Existing(Json(job))
        })
    }

    /// Jobs, newest first, filtered by state, queue and submission time.
    #[oai(path = "/api/jobs", method = "get", operation_id = "list_jobs")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        #[oai(name = "state")] job_state: Query<Option<JobState>>,
        queue: Query<Option<String>>,
        /// Submitted at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Submitted before this time.
        until: Query<Option<DateTime<Utc>>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// At most this many (1–500, default 100).
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<JobPage>> {
        state
            .jobs
            .list(ListQuery {
                state: job_state.0,
                queue: queue.0,
                submitted_after: since.0,
                submitted_before: until.0,
                cursor: cursor.0,
                limit: limit.0,
            })
            .await
            .map(Json)
    }

    /// One job, with its last attempt.
    #[oai(path = "/api/jobs/:id", method = "get", operation_id = "get_job")]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Job>> {
        state.jobs.get(id.0).await.map(Json)
    }

    /// Every attempt at a job, first first, with the tails of their output.
    #[oai(
        path = "/api/jobs/:id/attempts",
        method = "get",
        operation_id = "list_job_attempts"
    )]
    async fn attempts(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Vec<JobAttempt>>> {
        state.jobs.attempts(id.0).await.map(Json)
    }

    /// Cancel a queued or running job (admin only): a running attempt is stopped at once (SIGTERM
    /// to its process group or container, SIGKILL 5 s later). 409 `job_finished` when it has
    /// finished.
    #[oai(
        path = "/api/jobs/:id/cancel",
        method = "post",
        operation_id = "cancel_job"
    )]
    async fn cancel(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Job>> {
        auth.0.require_admin()?;
        state.jobs.cancel(id.0, &auth.0.username).await.map(Json)
    }

    /// Job queues: the ones with settings and the ones jobs wait or run in.
    #[oai(
        path = "/api/job-queues",
        method = "get",
        operation_id = "list_job_queues"
    )]
    async fn queues(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: UserAuth,
    ) -> ApiResult<Json<Vec<JobQueue>>> {
        state.jobs.queues().await.map(Json)
    }

    /// Set a queue's concurrency limit (admin only); it holds from the queue's next pass.
    #[oai(
        path = "/api/job-queues/:name",
        method = "put",
        operation_id = "set_job_queue"
    )]
    async fn set_queue(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
        body: Json<JobQueueSettings>,
    ) -> ApiResult<Json<JobQueue>> {
        auth.0.require_admin()?;
        state.jobs.set_queue(&name.0, body.0).await.map(Json)
    }

    /// Remove a queue's settings (admin only): its jobs run with no limit.
    #[oai(
        path = "/api/job-queues/:name",
        method = "delete",
        operation_id = "delete_job_queue"
    )]
    async fn delete_queue(
        &self,
        state: Data<&Arc<AppState>>,
        auth: UserAuth,
        name: Path<String>,
    ) -> ApiResult<Removed> {
        auth.0.require_admin()?;
        state
            .jobs
            .delete_queue(&name.0)
            .await
            .map(|()| Removed::NoContent)
    }
}
