//! Secrets an instance names in its spec's `secret_env`, read just before each start: the
//! conductor gives a token scoped to reading exactly those secrets (two minutes), the values are
//! read from secrets_manager through the conductor's gateway, and the token is revoked at once.
//! The values go only into the instance's environment: never into a stored spec, a report, the
//! worker API or a log line.
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

    /// Versions, not values: a plain file, replaced whole.
    fn save(&self, by_instance: &HashMap<Uuid, BTreeMap<String, u64>>) {
        let saved = serde_json::to_vec(by_instance)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = self.path.with_extension("json.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
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
/// `in_container`); Err: why they cannot be read (the instance is not started, and says so).
pub(crate) async fn read_for_start(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    secret_env: &HashMap<String, SecretRef>,
    in_container: bool,
) -> Result<ReadForStart, String> {
    // Each start writes the files anew, so a variable no longer taken as a file leaves none.
    let files = shared.config.secret_files_dir.join(instance_id.to_string());
    remove_files(&files);
    let read = read_all(
        shared,
        conductor,
        worker_id,
        instance_id,
        secret_env,
        &files,
        in_container,
    );
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(read)) => Ok(read),
        Ok(Err(why)) => {
            remove_files(&files);
            Err(why)
        }
        Err(_) => {
            remove_files(&files);
            Err(format!(
                "its secrets could not be read within {} s (the conductor or secrets_manager did not answer); trying again",
                READ_TIMEOUT.as_secs()
            ))
        }
    }
}

/// The longest a start waits for its secrets. The reconcile loop waits with it, so a stalled
/// secrets_manager (paused, cut off) holds up this worker's other instances for no longer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn read_all(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    secret_env: &HashMap<String, SecretRef>,
    files: &Path,
    in_container: bool,
) -> Result<ReadForStart, String> {
    let token = conductor
        .issue_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .send()
        .await
        .map_err(|e| format!("no token to read its secrets with: {}", SdkError::from(e)))?
        .into_inner();
    let secrets = shared.secrets_manager(token.token);
    let mut values = BTreeMap::new();
    let mut versions = BTreeMap::new();
    let mut failure = None;
    for (var, reference) in secret_env {
        let mut read = secrets.get_secret_value().name(&reference.secret);
        if let Some(version) = reference.version {
            read = read.version(version);
        }
        if let Some(label) = &reference.label {
            read = read.label(label);
        }
        match read.send().await {
            Ok(answer) => {
                match deliver(&answer.value, var, reference.as_file, files, in_container) {
                    Ok(value) => {
                        values.insert(var.clone(), value);
                        versions.insert(var.clone(), answer.version);
                    }
                    Err(why) => {
                        failure = Some(format!("secret {:?} for {var}: {why}", reference.secret));
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(format!(
                    "secret {:?} for {var} cannot be read: {}",
                    reference.secret,
                    SdkError::from(e)
                ));
                break;
            }
        }
    }
    // Used or not, the token goes now; it would expire in two minutes anyway.
    if let Err(e) = conductor
        .revoke_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .token_id(&token.token_id)
        .send()
        .await
    {
        tracing::info!(%instance_id, error = %SdkError::from(e), "revoking the secrets token failed; it expires in two minutes");
    }
    match failure {
        Some(why) => Err(why),
        None => Ok(ReadForStart { values, versions }),
    }
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
    if !as_file {
        return env_value(value);
    }
    let bytes = match &value.bytes {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|_| "secrets_manager answered bytes that are not base64".to_owned())?,
        None => serde_json::to_vec(&value.json).map_err(|e| e.to_string())?,
    };
    let path = files.join(var);
    files
        .parent()
        .map_or(Ok(()), aerekos_common::secrets::create_private_dir)
        .and_then(|()| aerekos_common::secrets::create_private_dir(files))
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
            let check = changed_variables(
                &shared,
                &conductor,
                identity.worker_id,
                inst.id,
                &watched,
                &started,
            );
            let checked = tokio::time::timeout(READ_TIMEOUT, check)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", READ_TIMEOUT.as_secs())));
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
    let token = conductor
        .issue_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .send()
        .await
        .map_err(|e| format!("no token to check its secrets with: {}", SdkError::from(e)))?
        .into_inner();
    let secrets = shared.secrets_manager(token.token);
    let mut changed = vec![];
    let mut failure = None;
    for (var, reference) in watched {
        // Metadata only: which version the label names now.
        match secrets.get_secret().name(&reference.secret).send().await {
            Ok(secret) => {
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
            Err(e) => {
                failure = Some(format!(
                    "secret {:?}: {}",
                    reference.secret,
                    SdkError::from(e)
                ));
                break;
            }
        }
    }
    if let Err(e) = conductor
        .revoke_instance_secrets_token()
        .id(worker_id)
        .instance_id(instance_id)
        .token_id(&token.token_id)
        .send()
        .await
    {
        tracing::debug!(%instance_id, error = %SdkError::from(e), "revoking the secrets token failed; it expires in two minutes");
    }
    match failure {
        Some(why) => Err(why),
        None => Ok(changed),
    }
}

/// A value as an environment variable: a bytes value's UTF-8 text, a JSON value's JSON text.
fn env_value(value: &aerekos_sdk::secrets_manager::types::SecretValue) -> Result<String, String> {
    match &value.bytes {
        Some(b64) => {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| "secrets_manager answered bytes that are not base64".to_owned())?;
            let text = String::from_utf8(bytes).map_err(|_| {
                "its value is not UTF-8 text, so it cannot be an environment variable".to_owned()
            })?;
            if text.contains('\0') {
                return Err(
                    "its value holds a NUL byte, which an environment variable cannot".into(),
                );
            }
            Ok(text)
        }
        None => serde_json::to_string(&value.json).map_err(|e| e.to_string()),
    }
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
