//! Sandboxes: long-lived isolated environments (a container on a worker with the docker driver)
//! in which commands run one after another or at once, each kept in the sandbox's history.
//!
//! - **Create** is queued: the pass (in the job loop, under the same [`PlacementLock`]) places
//!   the sandbox's instance with the services' scheduler when there is room, and the sandbox is
//!   `ready` once its worker reports the container running; past `ready_timeout_secs` it fails.
//!   Its worker restarts a crashed container like any instance's, and keeps it across its own
//!   restarts (the docker driver adopts it).
//! - **Execs** are queued rows; each pass hands a ready sandbox's queued execs to its worker in
//!   its assignments (`sandbox_execs`). The worker runs each once (a marker on disk, so a restart
//!   mid-run reports it `lost` rather than running it again), kills it at its timeout, and reports
//!   its exit code and the tails of its streams; the first report ends it. An exec whose worker
//!   says nothing long past its timeout is failed by the pass.
//! - **Delete** removes the sandbox, its history and its instance in one transaction; its worker
//!   stops and removes the container at its next assignments.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{
    from_ms,
    instances::{self, InstanceService},
    jobs::DEFAULT_RESOURCES,
    scheduler::{self, PlacementLock},
    tail,
    workers::WorkerService,
};
use crate::{
    model::{
        DriverKind, ExecAssignment, ExecReport, ExecRequest, ExecState, InstanceSpec,
        PlacementStrategy, Sandbox, SandboxExec, SandboxRequest, SandboxState,
    },
    store::{
        Db, now_ms,
        sandboxes::{self as store, ExecRow, SandboxRow},
    },
};

pub const DEFAULT_READY_TIMEOUT_SECS: u32 = 300;
pub const MAX_READY_TIMEOUT_SECS: u32 = 3600;
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
        worker_id: row.worker_id.and_then(|w| Uuid::parse_str(&w).ok()),
        instance_id: row.instance_id.and_then(|i| Uuid::parse_str(&i).ok()),
        reason: row.reason,
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
    req.resources = Some(req.resources.unwrap_or(DEFAULT_RESOURCES));
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
        store::delete(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        if let Some(worker) = row
            .worker_id
            .as_deref()
            .and_then(|w| Uuid::parse_str(w).ok())
        {
            self.instances.bump(worker);
        }
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
        let req = ExecRequest {
            timeout_secs: Some(timeout),
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

    /// A worker's report of how an exec ended; 404 when it is not a queued exec of a sandbox on
    /// that worker (ended already, or deleted): the worker forgets it.
    pub async fn report(&self, worker: Uuid, exec_id: Uuid, report: ExecReport) -> ApiResult<()> {
        let not_found = || {
            ApiError::not_found(
                "exec_not_found",
                format!("exec {exec_id} is not waiting for a report from worker {worker}"),
            )
        };
        let exec = store::exec(&self.db, &exec_id.to_string())
            .await
            .map_err(ApiError::internal)?
            .filter(|e| e.state == ExecState::Queued.as_str())
            .ok_or_else(not_found)?;
        let sandbox = store::get(&self.db, &exec.sandbox_id)
            .await
            .map_err(ApiError::internal)?
            .filter(|s| s.worker_id.as_deref() == Some(worker.to_string().as_str()))
            .ok_or_else(not_found)?;
        let timeout = parse::<ExecRequest>(&exec.request)?
            .timeout_secs
            .unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
        let (state, reason) = if report.lost {
            (ExecState::Lost, report.detail.clone())
        } else if report.timed_out {
            (
                ExecState::TimedOut,
                Some(format!("killed at its timeout of {timeout} s")),
            )
        } else if let Some(code) = report.exit_code {
            (ExecState::Exited, Some(format!("exited with code {code}")))
        } else {
            (
                ExecState::Failed,
                Some(
                    report
                        .detail
                        .clone()
                        .unwrap_or_else(|| "it could not run".into()),
                ),
            )
        };
        let ended = ExecRow {
            state: state.as_str().into(),
            exit_code: report.exit_code.map(i64::from),
            stdout: Some(tail(&report.stdout, EXEC_OUTPUT_BYTES)),
            stderr: Some(tail(&report.stderr, EXEC_OUTPUT_BYTES)),
            reason,
            ended_at: Some(now_ms()),
            ..exec
        };
        store::end_exec(&self.db, &ended)
            .await
            .map_err(ApiError::internal)?;
        tracing::info!(sandbox_id = %sandbox.id, exec_id = %exec_id, state = state.as_str(), "sandbox exec ended");
        self.wake.notify_one();
        Ok(())
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
                self.place(&row, &req).await?;
                continue;
            };
            if state == SandboxState::Ready {
                ready.insert(row.id.clone(), (instance_id, worker_id));
                continue;
            }
            let instance = self.instances.get(instance_id).await.ok();
            let timeout_ms =
                i64::from(req.ready_timeout_secs.unwrap_or(DEFAULT_READY_TIMEOUT_SECS)) * 1000;
            match instance.as_ref().map(|i| i.state) {
                Some(crate::model::InstanceState::Running) => {
                    store::set_state(
                        &self.db,
                        &row,
                        SandboxState::Ready.as_str(),
                        None,
                        Some(now),
                    )
                    .await
                    .map_err(ApiError::internal)?;
                    tracing::info!(sandbox_id = %row.id, worker_id = %worker_id, "sandbox ready");
                    ready.insert(row.id.clone(), (instance_id, worker_id));
                }
                _ if now > row.created_at + timeout_ms => {
                    let why = format!(
                        "not running within its ready timeout of {} s{}",
                        timeout_ms / 1000,
                        instance
                            .and_then(|i| i.reason)
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    );
                    store::set_state(
                        &self.db,
                        &row,
                        SandboxState::Failed.as_str(),
                        Some(&why),
                        None,
                    )
                    .await
                    .map_err(ApiError::internal)?;
                    tracing::warn!(sandbox_id = %row.id, reason = %why, "sandbox failed");
                    self.instances.bump(worker_id);
                }
                _ => {}
            }
        }
        self.hand_out_execs(&ready, now).await
    }

    /// Places a sandbox's instance on a worker with the docker driver and room, or records why
    /// it waits.
    async fn place(&self, row: &SandboxRow, req: &SandboxRequest) -> ApiResult<()> {
        let mut candidates = self.instances.checked_in_candidates().await?;
        let no_labels = BTreeMap::new();
        let request = scheduler::Request {
            count: 1,
            resources: req.resources.unwrap_or(DEFAULT_RESOURCES),
            worker_ids: &[],
            labels: &no_labels,
            strategy: PlacementStrategy::Spread,
            drivers: &[DriverKind::Docker],
        };
        match scheduler::place(&mut candidates, &request) {
            Ok(placed) => {
                let worker = placed[0].worker_id;
                let instance = instances::new_row(worker, None, &instance_spec(req), now_ms())?;
                store::place(&self.db, &row.id, &instance)
                    .await
                    .map_err(ApiError::internal)?;
                self.instances.bump(worker);
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

    /// Fails execs whose live worker never reported them, and gives every worker the queued
    /// execs of its ready sandboxes.
    async fn hand_out_execs(
        &self,
        ready: &HashMap<String, (Uuid, Uuid)>,
        now: i64,
    ) -> ApiResult<()> {
        let mut by_worker: HashMap<Uuid, Vec<ExecAssignment>> = HashMap::new();
        for exec in store::queued_execs(&self.db)
            .await
            .map_err(ApiError::internal)?
        {
            let Some((instance_id, worker_id)) = ready.get(&exec.sandbox_id).copied() else {
                continue;
            };
            let req: ExecRequest = parse(&exec.request)?;
            let timeout = req.timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS);
            if self.workers.is_live(worker_id)
                && now > exec.submitted_at + i64::from(timeout) * 1000 + EXEC_SLACK_MS
            {
                let failed = ExecRow {
                    state: ExecState::Failed.as_str().into(),
                    reason: Some(format!(
                        "its worker did not report it within {} s of its timeout",
                        EXEC_SLACK_MS / 1000
                    )),
                    ended_at: Some(now),
                    ..exec
                };
                store::end_exec(&self.db, &failed)
                    .await
                    .map_err(ApiError::internal)?;
                continue;
            }
            by_worker
                .entry(worker_id)
                .or_default()
                .push(ExecAssignment {
                    id: Uuid::parse_str(&exec.id).map_err(ApiError::internal)?,
                    instance_id,
                    command: req.command,
                    env: req.env,
                    timeout_secs: timeout,
                });
        }
        self.instances.set_sandbox_execs(by_worker);
        Ok(())
    }
}
