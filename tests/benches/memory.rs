//! Resident memory of an idle `aerekos up` (the release executable, `AEREKOS_BIN`), for
//! docs/benchmarks.md: every process of the platform once each built-in service is healthy and the
//! platform has been idle for a while. Run: `cargo bench -p aerekos-tests --bench memory` (or
//! `cargo xtask bench`).
//!
//! Per process: VmRSS (what the aim is stated in), its anonymous part (the process's own heap and
//! stacks) and its file-backed part (the executable's pages, shared by every process running it),
//! and the proportional set size (shared pages divided among the processes sharing them), which
//! is what the processes cost the machine together.

use std::time::Duration;

use aerekos_tests::{PASSWORD, eventually, instance_port_block, up_with, write_benchmark_section};

/// The processes the aim names: the all-in-one process (conductor and worker) and these two.
const AIM_SERVICES: &[&str] = &["key_manager", "storage_manager"];
const AIM_MIB: f64 = 60.0;
const IDLE: Duration = Duration::from_secs(30);

#[derive(Default, Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
    pss: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, o: Memory) -> Memory {
        Memory {
            rss: self.rss + o.rss,
            anon: self.anon + o.anon,
            file: self.file + o.file,
            pss: self.pss + o.pss,
        }
    }
}

fn kib(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing"))
}

fn memory(pid: i32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    Memory {
        rss: kib(&status, "VmRSS:"),
        anon: kib(&status, "RssAnon:"),
        file: kib(&status, "RssFile:"),
        pss: kib(&rollup, "Pss:"),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main]
async fn main() {
    assert!(
        std::env::var_os("AEREKOS_BIN").is_some(),
        "set AEREKOS_BIN to the release executable (`cargo xtask bench` does)"
    );
    let dir = tempfile::tempdir().unwrap();
    // The platform's own heartbeat interval, not the tests' 1 s.
    let platform = up_with(
        dir.path(),
        &instance_port_block(),
        &[("HEARTBEAT_INTERVAL", "10")],
    );
    let admin = aerekos_sdk::Conductor::login(&platform.url, "admin", PASSWORD)
        .await
        .unwrap();
    let services = eventually(120, "every platform service healthy", || async {
        let list = admin.list_services().send().await.ok()?.into_inner();
        let enabled: Vec<String> = list
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.name.clone())
            .collect();
        for name in &enabled {
            let d = admin
                .get_deployment()
                .name(name)
                .send()
                .await
                .ok()?
                .into_inner();
            if d.healthy == 0 {
                return None;
            }
        }
        (!enabled.is_empty()).then_some(enabled)
    })
    .await;
    tokio::time::sleep(IDLE).await;

    let mut rows = vec![(
        "`aerekos up` (conductor and worker)".to_owned(),
        memory(platform.child.id() as i32),
        true,
    )];
    for service in &services {
        let pid = aerekos_tests::instance_pid(&admin, &platform, service).await;
        rows.push((
            service.clone(),
            memory(pid),
            AIM_SERVICES.contains(&service.as_str()),
        ));
    }
    drop(platform);

    let named = rows
        .iter()
        .filter(|r| r.2)
        .fold(Memory::default(), |a, r| a + r.1);
    let all = rows.iter().fold(Memory::default(), |a, r| a + r.1);
    for (name, m, _) in &rows {
        println!(
            "{name}: rss {} anon {} file {} pss {}",
            mib(m.rss),
            mib(m.anon),
            mib(m.file),
            mib(m.pss)
        );
    }
    let met = |m: &Memory| {
        if m.rss as f64 / 1024.0 <= AIM_MIB {
            "met"
        } else {
            "**not met**"
        }
    };
    let mut md = String::from(
        "## Memory: an idle `aerekos up`\n\n`cargo bench -p aerekos-tests --bench memory` (also run by `cargo xtask bench`): the release `aerekos up` in a fresh directory, the process driver, measured after every built-in service is healthy and then 30 s idle. Per process from `/proc/<pid>/status` and `smaps_rollup`: VmRSS, its anonymous part (the process's own heap and stacks) and its file-backed part (the executable's pages, the same file in every process), and the proportional set size (shared pages divided among the processes sharing them).\n\n| process | VmRSS | anonymous | file-backed | PSS |\n|---|---|---|---|---|\n",
    );
    for (name, m, _) in &rows {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            mib(m.rss),
            mib(m.anon),
            mib(m.file),
            mib(m.pss)
        ));
    }
    md.push_str(&format!(
        "| **the aim's processes** (`aerekos up`, {}) | **{}** | {} | {} | **{}** |\n",
        AIM_SERVICES.join(", "),
        mib(named.rss),
        mib(named.anon),
        mib(named.file),
        mib(named.pss)
    ));
    md.push_str(&format!(
        "| every process | {} | {} | {} | {} |\n\nAim: the aim's processes under {AIM_MIB:.0} MB by the sum of VmRSS: {}; by PSS: {}.\n",
        mib(all.rss),
        mib(all.anon),
        mib(all.file),
        mib(all.pss),
        met(&named),
        if named.pss as f64 / 1024.0 <= AIM_MIB { "met" } else { "**not met**" },
    ));
    print!("{md}");
    write_benchmark_section("memory", &md);
}
