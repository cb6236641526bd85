//! `cargo xtask test`: the README's test command and what `.ci/run` runs. It installs what the
//! suite needs (Node.js packages; boto3, the AWS CLI, rclone and schemathesis; Chromium for the dashboard; the Docker engine and busybox for the Docker driver's tests; QEMU and Debian's kernel for the microvm driver's) and
//! starts dockerd where none runs, checks the committed specs and SDKs, runs every Rust test and
//! the TypeScript SDK's tests, and ends with one line of totals. Where no Docker engine can be had,
//! the Docker tests are reported as skipped — except in CI (`CI=true`), where that is a failure.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::repo_root;

/// The target of the static build (a distinct target dir keeps its flags from touching the others).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Default, Debug, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    skipped: u64,
    /// The last lines of each command that failed, printed again at the end: CI's report keeps
    /// only the tail of a run, where the failure itself would otherwise have scrolled away.
    failed_tails: Vec<Vec<String>>,
}

/// How many of a failed command's last lines are printed again at the end.
const FAILURE_TAIL_LINES: usize = 60;

/// Each stage's name and how long it took, printed at the end (CI has a time limit to keep to).
#[derive(Default)]
struct Stages(
    Vec<(&'static str, std::time::Duration)>,
    Option<(&'static str, std::time::Instant)>,
);

impl Stages {
    fn start(&mut self, name: &'static str) {
        self.end();
        self.1 = Some((name, std::time::Instant::now()));
    }

    fn end(&mut self) {
        if let Some((name, started)) = self.1.take() {
            self.0.push((name, started.elapsed()));
        }
    }

    fn print(&mut self) {
        self.end();
        println!("stage durations:");
        for (name, took) in &self.0 {
            println!("  {name:<40} {:>6.0} s", took.as_secs_f64());
        }
        println!(
            "  {:<40} {:>6.0} s",
            "total",
            self.0.iter().map(|(_, t)| t.as_secs_f64()).sum::<f64>()
        );
    }
}

pub fn run() -> anyhow::Result<()> {
    let mut stages = Stages::default();
    let result = run_stages(&mut stages);
    stages.print();
    result
}

fn run_stages(stages: &mut Stages) -> anyhow::Result<()> {
    let root = repo_root();
    stages.start("installing what the tests need");
    ensure_node()?;
    ensure_boto3()?;
    let aws_cli = ensure_aws_cli(&root)?;
    let schemathesis = ensure_schemathesis(&root)?;
    // rclone (Debian's) syncs through the S3 edge in the same test as the AWS CLI.
    let have_rclone = || {
        Command::new("rclone")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have_rclone() && !(apt_install(&["rclone"]) && have_rclone()) {
        bail!(
            "rclone (Debian's package) is needed for the S3 edge test and could not be installed"
        );
    }
    let docker = ensure_docker(&root);
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !docker && in_ci {
        bail!("no Docker engine could be started, and in CI the Docker driver's tests must run");
    }
    let microvm = ensure_microvm();
    if !microvm && in_ci {
        bail!(
            "QEMU and a kernel could not be installed, and in CI the microvm driver's tests must run"
        );
    }

    stages.start("contract: specs and SDKs match the code");
    println!("==> contract: specs and SDKs match the code");
    crate::openapi::run(true)?;
    crate::sdk::run(true)?;
    // Tidy: the tree stays in rustfmt's default style (run `cargo fmt --all` to fix).
    let formatted = Command::new(env!("CARGO"))
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(&root)
        .status()
        .context("running cargo fmt (rustup component add rustfmt)")?;
    if !formatted.success() {
        bail!("the Rust sources are not formatted: run `cargo fmt --all` (the diff is above)");
    }

    let mut totals = Totals::default();
    let mut failures = vec![];

    stages.start("Rust: building");
    println!("==> Rust: cargo test --workspace");
    // The TypeScript tests start the real binary, so it is built here too.
    print_disk_free(&root);
    let mut cargo = cargo_command();
    cargo.args(["build", "--bin", "aerekos"]).current_dir(&root);
    if !cargo.status()?.success() {
        bail!("building the aerekos binary failed");
    }
    let mut cargo = cargo_command();
    cargo
        .args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(&root);
    // The tests of `aerekos up` and the CLI run the executable built above.
    cargo.env("AEREKOS_BIN", root.join("target/debug/aerekos"));
    cargo.env("AEREKOS_AWS_CLI", &aws_cli);
    if docker || microvm {
        // The service image is built from a statically linked aerekos (it runs FROM scratch),
        // and the microVM guest agent runs where there is no libc.
        stages.start("Rust: static builds (image, guest agent)");
        println!("==> building a static aerekos and aerekos-guest");
        let built = build_static(&["aerekos", "aerekos-guest"])?;
        cargo.env("AEREKOS_STATIC_BIN", &built[0]);
        cargo.env("AEREKOS_GUEST_AGENT", &built[1]);
        // The tests that need an engine or QEMU are #[ignore]d for plain `cargo test`; here
        // they run, but for those whose part this machine lacks (never so in CI).
        cargo.args(["--", "--include-ignored"]);
        if !docker {
            cargo.args(["--skip", "docker", "--skip", "sandbox"]);
        }
        if !microvm {
            cargo.args(["--skip", "guest", "--skip", "vm"]);
        }
    } else {
        println!(
            "==> no Docker engine and no QEMU: the tests that need one are reported as ignored (skipped)"
        );
    }
    stages.start("Rust: tests (builds the tests first)");
    if !stream_and_count(cargo, &mut totals)? {
        failures.push("Rust tests");
    }

    print_disk_free(&root);

    stages.start("API fuzzing: schemathesis over every spec");
    println!(
        "==> schemathesis over the conductor, key_manager, storage_manager, secrets_manager, logs_manager, metrics_manager and worker specs against aerekos up"
    );
    let mut fuzz = Command::new(schemathesis.join("python"));
    fuzz.arg(root.join("tests/api/fuzz_specs.py"))
        .env("AEREKOS_BIN", root.join("target/debug/aerekos"))
        .env("ST", schemathesis.join("st"))
        .current_dir(&root);
    if !stream_and_count(fuzz, &mut totals)? {
        failures.push("API fuzzing");
    }

    stages.start("TypeScript SDK tests");
    println!("==> TypeScript: npm test in sdk-ts");
    let sdk_ts = root.join("sdk-ts");
    if needs_npm_ci(&sdk_ts) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&sdk_ts)
            .status()?;
        if !status.success() {
            bail!("npm ci in sdk-ts failed");
        }
    }
    let mut npm = Command::new("npm");
    npm.arg("test")
        .current_dir(&sdk_ts)
        .env("AEREKOS_BIN", root.join("target/debug/aerekos"));
    if !stream_and_count(npm, &mut totals)? {
        failures.push("TypeScript tests");
    }

    stages.start("dashboard: bundle check and browser tests");
    println!("==> dashboard: the committed bundle is current; browser tests in headless Chromium");
    if let Err(e) = dashboard(&root, &mut totals) {
        eprintln!("dashboard: {e:#}");
        failures.push("dashboard");
    }
    // A stage that failed before any test could fail (a type error, a build error) still counts.
    if totals.failed == 0 && !failures.is_empty() {
        totals.failed = failures.len() as u64;
    }

    for tail in &totals.failed_tails {
        println!();
        println!("==> the last lines of a command that failed (its whole output is above):");
        for line in tail {
            println!("{line}");
        }
    }
    println!();
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    );
    if !failures.is_empty() {
        bail!("failed: {}", failures.join(", "));
    }
    Ok(())
}

/// Builds `bins` statically linked (release, in their own target directory, so the flags touch
/// no other build); their paths, in order.
pub fn build_static(bins: &[&str]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let root = repo_root();
    let mut build = cargo_command();
    build
        .args(["build", "--release", "--target", STATIC_TARGET])
        .args(bins.iter().flat_map(|b| ["--bin", b]))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(&root);
    if !build.status()?.success() {
        bail!("the static build of {} failed", bins.join(", "));
    }
    Ok(bins
        .iter()
        .map(|b| {
            root.join("target")
                .join(STATIC_TARGET)
                .join("release")
                .join(b)
        })
        .collect())
}

/// Makes QEMU and a kernel usable for the microvm driver (Debian's qemu-system-x86 and
/// linux-image-amd64; busybox-static is the root filesystem of a guest that names no image).
fn ensure_microvm() -> bool {
    let have_qemu = || {
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let have_kernel = || {
        std::fs::read_dir("/boot").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
    };
    let mut missing = vec![];
    if !have_qemu() {
        missing.push("qemu-system-x86");
    }
    if !have_kernel() {
        missing.push("linux-image-amd64");
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        missing.push("busybox-static");
    }
    // Without recommends: no firmware, GUI or UEFI packages a microVM never uses.
    if !missing.is_empty() && !apt_install_with(&missing, &["--no-install-recommends"]) {
        println!("could not install {}", missing.join(" "));
    }
    have_qemu() && have_kernel()
}

/// A cargo command for the stages. In CI (a clean checkout, built once) incremental caches would
/// only take disk: they roughly double what the workspace's own crates leave in target/.
fn cargo_command() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        cargo.env("CARGO_INCREMENTAL", "0");
    }
    cargo
}

/// What target/ takes and what the disk has left, so a run that fails for lack of space says so.
fn print_disk_free(root: &std::path::Path) {
    let target = root.join("target");
    let used = Command::new("du")
        .arg("-sh")
        .arg(&target)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let free = Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(root)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let first_word = |o: std::process::Output, line: usize| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(line)
            .unwrap_or("?")
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "==> disk: target/ holds {}, {} free",
        used.map(|o| first_word(o, 0))
            .unwrap_or_else(|| "nothing yet".into()),
        free.map(|o| first_word(o, 1)).unwrap_or_else(|| "?".into())
    );
}

/// The dashboard's stages: its bundle checked against its sources (`npm run check-dist`), then its
/// browser tests against a real `aerekos up` in Debian's Chromium (installed if missing). Their
/// screenshots go to target/screenshots here, so a test run leaves docs/screenshots as committed
/// (`npm test` in server/dashboard rewrites those).
fn dashboard(root: &std::path::Path, totals: &mut Totals) -> anyhow::Result<()> {
    if !std::path::Path::new("/usr/bin/chromium").exists() && !apt_install(&["chromium"]) {
        bail!("Debian's chromium is needed for the dashboard tests and could not be installed");
    }
    let npm = |dir: &std::path::Path, args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("npm")
            .args(args)
            .current_dir(dir)
            .status()
            .with_context(|| format!("npm {args:?}"))?;
        if !status.success() {
            bail!(
                "npm {} in {} failed",
                args.join(" "),
                dir.strip_prefix(root).unwrap_or(dir).display()
            );
        }
        Ok(())
    };
    // The dashboard imports the SDK's build output.
    npm(&root.join("sdk-ts"), &["run", "build"])?;
    let dir = root.join("server/dashboard");
    if needs_npm_ci(&dir) {
        npm(&dir, &["ci", "--no-audit", "--no-fund"])?;
    }
    npm(&dir, &["run", "check-dist"])?;
    let mut test = Command::new("npm");
    test.arg("test")
        .current_dir(&dir)
        .env("AEREKOS_BIN", root.join("target/debug/aerekos"))
        .env("DASHBOARD_SCREENSHOTS", root.join("target/screenshots"));
    if !stream_and_count(test, totals)? {
        bail!("the browser tests failed");
    }
    Ok(())
}

/// boto3 drives the S3 protocol tests (tests/s3/boto3_suite.py); it comes from PyPI.
fn ensure_boto3() -> anyhow::Result<()> {
    let have = || {
        Command::new("python3")
            .args(["-c", "import boto3"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have() {
        return Ok(());
    }
    println!("==> installing boto3 (PyPI) for the S3 protocol tests");
    let ok = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "boto3",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !have() {
        bail!("boto3 is needed for the S3 protocol tests and could not be installed with pip");
    }
    Ok(())
}

/// The AWS CLI (v1, from PyPI) drives the S3 edge test (tests/tests/up_and_cli.rs). Returns its
/// path.
fn ensure_aws_cli(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let bin = ensure_python_tool(root, "awscli", "awscli", "aws", None, "the S3 edge test")?;
    Ok(bin.join("aws"))
}

/// Schemathesis (a pinned version so a run is repeatable) fuzzes the servers against their specs
/// (tests/api/fuzz_specs.py). Returns its environment's bin directory.
fn ensure_schemathesis(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    const VERSION: &str = "4.32.5";
    ensure_python_tool(
        root,
        "schemathesis",
        &format!("schemathesis=={VERSION}"),
        "st",
        Some(VERSION),
        "fuzzing the APIs",
    )
}

/// A tool from PyPI in a virtual environment of its own under target/tools/`name` (a tool's
/// pinned dependencies would otherwise fight boto3's over the one site-packages): `requirement`
/// installed unless `program --version` already answers (with `version` in it, when given).
/// Returns the environment's bin directory.
fn ensure_python_tool(
    root: &std::path::Path,
    name: &str,
    requirement: &str,
    program: &str,
    version: Option<&str>,
    needed_for: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let venv = root.join("target/tools").join(name);
    let bin = venv.join("bin");
    let works = || {
        Command::new(bin.join(program))
            .arg("--version")
            .output()
            .is_ok_and(|o| {
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                o.status.success() && version.is_none_or(|v| said.contains(v))
            })
    };
    if works() {
        return Ok(bin);
    }
    println!(
        "==> installing {requirement} (PyPI) into {} for {needed_for}",
        venv.display()
    );
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(bin.join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                requirement,
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !ok || !works() {
        bail!(
            "{requirement} is needed for {needed_for} and could not be installed with pip into {}",
            venv.display()
        );
    }
    Ok(bin)
}

/// Node.js and npm come with this machine image; on a bare Debian they are installed.
fn ensure_node() -> anyhow::Result<()> {
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have("node") && have("npm") {
        return Ok(());
    }
    println!("==> installing Node.js and npm (apt-get)");
    let ok = Command::new("apt-get")
        .arg("update")
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "nodejs", "npm"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        bail!("Node.js and npm are needed for the TypeScript SDK tests and could not be installed");
    }
    Ok(())
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn apt_install(packages: &[&str]) -> bool {
    apt_install_with(packages, &[])
}

fn apt_install_with(packages: &[&str], flags: &[&str]) -> bool {
    println!("==> installing {} (apt-get)", packages.join(" "));
    let quiet = |cmd: &mut Command| {
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    quiet(Command::new("apt-get").args(["update", "-qq"]))
        && quiet(
            Command::new("apt-get")
                .args(["install", "-y", "-qq"])
                .args(flags)
                .args(packages),
        )
}

/// Makes a Docker engine answer (installing docker.io and starting dockerd if needed) and puts
/// busybox-static in place for the test image. False when no engine could be had.
fn ensure_docker(root: &std::path::Path) -> bool {
    let have_dockerd = Command::new("dockerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut missing = vec![];
    if !have_dockerd {
        missing.push("docker.io");
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        missing.push("busybox-static");
    }
    if !missing.is_empty() && !apt_install(&missing) {
        println!("could not install {}", missing.join(" "));
    }
    if docker_answers() {
        return true;
    }
    println!("==> starting dockerd");
    let log = std::fs::File::create(root.join("target/dockerd.log")).ok();
    let mut cmd = Command::new("dockerd");
    if let Some(log) = log {
        if let Ok(err) = log.try_clone() {
            cmd.stdout(log).stderr(err);
        }
    }
    if cmd.spawn().is_err() {
        return false;
    }
    for _ in 0..60 {
        if docker_answers() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    println!("dockerd did not answer within 60 s (see target/dockerd.log)");
    false
}

/// Runs `cmd`, echoing its output, and adds the test counts it reports to `totals`.
fn stream_and_count(mut cmd: Command, totals: &mut Totals) -> anyhow::Result<bool> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut tail = std::collections::VecDeque::with_capacity(FAILURE_TAIL_LINES);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        count_line(&line, totals);
        if tail.len() == FAILURE_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let ok = child.wait()?.success();
    if !ok {
        totals.failed_tails.push(tail.into());
    }
    Ok(ok)
}

/// Reads cargo's `test result: ok. 3 passed; 0 failed; 1 ignored; …` and node's `# pass 3` lines.
fn count_line(line: &str, totals: &mut Totals) {
    let number_before = |text: &str, word: &str| -> Option<u64> {
        let at = text.find(word)?;
        text[..at]
            .trim_end()
            .rsplit([' ', '.'])
            .next()?
            .parse()
            .ok()
    };
    if let Some(rest) = line.strip_prefix("test result: ") {
        totals.passed += number_before(rest, " passed").unwrap_or(0);
        totals.failed += number_before(rest, " failed").unwrap_or(0);
        totals.skipped += number_before(rest, " ignored").unwrap_or(0);
    } else if let Some(n) = line.strip_prefix("# pass ") {
        totals.passed += n.trim().parse().unwrap_or(0);
    } else if let Some(n) = line.strip_prefix("# fail ") {
        totals.failed += n.trim().parse().unwrap_or(0);
    } else if let Some(n) = line.strip_prefix("# skipped ") {
        totals.skipped += n.trim().parse().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cargo_and_node_summaries() {
        let mut t = Totals::default();
        count_line(
            "test result: ok. 15 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.93s",
            &mut t,
        );
        count_line("# pass 7", &mut t);
        count_line("# fail 1", &mut t);
        count_line("# skipped 2", &mut t);
        count_line("test something ... ok", &mut t);
        assert_eq!(
            t,
            Totals {
                passed: 22,
                failed: 3,
                skipped: 3,
                ..Totals::default()
            }
        );
    }
}

/// Whether `dir`'s node_modules is missing or older than its package-lock.json (a dependency was
/// added since the last install), so `npm ci` must run.
fn needs_npm_ci(dir: &std::path::Path) -> bool {
    let modified = |p: std::path::PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("node_modules/.package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    }
}
