//! Every example (examples/ and each module's examples/) and both modules pass `init` +
//! `validate`, and every example that declares resources or modules passes `plan` against
//! LocalStack, with Strata from the local mirror and no warning printed by any step (tofu, or
//! terraform with `STRATA_TF_CLI=terraform`); and the registry layout is complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use strata_acceptance_tests::{
    Tofu, copy_tree, localstack_endpoint, localstack_lock, network, repo_root, require_localstack,
};

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

const DATA_SOURCE_TYPES: [&str; 2] = ["strata_cluster", "strata_nodes"];

/// Text of every .tf file directly in `dir`.
fn tf_text(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of the variables `dir` declares (`variable "x" {`).
fn declared_variables(dir: &Path) -> BTreeSet<String> {
    tf_text(dir)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("variable \""))
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

/// Fails unless the step succeeded, and names the step when it printed a warning.
fn no_warning(step: &str, dir: &Path, out: &std::process::Output, failures: &mut Vec<String>) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        failures.push(format!("{step} failed in {}:\n{text}", dir.display()));
    } else if text.contains("Warning:") {
        failures.push(format!(
            "{step} printed a warning in {}:\n{text}",
            dir.display()
        ));
    }
}

#[test]
fn registry_layout_has_every_data_source_type() {
    let ex = repo_root().join("examples/data-sources");
    for t in DATA_SOURCE_TYPES {
        let tf = std::fs::read_to_string(ex.join(t).join("data-source.tf"))
            .unwrap_or_else(|e| panic!("{t}/data-source.tf: {e}"));
        assert!(
            tf.contains(&format!("data \"{t}\"")),
            "{t}/data-source.tf has no {t} data source"
        );
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
fn every_example_inits_validates_and_plans_without_warnings() {
    require_localstack().unwrap();
    let endpoint = localstack_endpoint();
    let net = {
        let _g = localstack_lock();
        network::ensure_blocking(&endpoint, network::DEFAULT_NETWORK_NAME).unwrap()
    };
    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    // Copies, so module examples' `../..` sources still resolve and the repo stays clean.
    let root = scratch.path().join("repo");
    copy_tree(&repo_root().join("examples"), &root.join("examples")).unwrap();
    copy_tree(&repo_root().join("modules"), &root.join("modules")).unwrap();

    let mut dirs = Vec::new();
    tf_dirs(&root.join("examples"), &mut dirs);
    for m in ["replicated-cluster", "global-cluster"] {
        dirs.push(root.join("modules").join(m));
        tf_dirs(&root.join("modules").join(m).join("examples"), &mut dirs);
    }
    assert!(dirs.len() >= 12, "found only {dirs:?}");

    // Values for the variables examples declare; each plan gets only those it declares (an
    // undeclared one would be a warning of its own).
    let values = serde_json::json!({
        "subnet_id": net.home_subnet_ids[0],
        "subnet_a": net.home_subnet_ids[0],
        "subnet_b": net.home_subnet_ids[1],
        "subnet_ids": net.home_subnet_ids,
        "eu_subnet_id": net.read_only_subnet_id,
        "aws_endpoint_url": endpoint,
        "node_ready_timeout": "0s",
    });
    let mut failures = Vec::new();
    let mut planned = 0;
    for d in &dirs {
        let init = tofu.lock_and_init(d, &[]);
        match init {
            Ok(text) if text.contains("Warning:") => {
                failures.push(format!(
                    "init printed a warning in {}:\n{text}",
                    d.display()
                ));
            }
            Ok(_) => {}
            Err(e) => {
                failures.push(format!("{e:#}"));
                continue;
            }
        }
        let out = tofu.run(d, &["validate", "-no-color"]).unwrap();
        no_warning("validate", d, &out, &mut failures);
        let is_module = d.parent().is_some_and(|p| p.ends_with("modules"));
        let text = tf_text(d);
        if is_module || !(text.contains("resource \"") || text.contains("module \"")) {
            continue;
        }
        let declared = declared_variables(d);
        let vars: serde_json::Map<String, serde_json::Value> = values
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| declared.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        std::fs::write(
            d.join("ci.auto.tfvars.json"),
            serde_json::Value::Object(vars).to_string(),
        )
        .unwrap();
        let out = tofu
            .run(d, &["plan", "-input=false", "-no-color", "-lock=false"])
            .unwrap();
        no_warning("plan", d, &out, &mut failures);
        planned += 1;
    }
    assert!(planned >= 7, "planned only {planned} examples");
    assert!(
        failures.is_empty(),
        "{} problem(s) over {} folders ({}):\n{}",
        failures.len(),
        dirs.len(),
        tofu.cli.name(),
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
