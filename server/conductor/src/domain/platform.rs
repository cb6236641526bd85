//! The platform backup's conductor part: what `POST /api/platform/export` answers. A tar holding
//! `conductor.db` (an online copy), the token-signing key, the backup key, and `platform.json`:
//! each volume's latest backup with where it is kept and a grant to read it. The CLI
//! (`aerekos backup`) fetches those backups from their stores and seals everything under the
//! admin's passphrase on the admin's machine, so the passphrase never travels.

use std::path::Path;

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::backups::BackupService;
use crate::store::{Db, platform};

/// What `platform.json` says.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct PlatformManifest {
    pub created_at: String,
    pub conductor_version: String,
    pub volumes: Vec<VolumeInExport>,
    /// Volumes with no backup that can be read now, and why.
    pub missing: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct VolumeInExport {
    pub volume: String,
    pub service: String,
    pub backup_id: Uuid,
    pub store_url: String,
    pub grant: String,
}

/// The export tar's bytes.
pub async fn export(
    db: &Db,
    data_dir: &Path,
    backups: &BackupService,
    volumes: &[(String, String)],
) -> ApiResult<Vec<u8>> {
    let staging = data_dir.join(format!(".export-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&staging).map_err(ApiError::internal)?;
    let result = async {
        platform::snapshot(db, &staging.join("conductor.db"))
            .await
            .map_err(ApiError::internal)?;
        let latest = backups.latest().await?;
        let mut manifest = PlatformManifest {
            created_at: chrono::Utc::now().to_rfc3339(),
            conductor_version: env!("CARGO_PKG_VERSION").into(),
            volumes: vec![],
            missing: vec![],
        };
        for (volume, service) in volumes {
            let Some(b) = latest.iter().find(|b| &b.volume == volume) else {
                manifest.missing.push(format!(
                    "{volume}: no backup yet (aerekos backups create {volume})"
                ));
                continue;
            };
            match backups.source_for_restore(b.id, volume).await {
                Ok((source, _)) => manifest.volumes.push(VolumeInExport {
                    volume: volume.clone(),
                    service: service.clone(),
                    backup_id: b.id,
                    store_url: source.store_url,
                    grant: source.grant,
                }),
                Err(e) => manifest
                    .missing
                    .push(format!("{volume}: {}", e.body().message)),
            }
        }
        let json = serde_json::to_vec_pretty(&manifest).map_err(ApiError::internal)?;
        let staging2 = staging.clone();
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut out = tar::Builder::new(Vec::new());
            out.append_path_with_name(staging2.join("conductor.db"), "conductor.db")?;
            for file in [
                crate::domain::auth::SIGNING_KEY_FILE,
                crate::domain::backups::KEY_FILE,
            ] {
                out.append_path_with_name(data_dir.join(file), file)?;
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(json.len() as u64);
            header.set_mode(0o600);
            out.append_data(&mut header, "platform.json", &json[..])?;
            out.into_inner()
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}
