//! Secrets an instance names in its spec's `secret_env`, read just before each start: the
//! conductor gives a token scoped to reading exactly those secrets (two minutes), the values are
//! read from secrets_manager through the conductor's gateway, and the token is revoked at once.
//! The values go only into the instance's environment: never into a stored spec, a report, the
//! worker API or a log line.

use std::collections::{BTreeMap, HashMap};

use aerekos_sdk::{Conductor, SdkError, conductor::types::SecretRef};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use uuid::Uuid;

use crate::Shared;

/// The environment variables `secret_env` names, with their values; Err: why they cannot be read
/// (the instance is not started, and says so).
pub(crate) async fn read_for_start(
    shared: &Shared,
    conductor: &Conductor,
    worker_id: Uuid,
    instance_id: Uuid,
    secret_env: &HashMap<String, SecretRef>,
) -> Result<BTreeMap<String, String>, String> {
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
            Ok(answer) => match env_value(&answer.into_inner().value) {
                Ok(value) => {
                    values.insert(var.clone(), value);
                }
                Err(why) => {
                    failure = Some(format!("secret {:?} for {var}: {why}", reference.secret));
                    break;
                }
            },
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
        None => Ok(values),
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
