use anyhow::{Context as _, bail};

use crate::{apis, lint, repo_root, write_or_check};

pub fn run(check: bool) -> anyhow::Result<()> {
    let mut ok = true;
    for (name, spec) in apis() {
        let value: serde_json::Value =
            serde_json::from_str(&spec()).context("the spec is not JSON")?;
        let problems = lint::lint(&value);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("openapi/{name}.json: {p}");
            }
            bail!("the {name} spec breaks the contract conventions (docs/architecture.md)");
        }
        let text = serde_json::to_string_pretty(&value)? + "\n";
        let path = repo_root().join("openapi").join(format!("{name}.json"));
        ok &= write_or_check(&path, &text, check, "cargo xtask openapi")?;
    }
    if !ok {
        bail!("specs drifted from the code");
    }
    if check {
        println!("openapi: specs match the code");
    }
    Ok(())
}
