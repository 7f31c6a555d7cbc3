//! Each module's README Inputs/Outputs tables match its variables.tf and outputs.tf: same names in
//! the same order, same descriptions, and "Required" is yes exactly when there is no default.
//! (modules/readme-tables.py --write regenerates them.)

use std::path::Path;
use strata_acceptance_tests::repo_root;

#[derive(Debug, PartialEq)]
struct Item {
    name: String,
    description: String,
    required: bool,
}

/// Top-level `kind "name" { ... }` blocks of a .tf file: name, description, whether it has a
/// default. Our modules keep `description = "..."` on one line, which is what this reads.
fn blocks(path: &Path, kind: &str) -> Vec<Item> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut items = Vec::new();
    let mut cur: Option<Item> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{kind} \"")) {
            let name = rest.split('"').next().unwrap().to_string();
            cur = Some(Item {
                name,
                description: String::new(),
                required: true,
            });
        } else if line == "}" {
            items.extend(cur.take());
        } else if let Some(item) = cur.as_mut() {
            if let Some(d) = line.strip_prefix("  description = ") {
                item.description = serde_json::from_str::<String>(d).unwrap();
            } else if line.starts_with("  default ") || line.starts_with("  default=") {
                item.required = false;
            }
        }
    }
    items
}

fn table(readme: &str, heading: &str, inputs: bool) -> Vec<Item> {
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {heading}"))
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            Item {
                name: cells[0].trim_matches('`').to_string(),
                description: cells[1].replace("\\|", "|"),
                required: inputs && cells.last() == Some(&"yes"),
            }
        })
        .collect()
}

fn check(module: &str) {
    let dir = repo_root().join("modules").join(module);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let vars = blocks(&dir.join("variables.tf"), "variable");
    let outs: Vec<Item> = blocks(&dir.join("outputs.tf"), "output")
        .into_iter()
        .map(|o| Item {
            required: false,
            ..o
        })
        .collect();
    assert!(!vars.is_empty() && !outs.is_empty());
    assert!(
        vars.iter().all(|v| !v.description.is_empty()),
        "{module}: a variable has no description"
    );
    assert!(
        outs.iter().all(|o| !o.description.is_empty()),
        "{module}: an output has no description"
    );
    assert_eq!(
        table(&readme, "## Inputs", true),
        vars,
        "{module}: README inputs differ from variables.tf; run python3 modules/readme-tables.py modules/{module} --write"
    );
    assert_eq!(
        table(&readme, "## Outputs", false),
        outs,
        "{module}: README outputs differ from outputs.tf; run python3 modules/readme-tables.py modules/{module} --write"
    );
}

#[test]
fn replicated_cluster_readme_matches_code() {
    check("replicated-cluster");
}

#[test]
fn global_cluster_readme_matches_code() {
    check("global-cluster");
}

#[test]
fn every_variable_has_a_type_and_every_module_pins_the_provider_source() {
    for m in ["replicated-cluster", "global-cluster"] {
        let dir = repo_root().join("modules").join(m);
        let vars = std::fs::read_to_string(dir.join("variables.tf")).unwrap();
        let n_vars =
            vars.matches("\nvariable \"").count() + usize::from(vars.starts_with("variable \""));
        assert_eq!(
            vars.matches("\n  type ").count(),
            n_vars,
            "{m}: a variable has no type"
        );
        assert!(vars.contains("validation {"), "{m}: no validation blocks");
        let versions = std::fs::read_to_string(dir.join("versions.tf")).unwrap();
        assert!(
            versions.contains("source = \"strata/strata\""),
            "{m}/versions.tf"
        );
        assert!(
            dir.join("main.tf").is_file()
                && dir.join("examples").is_dir()
                && dir.join("tests").is_dir()
        );
    }
}
