//! Secrets an instance names in its spec's `secret_env`, read just before each start: the
//! conductor gives a token scoped to reading exactly those secrets (two minutes), the values are
//! read from secrets_manager through the conductor's gateway, and the token is revoked at once.
//! The values go only into the instance's environment, or for a reference `as_file` into a file
//! on the worker's memory filesystem: never into a stored spec, a report, the worker API, a log
//! line or a data directory.
//!
//! The versions read are kept ([`StartedSecrets`], on disk, so they outlive a worker restart that
//! adopts the instance), and [`watch`] compares them with what the references name now, for
//! those that say `restart_on_change`: a difference is reported to the conductor, which restarts
//! the service, rolling. The conductor itself never reads a secret.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aerekos_sdk::{Conductor, SdkError, conductor::types::SecretRef};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Shared;

const STARTED_FILE: &str = "started-secrets.json";

/// Per instance, the version of each `secret_env` variable its running process started with.
pub(crate) struct StartedSecrets {
    path: PathBuf,
    by_instance: Mutex<HashMap<Uuid, BTreeMap<String, u64>>>,
}

impl StartedSecrets {
    pub(crate) fn load(data_dir: &Path) -> Self {
        let path = data_dir.join(STARTED_FILE);
        let by_instance = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            by_instance: Mutex::new(by_instance),
        }
    }

    /// Records a start's versions (none: the instance reads no secrets).
    pub(crate) fn record(&self, instance_id: Uuid, versions: BTreeMap<String, u64>) {
        let mut by_instance = self.by_instance.lock().expect("started secrets lock");
        let changed = if versions.is_empty() {
            by_instance.remove(&instance_id).is_some()
        } else {
            by_instance.insert(instance_id, versions.clone()) != Some(versions)
        };
        if changed {
            self.save(&by_instance);
        }
    }

    /// Forgets instances that are no longer assigned here.
    pub(crate) fn keep_only(&self, live: &HashSet<Uuid>) {
        let mut by_instance = self.by_instance.lock().expect("started secrets lock");
        let before = by_instance.len();
        by_instance.retain(|id, _| live.contains(id));
        if by_instance.len() != before {
            self.save(&by_instance);
        }
    }

    /// Versions, not values; replaced whole and fsynced, so a power cut leaves the old or the new.
    fn save(&self, by_instance: &HashMap<Uuid, BTreeMap<String, u64>>) {
        let saved = serde_json::to_vec(by_instance)
            .map_err(std::io::Error::other)
            .and_then(|bytes| aerekos_common::secrets::write_secret_file(&self.path, &bytes));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not save the versions instances started with");
        }
    }

    fn of(&self, instance_id: Uuid) -> Option<BTreeMap<String, u64>> {
        self.by_instance
            .lock()
            .expect("started secrets lock")
            .get(&instance_id)
            .cloned()
    }
}

/// What a start read: the variables with their values, and the version each came from.
pub(crate) struct ReadForStart {
    pub values: BTreeMap<String, String>,
    pub versions: BTreeMap<String, u64>,
}

/// The environment variables `secret_env` names, with their values (for a reference `as_file`,
/// the path of the file its value was written to: `/run/secrets/<VAR>` when the instance runs
/// `in_container`, or in a microVM guest, whose driver copies the files there); Err: why they cannot be read (the instance is not started, and says so).
pub(crate) async fn read_for_start(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    secret_env: &HashMap<String, SecretRef>,
    in_container: bool,
) -> Result<ReadForStart, String> {
    // Each start writes the files anew, so a variable no longer taken as a file leaves none.
    let files = files_dir(&shared.config.secret_files_dir, instance_id);
    remove_files(&files);
    let files_dir = files.as_path();
    let read = with_secrets_token(
        shared,
        conductor,
        worker_id,
        instance_id,
        |secrets| async move {
            let mut read = ReadForStart {
                values: BTreeMap::new(),
                versions: BTreeMap::new(),
            };
            for (var, reference) in secret_env {
                let mut get = secrets.get_secret_value().name(&reference.secret);
                if let Some(version) = reference.version {
                    get = get.version(version);
                }
                if let Some(label) = &reference.label {
                    get = get.label(label);
                }
                let answer = get.send().await.map_err(|e| {
                    format!(
                        "secret {:?} for {var} cannot be read: {}",
                        reference.secret,
                        SdkError::from(e)
                    )
                })?;
                let value = deliver(
                    &answer.value,
                    var,
                    reference.as_file,
                    files_dir,
                    in_container,
                )
                .map_err(|why| format!("secret {:?} for {var}: {why}", reference.secret))?;
                read.values.insert(var.clone(), value);
                read.versions.insert(var.clone(), answer.version);
            }
            Ok(read)
        },
    )
    .await;
    if read.is_err() {
        remove_files(&files);
    }
    read
}

/// The longest the reads of one start or one check may take. The reconcile loop waits for a
/// start's, so a stalled secrets_manager (paused, cut off) holds up this worker's other instances
/// for no longer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest the token's issue or revocation may take (the conductor is away: it expires anyway).
const TOKEN_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `reads` with a secrets_manager client carrying a fresh token scoped to the instance's
/// secrets, within [`READ_TIMEOUT`], and revokes the token afterwards whatever came of them (it
/// would expire in two minutes anyway).
async fn with_secrets_token<T, F, Fut>(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    reads: F,
) -> Result<T, String>
where
    F: FnOnce(aerekos_sdk::SecretsManager) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let issue = conductor
        .issue_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .send();
    let token = match tokio::time::timeout(TOKEN_CALL_TIMEOUT, issue).await {
        Ok(Ok(token)) => token.into_inner(),
        Ok(Err(e)) => {
            return Err(format!(
                "no token to read its secrets with: {}",
                SdkError::from(e)
            ));
        }
        Err(_) => {
            return Err(format!(
                "no token to read its secrets with: the conductor did not answer within {} s",
                TOKEN_CALL_TIMEOUT.as_secs()
            ));
        }
    };
    let outcome = tokio::time::timeout(READ_TIMEOUT, reads(shared.secrets_manager(token.token))).await.unwrap_or_else(|_| {
        Err(format!(
            "its secrets could not be read within {} s (the conductor or secrets_manager did not answer); trying again",
            READ_TIMEOUT.as_secs()
        ))
    });
    let revoke = conductor
        .revoke_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .token_id(&token.token_id)
        .send();
    match tokio::time::timeout(TOKEN_CALL_TIMEOUT, revoke).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::info!(%instance_id, error = %SdkError::from(e), "revoking the secrets token failed; it expires in two minutes")
        }
        Err(_) => {
            tracing::info!(%instance_id, "revoking the secrets token took too long; it expires in two minutes")
        }
    }
    outcome
}

/// What the variable `var` holds: the value itself, or, `as_file`, the path of a file (0600, in a
/// 0700 directory) the value was written to.
fn deliver(
    value: &aerekos_sdk::secrets_manager::types::SecretValue,
    var: &str,
    as_file: bool,
    files: &Path,
    in_container: bool,
) -> Result<String, String> {
    let bytes = value_bytes(value)?;
    if !as_file {
        return env_text(bytes, value.bytes.is_some());
    }
    // The conductor checked the name; a file name must not become a path of its own either way.
    if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("{var:?} cannot name a file"));
    }
    let path = files.join(var);
    files
        .parent()
        .map_or(Ok(()), aerekos_common::secrets::ensure_owned_private_dir)
        .and_then(|()| aerekos_common::secrets::ensure_owned_private_dir(files))
        .and_then(|()| aerekos_common::secrets::write_secret_file(&path, &bytes))
        .map_err(|e| format!("its file could not be written in {}: {e}", files.display()))?;
    Ok(if in_container {
        format!("{}/{var}", crate::driver::CONTAINER_SECRETS_DIR)
    } else {
        path.display().to_string()
    })
}

fn remove_files(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove an instance's secret files");
    }
}

/// The directory of instance `id`'s secret files under `root` (`SECRET_FILES_DIR`); it exists
/// only while the instance has some.
pub(crate) fn files_dir(root: &Path, id: Uuid) -> PathBuf {
    root.join(id.to_string())
}

/// Removes the secret files of instances that are no longer assigned here.
pub(crate) fn remove_files_except(root: &Path, live: &HashSet<Uuid>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Uuid>().ok());
        if id.is_some_and(|id| !live.contains(&id)) {
            remove_files(&entry.path());
        }
    }
}

/// Every [`crate::config::WorkerConfig::secret_watch_interval`], checks the instances whose
/// `secret_env` says `restart_on_change` and reports those whose secrets changed (once each).
pub(crate) async fn watch(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut reported: HashSet<Uuid> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.secret_watch_interval) => {}
            _ = stop.changed() => return,
        }
        let (Some(desired), Some(identity)) = (
            shared.desired(),
            shared.identity.read().expect("identity lock").clone(),
        ) else {
            continue;
        };
        reported.retain(|id| desired.iter().any(|i| i.id == *id));
        let conductor = shared.conductor(Some(identity.credential.clone()));
        for inst in &desired {
            if reported.contains(&inst.id) {
                continue;
            }
            let watched: Vec<(&String, &SecretRef)> = inst
                .spec
                .secret_env
                .iter()
                .filter(|(_, r)| r.restart_on_change)
                .collect();
            let Some(started) = shared
                .started_secrets
                .of(inst.id)
                .filter(|_| !watched.is_empty())
            else {
                continue;
            };
            let checked = changed_variables(
                &shared,
                &conductor,
                identity.worker_id,
                inst.id,
                &watched,
                &started,
            )
            .await;
            match checked {
                Ok(changed) if changed.is_empty() => {}
                Ok(variables) => {
                    let report = aerekos_sdk::conductor::types::SecretsChangedReport {
                        variables: variables.clone(),
                    };
                    match conductor
                        .report_instance_secrets_changed()
                        .id(identity.worker_id)
                        .instance_id(inst.id)
                        .body(report)
                        .send()
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(instance_id = %inst.id, ?variables, "secrets changed since the instance started; the conductor restarts it");
                            reported.insert(inst.id);
                        }
                        Err(e) => {
                            tracing::info!(instance_id = %inst.id, error = %SdkError::from(e), "reporting changed secrets failed; trying again")
                        }
                    }
                }
                Err(why) => {
                    tracing::info!(instance_id = %inst.id, %why, "could not check the instance's secrets; trying again")
                }
            }
        }
    }
}

/// The watched variables whose reference names another version now than the instance started with.
async fn changed_variables(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    watched: &[(&String, &SecretRef)],
    started: &BTreeMap<String, u64>,
) -> Result<Vec<String>, String> {
    with_secrets_token(
        shared,
        conductor,
        worker_id,
        instance_id,
        |secrets| async move {
            let mut changed = vec![];
            for (var, reference) in watched {
                // Metadata only: which version the label names now.
                let secret = secrets
                    .get_secret()
                    .name(&reference.secret)
                    .send()
                    .await
                    .map_err(|e| format!("secret {:?}: {}", reference.secret, SdkError::from(e)))?;
                let label = reference.label.as_deref().unwrap_or("AWSCURRENT");
                let now = secret
                    .versions
                    .iter()
                    .find(|v| v.labels.iter().any(|l| l == label))
                    .map(|v| v.version);
                if now.is_some() && now != started.get(*var).copied() {
                    changed.push((*var).clone());
                }
            }
            Ok(changed)
        },
    )
    .await
}

/// A value's bytes: a bytes value's own, a JSON value's JSON text.
fn value_bytes(
    value: &aerekos_sdk::secrets_manager::types::SecretValue,
) -> Result<Vec<u8>, String> {
    match &value.bytes {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|_| "secrets_manager answered bytes that are not base64".to_owned()),
        None => serde_json::to_vec(&value.json).map_err(|e| e.to_string()),
    }
}

/// A value as an environment variable: UTF-8 text without NUL.
fn env_text(bytes: Vec<u8>, is_bytes: bool) -> Result<String, String> {
    let text = String::from_utf8(bytes).map_err(|_| {
        "its value is not UTF-8 text, so it cannot be an environment variable (take it as_file)"
            .to_owned()
    })?;
    if is_bytes && text.contains('\0') {
        return Err(
            "its value holds a NUL byte, which an environment variable cannot (take it as_file)"
                .into(),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_versions_outlive_a_restart_and_go_with_their_instances() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
        let started = StartedSecrets::load(dir.path());
        started.record(kept, BTreeMap::from([("DB_PASSWORD".to_owned(), 3)]));
        started.record(gone, BTreeMap::from([("API_KEY".to_owned(), 1)]));
        started.keep_only(&HashSet::from([kept]));

        let again = StartedSecrets::load(dir.path());
        assert_eq!(
            again.of(kept),
            Some(BTreeMap::from([("DB_PASSWORD".to_owned(), 3)]))
        );
        assert_eq!(again.of(gone), None);
        again.record(kept, BTreeMap::new());
        assert_eq!(
            StartedSecrets::load(dir.path()).of(kept),
            None,
            "a start without secrets forgets it"
        );
    }
}
