//! The rendered first-boot script: pinned by golden files, checked by `bash -n` and
//! `shellcheck`, and run under bash against a fake root whose commands are stubs that log
//! their calls (curl answers IMDS, EC2 and S3; apt-get/dnf "install" by creating the engine
//! binary; systemctl only logs). What runs for real: bash, coreutils, sha256sum.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use strata_topology::{AGENT_BINARY_PATH, NodeConfig, parse_user_data, render_user_data};

const AGENT_BYTES: &[u8] = b"#!/bin/sh\necho strata-agent stand-in\n";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares with tests/golden/<name>; `UPDATE_GOLDEN=1` rewrites the file instead.
fn check_golden(name: &str, script: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, script).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if want != script {
        let line = want
            .lines()
            .zip(script.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or(want.lines().count().min(script.lines().count()) + 1);
        panic!(
            "{} differs from the rendered script from line {line}; review the change and run with UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

fn fixtures() -> Vec<(&'static str, NodeConfig)> {
    vec![
        (
            "source_with_agent.sh",
            source_with_agent(&sha256_hex(AGENT_BYTES)),
        ),
        ("replica_baked_image.sh", baked_replica()),
    ]
}

#[test]
fn golden_scripts() {
    for (name, cfg) in fixtures() {
        let script = render_user_data(&cfg);
        assert_eq!(render_user_data(&cfg), script, "not deterministic");
        assert_eq!(parse_user_data(&script).unwrap(), cfg);
        check_golden(name, &script);
    }
}

#[test]
fn scripts_parse_with_bash_n() {
    for (name, cfg) in fixtures() {
        let dir = TempDir::new("bash-n");
        let f = dir.path().join(name);
        std::fs::write(&f, render_user_data(&cfg)).unwrap();
        let out = Command::new("bash").arg("-n").arg(&f).output().unwrap();
        assert!(out.status.success(), "bash -n {name}: {out:?}");
    }
}

#[test]
fn scripts_pass_shellcheck() {
    let Ok(version) = Command::new("shellcheck").arg("--version").output() else {
        panic!("shellcheck is not installed: run scripts/install-packages (it installs it)");
    };
    assert!(
        version.status.success(),
        "shellcheck --version: {version:?}"
    );
    for (name, cfg) in fixtures() {
        let dir = TempDir::new("shellcheck");
        let f = dir.path().join(name);
        std::fs::write(&f, render_user_data(&cfg)).unwrap();
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck {name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn no_secret_and_tag_names_from_the_contract() {
    let script = render_user_data(&source_with_agent(&sha256_hex(AGENT_BYTES)));
    assert!(script.starts_with("#!/bin/bash\n# strata-node-config v2\n"));
    assert!(script.contains("\nset -euo pipefail\n"));
    assert!(script.contains(&format!(
        "readonly TAG_NODE_STATE='{}'",
        strata_topology::TAG_NODE_STATE
    )));
    assert!(script.contains(&format!(
        "readonly TAG_NODE_ERROR='{}'",
        strata_topology::TAG_NODE_ERROR
    )));
    // The config names SSM parameters only; the script never carries a key or a password.
    for word in ["\"password\"", "AccessKeyId\" :", "AKIA", "aws_secret"] {
        assert!(!script.contains(word), "script contains {word}");
    }
}

/// Debian 12, MariaDB from apt, the agent from S3: the whole happy path.
#[test]
fn debian_installs_mariadb_with_apt_and_starts_the_agent() {
    let sha = sha256_hex(AGENT_BYTES);
    let cfg = source_with_agent(&sha);
    let mut node = FakeNode::new(DEBIAN_12);
    let object = node.scratch().join("object");
    std::fs::write(&object, AGENT_BYTES).unwrap();
    node.set("STUB_S3_FILE", object.to_str().unwrap());
    // What Debian's mariadb-common ships: the folder the agent writes into is read already.
    std::fs::create_dir_all(node.root().join("etc/mysql")).unwrap();
    std::fs::write(
        node.root().join("etc/mysql/mariadb.cnf"),
        "[client-server]\n!includedir /etc/mysql/conf.d/\n!includedir /etc/mysql/mariadb.conf.d/\n",
    )
    .unwrap();
    let run = node.run(&render_user_data(&cfg));
    assert!(run.ok(), "{}", run.describe());

    let apt = run.of("apt-get");
    let install = apt
        .iter()
        .find(|a| a.first().map(String::as_str) == Some("install"))
        .unwrap_or_else(|| panic!("no apt-get install\n{}", run.describe()));
    for p in ["mariadb-server", "mariadb-client", "mariadb-backup", "-y"] {
        assert!(install.iter().any(|a| a == p), "{p} missing: {install:?}");
    }
    assert!(run.of("dnf").is_empty(), "{}", run.describe());

    // The installing tag first, and nothing else: the agent writes ready.
    assert_eq!(
        run.tag_writes(),
        vec![vec![(
            "strata:node-state".to_string(),
            "installing".to_string()
        )]]
    );

    // The agent: fetched path-style from the endpoint override, signed for s3 in the
    // artifact's region with the content hash header S3 requires, credentials on stdin.
    let s3 = run
        .of("curl")
        .into_iter()
        .find(|a| a.iter().any(|x| x.contains("/agent/")))
        .unwrap_or_else(|| panic!("no S3 download\n{}", run.describe()));
    let key = &cfg.install.agent.as_ref().unwrap().key;
    assert!(
        s3.iter()
            .any(|a| *a
                == format!("http://aws.test:4566/strata-orders-000000000000-us-east-1/{key}")),
        "{s3:?}"
    );
    assert!(s3.iter().any(|a| a == "aws:amz:us-east-1:s3"), "{s3:?}");
    assert!(
        s3.iter().any(|a| a.starts_with("x-amz-content-sha256: ")),
        "{s3:?}"
    );
    for args in run.of("curl") {
        assert!(
            !args.iter().any(|a| a.contains("SECRETSTUB")),
            "secret on curl's command line: {args:?}"
        );
    }
    let configs = run.of("curl-config");
    assert!(
        configs
            .iter()
            .any(|c| c[0] == "user = \"AKIASTUB:SECRETSTUB\""),
        "{configs:?}"
    );
    assert!(
        configs
            .iter()
            .any(|c| c[0] == "header = \"X-Amz-Security-Token: SESSIONSTUB\""),
        "{configs:?}"
    );
    // IMDSv2: the token PUT comes first and the GETs carry it.
    let curls = run.of("curl");
    assert!(curls[0].iter().any(|a| a == "PUT"), "{:?}", curls[0]);
    assert!(
        curls[1]
            .iter()
            .any(|a| a == "X-aws-ec2-metadata-token: STUBTOKEN"),
        "{:?}",
        curls[1]
    );

    let root = node.root();
    let agent = root.join(AGENT_BINARY_PATH.trim_start_matches('/'));
    assert_eq!(std::fs::read(&agent).unwrap(), AGENT_BYTES);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&agent).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let json = root.join("etc/strata/node.json");
    assert_eq!(
        std::fs::metadata(&json).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        NodeConfig::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap(),
        cfg
    );
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/strata-agent.service")).unwrap();
    assert!(
        unit.contains(
            "ExecStart=/usr/local/bin/strata-agent run --config /etc/strata/node.json --socket /run/mysqld/mysqld.sock --restart-command \"systemctl restart mariadb\"\n"
        ),
        "{unit}"
    );
    assert!(unit.contains("After=network-online.target local-fs.target mariadb.service"));

    // The engine is enabled and running before the agent starts.
    let systemctl: Vec<String> = run.of("systemctl").iter().map(|a| a.join(" ")).collect();
    let engine = systemctl
        .iter()
        .position(|c| c == "enable --now mariadb.service")
        .unwrap_or_else(|| panic!("{systemctl:?}"));
    let agent_start = systemctl
        .iter()
        .position(|c| c == "enable --now strata-agent.service")
        .unwrap_or_else(|| panic!("{systemctl:?}"));
    assert!(engine < agent_start, "{systemctl:?}");
    assert!(
        systemctl
            .iter()
            .any(|c| c == "is-active --quiet mariadb.service")
    );
    // Debian's my.cnf reads the agent's config folder already: nothing added.
    assert!(!root.join("etc/my.cnf").exists());
}

/// Amazon Linux 2023: dnf with AL2023's own MariaDB 10.11 package names and its layout.
#[test]
fn al2023_installs_mariadb1011_with_dnf() {
    let sha = sha256_hex(AGENT_BYTES);
    let cfg = source_with_agent(&sha);
    let mut node = FakeNode::new(AL2023);
    let object = node.scratch().join("object");
    std::fs::write(&object, AGENT_BYTES).unwrap();
    node.set("STUB_S3_FILE", object.to_str().unwrap());
    node.set("STUB_ENGINE_BIN", "/usr/libexec/mariadbd");
    std::fs::create_dir_all(node.root().join("etc/my.cnf.d")).unwrap();
    std::fs::write(
        node.root().join("etc/my.cnf"),
        "!includedir /etc/my.cnf.d\n",
    )
    .unwrap();
    let run = node.run(&render_user_data(&cfg));
    assert!(run.ok(), "{}", run.describe());

    assert!(run.of("apt-get").is_empty(), "{}", run.describe());
    let dnf: Vec<String> = run.of("dnf").iter().map(|a| a.join(" ")).collect();
    assert_eq!(
        dnf,
        vec!["install -y mariadb1011-server mariadb1011 mariadb1011-backup"]
    );
    let unit = std::fs::read_to_string(node.root().join("etc/systemd/system/strata-agent.service"))
        .unwrap();
    assert!(
        unit.contains(
            "--socket /var/lib/mysql/mysql.sock --restart-command \"systemctl restart mariadb\""
        ),
        "{unit}"
    );
    // The agent's server config folder is read by the RPM layout's my.cnf.d.
    let include = std::fs::read_to_string(node.root().join("etc/my.cnf.d/zz-strata.cnf")).unwrap();
    assert_eq!(include, "!includedir /etc/mysql/mariadb.conf.d\n");
    assert!(node.root().join("etc/mysql/mariadb.conf.d").is_dir());
    assert_eq!(
        run.tag_writes(),
        vec![vec![(
            "strata:node-state".to_string(),
            "installing".to_string()
        )]]
    );
}

/// MySQL 8.4 on Debian: MySQL's own APT repository, then its packages and unit names.
#[test]
fn debian_installs_mysql_from_the_mysql_apt_repository() {
    let sha = sha256_hex(AGENT_BYTES);
    let mut cfg = source_with_agent(&sha);
    cfg.engine = strata_topology::Engine::Mysql;
    cfg.engine_version = "8.4".into();
    cfg.local.server_config_path = None;
    let mut node = FakeNode::new(DEBIAN_12);
    let object = node.scratch().join("object");
    std::fs::write(&object, AGENT_BYTES).unwrap();
    node.set("STUB_S3_FILE", object.to_str().unwrap());
    node.set("STUB_ENGINE_BIN", "/usr/sbin/mysqld");
    let run = node.run(&render_user_data(&cfg));
    assert!(run.ok(), "{}", run.describe());
    let list =
        std::fs::read_to_string(node.root().join("etc/apt/sources.list.d/mysql.list")).unwrap();
    assert_eq!(
        list,
        "deb [signed-by=/etc/apt/keyrings/mysql.asc] http://repo.mysql.com/apt/debian/ bookworm mysql-8.4-lts\n"
    );
    let install: Vec<String> = run.of("apt-get").iter().map(|a| a.join(" ")).collect();
    assert!(
        install
            .iter()
            .any(|c| c.starts_with("install") && c.ends_with("mysql-server mysql-client")),
        "{install:?}"
    );
    let unit = std::fs::read_to_string(node.root().join("etc/systemd/system/strata-agent.service"))
        .unwrap();
    assert!(
        unit.contains("--restart-command \"systemctl restart mysql\""),
        "{unit}"
    );
}

/// An OS with no package manager we know: the failed tag says so, nothing is started.
#[test]
fn unknown_os_fails_with_the_reason_in_the_tags() {
    let cfg = source_with_agent(&sha256_hex(AGENT_BYTES));
    let node = FakeNode::new(ALPINE);
    let run = node.run(&render_user_data(&cfg));
    assert!(!run.ok(), "{}", run.describe());
    let writes = run.tag_writes();
    assert_eq!(writes.len(), 2, "{}", run.describe());
    assert_eq!(
        writes[1],
        vec![
            ("strata:node-state".to_string(), "failed".to_string()),
            (
                "strata:node-error".to_string(),
                "install: no supported package manager (ID=alpine)".to_string()
            ),
        ]
    );
    assert!(run.of("apt-get").is_empty() && run.of("dnf").is_empty());
    assert!(
        !run.of("systemctl")
            .iter()
            .any(|a| a.join(" ").contains("enable")),
        "{}",
        run.describe()
    );
}

/// A package install that fails: its last error line reaches the tag.
#[test]
fn a_failed_package_install_names_apts_error() {
    let cfg = source_with_agent(&sha256_hex(AGENT_BYTES));
    let mut node = FakeNode::new(DEBIAN_12);
    node.set(
        "STUB_INSTALL_FAIL",
        "E: Unable to locate package mariadb-backup",
    );
    let run = node.run(&render_user_data(&cfg));
    assert!(!run.ok(), "{}", run.describe());
    let last = run.tag_writes().pop().unwrap();
    assert_eq!(last[0].1, "failed");
    assert_eq!(
        last[1].1,
        "install: apt-get install mariadb-server mariadb-client mariadb-backup failed (exit 100): E: Unable to locate package mariadb-backup"
    );
}

/// The object in S3 is not what the config says: failed, and no agent binary left behind.
#[test]
fn checksum_mismatch_fails_and_leaves_no_agent() {
    let sha = sha256_hex(AGENT_BYTES);
    let cfg = source_with_agent(&sha);
    let mut node = FakeNode::new(DEBIAN_12);
    let object = node.scratch().join("object");
    let tampered = b"#!/bin/sh\necho something else\n";
    std::fs::write(&object, tampered).unwrap();
    node.set("STUB_S3_FILE", object.to_str().unwrap());
    let run = node.run(&render_user_data(&cfg));
    assert!(!run.ok(), "{}", run.describe());
    let last = run.tag_writes().pop().unwrap();
    assert_eq!(
        last,
        vec![
            ("strata:node-state".to_string(), "failed".to_string()),
            (
                "strata:node-error".to_string(),
                format!(
                    "agent: checksum mismatch (expected {sha}, got {})",
                    sha256_hex(tampered)
                )
            ),
        ]
    );
    let bin_dir = node.root().join("usr/local/bin");
    let left: Vec<_> = std::fs::read_dir(&bin_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", bin_dir.display());
    // apt started MariaDB; a failed node must not keep serving.
    assert!(
        run.of("systemctl")
            .iter()
            .any(|a| a.join(" ") == "disable --now mariadb.service"),
        "{}",
        run.describe()
    );
    assert!(
        !node
            .root()
            .join("etc/systemd/system/strata-agent.service")
            .exists()
    );
}

/// An agent download that fails (403, 404): the tag names the object.
#[test]
fn a_failed_download_names_the_object() {
    let sha = sha256_hex(AGENT_BYTES);
    let cfg = source_with_agent(&sha);
    let node = FakeNode::new(DEBIAN_12);
    let run = node.run(&render_user_data(&cfg));
    assert!(!run.ok(), "{}", run.describe());
    let last = run.tag_writes().pop().unwrap();
    let key = &cfg.install.agent.as_ref().unwrap().key;
    assert_eq!(
        last[1].1,
        format!(
            "agent: download of s3://strata-orders-000000000000-us-east-1/{key} failed (curl exit 22)"
        )
    );
}

/// engine_packages=false on an image with everything inside: nothing is installed or fetched.
#[test]
fn baked_image_installs_nothing() {
    let node = FakeNode::new(DEBIAN_12);
    node.bake("/usr/sbin/mariadbd", b"#!/bin/sh\n");
    node.bake(AGENT_BINARY_PATH, AGENT_BYTES);
    let run = node.run(&render_user_data(&baked_replica()));
    assert!(run.ok(), "{}", run.describe());
    assert!(run.of("apt-get").is_empty() && run.of("dnf").is_empty());
    assert!(
        !run.of("curl").iter().any(|a| a
            .iter()
            .any(|x| x.contains("/agent/") || x.contains("aws:amz:us-east-1:s3"))),
        "{}",
        run.describe()
    );
    assert!(
        run.of("systemctl")
            .iter()
            .any(|a| a.join(" ") == "enable --now strata-agent.service")
    );
}

/// engine_packages=false and the image lacks the engine: a clear failure, no install attempt.
#[test]
fn baked_image_without_the_engine_fails_clearly() {
    let node = FakeNode::new(DEBIAN_12);
    node.bake(AGENT_BINARY_PATH, AGENT_BYTES);
    let run = node.run(&render_user_data(&baked_replica()));
    assert!(!run.ok(), "{}", run.describe());
    assert!(run.of("apt-get").is_empty() && run.of("dnf").is_empty());
    let last = run.tag_writes().pop().unwrap();
    assert_eq!(
        last[1].1,
        "install: the image has no mariadb server and engine packages are off (ami_id images must carry it)"
    );
}

/// No artifact and no agent on the image: fails naming the path.
#[test]
fn no_artifact_and_no_agent_on_the_image_fails() {
    let node = FakeNode::new(DEBIAN_12);
    node.bake("/usr/sbin/mariadbd", b"#!/bin/sh\n");
    let run = node.run(&render_user_data(&baked_replica()));
    assert!(!run.ok(), "{}", run.describe());
    assert_eq!(
        run.tag_writes().pop().unwrap()[1].1,
        "agent: no agent artifact configured and the image has no /usr/local/bin/strata-agent"
    );
}

/// Without AWS_ENDPOINT_URL: the real regional endpoints, S3 virtual-hosted.
#[test]
fn real_aws_endpoints_without_an_override() {
    let sha = sha256_hex(AGENT_BYTES);
    let cfg = source_with_agent(&sha);
    let mut node = FakeNode::new(DEBIAN_12);
    node.unset("AWS_ENDPOINT_URL");
    let object = node.scratch().join("object");
    std::fs::write(&object, AGENT_BYTES).unwrap();
    node.set("STUB_S3_FILE", object.to_str().unwrap());
    let run = node.run(&render_user_data(&cfg));
    assert!(run.ok(), "{}", run.describe());
    let urls: Vec<String> = run
        .of("curl")
        .iter()
        .filter_map(|a| a.iter().find(|x| x.starts_with("http")).cloned())
        .collect();
    assert!(
        urls.contains(&"https://ec2.us-east-1.amazonaws.com/".to_string()),
        "{urls:?}"
    );
    let key = &cfg.install.agent.as_ref().unwrap().key;
    assert!(
        urls.contains(&format!(
            "https://strata-orders-000000000000-us-east-1.s3.us-east-1.amazonaws.com/{key}"
        )),
        "{urls:?}"
    );
    assert!(
        urls.iter()
            .any(|u| u == "http://169.254.169.254/latest/api/token")
    );
}

/// The role cannot tag: the script stops before installing anything.
#[test]
fn a_role_that_cannot_tag_stops_the_script() {
    let cfg = source_with_agent(&sha256_hex(AGENT_BYTES));
    let mut node = FakeNode::new(DEBIAN_12);
    node.set("STUB_EC2_FAIL", "1");
    let run = node.run(&render_user_data(&cfg));
    assert!(!run.ok());
    assert!(run.of("apt-get").is_empty());
    assert!(
        run.stderr()
            .contains("report: CreateTags on i-0stub failed"),
        "{}",
        run.describe()
    );
}
