//! The conversation with the conductor: register (once, then only to rejoin), heartbeat the
//! machine's resources, and fetch the instances assigned to this worker.
//!
//! Nothing here can stop an instance: while the conductor is unreachable the worker keeps running
//! what it last knew it should, and retries with exponential backoff and jitter. A conductor that
//! forgot the worker (404) is rejoined under the same identity; a credential it refuses (401) or an
//! id it gives to someone else (409) means joining as a new worker.

use std::{sync::Arc, time::Duration};

use aerekos_sdk::{
    Conductor, SdkError,
    conductor::types::{HeartbeatRequest, RegisterWorkerRequest},
};
use rand::Rng as _;
use tokio::sync::watch;

use crate::{Shared, identity, identity::Identity, resources::Probe};

/// Exponential backoff with full jitter, capped.
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            next: initial,
            initial,
            max,
        }
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base / 2 + Duration::from_millis(jitter) + base / 4
    }
}

enum Joined {
    Yes,
    /// Try again after the backoff.
    Later,
}

pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let conductor = shared.conductor(None);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut probe = Probe::new();
    let mut joined = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = if !joined {
            match join(&shared, &conductor, &mut probe).await {
                Joined::Yes => {
                    joined = true;
                    backoff.reset();
                    Duration::ZERO
                }
                Joined::Later => backoff.next_delay(),
            }
        } else {
            match heartbeat(&shared, &conductor, &mut probe).await {
                Ok(()) => {
                    backoff.reset();
                    *shared.interval.lock().expect("interval lock")
                }
                Err(SdkError::Api { status: 404, body }) if body.code == "worker_not_found" => {
                    tracing::warn!(
                        "the conductor does not know this worker (reset or removed); rejoining with the same identity"
                    );
                    joined = false;
                    Duration::ZERO
                }
                Err(SdkError::Api { status: 401, body }) => {
                    tracing::warn!(reason = %body.message, "the conductor refused this worker's credential; joining as a new worker");
                    *shared.identity.write().expect("identity lock") = None;
                    joined = false;
                    Duration::ZERO
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "conductor unreachable; instances keep running");
                    delay
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn join(shared: &Shared, conductor: &Conductor, probe: &mut Probe) -> Joined {
    // The conductor's public key first: once the conductor lists this worker, its API must be able
    // to check the tokens users bring (a worker listed but answering 503 is a race for clients).
    if shared.verifier.read().expect("verifier lock").is_none() {
        match aerekos_trust::conductor_verifier(&shared.conductor(None), Duration::ZERO).await {
            Ok(v) => *shared.verifier.write().expect("verifier lock") = Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the conductor's public key; retrying");
                return Joined::Later;
            }
        }
    }
    let known = shared.identity.read().expect("identity lock").clone();
    let hostname = Probe::hostname();
    let request = RegisterWorkerRequest {
        registration_token: shared.config.registration_token.clone(),
        worker_id: known.as_ref().map(|i| i.worker_id),
        worker_credential: known.as_ref().map(|i| i.credential.clone()),
        name: shared.config.name.clone(),
        hostname,
        ip_address: shared.advertise_ip().to_string(),
        labels: shared.config.labels.clone().into_iter().collect(),
        resources: probe.sample(
            &shared.config.data_dir,
            &shared.driver.info(),
            &shared.driver.unavailable(),
        ),
        api_url: shared.api_url(),
    };
    match conductor
        .register_worker()
        .body(request)
        .send()
        .await
        .map_err(SdkError::from)
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            let identity = Identity {
                worker_id: answer.worker_id,
                credential: answer.worker_credential,
            };
            if known.as_ref() != Some(&identity) {
                if let Err(e) = identity::store(&shared.config.data_dir, &identity) {
                    tracing::error!(error = %e, "could not store the worker identity; it will be asked for again");
                }
            }
            tracing::info!(worker_id = %identity.worker_id, created = answer.created, "joined the conductor");
            *shared.interval.lock().expect("interval lock") =
                Duration::from_secs(answer.heartbeat_interval_secs.max(1));
            *shared.identity.write().expect("identity lock") = Some(identity.clone());
            // A certificate for the worker API at each join: the address may be new.
            if let Some(certs) = &shared.certs {
                if let Err(e) = certs
                    .renew_api(
                        &shared.conductor(Some(identity.credential.clone())),
                        identity.worker_id,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not get a certificate for the worker API; asking again at the next join");
                }
            }
            // send_replace: the value must be stored even while nobody is subscribed.
            shared.registered.send_replace(Some(identity.worker_id));
            Joined::Yes
        }
        Err(SdkError::Api { status: 409, body }) => {
            tracing::warn!(reason = %body.message, "this worker's id belongs to another credential; joining as a new worker");
            *shared.identity.write().expect("identity lock") = None;
            Joined::Later
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not join the conductor; retrying");
            Joined::Later
        }
    }
}

async fn heartbeat(
    shared: &Shared,
    conductor: &Conductor,
    probe: &mut Probe,
) -> Result<(), SdkError> {
    let Some(identity) = shared.identity.read().expect("identity lock").clone() else {
        return Err(SdkError::Api {
            status: 404,
            body: aerekos_sdk::ErrorBody {
                code: "worker_not_found".into(),
                message: "no identity".into(),
                request_id: String::new(),
            },
        });
    };
    conductor.set_token(Some(identity.credential.clone()));
    let resources = probe.sample(
        &shared.config.data_dir,
        &shared.driver.info(),
        &shared.driver.unavailable(),
    );
    *shared.last_resources.lock().expect("resources lock") = Some(resources.clone());
    let request = HeartbeatRequest {
        resources,
        ip_address: Some(shared.advertise_ip().to_string()),
    };
    let answer = conductor
        .worker_heartbeat()
        .id(identity.worker_id)
        .body(request)
        .send()
        .await?
        .into_inner();
    *shared.interval.lock().expect("interval lock") =
        Duration::from_secs(answer.heartbeat_interval_secs.max(1));
    let assigned = conductor
        .get_assignments()
        .id(identity.worker_id)
        .send()
        .await?
        .into_inner();
    shared.take_assignments(assigned);
    Ok(())
}

/// Waits on the conductor for new assignments (a long poll), so new work starts at once rather than
/// at the next heartbeat. The heartbeat still fetches them too, so a broken watch only slows things.
pub async fn watch_assignments(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let conductor = shared.conductor(None);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let identity = shared.identity.read().expect("identity lock").clone();
        let wait = match identity {
            // Not joined yet: the agent loop is on it.
            None => Duration::from_millis(500),
            Some(identity) => {
                conductor.set_token(Some(identity.credential.clone()));
                let known = *shared.assignments_version.lock().expect("version lock");
                let request = conductor
                    .get_assignments()
                    .id(identity.worker_id)
                    .after_version(known)
                    .wait_secs(LONG_POLL_SECS);
                let answer = tokio::select! {
                    answer = request.send() => answer.map_err(SdkError::from),
                    _ = stop.changed() => return,
                };
                match answer {
                    Ok(assigned) => {
                        shared.take_assignments(assigned.into_inner());
                        backoff.reset();
                        // Changes that follow within this are fetched together (a job queue
                        // places and ends attempts in bursts), not one whole listing each.
                        ASSIGNMENT_BATCHING
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "waiting for assignments failed; retrying");
                        backoff.next_delay()
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long one wait for new assignments is held open.
const LONG_POLL_SECS: u64 = 25;
/// The pause after taking new assignments before waiting for the next.
const ASSIGNMENT_BATCHING: Duration = Duration::from_millis(20);
