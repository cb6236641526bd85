//! Buckets' lifecycle rules, applied by a background task: objects past their expiration are
//! deleted (only the version the rule judged: an upload since then is left alone; under
//! versioning the deletion leaves a delete marker), earlier versions past their noncurrent days
//! are deleted for good, and multipart uploads left incomplete past their limit are aborted.

use std::{sync::Arc, time::Duration};

use aerekos_common::ApiResult;
use chrono::{DateTime, Utc};

use super::{
    bucket_settings::LifecycleRule,
    objects::{MAX_PAGE, Storage},
};

/// What one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub objects: usize,
    /// Earlier (noncurrent) versions.
    pub versions: usize,
    pub uploads: usize,
}

/// Applies every bucket's rules each `interval`; a rule's day lasts `day`.
pub fn spawn(
    storage: Arc<Storage>,
    interval: Duration,
    day: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match apply(&storage, day, Utc::now()).await {
                Ok(expired) if expired != Expired::default() => {
                    tracing::info!(
                        objects = expired.objects,
                        versions = expired.versions,
                        uploads = expired.uploads,
                        "lifecycle rules expired objects, earlier versions and uploads"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.body().message, "applying lifecycle rules failed; the next pass retries")
                }
            }
        }
    })
}

fn past(since: DateTime<Utc>, days: u32, day: Duration, now: DateTime<Utc>) -> bool {
    let age = now
        .signed_duration_since(since)
        .to_std()
        .unwrap_or_default();
    age >= day * days
}

fn object_due(
    rule: &LifecycleRule,
    modified: DateTime<Utc>,
    day: Duration,
    now: DateTime<Utc>,
) -> bool {
    rule.expiration_days
        .is_some_and(|days| past(modified, days, day, now))
        || rule
            .expiration_date
            .is_some_and(|date| now.timestamp() >= date)
}

/// One pass over every bucket's enabled rules.
pub async fn apply(storage: &Storage, day: Duration, now: DateTime<Utc>) -> ApiResult<Expired> {
    let mut expired = Expired::default();
    for bucket in storage.known_buckets() {
        let name = &bucket.row.name;
        for rule in bucket
            .settings
            .lifecycle
            .iter()
            .flatten()
            .filter(|r| r.enabled)
        {
            if rule.expiration_days.is_some() || rule.expiration_date.is_some() {
                let mut token = None;
                loop {
                    let page = storage
                        .list_objects(name, &rule.prefix, None, None, token.as_deref(), MAX_PAGE)
                        .await?;
                    for object in &page.objects {
                        let tagged = rule.tags.iter().all(|(k, v)| object.tags.get(k) == Some(v));
                        if tagged
                            && object_due(rule, object.last_modified, day, now)
                            && storage.expire_object(object).await?
                        {
                            expired.objects += 1;
                        }
                    }
                    token = page.next_continuation_token;
                    if token.is_none() {
                        break;
                    }
                }
            }
            if let Some(days) = rule.noncurrent_days {
                let before = now - chrono::Duration::from_std(day * days).unwrap_or_default();
                expired.versions += storage
                    .expire_noncurrent(name, &rule.prefix, &rule.tags, before)
                    .await?;
            }
            if let Some(days) = rule.abort_incomplete_days {
                for upload in storage.list_uploads(name).await? {
                    if upload.key.starts_with(&rule.prefix)
                        && past(upload.created_at, days, day, now)
                    {
                        storage
                            .abort_upload(name, &upload.key, &upload.upload_id)
                            .await?;
                        expired.uploads += 1;
                    }
                }
            }
        }
    }
    Ok(expired)
}
