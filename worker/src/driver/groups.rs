//! Process groups the worker starts and must find again after its own restart: how the process
//! driver tracks its instances and the microvm driver its QEMU processes. Each runs in a group
//! of its own (so it outlives the worker), with its pid in `<root>/<id>/pid`, written whole
//! before it is counted as started, and recognised after a restart by that pid *and* the
//! `AEREKOS_INSTANCE_ID` in its environment, so a recycled pid is never mistaken for it.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::Mutex,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use uuid::Uuid;

use super::INSTANCE_ENV;

/// How long a stop waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const PID_FILE: &str = "pid";

/// What became of a tracked group.
#[derive(Debug)]
pub enum Poll {
    Running,
    /// It ended: its wait status when this worker process was its parent.
    Ended(Option<ExitStatus>),
    /// Nothing is known of it (no pid file).
    Unknown,
}

pub struct Groups {
    root: PathBuf,
    /// Groups this worker process started (their exit status can be collected).
    children: Mutex<HashMap<Uuid, tokio::process::Child>>,
    /// Groups an earlier worker process started, found by their pid files at start: with
    /// `children`, every group that may be running, so a tick need not read the directory of
    /// everything that ever ran here (jobs leave one each).
    adopted: Mutex<HashSet<Uuid>>,
}

impl Groups {
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let adopted = std::fs::read_dir(&root)?
            .flatten()
            .filter(|e| e.path().join(PID_FILE).exists())
            .filter_map(|e| e.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()))
            .collect();
        Ok(Self {
            root,
            children: Mutex::default(),
            adopted: Mutex::new(adopted),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `id`'s files.
    pub fn dir(&self, id: Uuid) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Tracks `child`, just spawned in a group of its own for `id`: its pid file is written
    /// whole (a temp file renamed), or the group is killed rather than left running untracked.
    pub async fn track(&self, id: Uuid, mut child: tokio::process::Child) -> std::io::Result<u32> {
        let Some(pid) = child.id() else {
            return Err(std::io::Error::other("it exited at once"));
        };
        let dir = self.dir(id);
        let temp = dir.join("pid.tmp");
        let recorded = std::fs::write(&temp, pid.to_string())
            .and_then(|()| std::fs::rename(&temp, dir.join(PID_FILE)));
        if let Err(e) = recorded {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = child.wait().await;
            return Err(e);
        }
        self.children
            .lock()
            .expect("children lock")
            .insert(id, child);
        Ok(pid)
    }

    /// The group's leader, while it is still `id`'s (never group 0 or 1).
    pub fn pid_of(&self, id: Uuid) -> Option<u32> {
        if let Some(child) = self.children.lock().expect("children lock").get(&id) {
            return child.id().filter(|p| *p > 1);
        }
        let pid: u32 = std::fs::read_to_string(self.dir(id).join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (pid > 1 && is_ours(pid, id)).then_some(pid)
    }

    /// Whether `id`'s group runs; once it has ended, it is forgotten (and what its leader left
    /// in its group is killed).
    pub fn poll(&self, id: Uuid) -> Poll {
        let mut children = self.children.lock().expect("children lock");
        if let Some(child) = children.get_mut(&id) {
            let pid = child.id();
            let ended = match child.try_wait() {
                Ok(None) => return Poll::Running,
                Ok(Some(status)) => Some(status),
                Err(_) => None,
            };
            // What the leader leaves in its group (a background child, one that outlived a
            // SIGTERM) goes with it. Safe: a pid stays reserved while its group has members, so
            // this group can only be the instance's.
            if let Some(pid) = pid.filter(|p| *p > 1) {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            children.remove(&id);
            let _ = std::fs::remove_file(self.dir(id).join(PID_FILE));
            return Poll::Ended(ended);
        }
        drop(children);
        let pid_file = self.dir(id).join(PID_FILE);
        match std::fs::read_to_string(&pid_file) {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(pid) if is_ours(pid, id) => Poll::Running,
                _ => {
                    let _ = std::fs::remove_file(pid_file);
                    Poll::Ended(None)
                }
            },
            Err(_) => Poll::Unknown,
        }
    }

    /// Signals `id`'s whole group: SIGTERM, or SIGKILL when `force`.
    pub fn signal(&self, id: Uuid, force: bool) {
        if let Some(pid) = self.pid_of(id) {
            let signal = if force {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            let _ = killpg(Pid::from_raw(pid as i32), signal);
            tracing::info!(instance_id = %id, pid, ?signal, "process group signalled");
        }
    }

    /// Stops `id`'s group (SIGTERM, SIGKILL after a grace) and forgets it.
    pub async fn stop(&self, id: Uuid) {
        if let Some(pid) = self.pid_of(id) {
            let group = Pid::from_raw(pid as i32);
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while matches!(self.poll(id), Poll::Running) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(self.poll(id), Poll::Running) {
                let _ = killpg(group, Signal::SIGKILL);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!(instance_id = %id, pid, "process group stopped");
        }
        if let Some(mut child) = self.children.lock().expect("children lock").remove(&id) {
            let _ = child.try_wait();
        }
        self.adopted.lock().expect("adopted lock").remove(&id);
        let _ = std::fs::remove_file(self.dir(id).join(PID_FILE));
    }

    /// Every group that may be running: started by this process, or adopted and not yet seen to
    /// end.
    pub fn ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .children
            .lock()
            .expect("children lock")
            .keys()
            .copied()
            .collect();
        let mut adopted = self.adopted.lock().expect("adopted lock");
        // An adopted group that ended (its pid file gone) is no longer tracked.
        adopted.retain(|id| self.dir(*id).join(PID_FILE).exists());
        ids.extend(
            adopted
                .iter()
                .filter(|id| !ids.contains(id))
                .copied()
                .collect::<Vec<_>>(),
        );
        ids
    }

    /// Deletes what ended groups not in `live` left in their directories, once their `by` file
    /// has been untouched for `keep`; how many it deleted.
    pub fn sweep(&self, keep: Duration, live: &HashSet<Uuid>, by: &str) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let path = entry.path();
            let old = std::fs::metadata(path.join(by))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= keep));
            if old
                && !live.contains(&id)
                && !self.has_pid_file(id)
                && std::fs::remove_dir_all(&path).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Whether `id` is running (or ended unseen): its pid file is there.
    pub fn has_pid_file(&self, id: Uuid) -> bool {
        self.dir(id).join(PID_FILE).exists()
    }
}

/// Whether `pid` is alive and is instance `id` (its environment names it).
pub fn is_ours(pid: u32, id: Uuid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name; a zombie has already exited.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z' | 'X')) {
        return false;
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let needle = format!("{INSTANCE_ENV}={id}");
    environ
        .split(|b| *b == 0)
        .any(|var| var == needle.as_bytes())
}
