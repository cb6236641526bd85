//! The `aerekos` command. Thin: it parses arguments and configuration and calls the libraries
//! ([`platform`]) or, as a client of a running platform, the SDK ([`client`]).

mod access;
mod artifact;
mod client;
mod jobs;
mod logs;
mod output;
mod platform;
mod sandboxes;
mod schedules;
mod secrets;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aerekos",
    version,
    about = "aerekos-cloud: a self-hosted cloud in one command"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform on this machine: the conductor, a local worker and the built-in
    /// services (state in ./data; see server/.env_example).
    Up {
        /// How the local worker runs services: `process` (default) or `docker`.
        #[arg(long, default_value = "process", value_parser = ["process", "docker"])]
        driver: String,
    },
    /// Run the conductor alone, configured from the environment.
    Conductor,
    /// Run this machine's worker agent (CONDUCTOR_URL, CONDUCTOR_TOKEN; see worker/.env_example).
    Worker,
    /// Run one service alone (CONDUCTOR_URL names the conductor whose tokens it trusts).
    Service {
        #[arg(value_parser = ["key-manager", "key_manager", "storage-manager", "storage_manager", "secrets-manager", "secrets_manager", "logs-manager", "logs_manager", "metrics-manager", "metrics_manager"])]
        name: String,
    },
    /// Read a password on stdin, print its argon2id hash (for AEREKOS_USERS_FILE).
    HashPassword,
    /// (Used by the worker.) Run a command and keep how it ended in a file: how a job's exit
    /// status outlives a worker restart.
    #[command(name = "record-exit", hide = true)]
    RecordExit {
        record: std::path::PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// (Used by the worker's microVM guests.) Carry standard input and output to `to`
    /// (`host:port`): a guest's connection to the conductor.
    #[command(name = "relay", hide = true)]
    Relay { to: String },
    /// Log in to a conductor and keep the token for the other commands.
    Login(client::LoginArgs),
    /// Workers of the cluster.
    Workers {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: client::WorkersCommand,
    },
    /// The service catalog: list, enable, disable, deploy.
    Services {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: client::ServicesCommand,
    },
    /// A service's deployment: each instance with its worker, address, state, health, restarts.
    Deployments {
        #[command(flatten)]
        global: client::Global,
        service: String,
    },
    /// Volumes: where each stateful service's data is.
    Volumes {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: client::VolumesCommand,
    },
    /// Write the whole platform to one file sealed under a passphrase: the conductor's state and
    /// the latest backup of every volume.
    Backup(artifact::BackupArgs),
    /// Restore the whole platform from `aerekos backup`'s file into a fresh data directory.
    Restore(artifact::RestoreArgs),
    /// Backups of volumes: list, make one now (restore: `aerekos services restore`).
    Backups {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: client::BackupsCommand,
    },
    /// Users: list, add, change role, disable or enable, delete, reset a password.
    Users {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: access::UsersCommand,
    },
    /// Sessions and service tokens: list, revoke.
    Tokens {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: access::TokensCommand,
    },
    /// Revoke your saved token and forget it.
    Logout {
        #[command(flatten)]
        global: client::Global,
    },
    /// Change your password (all your sessions end; a new one is saved).
    Password {
        #[command(flatten)]
        global: client::Global,
        /// Read the current, then the new password from two lines of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The audit trail: who changed what, newest first.
    Audit(access::AuditArgs),
    /// Log lines (logs_manager): every instance's output and the platform's own lines, by
    /// service, time, level, request id and text; `-f` follows new ones.
    Logs(logs::LogsArgs),
    /// Secrets (secrets_manager): values from stdin or a file, never from an argument.
    Secrets {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Jobs: run-to-completion work, queued by priority, with retries and timeouts.
    Jobs {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Schedules: jobs submitted, or service endpoints called, on a clock.
    Schedules {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: schedules::SchedulesCommand,
    },
    /// Sandboxes: long-lived containers that run commands, each kept in their history.
    Sandboxes {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: sandboxes::SandboxesCommand,
    },
    /// The worker registration token.
    Token {
        #[command(flatten)]
        global: client::Global,
        #[command(subcommand)]
        command: client::TokenCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Up { .. } | Command::Conductor | Command::Worker | Command::Service { .. }
    ) {
        run_with_fixed_mmap_threshold();
    }
    let result = match cli.command {
        Command::Up { driver } => platform::up(&driver),
        Command::Conductor => platform::conductor(),
        Command::Worker => platform::worker(),
        Command::Service { name } if name.starts_with("storage") => platform::storage_manager(),
        Command::Service { name } if name.starts_with("secrets") => platform::secrets_manager(),
        Command::Service { name } if name.starts_with("logs") => platform::logs_manager(),
        Command::Service { name } if name.starts_with("metrics") => platform::metrics_manager(),
        Command::Service { .. } => platform::key_manager(),
        Command::HashPassword => platform::hash_password(),
        Command::RecordExit { record, command } => {
            let mut command = command.into_iter();
            let program = command.next().expect("clap requires a command");
            aerekos_worker::driver::exit_record::run(record, program, command.collect())
        }
        // Its standard error is the guest's connection too: a failure only ends it.
        Command::Relay { to } => {
            let _ = aerekos_worker::driver::microvm::relay::run(&to);
            std::process::exit(0)
        }
        Command::Login(args) => client::run(client::login(args)),
        Command::Workers { global, command } => client::run(client::workers(global, command)),
        Command::Services { global, command } => client::run(client::services(global, command)),
        Command::Deployments { global, service } => {
            client::run(client::deployments(global, service))
        }
        Command::Volumes { global, command } => client::run(client::volumes(global, command)),
        Command::Backups { global, command } => client::run(client::backups(global, command)),
        Command::Backup(args) => client::run(artifact::backup(args)),
        Command::Restore(args) => artifact::restore(args),
        Command::Token { global, command } => client::run(client::token(global, command)),
        Command::Users { global, command } => client::run(access::users(global, command)),
        Command::Tokens { global, command } => client::run(access::tokens(global, command)),
        Command::Secrets { global, command } => client::run(secrets::secrets(global, command)),
        Command::Jobs { global, command } => client::run(jobs::jobs(global, command)),
        Command::Sandboxes { global, command } => {
            client::run(sandboxes::sandboxes(global, command))
        }
        Command::Schedules { global, command } => {
            client::run(schedules::schedules(global, command))
        }
        Command::Logout { global } => client::run(access::logout(global)),
        Command::Password {
            global,
            password_stdin,
        } => client::run(access::password(global, password_stdin)),
        Command::Audit(args) => client::run(access::audit(args)),
        Command::Logs(args) => client::run(logs::logs(args)),
    };
    if let Err(e) = result {
        // One readable line (the SDK's errors carry the status, code, message and request id).
        eprintln!("aerekos: {e:#}");
        std::process::exit(1);
    }
}

/// glibc's malloc raises its mmap threshold to the largest block freed so far: once argon2's
/// 19 MiB working memory (a login, the admin's creation) has been freed, blocks that size come
/// from a thread's arena and stay resident after they are freed, ~19 MiB of an idle conductor
/// (docs/benchmarks.md, "Memory"). A threshold set by the `glibc.malloc.mmap_threshold` tunable
/// stays where it is, so such blocks are mapped and given back. Tunables are read when a program
/// starts, so a server re-executes itself once with it set (the same process: `exec` keeps the
/// pid and open files); without unsafe code this is the only way to set it.
fn run_with_fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        const TUNABLE: &str = "glibc.malloc.mmap_threshold";
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if tunables.contains(TUNABLE) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let ours = format!("{TUNABLE}={}", 128 * 1024);
        let tunables = if tunables.is_empty() {
            ours
        } else {
            format!("{tunables}:{ours}")
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(name) = args.next() {
            command.arg0(name);
        }
        // Returns only if the exec failed: the server runs on with glibc's defaults.
        let _ = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
    }
}
