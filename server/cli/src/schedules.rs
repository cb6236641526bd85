//! `aerekos schedules …`: the conductor's schedules, on `aerekos-sdk` only. A schedule submits a
//! job (the flags of `aerekos jobs run`, the command after `--`) or calls a platform service.

use aerekos_sdk::conductor::types::{
    MisfirePolicy, OverlapPolicy, Schedule, ScheduleRequest, ServiceCall,
};
use anyhow::bail;

use crate::{
    client::{Global, api, connect},
    jobs::{JobArgs, job_request},
    output::{self, Format},
};

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The schedule's name (`--name` names the jobs it submits).
    #[arg(id = "schedule", value_name = "SCHEDULE")]
    name: String,
    /// A cron expression (5 fields, or 6 with seconds first), e.g. "0 3 * * *".
    #[arg(long, conflicts_with = "every")]
    cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Or every this many seconds.
    #[arg(long)]
    every: Option<u32>,
    /// While the previous job runs: skip, queue or cancel_previous (default skip).
    #[arg(long, value_parser = ["skip", "queue", "cancel_previous"])]
    overlap: Option<String>,
    /// Fires missed while the conductor was down: run_once or skip (default run_once).
    #[arg(long, value_parser = ["run_once", "skip"])]
    misfire: Option<String>,
    /// Call this service's endpoint instead of submitting a job.
    #[arg(long, requires = "call_path")]
    call_service: Option<String>,
    /// The path under the service's API, e.g. /secrets/db/rotate.
    #[arg(long)]
    call_path: Option<String>,
    /// GET, POST, PUT, PATCH or DELETE (default POST).
    #[arg(long)]
    call_method: Option<String>,
    /// A JSON body for the call.
    #[arg(long)]
    call_body: Option<String>,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(clap::Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule with its next fire.
    Ls,
    /// A schedule and its last fires.
    Show {
        name: String,
        #[arg(long, default_value_t = 20)]
        fires: u32,
    },
    /// Make a schedule that submits the job after `--`, or calls a service (--call-service).
    Create(CreateArgs),
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Rm {
        name: String,
    },
}

pub async fn schedules(global: Global, command: SchedulesCommand) -> anyhow::Result<()> {
    let conductor = connect(&global)?;
    match command {
        SchedulesCommand::Ls => {
            let all = api(conductor.list_schedules().send().await)?;
            print_schedules(global.output(), &all)
        }
        SchedulesCommand::Show { name, fires } => {
            let schedule = api(conductor.get_schedule().name(&name).send().await)?;
            let fires = api(conductor
                .list_schedule_fires()
                .name(&name)
                .limit(fires)
                .send()
                .await)?;
            if global.output() == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"schedule": schedule, "fires": fires})
                    )?
                );
                return Ok(());
            }
            print_schedules(Format::Table, std::slice::from_ref(&schedule))?;
            println!();
            let rows: Vec<Vec<String>> = fires
                .iter()
                .map(|f| {
                    vec![
                        f.scheduled_for.to_rfc3339(),
                        f.outcome.to_string(),
                        f.job_id.map(|j| j.to_string()).unwrap_or_default(),
                        f.http_status.map(|s| s.to_string()).unwrap_or_default(),
                        f.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["DUE", "OUTCOME", "JOB", "HTTP", "DETAIL"], &rows)
            );
            Ok(())
        }
        SchedulesCommand::Create(args) => {
            let request = schedule_request(args)?;
            let made = api(conductor.create_schedule().body(request).send().await)?;
            print_schedules(global.output(), &[made])
        }
        SchedulesCommand::Pause { name } => {
            let s = api(conductor.pause_schedule().name(&name).send().await)?;
            print_schedules(global.output(), &[s])
        }
        SchedulesCommand::Resume { name } => {
            let s = api(conductor.resume_schedule().name(&name).send().await)?;
            print_schedules(global.output(), &[s])
        }
        SchedulesCommand::Rm { name } => {
            api(conductor.delete_schedule().name(&name).send().await)?;
            println!("schedule {name} deleted");
            Ok(())
        }
    }
}

fn schedule_request(args: CreateArgs) -> anyhow::Result<ScheduleRequest> {
    let overlap = args.overlap.as_deref().map(|o| match o {
        "queue" => OverlapPolicy::Queue,
        "cancel_previous" => OverlapPolicy::CancelPrevious,
        _ => OverlapPolicy::Skip,
    });
    let misfire = args.misfire.as_deref().map(|m| match m {
        "skip" => MisfirePolicy::Skip,
        _ => MisfirePolicy::RunOnce,
    });
    let (job, call) = match args.call_service {
        Some(service) => {
            if !args.job.is_empty() {
                bail!(
                    "give either a job (a command after `--`, or --image) or --call-service, not both"
                );
            }
            let call = ServiceCall {
                service,
                method: args
                    .call_method
                    .map(|m| m.to_uppercase().parse())
                    .transpose()
                    .map_err(|_| {
                        anyhow::anyhow!("--call-method: use GET, POST, PUT, PATCH or DELETE")
                    })?,
                path: args.call_path.unwrap_or_default(),
                body: args.call_body,
            };
            (None, Some(call))
        }
        None => (Some(job_request(args.job)?), None),
    };
    Ok(ScheduleRequest {
        name: args.name,
        cron: args.cron,
        every_secs: args.every,
        timezone: args.timezone,
        job,
        call,
        overlap,
        misfire,
    })
}

fn print_schedules(format: Format, all: &[Schedule]) -> anyhow::Result<()> {
    let rows = all
        .iter()
        .map(|s| {
            let when = match (&s.request.cron, s.request.every_secs) {
                (Some(cron), _) => format!(
                    "{cron} ({})",
                    s.request.timezone.as_deref().unwrap_or("UTC")
                ),
                (None, Some(secs)) => format!("every {secs}s"),
                _ => String::new(),
            };
            let what = match (&s.request.job, &s.request.call) {
                (Some(job), _) => job.image.clone().unwrap_or_else(|| job.command.join(" ")),
                (None, Some(call)) => format!(
                    "{} /api/{}{}",
                    call.method
                        .map_or_else(|| "POST".to_owned(), |m| m.to_string()),
                    call.service,
                    call.path
                ),
                _ => String::new(),
            };
            vec![
                s.name.clone(),
                when,
                what,
                if s.paused {
                    "paused".into()
                } else {
                    "active".into()
                },
                s.next_fire_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ]
        })
        .collect();
    output::print(
        format,
        &all,
        &["NAME", "WHEN", "WHAT", "STATE", "NEXT FIRE"],
        rows,
    )
}
