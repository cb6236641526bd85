//! `aerekos logs [<service>] [-f]`: records from logs_manager, through the conductor's gateway,
//! on `aerekos-sdk` only. Without `-f`, the last `--limit` matching lines, oldest first; with
//! `-f`, those and then new ones as logs_manager stores them (its server-sent-event tail, picked
//! up after the last line printed, so nothing is missed or printed twice).

use std::io::Write as _;

use aerekos_sdk::logs_manager::types::{LogLevel, LogRecord, LogStream};
use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use crate::{
    client::{Global, api, connect_logs},
    output::Format,
};

#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    global: Global,
    /// Only this service's lines (`conductor` and `worker` are the platform's own).
    service: Option<String>,
    /// Keep printing new lines as they arrive (Ctrl-C stops).
    #[arg(long, short)]
    follow: bool,
    /// Lines from this long ago (`10m`, `2h`) or this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Lines before this long ago or this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// An instance id.
    #[arg(long)]
    instance: Option<String>,
    /// A worker id.
    #[arg(long)]
    worker: Option<String>,
    /// This level and above: trace, debug, info, warn, error.
    #[arg(long, value_parser = ["trace", "debug", "info", "warn", "error"])]
    level: Option<String>,
    /// Lines about this request (its `X-Request-Id`).
    #[arg(long)]
    request_id: Option<String>,
    /// Lines containing this text.
    #[arg(long)]
    grep: Option<String>,
    /// Lines matching this regular expression.
    #[arg(long)]
    regex: Option<String>,
    /// How many of the latest lines to print first (1-1000).
    #[arg(long, short = 'n', default_value_t = 100)]
    limit: u32,
}

/// The filters a query and a tail share, applied to either's builder (two generated types with
/// the same setters).
macro_rules! with_filters {
    ($builder:expr, $args:expr) => {{
        let mut b = $builder;
        let args = &$args;
        if let Some(s) = &args.service {
            b = b.service(s.clone());
        }
        if let Some(i) = &args.instance {
            b = b.instance(i.clone());
        }
        if let Some(w) = &args.worker {
            b = b.worker(w.clone());
        }
        if let Some(l) = &args.level {
            b = b.level(level(l));
        }
        if let Some(r) = &args.request_id {
            b = b.request_id(r.clone());
        }
        if let Some(g) = &args.grep {
            b = b.contains(g.clone());
        }
        if let Some(r) = &args.regex {
            b = b.regex(r.clone());
        }
        b
    }};
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither a duration (10m, 2h) nor an RFC 3339 time"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(ago).map_err(|e| e.to_string())?)
}

fn level(name: &str) -> LogLevel {
    match name {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

fn print(out: &mut impl std::io::Write, format: Format, r: &LogRecord) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default()),
        Format::Table => {
            let who = match (&r.service, &r.instance) {
                (Some(s), Some(i)) => format!("{s}/{}", &i[..i.len().min(8)]),
                (Some(s), None) => s.clone(),
                (None, Some(i)) => i[..i.len().min(8)].to_owned(),
                (None, None) => "-".into(),
            };
            let stream = match r.stream {
                LogStream::Stderr => " stderr",
                _ => "",
            };
            writeln!(
                out,
                "{} {who}{stream} | {}",
                r.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                r.message
            )
        }
    }
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    if !(1..=1000).contains(&args.limit) {
        bail!("--limit must be between 1 and 1000");
    }
    let client = connect_logs(&args.global)?;
    let format = args.global.output();
    let mut query = with_filters!(client.query_logs().limit(args.limit), args);
    if let Some(t) = args.since {
        query = query.since(t);
    }
    if let Some(t) = args.until {
        query = query.until(t);
    }
    // The newest page, printed oldest first. A page can come back short when the query read its
    // share of the store; go on until it is full or the store ends.
    let mut latest: Vec<LogRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q = q.cursor(c.clone());
        }
        let page = api(q.send().await)?;
        latest.extend(page.records);
        match page.next_cursor {
            Some(next) if latest.len() < args.limit as usize => cursor = Some(next),
            _ => break,
        }
    }
    latest.truncate(args.limit as usize);
    let newest_id = latest.first().map(|r| r.id);
    let mut out = std::io::stdout().lock();
    for r in latest.iter().rev() {
        print(&mut out, format, r)?;
    }
    out.flush()?;
    drop(out);
    if !args.follow {
        return Ok(());
    }
    let mut tail = with_filters!(client.tail_logs(), args);
    if let Some(id) = newest_id {
        tail = tail.after(id);
    }
    let mut stream = api(tail.send().await)?.into_inner();
    // Server-sent events: `data: <LogRecord JSON>` lines, a blank line after each event, and
    // `:` comment lines to keep the connection alive.
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the tail broke off")?;
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let record: LogRecord = serde_json::from_slice(data.trim_ascii_end())
                .context("the tail sent a line that is not a log record")?;
            let mut out = std::io::stdout().lock();
            print(&mut out, format, &record)?;
            out.flush()?;
        }
    }
    bail!("the tail ended (logs_manager or the conductor went away)")
}
