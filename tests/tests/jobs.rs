//! Jobs end to end, through the SDK: a conductor process and worker processes, each with its own
//! data directory, as on separate machines. Retries with backoff, timeouts that kill the whole
//! process group, a worker lost under a running job, idempotency keys, cancels, the priority
//! order and its aging bound, and queue concurrency limits; schedules across a conductor restart,
//! their overlap and misfire policies, pauses and calls to a service.

use std::{collections::HashMap, time::Duration};

use aerekos_sdk::{
    Conductor,
    conductor::types::{
        AttemptOutcome, DeployRequest, ExecRequest, ExecState, FireOutcome, Job, JobAttempt,
        JobQueueSettings, JobRequest, JobState, MisfirePolicy, OverlapPolicy, ResourceSpec,
        RetryPolicy, SandboxExec, SandboxRequest, SandboxState, ScheduleFire, ScheduleRequest,
        ServiceCall, WorkerStatus,
    },
};
use aerekos_tests::{
    ADMIN_PASSWORD, cli, cli_exit, eventually, expect_api_error, failure,
    processes::{ConductorProcess, WorkerProcess, wait_for_worker},
    secret_app,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A conductor and `n` workers, all live.
struct JobsCluster {
    conductor: ConductorProcess,
    workers: Vec<WorkerProcess>,
    ids: Vec<Uuid>,
    admin: Conductor,
}

impl JobsCluster {
    async fn start(n: usize, conductor_env: &[(&str, &str)]) -> Self {
        let conductor = ConductorProcess::start_with(conductor_env).await;
        let admin = conductor.admin().await;
        let mut cluster = Self {
            conductor,
            workers: vec![],
            ids: vec![],
            admin,
        };
        for i in 0..n {
            cluster.add_worker(&format!("jobs-{i}")).await;
        }
        cluster
    }

    async fn add_worker(&mut self, name: &str) {
        let worker = WorkerProcess::start(&self.conductor, name);
        let id = worker.id().await;
        wait_for_worker(&self.admin, id, WorkerStatus::Live, 30).await;
        self.workers.push(worker);
        self.ids.push(id);
    }

    /// The cores worker `i` reports (what the scheduler gives room by).
    async fn cores(&self, i: usize) -> u64 {
        let w = self
            .admin
            .get_worker()
            .id(self.ids[i])
            .send()
            .await
            .unwrap();
        u64::from(w.resources.cpu_cores)
    }

    fn worker_index(&self, id: Uuid) -> usize {
        self.ids
            .iter()
            .position(|w| *w == id)
            .expect("a worker of this cluster")
    }

    async fn submit(&self, req: JobRequest) -> Job {
        self.admin
            .submit_job()
            .body(req)
            .send()
            .await
            .unwrap_or_else(|e| panic!("submit: {e}"))
            .into_inner()
    }

    async fn job(&self, id: Uuid) -> Job {
        self.admin
            .get_job()
            .id(id)
            .send()
            .await
            .unwrap()
            .into_inner()
    }

    async fn attempts(&self, id: Uuid) -> Vec<JobAttempt> {
        self.admin
            .list_job_attempts()
            .id(id)
            .send()
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits for the job to reach `state`; the logs are in the failure message.
    async fn until(&self, id: Uuid, state: JobState, secs: u64) -> Job {
        let what = format!("job {id} {state}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.job(id).await;
            if job.state == state {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; it is {:?} ({:?})\nconductor:\n{}\nworkers:\n{}",
                    job.state,
                    job.reason,
                    self.conductor.log_tail(40),
                    self.workers
                        .iter()
                        .map(|w| aerekos_tests::processes::tail_of(
                            &w.dir.path().join("agent.log"),
                            30
                        ))
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn shell(script: &str) -> JobRequest {
    JobRequest {
        name: None,
        image: None,
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: HashMap::new(),
        resources: None,
        driver: None,
        timeout_secs: None,
        retry: None,
        priority: None,
        queue: None,
        idempotency_key: None,
    }
}

fn retry(max_retries: u32, initial_backoff_ms: u32) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        max_retries,
        initial_backoff_ms: Some(initial_backoff_ms),
        max_backoff_ms: None,
        retry_on_exit_codes: vec![],
    })
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// The pids a job's script printed as `pid <n>` lines.
fn printed_pids(text: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("pid ")?.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_and_a_timeout_kills_the_whole_group() {
    let cluster = JobsCluster::start(2, &[]).await;
    let scratch = tempfile::tempdir().unwrap();
    let counter = scratch.path().join("tries");

    // Fails twice, then succeeds: three attempts, with the backoff between them.
    let mut flaky = shell(&format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo try $n; echo oops $n >&2; [ $n -ge 3 ]",
        c = counter.display()
    ));
    flaky.retry = retry(3, 400);
    let job = cluster.submit(flaky).await;
    let done = cluster.until(job.id, JobState::Succeeded, 60).await;
    assert_eq!(done.attempts, 3);
    assert_eq!(done.exit_code, Some(0));
    let attempts = cluster.attempts(job.id).await;
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.outcome, a.exit_code)).collect();
    assert_eq!(
        outcomes,
        [
            (AttemptOutcome::Exited, Some(1)),
            (AttemptOutcome::Exited, Some(1)),
            (AttemptOutcome::Exited, Some(0))
        ]
    );
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(
            a.stdout_tail.as_deref(),
            Some(format!("try {}\n", n + 1).as_str())
        );
        assert_eq!(
            a.stderr_tail.as_deref(),
            Some(format!("oops {}\n", n + 1).as_str())
        );
    }
    // Retry k waits at least half of 400 ms × 2^(k−1) after attempt k ended.
    for (k, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].started_at - pair[0].ended_at.expect("ended");
        let least = 200 * (1 << k);
        assert!(
            gap.num_milliseconds() >= least,
            "retry {} started {} ms after attempt {} ended; its backoff is at least {least} ms",
            k + 1,
            gap.num_milliseconds(),
            k + 1
        );
    }

    // Sleeps past its 1 s timeout, with a child in its process group: both are killed, and it is
    // retried once, then fails.
    let mut slow = shell("sleep 300 & echo pid $!; echo pid $$; wait");
    slow.timeout_secs = Some(1);
    slow.retry = retry(1, 100);
    let job = cluster.submit(slow).await;
    let failed = cluster.until(job.id, JobState::Failed, 60).await;
    assert_eq!(failed.attempts, 2);
    let attempts = cluster.attempts(job.id).await;
    for a in &attempts {
        assert_eq!(a.outcome, AttemptOutcome::TimedOut, "{a:?}");
        let pids = printed_pids(a.stdout_tail.as_deref().unwrap_or(""));
        assert_eq!(pids.len(), 2, "the script printed its pids: {a:?}");
        for pid in pids {
            assert!(
                !alive(pid),
                "process {pid} of a timed-out attempt is still running"
            );
        }
        let ran = a.ended_at.unwrap() - a.started_at;
        assert!(
            ran >= chrono::Duration::seconds(1),
            "stopped after {ran}, before its timeout"
        );
    }
    assert!(failed.reason.unwrap().contains("timeout"));
}

#[tokio::test]
async fn a_job_on_a_lost_worker_is_retried_on_another_and_the_lost_attempt_is_kept() {
    let mut cluster = JobsCluster::start(2, &[]).await;
    let mut job = shell("echo pid $$; echo attempt $AEREKOS_JOB_ATTEMPT; sleep 4; echo finished");
    job.retry = retry(2, 100);
    let job = cluster.submit(job).await;
    let first = cluster.until(job.id, JobState::Running, 30).await;
    let first = first.last_attempt.expect("an attempt");
    let (lost, other) = {
        let i = cluster.worker_index(first.worker_id);
        (i, 1 - i)
    };
    // Let it start for real, then the machine goes: agent and instances killed, data gone.
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.workers[lost].lose_for_good();

    let done = cluster.until(job.id, JobState::Succeeded, 60).await;
    let attempts = cluster.attempts(job.id).await;
    assert_eq!(done.attempts, 2, "{attempts:?}");
    assert_eq!(attempts[0].outcome, AttemptOutcome::WorkerLost);
    assert_eq!(attempts[0].worker_id, cluster.ids[lost]);
    assert!(
        attempts[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("stopped heartbeating")
    );
    assert_eq!(attempts[1].outcome, AttemptOutcome::Exited);
    assert_eq!(attempts[1].worker_id, cluster.ids[other]);
    assert_eq!(
        attempts[1]
            .stdout_tail
            .as_deref()
            .map(|t| t.contains("attempt 2") && t.contains("finished")),
        Some(true),
        "{attempts:?}"
    );
}

/// A job that ends while its worker is down keeps its exit status: the restarted worker reports
/// the code the command exited with, not "unknown" (which would count as a failure and retry it).
#[tokio::test]
async fn a_job_that_ends_while_its_worker_is_down_keeps_its_exit_code() {
    let mut cluster = JobsCluster::start(1, &[]).await;
    let mut job = shell("sleep 2; echo done; exit 3");
    job.retry = retry(2, 100);
    job.retry.as_mut().unwrap().retry_on_exit_codes = vec![75];
    let job = cluster.submit(job).await;
    cluster.until(job.id, JobState::Running, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Only the agent goes (SIGKILL); the job's process group carries on and ends meanwhile.
    cluster.workers[0].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.workers[0].start_again();
    let done = cluster.until(job.id, JobState::Failed, 60).await;
    let attempts = cluster.attempts(job.id).await;
    assert_eq!(
        (done.attempts, done.exit_code),
        (1, Some(3)),
        "exit 3 is not retried (the policy retries 75 only): {attempts:?}"
    );
    assert_eq!(attempts[0].outcome, AttemptOutcome::Exited);
    assert_eq!(attempts[0].exit_code, Some(3));
    assert_eq!(attempts[0].stdout_tail.as_deref(), Some("done\n"));
}

/// A restarted worker starts no `run_once` instance that only its saved assignments name before
/// the conductor has answered: the conductor may have undone that attempt and given it to another
/// worker while this one was away.
#[tokio::test]
async fn a_restarted_worker_starts_no_saved_job_attempt_before_the_conductor_answers() {
    let mut cluster = JobsCluster::start(1, &[]).await;
    let job = cluster.submit(shell("sleep 30")).await;
    cluster.until(job.id, JobState::Running, 30).await;
    let file = cluster.workers[0].dir.path().join("assignments.json");
    let mut attempt = eventually(30, "the worker saved the job's attempt", || async {
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        saved
            .as_array()?
            .iter()
            .find(|i| i["spec"]["run_once"] == serde_json::json!(true))
            .cloned()
    })
    .await;
    cluster.admin.cancel_job().id(job.id).send().await.unwrap();
    cluster.workers[0].kill();

    // What a worker killed between saving an assignment and starting it would find: an attempt
    // never started (no marker for its id), which the conductor no longer assigns.
    let work = tempfile::tempdir().unwrap();
    let mark = work.path().join("it-ran");
    attempt["id"] = serde_json::json!(Uuid::new_v4());
    attempt["spec"]["command"] =
        serde_json::json!(["sh", "-c", format!("touch {}", mark.display())]);
    std::fs::write(&file, serde_json::to_vec(&[attempt]).unwrap()).unwrap();

    cluster.workers[0].start_again();
    wait_for_worker(&cluster.admin, cluster.ids[0], WorkerStatus::Live, 30).await;
    // Several heartbeats and reconcile passes after the conductor's answer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !mark.exists(),
        "the worker ran an attempt only its saved assignments named"
    );
}

#[tokio::test]
async fn an_idempotency_key_gives_one_job_and_a_cancel_stops_the_process_at_once() {
    let cluster = JobsCluster::start(1, &[]).await;
    let mut keyed = shell("echo pid $$; exec sleep 300");
    keyed.idempotency_key = Some("nightly-report-2026-12-07".into());
    let first = cluster
        .admin
        .submit_job()
        .body(keyed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let again = cluster
        .admin
        .submit_job()
        .body(keyed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status().as_u16(),
        200,
        "the same key again is the same job"
    );
    assert_eq!(first.id, again.id);
    let page = cluster.admin.list_jobs().send().await.unwrap().into_inner();
    assert_eq!(page.jobs.len(), 1, "one job for two submits");
    let mut other = keyed.clone();
    other.command = vec!["true".into()];
    expect_api_error(
        failure(cluster.admin.submit_job().body(other).send().await),
        409,
        "idempotency_key_reused",
    );

    // Running: wait until its process is up, then cancel.
    let id = first.id;
    let pid = eventually(30, "the job's process is up", || async {
        let job = cluster.job(id).await;
        let attempt = job.last_attempt?;
        let worker = &cluster.workers[cluster.worker_index(attempt.worker_id)];
        let out = std::fs::read_to_string(
            worker
                .dir
                .path()
                .join("instances")
                .join(attempt.instance_id.to_string())
                .join("stdout.log"),
        )
        .ok()?;
        printed_pids(&out)
            .first()
            .copied()
            .filter(|pid| alive(*pid))
    })
    .await;
    let cancelled = cluster
        .admin
        .cancel_job()
        .id(id)
        .send()
        .await
        .unwrap()
        .into_inner();
    let asked = std::time::Instant::now();
    assert_eq!(cancelled.state, JobState::Cancelled);
    while alive(pid) {
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "the cancelled job's process {pid} still runs a second after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attempts = cluster.attempts(id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Cancelled);
    assert_eq!(attempts[0].reason.as_deref(), Some("cancelled by admin"));
    expect_api_error(
        failure(cluster.admin.cancel_job().id(id).send().await),
        409,
        "job_finished",
    );

    // Queued (its queue runs one job at a time, and one runs): cancelled before it ever starts.
    cluster
        .admin
        .set_job_queue()
        .name("one-at-a-time")
        .body(JobQueueSettings {
            concurrency_limit: Some(1),
        })
        .send()
        .await
        .unwrap();
    let mut running = shell("exec sleep 300");
    running.queue = Some("one-at-a-time".into());
    let running = cluster.submit(running.clone()).await;
    cluster.until(running.id, JobState::Running, 30).await;
    let mut waiting = shell("true");
    waiting.queue = Some("one-at-a-time".into());
    let waiting = cluster.submit(waiting).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = cluster.job(waiting.id).await;
    assert_eq!(still.state, JobState::Queued);
    assert!(
        still.reason.as_deref().unwrap_or("").contains("limit of 1"),
        "{:?}",
        still.reason
    );
    let gone = cluster
        .admin
        .cancel_job()
        .id(waiting.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.state, JobState::Cancelled);
    assert_eq!(gone.attempts, 0);
    cluster
        .admin
        .cancel_job()
        .id(running.id)
        .send()
        .await
        .unwrap();

    // Bad requests say what to fix.
    let mut bad = shell("true");
    bad.priority = Some(101);
    expect_api_error(
        failure(cluster.admin.submit_job().body(bad).send().await),
        400,
        "invalid_job",
    );
    let mut bad = shell("true");
    bad.queue = Some("No Spaces".into());
    expect_api_error(
        failure(cluster.admin.submit_job().body(bad).send().await),
        400,
        "invalid_queue",
    );
}

/// The order attempts started in, by job.
fn start_times(
    jobs: &[(Job, u8)],
    attempts: &HashMap<Uuid, JobAttempt>,
) -> Vec<(DateTime<Utc>, u8, Uuid)> {
    let mut starts: Vec<_> = jobs
        .iter()
        .map(|(j, p)| (attempts[&j.id].started_at, *p, j.id))
        .collect();
    starts.sort();
    starts
}

#[tokio::test]
async fn two_hundred_jobs_start_in_priority_order_and_a_queue_limit_holds() {
    // An aging of a minute: over the seconds these are submitted in, the order is the priority's.
    let mut cluster = JobsCluster::start(0, &[("JOB_PRIORITY_AGING", "60s")]).await;
    cluster
        .admin
        .set_job_queue()
        .name("limited")
        .body(JobQueueSettings {
            concurrency_limit: Some(2),
        })
        .send()
        .await
        .unwrap();
    // Submitted while no worker is live, so they all wait in the queue together.
    let priorities = [0u8, 25, 50, 75, 100];
    let mut jobs = vec![];
    for n in 0..200usize {
        let p = priorities[(n * 7) % priorities.len()];
        let mut req = shell("sleep 0.2");
        req.priority = Some(p);
        // Room for 4 at once on each worker (2 cores each, as this machine has).
        req.resources = Some(ResourceSpec {
            cpu_millicores: 500,
            memory_mb: 16,
            disk_mb: 0,
        });
        if n % 5 == 0 {
            req.queue = Some("limited".into());
        }
        jobs.push((cluster.submit(req).await, p));
    }
    cluster.add_worker("room-a").await;
    cluster.add_worker("room-b").await;
    let cores = cluster.cores(0).await;
    for (job, _) in &jobs {
        cluster.until(job.id, JobState::Succeeded, 300).await;
    }
    let mut attempts = HashMap::new();
    for (job, _) in &jobs {
        let a = cluster.attempts(job.id).await;
        assert_eq!(a.len(), 1);
        attempts.insert(job.id, a[0].clone());
    }
    // The unlimited jobs start in priority order: none starts after a job of lower priority did.
    let free: Vec<_> = jobs
        .iter()
        .filter(|(j, _)| j.queue == "default")
        .cloned()
        .collect();
    let starts = start_times(&free, &attempts);
    for pair in starts.windows(2) {
        assert!(
            pair[0].1 >= pair[1].1 || pair[0].0 == pair[1].0,
            "a priority {} job started at {} after a priority {} one at {}",
            pair[1].1,
            pair[1].0,
            pair[0].1,
            pair[0].0
        );
    }
    // Room held: never more than 4 × 500 m per worker (each worker has `cores` cores).
    let per_worker = (cores * 1000 / 500) as usize;
    let most = |filter: &dyn Fn(&Uuid, &JobAttempt) -> bool| {
        let mut events = vec![];
        for (_, a) in attempts.iter().filter(|(j, a)| filter(j, a)) {
            events.push((a.started_at, 1i32));
            events.push((a.ended_at.unwrap(), -1));
        }
        events.sort_by_key(|(t, d)| (*t, *d));
        let (mut now, mut peak) = (0, 0);
        for (_, d) in events {
            now += d;
            peak = peak.max(now);
        }
        peak
    };
    for id in &cluster.ids {
        let peak = most(&|_, a| a.worker_id == *id);
        assert!(
            peak as usize <= per_worker,
            "{peak} jobs at once on a worker with room for {per_worker}"
        );
    }
    // The limited queue never ran more than 2 at once; it did run 2 at once.
    let limited: std::collections::HashSet<Uuid> = jobs
        .iter()
        .filter(|(j, _)| j.queue == "limited")
        .map(|(j, _)| j.id)
        .collect();
    let peak = most(&|job, _| limited.contains(job));
    assert_eq!(peak, 2, "the limited queue's peak of jobs at once");
}

#[tokio::test]
async fn the_lowest_priority_is_overtaken_only_within_its_aging_bound() {
    // A level per 20 ms: a priority-0 job is overtaken only by jobs submitted less than
    // 100 × 20 ms = 2 s after it.
    let cluster = JobsCluster::start(1, &[("JOB_PRIORITY_AGING", "20ms")]).await;
    let cores = cluster.cores(0).await;
    let high = || {
        let mut req = shell("sleep 0.3");
        req.priority = Some(100);
        // The worker takes one at a time.
        req.resources = Some(ResourceSpec {
            cpu_millicores: (cores * 1000) as u32,
            memory_mb: 16,
            disk_mb: 0,
        });
        req
    };
    // A backlog of high-priority jobs that grows faster than the worker drains it.
    let mut submitted = vec![];
    for _ in 0..10 {
        submitted.push(cluster.submit(high()).await);
    }
    let mut low = high();
    low.priority = Some(0);
    let low = cluster.submit(low).await;
    let feeding_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < feeding_until {
        submitted.push(cluster.submit(high()).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let low_done = cluster.until(low.id, JobState::Succeeded, 120).await;
    let low_start = low_done.started_at.unwrap();
    let bound = low.submitted_at + chrono::Duration::seconds(2);
    let mut overtook = 0;
    let mut waited_behind_it = 0;
    for job in &submitted {
        let job = cluster.until(job.id, JobState::Succeeded, 120).await;
        if job.started_at.unwrap() < low_start {
            overtook += usize::from(job.submitted_at > low.submitted_at);
            assert!(
                job.submitted_at < bound,
                "a job submitted at {} started before the priority-0 job submitted at {}, past its bound",
                job.submitted_at,
                low.submitted_at
            );
        } else {
            waited_behind_it += 1;
        }
    }
    assert!(
        overtook > 0,
        "higher priority went first while it was within the bound"
    );
    assert!(
        waited_behind_it > 0,
        "the priority-0 job started while higher-priority jobs still waited"
    );
}

fn every_second(name: &str, script: &str) -> ScheduleRequest {
    ScheduleRequest {
        name: name.into(),
        cron: None,
        every_secs: Some(1),
        timezone: None,
        job: Some(shell(script)),
        call: None,
        overlap: None,
        misfire: None,
    }
}

impl JobsCluster {
    /// The schedule's fires, oldest first.
    async fn fires(&self, name: &str) -> Vec<ScheduleFire> {
        let mut fires = self
            .admin
            .list_schedule_fires()
            .name(name)
            .limit(1000)
            .send()
            .await
            .unwrap()
            .into_inner();
        fires.reverse();
        fires
    }

    async fn at_least_fires(&self, name: &str, n: usize, secs: u64) -> Vec<ScheduleFire> {
        eventually(secs, &format!("{n} fires of {name}"), || async {
            let fires = self.fires(name).await;
            (fires.len() >= n).then_some(fires)
        })
        .await
    }
}

#[tokio::test]
async fn a_one_second_schedule_fires_on_time_across_a_conductor_restart() {
    let mut cluster = JobsCluster::start(1, &[]).await;
    let mut run_once = every_second("every-second", "true");
    run_once.misfire = Some(MisfirePolicy::RunOnce);
    // The job of the fire before the kill may not be recorded ended yet when the conductor is
    // back (its worker reports it then): the fire for the downtime must not be skipped for it.
    run_once.overlap = Some(OverlapPolicy::CancelPrevious);
    cluster
        .admin
        .create_schedule()
        .body(run_once)
        .send()
        .await
        .unwrap();
    let mut skip = every_second("every-second-skip", "true");
    skip.misfire = Some(MisfirePolicy::Skip);
    cluster
        .admin
        .create_schedule()
        .body(skip)
        .send()
        .await
        .unwrap();
    cluster.at_least_fires("every-second", 3, 30).await;

    // The conductor is down for 8 s (longer than the 5 s misfire grace), then back on its state.
    cluster.conductor.kill();
    let down_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.conductor.start_again().await;
    let up_at = Utc::now();
    cluster.admin = cluster.conductor.admin().await;
    cluster.at_least_fires("every-second", 3 + 1 + 3, 60).await;
    cluster
        .at_least_fires("every-second-skip", 3 + 1 + 3, 60)
        .await;

    for (name, policy) in [
        ("every-second", MisfirePolicy::RunOnce),
        ("every-second-skip", MisfirePolicy::Skip),
    ] {
        let fires = cluster.fires(name).await;
        let (missed, on_time): (Vec<_>, Vec<_>) = fires.iter().partition(|f| f.missed > 0);
        assert_eq!(missed.len(), 1, "one record for the downtime: {fires:#?}");
        let gap = &missed[0];
        assert!(
            gap.missed >= 6,
            "the 8 s down held at least 6 due times: {gap:?}"
        );
        assert!(gap.fired_at >= up_at - chrono::Duration::seconds(1));
        assert!(
            gap.detail
                .as_deref()
                .unwrap()
                .contains("missed while the conductor was away")
        );
        match policy {
            MisfirePolicy::RunOnce => {
                assert_eq!(gap.outcome, FireOutcome::Submitted, "{gap:?}");
                assert!(gap.job_id.is_some());
            }
            MisfirePolicy::Skip => {
                assert_eq!(gap.outcome, FireOutcome::SkippedMisfire, "{gap:?}");
                assert!(gap.job_id.is_none());
            }
        }
        // The clock: every other fire is due exactly a second after the one before it (across
        // the restart, a whole number of seconds), and fired on time.
        for pair in on_time.windows(2) {
            let step = (pair[1].scheduled_for - pair[0].scheduled_for).num_milliseconds();
            assert!(
                step >= 1000 && step % 1000 == 0,
                "due times {step} ms apart: {pair:#?}"
            );
        }
        let mut late: Vec<i64> = on_time
            .iter()
            .map(|f| (f.fired_at - f.scheduled_for).num_milliseconds())
            .collect();
        late.sort_unstable();
        assert!(late[0] >= 0, "fired before it was due: {late:?}");
        assert!(
            late[late.len() / 2] < 500,
            "median lateness {} ms: {late:?}",
            late[late.len() / 2]
        );
        assert!(
            *late.last().unwrap() < 5000,
            "a fire later than the misfire grace: {late:?}"
        );
        // Nothing fired while the conductor was down.
        assert!(
            fires.iter().all(|f| f.fired_at < down_at || f.fired_at >= up_at - chrono::Duration::seconds(1)),
            "{fires:#?}"
        );
        // Each submitted fire's job is the schedule's, and runs (or, for the schedule that
        // cancels a previous run still going, was cancelled by it).
        for fire in fires
            .iter()
            .filter(|f| f.outcome == FireOutcome::Submitted)
            .take(3)
        {
            let id = fire.job_id.unwrap();
            let job = eventually(60, "the fire's job ends", || async {
                let job = cluster.job(id).await;
                matches!(job.state, JobState::Succeeded | JobState::Cancelled).then_some(job)
            })
            .await;
            assert_eq!(job.submitted_by, format!("schedule:{name}"));
            if job.state == JobState::Cancelled {
                assert_eq!(
                    job.reason.as_deref(),
                    Some("cancelled by schedule every-second")
                );
            }
        }
    }
}

#[tokio::test]
async fn overlap_policies_pause_and_calls_to_a_service() {
    let cluster = JobsCluster::start(1, &[]).await;
    // Jobs longer than the period: skip while the previous runs, or cancel it.
    let mut skip = every_second("slow-skip", "sleep 2.5");
    skip.overlap = Some(OverlapPolicy::Skip);
    cluster
        .admin
        .create_schedule()
        .body(skip)
        .send()
        .await
        .unwrap();
    let mut cancel = every_second("slow-cancel", "sleep 30");
    cancel.overlap = Some(OverlapPolicy::CancelPrevious);
    cluster
        .admin
        .create_schedule()
        .body(cancel)
        .send()
        .await
        .unwrap();
    let mut queue = every_second("slow-queue", "sleep 2");
    queue.overlap = Some(OverlapPolicy::Queue);
    cluster
        .admin
        .create_schedule()
        .body(queue)
        .send()
        .await
        .unwrap();

    let fires = cluster.at_least_fires("slow-skip", 6, 30).await;
    assert!(
        fires
            .iter()
            .any(|f| f.outcome == FireOutcome::SkippedOverlap),
        "{fires:#?}"
    );
    let jobs: Vec<Uuid> = fires.iter().filter_map(|f| f.job_id).collect();
    assert!(jobs.len() >= 2, "{fires:#?}");
    let mut runs = vec![];
    for id in &jobs {
        let job = cluster.until(*id, JobState::Succeeded, 60).await;
        runs.push((job.started_at.unwrap(), job.finished_at.unwrap()));
    }
    runs.sort();
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs of a skip schedule overlapped: {runs:?}"
        );
    }

    let fires = cluster.at_least_fires("slow-cancel", 3, 30).await;
    let submitted: Vec<Uuid> = fires.iter().filter_map(|f| f.job_id).collect();
    assert!(submitted.len() >= 3, "{fires:#?}");
    let earlier = cluster.job(submitted[0]).await;
    assert_eq!(earlier.state, JobState::Cancelled, "{earlier:?}");
    assert_eq!(
        earlier.reason.as_deref(),
        Some("cancelled by schedule slow-cancel")
    );
    assert!(
        fires[1]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("cancelled job")
    );

    let fires = cluster.at_least_fires("slow-queue", 5, 30).await;
    assert!(
        fires.iter().any(|f| f.outcome == FireOutcome::Queued),
        "{fires:#?}"
    );
    // A queued fire is submitted once the job before it ends, with its own due time.
    let waited = fires
        .iter()
        .find(|f| f.outcome == FireOutcome::Queued)
        .unwrap();
    let went = eventually(30, "the queued fire is submitted", || async {
        cluster.fires("slow-queue").await.into_iter().find(|f| {
            f.outcome == FireOutcome::Submitted && f.scheduled_for == waited.scheduled_for
        })
    })
    .await;
    let job = cluster
        .until(went.job_id.unwrap(), JobState::Succeeded, 60)
        .await;
    assert!(job.started_at.unwrap() >= waited.fired_at);

    // Paused: no fires; resumed: fires again.
    for name in ["slow-skip", "slow-cancel", "slow-queue"] {
        let paused = cluster
            .admin
            .pause_schedule()
            .name(name)
            .send()
            .await
            .unwrap();
        assert!(paused.paused && paused.next_fire_at.is_none());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.fires("slow-skip").await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        cluster.fires("slow-skip").await.len(),
        before,
        "a paused schedule fired"
    );
    cluster
        .admin
        .resume_schedule()
        .name("slow-skip")
        .send()
        .await
        .unwrap();
    cluster.at_least_fires("slow-skip", before + 1, 30).await;
    cluster
        .admin
        .delete_schedule()
        .name("slow-skip")
        .send()
        .await
        .unwrap();

    // Calls through the gateway to a service's endpoint, with the scheduler's service token.
    let dir = tempfile::tempdir().unwrap();
    secret_app(&cluster.admin, "clock_app", dir.path(), |_| {}).await;
    cluster
        .admin
        .deploy_service()
        .name("clock_app")
        .body(DeployRequest::default())
        .send()
        .await
        .unwrap();
    for (name, path) in [("call-ok", "/rotate"), ("call-fails", "/fail")] {
        let req = ScheduleRequest {
            name: name.into(),
            cron: Some("* * * * * *".into()),
            every_secs: None,
            timezone: Some("Europe/Paris".into()),
            job: None,
            call: Some(ServiceCall {
                service: "clock_app".into(),
                method: None,
                path: path.into(),
                body: Some(r#"{"current_version": 7}"#.into()),
            }),
            overlap: None,
            misfire: None,
        };
        cluster
            .admin
            .create_schedule()
            .body(req)
            .send()
            .await
            .unwrap();
    }
    let ok = eventually(60, "a call answered 200", || async {
        cluster
            .fires("call-ok")
            .await
            .into_iter()
            .find(|f| f.outcome == FireOutcome::Called)
    })
    .await;
    assert_eq!(ok.http_status, Some(200));
    let failed = eventually(60, "a call answered 500", || async {
        cluster
            .fires("call-fails")
            .await
            .into_iter()
            .find(|f| f.http_status == Some(500))
    })
    .await;
    assert_eq!(failed.outcome, FireOutcome::CallFailed);

    // The service stops answering (SIGSTOP): its schedules' calls hang until their timeout, and
    // no other schedule is held up meanwhile (each schedule fires on a task of its own).
    let instance = cluster
        .admin
        .get_deployment()
        .name("clock_app")
        .send()
        .await
        .unwrap()
        .into_inner()
        .instances[0]
        .clone();
    let pid: i32 = std::fs::read_to_string(
        cluster.workers[cluster.worker_index(instance.worker_id)]
            .dir
            .path()
            .join("instances")
            .join(instance.id.to_string())
            .join("pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let app = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(app, nix::sys::signal::Signal::SIGSTOP).unwrap();
    cluster
        .admin
        .create_schedule()
        .body(every_second("ticker", "true"))
        .send()
        .await
        .unwrap();
    let ticks = cluster.at_least_fires("ticker", 5, 30).await;
    nix::sys::signal::kill(app, nix::sys::signal::Signal::SIGCONT).unwrap();
    for fire in &ticks {
        let late = fire.fired_at - fire.scheduled_for;
        assert!(
            late < chrono::Duration::seconds(2) && fire.missed == 0,
            "a schedule fired {late} late while another's call hung: {ticks:#?}"
        );
    }

    // Bad schedules say what to fix.
    let mut both = every_second("both", "true");
    both.cron = Some("* * * * *".into());
    let body = expect_api_error(
        failure(cluster.admin.create_schedule().body(both).send().await),
        400,
        "invalid_schedule",
    );
    assert!(
        body.message
            .contains("exactly one of `cron` and `every_secs`")
    );
    let mut zone = every_second("zone", "true");
    zone.every_secs = None;
    zone.cron = Some("0 9 * * *".into());
    zone.timezone = Some("Mars/Olympus".into());
    expect_api_error(
        failure(cluster.admin.create_schedule().body(zone).send().await),
        400,
        "invalid_schedule",
    );
    expect_api_error(
        failure(
            cluster
                .admin
                .create_schedule()
                .body(every_second("call-ok", "true"))
                .send()
                .await,
        ),
        409,
        "schedule_exists",
    );
}

#[tokio::test]
async fn the_cli_runs_a_job_to_its_end_with_its_output_and_exit_code_and_makes_schedules() {
    let cluster = JobsCluster::start(1, &[]).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("cli");
    let url = cluster.conductor.url.clone();
    let (ok, _, err) = cli(
        &config,
        &["login", "--url", &url, "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    // Blocking calls: the CLI is its own process.
    let run = |args: Vec<String>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_exit(&config, &args, None)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    // --wait streams both streams and exits with the job's code; a retry's output follows.
    let (code, out, err) = run(args(&[
        "jobs",
        "run",
        "--wait",
        "--retries",
        "1",
        "--backoff-ms",
        "100",
        "--",
        "sh",
        "-c",
        "echo out-$AEREKOS_JOB_ATTEMPT; sleep 0.5; echo err-$AEREKOS_JOB_ATTEMPT >&2; exit 3",
    ]))
    .await
    .unwrap();
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert_eq!(out, "out-1\nout-2\n", "{err}");
    assert!(err.contains("err-1\n") && err.contains("err-2\n"), "{err}");
    assert!(
        err.contains("attempt 2 exited") && err.contains("failed"),
        "{err}"
    );

    let (code, out, err) = run(args(&["jobs", "run", "--wait", "--", "echo", "fine"]))
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "fine\n"), "{err}");

    // Listing and reading back.
    let (code, out, _) = run(args(&["jobs", "ls", "-o", "json"])).await.unwrap();
    assert_eq!(code, Some(0));
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs.len(), 2);
    let failed_id = jobs.iter().find(|j| j["state"] == "failed").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, _) = run(args(&["jobs", "logs", &failed_id])).await.unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "out-1\nout-2\n"));
    let (code, out, _) = run(args(&["jobs", "show", &failed_id])).await.unwrap();
    assert_eq!(code, Some(0));
    assert!(out.contains("exited with code 3"), "{out}");

    // A schedule from the CLI, and its fires.
    let (code, _, err) = run(args(&[
        "schedules",
        "create",
        "cli-tick",
        "--every",
        "1",
        "--",
        "true",
    ]))
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    cluster.at_least_fires("cli-tick", 2, 30).await;
    let (code, out, _) = run(args(&["schedules", "show", "cli-tick"])).await.unwrap();
    assert_eq!(code, Some(0));
    assert!(
        out.contains("every 1s") && out.contains("submitted"),
        "{out}"
    );
    let (code, out, _) = run(args(&["schedules", "pause", "cli-tick"]))
        .await
        .unwrap();
    assert!(code == Some(0) && out.contains("paused"), "{out}");
    let (code, _, err) = run(args(&["schedules", "create", "bad", "--every", "1"]))
        .await
        .unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("after `--`"), "{err}");
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn a_docker_job_keeps_its_streams_apart_and_its_timeout_leaves_no_container() {
    aerekos_tests::docker_image::ensure_test_image();
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let worker = WorkerProcess::start_with(&conductor, "docker-jobs", &[("WORKER_DOCKER", "on")]);
    let id = worker.id().await;
    wait_for_worker(&admin, id, WorkerStatus::Live, 30).await;
    let cluster = JobsCluster {
        conductor,
        workers: vec![worker],
        ids: vec![id],
        admin,
    };
    let image = |script: &str| JobRequest {
        image: Some(aerekos_tests::docker_image::TEST_IMAGE.into()),
        command: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
        ..shell("")
    };
    let containers = || {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "label=aerekos.managed=true",
                "--format",
                "{{.Names}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let ok = cluster
        .submit(image("echo to-stdout; echo to-stderr >&2; exit 4"))
        .await;
    let failed = cluster.until(ok.id, JobState::Failed, 120).await;
    let attempt = failed.last_attempt.unwrap();
    assert_eq!(
        attempt.driver,
        aerekos_sdk::conductor::types::DriverKind::Docker
    );
    assert_eq!(
        (attempt.outcome, attempt.exit_code),
        (AttemptOutcome::Exited, Some(4))
    );
    assert_eq!(attempt.stdout_tail.as_deref(), Some("to-stdout\n"));
    assert_eq!(attempt.stderr_tail.as_deref(), Some("to-stderr\n"));

    let mut slow = image("sleep 300");
    slow.timeout_secs = Some(2);
    let slow = cluster.submit(slow).await;
    let running = cluster.until(slow.id, JobState::Running, 60).await;
    let name = format!("aerekos-{}", running.last_attempt.unwrap().instance_id);
    eventually(30, "the attempt's container runs", || async {
        containers().contains(&name).then_some(())
    })
    .await;
    let timed_out = cluster.until(slow.id, JobState::Failed, 120).await;
    assert_eq!(
        timed_out.last_attempt.unwrap().outcome,
        AttemptOutcome::TimedOut
    );
    eventually(
        30,
        "no container of the timed-out attempt is left",
        || async { (!containers().contains(&name)).then_some(()) },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a Docker engine; `cargo xtask test` starts one and runs this"]
async fn a_sandbox_runs_commands_keeps_its_history_survives_a_worker_restart_and_leaves_nothing() {
    aerekos_tests::docker_image::ensure_test_image();
    let conductor = ConductorProcess::start().await;
    let admin = conductor.admin().await;
    let mut worker = WorkerProcess::start_with(&conductor, "sandboxes", &[("WORKER_DOCKER", "on")]);
    let id = worker.id().await;
    wait_for_worker(&admin, id, WorkerStatus::Live, 30).await;
    let busybox = |args: &[&str]| {
        let mut command = vec!["/bin/busybox".to_owned()];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        command
    };
    let made = admin
        .create_sandbox()
        .body(SandboxRequest {
            name: Some("scratch".into()),
            image: aerekos_tests::docker_image::TEST_IMAGE.into(),
            command: busybox(&["sleep", "2147483647"]),
            env: HashMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            resources: None,
            ready_timeout_secs: None,
            create_retries: None,
            driver: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    let ready = eventually(60, "the sandbox is ready", || async {
        let s = admin
            .get_sandbox()
            .id(made.id)
            .send()
            .await
            .ok()?
            .into_inner();
        (s.state == SandboxState::Ready).then_some(s)
    })
    .await;
    let container = format!("aerekos-{}", ready.instance_id.unwrap());

    let submit = |command: Vec<String>, timeout: Option<u32>, retry: Option<RetryPolicy>| {
        let admin = admin.clone();
        async move {
            admin
                .exec_in_sandbox()
                .id(made.id)
                .body(ExecRequest {
                    command,
                    env: HashMap::new(),
                    timeout_secs: timeout,
                    retry,
                })
                .send()
                .await
                .unwrap()
                .into_inner()
        }
    };
    let ended = |exec: SandboxExec| {
        let admin = admin.clone();
        async move {
            eventually(60, "the exec ends", || async {
                let e = admin
                    .get_sandbox_exec()
                    .id(made.id)
                    .exec_id(exec.id)
                    .send()
                    .await
                    .ok()?
                    .into_inner();
                (e.state != ExecState::Queued).then_some(e)
            })
            .await
        }
    };
    let run = |command: Vec<String>, timeout: Option<u32>| async move {
        ended(submit(command, timeout, None).await).await
    };
    let echo = run(busybox(&["sh", "-c", "echo $GREETING"]), None).await;
    assert_eq!((echo.state, echo.exit_code), (ExecState::Exited, Some(0)));
    assert_eq!(echo.stdout.as_deref(), Some("hello\n"));
    let failing = run(busybox(&["sh", "-c", "echo bad >&2; exit 7"]), None).await;
    assert_eq!(
        (failing.state, failing.exit_code),
        (ExecState::Exited, Some(7))
    );
    assert_eq!(failing.stderr.as_deref(), Some("bad\n"));
    // A long-lived environment: what one command leaves, the next finds.
    let wrote = run(busybox(&["sh", "-c", "echo kept > /state"]), None).await;
    assert_eq!(wrote.exit_code, Some(0), "{wrote:?}");
    // Concurrent: four commands of a second each overlap.
    let spans = futures_util::future::join_all((0..4).map(|_| {
        run(
            busybox(&[
                "sh",
                "-c",
                "/bin/busybox cut -d' ' -f1 /proc/uptime; /bin/busybox sleep 1; /bin/busybox cut -d' ' -f1 /proc/uptime",
            ]),
            None,
        )
    }))
    .await;
    aerekos_tests::assert_ran_together(
        &spans
            .iter()
            .map(|e| e.stdout.as_deref())
            .collect::<Vec<_>>(),
        "the four commands ran one after another",
    );
    let slow = run(busybox(&["sleep", "30"]), Some(1)).await;
    assert_eq!(slow.state, ExecState::TimedOut, "{slow:?}");

    // Retries: a command that fails twice (exit 3, which the policy retries) then succeeds.
    let retry = |max_retries: u32| RetryPolicy {
        max_retries,
        initial_backoff_ms: Some(200),
        max_backoff_ms: Some(1000),
        retry_on_exit_codes: vec![3],
    };
    let third_time = submit(
        busybox(&[
            "sh",
            "-c",
            "n=$(cat /tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tries; echo try $n; [ $n -ge 3 ] || exit 3",
        ]),
        None,
        Some(retry(3)),
    )
    .await;
    let third_time = ended(third_time).await;
    assert_eq!(
        (third_time.state, third_time.exit_code, third_time.attempt),
        (ExecState::Exited, Some(0), 3),
        "{third_time:?}"
    );
    assert_eq!(third_time.stdout.as_deref(), Some("try 3\n"));
    let codes: Vec<_> = third_time
        .attempts
        .iter()
        .map(|a| (a.number, a.state, a.exit_code))
        .collect();
    assert_eq!(
        codes,
        [
            (1, ExecState::Exited, Some(3)),
            (2, ExecState::Exited, Some(3)),
            (3, ExecState::Exited, Some(0))
        ]
    );
    for pair in third_time.attempts.windows(2) {
        let gap = pair[1].ended_at - pair[0].ended_at;
        assert!(
            gap.num_milliseconds() >= 100,
            "a retry waits at least half its backoff: {gap}"
        );
    }
    // An exit code the policy does not name ends the exec at once.
    let not_retried =
        ended(submit(busybox(&["sh", "-c", "exit 4"]), None, Some(retry(3))).await).await;
    assert_eq!(
        (not_retried.exit_code, not_retried.attempts.len()),
        (Some(4), 1)
    );

    // The worker is killed (SIGKILL) while an exec with a retry runs, and started again: the
    // interrupted attempt is recorded `lost` and a second attempt runs; the container, and what
    // it holds, carry on.
    let interrupted = submit(
        busybox(&["sh", "-c", "sleep 3; echo done"]),
        None,
        Some(retry(1)),
    )
    .await;
    eventually(
        30,
        "the exec's first attempt is handed to the worker",
        || async {
            let e = admin
                .get_sandbox_exec()
                .id(made.id)
                .exec_id(interrupted.id)
                .send()
                .await
                .ok()?
                .into_inner();
            e.dispatched_at.map(|_| assert_eq!(e.attempt, 1))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.kill();
    worker.start_again();
    let interrupted = ended(interrupted).await;
    assert_eq!(
        (
            interrupted.state,
            interrupted.exit_code,
            interrupted.attempt
        ),
        (ExecState::Exited, Some(0), 2),
        "{interrupted:?}"
    );
    assert_eq!(
        interrupted.attempts[0].state,
        ExecState::Lost,
        "{interrupted:?}"
    );
    assert_eq!(interrupted.stdout.as_deref(), Some("done\n"));
    let kept = run(busybox(&["cat", "/state"]), None).await;
    assert_eq!(kept.stdout.as_deref(), Some("kept\n"), "{kept:?}");

    let history = admin
        .list_sandbox_execs()
        .id(made.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.len(), 12);
    assert_eq!(history[0].id, kept.id, "newest first");
    assert_eq!(history.last().unwrap().id, echo.id);

    // The CLI: `exec` prints the command's streams and exits with its code; `show` lists it.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("cli");
    let (ok, _, err) = cli(
        &config,
        &["login", "--url", &conductor.url, "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    assert!(ok, "{err}");
    let sandbox_id = made.id.to_string();
    let (code, out, err) = tokio::task::spawn_blocking({
        let (config, sandbox_id) = (config.clone(), sandbox_id.clone());
        move || {
            cli_exit(
                &config,
                &[
                    "sandboxes",
                    "exec",
                    &sandbox_id,
                    "--",
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "echo out; echo err >&2; exit 5",
                ],
                None,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(5), "out\n", "err\n")
    );
    let (ok, out, err) = cli(&config, &["sandboxes", "show", &sandbox_id], None);
    assert!(
        ok && out.contains("scratch") && out.contains("echo out"),
        "{out}{err}"
    );

    admin.delete_sandbox().id(made.id).send().await.unwrap();
    eventually(30, "the sandbox's container is gone", || async {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        (!String::from_utf8_lossy(&out.stdout).contains(&container)).then_some(())
    })
    .await;
    expect_api_error(
        failure(admin.get_sandbox().id(made.id).send().await),
        404,
        "sandbox_not_found",
    );

    // A placement that fails (here: an image no worker has) is undone and made again while
    // `create_retries` remain; then the sandbox fails, saying why.
    let doomed = admin
        .create_sandbox()
        .body(SandboxRequest {
            name: None,
            image: "aerekos-no-such-image:1".into(),
            command: vec![],
            env: HashMap::new(),
            resources: None,
            ready_timeout_secs: None,
            create_retries: Some(1),
            driver: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    let failed = eventually(60, "the sandbox fails", || async {
        let s = admin
            .get_sandbox()
            .id(doomed.id)
            .send()
            .await
            .ok()?
            .into_inner();
        (s.state == SandboxState::Failed).then_some(s)
    })
    .await;
    assert_eq!(failed.create_attempts, 2, "{failed:?}");
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.starts_with("placement 2 ") && reason.contains("is not on this worker"),
        "{reason}"
    );
}
