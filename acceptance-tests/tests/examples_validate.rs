//! Every example (examples/ and each module's examples/) passes `tofu init` + `tofu validate`
//! with Strata from the local mirror, and the registry layout is complete.

use std::path::{Path, PathBuf};
use strata_acceptance_tests::{Tofu, copy_tree, repo_root};

const RESOURCE_TYPES: [&str; 4] = [
    "strata_cluster",
    "strata_replica",
    "strata_region",
    "strata_storage_segment",
];

fn has_tf(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "tf"))
        })
        .unwrap_or(false)
}

/// Folders holding .tf files under `root`, skipping modules' own tests.
fn tf_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    if has_tf(root) {
        out.push(root.to_path_buf());
    }
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut subdirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        if d.file_name()
            .is_some_and(|n| n == ".terraform" || n == "tests")
        {
            continue;
        }
        tf_dirs(&d, out);
    }
}

#[test]
fn registry_layout_has_every_resource_type() {
    let ex = repo_root().join("examples");
    assert!(ex.join("provider/provider.tf").is_file());
    assert!(ex.join("complete").is_dir() && has_tf(&ex.join("complete")));
    for t in RESOURCE_TYPES {
        let dir = ex.join("resources").join(t);
        let tf = std::fs::read_to_string(dir.join("resource.tf"))
            .unwrap_or_else(|e| panic!("{t}/resource.tf: {e}"));
        assert!(
            tf.contains(&format!("resource \"{t}\"")),
            "{t}/resource.tf has no {t} resource"
        );
        let import = std::fs::read_to_string(dir.join("import.sh"))
            .unwrap_or_else(|e| panic!("{t}/import.sh: {e}"));
        assert!(
            import.contains(&format!("import {t}.")),
            "{t}/import.sh does not import a {t}"
        );
    }
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn every_example_inits_and_validates() {
    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    // Copies, so module examples' `../..` sources still resolve and the repo stays clean.
    let root = scratch.path().join("repo");
    copy_tree(&repo_root().join("examples"), &root.join("examples")).unwrap();
    copy_tree(&repo_root().join("modules"), &root.join("modules")).unwrap();

    let mut dirs = Vec::new();
    tf_dirs(&root.join("examples"), &mut dirs);
    for m in ["replicated-cluster", "global-cluster"] {
        tf_dirs(&root.join("modules").join(m).join("examples"), &mut dirs);
    }
    assert!(dirs.len() >= 8, "found only {dirs:?}");

    let mut failures = Vec::new();
    for d in &dirs {
        let r = tofu
            .run_ok(d, &["init", "-input=false", "-no-color", "-backend=false"])
            .and_then(|_| tofu.run_ok(d, &["validate", "-no-color"]));
        match r {
            Ok(out) if out.contains("Success! The configuration is valid.") => {}
            Ok(out) => failures.push(format!("{}: {out}", d.display())),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn examples_and_modules_are_tofu_fmt_clean() {
    let bin = strata_acceptance_tests::tofu_path().unwrap();
    for d in ["examples", "modules"] {
        let out = std::process::Command::new(&bin)
            .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
            .arg(repo_root().join(d))
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tofu fmt -check {d}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
