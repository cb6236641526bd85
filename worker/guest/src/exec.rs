//! Commands the worker runs in a running guest (a sandbox's `exec`), over the `aerekos.ctl`
//! virtio-serial port: one JSON request per line in, one JSON answer per line out, each command
//! on a thread of its own so several run at once.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

#[derive(serde::Deserialize)]
struct Request {
    id: String,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_ms: u64,
    max_bytes: usize,
}

#[derive(serde::Serialize)]
struct Answer {
    id: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    /// It could not run: why.
    error: Option<String>,
    stdout: String,
    stderr: String,
}

/// Serves requests on the control port until the guest powers off. The port is opened once, for
/// the guest's life (a virtio-serial port opens once at a time, and a command still answering
/// holds it): while no worker is connected a read finds nothing, and is tried again.
pub fn serve(path: std::path::PathBuf, base_env: BTreeMap<String, String>) {
    let port = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(port) => break port,
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let Ok(writer) = port.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut reader = BufReader::new(port);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            // No worker connected, or it went away: read again shortly.
            _ => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        let Ok(request) = serde_json::from_str::<Request>(&line) else {
            continue;
        };
        let (writer, base_env) = (writer.clone(), base_env.clone());
        std::thread::spawn(move || {
            let answer = run(request, &base_env);
            if let Ok(mut line) = serde_json::to_vec(&answer) {
                line.push(b'\n');
                let mut writer = writer.lock().expect("control port lock");
                let _ = writer.write_all(&line);
                let _ = writer.flush();
            }
        });
    }
}

/// Keeps the last `max` bytes of what `stream` gives.
fn tail_of(mut stream: impl Read + Send + 'static, max: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * max {
                kept.drain(..kept.len() - max);
            }
        }
        if kept.len() > max {
            kept.drain(..kept.len() - max);
        }
        kept
    })
}

fn run(request: Request, base_env: &BTreeMap<String, String>) -> Answer {
    let mut answer = Answer {
        id: request.id,
        exit_code: None,
        signal: None,
        timed_out: false,
        error: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    let Some((program, args)) = request.command.split_first() else {
        answer.error = Some("no command".into());
        return answer;
    };
    let child = crate::reaper::spawn(
        Command::new(program)
            .args(args)
            .env_clear()
            .envs(base_env)
            .envs(&request.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0),
    );
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            answer.error = Some(format!("starting {program}: {e}"));
            return answer;
        }
    };
    let out = tail_of(child.stdout.take().expect("piped"), request.max_bytes);
    let err = tail_of(child.stderr.take().expect("piped"), request.max_bytes);
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                answer.timed_out = true;
                // Its whole group: what it started goes with it.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    crate::reaper::forget(child.id());
    if let Some(status) = status {
        answer.exit_code = status.code();
        answer.signal = status.signal();
    }
    answer.stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    answer.stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    answer
}
