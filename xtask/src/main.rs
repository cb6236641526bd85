//! Repository automation. `cargo xtask <command>`:
//!
//! - `openapi [--check]`: write `openapi/<api>.json` from the poem-openapi code (no server started),
//!   and lint the specs against the contract conventions.
//! - `sdk [--check]`: generate `sdk-rust/src/generated/` (progenitor) and `sdk-ts/src/generated/`
//!   (openapi-typescript) from the committed specs.
//! - `test`: the whole test suite, installing what it needs (the README's test command).
//! - `bench`: the benchmarks behind `docs/benchmarks.md`.

mod bench;
mod lint;
mod openapi;
mod sdk;
mod test;

use std::path::{Path, PathBuf};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    match args.first().map(String::as_str) {
        Some("openapi") => openapi::run(check),
        Some("sdk") => sdk::run(check),
        Some("test") => test::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("guest") => test::build_static(&["aerekos-guest"]).map(|paths| {
            println!(
                "the microVM guest agent: {} (MICROVM_GUEST_AGENT)",
                paths[0].display()
            )
        }),
        _ => {
            eprintln!(
                "usage: cargo xtask openapi [--check] | sdk [--check] | test | bench | guest"
            );
            std::process::exit(2);
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

/// The APIs whose specs live in `openapi/`, with the function producing each.
pub fn apis() -> Vec<(&'static str, fn() -> String)> {
    vec![
        ("conductor", aerekos_conductor::openapi_spec),
        ("key_manager", aerekos_key_manager::openapi_spec),
        ("storage_manager", aerekos_storage_manager::openapi_spec),
        ("secrets_manager", aerekos_secrets_manager::openapi_spec),
        ("logs_manager", aerekos_logs_manager::openapi_spec),
        ("metrics_manager", aerekos_metrics_manager::openapi_spec),
        ("worker", aerekos_worker::openapi_spec),
    ]
}

/// Compares `want` with the file at `path`; in check mode a difference is an error naming the fix,
/// otherwise the file is (re)written.
pub fn write_or_check(
    path: &Path,
    want: &str,
    check: bool,
    regenerate: &str,
) -> anyhow::Result<bool> {
    let have = std::fs::read_to_string(path).ok();
    if have.as_deref() == Some(want) {
        return Ok(true);
    }
    if check {
        eprintln!(
            "{} is out of date with the code{}; run `{regenerate}` and commit the result",
            path.strip_prefix(repo_root()).unwrap_or(path).display(),
            if have.is_none() { " (missing)" } else { "" }
        );
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, want)?;
    println!(
        "wrote {}",
        path.strip_prefix(repo_root()).unwrap_or(path).display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_mode_reports_a_hand_edited_file_and_leaves_it_alone() {
        let dir = std::env::temp_dir().join(format!("xtask-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conductor.json");
        std::fs::write(&path, "{\"edited\": \"by hand\"}\n").unwrap();
        assert!(!write_or_check(&path, "{}\n", true, "cargo xtask openapi").unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"edited\": \"by hand\"}\n"
        );
        assert!(write_or_check(&path, "{}\n", false, "cargo xtask openapi").unwrap());
        assert!(write_or_check(&path, "{}\n", true, "cargo xtask openapi").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn committed_files_match_what_the_code_generates() {
        // The same comparison `--check` makes, as a test: a hand edit to a spec or a generated
        // Rust SDK file fails here too.
        for (name, spec) in apis() {
            let value: serde_json::Value = serde_json::from_str(&spec()).unwrap();
            let want = serde_json::to_string_pretty(&value).unwrap() + "\n";
            let path = repo_root().join(format!("openapi/{name}.json"));
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                want,
                "{} drifted: run cargo xtask openapi",
                path.display()
            );
            let rust = sdk::generate_rust(name, &want).unwrap();
            let path = repo_root().join(format!("sdk-rust/src/generated/{name}.rs"));
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                rust,
                "{} drifted: run cargo xtask sdk",
                path.display()
            );
        }
    }
}
