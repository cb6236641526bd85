//! The reconcile loop: what should run (the last assignments the conductor gave) against what does
//! run (the driver), every tick. Missing instances are started, crashed ones restarted with
//! exponential backoff — without waiting for the conductor — and ones no longer assigned are
//! stopped. An instance with a health path is `starting` until that path answers 2xx, `running`
//! while it does, and `unhealthy` after [`UNHEALTHY_AFTER`] failed probes in a row. Every change of an
//! instance's state is reported to the conductor, and reported again until the conductor has it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_sdk::{
    Conductor, SdkError,
    conductor::types::{DesiredState, Instance, InstanceState, InstanceStatusReport, RunEnding},
};
use futures_util::StreamExt as _;
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use crate::{
    Shared,
    agent::Backoff,
    driver::{self, DriverError, Observed},
};

pub const TICK: Duration = Duration::from_millis(500);
/// Status reports in flight at once.
const REPORTS_AT_ONCE: usize = 8;
/// How often an instance's health path is probed, and how long a probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Failed probes in a row that make a running instance unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
/// Failed probes in a row after which an unhealthy instance is restarted (with backoff, as after
/// a crash): a short hiccup takes it out of the gateway's routes, a lasting one restarts it.
const RESTART_AFTER: u32 = 2 * UNHEALTHY_AFTER;

/// What the worker knows of one assigned instance.
struct Tracked {
    state: InstanceState,
    address: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    restarts: u32,
    /// No start before this (backoff after a crash or a failed start).
    not_before: Instant,
    backoff: Backoff,
    /// The last report the conductor accepted.
    reported: Option<InstanceStatusReport>,
    probe_failures: u32,
    next_probe: Instant,
    /// A `run_once` instance's timeout, once it has started.
    run: Option<RunClock>,
    /// A `run_once` instance's end, once seen: reported until the conductor has it.
    ending: Option<RunEnding>,
}

/// When a `run_once` instance is due to be stopped, and how far that has gone.
struct RunClock {
    deadline: Option<Instant>,
    terminated_at: Option<Instant>,
    killed: bool,
}

/// How often ended job attempts' output past `RUN_OUTPUT_KEEP` is looked for.
const OUTPUT_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// After a timeout's SIGTERM, how long before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(5);

impl RunClock {
    /// Counting from `started` (the marker's time, for an instance adopted after a restart).
    fn new(timeout_secs: Option<u32>, started: std::time::SystemTime) -> Self {
        let elapsed = started.elapsed().unwrap_or_default();
        Self {
            deadline: timeout_secs.map(|secs| {
                Instant::now() + Duration::from_secs(u64::from(secs)).saturating_sub(elapsed)
            }),
            terminated_at: None,
            killed: false,
        }
    }
}

/// Whether the instance's process or container is up (whatever its health).
fn is_up(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Starting | InstanceState::Running | InstanceState::Unhealthy
    )
}

/// The state of an instance that just came up: `starting` until its health path answers.
fn up_state(spec: &aerekos_sdk::conductor::types::InstanceSpec) -> InstanceState {
    if spec.health_path.is_some() && !spec.ports.is_empty() {
        InstanceState::Starting
    } else {
        InstanceState::Running
    }
}

impl Tracked {
    fn new() -> Self {
        Self {
            state: InstanceState::Pending,
            address: None,
            exit_code: None,
            reason: None,
            restarts: 0,
            not_before: Instant::now(),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            reported: None,
            probe_failures: 0,
            next_probe: Instant::now(),
            run: None,
            ending: None,
        }
    }

    fn report(&self) -> InstanceStatusReport {
        InstanceStatusReport {
            state: self.state,
            address: self.address.clone(),
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            restarts: self.restarts,
            ending: self.ending.clone(),
        }
    }
}

pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let conductor = shared.conductor(None);
    // Health checks of instances serving HTTPS believe the cluster CA (their certificates name 127.0.0.1).
    let http = shared
        .trust
        .apply(reqwest::Client::builder().timeout(PROBE_EVERY))
        .build()
        .expect("an HTTP client");
    let mut tracked: HashMap<Uuid, Tracked> = HashMap::new();
    let stopping: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut next_sweep = Instant::now();
    loop {
        tick(&shared, &conductor, &mut tracked, &stopping).await;
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + OUTPUT_SWEEP_EVERY;
            if let Some(desired) = shared.desired() {
                let live: HashSet<Uuid> = desired.iter().map(|i| i.id).collect();
                shared
                    .driver
                    .sweep_outputs(shared.config.run_output_keep, &live);
            }
        }
        probe_health(&shared, &http, &mut tracked).await;
        report_changes(&shared, &conductor, &mut tracked).await;
        publish_view(&shared, &tracked);
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shared.reconcile_now.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn tick(
    shared: &Arc<Shared>,
    conductor: &Conductor,
    tracked: &mut HashMap<Uuid, Tracked>,
    stopping: &Arc<Mutex<HashSet<Uuid>>>,
) {
    // Until the conductor (or the last saved copy) has said what should run, nothing is touched.
    let Some(desired) = shared.desired() else {
        return;
    };
    let driver = &shared.driver;

    // Stop what is no longer assigned (or assigned as stopped).
    let wanted: HashMap<Uuid, &Instance> = desired
        .iter()
        .filter(|i| i.desired_state == DesiredState::Running)
        .map(|i| (i.id, i))
        .collect();
    // Stops run in the background: a container's grace period must not hold up starting others.
    for id in driver.instances().await {
        if !wanted.contains_key(&id) && stopping.lock().expect("stopping lock").insert(id) {
            tracing::info!(instance_id = %id, "stopping an instance that is no longer assigned");
            let (shared, stopping) = (shared.clone(), stopping.clone());
            tokio::spawn(async move {
                if let Err(e) = shared.driver.stop(id).await {
                    tracing::error!(instance_id = %id, error = %e, "stopping failed");
                }
                stopping.lock().expect("stopping lock").remove(&id);
            });
        }
    }
    tracked.retain(|id, _| desired.iter().any(|i| i.id == *id));
    let live: HashSet<Uuid> = desired.iter().map(|i| i.id).collect();
    shared.started_secrets.keep_only(&live);
    let run_keys: HashSet<String> = live.iter().map(|id| crate::runs::key(*id, None)).collect();
    crate::runs::forget_except(
        &shared.config.data_dir,
        crate::runs::Kind::Instance,
        &run_keys,
    );
    crate::secrets::remove_files_except(&shared.config.secret_files_dir, &live);
    for inst in desired
        .iter()
        .filter(|i| i.desired_state == DesiredState::Stopped)
    {
        let t = tracked.entry(inst.id).or_insert_with(Tracked::new);
        t.state = InstanceState::Stopped;
        t.address = None;
    }

    // Start or restart what should run.
    let ip = shared.advertise_ip();
    for (id, inst) in &wanted {
        let t = tracked.entry(*id).or_insert_with(|| {
            let mut t = Tracked::new();
            // The conductor's count survives a worker restart.
            t.restarts = inst.restarts;
            t
        });
        if t.ending.is_some() {
            // A run_once instance that ended: nothing more to do until the conductor has its end.
            continue;
        }
        match driver.observe(*id).await {
            Observed::Running => {
                if !is_up(t.state) {
                    // Started earlier (adopted after a worker restart, or just started).
                    t.state = up_state(&inst.spec);
                    t.address = driver::address(ip, &inst.spec);
                    t.exit_code = None;
                    t.reason = None;
                }
                if inst.spec.run_once {
                    enforce_timeout(shared, *id, inst, t).await;
                }
            }
            observed if inst.spec.run_once && has_run(shared, *id, t) => {
                let (code, signal) = match observed {
                    Observed::Exited { code, signal } => (code, signal),
                    Observed::Missing | Observed::Running => (None, None),
                };
                let timed_out = t.run.as_ref().is_some_and(|r| r.terminated_at.is_some());
                let detail = (code.is_none() && signal.is_none() && !timed_out).then(|| {
                    "its exit status is unknown: it ended while its worker was restarting"
                        .to_owned()
                });
                tracing::info!(instance_id = %id, exit_code = ?code, ?signal, timed_out, "run-once instance ended");
                t.state = InstanceState::Exited;
                t.exit_code = code;
                t.address = None;
                t.ending =
                    Some(crate::runs::ending(&**driver, *id, signal, timed_out, detail).await);
            }
            observed => {
                if is_up(t.state) {
                    // It was running and is not: a crash (or a kill from outside).
                    let code = match observed {
                        Observed::Exited { code, .. } => code,
                        _ => None,
                    };
                    tracing::warn!(instance_id = %id, exit_code = ?code, "instance exited; restarting it after a backoff");
                    t.state = InstanceState::Exited;
                    t.exit_code = code;
                    t.address = None;
                    t.not_before = Instant::now() + t.backoff.next_delay();
                }
                if inst.spec.run_once
                    && !shared
                        .assignments_heard
                        .load(std::sync::atomic::Ordering::Acquire)
                {
                    // A first start waits for the conductor's word: the saved assignments may
                    // name an attempt it has since undone and given to another worker.
                    continue;
                }
                let volume_free = inst
                    .spec
                    .volume
                    .as_deref()
                    .is_none_or(|v| crate::volumes::ready_to_start_on(shared, v));
                if Instant::now() >= t.not_before && volume_free {
                    let restarting =
                        matches!(t.state, InstanceState::Exited | InstanceState::Failed);
                    let (spec, secret_versions) = match prepared(shared, conductor, inst).await {
                        Ok(prepared) => prepared,
                        Err(why) => {
                            // Not yet (no certificate), or not at all until it changes (a secret
                            // it names cannot be read): tried again after the backoff.
                            if let Some(reason) = why {
                                if t.reason.as_deref() != Some(&reason) {
                                    tracing::warn!(instance_id = %id, %reason, "instance not started");
                                }
                                t.state = InstanceState::Failed;
                                t.reason = Some(reason);
                                t.address = None;
                            }
                            t.not_before = Instant::now() + t.backoff.next_delay();
                            continue;
                        }
                    };
                    // Recorded before the start: a worker killed right after it still knows what the
                    // adopted instance read (a failed start records again at the next attempt).
                    shared.started_secrets.record(*id, secret_versions);
                    if inst.spec.run_once {
                        if let Err(e) = crate::runs::mark_started(
                            &shared.config.data_dir,
                            crate::runs::Kind::Instance,
                            &crate::runs::key(*id, None),
                        ) {
                            tracing::warn!(instance_id = %id, error = %e, "cannot record a run-once start; not starting it yet");
                            t.not_before = Instant::now() + t.backoff.next_delay();
                            continue;
                        }
                        t.run = Some(RunClock::new(
                            inst.spec.timeout_secs,
                            std::time::SystemTime::now(),
                        ));
                    }
                    match driver.start(*id, &spec).await {
                        Ok(()) => {
                            if restarting {
                                t.restarts += 1;
                                shared
                                    .restarts_total
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            t.state = up_state(&inst.spec);
                            t.address = driver::address(ip, &inst.spec);
                            t.reason = None;
                            t.exit_code = None;
                            t.probe_failures = 0;
                            t.next_probe = Instant::now();
                        }
                        Err(e) => {
                            let reason = match e {
                                DriverError::Refused(reason) => reason,
                                DriverError::Io(e) => format!("the worker could not start it: {e}"),
                            };
                            if t.reason.as_deref() != Some(&reason) {
                                tracing::warn!(instance_id = %id, %reason, "instance failed to start");
                            }
                            t.state = InstanceState::Failed;
                            t.address = None;
                            t.not_before = Instant::now() + t.backoff.next_delay();
                            if inst.spec.run_once {
                                // Not tried again here: whether to is the job's retry policy.
                                t.ending = Some(
                                    crate::runs::ending(
                                        &**driver,
                                        *id,
                                        None,
                                        false,
                                        Some(reason.clone()),
                                    )
                                    .await,
                                );
                            }
                            t.reason = Some(reason);
                        }
                    }
                }
            }
        }
        // A long healthy run forgives earlier crashes.
        if t.state == InstanceState::Running
            && Instant::now() > t.not_before + Duration::from_secs(60)
        {
            t.backoff.reset();
        }
    }
}

/// Whether a `run_once` instance that is not running now has run: this worker saw it up, or a
/// marker says an earlier worker process started it.
fn has_run(shared: &Shared, id: Uuid, t: &Tracked) -> bool {
    is_up(t.state)
        || crate::runs::started_at(
            &shared.config.data_dir,
            crate::runs::Kind::Instance,
            &crate::runs::key(id, None),
        )
        .is_some()
}

/// Stops a `run_once` instance at its timeout: SIGTERM to its process group or container, then
/// SIGKILL [`KILL_AFTER`] later. Its end is then observed (and reported) like any other.
async fn enforce_timeout(shared: &Shared, id: Uuid, inst: &Instance, t: &mut Tracked) {
    let clock = t.run.get_or_insert_with(|| {
        // Adopted after a worker restart: the timeout counts from the recorded start.
        let started = crate::runs::started_at(
            &shared.config.data_dir,
            crate::runs::Kind::Instance,
            &crate::runs::key(id, None),
        )
        .unwrap_or_else(std::time::SystemTime::now);
        RunClock::new(inst.spec.timeout_secs, started)
    });
    let now = Instant::now();
    match clock.terminated_at {
        None if clock.deadline.is_some_and(|d| now >= d) => {
            tracing::warn!(instance_id = %id, timeout_secs = ?inst.spec.timeout_secs, "run-once instance reached its timeout; stopping it");
            clock.terminated_at = Some(now);
            if let Err(e) = shared.driver.terminate(id, false).await {
                tracing::error!(instance_id = %id, error = %e, "signalling the instance failed");
            }
        }
        Some(at) if !clock.killed && now >= at + KILL_AFTER => {
            clock.killed = true;
            if let Err(e) = shared.driver.terminate(id, true).await {
                tracing::error!(instance_id = %id, error = %e, "killing the instance failed");
            }
        }
        _ => {}
    }
}

/// Probes the health path of every instance that is up and due, all at once.
async fn probe_health(
    shared: &Shared,
    http: &reqwest::Client,
    tracked: &mut HashMap<Uuid, Tracked>,
) {
    let Some(desired) = shared.desired() else {
        return;
    };
    let now = Instant::now();
    let due: Vec<(Uuid, String)> = desired
        .iter()
        .filter_map(|inst| {
            let t = tracked.get(&inst.id)?;
            let (path, port) = (inst.spec.health_path.as_ref()?, inst.spec.ports.first()?);
            let scheme = if inst.spec.tls { "https" } else { "http" };
            (is_up(t.state) && now >= t.next_probe)
                .then(|| (inst.id, format!("{scheme}://127.0.0.1:{port}{path}")))
        })
        .collect();
    let probes = due.into_iter().map(|(id, url)| async move {
        let outcome = match http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("GET {url} answered {}", resp.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!(
                "GET {url} did not answer within {}s",
                PROBE_EVERY.as_secs()
            )),
            Err(_) => Err(format!("GET {url} could not connect")),
        };
        (id, outcome)
    });
    let mut to_restart = vec![];
    for (id, outcome) in futures_util::future::join_all(probes).await {
        let Some(t) = tracked.get_mut(&id) else {
            continue;
        };
        // A starting instance is probed at every tick, so it serves as soon as it answers.
        t.next_probe = Instant::now()
            + if outcome.is_err() && t.state == InstanceState::Starting {
                TICK
            } else {
                PROBE_EVERY
            };
        match outcome {
            Ok(()) => {
                t.probe_failures = 0;
                if t.state != InstanceState::Running {
                    tracing::info!(instance_id = %id, "instance is healthy");
                }
                t.state = InstanceState::Running;
                t.reason = None;
            }
            Err(why) => {
                t.probe_failures += 1;
                if t.state == InstanceState::Running && t.probe_failures >= UNHEALTHY_AFTER {
                    tracing::warn!(instance_id = %id, reason = %why, "instance is unhealthy");
                    t.state = InstanceState::Unhealthy;
                }
                if t.state == InstanceState::Unhealthy && t.probe_failures >= RESTART_AFTER {
                    to_restart.push(id);
                    t.reason = Some(format!(
                        "restarted after {} failed health checks: {why}",
                        t.probe_failures
                    ));
                } else if t.state != InstanceState::Running {
                    t.reason = Some(why);
                }
            }
        }
    }
    for id in to_restart {
        tracing::warn!(instance_id = %id, "restarting an unhealthy instance");
        if let Err(e) = shared.driver.stop(id).await {
            tracing::error!(instance_id = %id, error = %e, "stopping an unhealthy instance failed");
        }
        if let Some(t) = tracked.get_mut(&id) {
            // The next tick starts it again after the backoff, counting a restart.
            t.state = InstanceState::Exited;
            t.exit_code = None;
            t.address = None;
            t.probe_failures = 0;
            t.not_before = Instant::now() + t.backoff.next_delay();
        }
    }
}

/// The variable a platform service finds its service token in.
const SERVICE_TOKEN_ENV: &str = "AEREKOS_SERVICE_TOKEN";

/// The spec an instance starts with: an instance whose spec says `tls` gets its certificate from
/// the cluster CA (kept on disk, so it restarts while the conductor is away; without one it does
/// not start yet, since the gateway will speak HTTPS to it). An instance of a platform service gets
/// a fresh service token at each start, so it can call the other services (storage_manager →
/// key_manager); without one (the conductor is away) it starts anyway, and what needs the token
/// says so. An instance naming secrets gets their values in its environment, read at each start;
/// until they can be read it does not start (Err with the reason). Err(None): not yet, silently.
async fn prepared(
    shared: &Shared,
    conductor: &Conductor,
    inst: &Instance,
) -> Result<
    (
        aerekos_sdk::conductor::types::InstanceSpec,
        BTreeMap<String, u64>,
    ),
    Option<String>,
> {
    let mut spec = inst.spec.clone();
    let mut secret_versions = BTreeMap::new();
    let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
        return Ok((spec, secret_versions));
    };
    conductor.set_token(Some(identity.credential.clone()));
    if spec.tls {
        let Some(certs) = &shared.certs else {
            tracing::warn!(instance_id = %inst.id, "the instance is to serve TLS but this worker's conductor is not https; not starting it");
            return Err(None);
        };
        match certs
            .for_instance(conductor, identity.worker_id, inst.id)
            .await
        {
            Ok((chain, key)) => {
                spec.env
                    .insert(aerekos_common::tls::CERT_PEM_ENV.to_owned(), chain);
                spec.env
                    .insert(aerekos_common::tls::KEY_PEM_ENV.to_owned(), key);
            }
            Err(e) => {
                tracing::warn!(instance_id = %inst.id, error = %e, "no certificate for the instance yet; it starts once there is one");
                return Err(None);
            }
        }
    }
    if !spec.secret_env.is_empty() {
        let read = crate::secrets::read_for_start(
            shared,
            conductor,
            identity.worker_id,
            inst.id,
            &spec.secret_env,
            // Where the files are: a container's or a guest's /run/secrets, or on the worker.
            spec.image.is_some()
                || spec.driver == Some(aerekos_sdk::conductor::types::DriverKind::Microvm),
        )
        .await
        .map_err(Some)?;
        spec.env.extend(read.values);
        secret_versions = read.versions;
    }
    if inst.service.is_none() || spec.env.contains_key(SERVICE_TOKEN_ENV) {
        return Ok((spec, secret_versions));
    }
    match conductor
        .issue_instance_service_token()
        .id(identity.worker_id)
        .instance_id(inst.id)
        .send()
        .await
    {
        Ok(token) => {
            spec.env
                .insert(SERVICE_TOKEN_ENV.to_owned(), token.into_inner().token);
        }
        Err(e) => {
            tracing::info!(instance_id = %inst.id, error = %SdkError::from(e), "starting the instance without a service token")
        }
    }
    Ok((spec, secret_versions))
}

/// What the worker API shows.
fn publish_view(shared: &Shared, tracked: &HashMap<Uuid, Tracked>) {
    let Some(desired) = shared.desired() else {
        return;
    };
    let view = desired
        .iter()
        .filter_map(|inst| {
            let t = tracked.get(&inst.id)?;
            Some(crate::api::WorkerInstance {
                id: inst.id,
                service: inst.service.clone(),
                state: t.state.to_string(),
                address: t.address.clone(),
                exit_code: t.exit_code,
                reason: t.reason.clone(),
                restarts: t.restarts,
            })
        })
        .collect();
    *shared.view.lock().expect("view lock") = view;
}

async fn report_changes(
    shared: &Shared,
    conductor: &Conductor,
    tracked: &mut HashMap<Uuid, Tracked>,
) {
    let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
        return;
    };
    conductor.set_token(Some(identity.credential.clone()));
    let changed: Vec<(Uuid, InstanceStatusReport)> = tracked
        .iter()
        .map(|(id, t)| (*id, t.report()))
        .filter(|(id, report)| tracked[id].reported.as_ref() != Some(report))
        .collect();
    // Sent a few at a time: one after another, a burst of job ends waited on every round trip
    // (and the conductor's write of each) in turn.
    let sends = changed.into_iter().map(|(id, report)| async move {
        let sent = conductor
            .report_instance_status()
            .id(identity.worker_id)
            .instance_id(id)
            .body(report.clone())
            .send()
            .await
            .map_err(SdkError::from);
        (id, report, sent)
    });
    let mut sent = futures_util::stream::iter(sends).buffer_unordered(REPORTS_AT_ONCE);
    let mut not_ours = vec![];
    while let Some((id, report, sent)) = sent.next().await {
        match sent {
            Ok(_) => {
                if let Some(t) = tracked.get_mut(&id) {
                    t.reported = Some(report);
                }
            }
            Err(SdkError::Api { status: 404, body }) if body.code == "instance_not_found" => {
                not_ours.push(id)
            }
            // Unreachable or refusing: reported again next tick.
            Err(e) => {
                tracing::debug!(instance_id = %id, error = %e, "status report not delivered yet")
            }
        }
    }
    drop(sent);
    for id in not_ours {
        tracing::info!(instance_id = %id, "the conductor says this instance is not assigned here; stopping it");
        shared.forget_desired(id);
        let _ = shared.driver.stop(id).await;
        tracked.remove(&id);
    }
}
