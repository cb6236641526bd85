//! Exponential back-off of failed logins.
//!
//! Failures are counted per (username, client address) and per client address. Past a few free
//! failures each further one blocks the next attempt for twice as long as the last, up to
//! [`MAX_BLOCK`]. The username is the one *asked for*, so the answer is the same whether the user
//! exists or not, and an attacker hammering `admin` from one address does not lock `admin` out
//! from anywhere else. A success clears the (username, address) count.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures allowed per (username, address) before the back-off starts.
pub const FREE_FAILURES_PER_USER: u32 = 3;
/// Failures allowed per address (any usernames) before the back-off starts: a password spray.
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The longest wait.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// A count untouched this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Bound on remembered keys; beyond it, the ones not blocking anybody go.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Default)]
pub struct LoginGuard {
    per_user: Mutex<HashMap<(String, IpAddr), Failures>>,
    per_address: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginGuard {
    /// How long `username` from `addr` must still wait, if at all.
    pub fn wait(&self, username: &str, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let user = self
            .per_user
            .lock()
            .expect("login guard")
            .get(&(username.to_owned(), addr))
            .map(|f| f.blocked_until);
        let address = self
            .per_address
            .lock()
            .expect("login guard")
            .get(&addr)
            .map(|f| f.blocked_until);
        [user, address]
            .into_iter()
            .flatten()
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now)
    }

    pub fn failed(&self, username: &str, addr: IpAddr) {
        let now = Instant::now();
        record(
            &mut self.per_user.lock().expect("login guard"),
            (username.to_owned(), addr),
            FREE_FAILURES_PER_USER,
            now,
        );
        record(
            &mut self.per_address.lock().expect("login guard"),
            addr,
            FREE_FAILURES_PER_ADDRESS,
            now,
        );
    }

    pub fn succeeded(&self, username: &str, addr: IpAddr) {
        self.per_user
            .lock()
            .expect("login guard")
            .remove(&(username.to_owned(), addr));
    }
}

fn record<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Failures>,
    key: K,
    free: u32,
    now: Instant,
) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, f| f.blocked_until > now || now - f.last < FORGET_AFTER);
    }
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        blocked_until: now,
        last: now,
    });
    if now - entry.last > FORGET_AFTER {
        entry.count = 0;
    }
    entry.count += 1;
    entry.last = now;
    if entry.count > free {
        entry.blocked_until = now + block_for(entry.count - free);
    }
}

/// 1 s after the first failure past the free ones, then 2 s, 4 s, … up to [`MAX_BLOCK`].
fn block_for(over: u32) -> Duration {
    Duration::from_secs(1u64 << (over - 1).min(20)).min(MAX_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_per_user_and_address_but_not_elsewhere() {
        let guard = LoginGuard::default();
        let attacker: IpAddr = [10, 0, 0, 1].into();
        let colleague: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..FREE_FAILURES_PER_USER {
            assert_eq!(guard.wait("admin", attacker), None);
            guard.failed("admin", attacker);
        }
        assert_eq!(
            guard.wait("admin", attacker),
            None,
            "the free failures do not block"
        );
        guard.failed("admin", attacker);
        let first = guard
            .wait("admin", attacker)
            .expect("blocked after the free failures");
        guard.failed("admin", attacker);
        let second = guard.wait("admin", attacker).expect("still blocked");
        assert!(
            second > first,
            "each failure doubles the wait: {first:?} then {second:?}"
        );
        assert_eq!(
            guard.wait("admin", colleague),
            None,
            "the same user from elsewhere is not blocked"
        );
        assert_eq!(
            guard.wait("nobody", attacker),
            None,
            "another username from the address is not blocked yet"
        );
    }

    #[test]
    fn a_password_spray_from_one_address_is_blocked() {
        let guard = LoginGuard::default();
        let addr: IpAddr = [10, 0, 0, 3].into();
        for i in 0..=FREE_FAILURES_PER_ADDRESS {
            guard.failed(&format!("user{i}"), addr);
        }
        assert!(guard.wait("someone-else", addr).is_some());
        assert_eq!(block_for(100), MAX_BLOCK);
    }
}
