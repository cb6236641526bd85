//! `aerekos jobs …`: the conductor's job queue, on `aerekos-sdk` only. `run --wait` and `logs -f`
//! follow a job's output from its worker's API while the attempt runs (the worker keeps it whole),
//! and from the tails the conductor keeps once the worker has none.

use std::{collections::HashMap, io::Write as _, time::Duration};

use aerekos_sdk::{
    WorkerAgent,
    conductor::types::{self, AttemptOutcome, Job, JobAttempt, JobState},
    worker::types::StreamName,
};
use anyhow::{Context as _, bail};
use uuid::Uuid;

use crate::{
    client::{Global, api, connect, connect_worker, pairs},
    output::{self, Format},
};

/// How often a followed job is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// What a job runs and how: `jobs run` and `schedules create` take the same flags.
#[derive(clap::Args)]
pub struct JobArgs {
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// A Docker image on the workers (docker driver); the command, if given, replaces its own.
    #[arg(long)]
    image: Option<String>,
    /// `process`, `docker` or `microvm` (default: docker with --image, else process).
    #[arg(long, value_parser = ["process", "docker", "microvm"])]
    driver: Option<String>,
    /// An environment variable, NAME=value (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// CPU to reserve, in millicores (default 100).
    #[arg(long)]
    cpu: Option<u32>,
    /// Memory to reserve, in MB (default 64).
    #[arg(long)]
    memory: Option<u32>,
    /// Seconds an attempt may run (default 3600).
    #[arg(long)]
    timeout: Option<u32>,
    #[command(flatten)]
    retry: RetryArgs,
    /// 0 (lowest) to 100 (highest), default 50.
    #[arg(long)]
    priority: Option<u8>,
    #[arg(long)]
    queue: Option<String>,
    /// The program and its arguments (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// When a failed attempt runs again (jobs and sandbox execs alike).
#[derive(clap::Args)]
pub struct RetryArgs {
    /// Attempts after the first when one fails.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// The first retry's backoff in ms (default 1000); it doubles, with jitter.
    #[arg(long)]
    backoff_ms: Option<u32>,
    #[arg(long)]
    max_backoff_ms: Option<u32>,
    /// Retry only these exit codes (repeatable; default: every non-zero one).
    #[arg(long = "retry-on-exit")]
    retry_on_exit: Vec<i32>,
}

impl RetryArgs {
    /// The policy the flags describe; none without `--retries`.
    pub(crate) fn policy(&self) -> Option<types::RetryPolicy> {
        (self.retries > 0).then(|| types::RetryPolicy {
            max_retries: self.retries,
            initial_backoff_ms: self.backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            retry_on_exit_codes: self.retry_on_exit.clone(),
        })
    }
}

impl JobArgs {
    /// No command and no image: no job was described.
    pub(crate) fn is_empty(&self) -> bool {
        self.command.is_empty() && self.image.is_none()
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Submitting twice with the same key gives one job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait for the job, printing its output, and exit with its exit code.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Submit a job; with --wait, follow it to its end.
    Run(RunArgs),
    /// Jobs, newest first.
    Ls {
        /// queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// Submitted at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A job and every attempt at it.
    Show { id: Uuid },
    /// Cancel a queued or running job.
    Cancel { id: Uuid },
    /// A job's output (stdout to stdout, stderr to stderr), attempt by attempt.
    Logs {
        id: Uuid,
        /// Keep following it until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Queues with their limits and what runs and waits in them.
    Queues,
    /// Set a queue's concurrency limit (or remove it with --no-limit).
    Queue {
        name: String,
        #[arg(long, conflicts_with = "no_limit")]
        limit: Option<u32>,
        #[arg(long)]
        no_limit: bool,
    },
}

pub async fn jobs(global: Global, command: JobsCommand) -> anyhow::Result<()> {
    let conductor = connect(&global)?;
    match command {
        JobsCommand::Run(args) => {
            let wait = args.wait;
            let mut request = job_request(args.job)?;
            request.idempotency_key = args.idempotency_key;
            let job = api(conductor.submit_job().body(request).send().await)?;
            if !wait {
                return print_jobs(global.output(), &[job]);
            }
            eprintln!("job {} queued", job.id);
            let code = follow(&global, &conductor, job.id, true).await?;
            std::process::exit(code);
        }
        JobsCommand::Ls {
            state,
            queue,
            since,
            limit,
        } => {
            let mut req = conductor.list_jobs().limit(limit);
            if let Some(state) = state {
                let state: JobState = state.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "--state {state:?}: use queued, running, succeeded, failed or cancelled"
                    )
                })?;
                req = req.state(state);
            }
            if let Some(queue) = queue {
                req = req.queue(queue);
            }
            if let Some(since) = since {
                req = req.since(since);
            }
            let page = api(req.send().await)?;
            print_jobs(global.output(), &page.jobs)
        }
        JobsCommand::Show { id } => {
            let job = api(conductor.get_job().id(id).send().await)?;
            let attempts = api(conductor.list_job_attempts().id(id).send().await)?;
            if global.output() == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"job": job, "attempts": attempts})
                    )?
                );
                return Ok(());
            }
            print_jobs(Format::Table, std::slice::from_ref(&job))?;
            if let Some(reason) = &job.reason {
                println!("reason: {reason}");
            }
            println!();
            let rows: Vec<Vec<String>> = attempts
                .iter()
                .map(|a| {
                    vec![
                        a.number.to_string(),
                        a.worker_id.to_string(),
                        a.outcome.to_string(),
                        a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        a.started_at.to_rfc3339(),
                        a.ended_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        a.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "ATTEMPT", "WORKER", "OUTCOME", "EXIT", "STARTED", "ENDED", "REASON"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        JobsCommand::Cancel { id } => {
            let job = api(conductor.cancel_job().id(id).send().await)?;
            print_jobs(global.output(), &[job])
        }
        JobsCommand::Logs { id, follow: keep } => {
            follow(&global, &conductor, id, keep).await?;
            Ok(())
        }
        JobsCommand::Queues => {
            let queues = api(conductor.list_job_queues().send().await)?;
            let rows = queues
                .iter()
                .map(|q| {
                    vec![
                        q.name.clone(),
                        q.concurrency_limit
                            .map(|l| l.to_string())
                            .unwrap_or_else(|| "none".into()),
                        q.running.to_string(),
                        q.queued.to_string(),
                    ]
                })
                .collect();
            output::print(
                global.output(),
                &queues,
                &["QUEUE", "LIMIT", "RUNNING", "QUEUED"],
                rows,
            )
        }
        JobsCommand::Queue {
            name,
            limit,
            no_limit,
        } => {
            if no_limit {
                api(conductor.delete_job_queue().name(&name).send().await)?;
                println!("queue {name} has no limit");
                return Ok(());
            }
            let Some(limit) = limit else {
                bail!("give --limit N, or --no-limit");
            };
            let queue = api(conductor
                .set_job_queue()
                .name(&name)
                .body(types::JobQueueSettings {
                    concurrency_limit: Some(limit),
                })
                .send()
                .await)?;
            output::print(
                global.output(),
                &queue,
                &["QUEUE", "LIMIT"],
                vec![vec![queue.name.clone(), limit.to_string()]],
            )
        }
    }
}

/// The job the flags describe.
pub(crate) fn job_request(args: JobArgs) -> anyhow::Result<types::JobRequest> {
    if args.command.is_empty() && args.image.is_none() {
        bail!("give the command after `--` (e.g. `aerekos jobs run -- echo hi`), or --image");
    }
    let driver = args
        .driver
        .map(|d| d.parse::<types::DriverKind>())
        .transpose()
        .map_err(|e| anyhow::anyhow!("--driver: {e}"))?;
    let resources = (args.cpu.is_some() || args.memory.is_some()).then(|| types::ResourceSpec {
        cpu_millicores: args.cpu.unwrap_or(100),
        memory_mb: args.memory.unwrap_or(64),
        disk_mb: 0,
    });
    let retry = args.retry.policy();
    Ok(types::JobRequest {
        name: args.name,
        image: args.image,
        command: args.command,
        env: pairs("env", &args.env)?,
        resources,
        driver,
        timeout_secs: args.timeout,
        retry,
        priority: args.priority,
        queue: args.queue,
        idempotency_key: None,
    })
}

fn print_jobs(format: Format, jobs: &[Job]) -> anyhow::Result<()> {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.name.clone().unwrap_or_default(),
                j.state.to_string(),
                j.priority.to_string(),
                j.queue.clone(),
                j.attempts.to_string(),
                j.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                j.submitted_at.to_rfc3339(),
            ]
        })
        .collect();
    output::print(
        format,
        &jobs,
        &[
            "ID",
            "NAME",
            "STATE",
            "PRIORITY",
            "QUEUE",
            "ATTEMPTS",
            "EXIT",
            "SUBMITTED",
        ],
        rows,
    )
}

/// What has been printed of one attempt's streams.
#[derive(Default)]
struct Printed {
    stdout: u64,
    stderr: u64,
    announced: bool,
    done: bool,
}

/// How long `follow` keeps trying through failed calls to the conductor before it gives up.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

/// Prints the job's output, attempt by attempt; with `keep`, until the job ends. Returns the exit
/// code `run --wait` ends with: the job's, or 1 when it failed without one or was cancelled.
async fn follow(
    global: &Global,
    conductor: &aerekos_sdk::Conductor,
    id: Uuid,
    keep: bool,
) -> anyhow::Result<i32> {
    let mut printed: HashMap<u32, Printed> = HashMap::new();
    let mut workers: HashMap<Uuid, WorkerAgent> = HashMap::new();
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        // The job first: an attempt that ended before this look is then fully in the list below.
        let looked = async {
            let job = api(conductor.get_job().id(id).send().await)?;
            let attempts = api(conductor.list_job_attempts().id(id).send().await)?;
            anyhow::Ok((job, attempts))
        };
        let (job, attempts) = match looked.await {
            Ok(both) => {
                failing_since = None;
                both
            }
            // A conductor restarting or a network blip is waited out, for a while.
            Err(e) if failing_since.is_none_or(|t| t.elapsed() < FOLLOW_PATIENCE) => {
                failing_since.get_or_insert_with(std::time::Instant::now);
                eprintln!("(still following job {id}: {e:#})");
                tokio::time::sleep(FOLLOW_EVERY * 4).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        for a in &attempts {
            let p = printed.entry(a.number).or_default();
            if p.done {
                continue;
            }
            if !p.announced {
                p.announced = true;
                eprintln!("--- attempt {} on worker {} ---", a.number, a.worker_id);
            }
            // Looked up until found (a worker's address can come later).
            let agent = match workers.get(&a.worker_id) {
                Some(agent) => Some(agent.clone()),
                None => {
                    let agent = worker_agent(global, conductor, a.worker_id).await;
                    if let Some(agent) = &agent {
                        workers.insert(a.worker_id, agent.clone());
                    }
                    agent
                }
            };
            let ended = a.outcome != AttemptOutcome::Running;
            let from_worker = match &agent {
                Some(agent) => drain(agent, a, p).await.is_ok(),
                None => false,
            };
            if ended {
                if !from_worker {
                    print_rest_of_tails(a, p)?;
                }
                eprintln!(
                    "--- attempt {} {}{} ---",
                    a.number,
                    a.outcome,
                    a.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
                p.done = true;
            }
        }
        let finished = matches!(
            job.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        );
        if finished || !keep {
            if finished {
                eprintln!(
                    "job {} {}{}",
                    job.id,
                    job.state,
                    job.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
            return Ok(match job.state {
                JobState::Succeeded => 0,
                _ => job.exit_code.filter(|c| *c != 0).unwrap_or(1),
            });
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The API of the worker an attempt ran on, when the registry gives its address.
async fn worker_agent(
    global: &Global,
    conductor: &aerekos_sdk::Conductor,
    worker: Uuid,
) -> Option<WorkerAgent> {
    let w = conductor.get_worker().id(worker).send().await.ok()?;
    connect_worker(global, w.api_url.as_deref()?).ok()
}

/// Prints what the worker has of the attempt's streams beyond what was printed.
async fn drain(agent: &WorkerAgent, a: &JobAttempt, p: &mut Printed) -> anyhow::Result<()> {
    for (stream, at) in [
        (StreamName::Stdout, &mut p.stdout),
        (StreamName::Stderr, &mut p.stderr),
    ] {
        loop {
            let chunk = agent
                .get_instance_output()
                .id(a.instance_id)
                .stream(stream)
                .offset(*at)
                .send()
                .await
                .context("reading the output from the worker")?
                .into_inner();
            write(stream, chunk.text.as_bytes())?;
            *at = chunk.next_offset;
            if chunk.next_offset >= chunk.total || chunk.next_offset == chunk.offset {
                break;
            }
        }
    }
    Ok(())
}

/// Prints what the conductor's tails hold beyond what was printed (the worker has no more).
fn print_rest_of_tails(a: &JobAttempt, p: &Printed) -> anyhow::Result<()> {
    for (stream, tail, total, at) in [
        (StreamName::Stdout, &a.stdout_tail, a.stdout_bytes, p.stdout),
        (StreamName::Stderr, &a.stderr_tail, a.stderr_bytes, p.stderr),
    ] {
        let Some(tail) = tail else { continue };
        let total = total.unwrap_or(tail.len() as u64);
        let tail_start = total.saturating_sub(tail.len() as u64);
        if tail_start > at {
            write(
                StreamName::Stderr,
                format!("[… {} bytes the worker no longer has …]\n", tail_start - at).as_bytes(),
            )?;
        }
        let skip = at.saturating_sub(tail_start) as usize;
        write(stream, tail.as_bytes().get(skip..).unwrap_or_default())?;
    }
    Ok(())
}

fn write(stream: StreamName, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    match stream {
        StreamName::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
        }
        StreamName::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(bytes)?;
            err.flush()?;
        }
    }
    Ok(())
}
