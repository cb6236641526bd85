//! Sandboxes: long-lived isolated environments (a container on a worker with the docker driver,
//! or a QEMU guest with the microvm driver) in which commands run one after another or at once,
//! each kept in the sandbox's history.
//!
//! - **Create** is queued: the pass (in the job loop, under the same [`PlacementLock`]) places
//!   the sandbox's instance with the services' scheduler when there is room, and the sandbox is
//!   `ready` once its worker reports the container running. A placement fails when the container
//!   fails to start, is not running within `ready_timeout_secs`, or its worker is lost first; it
//!   is then undone (instance removed) and, while `create_retries` remain, made again after a
//!   backoff, on another worker when one has room. Its worker restarts a crashed container like
//!   any instance's, and keeps it across its own restarts (the docker driver adopts it).
//! - **Execs** are queued rows, each run in attempts. Each pass hands a ready sandbox's queued
//!   execs to its worker (when live) in its assignments (`sandbox_execs`), recording when an
//!   attempt was first handed out. The worker runs each (exec, attempt) once (a marker on disk,
//!   so a restart mid-run reports the attempt `lost` rather than running it again), kills it at
//!   its timeout, and reports its exit code and the tails of its streams. The pass ends an
//!   attempt whose worker is lost (`lost`) or says nothing long past its timeout (`failed`). An
//!   ended attempt is retried after a backoff under the exec's `retry` policy (the jobs' rules),
//!   or ends the exec; a report for an attempt that is not the current one is refused (404), so
//!   the worker forgets it.
//! - **Delete** removes the sandbox, its history and its instance in one transaction; its worker
//!   stops and removes the container at its next assignments (a lost worker, when it is back).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{
    from_ms,
    instances::{self, InstanceService},
    jobs::{self, DEFAULT_RESOURCES},
    scheduler::{self, PlacementLock},
    tail,
    workers::WorkerService,
};
use crate::{
    model::{
        DriverKind, ExecAssignment, ExecAttempt, ExecReport, ExecRequest, ExecState, InstanceSpec,
        InstanceState, PlacementStrategy, RetryPolicy, Sandbox, SandboxExec, SandboxRequest,
        SandboxState,
    },
    store::{
        Db, now_ms,
        sandboxes::{self as store, ExecRow, SandboxRow},
    },
};

pub const DEFAULT_READY_TIMEOUT_SECS: u32 = 300;
pub const MAX_READY_TIMEOUT_SECS: u32 = 3600;
pub const DEFAULT_CREATE_RETRIES: u32 = 2;
pub const MAX_CREATE_RETRIES: u32 = 10;
/// The backoff between placements of a sandbox (its retries count is `create_retries`).
const CREATE_BACKOFF: RetryPolicy = RetryPolicy {
    max_retries: 0,
    initial_backoff_ms: Some(1000),
    max_backoff_ms: Some(30_000),
    retry_on_exit_codes: None,
};
pub const DEFAULT_EXEC_TIMEOUT_SECS: u32 = 60;
pub const MAX_EXEC_TIMEOUT_SECS: u32 = 86_400;
/// The most of each stream an exec's record keeps.
pub const EXEC_OUTPUT_BYTES: usize = 64 * 1024;
pub const MAX_EXECS_PAGE: u32 = 1000;
/// Past an exec's timeout by this much with no report from its (live) worker, the pass fails it.
const EXEC_SLACK_MS: i64 = 120_000;

pub struct SandboxService {
    db: Db,
    workers: Arc<WorkerService>,
    instances: Arc<InstanceService>,
    placement: PlacementLock,
    /// Wakes the pass at once (a sandbox made, an exec queued or reported).
    pub wake: tokio::sync::Notify,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_sandbox", message)
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> ApiResult<T> {
    serde_json::from_str(text).map_err(ApiError::internal)
}

fn to_model(row: SandboxRow) -> ApiResult<Sandbox> {
    Ok(Sandbox {
        id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
        request: parse(&row.request)?,
        state: SandboxState::parse(&row.state),
        // Between placements `worker_id` keeps the worker last tried; it is shown only while placed.
        worker_id: row
            .worker_id
            .filter(|_| row.instance_id.is_some())
            .and_then(|w| Uuid::parse_str(&w).ok()),
        instance_id: row.instance_id.and_then(|i| Uuid::parse_str(&i).ok()),
        reason: row.reason,
        create_attempts: row.create_attempts as u32,
        created_by: row.created_by,
        created_at: from_ms(row.created_at),
        ready_at: row.ready_at.map(from_ms),
    })
}

fn exec_model(row: ExecRow) -> ApiResult<SandboxExec> {
    Ok(SandboxExec {
        id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
        sandbox_id: Uuid::parse_str(&row.sandbox_id).map_err(ApiError::internal)?,
        request: parse(&row.request)?,
        state: ExecState::parse(&row.state),
        exit_code: row.exit_code.map(|c| c as i32),
        stdout: row.stdout,
        stderr: row.stderr,
        reason: row.reason,
        attempt: row.attempt as u32,
        attempts: parse(&row.attempts)?,
        not_before: row.not_before.map(from_ms),
        dispatched_at: row.dispatched_at.map(from_ms),
        submitted_at: from_ms(row.submitted_at),
        ended_at: row.ended_at.map(from_ms),
    })
}

/// The request checked, with its defaults.
fn normalized(mut req: SandboxRequest) -> ApiResult<SandboxRequest> {
    if req.image.trim().is_empty() {
        return Err(bad("image must name a Docker image on the workers".into()));
    }
    if req
        .name
        .as_ref()
        .is_some_and(|n| !(1..=128).contains(&n.chars().count()))
    {
        return Err(bad("name must be 1–128 characters".into()));
    }
    let command = req
        .command
        .take()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["sleep".into(), "infinity".into()]);
    if command[0].trim().is_empty() {
        return Err(bad("command must name a program".into()));
    }
    req.command = Some(command);
    super::deployments::check_env(&req.env)?;
    let timeout = req.ready_timeout_secs.unwrap_or(DEFAULT_READY_TIMEOUT_SECS);
    if !(1..=MAX_READY_TIMEOUT_SECS).contains(&timeout) {
        return Err(bad(format!(
            "ready_timeout_secs must be 1–{MAX_READY_TIMEOUT_SECS}"
        )));
    }
    req.ready_timeout_secs = Some(timeout);
    let retries = req.create_retries.unwrap_or(DEFAULT_CREATE_RETRIES);
    if retries > MAX_CREATE_RETRIES {
        return Err(bad(format!(
            "create_retries must be 0–{MAX_CREATE_RETRIES}"
        )));
    }
    req.create_retries = Some(retries);
    match req.driver.unwrap_or(DriverKind::Docker) {
        DriverKind::Process => {
            return Err(bad(
                "a sandbox is a container (driver docker) or a VM (driver microvm), not a process"
                    .into(),
            ));
        }
        driver => req.driver = Some(driver),
    }
    req.resources = Some(jobs::reservation(
        req.resources.unwrap_or(DEFAULT_RESOURCES),
        req.driver,
    ));
    Ok(req)
}

fn instance_spec(req: &SandboxRequest) -> InstanceSpec {
    InstanceSpec {
        image: Some(req.image.clone()),
        command: req.command.clone(),
        env: req.env.clone(),
        secret_env: BTreeMap::new(),
        generation: 0,
        ports: vec![],
        resources: req.resources,
        health_path: None,
        volume: None,
        tls: false,
        run_once: false,
        timeout_secs: None,
        // Named only for a guest (docker follows from the image).
        driver: req.driver.filter(|d| *d == DriverKind::Microvm),
    }
}

impl SandboxService {
    pub fn new(
        db: Db,
        workers: Arc<WorkerService>,
        instances: Arc<InstanceService>,
        placement: PlacementLock,
    ) -> Self {
        Self {
            db,
            workers,
            instances,
            placement,
            wake: tokio::sync::Notify::new(),
        }
    }

    async fn row(&self, id: Uuid) -> ApiResult<SandboxRow> {
        store::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found("sandbox_not_found", format!("no sandbox with id {id}"))
            })
    }

    pub async fn create(&self, by: &str, req: SandboxRequest) -> ApiResult<Sandbox> {
        let req = normalized(req)?;
        let row = SandboxRow {
            id: Uuid::new_v4().to_string(),
            request: serde_json::to_string(&req).map_err(ApiError::internal)?,
            state: SandboxState::Creating.as_str().into(),
            instance_id: None,
            worker_id: None,
            reason: None,
            created_by: by.to_owned(),
            created_at: now_ms(),
            ready_at: None,
            create_attempts: 0,
            placed_at: None,
            not_before: None,
        };
        store::insert(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        tracing::info!(sandbox_id = %row.id, image = %req.image, "sandbox queued");
        self.wake.notify_one();
        to_model(row)
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Sandbox> {
        to_model(self.row(id).await?)
    }

    pub async fn list(&self) -> ApiResult<Vec<Sandbox>> {
        store::all(&self.db)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(to_model)
            .collect()
    }

    /// Deletes the sandbox, its history and its instance; its worker removes the container.
    pub async fn delete(&self, id: Uuid) -> ApiResult<()> {
        let _placing = self.placement.lock().await;
        let row = self.row(id).await?;
        let mut changes = self.instances.begin().await?;
        store::delete(&mut changes.tx, &row)
            .await
            .map_err(ApiError::internal)?;
        if let (Some(instance), Some(worker)) = (&row.instance_id, &row.worker_id) {
            changes.deleted(instance, worker)?;
        }
        changes.commit().await?;
        tracing::info!(sandbox_id = %id, "sandbox deleted");
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a command in the sandbox; 409 when the sandbox failed.
    pub async fn exec(&self, id: Uuid, req: ExecRequest) -> ApiResult<SandboxExec> {
        let row = self.row(id).await?;
        if row.state == SandboxState::Failed.as_str() {
            return Err(ApiError::conflict(
                "sandbox_failed",
                format!(
                    "sandbox {id} failed ({}); make another",
                    row.reason.as_deref().unwrap_or("no reason recorded")
                ),
            ));
        }
        let bad_exec = |m: String| ApiError::bad_request("invalid_exec", m);
        if req.command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(bad_exec("command must name a program".into()));
        }
        if req.command.len() > 1000 || req.command.iter().any(|a| a.contains('\0')) {
            return Err(bad_exec(
                "command: at most 1000 arguments, without NUL".into(),
            ));
        }
        super::deployments::check_env(&req.env)?;
        let timeout = req.timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
        if !(1..=MAX_EXEC_TIMEOUT_SECS).contains(&timeout) {
            return Err(bad_exec(format!(
                "timeout_secs must be 1–{MAX_EXEC_TIMEOUT_SECS}"
            )));
        }
        let retry = jobs::normalized_retry(req.retry.clone(), "invalid_exec")?;
        let req = ExecRequest {
            timeout_secs: Some(timeout),
            retry: Some(retry),
            ..req
        };
        let exec = ExecRow {
            id: Uuid::new_v4().to_string(),
            sandbox_id: row.id.clone(),
            request: serde_json::to_string(&req).map_err(ApiError::internal)?,
            state: ExecState::Queued.as_str().into(),
            exit_code: None,
            stdout: None,
            stderr: None,
            reason: None,
            submitted_at: now_ms(),
            ended_at: None,
            attempt: 1,
            dispatched_at: None,
            not_before: None,
            attempts: "[]".into(),
        };
        store::insert_exec(&self.db, &exec)
            .await
            .map_err(|e| match &e {
                // Deleted meanwhile.
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                    ApiError::not_found("sandbox_not_found", format!("no sandbox with id {id}"))
                }
                _ => ApiError::internal(e),
            })?;
        self.wake.notify_one();
        exec_model(exec)
    }

    pub async fn execs(&self, id: Uuid, limit: Option<u32>) -> ApiResult<Vec<SandboxExec>> {
        let limit = limit.unwrap_or(100);
        if !(1..=MAX_EXECS_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be 1–{MAX_EXECS_PAGE}"),
            ));
        }
        let row = self.row(id).await?;
        store::execs(&self.db, &row.id, limit)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(exec_model)
            .collect()
    }

    pub async fn get_exec(&self, id: Uuid, exec_id: Uuid) -> ApiResult<SandboxExec> {
        let row = store::exec(&self.db, &exec_id.to_string())
            .await
            .map_err(ApiError::internal)?
            .filter(|e| e.sandbox_id == id.to_string())
            .ok_or_else(|| {
                ApiError::not_found(
                    "exec_not_found",
                    format!("sandbox {id} has no exec {exec_id}"),
                )
            })?;
        exec_model(row)
    }

    /// A worker's report of how an attempt of an exec ended; 404 when it is not the current
    /// attempt of a queued exec of a sandbox on that worker (ended already, retried, or deleted):
    /// the worker forgets it.
    pub async fn report(&self, worker: Uuid, exec_id: Uuid, report: ExecReport) -> ApiResult<()> {
        let not_found = || {
            ApiError::not_found(
                "exec_not_found",
                format!(
                    "attempt {} of exec {exec_id} is not waiting for a report from worker {worker}",
                    report.attempt
                ),
            )
        };
        let exec = store::exec(&self.db, &exec_id.to_string())
            .await
            .map_err(ApiError::internal)?
            .filter(|e| {
                e.state == ExecState::Queued.as_str() && e.attempt == i64::from(report.attempt)
            })
            .ok_or_else(not_found)?;
        let sandbox = store::get(&self.db, &exec.sandbox_id)
            .await
            .map_err(ApiError::internal)?
            .filter(|s| {
                s.instance_id.is_some()
                    && s.worker_id.as_deref() == Some(worker.to_string().as_str())
            })
            .ok_or_else(not_found)?;
        let timeout = parse::<ExecRequest>(&exec.request)?
            .timeout_secs
            .unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
        let (state, reason) = if report.lost {
            (
                ExecState::Lost,
                report
                    .detail
                    .clone()
                    .unwrap_or_else(|| "its worker restarted while it ran".into()),
            )
        } else if report.timed_out {
            (
                ExecState::TimedOut,
                format!("killed at its timeout of {timeout} s"),
            )
        } else if let Some(code) = report.exit_code {
            (ExecState::Exited, format!("exited with code {code}"))
        } else {
            (
                ExecState::Failed,
                report
                    .detail
                    .clone()
                    .unwrap_or_else(|| "it could not run".into()),
            )
        };
        let output = Output {
            stdout: tail(&report.stdout, EXEC_OUTPUT_BYTES),
            stderr: tail(&report.stderr, EXEC_OUTPUT_BYTES),
        };
        if !self
            .end_attempt(
                exec,
                state,
                report.exit_code,
                reason,
                Some(output),
                now_ms(),
            )
            .await?
        {
            return Err(not_found());
        }
        tracing::info!(sandbox_id = %sandbox.id, exec_id = %exec_id, attempt = report.attempt, state = state.as_str(), "sandbox exec attempt ended");
        self.wake.notify_one();
        Ok(())
    }

    /// Records how the current attempt of `exec` ended and what follows: a retry after its
    /// backoff when the exec's policy allows one, or the exec's end. `output`: the attempt's
    /// tails (absent when its worker did not send them; the last ones are kept). False when the
    /// attempt had ended already.
    async fn end_attempt(
        &self,
        exec: ExecRow,
        state: ExecState,
        exit_code: Option<i32>,
        reason: String,
        output: Option<Output>,
        now: i64,
    ) -> ApiResult<bool> {
        let policy = parse::<ExecRequest>(&exec.request)?
            .retry
            .unwrap_or_else(jobs::no_retries);
        let number = exec.attempt as u32;
        let retryable = match state {
            ExecState::Exited => jobs::exit_retryable(exit_code.map(i64::from), &policy),
            ExecState::Queued => false,
            _ => true,
        };
        let retry_at = (retryable && number <= policy.max_retries)
            .then(|| now + jobs::backoff_ms(&policy, number));
        let mut attempts: Vec<ExecAttempt> = parse(&exec.attempts)?;
        attempts.push(ExecAttempt {
            number,
            state,
            exit_code,
            reason: Some(reason.clone()),
            ended_at: from_ms(now),
        });
        let reason = match (retry_at, number) {
            (Some(_), _) => format!("attempt {number} {reason}; retrying"),
            (None, 1) => reason,
            (None, _) => format!("attempt {number} {reason}"),
        };
        let (stdout, stderr) = match output {
            Some(o) => (Some(o.stdout), Some(o.stderr)),
            None => (exec.stdout.clone(), exec.stderr.clone()),
        };
        let row = ExecRow {
            state: state.as_str().into(),
            exit_code: exit_code.map(i64::from),
            stdout,
            stderr,
            reason: Some(reason),
            ended_at: Some(now),
            attempts: serde_json::to_string(&attempts).map_err(ApiError::internal)?,
            ..exec
        };
        store::end_attempt(&self.db, &row, retry_at)
            .await
            .map_err(ApiError::internal)
    }

    /// One pass: places sandboxes that wait, marks them ready (or failed), fails execs nobody
    /// reports, and hands each worker its sandboxes' queued execs.
    pub async fn tick(&self) -> ApiResult<()> {
        let _placing = self.placement.lock().await;
        let now = now_ms();
        let sandboxes = store::all(&self.db).await.map_err(ApiError::internal)?;
        let mut ready: HashMap<String, (Uuid, Uuid)> = HashMap::new();
        for row in sandboxes {
            let req: SandboxRequest = parse(&row.request)?;
            let state = SandboxState::parse(&row.state);
            if state == SandboxState::Failed {
                continue;
            }
            let placed = match (&row.instance_id, &row.worker_id) {
                (Some(i), Some(w)) => Uuid::parse_str(i).ok().zip(Uuid::parse_str(w).ok()),
                _ => None,
            };
            let Some((instance_id, worker_id)) = placed else {
                if row.not_before.is_none_or(|at| at <= now) {
                    self.place(&row, &req).await?;
                }
                continue;
            };
            if state == SandboxState::Ready {
                ready.insert(row.id.clone(), (instance_id, worker_id));
                continue;
            }
            // Only a real "not found" means the instance is gone; a database error waits.
            let instance = match self.instances.get(instance_id).await {
                Ok(instance) => Some(instance),
                Err(e) if e.status() == poem::http::StatusCode::NOT_FOUND => None,
                Err(e) => return Err(e),
            };
            let timeout_ms =
                i64::from(req.ready_timeout_secs.unwrap_or(DEFAULT_READY_TIMEOUT_SECS)) * 1000;
            let said = |i: &Option<crate::model::Instance>| {
                i.as_ref()
                    .and_then(|i| i.reason.clone())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            };
            let failure = match instance.as_ref().map(|i| i.state) {
                Some(InstanceState::Running) => {
                    let ready_now = async {
                        let mut tx = self.db.write.begin().await?;
                        let state = SandboxState::Ready.as_str();
                        store::set_state(&mut tx, &row, state, None, Some(now)).await?;
                        tx.commit().await
                    };
                    ready_now.await.map_err(ApiError::internal)?;
                    tracing::info!(sandbox_id = %row.id, worker_id = %worker_id, "sandbox ready");
                    ready.insert(row.id.clone(), (instance_id, worker_id));
                    continue;
                }
                None => "its instance is gone".to_owned(),
                Some(InstanceState::Failed) => {
                    format!("its container failed to start{}", said(&instance))
                }
                _ if !self.workers.is_live(worker_id) => "its worker was lost".to_owned(),
                _ if now > row.placed_at.unwrap_or(row.created_at) + timeout_ms => format!(
                    "not running within its ready timeout of {} s{}",
                    timeout_ms / 1000,
                    said(&instance)
                ),
                _ => continue,
            };
            self.placement_failed(&row, &req, worker_id, &failure, now)
                .await?;
        }
        self.hand_out_execs(&ready, now).await
    }

    /// Undoes a placement that failed, to be made again after a backoff while `create_retries`
    /// remain; fails the sandbox when none do.
    async fn placement_failed(
        &self,
        row: &SandboxRow,
        req: &SandboxRequest,
        worker_id: Uuid,
        why: &str,
        now: i64,
    ) -> ApiResult<()> {
        let number = row.create_attempts.max(1) as u32;
        let what = format!("placement {number} (on worker {worker_id}) failed: {why}");
        // Either way its instance goes with it, in the same transaction.
        let mut changes = self.instances.begin().await?;
        if let Some(instance) = &row.instance_id {
            changes.deleted(instance, &worker_id.to_string())?;
        }
        if number <= req.create_retries.unwrap_or(DEFAULT_CREATE_RETRIES) {
            let at = now + jobs::backoff_ms(&CREATE_BACKOFF, number);
            let reason = format!("{what}; placing it again");
            store::unplace(&mut changes.tx, row, &reason, at)
                .await
                .map_err(ApiError::internal)?;
            changes.commit().await?;
            tracing::warn!(sandbox_id = %row.id, reason = %reason, "sandbox placement failed");
        } else {
            let failed = SandboxState::Failed.as_str();
            store::set_state(&mut changes.tx, row, failed, Some(&what), None)
                .await
                .map_err(ApiError::internal)?;
            changes.commit().await?;
            tracing::warn!(sandbox_id = %row.id, reason = %what, "sandbox failed");
        }
        Ok(())
    }

    /// Places a sandbox's instance on a worker with the docker driver and room (another than
    /// the one a failed placement used, when another has room), or records why it waits.
    async fn place(&self, row: &SandboxRow, req: &SandboxRequest) -> ApiResult<()> {
        let all = self.instances.checked_in_candidates().await?;
        let tried_before = row
            .worker_id
            .as_deref()
            .and_then(|w| Uuid::parse_str(w).ok());
        let mut all = all;
        let mut others: Vec<_> = all
            .iter()
            .filter(|c| Some(c.id) != tried_before)
            .cloned()
            .collect();
        let no_labels = BTreeMap::new();
        let request = scheduler::Request {
            count: 1,
            resources: req.resources.unwrap_or(DEFAULT_RESOURCES),
            worker_ids: &[],
            labels: &no_labels,
            strategy: PlacementStrategy::Spread,
            drivers: &[req.driver.unwrap_or(DriverKind::Docker)],
        };
        let placed = scheduler::place(&mut others, &request)
            .or_else(|_| scheduler::place(&mut all, &request));
        match placed {
            Ok(placed) => {
                let worker = placed[0].worker_id;
                let now = now_ms();
                let instance = instances::new_row(worker, None, &instance_spec(req), now)?;
                let mut changes = self.instances.begin().await?;
                store::place(&mut changes.tx, &row.id, &instance, now)
                    .await
                    .map_err(ApiError::internal)?;
                changes.inserted(&instance)?;
                changes.commit().await?;
                tracing::info!(sandbox_id = %row.id, worker_id = %worker, "sandbox placed");
            }
            Err(short) => {
                let why = format!("waiting for room: {}", short.message);
                if row.reason.as_deref() != Some(why.as_str()) {
                    store::set_reason(&self.db, &row.id, &why)
                        .await
                        .map_err(ApiError::internal)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the attempts whose worker is lost or never reported them, and gives every live
    /// worker the queued execs of its ready sandboxes.
    async fn hand_out_execs(
        &self,
        ready: &HashMap<String, (Uuid, Uuid)>,
        now: i64,
    ) -> ApiResult<()> {
        let mut by_worker: HashMap<Uuid, Vec<ExecAssignment>> = HashMap::new();
        let mut first_handed_out = Vec::new();
        let settled = now - self.workers.started_at() > EXEC_SLACK_MS;
        for exec in store::queued_execs(&self.db)
            .await
            .map_err(ApiError::internal)?
        {
            let Some((instance_id, worker_id)) = ready.get(&exec.sandbox_id).copied() else {
                continue;
            };
            if exec.not_before.is_some_and(|at| at > now) {
                continue;
            }
            let req: ExecRequest = parse(&exec.request)?;
            let timeout = req.timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
            let live = self.workers.is_live(worker_id);
            match exec.dispatched_at {
                Some(_) if !live => {
                    let why = "its worker was lost while it ran".to_owned();
                    self.end_attempt(exec, ExecState::Lost, None, why, None, now)
                        .await?;
                    continue;
                }
                // Not in the conductor's first minutes: a report may be on its way from a worker
                // that ran the exec while the conductor was down.
                Some(at) if settled && now > at + i64::from(timeout) * 1000 + EXEC_SLACK_MS => {
                    let why = format!(
                        "its worker did not report it within {} s of its timeout",
                        EXEC_SLACK_MS / 1000
                    );
                    self.end_attempt(exec, ExecState::Failed, None, why, None, now)
                        .await?;
                    continue;
                }
                Some(_) => {}
                // It waits for its worker to be back.
                None if !live => continue,
                None => first_handed_out.push(exec.id.clone()),
            }
            by_worker
                .entry(worker_id)
                .or_default()
                .push(ExecAssignment {
                    id: Uuid::parse_str(&exec.id).map_err(ApiError::internal)?,
                    attempt: exec.attempt as u32,
                    instance_id,
                    command: req.command,
                    env: req.env,
                    timeout_secs: timeout,
                });
        }
        store::dispatched(&self.db, &first_handed_out, now)
            .await
            .map_err(ApiError::internal)?;
        self.instances.set_sandbox_execs(by_worker);
        Ok(())
    }
}

/// The tails of an attempt's streams.
struct Output {
    stdout: String,
    stderr: String,
}
