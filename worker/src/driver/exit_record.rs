//! The exit status of a `run_once` process, kept on disk so it survives the worker.
//!
//! A process's status goes to its parent, and the worker is the parent only while it lives: a job
//! that ends while its worker restarts would otherwise end "with an unknown status" and be retried
//! as a failure. So the process driver starts a `run_once` command under a small recorder (the
//! `aerekos` executable's hidden `record-exit` command, [`run`]). The recorder leads the process
//! group, runs the command as its child, and writes how it ended to `<instance dir>/exit` (a
//! temp file synced, then renamed). The driver reads that record ([`read`]) whether it waited
//! for the recorder itself or adopted it after a restart.
//!
//! Signals sent to the group (a stop, a cancel, a timeout's SIGTERM) reach the command; the
//! recorder outlives them to write its record (it catches them through tokio's handlers, which,
//! unlike ignored signals, the command does not inherit). A SIGKILL of the group leaves no
//! record; the worker that sent it knows why it ended.

use std::{
    ffi::OsString,
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
};

use tokio::signal::unix::{SignalKind, signal};

/// The record's name in the instance's directory.
pub const FILE: &str = "exit";
/// The `aerekos` subcommand that runs [`run`].
pub const COMMAND: &str = "record-exit";
/// The status the recorder gives when the command could not be started (as shells do).
const COULD_NOT_START: i32 = 127;

/// Runs `program` with `args`, records how it ended in `record`, and exits with its code (128 +
/// the signal when a signal ended it).
pub fn run(record: PathBuf, program: OsString, args: Vec<OsString>) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the recorder");
    // Registered, a signal no longer ends the recorder; the streams are never read.
    let _caught: Vec<_> = runtime.block_on(async {
        [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ]
        .into_iter()
        .filter_map(|kind| signal(kind).ok())
        .collect()
    });
    let (code, signal) = match std::process::Command::new(&program).args(&args).status() {
        Ok(status) => (status.code(), status.signal()),
        Err(e) => {
            eprintln!(
                "aerekos: could not start {}: {e}",
                program.to_string_lossy()
            );
            (Some(COULD_NOT_START), None)
        }
    };
    let line = match (code, signal) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown".to_owned(),
    };
    if let Err(e) = write(&record, &line) {
        eprintln!("aerekos: could not record the exit status: {e}");
    }
    std::process::exit(match (code, signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    })
}

fn write(record: &Path, line: &str) -> std::io::Result<()> {
    let temp = record.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, record)
}

/// How the command recorded in `dir` ended: its exit code or its signal; `None` when there is no
/// record (it was SIGKILLed, or never ran under the recorder).
pub fn read(dir: &Path) -> Option<(Option<i32>, Option<i32>)> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let (kind, value) = text.trim().split_once(' ')?;
    let value: i32 = value.parse().ok()?;
    match kind {
        "code" => Some((Some(value), None)),
        "signal" => Some((None, Some(value))),
        _ => None,
    }
}
