//! The real OpenTofu CLI drives the built provider through a `dev_overrides` CLI config:
//! schema, validate, and the test widget's whole life (plan, apply, empty plan, refresh,
//! update in place, replace, import, deletion outside Terraform, destroy), plus our log lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tofu CLI: `$TOFU`, else what scripts/install-tofu prints; fails the test saying why.
fn tofu() -> PathBuf {
    strata_acceptance_tests::tofu_path().unwrap_or_else(|e| panic!("{e}"))
}

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-strata-testing");

struct Env {
    _root: tempfile::TempDir,
    work: PathBuf,
    store: PathBuf,
    cli: PathBuf,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        let plugins = root.path().join("plugins");
        let work = root.path().join("work");
        let store = root.path().join("store");
        for d in [&plugins, &work, &store] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(BIN, plugins.join("terraform-provider-strata")).unwrap();
        let cli = root.path().join("cli.tfrc");
        std::fs::write(
            &cli,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"strata/strata\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                plugins.display()
            ),
        )
        .unwrap();
        Env {
            _root: root,
            work,
            store,
            cli,
        }
    }

    fn config(&self, body: &str) {
        std::fs::write(
            self.work.join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    strata = {{ source = \"strata/strata\" }}\n  }}\n}}\nprovider \"strata\" {{\n  region = \"us-east-1\"\n  access_key = \"test\"\n  secret_key = \"test\"\n  skip_credentials_validation = true\n}}\n{body}\n"
            ),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str], log: Option<&str>) -> Output {
        let mut cmd = Command::new(tofu());
        cmd.args(args)
            .current_dir(&self.work)
            .env("TF_CLI_CONFIG_FILE", &self.cli)
            .env("TF_IN_AUTOMATION", "1")
            .env("STRATA_TEST_RESOURCES", "1")
            .env("STRATA_TEST_STORE_DIR", &self.store)
            .env_remove("TF_LOG_PROVIDER")
            .env_remove("STRATA_LOG");
        match log {
            Some(l) => cmd.env("TF_LOG", l),
            None => cmd.env_remove("TF_LOG"),
        };
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        let out = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "tofu {args:?} failed:\n{out}");
        out
    }

    fn state(&self) -> serde_json::Value {
        let out = self.ok(&["show", "-json"]);
        let json = out.lines().find(|l| l.starts_with('{')).unwrap();
        serde_json::from_str(json).unwrap()
    }

    fn widget(&self) -> serde_json::Value {
        let s = self.state();
        s["values"]["root_module"]["resources"][0]["values"].clone()
    }

    fn plan_exit(&self) -> (i32, String) {
        let o = self.run(
            &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
            None,
        );
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const WIDGET: &str = r#"
resource "strata_test_widget" "w" {
  name   = "NAME"
  size   = SIZE
  labels = ["b", "a"]
  rule {
    port = 80
  }
}
"#;

fn widget(name: &str, size: u32) -> String {
    WIDGET
        .replace("NAME", name)
        .replace("SIZE", &size.to_string())
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn schema_lists_the_test_widget_with_descriptions() {
    let env = Env::new();
    env.config("");
    let out = env.ok(&["providers", "schema", "-json"]);
    let json = out.lines().find(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let p = &v["provider_schemas"]["registry.opentofu.org/strata/strata"];
    let w = &p["resource_schemas"]["strata_test_widget"];
    assert_eq!(w["version"], 1);
    assert!(
        w["block"]["description"]
            .as_str()
            .unwrap()
            .contains("test-only")
    );
    assert_eq!(w["block"]["attributes"]["name"]["required"], true);
    assert_eq!(w["block"]["attributes"]["id"]["computed"], true);
    assert_eq!(
        w["block"]["attributes"]["labels"]["type"],
        serde_json::json!(["set", "string"])
    );
    assert!(p["provider"]["block"]["attributes"]["region"].is_object());
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn validate_accepts_valid_and_names_the_bad_attribute() {
    let env = Env::new();
    env.config(&widget("ok", 3));
    env.ok(&["validate", "-no-color"]);
    env.config(&widget("ok", 5000));
    let o = env.run(&["validate", "-no-color"], None);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("Invalid value for \"size\""), "{out}");
    assert!(out.contains("out of range"), "{out}");
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn widget_lifecycle() {
    let env = Env::new();
    env.config(&widget("one", 1));
    let plan = env.ok(&["plan", "-no-color", "-input=false"]);
    assert!(plan.contains("(known after apply)"), "{plan}");
    env.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let w = env.widget();
    let id = w["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("w-"));
    assert_eq!(w["mode"], "standard");
    assert_eq!(w["labels"], serde_json::json!(["a", "b"]));
    assert_eq!(w["revision"], 1);
    assert_eq!(files(&env.store), vec![format!("{id}.json")]);

    let (code, out) = env.plan_exit();
    assert_eq!(code, 0, "plan after apply should be empty:\n{out}");

    env.ok(&["refresh", "-no-color", "-input=false"]);
    assert_eq!(env.widget()["id"], id.as_str());

    // Update in place: same id, revision bumped.
    env.config(&widget("one", 2));
    let (code, out) = env.plan_exit();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("updated in-place"), "{out}");
    env.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let w = env.widget();
    assert_eq!(w["id"], id.as_str());
    assert_eq!(w["revision"], 2);
    assert_eq!(w["size"], 2);

    // Replace: a new name forces a new widget.
    env.config(&widget("two", 2));
    let (code, out) = env.plan_exit();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("forces replacement"), "{out}");
    env.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let id2 = env.widget()["id"].as_str().unwrap().to_string();
    assert_ne!(id2, id);
    assert_eq!(files(&env.store), vec![format!("{id2}.json")]);

    // Import: forget it, import it back by id, plan is empty.
    env.ok(&["state", "rm", "strata_test_widget.w"]);
    env.ok(&[
        "import",
        "-no-color",
        "-input=false",
        "strata_test_widget.w",
        &id2,
    ]);
    let (code, out) = env.plan_exit();
    assert_eq!(code, 0, "plan after import should be empty:\n{out}");

    // Deleted outside Terraform: the next plan creates it.
    std::fs::remove_file(env.store.join(format!("{id2}.json"))).unwrap();
    let (code, out) = env.plan_exit();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("will be created"), "{out}");
    env.ok(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    assert_eq!(files(&env.store).len(), 1);

    env.ok(&["destroy", "-auto-approve", "-no-color", "-input=false"]);
    assert!(files(&env.store).is_empty());
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn a_panic_is_an_error_not_a_crash_and_logs_have_levels() {
    let env = Env::new();
    env.config(&widget("panic-please", 1));
    let o = env.run(
        &["apply", "-auto-approve", "-no-color", "-input=false"],
        Some("debug"),
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
    assert!(
        out.contains("crashed in strata_test_widget create"),
        "{out}"
    );
    assert!(!out.contains("plugin exited before"), "{out}");
    // Our provider's lines, with their levels, in tofu's log.
    assert!(
        out.lines()
            .any(|l| l.contains("[DEBUG] provider.terraform-provider-strata")
                && l.contains("planned a change")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("[ERROR] provider.terraform-provider-strata")
                && l.contains("panicked")),
        "{out}"
    );
}
