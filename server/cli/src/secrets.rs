//! `aerekos secrets …`: secrets_manager through the conductor's gateway, on `aerekos-sdk` only.
//! Values come from stdin or a file, never from an argument (a command line is visible to every
//! user of the machine, and stays in shell histories); `get` writes a value to stdout as it is.

use std::io::{Read as _, Write as _};

use aerekos_sdk::secrets_manager::types::{
    self, CreateSecretRequest, MoveLabelRequest, PutValueRequest, SecretValue,
};
use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::{
    client::{Global, api, connect_secrets},
    output,
};

/// Where a value comes from.
#[derive(clap::Args)]
pub struct ValueSource {
    /// Read the value from this file (else from stdin).
    #[arg(long)]
    from_file: Option<std::path::PathBuf>,
    /// The value is a JSON object (else it is stored as the bytes given).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Secrets by name (metadata only).
    Ls {
        /// Only names starting with this, e.g. `apps/shop/`.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// A secret's metadata, versions and labels (never its value).
    Show {
        name: String,
    },
    /// Create a secret; with --value-from-stdin or --from-file, with its first value.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// The key_manager key its versions are encrypted under (default: the service's).
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        max_versions: Option<u32>,
        /// Read the first value from stdin.
        #[arg(long)]
        value_from_stdin: bool,
        #[command(flatten)]
        source: ValueSource,
    },
    /// Write a new version, read from stdin or --from-file; it becomes AWSCURRENT.
    Put {
        name: String,
        #[command(flatten)]
        source: ValueSource,
        /// Check-and-set: only if the latest version is this one.
        #[arg(long)]
        cas: Option<u64>,
        /// A custom staging label for the new version (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Print a value to stdout: AWSCURRENT's, or a version's or label's.
    Get {
        name: String,
        #[arg(long, conflicts_with = "label")]
        version: Option<u64>,
        #[arg(long)]
        label: Option<String>,
    },
    /// Schedule the secret's deletion after a recovery window (7–30 days, default 30).
    Rm {
        name: String,
        #[arg(long)]
        recovery_days: Option<u32>,
    },
    /// Cancel a scheduled deletion.
    Restore {
        name: String,
    },
    /// Soft-delete a version (undelete brings it back).
    DeleteVersion {
        name: String,
        version: u64,
    },
    UndeleteVersion {
        name: String,
        version: u64,
    },
    /// Destroy a version's value for good.
    DestroyVersion {
        name: String,
        version: u64,
    },
    /// Move a staging label (AWSCURRENT: a rollback) onto a version.
    Label {
        name: String,
        label: String,
        version: u64,
    },
}

fn read_value(source: &ValueSource) -> anyhow::Result<SecretValue> {
    let mut bytes = Vec::new();
    match &source.from_file {
        Some(path) => {
            bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the value from stdin")?;
        }
    }
    if source.json {
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).context("the value is not JSON")?;
        let Some(object) = value.as_object() else {
            bail!("a JSON value must be an object")
        };
        return Ok(SecretValue {
            bytes: None,
            json: object.clone(),
        });
    }
    // A value typed or piped with a final newline (`echo`, a here-string) is meant without it.
    if bytes.ends_with(b"\n") && source.from_file.is_none() {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(SecretValue {
        bytes: Some(STANDARD.encode(&bytes)),
        json: Default::default(),
    })
}

fn version_rows(secret: &types::Secret) -> Vec<Vec<String>> {
    secret
        .versions
        .iter()
        .map(|v| {
            let state = match (v.destroyed_at, v.deleted_at) {
                (Some(_), _) => "destroyed",
                (None, Some(_)) => "deleted",
                _ => "live",
            };
            vec![
                v.version.to_string(),
                v.labels.join(","),
                state.into(),
                v.created_at.format("%Y-%m-%d %H:%M").to_string(),
                v.created_by.clone(),
            ]
        })
        .collect()
}

const VERSION_HEADERS: &[&str] = &["VERSION", "LABELS", "STATE", "WRITTEN", "BY"];

pub async fn secrets(global: Global, command: SecretsCommand) -> anyhow::Result<()> {
    let s = connect_secrets(&global)?;
    let format = global.output();
    let show = |secret: types::Secret| {
        output::print(format, &secret, VERSION_HEADERS, version_rows(&secret))
    };
    match command {
        SecretsCommand::Ls { prefix } => {
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let mut req = s.list_secrets();
                if let Some(p) = &prefix {
                    req = req.prefix(p);
                }
                if let Some(c) = &cursor {
                    req = req.cursor(c);
                }
                let page = api(req.send().await)?;
                all.extend(page.secrets);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let rows = all
                .iter()
                .map(|x| {
                    vec![
                        x.name.clone(),
                        x.current_version.map_or("-".into(), |v| v.to_string()),
                        x.updated_at.format("%Y-%m-%d %H:%M").to_string(),
                        x.deletion_date.map_or(String::new(), |d| {
                            format!("deleted at {}", d.format("%Y-%m-%d %H:%M"))
                        }),
                        x.description.clone(),
                    ]
                })
                .collect();
            output::print(
                format,
                &all,
                &["NAME", "CURRENT", "UPDATED", "DELETION", "DESCRIPTION"],
                rows,
            )
        }
        SecretsCommand::Show { name } => show(api(s.get_secret().name(&name).send().await)?),
        SecretsCommand::Create {
            name,
            description,
            key,
            max_versions,
            value_from_stdin,
            source,
        } => {
            let value = (value_from_stdin || source.from_file.is_some())
                .then(|| read_value(&source))
                .transpose()?;
            let req = CreateSecretRequest {
                name,
                description,
                encryption_key: key,
                max_versions,
                tags: Default::default(),
                value,
            };
            show(api(s.create_secret().body(req).send().await)?)
        }
        SecretsCommand::Put {
            name,
            source,
            cas,
            labels,
        } => {
            let req = PutValueRequest {
                value: read_value(&source)?,
                cas,
                labels,
            };
            let version = api(s.put_secret_value().name(&name).body(req).send().await)?;
            match format {
                output::Format::Json => println!("{}", serde_json::to_string_pretty(&version)?),
                output::Format::Table => println!(
                    "{name}: version {} written ({})",
                    version.version,
                    version.labels.join(", ")
                ),
            }
            Ok(())
        }
        SecretsCommand::Get {
            name,
            version,
            label,
        } => {
            let mut req = s.get_secret_value().name(&name);
            if let Some(v) = version {
                req = req.version(v);
            }
            if let Some(l) = &label {
                req = req.label(l);
            }
            let answer = api(req.send().await)?;
            let out = match &answer.value.bytes {
                Some(b64) => STANDARD
                    .decode(b64)
                    .context("secrets_manager answered bytes that are not base64")?,
                None => serde_json::to_vec_pretty(&answer.value.json)?,
            };
            std::io::stdout().write_all(&out)?;
            Ok(())
        }
        SecretsCommand::Rm {
            name,
            recovery_days,
        } => {
            let mut req = s.delete_secret().name(&name);
            if let Some(days) = recovery_days {
                req = req.recovery_days(days);
            }
            let secret = api(req.send().await)?;
            println!(
                "{name} will be deleted at {}; `aerekos secrets restore {name}` cancels it",
                secret
                    .deletion_date
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            );
            Ok(())
        }
        SecretsCommand::Restore { name } => show(api(s.restore_secret().name(&name).send().await)?),
        SecretsCommand::DeleteVersion { name, version } => {
            api(s
                .delete_secret_version()
                .name(&name)
                .version(version)
                .send()
                .await)?;
            show(api(s.get_secret().name(&name).send().await)?)
        }
        SecretsCommand::UndeleteVersion { name, version } => {
            api(s
                .undelete_secret_version()
                .name(&name)
                .version(version)
                .send()
                .await)?;
            show(api(s.get_secret().name(&name).send().await)?)
        }
        SecretsCommand::DestroyVersion { name, version } => {
            api(s
                .destroy_secret_version()
                .name(&name)
                .version(version)
                .send()
                .await)?;
            show(api(s.get_secret().name(&name).send().await)?)
        }
        SecretsCommand::Label {
            name,
            label,
            version,
        } => show(api(s
            .move_secret_label()
            .name(&name)
            .label(&label)
            .body(MoveLabelRequest { version })
            .send()
            .await)?),
    }
}
