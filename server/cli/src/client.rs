//! The CLI's client commands, on `aerekos-sdk` only: log in once, then workers, services,
//! deployments and the registration token. The token is kept in `<config dir>/credentials.json`
//! (0600): `$AEREKOS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/aerekos`, else `~/.config/aerekos`.

use std::{collections::HashMap, io::Write as _, path::PathBuf, time::Duration};

use aerekos_sdk::{
    Conductor, SdkError,
    conductor::types::{self, DeployRequest, Deployment},
};
use anyhow::{Context as _, bail};
use uuid::Uuid;

use crate::output::{self, Format, bytes};

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Options every client command takes.
#[derive(clap::Args)]
pub struct Global {
    /// The conductor (default: the one you logged in to, else http://127.0.0.1:8080).
    #[arg(long, env = "AEREKOS_URL", global = true)]
    url: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    output: Format,
}

impl Global {
    pub fn output(&self) -> Format {
        self.output
    }
}

#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    global: Global,
    #[arg(long, short, default_value = "admin")]
    username: String,
    /// Read the password from stdin (else AEREKOS_PASSWORD, else a prompt).
    #[arg(long)]
    password_stdin: bool,
    /// For an https conductor: the fingerprint of its CA (`sha256:…`, printed by the conductor at
    /// start and by `aerekos token show`). Without it, the fingerprint is shown and asked about.
    #[arg(long, env = "AEREKOS_CA_PIN")]
    ca_pin: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum WorkersCommand {
    /// Every worker with its status and resources.
    Ls,
    /// One worker in full, with its instances.
    Show { id: Uuid },
}

#[derive(clap::Subcommand)]
pub enum ServicesCommand {
    /// The catalog with each service's state.
    Ls,
    /// Deploy with the last deployment or the catalog's defaults (dependencies too).
    Enable {
        name: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop every instance of the service.
    Disable { name: String },
    /// Deploy: place instances on workers with room, then wait for them to be healthy.
    Deploy(DeployArgs),
    /// Restore a stateful service from one of its backups onto a worker (when the worker holding
    /// it is gone for good); waits until it runs there.
    Restore {
        name: String,
        /// The backup (see `aerekos backups ls`).
        #[arg(long)]
        backup: Uuid,
        /// The worker to restore onto.
        #[arg(long)]
        to: Uuid,
        #[command(flatten)]
        wait: Wait,
    },
    /// Move a stateful service, with its data, to another worker; waits until the move is done.
    Move {
        name: String,
        /// The worker to move it to.
        #[arg(long)]
        to: Uuid,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(clap::Args)]
pub struct Wait {
    /// Return at once instead of waiting for the instances to be healthy.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for health, in seconds.
    #[arg(long, default_value = "120")]
    timeout: u64,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    name: String,
    #[arg(long)]
    replicas: Option<u32>,
    /// CPU per instance, in millicores.
    #[arg(long)]
    cpu: Option<u32>,
    /// Memory per instance, in MB.
    #[arg(long)]
    memory: Option<u32>,
    /// Disk per instance, in MB.
    #[arg(long)]
    disk: Option<u32>,
    /// Only on these workers (repeat the flag for several).
    #[arg(long = "worker")]
    workers: Vec<Uuid>,
    /// Only on workers with this label, as key=value (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// An environment variable for the instances, as NAME=value (repeatable); given at all, the
    /// set replaces the deployment's. Not for secrets: arguments are visible to the machine's users.
    #[arg(long = "env")]
    env: Vec<String>,
    /// An environment variable whose value is a secret from secrets_manager, read by the worker
    /// at each start: NAME=secret (its AWSCURRENT), NAME=secret@version or NAME=secret#label
    /// (repeatable; given at all, the set replaces the deployment's).
    #[arg(long = "secret-env")]
    secret_env: Vec<String>,
    /// A secret from secrets_manager given to the instances as a file (0600, on the worker's
    /// memory filesystem; /run/secrets/NAME in a container): NAME=secret[@version|#label], the
    /// variable NAME holding the file's path (repeatable; counts as --secret-env).
    #[arg(long = "secret-file")]
    secret_file: Vec<String>,
    /// With --secret-env: when a secret's version changes (a new value, a rotation), the
    /// instances restart by themselves, rolling, to read it (not for a pinned secret@version).
    #[arg(long)]
    restart_on_secret_change: bool,
    /// Replace every instance even if nothing else changed (a rolling restart: secrets are read anew).
    #[arg(long)]
    restart: bool,
    #[arg(long, value_parser = ["spread", "binpack"])]
    strategy: Option<String>,
    #[arg(long, value_parser = ["process", "docker", "microvm"])]
    driver: Option<String>,
    #[arg(long, value_parser = ["round_robin", "least_connections", "ip_hash"])]
    load_balancing: Option<String>,
    /// A stateful service only: start it with NO DATA on a worker holding no copy of its volume.
    /// The old copy stays where it is, unused. Without this flag a stateful service runs only
    /// where its volume is.
    #[arg(long)]
    start_empty: bool,
    /// A stateful service's backup schedule, in seconds (0: no scheduled backups).
    #[arg(long)]
    backup_every: Option<u64>,
    #[command(flatten)]
    wait: Wait,
}

#[derive(clap::Subcommand)]
pub enum BackupsCommand {
    /// Backups, newest first, with their state and sizes.
    Ls {
        /// Only this volume's.
        #[arg(long)]
        volume: Option<String>,
    },
    /// Back up a volume now, and wait until it is done.
    Create {
        volume: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(clap::Subcommand)]
pub enum VolumesCommand {
    /// Every volume: the service it belongs to, the worker holding it, its size.
    Ls,
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// The current token, and the command that joins a worker with it.
    Show,
    /// Replace the token; workers that already joined keep working.
    Regenerate,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Credentials {
    url: String,
    username: String,
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The conductor's CA bundle, pinned at login (https only): every later command believes
    /// only certificates chaining to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_pem: Option<String>,
}

/// The pin of the CA the current command trusts, for the message when a certificate is refused.
static PINNED_CA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What the CLI believes: the CA pinned at login (`ca_pem`) when there is one, else the system's
/// roots (or `AEREKOS_CA_FILE`).
fn trust(ca_pem: Option<&str>) -> anyhow::Result<aerekos_sdk::Trust> {
    let Some(pem) = ca_pem else {
        return Ok(aerekos_sdk::Trust::from_env());
    };
    if let Ok(pin) = aerekos_sdk::tls::fingerprint(pem.as_bytes()) {
        let _ = PINNED_CA.set(pin);
    }
    Ok(aerekos_sdk::Trust::ca_bundle(pem.as_bytes().to_vec())?)
}

/// A client of `url` believing `ca_pem` when given (else the system's roots).
fn client_for(url: &str, token: Option<String>, ca_pem: Option<&str>) -> anyhow::Result<Conductor> {
    let transport = token.map_or_else(aerekos_sdk::Transport::new, |t| {
        aerekos_sdk::Transport::new().with_token(t)
    });
    Ok(Conductor::with_trust(url, transport, &trust(ca_pem)?))
}

/// A client of a worker's API (a backup store), believing the CA pinned at login.
pub(crate) fn worker_agent(url: &str, grant: String) -> anyhow::Result<aerekos_sdk::WorkerAgent> {
    let trust = trust(load_credentials().and_then(|c| c.ca_pem).as_deref())?;
    Ok(aerekos_sdk::WorkerAgent::with_trust(
        url,
        aerekos_sdk::Transport::new().with_token(grant),
        &trust,
    ))
}

/// An SDK error as the CLI reports it: a refused certificate says what it means and what to do.
fn explain(e: SdkError) -> anyhow::Error {
    match PINNED_CA.get() {
        Some(pin) if e.is_certificate_refused() => anyhow::anyhow!(
            "the conductor's certificate does not chain to the CA pinned at login ({pin}): this is another server, or someone \
             in the middle. If the conductor's CA really changed, log in again with `aerekos login --ca-pin <new pin>` \
             (`aerekos token show` on a trusted machine prints it). Details: {e}"
        ),
        _ => anyhow::anyhow!(e),
    }
}

fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AEREKOS_CONFIG_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("aerekos"));
    }
    let home = std::env::var_os("HOME").context("neither AEREKOS_CONFIG_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/aerekos"))
}

fn load_credentials() -> Option<Credentials> {
    let path = config_dir().ok()?.join("credentials.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The saved login for the chosen conductor (its URL, token and pinned CA), or a message saying
/// to log in.
fn session(global: &Global) -> anyhow::Result<Credentials> {
    let saved = load_credentials();
    let url = global
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.url.clone()))
        .unwrap_or_else(|| DEFAULT_URL.into());
    match saved {
        Some(c) if c.url == url && c.expires_at > chrono::Utc::now() => Ok(c),
        Some(c) if c.url == url => bail!(
            "your login to {url} expired at {}; run `aerekos login`",
            c.expires_at
        ),
        _ => bail!("not logged in to {url}; run `aerekos login --url {url}`"),
    }
}

/// An authenticated client for the chosen conductor, or a message saying to log in.
pub(crate) fn connect(global: &Global) -> anyhow::Result<Conductor> {
    let c = session(global)?;
    client_for(&c.url, Some(c.token), c.ca_pem.as_deref())
}

/// An authenticated secrets_manager client, through the chosen conductor's gateway.
pub(crate) fn connect_secrets(global: &Global) -> anyhow::Result<aerekos_sdk::SecretsManager> {
    let c = session(global)?;
    let transport = aerekos_sdk::Transport::new().with_token(c.token);
    Ok(aerekos_sdk::SecretsManager::with_trust(
        &c.url,
        transport,
        &trust(c.ca_pem.as_deref())?,
    ))
}

/// An authenticated logs_manager client, through the chosen conductor's gateway.
pub(crate) fn connect_logs(global: &Global) -> anyhow::Result<aerekos_sdk::LogsManager> {
    let c = session(global)?;
    let transport = aerekos_sdk::Transport::new().with_token(c.token);
    Ok(aerekos_sdk::LogsManager::with_trust(
        &c.url,
        transport,
        &trust(c.ca_pem.as_deref())?,
    ))
}

/// A worker's own API (a job's output while the worker keeps it), with the user's token,
/// believing the CA pinned at login.
pub(crate) fn connect_worker(
    global: &Global,
    api_url: &str,
) -> anyhow::Result<aerekos_sdk::WorkerAgent> {
    let c = session(global)?;
    let transport = aerekos_sdk::Transport::new().with_token(c.token);
    Ok(aerekos_sdk::WorkerAgent::with_trust(
        api_url,
        transport,
        &trust(c.ca_pem.as_deref())?,
    ))
}

/// `NAME=value` flags (`--env`, `--label`) as a map.
pub(crate) fn pairs(flag: &str, given: &[String]) -> anyhow::Result<HashMap<String, String>> {
    given
        .iter()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("--{flag} {pair:?} is not NAME=value"))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Runs a client command on a small runtime of its own.
pub fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

pub(crate) fn api<T>(
    r: Result<aerekos_sdk::ResponseValue<T>, aerekos_sdk::ClientError<aerekos_sdk::ErrorBody>>,
) -> anyhow::Result<T> {
    r.map(aerekos_sdk::ResponseValue::into_inner)
        .map_err(|e| explain(SdkError::from(e)))
}

/// The conductor's CA bundle, accepted because its fingerprint is `pin`, or (without a pin) because
/// the person at the terminal says so after seeing it. Scripts must give the pin.
async fn pin_ca(url: &str, pin: Option<&str>) -> anyhow::Result<String> {
    if let Some(pin) = pin {
        return aerekos_sdk::fetch_pinned_ca(url, pin)
            .await
            .map_err(|e| anyhow::anyhow!(e));
    }
    let (pem, seen) = aerekos_sdk::fetch_ca(url).await?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!(
            "{url} presents CA {seen}; to trust it, give it with --ca-pin (compare it with `aerekos token show` on a trusted machine)"
        );
    }
    eprint!(
        "{url} presents CA {seen}.\nCompare it with what the conductor printed at start (or `aerekos token show`). Trust it? [y/N] "
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not trusted; nothing saved");
    }
    Ok(pem)
}

/// A password or other secret: one line of stdin, else the variable `env`, else a prompt.
pub(crate) fn read_secret(from_stdin: bool, env: &str, prompt: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    } else if let Ok(p) = std::env::var(env) {
        Ok(p)
    } else {
        Ok(rpassword::prompt_password(prompt)?)
    }
}

fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

fn save_credentials(creds: &Credentials) -> anyhow::Result<()> {
    let dir = config_dir()?;
    aerekos_common::secrets::create_private_dir(&dir)?;
    aerekos_common::secrets::write_secret_file(
        &credentials_path()?,
        serde_json::to_string_pretty(creds)?.as_bytes(),
    )?;
    Ok(())
}

/// Replaces the saved token with `session`'s (after a password change).
pub(crate) fn save_session(global: &Global, session: &types::LoginResponse) -> anyhow::Result<()> {
    let url = global
        .url
        .clone()
        .or_else(|| load_credentials().map(|c| c.url))
        .unwrap_or_else(|| DEFAULT_URL.into());
    let username = session.user.username.clone();
    let ca_pem = load_credentials()
        .filter(|c| c.url == url)
        .and_then(|c| c.ca_pem);
    save_credentials(&Credentials {
        url,
        username,
        token: session.token.clone(),
        expires_at: session.expires_at,
        ca_pem,
    })
}

pub(crate) fn forget_credentials() -> anyhow::Result<()> {
    match std::fs::remove_file(credentials_path()?) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = args
        .global
        .url
        .clone()
        .or_else(|| load_credentials().map(|c| c.url))
        .unwrap_or_else(|| DEFAULT_URL.into());
    let password = read_secret(
        args.password_stdin,
        "AEREKOS_PASSWORD",
        &format!("password for {} at {url}: ", args.username),
    )?;
    let ca_pem = if url.starts_with("https://") {
        Some(pin_ca(&url, args.ca_pin.as_deref()).await?)
    } else {
        None
    };
    let client = client_for(&url, None, ca_pem.as_deref())?;
    let session = client
        .login_as(&args.username, &password)
        .await
        .map_err(explain)?;
    let creds = Credentials {
        url: url.clone(),
        username: args.username.clone(),
        token: session.token,
        expires_at: session.expires_at,
        ca_pem,
    };
    save_credentials(&creds)?;
    match args.global.output {
        Format::Json => println!(
            "{}",
            serde_json::json!({ "url": url, "username": args.username, "role": session.user.role, "expires_at": session.expires_at })
        ),
        Format::Table => println!(
            "logged in to {url} as {} ({}) until {}",
            args.username, session.user.role, session.expires_at
        ),
    }
    Ok(())
}

pub async fn workers(global: Global, command: WorkersCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        WorkersCommand::Ls => {
            let mut all = vec![];
            let mut cursor: Option<String> = None;
            loop {
                let mut request = c.list_workers().limit(1000);
                if let Some(cursor) = &cursor {
                    request = request.cursor(cursor.clone());
                }
                let page = api(request.send().await)?;
                all.extend(page.workers);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let rows = all
                .iter()
                .map(|w| {
                    vec![
                        w.id.to_string(),
                        w.name.clone(),
                        w.status.to_string(),
                        w.ip_address.clone(),
                        format!(
                            "{} ({:.0}%)",
                            w.resources.cpu_cores, w.resources.cpu_usage_percent
                        ),
                        format!(
                            "{} / {}",
                            bytes(w.resources.memory_available_bytes),
                            bytes(w.resources.memory_total_bytes)
                        ),
                        w.resources
                            .drivers
                            .iter()
                            .map(|d| d.name.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                        w.last_heartbeat_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]
                })
                .collect();
            output::print(
                global.output,
                &all,
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "IP",
                    "CPUS",
                    "MEMORY FREE",
                    "DRIVERS",
                    "LAST HEARTBEAT",
                ],
                rows,
            )
        }
        WorkersCommand::Show { id } => {
            let w = api(c.get_worker().id(id).send().await)?;
            let instances = api(c.list_worker_instances().id(id).send().await)?;
            if global.output == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "worker": w, "instances": instances })
                    )?
                );
                return Ok(());
            }
            let r = &w.resources;
            let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("worker {} ({})", w.name, w.id);
            println!(
                "  status:     {} (last heartbeat {})",
                w.status, w.last_heartbeat_at
            );
            println!("  address:    {} (hostname {})", w.ip_address, w.hostname);
            println!(
                "  labels:     {}",
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(", ")
                }
            );
            println!(
                "  cpu:        {} cores, {:.0}% used",
                r.cpu_cores, r.cpu_usage_percent
            );
            println!(
                "  memory:     {} free of {}",
                bytes(r.memory_available_bytes),
                bytes(r.memory_total_bytes)
            );
            println!(
                "  disk:       {} free of {}",
                bytes(r.disk_free_bytes),
                bytes(r.disk_total_bytes)
            );
            println!(
                "  drivers:    {}",
                r.drivers
                    .iter()
                    .map(|d| format!("{} {}", d.name, d.version.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("  instances:");
            print!(
                "{}",
                output::table(
                    &INSTANCE_HEADERS,
                    &instances.iter().map(instance_row).collect::<Vec<_>>()
                )
            );
            Ok(())
        }
    }
}

const INSTANCE_HEADERS: [&str; 7] = [
    "INSTANCE", "SERVICE", "WORKER", "ADDRESS", "STATE", "HEALTH", "RESTARTS",
];

fn instance_row(i: &types::Instance) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.service.clone().unwrap_or_else(|| "-".into()),
        i.worker_id.to_string(),
        i.address.clone().unwrap_or_else(|| "-".into()),
        i.state.to_string(),
        match &i.reason {
            Some(reason) if i.health != types::InstanceHealth::Healthy => {
                format!("{} ({reason})", i.health)
            }
            _ => i.health.to_string(),
        },
        i.restarts.to_string(),
    ]
}

pub async fn services(global: Global, command: ServicesCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        ServicesCommand::Ls => {
            let all = api(c.list_services().send().await)?;
            let rows = all
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        if s.enabled {
                            "enabled".into()
                        } else {
                            "disabled".into()
                        },
                        s.deployment
                            .as_ref()
                            .map_or("-".into(), |d| d.replicas.to_string()),
                        s.depends_on.join(","),
                        s.load_balancing.to_string(),
                        s.description.clone(),
                    ]
                })
                .collect();
            output::print(
                global.output,
                &all,
                &[
                    "NAME",
                    "STATE",
                    "REPLICAS",
                    "DEPENDS ON",
                    "LOAD BALANCING",
                    "DESCRIPTION",
                ],
                rows,
            )
        }
        ServicesCommand::Enable { name, wait } => {
            let d = api(c.enable_service().name(&name).send().await)?;
            finish_deploy(&c, global.output, d, &wait).await
        }
        ServicesCommand::Disable { name } => {
            let d = api(c.disable_service().name(&name).send().await)?;
            match global.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
                Format::Table => println!("{name} disabled"),
            }
            Ok(())
        }
        ServicesCommand::Restore {
            name,
            backup,
            to,
            wait,
        } => {
            let m = api(c
                .restore_service()
                .name(&name)
                .body(types::RestoreRequest {
                    backup_id: backup,
                    worker_id: to,
                })
                .send()
                .await)?;
            follow_move(&c, &global, &name, m, &wait).await
        }
        ServicesCommand::Move { name, to, wait } => {
            let m = api(c
                .move_service()
                .name(&name)
                .body(types::MoveRequest { worker_id: to })
                .send()
                .await)?;
            follow_move(&c, &global, &name, m, &wait).await
        }
        ServicesCommand::Deploy(args) => {
            let resources = match (args.cpu, args.memory, args.disk) {
                (None, None, None) => None,
                (cpu, memory, disk) => {
                    let current = api(c.get_service().name(&args.name).send().await)?;
                    let base = current
                        .deployment
                        .map_or(current.default_resources, |d| d.resources);
                    Some(types::ResourceSpec {
                        cpu_millicores: cpu.unwrap_or(base.cpu_millicores),
                        memory_mb: memory.unwrap_or(base.memory_mb),
                        disk_mb: disk.unwrap_or(base.disk_mb),
                    })
                }
            };
            let labels = pairs("label", &args.labels)?;
            let env = pairs("env", &args.env)?;
            let mut secret_env = HashMap::new();
            for (flag, given, as_file) in [
                ("secret-env", &args.secret_env, false),
                ("secret-file", &args.secret_file, true),
            ] {
                for (var, reference) in pairs(flag, given)? {
                    let mut reference = secret_ref(&reference)?;
                    // A pinned version never changes, so it is not watched.
                    reference.restart_on_change =
                        args.restart_on_secret_change && reference.version.is_none();
                    reference.as_file = as_file;
                    if secret_env.insert(var.clone(), reference).is_some() {
                        anyhow::bail!("{var} is given twice in --secret-env and --secret-file");
                    }
                }
            }
            let req = DeployRequest {
                replicas: args.replicas,
                resources,
                worker_ids: args.workers.clone(),
                labels,
                strategy: parse_choice(&args.strategy)?,
                driver: parse_choice(&args.driver)?,
                load_balancing: parse_choice(&args.load_balancing)?,
                start_empty: args.start_empty.then_some(true),
                backup_interval_secs: args.backup_every,
                env,
                secret_env,
                restart: args.restart.then_some(true),
            };
            let d = api(c.deploy_service().name(&args.name).body(req).send().await)?;
            finish_deploy(&c, global.output, d, &args.wait).await
        }
    }
}

/// Shows a move's (or a restore's) steps until it ends; fails when it failed.
async fn follow_move(
    c: &Conductor,
    global: &Global,
    name: &str,
    mut m: types::VolumeMove,
    wait: &Wait,
) -> anyhow::Result<()> {
    let interactive = global.output == Format::Table;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
    while !wait.no_wait && !matches!(m.state, types::MoveState::Done | types::MoveState::Failed) {
        if interactive {
            eprint!(
                "\r{:<80}",
                format!("{name}: {} ({} copied)", m.state, bytes(m.bytes_copied))
            );
            let _ = std::io::stderr().flush();
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the move of {name} is still at step {} after {}s (GET /api/moves/{})",
                m.state,
                wait.timeout,
                m.id
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        m = api(c.get_move().id(m.id).send().await)?;
    }
    if interactive && !wait.no_wait {
        eprintln!();
    }
    match global.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&m)?),
        Format::Table => println!("{name}: move {} {}", m.id, m.state),
    }
    if m.state == types::MoveState::Failed {
        bail!(
            "the move failed: {}; {name} stays on its old worker",
            m.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// An enum of the API from its wire name (clap has already checked it is one of them).
fn parse_choice<T: serde::de::DeserializeOwned>(
    value: &Option<String>,
) -> anyhow::Result<Option<T>> {
    Ok(value
        .as_deref()
        .map(|v| serde_json::from_value(serde_json::Value::String(v.to_owned())))
        .transpose()?)
}

/// Waits for the deployment's instances to be healthy, showing progress on stderr, then prints it.
async fn finish_deploy(
    c: &Conductor,
    format: Format,
    mut d: Deployment,
    wait: &Wait,
) -> anyhow::Result<()> {
    let wanted = d.spec.as_ref().map_or(0, |s| s.replicas);
    let interactive = format == Format::Table;
    if !wait.no_wait {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
        loop {
            let done = d.healthy >= wanted && d.instances.len() as u32 == wanted;
            if interactive {
                let mut status = format!("\r{}: {}/{} healthy", d.service, d.healthy, wanted);
                if !d.waiting_for.is_empty() {
                    status.push_str(&format!(", waiting for {}", d.waiting_for.join(", ")));
                }
                if let Some(problem) = &d.problem {
                    status.push_str(&format!(" ({problem})"));
                }
                eprint!("{status:<80}");
                let _ = std::io::stderr().flush();
            }
            if done {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                if interactive {
                    eprintln!();
                }
                print_deployment(format, &d)?;
                bail!(
                    "{} has {}/{} healthy instances after {}s",
                    d.service,
                    d.healthy,
                    wanted,
                    wait.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            d = api(c.get_deployment().name(&d.service).send().await)?;
        }
        if interactive {
            eprintln!();
        }
    }
    print_deployment(format, &d)
}

fn print_deployment(format: Format, d: &Deployment) -> anyhow::Result<()> {
    let rows = d.instances.iter().map(instance_row).collect();
    output::print(format, d, &INSTANCE_HEADERS, rows)
}

pub async fn deployments(global: Global, service: String) -> anyhow::Result<()> {
    let c = connect(&global)?;
    let d = api(c.get_deployment().name(&service).send().await)?;
    if let (Some(wait), Format::Table) = (&d.waiting_for_volume, global.output) {
        eprintln!("{}: waiting: {}", d.service, wait.message);
    }
    print_deployment(global.output, &d)
}

pub async fn backups(global: Global, command: BackupsCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        BackupsCommand::Ls { volume } => {
            let mut call = c.list_backups();
            if let Some(v) = &volume {
                call = call.volume(v);
            }
            let all = api(call.send().await)?;
            let rows = all
                .iter()
                .map(|b| {
                    vec![
                        b.id.to_string(),
                        b.volume.clone(),
                        b.state.to_string(),
                        b.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        b.files.to_string(),
                        bytes(b.bytes),
                        bytes(b.bytes_sent),
                        b.store_worker_id.to_string(),
                        b.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::print(
                global.output,
                &all,
                &[
                    "ID", "VOLUME", "STATE", "CREATED", "FILES", "SIZE", "SENT", "KEPT ON", "ERROR",
                ],
                rows,
            )
        }
        BackupsCommand::Create { volume, wait } => {
            let mut b = api(c.backup_volume().name(&volume).send().await)?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
            while !wait.no_wait && b.state == types::BackupState::Running {
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "the backup of {volume} is still running after {}s (aerekos backups ls)",
                        wait.timeout
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                b = api(c.get_backup().id(b.id).send().await)?;
            }
            match global.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&b)?),
                Format::Table => println!(
                    "backup {} of {volume}: {} ({} files, {}, {} sent)",
                    b.id,
                    b.state,
                    b.files,
                    bytes(b.bytes),
                    bytes(b.bytes_sent)
                ),
            }
            if b.state == types::BackupState::Failed {
                bail!(
                    "the backup failed: {}",
                    b.error.as_deref().unwrap_or("no reason given")
                );
            }
            Ok(())
        }
    }
}

pub async fn volumes(global: Global, command: VolumesCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        VolumesCommand::Ls => {
            let all = api(c.list_volumes().send().await)?;
            let rows = all
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        v.service.clone(),
                        format!(
                            "{} ({})",
                            v.worker_name.as_deref().unwrap_or("removed"),
                            v.worker_id
                        ),
                        v.worker_status
                            .map_or_else(|| "removed".into(), |s| s.to_string()),
                        v.size_bytes.map_or_else(|| "-".into(), bytes),
                        v.last_backup_at.map_or_else(
                            || "never".into(),
                            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ),
                        v.other_copies.len().to_string(),
                    ]
                })
                .collect();
            output::print(
                global.output,
                &all,
                &[
                    "NAME",
                    "SERVICE",
                    "WORKER",
                    "WORKER STATUS",
                    "SIZE",
                    "LAST BACKUP",
                    "OLD COPIES",
                ],
                rows,
            )
        }
    }
}

pub async fn token(global: Global, command: TokenCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    let t = match command {
        TokenCommand::Show => api(c.get_registration_token().send().await)?,
        TokenCommand::Regenerate => api(c.regenerate_registration_token().send().await)?,
    };
    match global.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
        Format::Table => {
            println!("{}", t.token);
            let url = global
                .url
                .clone()
                .or_else(|| load_credentials().map(|c| c.url))
                .unwrap_or_else(|| DEFAULT_URL.into());
            let ca = api(c.get_tls_ca().send().await)?;
            let pin = ca
                .fingerprint
                .map(|p| format!(" CONDUCTOR_CA_PIN={p}"))
                .unwrap_or_default();
            eprintln!(
                "join a worker:  CONDUCTOR_URL={url} CONDUCTOR_TOKEN={}{pin} aerekos worker",
                t.token
            );
        }
    }
    Ok(())
}

/// `name`, `name@version` or `name#label`, as `--secret-env` takes a secret.
fn secret_ref(reference: &str) -> anyhow::Result<types::SecretRef> {
    if let Some((secret, version)) = reference.split_once('@') {
        let version = version
            .parse()
            .with_context(|| format!("{reference:?}: the version after '@' is a number"))?;
        return Ok(types::SecretRef {
            secret: secret.to_owned(),
            version: Some(version),
            label: None,
            restart_on_change: false,
            as_file: false,
        });
    }
    if let Some((secret, label)) = reference.split_once('#') {
        return Ok(types::SecretRef {
            secret: secret.to_owned(),
            version: None,
            label: Some(label.to_owned()),
            restart_on_change: false,
            as_file: false,
        });
    }
    Ok(types::SecretRef {
        secret: reference.to_owned(),
        version: None,
        label: None,
        restart_on_change: false,
        as_file: false,
    })
}
