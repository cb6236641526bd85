//! Schedules: jobs submitted, or platform endpoints called, on a clock kept in the database.
//!
//! A conductor feature rather than a service of its own: the clock must outlive restarts, and
//! what a fire does (queue a job, reach a service through the gateway) is the conductor's already;
//! a separate service would hold the same state and call the conductor for every fire.
//!
//! - **The clock** is `next_fire_at` in the row. The schedule loop (every 200 ms, and at once
//!   after a change) fires what is due and moves the clock on in one transaction with the fire's
//!   record. A job's fire submits it with the idempotency key `schedule:<id>:<due ms>`, so a
//!   crash between the submit and the record never makes two jobs for one due time.
//! - **Misfires.** A due time more than [`MISFIRE_GRACE_MS`] in the past when the loop sees it
//!   was missed (the conductor was down): `run_once` fires once for all of them, `skip` records
//!   that they were skipped; either way the clock goes on from now.
//! - **Overlap.** While the job of the previous fire is queued or running, a fire is skipped,
//!   queued (at most one waits, submitted when that job ends) or cancels it first.
//! - **Calls** go to `/api/<service><path>` through the gateway's forwarder with a service token
//!   of the scheduler's (`service:scheduler`); 2xx is `called`, anything else `call_failed`. A
//!   call is made at least once: a crash after it and before its record repeats it.

use std::{str::FromStr as _, sync::Arc, time::Duration};

use aerekos_common::{ApiError, ApiResult};
use chrono::TimeZone as _;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{
    auth::AuthService,
    from_ms,
    jobs::{self, JobService},
};
use crate::{
    model::{
        FireOutcome, JobRequest, MisfirePolicy, OverlapPolicy, Schedule, ScheduleFire,
        ScheduleRequest, ServiceCall,
    },
    store::{
        Db, now_ms,
        schedules::{self as store, Advance, FireRow, ScheduleRow},
    },
};

/// How often due schedules are looked for when nothing wakes the loop.
pub const TICK: Duration = Duration::from_millis(200);
/// A due time older than this when the loop sees it was missed, not merely late.
pub const MISFIRE_GRACE_MS: i64 = 5_000;
pub const MAX_EVERY_SECS: u32 = 31 * 24 * 3600;
const CALL_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The longest a schedule's call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Missed due times counted one by one at most (a per-second cron after a long downtime).
const MAX_MISSED_COUNTED: i64 = 100_000;
/// The most fires a listing gives.
pub const MAX_FIRES_PAGE: u32 = 1000;

/// Makes a schedule's call (the gateway's forwarder, in the running conductor): the status, or
/// why there was none.
pub trait ServiceCaller: Send + Sync {
    fn call<'a>(
        &'a self,
        call: &'a ServiceCall,
        token: &'a str,
    ) -> BoxFuture<'a, Result<u16, String>>;
}

/// When a schedule is due.
enum Clock {
    Every {
        anchor: i64,
        ms: i64,
    },
    Cron {
        cron: Box<croner::Cron>,
        tz: chrono_tz::Tz,
    },
}

impl Clock {
    fn of(req: &ScheduleRequest, anchor: i64) -> ApiResult<Self> {
        let bad = |m: String| ApiError::bad_request("invalid_schedule", m);
        match (&req.cron, req.every_secs) {
            (Some(_), Some(_)) | (None, None) => {
                Err(bad("give exactly one of `cron` and `every_secs`".into()))
            }
            (None, Some(secs)) => {
                if !(1..=MAX_EVERY_SECS).contains(&secs) {
                    return Err(bad(format!("every_secs must be 1–{MAX_EVERY_SECS}")));
                }
                if req.timezone.is_some() {
                    return Err(bad(
                        "timezone is for a cron expression; every_secs counts seconds".into(),
                    ));
                }
                Ok(Clock::Every {
                    anchor,
                    ms: i64::from(secs) * 1000,
                })
            }
            (Some(expr), None) => {
                let tz = match &req.timezone {
                    None => chrono_tz::UTC,
                    Some(name) => chrono_tz::Tz::from_str(name).map_err(|_| {
                        bad(format!(
                            "timezone {name:?} is not an IANA time zone (e.g. UTC, Europe/Paris)"
                        ))
                    })?,
                };
                let cron = croner::Cron::new(expr)
                    .with_seconds_optional()
                    .parse()
                    .map_err(|e| bad(format!("cron {expr:?}: {e}")))?;
                Ok(Clock::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
        }
    }

    /// The first due time strictly after `t` (Unix ms).
    fn after(&self, t: i64) -> Option<i64> {
        match self {
            Clock::Every { anchor, ms } => {
                let k = if t < *anchor {
                    1
                } else {
                    (t - anchor) / ms + 1
                };
                Some(anchor + k * ms)
            }
            Clock::Cron { cron, tz } => {
                let at = tz.timestamp_millis_opt(t).single()?;
                let next = cron
                    .find_next_occurrence(&at, false)
                    .ok()?
                    .timestamp_millis();
                if next > t {
                    return Some(next);
                }
                // In the hour a clock is set back, local times repeat and the search can land on
                // the first pass of one already gone: look again from after the repeat.
                let later = tz.timestamp_millis_opt(t + 3_600_000).single()?;
                cron.find_next_occurrence(&later, false)
                    .ok()
                    .map(|n| n.timestamp_millis())
                    .filter(|n| *n > t)
            }
        }
    }
}

pub struct ScheduleService {
    db: Db,
    jobs: Arc<JobService>,
    auth: Arc<AuthService>,
    /// Wakes the schedule loop at once (a schedule made, changed or resumed).
    pub wake: tokio::sync::Notify,
    /// The scheduler's service token for calls, reused until near its end.
    token: tokio::sync::Mutex<Option<(String, i64)>>,
    /// Schedules whose fire is in progress: each fires on its own task, one at a time, so a slow
    /// call (up to its timeout) delays no other schedule.
    firing: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Marks a schedule's fire over when dropped.
struct NotFiring(Arc<ScheduleService>, String);

impl Drop for NotFiring {
    fn drop(&mut self) {
        self.0.firing.lock().expect("firing lock").remove(&self.1);
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_schedule",
            format!("schedule name {name:?} must be 1–64 of a-z, 0-9, '_' and '-'"),
        ))
    }
}

/// The request checked (its job as a submit would check it).
fn checked(req: &ScheduleRequest) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_schedule", m));
    check_name(&req.name)?;
    Clock::of(req, 0)?;
    match (&req.job, &req.call) {
        (Some(_), Some(_)) | (None, None) => {
            return bad("give exactly one of `job` and `call`".into());
        }
        (Some(job), None) => {
            if job.idempotency_key.is_some() {
                return bad(
                    "job.idempotency_key is set by the schedule (one per due time); leave it out"
                        .into(),
                );
            }
            jobs::normalized(job.clone())?;
        }
        (None, Some(call)) => {
            let service_ok = (1..=64).contains(&call.service.len())
                && call
                    .service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !service_ok {
                return bad("call.service must be a service name (a-z, 0-9, '_')".into());
            }
            if !call.path.starts_with('/')
                || call.path.split('/').any(|s| s == "..")
                || call
                    .path
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return bad(
                    "call.path must start with '/', without '..' segments or spaces".into(),
                );
            }
            if let Some(m) = &call.method {
                if !CALL_METHODS.contains(&m.as_str()) {
                    return bad(format!("call.method must be one of {CALL_METHODS:?}"));
                }
            }
            if let Some(body) = &call.body {
                if serde_json::from_str::<serde_json::Value>(body).is_err() {
                    return bad("call.body must be JSON text".into());
                }
            }
        }
    }
    if req.overlap.is_some() && req.call.is_some() {
        return bad("overlap is for a job's runs; a call has none".into());
    }
    Ok(())
}

fn parse(row: &ScheduleRow) -> ApiResult<ScheduleRequest> {
    serde_json::from_str(&row.request).map_err(ApiError::internal)
}

fn to_model(row: ScheduleRow) -> ApiResult<Schedule> {
    Ok(Schedule {
        id: Uuid::parse_str(&row.id).map_err(ApiError::internal)?,
        request: parse(&row)?,
        name: row.name,
        paused: row.paused,
        next_fire_at: row.next_fire_at.filter(|_| !row.paused).map(from_ms),
        last_fire_at: row.last_fire_at.map(from_ms),
        last_job_id: row.last_job_id.and_then(|j| Uuid::parse_str(&j).ok()),
        created_by: row.created_by,
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
    })
}

fn fire_model(f: FireRow) -> ScheduleFire {
    ScheduleFire {
        seq: f.seq as u64,
        scheduled_for: from_ms(f.scheduled_for),
        fired_at: from_ms(f.fired_at),
        outcome: FireOutcome::parse(&f.outcome).unwrap_or(FireOutcome::Failed),
        job_id: f.job_id.and_then(|j| Uuid::parse_str(&j).ok()),
        http_status: f.http_status.map(|s| s as u16),
        missed: f.missed as u32,
        detail: f.detail,
    }
}

/// What a fire decided.
struct Fired {
    outcome: FireOutcome,
    job_id: Option<String>,
    http_status: Option<u16>,
    detail: Option<String>,
    /// overlap = queue: this fire waits for the previous job.
    waits: bool,
}

impl Fired {
    fn just(outcome: FireOutcome, detail: String) -> Self {
        Self {
            outcome,
            job_id: None,
            http_status: None,
            detail: Some(detail),
            waits: false,
        }
    }
}

impl ScheduleService {
    pub fn new(db: Db, jobs: Arc<JobService>, auth: Arc<AuthService>) -> Self {
        Self {
            db,
            jobs,
            auth,
            wake: tokio::sync::Notify::new(),
            token: tokio::sync::Mutex::new(None),
            firing: std::sync::Mutex::default(),
        }
    }

    async fn row(&self, name: &str) -> ApiResult<ScheduleRow> {
        check_name(name)?;
        store::by_name(&self.db, name)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found("schedule_not_found", format!("no schedule named {name}"))
            })
    }

    pub async fn create(&self, by: &str, req: ScheduleRequest) -> ApiResult<Schedule> {
        checked(&req)?;
        let now = now_ms();
        let clock = Clock::of(&req, now)?;
        let row = ScheduleRow {
            id: Uuid::new_v4().to_string(),
            name: req.name.clone(),
            request: serde_json::to_string(&req).map_err(ApiError::internal)?,
            paused: false,
            anchor_at: now,
            next_fire_at: clock.after(now),
            last_fire_at: None,
            last_job_id: None,
            waiting_fire_at: None,
            created_by: by.to_owned(),
            created_at: now,
            updated_at: now,
        };
        if !store::insert(&self.db, &row)
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::conflict(
                "schedule_exists",
                format!(
                    "a schedule named {} exists; change it with PUT, or pick another name",
                    req.name
                ),
            ));
        }
        tracing::info!(schedule = %req.name, next_fire_at = ?row.next_fire_at, "schedule made");
        self.wake.notify_one();
        to_model(row)
    }

    /// Replaces what the schedule asks for; its clock starts again from now.
    pub async fn replace(&self, name: &str, req: ScheduleRequest) -> ApiResult<Schedule> {
        checked(&req)?;
        if req.name != name {
            return Err(ApiError::bad_request(
                "invalid_schedule",
                format!(
                    "the body names {:?}, the path {name:?}; a schedule keeps its name",
                    req.name
                ),
            ));
        }
        let mut row = self.row(name).await?;
        let now = now_ms();
        row.request = serde_json::to_string(&req).map_err(ApiError::internal)?;
        row.anchor_at = now;
        row.next_fire_at = Clock::of(&req, now)?.after(now);
        row.waiting_fire_at = None;
        // Strictly later, so a fire in progress sees the change (`store::advance`).
        row.updated_at = now.max(row.updated_at + 1);
        store::update(&self.db, &row)
            .await
            .map_err(ApiError::internal)?;
        self.wake.notify_one();
        to_model(row)
    }

    pub async fn get(&self, name: &str) -> ApiResult<Schedule> {
        to_model(self.row(name).await?)
    }

    pub async fn list(&self) -> ApiResult<Vec<Schedule>> {
        store::all(&self.db)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(to_model)
            .collect()
    }

    pub async fn delete(&self, name: &str) -> ApiResult<()> {
        check_name(name)?;
        if store::delete(&self.db, name)
            .await
            .map_err(ApiError::internal)?
        {
            Ok(())
        } else {
            Err(ApiError::not_found(
                "schedule_not_found",
                format!("no schedule named {name}"),
            ))
        }
    }

    /// Pauses (no fires, none counted as missed) or resumes (the clock goes on from now).
    pub async fn set_paused(&self, name: &str, paused: bool) -> ApiResult<Schedule> {
        let mut row = self.row(name).await?;
        let now = now_ms();
        if row.paused != paused {
            let req = parse(&row)?;
            row.paused = paused;
            row.next_fire_at = if paused {
                None
            } else {
                Clock::of(&req, row.anchor_at)?.after(now)
            };
            row.waiting_fire_at = None;
            // Strictly later, so a fire in progress sees the change (`store::advance`).
            row.updated_at = now.max(row.updated_at + 1);
            store::update(&self.db, &row)
                .await
                .map_err(ApiError::internal)?;
            tracing::info!(schedule = %name, paused, "schedule paused or resumed");
            self.wake.notify_one();
        }
        to_model(row)
    }

    pub async fn fires(&self, name: &str, limit: Option<u32>) -> ApiResult<Vec<ScheduleFire>> {
        let limit = limit.unwrap_or(100);
        if !(1..=MAX_FIRES_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be 1–{MAX_FIRES_PAGE}"),
            ));
        }
        let row = self.row(name).await?;
        Ok(store::fires(&self.db, &row.id, limit)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(fire_model)
            .collect())
    }

    /// One pass: every due schedule not already firing starts its fire (or records why not) on a
    /// task of its own, where its clock then moves on.
    pub async fn tick(self: &Arc<Self>, caller: &Arc<dyn ServiceCaller>) -> ApiResult<()> {
        for row in store::due(&self.db, now_ms())
            .await
            .map_err(ApiError::internal)?
        {
            if !self
                .firing
                .lock()
                .expect("firing lock")
                .insert(row.id.clone())
            {
                continue;
            }
            let (this, caller) = (self.clone(), caller.clone());
            tokio::spawn(async move {
                // Whatever happens to the fire (a panic included), the schedule may fire again.
                let _done = NotFiring(this.clone(), row.id.clone());
                if let Err(e) = this.fire_due(&row.id, &*caller).await {
                    tracing::error!(schedule = %row.name, error = %e.body().message, "a schedule's fire failed; trying again");
                }
            });
        }
        Ok(())
    }

    /// Fires schedule `id` if it is still due: read again here, since the row the pass saw may
    /// predate a fire that has just finished (which would otherwise fire the same time twice).
    async fn fire_due(&self, id: &str, caller: &dyn ServiceCaller) -> ApiResult<()> {
        let now = now_ms();
        let Some(row) = store::by_id(&self.db, id)
            .await
            .map_err(ApiError::internal)?
        else {
            return Ok(());
        };
        let due = row.next_fire_at.is_some_and(|at| at <= now) || row.waiting_fire_at.is_some();
        if row.paused || !due {
            return Ok(());
        }
        self.advance(&row, now, caller).await
    }

    async fn advance(
        &self,
        row: &ScheduleRow,
        now: i64,
        caller: &dyn ServiceCaller,
    ) -> ApiResult<()> {
        let req = parse(row)?;
        let clock = Clock::of(&req, row.anchor_at)?;
        let mut fires = vec![];
        let mut last_job = None;
        let mut waiting = row.waiting_fire_at;
        let mut last_fire_at = None;
        let record = |due: i64, missed: i64, fired: &Fired| FireRow {
            seq: 0,
            schedule_id: row.id.clone(),
            scheduled_for: due,
            fired_at: now_ms(),
            outcome: fired.outcome.as_str().into(),
            job_id: fired.job_id.clone(),
            http_status: fired.http_status.map(i64::from),
            missed,
            detail: fired.detail.clone(),
        };
        // A queued fire whose previous job has ended goes now.
        if let Some(due) = waiting {
            if !self.previous_runs(row).await? {
                let fired = self.submit(row, &req, due).await;
                last_job = fired.job_id.clone();
                fires.push(record(due, 0, &fired));
                waiting = None;
            }
        }
        let mut next = row.next_fire_at;
        if let Some(first) = row.next_fire_at.filter(|d| *d <= now) {
            if now - first > MISFIRE_GRACE_MS {
                // Missed while the conductor was away: every due time up to now counts.
                let (mut last, mut missed) = (first, 1i64);
                while let Some(n) = clock.after(last).filter(|n| *n <= now) {
                    last = n;
                    missed += 1;
                    if missed >= MAX_MISSED_COUNTED {
                        break;
                    }
                }
                next = clock.after(now);
                match req.misfire.unwrap_or_default() {
                    MisfirePolicy::Skip => {
                        let fired = Fired::just(
                            FireOutcome::SkippedMisfire,
                            format!(
                                "{missed} fire(s) missed while the conductor was away; skipped (misfire = skip)"
                            ),
                        );
                        fires.push(record(last, missed, &fired));
                    }
                    MisfirePolicy::RunOnce => {
                        let mut fired = self.fire(row, &req, last, waiting, caller).await;
                        let said = format!(
                            "{missed} fire(s) missed while the conductor was away; run once (misfire = run_once)"
                        );
                        fired.detail = Some(match fired.detail {
                            Some(d) => format!("{said}; {d}"),
                            None => said,
                        });
                        if fired.waits {
                            waiting = Some(last);
                        }
                        last_job = fired.job_id.clone().or(last_job);
                        fires.push(record(last, missed, &fired));
                        last_fire_at = Some(now);
                    }
                }
            } else {
                let fired = self.fire(row, &req, first, waiting, caller).await;
                if fired.waits {
                    waiting = Some(first);
                }
                last_job = fired.job_id.clone().or(last_job);
                fires.push(record(first, 0, &fired));
                last_fire_at = Some(now);
                next = clock.after(first);
            }
        }
        store::advance(
            &self.db,
            &Advance {
                id: &row.id,
                seen_updated_at: row.updated_at,
                next_fire_at: next,
                last_fire_at,
                last_job_id: last_job.as_deref(),
                waiting_fire_at: waiting,
                fires,
            },
        )
        .await
        .map_err(ApiError::internal)
    }

    /// Whether the job of the schedule's last fire is still queued or running.
    async fn previous_runs(&self, row: &ScheduleRow) -> ApiResult<bool> {
        let Some(id) = row
            .last_job_id
            .as_deref()
            .and_then(|j| Uuid::parse_str(j).ok())
        else {
            return Ok(false);
        };
        match self.jobs.get(id).await {
            Ok(job) => Ok(!job.state.is_final()),
            // Forgotten (past the job history): long over.
            Err(e) if e.body().code == "job_not_found" => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn fire(
        &self,
        row: &ScheduleRow,
        req: &ScheduleRequest,
        due: i64,
        waiting: Option<i64>,
        caller: &dyn ServiceCaller,
    ) -> Fired {
        if let Some(call) = &req.call {
            return self.call(call, caller).await;
        }
        match self.previous_runs(row).await {
            Err(e) => return Fired::just(FireOutcome::Failed, e.body().message.clone()),
            Ok(false) => {}
            Ok(true) => {
                let previous = row.last_job_id.clone().unwrap_or_default();
                match req.overlap.unwrap_or_default() {
                    OverlapPolicy::Skip => {
                        return Fired::just(
                            FireOutcome::SkippedOverlap,
                            format!(
                                "job {previous} of the previous fire still runs (overlap = skip)"
                            ),
                        );
                    }
                    OverlapPolicy::Queue if waiting.is_some() => {
                        return Fired::just(
                            FireOutcome::SkippedOverlap,
                            format!(
                                "a fire already waits for job {previous} (overlap = queue keeps one)"
                            ),
                        );
                    }
                    OverlapPolicy::Queue => {
                        let mut fired = Fired::just(
                            FireOutcome::Queued,
                            format!(
                                "waits for job {previous} of the previous fire (overlap = queue)"
                            ),
                        );
                        fired.waits = true;
                        return fired;
                    }
                    OverlapPolicy::CancelPrevious => {
                        if let Ok(id) = Uuid::parse_str(&previous) {
                            match self
                                .jobs
                                .cancel(id, &format!("schedule {}", row.name))
                                .await
                            {
                                Ok(_) => {}
                                // It ended meanwhile: nothing to cancel.
                                Err(e) if e.body().code == "job_finished" => {}
                                Err(e) => {
                                    return Fired::just(
                                        FireOutcome::Failed,
                                        e.body().message.clone(),
                                    );
                                }
                            }
                        }
                        let mut fired = self.submit(row, req, due).await;
                        fired.detail = Some(format!(
                            "cancelled job {previous} of the previous fire (overlap = cancel_previous)"
                        ));
                        return fired;
                    }
                }
            }
        }
        self.submit(row, req, due).await
    }

    /// Submits the schedule's job for due time `due` (its idempotency key makes a repeat the same
    /// job).
    async fn submit(&self, row: &ScheduleRow, req: &ScheduleRequest, due: i64) -> Fired {
        let Some(job) = &req.job else {
            return Fired::just(FireOutcome::Failed, "the schedule has no job".into());
        };
        let job = JobRequest {
            idempotency_key: Some(format!("schedule:{}:{due}", row.id)),
            name: job
                .name
                .clone()
                .or_else(|| Some(format!("schedule {}", row.name))),
            ..job.clone()
        };
        match self
            .jobs
            .submit(&format!("schedule:{}", row.name), job)
            .await
        {
            Ok((job, _)) => Fired {
                outcome: FireOutcome::Submitted,
                job_id: Some(job.id.to_string()),
                http_status: None,
                detail: None,
                waits: false,
            },
            Err(e) => Fired::just(FireOutcome::Failed, e.body().message.clone()),
        }
    }

    async fn call(&self, call: &ServiceCall, caller: &dyn ServiceCaller) -> Fired {
        let token = match self.token().await {
            Ok(t) => t,
            Err(e) => return Fired::just(FireOutcome::CallFailed, e.body().message.clone()),
        };
        // Bounded: the schedule loop fires one schedule after another.
        let answer = tokio::time::timeout(CALL_TIMEOUT, caller.call(call, &token))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())));
        match answer {
            Ok(status) => Fired {
                outcome: if (200..300).contains(&status) {
                    FireOutcome::Called
                } else {
                    FireOutcome::CallFailed
                },
                job_id: None,
                http_status: Some(status),
                detail: None,
                waits: false,
            },
            Err(why) => Fired::just(FireOutcome::CallFailed, why),
        }
    }

    /// The scheduler's service token, fresh for at least five more minutes.
    async fn token(&self) -> ApiResult<String> {
        let mut cached = self.token.lock().await;
        let now = chrono::Utc::now().timestamp();
        if let Some((token, _)) = cached.as_ref().filter(|(_, exp)| *exp - now > 300) {
            return Ok(token.clone());
        }
        let issued = self.auth.service_token("scheduler", Some(3600)).await?;
        *cached = Some((issued.token.clone(), issued.expires_at.timestamp()));
        Ok(issued.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cron: Option<&str>, every: Option<u32>, tz: Option<&str>) -> ScheduleRequest {
        ScheduleRequest {
            name: "s".into(),
            cron: cron.map(str::to_owned),
            every_secs: every,
            timezone: tz.map(str::to_owned),
            job: None,
            call: None,
            overlap: None,
            misfire: None,
        }
    }

    #[test]
    fn an_interval_counts_from_its_anchor() {
        let clock = Clock::of(&request(None, Some(10), None), 1_000).unwrap();
        assert_eq!(clock.after(0), Some(11_000));
        assert_eq!(clock.after(1_000), Some(11_000));
        assert_eq!(clock.after(10_999), Some(11_000));
        assert_eq!(clock.after(11_000), Some(21_000));
    }

    #[test]
    fn cron_is_read_in_its_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter.
        let clock = Clock::of(&request(Some("0 9 * * *"), None, Some("Europe/Paris")), 0).unwrap();
        let start = chrono::Utc
            .with_ymd_and_hms(2026, 12, 7, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let next = clock.after(start).unwrap();
        assert_eq!(from_ms(next).to_rfc3339(), "2026-12-07T08:00:00+00:00");
        let seconds = Clock::of(&request(Some("*/5 * * * * *"), None, None), 0).unwrap();
        assert_eq!(seconds.after(start), Some(start + 5_000));
    }

    #[test]
    fn bad_schedules_say_what_to_fix() {
        let err = Clock::of(&request(None, None, None), 0).err().unwrap();
        assert!(err.body().message.contains("exactly one"));
        let err = Clock::of(&request(Some("0 9 * * *"), None, Some("Mars/Olympus")), 0)
            .err()
            .unwrap();
        assert!(
            err.body().message.contains("IANA"),
            "{}",
            err.body().message
        );
        let err = Clock::of(&request(Some("not cron"), None, None), 0)
            .err()
            .unwrap();
        assert_eq!(err.body().code, "invalid_schedule");
        let mut r = request(None, Some(1), None);
        r.job = None;
        let err = checked(&r).unwrap_err();
        assert!(err.body().message.contains("`job` and `call`"));
    }
}
