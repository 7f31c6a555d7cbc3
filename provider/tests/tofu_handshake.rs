//! The real OpenTofu CLI starts the built plugin through a `dev_overrides` CLI config:
//! handshake, AutoMTLS with OpenTofu's own (P-521) client certificate, a Provider RPC, the
//! controller's Shutdown, and our log lines at the right levels under `TF_LOG`.
//!
//! Needs the OpenTofu binary: `$TOFU`, else what `scripts/install-tofu` prints (it builds and
//! caches OpenTofu on first use); when neither works the tests fail saying so.

use std::path::PathBuf;
use std::process::Command;

/// The tofu CLI: `$TOFU`, else what scripts/install-tofu prints; fails the test saying why.
fn tofu() -> PathBuf {
    strata_acceptance_tests::tofu_path().unwrap_or_else(|e| panic!("{e}"))
}

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-strata-testing");

/// Runs `tofu providers schema -json` against the plugin; returns (success, stderr).
fn schema_run(tofu: &PathBuf, tf_log: &str, extra_env: &[(&str, &str)]) -> (bool, String) {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    let work = root.path().join("work");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(BIN, plugins.join("terraform-provider-strata")).unwrap();
    let cli_config = root.path().join("cli.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"strata/strata\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            plugins.display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("main.tf"),
        "terraform {\n  required_providers {\n    strata = { source = \"strata/strata\" }\n  }\n}\n",
    )
    .unwrap();
    let mut cmd = Command::new(tofu);
    cmd.args(["providers", "schema", "-json"])
        .current_dir(&work)
        .env("TF_CLI_CONFIG_FILE", &cli_config)
        .env("TF_LOG", tf_log)
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_LOG_PROVIDER")
        .env_remove("TF_DISABLE_PLUGIN_TLS")
        .env_remove("STRATA_LOG");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_plugin_served(stderr: &str) {
    assert!(stderr.contains("using plugin: version=6"), "{stderr}");
    assert!(
        !stderr.contains("plugin exited before we could connect"),
        "{stderr}"
    );
    // The RPC reached the provider: either the schema came back or the provider said
    // Unimplemented, never a transport error.
    assert!(
        !stderr.contains("code = Unavailable") && !stderr.contains("transport: "),
        "{stderr}"
    );
    // The controller's Shutdown ended the process.
    assert!(
        stderr.contains("the client asked the plugin to shut down"),
        "{stderr}"
    );
    assert!(stderr.contains("provider: plugin exited"), "{stderr}");
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn opentofu_starts_and_stops_the_plugin_with_automtls() {
    let tofu = tofu();
    let (_, stderr) = schema_run(&tofu, "debug", &[]);
    assert!(
        stderr.contains("configuring client automatic mTLS"),
        "{stderr}"
    );
    assert_plugin_served(&stderr);
    // Our JSON lines are parsed by go-plugin and shown at their own level.
    assert!(
        stderr.contains("[DEBUG] provider.terraform-provider-strata: plugin listening:"),
        "{stderr}"
    );
    assert!(stderr.contains("@module=provider.strata"), "{stderr}");
    // The handshake line carried the certificate: the logged line has a sixth field.
    let listening = stderr
        .lines()
        .find(|l| l.contains("plugin listening"))
        .unwrap();
    assert!(listening.contains("|grpc|MII"), "{listening}");
}

#[test]
#[ignore = "needs the tofu CLI: run via scripts/test"]
fn opentofu_without_tls_and_log_level_filtering() {
    let tofu = tofu();
    let (_, stderr) = schema_run(&tofu, "trace", &[("TF_DISABLE_PLUGIN_TLS", "1")]);
    assert!(
        !stderr.contains("configuring client automatic mTLS"),
        "{stderr}"
    );
    let listening = stderr
        .lines()
        .find(|l| l.contains("plugin listening"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        listening.contains("|grpc| "),
        "plaintext: empty cert field: {listening}"
    );

    // At info, our debug lines are neither written nor shown.
    let (_, stderr) = schema_run(&tofu, "info", &[]);
    assert!(!stderr.contains("plugin listening"), "{stderr}");
    assert!(stderr.contains("[INFO]"), "{stderr}");
}
