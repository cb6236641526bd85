//! PID 1's other duty: reaping orphans. A process whose parent ends is given to the guest's init,
//! the agent, which must collect its exit or it stays a zombie for the guest's life (a sandbox
//! whose commands leave background processes behind would fill the process table).
//!
//! The agent's own children (the instance's command, each exec) are waited for by whoever
//! started them, so the reaper only peeks at an ended child (`WNOWAIT`) and collects it only when
//! it is not one of those. [`spawn`] registers a child under the same lock the reaper checks, so
//! a child that ends at once is never taken from the one that waits for it.

use std::{
    collections::BTreeSet,
    process::{Child, Command},
    sync::Mutex,
    time::Duration,
};

use nix::{
    errno::Errno,
    sys::wait::{Id, WaitPidFlag, waitid, waitpid},
    unistd::Pid,
};

/// The children someone in the agent waits for.
static OWN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Spawns `command` as a child the reaper leaves to the caller, who must [`forget`] it once it
/// has waited for it.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut own = OWN.lock().expect("reaper lock");
    let child = command.spawn()?;
    own.insert(child.id() as i32);
    Ok(child)
}

/// `pid` was waited for by whoever spawned it.
pub fn forget(pid: u32) {
    OWN.lock().expect("reaper lock").remove(&(pid as i32));
}

/// Collects ended children that are nobody's, for the guest's life.
pub fn run() {
    loop {
        let peeked = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
        let pid = match peeked.map(|status| status.pid()) {
            Ok(Some(pid)) => pid,
            // No child at all, or nothing to say: look again later.
            Ok(None) | Err(Errno::ECHILD) => {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if OWN.lock().expect("reaper lock").contains(&pid.as_raw()) {
            // Its owner collects it shortly; until then it is the first ended child the kernel
            // names, so wait a little before looking again.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let _ = waitpid(Pid::from_raw(pid.as_raw()), Some(WaitPidFlag::WNOHANG));
    }
}
