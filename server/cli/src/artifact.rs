//! The whole platform in one file: `aerekos backup --out FILE` and `aerekos restore --from FILE`.
//!
//! The file is sealed under a key derived from the admin's passphrase (argon2id, its salt and
//! costs in the header) with the backups' segmented AES-256-GCM format. Inside, a tar:
//! `platform/` (the conductor's database copied online, its token-signing key, the backup key,
//! `platform.json`) and `backups/<volume>/…`, each volume's latest backup exactly as a worker's
//! backup store keeps it (still sealed under the backup key). The passphrase stays on the admin's
//! machine: the conductor hands over its part (`POST /api/platform/export`) and the CLI fetches the
//! volume backups from their stores and seals everything here.
//!
//! A restore writes into a fresh data directory only, and only once everything has opened and
//! been laid out beside it: a wrong passphrase or a damaged file leaves nothing behind.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Read as _, Write as _},
    path::{Path, PathBuf},
};

use aerekos_conductor::PlatformManifest;
use aerekos_sdk::SdkError;
use aerekos_worker::backup::{self, BackupKey, Manifest};
use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use uuid::Uuid;

use crate::client::Global;

const MAGIC: &[u8; 8] = b"AEKART01";
const LABEL: &str = "aerekos-platform-backup";
/// argon2id costs: 64 MiB, 3 passes, 1 lane.
const M_COST: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
const MIN_PASSPHRASE: usize = 12;

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    global: Global,
    /// The file to write (it is written whole or not at all).
    #[arg(long)]
    out: PathBuf,
    /// Read the passphrase from the first line of standard input instead of asking.
    #[arg(long)]
    passphrase_stdin: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The platform backup to restore.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to restore into, as `aerekos up` uses it (default: DATA_DIR, else
    /// ./data). It must hold no conductor database yet.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Restore the conductor's state only (its workers still exist and keep their volumes).
    /// Without it the machines of the backup are forgotten and every volume is restored here, into
    /// the local worker's directory that `aerekos up` uses.
    #[arg(long)]
    conductor_only: bool,
    /// Read the passphrase from the first line of standard input instead of asking.
    #[arg(long)]
    passphrase_stdin: bool,
}

fn read_passphrase(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    let passphrase = if from_stdin {
        let mut line = String::new();
        io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("passphrase: ")?;
        if confirm && rpassword::prompt_password("passphrase again: ")? != first {
            bail!("the two passphrases differ");
        }
        first
    };
    if confirm && passphrase.chars().count() < MIN_PASSPHRASE {
        bail!("the passphrase must be at least {MIN_PASSPHRASE} characters");
    }
    Ok(passphrase)
}

fn derive_key(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> anyhow::Result<BackupKey> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("deriving the key: {e}"))?;
    Ok(BackupKey::from_bytes(key))
}

/// Removes a path when dropped (temporary plaintext and staging directories).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = if self.0.is_dir() {
            fs::remove_dir_all(&self.0)
        } else {
            fs::remove_file(&self.0)
        };
    }
}

fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

async fn collect(
    mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    mut out: impl io::Write,
) -> anyhow::Result<u64> {
    let mut n = 0;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        out.write_all(&piece)?;
        n += piece.len() as u64;
    }
    out.flush()?;
    Ok(n)
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let c = crate::client::connect(&args.global)?;
    let passphrase = read_passphrase(args.passphrase_stdin, true)?;
    // The conductor's part.
    let export = c
        .export_platform()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(SdkError::from(e)))?;
    let mut export_tar = vec![];
    collect(export.into_inner().into_inner(), &mut export_tar).await?;
    let mut platform_files = vec![];
    for entry in tar::Archive::new(&export_tar[..]).entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = vec![];
        entry.read_to_end(&mut data)?;
        platform_files.push((name, data));
    }
    let find = |name: &str| {
        platform_files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
    };
    let manifest: PlatformManifest =
        serde_json::from_slice(&find("platform.json").context("the export has no platform.json")?)?;
    if !manifest.missing.is_empty() {
        bail!(
            "not every volume has a backup that can be read now:\n  {}",
            manifest.missing.join("\n  ")
        );
    }
    let key = BackupKey::from_base64(&String::from_utf8_lossy(
        &find("backup.key").context("the export has no backup key")?,
    ))
    .map_err(anyhow::Error::msg)?;

    // Everything in a plaintext tar beside the output (0600, removed whatever happens), then sealed.
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let plain_path = out_dir.join(format!(".aerekos-backup-{}.tar", Uuid::new_v4()));
    let _plain_cleanup = Cleanup(plain_path.clone());
    let mut tar = tar::Builder::new(io::BufWriter::new(private_file(&plain_path)?));
    for (name, data) in &platform_files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, format!("platform/{name}"), &data[..])?;
    }
    let mut total = 0u64;
    for v in &manifest.volumes {
        let store = crate::client::worker_agent(&v.store_url, v.grant.clone())?;
        let sealed = store
            .get_backup_manifest()
            .volume(&v.volume)
            .backup_id(v.backup_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(SdkError::from(e)))?;
        let mut sealed_manifest = vec![];
        collect(sealed.into_inner().into_inner(), &mut sealed_manifest).await?;
        let mut header = tar::Header::new_gnu();
        header.set_size(sealed_manifest.len() as u64);
        header.set_mode(0o600);
        tar.append_data(
            &mut header,
            format!("backups/{}/manifests/{}", v.volume, v.backup_id),
            &sealed_manifest[..],
        )?;
        let mut plain = vec![];
        backup::open(
            &key,
            &format!("manifest:{}", v.backup_id),
            &sealed_manifest[..],
            &mut plain,
            &Default::default(),
        )
        .with_context(|| format!("the manifest of {}'s backup", v.volume))?;
        let contents: Manifest = serde_json::from_slice(&plain)?;
        let chunks: BTreeSet<String> = contents
            .entries
            .iter()
            .filter_map(|e| e.chunk.clone())
            .collect();
        for chunk in chunks {
            let response = store
                .get_backup_chunk()
                .volume(&v.volume)
                .chunk(&chunk)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(SdkError::from(e)))?;
            let part = out_dir.join(format!(".aerekos-chunk-{}", Uuid::new_v4()));
            let _part_cleanup = Cleanup(part.clone());
            let size = collect(
                response.into_inner().into_inner(),
                io::BufWriter::new(private_file(&part)?),
            )
            .await?;
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o600);
            tar.append_data(
                &mut header,
                format!("backups/{}/chunks/{}/{}", v.volume, &chunk[..2], chunk),
                fs::File::open(&part)?,
            )?;
            total += size;
        }
        eprintln!(
            "{}: backup {} ({} files)",
            v.volume,
            v.backup_id,
            contents.entries.iter().filter(|e| e.kind == 'f').count()
        );
    }
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;

    // Sealed under the passphrase, written whole or not at all.
    let salt: [u8; 16] = rand_bytes();
    let pass_key = derive_key(&passphrase, &salt, M_COST, T_COST, P_COST)?;
    let tmp = out_dir.join(format!(".aerekos-backup-{}.partial", Uuid::new_v4()));
    let tmp_cleanup = Cleanup(tmp.clone());
    let mut out = io::BufWriter::new(private_file(&tmp)?);
    out.write_all(MAGIC)?;
    out.write_all(&salt)?;
    for n in [M_COST, T_COST, P_COST] {
        out.write_all(&n.to_le_bytes())?;
    }
    let len = fs::metadata(&plain_path)?.len();
    backup::seal(
        &pass_key,
        LABEL,
        len,
        io::BufReader::new(fs::File::open(&plain_path)?),
        &mut out,
    )?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(&tmp, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    std::mem::forget(tmp_cleanup);
    println!(
        "wrote {} ({} bytes): the conductor's state and {} volume backup(s), {} bytes of sealed contents",
        args.out.display(),
        fs::metadata(&args.out)?.len(),
        manifest.volumes.len(),
        total
    );
    Ok(())
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore as _;
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./data"));
    if dir.join("conductor.db").exists() {
        bail!(
            "{} already holds a conductor database: restore into a fresh directory",
            dir.display()
        );
    }
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty: restore into a fresh directory",
            dir.display()
        );
    }
    let mut file = io::BufReader::new(
        fs::File::open(&args.from).with_context(|| format!("opening {}", args.from.display()))?,
    );
    let mut header = [0u8; 8 + 16 + 12];
    file.read_exact(&mut header).map_err(|_| {
        anyhow::anyhow!(
            "{} is not an aerekos platform backup (too short)",
            args.from.display()
        )
    })?;
    if &header[..8] != MAGIC {
        bail!("{} is not an aerekos platform backup", args.from.display());
    }
    let number = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let passphrase = read_passphrase(args.passphrase_stdin, false)?;
    let key = derive_key(
        &passphrase,
        &header[8..24],
        number(24),
        number(28),
        number(32),
    )?;

    // Everything is laid out beside the target first.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".aerekos-restore-{}", Uuid::new_v4()));
    let _cleanup = Cleanup(staging.clone());
    aerekos_common::secrets::create_private_dir(&staging)?;
    let plain_path = staging.join("platform.tar");
    {
        let mut plain = io::BufWriter::new(private_file(&plain_path)?);
        if let Err(e) = backup::open(&key, LABEL, file, &mut plain, &Default::default()) {
            bail!(
                "the backup did not open: wrong passphrase, or a damaged file ({e}); nothing was written"
            );
        }
        plain.flush()?;
    }
    let unpacked = staging.join("unpacked");
    tar::Archive::new(fs::File::open(&plain_path)?)
        .unpack(&unpacked)
        .context("unpacking the backup")?;
    fs::remove_file(&plain_path)?;
    let platform = unpacked.join("platform");
    let manifest: PlatformManifest =
        serde_json::from_slice(&fs::read(platform.join("platform.json"))?)?;
    let backup_key = BackupKey::from_base64(&fs::read_to_string(platform.join("backup.key"))?)
        .map_err(anyhow::Error::msg)?;

    let target = staging.join("data");
    aerekos_common::secrets::create_private_dir(&target)?;
    for name in ["conductor.db", "jwt-signing-key.pem", "backup.key"] {
        fs::rename(platform.join(name), target.join(name))?;
    }
    if !args.conductor_only {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(aerekos_conductor::forget_machines(
                &target.join("conductor.db"),
            ))
            .context("preparing the restored database")?;
        let worker_dir = target.join("worker");
        aerekos_common::secrets::create_private_dir(&worker_dir)?;
        fs::create_dir_all(worker_dir.join("volumes"))?;
        if unpacked.join("backups").exists() {
            fs::rename(unpacked.join("backups"), worker_dir.join("backups"))?;
        }
        for v in &manifest.volumes {
            let store = worker_dir.join("backups").join(&v.volume);
            let bytes = backup::restore_from_store_dir(
                &store,
                &v.volume,
                v.backup_id,
                &backup_key,
                &worker_dir.join("volumes").join(&v.volume),
            )
            .map_err(|e| anyhow::anyhow!("restoring {}: {e}", v.volume))?;
            eprintln!(
                "{}: restored from backup {} ({bytes} bytes)",
                v.volume, v.backup_id
            );
        }
    }
    if dir.exists() {
        fs::remove_dir(&dir)?;
    }
    fs::rename(&target, &dir)
        .with_context(|| format!("moving the restored state to {}", dir.display()))?;
    println!("restored the platform into {}", dir.display());
    if args.conductor_only {
        println!("start the conductor on it; its workers rejoin with their volumes");
    } else {
        println!(
            "start it with: DATA_DIR={} aerekos up   (users keep their passwords; services start on this machine with their data)",
            dir.display()
        );
    }
    Ok(())
}
