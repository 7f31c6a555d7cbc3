//! scripts/package: the release files and the filesystem-mirror layout, installed by the real
//! `tofu` with no registry and no dev_overrides.

use std::path::Path;
use std::process::Command;
use strata_acceptance_tests::{
    Tofu, localstack_endpoint, network, provider_mirror, require_localstack, test_dist_dir,
    workspace_version, write_cli_config,
};

fn config(dir: &Path, extra: &str) {
    let endpoint = localstack_endpoint();
    let text = format!(
        r#"terraform {{
  required_providers {{
    strata = {{
      source = "strata/strata"
    }}
  }}
}}

provider "strata" {{
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"
  endpoints {{
    ec2 = "{endpoint}"
    ebs = "{endpoint}"
    iam = "{endpoint}"
    ssm = "{endpoint}"
    sts = "{endpoint}"
  }}
}}
{extra}"#
    );
    std::fs::write(dir.join("main.tf"), text).unwrap();
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn package_writes_zip_sums_manifest_and_mirror() {
    provider_mirror().unwrap();
    let dist = test_dist_dir();
    let v = workspace_version().unwrap();
    let zip = format!("terraform-provider-strata_{v}_linux_amd64.zip");
    let bin = format!("terraform-provider-strata_v{v}");

    // The debug package (what tests build) carries this machine's agent; aarch64 is a gap.
    let agent = "strata-agent_linux_x86_64";
    let listing = Command::new("unzip")
        .arg("-Z1")
        .arg(dist.join(&zip))
        .output()
        .unwrap();
    assert!(listing.status.success(), "unzip -Z1 {zip}: {listing:?}");
    let mut names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, vec![agent.to_string(), bin.clone()]);
    // The agent in the zip: executable, and the same bytes as the mirror's copy.
    let unzipped = tempfile::tempdir().unwrap();
    let out = Command::new("unzip")
        .arg("-q")
        .arg(dist.join(&zip))
        .arg(agent)
        .arg("-d")
        .arg(unzipped.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "unzip {agent}: {out:?}");
    let zipped_sha = sha256_of(&unzipped.path().join(agent));

    let sums =
        std::fs::read_to_string(dist.join(format!("terraform-provider-strata_{v}_SHA256SUMS")))
            .unwrap();
    assert!(sums.contains(&zip), "{sums}");
    let check = Command::new("sha256sum")
        .args(["-c", &format!("terraform-provider-strata_{v}_SHA256SUMS")])
        .current_dir(&dist)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "SHA256SUMS does not match: {check:?}"
    );

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dist.join(format!("terraform-provider-strata_{v}_manifest.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({
            "version": 1,
            "metadata": {"protocol_versions": ["6.0"]},
            "strata_agents": [
                {"file": agent, "os": "linux", "arch": "x86_64", "sha256": zipped_sha}
            ]
        })
    );

    for host in ["registry.opentofu.org", "registry.terraform.io"] {
        let dir = dist.join(format!("mirror/{host}/strata/strata/{v}/linux_amd64"));
        for name in [bin.as_str(), agent] {
            let b = dir.join(name);
            let meta = std::fs::metadata(&b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
            use std::os::unix::fs::PermissionsExt;
            assert!(
                meta.permissions().mode() & 0o111 != 0,
                "{} is not executable",
                b.display()
            );
        }
        assert_eq!(sha256_of(&dir.join(agent)), zipped_sha, "{host}");
    }
    // The packaged agent is the agent: it answers --version with the workspace version.
    let out = Command::new(unzipped.path().join(agent))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&v),
        "{out:?}"
    );
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn tofu_init_installs_from_the_mirror_via_cli_config_and_plugin_dir() {
    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    let v = workspace_version().unwrap();

    let work = scratch.path().join("cfg");
    std::fs::create_dir_all(&work).unwrap();
    config(&work, "");
    let out = tofu
        .run_ok(&work, &["init", "-input=false", "-no-color"])
        .unwrap();
    assert!(
        out.contains(&format!("Installed strata/strata v{v}")),
        "{out}"
    );
    let lock = std::fs::read_to_string(work.join(".terraform.lock.hcl")).unwrap();
    assert!(
        lock.contains(&format!("provider \"{}\"", tofu.cli.provider_address()))
            && lock.contains(&format!("version = \"{v}\"")),
        "{lock}"
    );
    let providers = tofu.run_ok(&work, &["providers", "-no-color"]).unwrap();
    assert!(
        providers.contains(&format!("provider[{}]", tofu.cli.provider_address())),
        "{providers}"
    );

    // -plugin-dir alone, with a CLI config that installs nothing anywhere: the mirror layout is
    // all tofu needs.
    let bare = scratch.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    config(&bare, "");
    let empty_cli = scratch.path().join("empty.tfrc");
    std::fs::write(&empty_cli, "").unwrap();
    let mirror = provider_mirror().unwrap();
    let out = tofu
        .command(
            &bare,
            &[
                "init",
                "-input=false",
                "-no-color",
                &format!("-plugin-dir={}", mirror.display()),
            ],
        )
        .env("TF_CLI_CONFIG_FILE", &empty_cli)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("Installed strata/strata v{v}")),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn tofu_refuses_a_version_the_mirror_does_not_have() {
    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    let work = scratch.path().join("cfg");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("main.tf"),
        "terraform {\n  required_providers {\n    strata = {\n      source  = \"strata/strata\"\n      version = \"99.0.0\"\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = tofu
        .run(&work, &["init", "-input=false", "-no-color"])
        .unwrap();
    assert!(
        !out.status.success(),
        "init found a version that was never packaged"
    );
    // And the CLI config we write points at this mirror, not at a registry.
    let cfg = write_cli_config(scratch.path(), &provider_mirror().unwrap()).unwrap();
    assert!(
        std::fs::read_to_string(cfg)
            .unwrap()
            .contains("filesystem_mirror")
    );
}

/// Needs the provider's resources (the lead's merge): plans one cluster against LocalStack.
#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn tofu_plan_with_the_mirrored_provider() {
    require_localstack().unwrap();
    let net = {
        let _g = strata_acceptance_tests::localstack_lock();
        network::ensure_blocking(&localstack_endpoint(), network::DEFAULT_NETWORK_NAME).unwrap()
    };
    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    let work = scratch.path().join("cfg");
    std::fs::create_dir_all(&work).unwrap();
    config(
        &work,
        &format!(
            "\nresource \"strata_cluster\" \"pkg\" {{\n  name          = \"packaging-plan\"\n  instance_type = \"t3.medium\"\n  subnet_id     = \"{}\"\n}}\n",
            net.home_subnet_ids[0]
        ),
    );
    tofu.run_ok(&work, &["init", "-input=false", "-no-color"])
        .unwrap();
    let plan = tofu
        .run_ok(&work, &["plan", "-input=false", "-no-color"])
        .unwrap();
    assert!(
        plan.contains("strata_cluster.pkg will be created"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
}
