//! `aerekos sandboxes …`: long-lived containers that run commands, on `aerekos-sdk` only. `exec`
//! waits for the command by default, prints its streams and exits with its exit code.

use std::time::Duration;

use aerekos_sdk::conductor::types::{
    DriverKind, ExecRequest, ExecState, ResourceSpec, Sandbox, SandboxExec, SandboxRequest,
    SandboxState,
};
use anyhow::bail;
use uuid::Uuid;

use crate::{
    client::{Global, api, connect, pairs},
    jobs::RetryArgs,
    output::{self, Format},
};

/// How often a sandbox or an exec being waited for is looked at.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// The exit status `exec` gives for a command killed at its timeout (as `timeout(1)` does).
const TIMED_OUT_STATUS: i32 = 124;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// A Docker image present on the workers.
    #[arg(long)]
    image: String,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// An environment variable, NAME=value (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// CPU to reserve, in millicores (default 100).
    #[arg(long)]
    cpu: Option<u32>,
    /// Memory to reserve, in MB (default 64).
    #[arg(long)]
    memory: Option<u32>,
    /// Seconds each placement may take to be running (default 300).
    #[arg(long)]
    ready_timeout: Option<u32>,
    /// Placements to try again when one fails (default 2).
    #[arg(long)]
    create_retries: Option<u32>,
    /// `docker` (a container, default) or `microvm` (a VM of its own).
    #[arg(long, value_parser = ["docker", "microvm"])]
    driver: Option<String>,
    /// Wait until it is ready (exit 1 if it fails).
    #[arg(long)]
    wait: bool,
    /// What keeps the container running (after `--`; default `sleep infinity`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    id: Uuid,
    /// An environment variable, NAME=value (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Seconds each attempt may run (default 60).
    #[arg(long)]
    timeout: Option<u32>,
    #[command(flatten)]
    retry: RetryArgs,
    /// Queue it and print it, without waiting for its end.
    #[arg(long)]
    detach: bool,
    /// The program and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum SandboxesCommand {
    /// Every sandbox, newest first.
    Ls,
    /// Make a sandbox from an image (queued; --wait for it to be ready).
    Create(CreateArgs),
    /// A sandbox and its last commands.
    Show {
        id: Uuid,
        #[arg(long, default_value_t = 20)]
        execs: u32,
    },
    /// Run a command in a sandbox: its output, and its exit code as this command's.
    Exec(ExecArgs),
    /// Delete a sandbox, its history and its container.
    Rm { id: Uuid },
}

pub async fn sandboxes(global: Global, command: SandboxesCommand) -> anyhow::Result<()> {
    let conductor = connect(&global)?;
    match command {
        SandboxesCommand::Ls => {
            let all = api(conductor.list_sandboxes().send().await)?;
            print_sandboxes(global.output(), &all)
        }
        SandboxesCommand::Create(args) => {
            let wait = args.wait;
            let resources = (args.cpu.is_some() || args.memory.is_some()).then(|| ResourceSpec {
                cpu_millicores: args.cpu.unwrap_or(100),
                memory_mb: args.memory.unwrap_or(64),
                disk_mb: 0,
            });
            let request = SandboxRequest {
                name: args.name,
                image: args.image,
                command: args.command,
                env: pairs("env", &args.env)?,
                resources,
                ready_timeout_secs: args.ready_timeout,
                create_retries: args.create_retries,
                driver: args
                    .driver
                    .map(|d| d.parse::<DriverKind>())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--driver: {e}"))?,
            };
            let mut sandbox = api(conductor.create_sandbox().body(request).send().await)?;
            while wait && sandbox.state == SandboxState::Creating {
                tokio::time::sleep(POLL_EVERY).await;
                sandbox = api(conductor.get_sandbox().id(sandbox.id).send().await)?;
            }
            print_sandboxes(global.output(), std::slice::from_ref(&sandbox))?;
            if sandbox.state == SandboxState::Failed {
                bail!(
                    "sandbox {} failed: {}",
                    sandbox.id,
                    sandbox.reason.as_deref().unwrap_or("no reason recorded")
                );
            }
            Ok(())
        }
        SandboxesCommand::Show { id, execs } => {
            let sandbox = api(conductor.get_sandbox().id(id).send().await)?;
            let history = api(conductor
                .list_sandbox_execs()
                .id(id)
                .limit(execs)
                .send()
                .await)?;
            if global.output() == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"sandbox": sandbox, "execs": history})
                    )?
                );
                return Ok(());
            }
            print_sandboxes(Format::Table, std::slice::from_ref(&sandbox))?;
            if let Some(reason) = &sandbox.reason {
                println!("reason: {reason}");
            }
            println!();
            let rows: Vec<Vec<String>> = history
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.state.to_string(),
                        e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        e.attempt.to_string(),
                        e.submitted_at.to_rfc3339(),
                        e.request.command.join(" "),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &["EXEC", "STATE", "EXIT", "ATTEMPT", "SUBMITTED", "COMMAND"],
                    &rows
                )
            );
            Ok(())
        }
        SandboxesCommand::Exec(args) => {
            let request = ExecRequest {
                command: args.command,
                env: pairs("env", &args.env)?,
                timeout_secs: args.timeout,
                retry: args.retry.policy(),
            };
            let mut exec = api(conductor
                .exec_in_sandbox()
                .id(args.id)
                .body(request)
                .send()
                .await)?;
            if args.detach {
                return output::print(
                    global.output(),
                    &exec,
                    &["EXEC", "STATE"],
                    vec![vec![exec.id.to_string(), exec.state.to_string()]],
                );
            }
            while exec.state == ExecState::Queued {
                tokio::time::sleep(POLL_EVERY).await;
                exec = api(conductor
                    .get_sandbox_exec()
                    .id(args.id)
                    .exec_id(exec.id)
                    .send()
                    .await)?;
            }
            if global.output() == Format::Json {
                println!("{}", serde_json::to_string_pretty(&exec)?);
            } else {
                print!("{}", exec.stdout.as_deref().unwrap_or_default());
                eprint!("{}", exec.stderr.as_deref().unwrap_or_default());
            }
            std::process::exit(exit_status(&exec));
        }
        SandboxesCommand::Rm { id } => {
            api(conductor.delete_sandbox().id(id).send().await)?;
            println!("sandbox {id} deleted");
            Ok(())
        }
    }
}

/// This command's exit status for an exec that ended: its own exit code, 124 when it was killed
/// at its timeout, else 1 (it could not run, or was lost), with why on stderr.
fn exit_status(exec: &SandboxExec) -> i32 {
    match (exec.state, exec.exit_code) {
        (ExecState::Exited, Some(code)) => code,
        (state, _) => {
            eprintln!(
                "exec {} {state}: {}",
                exec.id,
                exec.reason.as_deref().unwrap_or("no reason recorded")
            );
            if state == ExecState::TimedOut {
                TIMED_OUT_STATUS
            } else {
                1
            }
        }
    }
}

fn print_sandboxes(format: Format, all: &[Sandbox]) -> anyhow::Result<()> {
    let rows = all
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.request.name.clone().unwrap_or_default(),
                s.request.image.clone(),
                s.state.to_string(),
                s.worker_id.map(|w| w.to_string()).unwrap_or_default(),
                s.created_at.to_rfc3339(),
            ]
        })
        .collect();
    output::print(
        format,
        &all,
        &["ID", "NAME", "IMAGE", "STATE", "WORKER", "CREATED"],
        rows,
    )
}
