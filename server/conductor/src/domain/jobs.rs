//! Jobs: run-to-completion work, queued durably in the conductor's database.
//!
//! - **The queue.** Queued jobs start in the order of `queue_key` = submitted_at − priority ×
//!   `JOB_PRIORITY_AGING`: higher priority first, FIFO within a priority, and a job is overtaken
//!   only by jobs submitted less than (100 − its priority) × the aging interval after it, so none
//!   waits for ever. The order is strict: when the first job in line has no room yet, nothing
//!   behind it starts (no backfill that could starve a large job), except that jobs of a queue at
//!   its concurrency limit, and jobs no live worker could ever take, are passed over.
//! - **Attempts.** An attempt is an instance (`run_once`, with the job's timeout) placed by the
//!   same scheduler and reservations as services, under the same [`PlacementLock`]. Its worker
//!   runs it once, stops it at its timeout, and reports its end with the tails of its output;
//!   then the attempt is recorded and its instance removed, in one transaction, and the job is
//!   retried (after an exponential backoff with jitter) or finished.
//! - **Faults.** An attempt whose worker is lost is ended `worker_lost` and retried on a live
//!   worker when retries remain; one whose worker says nothing long after its timeout is ended by
//!   the conductor. Every change of a job's state holds the placement lock, so a cancel, a report
//!   and the queue's pass never interleave.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_common::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use rand::Rng as _;
use uuid::Uuid;

use super::{
    from_ms,
    instances::{self, InstanceService},
    scheduler::{self, Amounts, PlacementLock},
    tail,
    workers::WorkerService,
};
use crate::{
    model::{
        AttemptOutcome, DriverKind, InstanceSpec, InstanceState, InstanceStatusReport, Job,
        JobAttempt, JobPage, JobQueue, JobQueueSettings, JobRequest, JobState, PlacementStrategy,
        ResourceSpec, RetryPolicy,
    },
    store::{
        Db, jobs as store,
        jobs::{AttemptRow, JobRow, JobUpdate},
        now_ms,
    },
};

/// How often the queue is looked at when nothing wakes it (a submit, an attempt's end, a cancel).
pub const TICK: Duration = Duration::from_secs(1);
/// The least time between two passes, so a burst of wakes makes one pass.
pub const MIN_PASS_GAP: Duration = Duration::from_millis(20);
/// The most queued jobs one pass considers (the rest wait for the next pass).
const PASS_LIMIT: u32 = 256;
/// How often running attempts are checked for a lost worker or an overdue end.
const FAULT_SCAN_EVERY: Duration = Duration::from_secs(1);
/// The most bytes of each output stream an attempt's record keeps.
pub const TAIL_BYTES: usize = 16 * 1024;
pub const DEFAULT_TIMEOUT_SECS: u32 = 3600;
pub const MAX_TIMEOUT_SECS: u32 = 7 * 24 * 3600;
pub const MAX_PRIORITY: u8 = 100;
pub const DEFAULT_PRIORITY: u8 = 50;
pub const MAX_RETRIES: u32 = 100;
pub const MAX_PAGE: u32 = 500;
pub const DEFAULT_QUEUE: &str = "default";
/// What a job's attempt (or a sandbox) reserves when its request does not say.
pub const DEFAULT_RESOURCES: ResourceSpec = ResourceSpec {
    cpu_millicores: 100,
    memory_mb: 64,
    disk_mb: 0,
};
/// Past an attempt's timeout by this much with no word from its worker, the conductor ends it.
const TIMEOUT_SLACK_MS: i64 = 60_000;
/// How often finished jobs past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the operator configures (`JOB_PRIORITY_AGING`, `JOB_HISTORY`, `JOB_HISTORY_MAX`).
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub priority_aging: Duration,
    pub history: Duration,
    pub history_max: u32,
}

pub struct JobService {
    db: Db,
    workers: Arc<WorkerService>,
    instances: Arc<InstanceService>,
    placement: PlacementLock,
    settings: JobSettings,
    /// Wakes the queue's loop at once.
    pub wake: tokio::sync::Notify,
    /// Why each job the last pass looked at is still queued.
    waiting: Mutex<HashMap<String, String>>,
    /// The queues at their concurrency limit in the last pass (their jobs are not looked at),
    /// with the limit.
    full_queues: Mutex<HashMap<String, u32>>,
    last_prune: Mutex<Option<tokio::time::Instant>>,
    last_fault_scan: Mutex<Option<tokio::time::Instant>>,
}

/// A listing's filters, as the API takes them.
pub struct ListQuery {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub submitted_after: Option<DateTime<Utc>>,
    pub submitted_before: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn bad(code: &str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

/// A queue's name: 1–64 of lowercase letters, digits, `_` and `-`.
pub fn check_queue_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "invalid_queue",
            format!("queue name {name:?} must be 1–64 of a-z, 0-9, '_' and '-'"),
        ))
    }
}

/// The request checked, with its defaults filled in (a schedule checks its job with it too).
pub(crate) fn normalized(mut req: JobRequest) -> ApiResult<JobRequest> {
    if let Some(name) = &req.name {
        if !(1..=128).contains(&name.chars().count()) {
            return Err(bad("invalid_job", "name must be 1–128 characters".into()));
        }
    }
    req.command = req.command.filter(|c| !c.is_empty());
    let driver = match (req.driver, &req.image, &req.command) {
        (Some(DriverKind::Docker), None, _) => {
            return Err(bad(
                "invalid_job",
                "the docker driver runs an image: give `image`".into(),
            ));
        }
        (Some(DriverKind::Process), _, None) => {
            return Err(bad(
                "invalid_job",
                "the process driver runs a command: give `command`".into(),
            ));
        }
        (Some(DriverKind::Process), Some(_), _) => {
            return Err(bad(
                "invalid_job",
                "the process driver cannot run an image; leave `image` out or use the docker driver"
                    .into(),
            ));
        }
        (Some(DriverKind::Microvm), _, None) => {
            return Err(bad(
                "invalid_job",
                "the microvm driver runs a command in its guest: give `command` (an `image`, if given, is the guest's root filesystem)"
                    .into(),
            ));
        }
        (Some(d), _, _) => d,
        (None, Some(_), _) => DriverKind::Docker,
        (None, None, _) => DriverKind::Process,
    };
    req.driver = Some(driver);
    super::deployments::check_env(&req.env)?;
    let timeout = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout) {
        return Err(bad(
            "invalid_job",
            format!("timeout_secs must be 1–{MAX_TIMEOUT_SECS}"),
        ));
    }
    req.timeout_secs = Some(timeout);
    let priority = req.priority.unwrap_or(DEFAULT_PRIORITY);
    if priority > MAX_PRIORITY {
        return Err(bad(
            "invalid_job",
            format!("priority must be 0–{MAX_PRIORITY}"),
        ));
    }
    req.priority = Some(priority);
    let queue = req.queue.take().unwrap_or_else(|| DEFAULT_QUEUE.into());
    check_queue_name(&queue)?;
    req.queue = Some(queue);
    if let Some(key) = &req.idempotency_key {
        if !(1..=128).contains(&key.chars().count()) {
            return Err(bad(
                "invalid_job",
                "idempotency_key must be 1–128 characters".into(),
            ));
        }
    }
    req.retry = Some(normalized_retry(req.retry.take(), "invalid_job")?);
    req.resources = Some(reservation(
        req.resources.unwrap_or(DEFAULT_RESOURCES),
        req.driver,
    ));
    instances::validate_spec(&attempt_spec(&req, Uuid::nil(), 1))
        .map_err(|e| bad("invalid_job", e.body().message.clone()))?;
    Ok(req)
}

/// The least memory a microVM is reserved (its worker gives a guest at least this much RAM for
/// its kernel and root filesystem, and QEMU's own memory comes on top).
pub const MICROVM_MIN_MEMORY_MB: u32 = 256;

/// What work run by `driver` reserves when it asks for `asked`: a microVM at least
/// [`MICROVM_MIN_MEMORY_MB`], so the scheduler does not place more guests than the memory holds.
pub(super) fn reservation(asked: ResourceSpec, driver: Option<DriverKind>) -> ResourceSpec {
    match driver {
        Some(DriverKind::Microvm) => ResourceSpec {
            memory_mb: asked.memory_mb.max(MICROVM_MIN_MEMORY_MB),
            ..asked
        },
        _ => asked,
    }
}

/// No retry: the policy of a request that gives none.
pub(super) fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        initial_backoff_ms: None,
        max_backoff_ms: None,
        retry_on_exit_codes: None,
    }
}

/// A retry policy (of a job or a sandbox exec) checked, with its defaults; errors carry `code`.
pub(super) fn normalized_retry(
    retry: Option<RetryPolicy>,
    code: &'static str,
) -> ApiResult<RetryPolicy> {
    let retry = retry.unwrap_or_else(no_retries);
    if retry.max_retries > MAX_RETRIES {
        return Err(bad(
            code,
            format!("retry.max_retries must be 0–{MAX_RETRIES}"),
        ));
    }
    let initial = retry.initial_backoff_ms.unwrap_or(1000);
    let max = retry.max_backoff_ms.unwrap_or(60_000);
    if initial < 10 || max < initial || max > 24 * 3600 * 1000 {
        return Err(bad(
            code,
            "retry: initial_backoff_ms must be at least 10, and max_backoff_ms at least it and at most a day"
                .into(),
        ));
    }
    if retry
        .retry_on_exit_codes
        .as_ref()
        .is_some_and(|c| c.len() > 64)
    {
        return Err(bad(code, "retry.retry_on_exit_codes: at most 64".into()));
    }
    Ok(RetryPolicy {
        initial_backoff_ms: Some(initial),
        max_backoff_ms: Some(max),
        ..retry
    })
}

/// The instance an attempt runs as.
fn attempt_spec(req: &JobRequest, job_id: Uuid, number: u32) -> InstanceSpec {
    let mut env = req.env.clone();
    env.insert("AEREKOS_JOB_ID".into(), job_id.to_string());
    env.insert("AEREKOS_JOB_ATTEMPT".into(), number.to_string());
    InstanceSpec {
        image: req.image.clone(),
        command: req.command.clone(),
        env,
        secret_env: BTreeMap::new(),
        generation: 0,
        ports: vec![],
        resources: req.resources,
        health_path: None,
        volume: None,
        tls: false,
        run_once: true,
        timeout_secs: req.timeout_secs,
        driver: req.driver,
    }
}

/// The delay before retry `n` (1 for the first): drawn between half and all of
/// `initial × 2^(n−1)`, at most `max`.
pub(super) fn backoff_ms(policy: &RetryPolicy, n: u32) -> i64 {
    let initial = u64::from(policy.initial_backoff_ms.unwrap_or(1000));
    let max = u64::from(policy.max_backoff_ms.unwrap_or(60_000));
    let full = initial
        .saturating_mul(1u64 << (n.saturating_sub(1)).min(40))
        .min(max);
    rand::thread_rng().gen_range(full / 2..=full) as i64
}

/// Whether an attempt that ended so may be tried again (retries aside).
fn retryable(outcome: AttemptOutcome, exit_code: Option<i64>, policy: &RetryPolicy) -> bool {
    match outcome {
        AttemptOutcome::Exited => exit_retryable(exit_code, policy),
        AttemptOutcome::Cancelled | AttemptOutcome::Running => false,
        _ => true,
    }
}

/// Whether an attempt that exited (of a job or a sandbox exec) may be tried again: a non-zero
/// code the policy names (every one when it names none), or no code at all (a signal).
pub(super) fn exit_retryable(exit_code: Option<i64>, policy: &RetryPolicy) -> bool {
    match exit_code {
        Some(0) => false,
        Some(code) => policy
            .retry_on_exit_codes
            .as_ref()
            .is_none_or(|codes| codes.iter().any(|c| i64::from(*c) == code)),
        None => true,
    }
}

fn parse_request(row: &JobRow) -> ApiResult<JobRequest> {
    serde_json::from_str(&row.request).map_err(ApiError::internal)
}

fn attempt_model(a: AttemptRow) -> ApiResult<JobAttempt> {
    Ok(JobAttempt {
        number: a.number as u32,
        worker_id: Uuid::parse_str(&a.worker_id).map_err(ApiError::internal)?,
        instance_id: Uuid::parse_str(&a.instance_id).map_err(ApiError::internal)?,
        driver: DriverKind::parse(&a.driver).unwrap_or(DriverKind::Process),
        outcome: AttemptOutcome::parse(&a.outcome).unwrap_or(AttemptOutcome::Running),
        exit_code: a.exit_code.map(|c| c as i32),
        signal: a.signal.map(|s| s as i32),
        reason: a.reason,
        stdout_tail: a.stdout_tail,
        stderr_tail: a.stderr_tail,
        stdout_bytes: a.stdout_bytes.map(|b| b as u64),
        stderr_bytes: a.stderr_bytes.map(|b| b as u64),
        started_at: from_ms(a.started_at),
        ended_at: a.ended_at.map(from_ms),
    })
}

impl JobService {
    pub fn new(
        db: Db,
        workers: Arc<WorkerService>,
        instances: Arc<InstanceService>,
        placement: PlacementLock,
        settings: JobSettings,
    ) -> Self {
        Self {
            db,
            workers,
            instances,
            placement,
            settings,
            wake: tokio::sync::Notify::new(),
            waiting: Mutex::default(),
            full_queues: Mutex::default(),
            last_prune: Mutex::default(),
            last_fault_scan: Mutex::default(),
        }
    }

    fn to_model(&self, row: JobRow, last: Option<AttemptRow>) -> ApiResult<Job> {
        let request = parse_request(&row)?;
        let state = JobState::parse(&row.state).unwrap_or(JobState::Queued);
        let reason = if state == JobState::Queued {
            let full = self
                .full_queues
                .lock()
                .expect("full queues lock")
                .get(&row.queue)
                .map(|limit| format!("queue {} runs its limit of {limit} jobs at once", row.queue));
            self.waiting
                .lock()
                .expect("waiting lock")
                .get(&row.id)
                .cloned()
                .or(full)
                .or(row.reason)
        } else {
            row.reason
        };
        Ok(Job {
            id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
            name: row.name,
            state,
            priority: row.priority as u8,
            queue: row.queue,
            idempotency_key: row.idempotency_key,
            request,
            attempts: row.attempts as u32,
            last_attempt: last.map(attempt_model).transpose()?,
            exit_code: row.exit_code.map(|c| c as i32),
            reason,
            submitted_by: row.submitted_by,
            submitted_at: from_ms(row.submitted_at),
            not_before: row.not_before.map(from_ms),
            started_at: row.started_at.map(from_ms),
            finished_at: row.finished_at.map(from_ms),
        })
    }

    async fn model(&self, row: JobRow) -> ApiResult<Job> {
        let last = store::last_attempt(&self.db, &row.id)
            .await
            .map_err(ApiError::internal)?;
        self.to_model(row, last)
    }

    /// Queues a job; with an idempotency key already used, the job it made (false: not new).
    pub async fn submit(&self, by: &str, req: JobRequest) -> ApiResult<(Job, bool)> {
        let hash = super::sha256_hex(&serde_json::to_vec(&req).map_err(ApiError::internal)?);
        let req = normalized(req)?;
        let now = now_ms();
        let priority = req.priority.unwrap_or(DEFAULT_PRIORITY);
        let aging_ms = self.settings.priority_aging.as_millis() as i64;
        let row = JobRow {
            id: Uuid::new_v4().to_string(),
            name: req.name.clone(),
            request: serde_json::to_string(&req).map_err(ApiError::internal)?,
            request_hash: hash.clone(),
            priority: i64::from(priority),
            queue: req.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.into()),
            idempotency_key: req.idempotency_key.clone(),
            state: JobState::Queued.as_str().into(),
            queue_key: now - i64::from(priority) * aging_ms,
            attempts: 0,
            not_before: None,
            exit_code: None,
            reason: None,
            submitted_by: by.to_owned(),
            submitted_at: now,
            started_at: None,
            finished_at: None,
        };
        let (row, created) = store::insert_or_existing(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        if !created && row.request_hash != hash {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                format!(
                    "idempotency key {:?} was used for job {} with a different request; use another key",
                    row.idempotency_key.as_deref().unwrap_or(""),
                    row.id
                ),
            ));
        }
        if created {
            tracing::info!(job_id = %row.id, priority, queue = %row.queue, "job queued");
            self.wake.notify_one();
            // Just queued: no attempt to look up.
            return Ok((self.to_model(row, None)?, true));
        }
        Ok((self.model(row).await?, false))
    }

    async fn row(&self, id: Uuid) -> ApiResult<JobRow> {
        store::get(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("job_not_found", format!("no job with id {id}")))
    }

    pub async fn get(&self, id: Uuid) -> ApiResult<Job> {
        let row = self.row(id).await?;
        self.model(row).await
    }

    pub async fn attempts(&self, id: Uuid) -> ApiResult<Vec<JobAttempt>> {
        self.row(id).await?;
        store::attempts(&self.db, &id.to_string())
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(attempt_model)
            .collect()
    }

    pub async fn list(&self, q: ListQuery) -> ApiResult<JobPage> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(bad("invalid_limit", format!("limit must be 1–{MAX_PAGE}")));
        }
        if let Some(queue) = &q.queue {
            check_queue_name(queue)?;
        }
        let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(cursor) => {
                let parsed = cursor.split_once('_').and_then(|(at, id)| {
                    Some((at.parse::<i64>().ok()?, Uuid::parse_str(id).ok()?))
                });
                let Some((at, id)) = parsed else {
                    return Err(bad(
                        "invalid_cursor",
                        "cursor must be a next_cursor of an earlier page".into(),
                    ));
                };
                Some((at, id.to_string()))
            }
        };
        let filter = store::ListFilter {
            state: q.state.map(JobState::as_str),
            queue: q.queue.as_deref(),
            submitted_after: q.submitted_after.map(|t| t.timestamp_millis()),
            submitted_before: q.submitted_before.map(|t| t.timestamp_millis()),
            before,
            limit,
        };
        let rows = store::list(&self.db, &filter)
            .await
            .map_err(ApiError::internal)?;
        let next_cursor = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| format!("{}_{}", r.submitted_at, r.id)))
            .flatten();
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            jobs.push(self.model(row).await?);
        }
        Ok(JobPage { jobs, next_cursor })
    }

    /// Cancels a queued or running job; a running attempt's worker stops it at once (its process
    /// group or container). 409 when the job has finished.
    pub async fn cancel(&self, id: Uuid, by: &str) -> ApiResult<Job> {
        let _placing = self.placement.lock().await;
        let row = self.row(id).await?;
        let state = JobState::parse(&row.state).unwrap_or(JobState::Queued);
        if state.is_final() {
            return Err(ApiError::conflict(
                "job_finished",
                format!(
                    "job {id} has finished ({}); there is nothing to cancel",
                    row.state
                ),
            ));
        }
        let now = now_ms();
        let reason = format!("cancelled by {by}");
        let running = store::last_attempt(&self.db, &row.id)
            .await
            .map_err(ApiError::internal)?
            .filter(|a| a.outcome == AttemptOutcome::Running.as_str());
        let mut changes = self.instances.begin().await?;
        if let Some(a) = &running {
            let ended = AttemptRow {
                outcome: AttemptOutcome::Cancelled.as_str().into(),
                reason: Some(reason.clone()),
                ended_at: Some(now),
                ..a.clone()
            };
            store::end_attempt(&mut changes.tx, &ended)
                .await
                .map_err(ApiError::internal)?;
            changes.deleted(&a.instance_id, &a.worker_id)?;
        }
        store::update_job(
            &mut changes.tx,
            &JobUpdate {
                id: &row.id,
                state: JobState::Cancelled.as_str(),
                not_before: None,
                exit_code: None,
                reason: Some(&reason),
                finished_at: Some(now),
            },
        )
        .await
        .map_err(ApiError::internal)?;
        changes.commit().await?;
        tracing::info!(job_id = %id, by, "job cancelled");
        self.wake.notify_one();
        self.get(id).await
    }

    /// A worker's report on an instance: when it is the end of a job's attempt, the attempt is
    /// recorded and the job retried or finished (true); anything else is the instance's (false).
    /// 404 when the attempt ended already or is not that worker's: the worker stops it.
    pub async fn report(
        &self,
        worker_id: Uuid,
        instance_id: Uuid,
        report: &InstanceStatusReport,
    ) -> ApiResult<bool> {
        let ended = matches!(
            report.state,
            InstanceState::Exited | InstanceState::Failed | InstanceState::Stopped
        );
        if !ended || report.ending.is_none() {
            return Ok(false);
        }
        let _placing = self.placement.lock().await;
        let Some((attempt, job)) = store::attempt_of_instance(&self.db, &instance_id.to_string())
            .await
            .map_err(ApiError::internal)?
        else {
            return Ok(false);
        };
        if attempt.worker_id != worker_id.to_string()
            || attempt.outcome != AttemptOutcome::Running.as_str()
        {
            return Err(ApiError::not_found(
                "instance_not_found",
                format!(
                    "instance {instance_id} is not a running attempt on worker {worker_id}; stop it"
                ),
            ));
        }
        let ending = report.ending.clone().expect("checked above");
        let (outcome, reason) = if ending.timed_out {
            let secs = parse_request(&job)?
                .timeout_secs
                .unwrap_or(DEFAULT_TIMEOUT_SECS);
            (
                AttemptOutcome::TimedOut,
                format!("stopped at its timeout of {secs} s"),
            )
        } else if report.state == InstanceState::Failed {
            (
                AttemptOutcome::FailedToStart,
                report
                    .reason
                    .clone()
                    .unwrap_or_else(|| "it could not start".into()),
            )
        } else if let Some(signal) = ending.signal {
            (AttemptOutcome::Killed, format!("killed by signal {signal}"))
        } else {
            match report.exit_code {
                Some(code) => (AttemptOutcome::Exited, format!("exited with code {code}")),
                None => (
                    AttemptOutcome::Exited,
                    ending
                        .detail
                        .clone()
                        .unwrap_or_else(|| "it ended; its exit status is unknown".into()),
                ),
            }
        };
        let ended = AttemptRow {
            outcome: outcome.as_str().into(),
            exit_code: report.exit_code.map(i64::from),
            signal: ending.signal.map(i64::from),
            reason: Some(reason),
            stdout_tail: Some(tail(&ending.stdout_tail, TAIL_BYTES)),
            stderr_tail: Some(tail(&ending.stderr_tail, TAIL_BYTES)),
            stdout_bytes: ending.stdout_bytes.map(|b| b as i64),
            stderr_bytes: ending.stderr_bytes.map(|b| b as i64),
            ended_at: Some(now_ms()),
            ..attempt
        };
        self.end_attempt(&job, ended).await?;
        Ok(true)
    }

    /// Records the end of an attempt and what follows for its job: a retry after its backoff, or
    /// the job's end. The caller holds the placement lock.
    async fn end_attempt(&self, job: &JobRow, ended: AttemptRow) -> ApiResult<()> {
        let req = parse_request(job)?;
        let policy = req.retry.clone().unwrap_or_else(no_retries);
        let outcome = AttemptOutcome::parse(&ended.outcome).unwrap_or(AttemptOutcome::Exited);
        let number = ended.number as u32;
        let succeeded = outcome == AttemptOutcome::Exited && ended.exit_code == Some(0);
        let retry = !succeeded
            && retryable(outcome, ended.exit_code, &policy)
            && number <= policy.max_retries;
        let now = now_ms();
        let what = ended.reason.clone().unwrap_or_default();
        let (state, not_before, reason) = if succeeded {
            (JobState::Succeeded, None, None)
        } else if retry {
            let at = now + backoff_ms(&policy, number);
            (
                JobState::Queued,
                Some(at),
                Some(format!("attempt {number} {what}; retrying")),
            )
        } else {
            (
                JobState::Failed,
                None,
                Some(format!("attempt {number} {what}")),
            )
        };
        let mut changes = self.instances.begin().await?;
        if !store::end_attempt(&mut changes.tx, &ended)
            .await
            .map_err(ApiError::internal)?
        {
            // Ended already: the transaction rolls back as it drops.
            return Ok(());
        }
        changes.deleted(&ended.instance_id, &ended.worker_id)?;
        store::update_job(
            &mut changes.tx,
            &JobUpdate {
                id: &job.id,
                state: state.as_str(),
                not_before,
                exit_code: ended.exit_code,
                reason: reason.as_deref(),
                finished_at: state.is_final().then_some(now),
            },
        )
        .await
        .map_err(ApiError::internal)?;
        changes.commit().await?;
        tracing::info!(job_id = %job.id, attempt = number, outcome = outcome.as_str(), exit_code = ?ended.exit_code, job_state = state.as_str(), "job attempt ended");
        self.wake.notify_one();
        Ok(())
    }

    /// One pass of the queue: ends attempts whose worker is lost (or silent past their timeout),
    /// at most every [`FAULT_SCAN_EVERY`], then starts queued jobs, in order, while there is room.
    pub async fn tick(&self) -> ApiResult<()> {
        let _placing = self.placement.lock().await;
        if due(&self.last_fault_scan, FAULT_SCAN_EVERY) {
            self.end_lost_attempts().await?;
        }
        let running_in = store::running_per_queue(&self.db)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|(queue, n)| (queue, n as u32))
            .collect();
        self.start_queued(running_in).await?;
        if due(&self.last_prune, PRUNE_EVERY) {
            self.prune().await;
        }
        Ok(())
    }

    /// Ends the running attempts whose worker is lost, whose instance was removed from under
    /// them, or that their worker has not reported long past their timeout. An attempt its lost
    /// worker never started is undone instead: the job is queued again, the attempt not counted.
    /// The caller holds the placement lock.
    async fn end_lost_attempts(&self) -> ApiResult<()> {
        let now = now_ms();
        let instances = store::running_instances(&self.db)
            .await
            .map_err(ApiError::internal)?;
        // Right after this conductor started, workers are still reporting what ended while it
        // was away: no attempt is judged overdue until they have had the time.
        let settled = now - self.workers.started_at() > TIMEOUT_SLACK_MS;
        for (a, job) in store::running(&self.db).await.map_err(ApiError::internal)? {
            let worker = Uuid::parse_str(&a.worker_id).map_err(ApiError::internal)?;
            let timeout_ms = i64::from(parse_request(&job)?.timeout_secs.unwrap_or(0)) * 1000;
            let instance = instances.get(&a.instance_id);
            let never_started = instance.is_some_and(|(state, _)| state == "pending");
            let ending = if instance.is_none() {
                Some((
                    AttemptOutcome::Killed,
                    "its instance was removed from under it".to_owned(),
                ))
            } else if !self.workers.is_live(worker) && never_started {
                let reason = format!(
                    "placed on worker {worker}, which was lost before it started the attempt; queued again"
                );
                let mut changes = self.instances.begin().await?;
                if store::unplace(&mut changes.tx, &a, &reason)
                    .await
                    .map_err(ApiError::internal)?
                {
                    changes.deleted(&a.instance_id, &a.worker_id)?;
                    changes.commit().await?;
                    tracing::info!(job_id = %a.job_id, worker_id = %worker, "attempt on a lost worker never started; job queued again");
                }
                continue;
            } else if !self.workers.is_live(worker) {
                Some((
                    AttemptOutcome::WorkerLost,
                    format!("its worker {worker} stopped heartbeating while it ran"),
                ))
            } else if let Some((_, running_since)) =
                instance.filter(|(state, _)| settled && state != "pending")
            {
                // Counted from the worker's report that it runs, not from the placement (a
                // worker starting a burst takes a while to reach each).
                (now > (*running_since).max(a.started_at) + timeout_ms + TIMEOUT_SLACK_MS).then(
                    || {
                        (
                            AttemptOutcome::TimedOut,
                            format!(
                                "its worker did not report its end within {} s of its timeout",
                                TIMEOUT_SLACK_MS / 1000
                            ),
                        )
                    },
                )
            } else {
                None
            };
            if let Some((outcome, reason)) = ending {
                let ended = AttemptRow {
                    outcome: outcome.as_str().into(),
                    reason: Some(reason),
                    ended_at: Some(now),
                    ..a
                };
                self.end_attempt(&job, ended).await?;
            }
        }
        Ok(())
    }

    async fn start_queued(&self, mut running_in: HashMap<String, u32>) -> ApiResult<()> {
        let limits: HashMap<String, u32> = store::queue_limits(&self.db)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .filter_map(|(name, limit)| Some((name, limit? as u32)))
            .collect();
        let full_queues: HashMap<String, u32> = limits
            .iter()
            .filter(|(queue, limit)| running_in.get(*queue).copied().unwrap_or(0) >= **limit)
            .map(|(queue, limit)| (queue.clone(), *limit))
            .collect();
        let full: Vec<String> = full_queues.keys().cloned().collect();
        *self.full_queues.lock().expect("full queues lock") = full_queues;
        let queued = store::queued_due(&self.db, now_ms(), &full, PASS_LIMIT)
            .await
            .map_err(ApiError::internal)?;
        if queued.is_empty() {
            self.waiting.lock().expect("waiting lock").clear();
            return Ok(());
        }
        let mut candidates = self.instances.checked_in_candidates().await?;
        // The same workers idle: whether a job could ever run on one.
        let empty: Vec<_> = candidates
            .iter()
            .map(|c| scheduler::Candidate {
                reserved: Amounts::default(),
                ..c.clone()
            })
            .collect();
        // Attempts are placed as of now (after the queue was read, so never before a submit).
        let now = now_ms();
        let no_labels = BTreeMap::new();
        let mut waiting = HashMap::new();
        let mut started = vec![];
        let mut blocked_by: Option<String> = None;
        for job in queued {
            if let Some(first) = &blocked_by {
                waiting.insert(
                    job.id.clone(),
                    format!("waiting behind job {first}, first in line"),
                );
                continue;
            }
            if let Some(limit) = limits.get(&job.queue) {
                if running_in.get(&job.queue).copied().unwrap_or(0) >= *limit {
                    waiting.insert(
                        job.id.clone(),
                        format!("queue {} runs its limit of {limit} jobs at once", job.queue),
                    );
                    continue;
                }
            }
            let req = parse_request(&job)?;
            let drivers = [req.driver.unwrap_or(DriverKind::Process)];
            let request = scheduler::Request {
                count: 1,
                resources: req.resources.unwrap_or(DEFAULT_RESOURCES),
                worker_ids: &[],
                labels: &no_labels,
                strategy: PlacementStrategy::Spread,
                drivers: &drivers,
            };
            match scheduler::place(&mut candidates, &request) {
                Ok(placed) => {
                    let p = placed[0];
                    let job_id = Uuid::parse_str(&job.id).map_err(ApiError::internal)?;
                    let number = job.attempts as u32 + 1;
                    let spec = attempt_spec(&req, job_id, number);
                    let instance = instances::new_row(p.worker_id, None, &spec, now)?;
                    let attempt = AttemptRow {
                        job_id: job.id.clone(),
                        number: i64::from(number),
                        instance_id: instance.id.clone(),
                        worker_id: p.worker_id.to_string(),
                        driver: p.driver.as_str().into(),
                        outcome: AttemptOutcome::Running.as_str().into(),
                        exit_code: None,
                        signal: None,
                        reason: None,
                        stdout_tail: None,
                        stderr_tail: None,
                        stdout_bytes: None,
                        stderr_bytes: None,
                        started_at: now,
                        ended_at: None,
                    };
                    *running_in.entry(job.queue.clone()).or_default() += 1;
                    started.push((attempt, instance));
                }
                Err(short) => {
                    if scheduler::place(&mut empty.clone(), &request).is_err() {
                        waiting.insert(
                            job.id.clone(),
                            format!(
                                "no live worker could run it even when idle: {}",
                                short.message
                            ),
                        );
                    } else {
                        waiting.insert(
                            job.id.clone(),
                            format!("waiting for room: {}", short.message),
                        );
                        blocked_by = Some(job.id.clone());
                    }
                }
            }
        }
        *self.waiting.lock().expect("waiting lock") = waiting;
        if started.is_empty() {
            return Ok(());
        }
        let mut changes = self.instances.begin().await?;
        store::start_attempts(&mut changes.tx, &started)
            .await
            .map_err(ApiError::internal)?;
        for (_, instance) in &started {
            changes.inserted(instance)?;
        }
        changes.commit().await?;
        for (a, _) in &started {
            tracing::debug!(job_id = %a.job_id, attempt = a.number, worker_id = %a.worker_id, "job attempt placed");
        }
        Ok(())
    }

    async fn prune(&self) {
        let before = now_ms() - self.settings.history.as_millis() as i64;
        match store::prune(&self.db, before, self.settings.history_max).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "finished jobs past their retention forgotten"),
            Err(e) => tracing::warn!(error = %e, "forgetting old jobs failed; trying again later"),
        }
    }

    pub async fn queues(&self) -> ApiResult<Vec<JobQueue>> {
        let mut queues: BTreeMap<String, JobQueue> = BTreeMap::new();
        let entry = |queues: &mut BTreeMap<String, JobQueue>, name: &str| {
            queues
                .entry(name.to_owned())
                .or_insert_with(|| JobQueue {
                    name: name.to_owned(),
                    concurrency_limit: None,
                    running: 0,
                    queued: 0,
                })
                .name
                .clone()
        };
        for (name, limit) in store::queue_limits(&self.db)
            .await
            .map_err(ApiError::internal)?
        {
            entry(&mut queues, &name);
            queues.get_mut(&name).expect("just added").concurrency_limit = limit.map(|l| l as u32);
        }
        for (name, running, queued) in store::queue_counts(&self.db)
            .await
            .map_err(ApiError::internal)?
        {
            entry(&mut queues, &name);
            let q = queues.get_mut(&name).expect("just added");
            q.running = running as u32;
            q.queued = queued as u32;
        }
        Ok(queues.into_values().collect())
    }

    pub async fn set_queue(&self, name: &str, settings: JobQueueSettings) -> ApiResult<JobQueue> {
        check_queue_name(name)?;
        if settings
            .concurrency_limit
            .is_some_and(|l| !(1..=10_000).contains(&l))
        {
            return Err(bad(
                "invalid_queue",
                "concurrency_limit must be 1–10000 (leave it out for no limit)".into(),
            ));
        }
        store::set_queue(
            &self.db,
            name,
            settings.concurrency_limit.map(i64::from),
            now_ms(),
        )
        .await
        .map_err(ApiError::internal)?;
        self.wake.notify_one();
        self.queues()
            .await?
            .into_iter()
            .find(|q| q.name == name)
            .ok_or_else(|| ApiError::internal("the queue just set is missing"))
    }

    pub async fn delete_queue(&self, name: &str) -> ApiResult<()> {
        check_queue_name(name)?;
        if store::delete_queue(&self.db, name)
            .await
            .map_err(ApiError::internal)?
        {
            self.wake.notify_one();
            Ok(())
        } else {
            Err(ApiError::not_found(
                "queue_not_found",
                format!("queue {name} has no settings to remove"),
            ))
        }
    }
}

/// Whether `every` has passed since `last` (and if so, restarts it).
fn due(last: &Mutex<Option<tokio::time::Instant>>, every: Duration) -> bool {
    let mut last = last.lock().expect("timer lock");
    if last.is_some_and(|at| at.elapsed() < every) {
        return false;
    }
    *last = Some(tokio::time::Instant::now());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: u32, max: u32, codes: Option<Vec<i32>>) -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff_ms: Some(initial),
            max_backoff_ms: Some(max),
            retry_on_exit_codes: codes,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_its_maximum() {
        let p = policy(100, 1000, None);
        for _ in 0..200 {
            assert!((50..=100).contains(&backoff_ms(&p, 1)));
            assert!((100..=200).contains(&backoff_ms(&p, 2)));
            assert!((200..=400).contains(&backoff_ms(&p, 3)));
            assert!((500..=1000).contains(&backoff_ms(&p, 30)));
        }
    }

    #[test]
    fn only_the_named_exit_codes_are_retried_but_faults_always_are() {
        let p = policy(100, 1000, Some(vec![75]));
        assert!(retryable(AttemptOutcome::Exited, Some(75), &p));
        assert!(!retryable(AttemptOutcome::Exited, Some(1), &p));
        assert!(!retryable(AttemptOutcome::Exited, Some(0), &p));
        assert!(retryable(AttemptOutcome::TimedOut, None, &p));
        assert!(retryable(AttemptOutcome::WorkerLost, None, &p));
        assert!(!retryable(AttemptOutcome::Cancelled, None, &p));
        let any = policy(100, 1000, None);
        assert!(retryable(AttemptOutcome::Exited, Some(1), &any));
    }

    #[test]
    fn requests_get_their_defaults_and_bad_ones_say_what_to_fix() {
        let req = JobRequest {
            name: None,
            image: None,
            command: Some(vec!["true".into()]),
            env: BTreeMap::new(),
            resources: None,
            driver: None,
            timeout_secs: None,
            retry: None,
            priority: None,
            queue: None,
            idempotency_key: None,
        };
        let n = normalized(req.clone()).unwrap();
        assert_eq!(n.driver, Some(DriverKind::Process));
        assert_eq!(n.timeout_secs, Some(DEFAULT_TIMEOUT_SECS));
        assert_eq!(n.queue.as_deref(), Some(DEFAULT_QUEUE));
        let err = normalized(JobRequest {
            driver: Some(DriverKind::Docker),
            ..req.clone()
        })
        .unwrap_err();
        assert!(
            err.body().message.contains("give `image`"),
            "{}",
            err.body().message
        );
        let err = normalized(JobRequest {
            priority: Some(101),
            ..req.clone()
        })
        .unwrap_err();
        assert_eq!(err.body().code, "invalid_job");
        let err = normalized(JobRequest {
            queue: Some("Bad Queue".into()),
            ..req
        })
        .unwrap_err();
        assert_eq!(err.body().code, "invalid_queue");
    }

    #[test]
    fn tails_cut_at_a_character_boundary() {
        assert_eq!(tail("abcé", 1), "");
        assert_eq!(tail("abcé", 2), "é");
        assert_eq!(tail("ab", 10), "ab");
    }
}
