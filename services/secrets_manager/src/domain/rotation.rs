//! Rotation: on a schedule (or when asked), a secret's next value comes from an endpoint of the
//! platform — `POST /api/<service><path>` through the conductor's gateway, with this service's own
//! token — and becomes `AWSCURRENT`, the value before it `AWSPREVIOUS`. Until a call succeeds
//! nothing changes: the current version stays current and the failure is kept on the schedule.
//!
//! The endpoint is sent `{"secret": "<name>", "current_version": N}` and answers
//! `{"value": {"bytes": "<base64>"}}` or `{"value": {"json": {…}}}`. It is an app's or a
//! service's own endpoint with no spec of this platform's, so it is called as raw HTTP.

use std::{sync::Arc, time::Duration};

use aerekos_common::{
    ApiError, ApiResult,
    auth::Caller,
    db::{from_ms as ts, now_ms},
};
use serde::{Deserialize, Serialize};

use super::secrets::SecretService;
use crate::model::{RotationSchedule, Secret, SecretValue, SetRotationRequest};

/// The shortest and the longest rotation interval (a year; longer would overflow nothing here,
/// but is no rotation schedule).
pub const MIN_INTERVAL_SECS: u64 = 60;
pub const MAX_INTERVAL_SECS: u64 = 366 * 24 * 3600;
/// After a failed rotation the next attempt comes this soon (or at the interval, if shorter).
const RETRY_AFTER: Duration = Duration::from_secs(300);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The spec's pattern for the service a rotation calls (a catalog name).
pub const SERVICE_PATTERN: &str = "^[a-z0-9_]{1,64}$";
/// The spec's pattern for a rotation path: `/` and then URL path characters (RFC 3986's pchar and
/// `/`), never `..` (a dot is followed by something else, or ends the path). [`path_ok`] says the same.
pub const PATH_PATTERN: &str =
    r"^/(?:[A-Za-z0-9_~!$&'()*+,;=:@%/-]|\.[A-Za-z0-9_~!$&'()*+,;=:@%/-])*\.?$";

fn path_ok(path: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_~!$&'()*+,;=:@%/-.".contains(c);
    path.starts_with('/') && path.chars().all(allowed) && !path.contains("..")
}

/// A rotation schedule as stored on its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub service: String,
    pub path: String,
    pub interval_secs: u64,
    /// Unix ms.
    pub next_at: i64,
    pub last_rotated_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Schedule {
    pub fn model(&self) -> RotationSchedule {
        RotationSchedule {
            service: self.service.clone(),
            path: self.path.clone(),
            interval_secs: self.interval_secs,
            next_at: Some(ts(self.next_at)),
            last_rotated_at: self.last_rotated_at.map(ts),
            last_error: self.last_error.clone(),
        }
    }
}

#[derive(Serialize)]
struct RotationCall<'a> {
    secret: &'a str,
    current_version: u64,
}

#[derive(Deserialize)]
struct RotationAnswer {
    value: RawValue,
}

#[derive(Deserialize)]
struct RawValue {
    bytes: Option<String>,
    json: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

pub struct Rotator {
    secrets: Arc<SecretService>,
    http: reqwest::Client,
    /// The conductor, whose gateway routes `/api/<service>/…`.
    gateway: String,
    token: Option<String>,
}

fn check(req: &SetRotationRequest) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_rotation", m));
    let service_ok = (1..=64).contains(&req.service.len())
        && req
            .service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !service_ok {
        return bad(format!(
            "service {:?} is not a catalog service name (lowercase letters, digits, '_')",
            req.service
        ));
    }
    if !path_ok(&req.path) {
        return bad(format!(
            "path {:?} must start with '/' and hold only URL path characters, never '..'",
            req.path
        ));
    }
    if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&req.interval_secs) {
        return bad(format!(
            "interval_secs must be between {MIN_INTERVAL_SECS} and {MAX_INTERVAL_SECS} (a year)"
        ));
    }
    Ok(())
}

impl Rotator {
    pub fn new(secrets: Arc<SecretService>, gateway: &str, token: Option<String>) -> Self {
        let http = aerekos_sdk::Trust::from_env()
            .apply(reqwest::Client::builder().timeout(CALL_TIMEOUT))
            .build()
            .expect("an HTTP client with the platform's trust builds");
        Self {
            secrets,
            http,
            gateway: gateway.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Sets a secret's rotation schedule (admins); the first rotation is due one interval from now.
    pub async fn set(
        &self,
        caller: &Caller,
        name: &str,
        req: SetRotationRequest,
    ) -> ApiResult<Secret> {
        self.secrets
            .audited_change(caller, "set_rotation", name, async {
                check(&req)?;
                let schedule = Schedule {
                    next_at: now_ms() + (req.interval_secs as i64) * 1000,
                    service: req.service,
                    path: req.path,
                    interval_secs: req.interval_secs,
                    last_rotated_at: None,
                    last_error: None,
                };
                self.secrets.set_rotation_row(name, Some(&schedule)).await?;
                self.secrets.describe_name(name).await
            })
            .await
    }

    pub async fn remove(&self, caller: &Caller, name: &str) -> ApiResult<Secret> {
        self.secrets
            .audited_change(caller, "remove_rotation", name, async {
                self.secrets.set_rotation_row(name, None).await?;
                self.secrets.describe_name(name).await
            })
            .await
    }

    /// Rotates now (admins): 503 `rotation_failed`, naming the endpoint's answer, when it fails.
    pub async fn rotate_now(&self, caller: &Caller, name: &str) -> ApiResult<Secret> {
        self.secrets
            .audited_change(caller, "rotate_now", name, async {
                let schedule = self.secrets.rotation_of(name).await?.ok_or_else(|| {
                    ApiError::conflict(
                        "no_rotation",
                        format!("secret {name:?} has no rotation schedule; set one first"),
                    )
                })?;
                self.rotate(name, schedule)
                    .await
                    .map_err(|why| ApiError::unavailable("rotation_failed", why))?;
                self.secrets.describe_name(name).await
            })
            .await
    }

    /// Rotates every secret whose rotation is due (the background task's work).
    pub async fn run_due(&self) {
        let due = match self.secrets.rotating().await {
            Ok(all) => all
                .into_iter()
                .filter(|(_, s)| s.next_at <= now_ms())
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e.body().message, "listing rotation schedules failed");
                return;
            }
        };
        for (name, schedule) in due {
            if let Err(why) = self.rotate(&name, schedule).await {
                tracing::warn!(secret = %name, error = %why, "rotation failed; the current value stays");
            }
        }
    }

    /// Asks the endpoint for the next value and writes it; the schedule records what came of it.
    async fn rotate(&self, name: &str, mut schedule: Schedule) -> Result<u64, String> {
        let rotator = Caller::Service {
            name: "secrets_manager".into(),
        };
        let attempt = self.call_endpoint(name, &schedule).await;
        let written = match attempt {
            Ok(value) => self
                .secrets
                .write_version(&rotator, name, &value, None, &[])
                .await
                .map_err(|e| e.body().message.clone()),
            Err(why) => Err(why),
        };
        let now = now_ms();
        match &written {
            Ok(_) => {
                schedule.last_rotated_at = Some(now);
                schedule.last_error = None;
                schedule.next_at = now + (schedule.interval_secs as i64) * 1000;
            }
            Err(why) => {
                schedule.last_error = Some(why.clone());
                schedule.next_at = now
                    + RETRY_AFTER
                        .min(Duration::from_secs(schedule.interval_secs))
                        .as_millis() as i64;
            }
        }
        if let Err(e) = self.secrets.set_rotation_row(name, Some(&schedule)).await {
            tracing::error!(secret = %name, error = %e.body().message, "storing the rotation's outcome failed");
        }
        let result = written
            .as_ref()
            .map(|_| ())
            .map_err(|why| ApiError::unavailable("rotation_failed", why.clone()));
        let _ = self
            .secrets
            .record(
                &rotator,
                "rotate",
                name,
                written.as_ref().ok().copied(),
                result,
            )
            .await;
        written
    }

    async fn call_endpoint(&self, name: &str, schedule: &Schedule) -> Result<SecretValue, String> {
        let current_version = self
            .secrets
            .current_version(name)
            .await
            .map_err(|e| e.body().message.clone())?;
        let url = format!("{}/api/{}{}", self.gateway, schedule.service, schedule.path);
        let mut request = self.http.post(&url).json(&RotationCall {
            secret: name,
            current_version,
        });
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("calling {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "{url} answered {status}: {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        let answer: RotationAnswer = response.json().await.map_err(|e| {
            format!("{url} did not answer {{\"value\": {{\"bytes\"|\"json\": …}}}}: {e}")
        })?;
        Ok(SecretValue {
            bytes: answer.value.bytes,
            json: answer.value.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_pattern_says_what_path_ok_checks() {
        let pattern = regex::Regex::new(PATH_PATTERN).unwrap();
        for path in [
            "/rotate", "/a/b.c", "/.", "/x.", "/", "/a..b", "/../x", "rotate", "/a b", "/é",
            "/a\u{85}", "/%2e%2e", "/a.b/c.d",
        ] {
            assert_eq!(pattern.is_match(path), path_ok(path), "{path:?}");
        }
    }
}
