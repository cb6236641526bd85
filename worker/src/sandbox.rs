//! Commands the conductor asks this worker to run in its sandboxes' containers (`sandbox_execs` in
//! the assignments): each attempt once, at the same time as the others, killed at its timeout,
//! and reported until the conductor has the report. A marker (`<data>/exec-runs/<id>.<attempt>`,
//! synced before the start) means an attempt a restart interrupted is reported `lost`, never run
//! twice; whether it runs again, as a new attempt, is the conductor's call (the exec's retries).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use aerekos_sdk::{
    SdkError,
    conductor::types::{ExecAssignment, ExecReport},
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    Shared,
    runs::{self, Kind},
};

/// The most of each stream a report carries (the conductor keeps as much).
const OUTPUT_BYTES: usize = 64 * 1024;

pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Attempts this process has taken on (running, or reported and not yet out of the
    // assignments), by their marker keys.
    let taken: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        // Nothing is known (or forgotten) before the conductor's first answer.
        let assigned = shared.sandbox_execs.lock().expect("execs lock").clone();
        let heard = assigned.is_some();
        let assigned = assigned.unwrap_or_default();
        let mut keys: HashSet<String> = assigned
            .iter()
            .map(|e| runs::key(e.id, Some(e.attempt)))
            .collect();
        // A marker of a worker from before attempts were numbered (`<id>`) stands for attempt 1.
        keys.extend(
            assigned
                .iter()
                .filter(|e| e.attempt == 1)
                .map(|e| runs::key(e.id, None)),
        );
        taken
            .lock()
            .expect("taken lock")
            .retain(|key| keys.contains(key));
        if heard {
            runs::forget_except(&shared.config.data_dir, Kind::Exec, &keys);
        }
        for exec in assigned {
            if !taken
                .lock()
                .expect("taken lock")
                .insert(runs::key(exec.id, Some(exec.attempt)))
            {
                continue;
            }
            let shared = shared.clone();
            tokio::spawn(async move {
                let report = run_one(&shared, &exec).await;
                deliver(&shared, exec.id, report).await;
            });
        }
        tokio::select! {
            _ = shared.sandbox_execs_changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn run_one(shared: &Shared, exec: &ExecAssignment) -> ExecReport {
    let data = &shared.config.data_dir;
    let key = runs::key(exec.id, Some(exec.attempt));
    let report = |detail: String, lost: bool| ExecReport {
        attempt: exec.attempt,
        exit_code: None,
        timed_out: false,
        detail: Some(detail),
        lost,
        stdout: String::new(),
        stderr: String::new(),
    };
    let legacy = (exec.attempt == 1)
        .then(|| runs::started_at(data, Kind::Exec, &runs::key(exec.id, None)))
        .flatten();
    if runs::started_at(data, Kind::Exec, &key)
        .or(legacy)
        .is_some()
    {
        return report(
            "its worker restarted while it ran; it was not run again".into(),
            true,
        );
    }
    if let Err(e) = runs::mark_started(data, Kind::Exec, &key) {
        return report(format!("the worker could not record its start: {e}"), false);
    }
    let env: Vec<(String, String)> = exec.env.clone().into_iter().collect();
    match shared
        .driver
        .exec(
            exec.instance_id,
            &exec.command,
            &env,
            Duration::from_secs(u64::from(exec.timeout_secs)),
            OUTPUT_BYTES,
        )
        .await
    {
        Ok(out) => ExecReport {
            attempt: exec.attempt,
            exit_code: out.exit_code,
            timed_out: out.timed_out,
            detail: None,
            lost: false,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => report(e.to_string(), false),
    }
}

/// Reports until the conductor has it (or says it no longer waits for it).
async fn deliver(shared: &Shared, exec_id: Uuid, report: ExecReport) {
    let conductor = shared.conductor(None);
    let mut backoff =
        crate::agent::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let identity = shared.identity.read().expect("identity lock").clone();
        if let Some(identity) = identity {
            conductor.set_token(Some(identity.credential.clone()));
            match conductor
                .report_sandbox_exec()
                .id(identity.worker_id)
                .exec_id(exec_id)
                .body(report.clone())
                .send()
                .await
                .map_err(SdkError::from)
            {
                Ok(_) => return,
                Err(SdkError::Api { status: 404, .. }) => return,
                Err(e) => {
                    tracing::debug!(exec_id = %exec_id, error = %e, "exec report not delivered yet")
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
