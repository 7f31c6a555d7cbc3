//! The rendered script against a real AWS API (LocalStack): the real `curl --aws-sigv4`
//! fetches the agent from S3 (path-style on AWS_ENDPOINT_URL) and checks its SHA-256, and
//! CreateTags lands `strata:node-state` (and the error) on a RunInstances instance. IMDSv2 is a
//! small server in the test (token PUT, then GETs that must carry the token); package managers
//! and systemctl are the logging stubs of the fake root.
//!
//! Needs LocalStack: `LOCALSTACK_PORT=4566 scripts/localstack start`, then
//! `LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 cargo test -p strata-topology --test user_data_localstack -- --include-ignored`

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use strata_topology::{AGENT_BINARY_PATH, render_user_data};

fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4566".into())
}

fn require_localstack() {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            &format!("{}/_localstack/health", endpoint()),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("\"ec2\"") && body.contains("\"s3\""),
        "LocalStack with EC2 and S3 does not answer at {}: start it with scripts/localstack start and set LOCALSTACK_ENDPOINT",
        endpoint()
    );
}

/// A signed call with LocalStack's test credentials; returns the body.
fn aws(service: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--noproxy", "*"])
        .args(["--aws-sigv4", &format!("aws:amz:us-east-1:{service}")])
        .args(["--user", "test:test"])
        .args(args)
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{service} {args:?}: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

fn ec2(params: &[(&str, &str)]) -> String {
    let mut args = vec![];
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for p in &pairs {
        args.push("--data-urlencode");
        args.push(p.as_str());
    }
    let url = format!("{}/", endpoint());
    args.push(&url);
    aws("ec2", &args)
}

fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .collect()
}

fn run_instance() -> String {
    let xml = ec2(&[
        ("Action", "RunInstances"),
        ("Version", "2016-11-15"),
        ("ImageId", "ami-03cf127a"),
        ("InstanceType", "t3.micro"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
    ]);
    xml_values(&xml, "instanceId")
        .first()
        .unwrap_or_else(|| panic!("no instanceId in {xml}"))
        .to_string()
}

fn instance_tags(id: &str) -> BTreeMap<String, String> {
    let xml = ec2(&[
        ("Action", "DescribeTags"),
        ("Version", "2016-11-15"),
        ("Filter.1.Name", "resource-id"),
        ("Filter.1.Value.1", id),
    ]);
    xml.split("<item>")
        .skip(1)
        .filter_map(|item| {
            Some((
                xml_values(item, "key").first()?.to_string(),
                xml_values(item, "value")
                    .first()
                    .copied()
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect()
}

fn terminate(id: &str) {
    ec2(&[
        ("Action", "TerminateInstances"),
        ("Version", "2016-11-15"),
        ("InstanceId.1", id),
    ]);
}

/// A fresh bucket holding `bytes` at `key`.
fn upload(bucket: &str, key: &str, bytes: &[u8], scratch: &std::path::Path) {
    let base = endpoint();
    aws("s3", &["-X", "PUT", &format!("{base}/{bucket}")]);
    let f = scratch.join("upload");
    std::fs::write(&f, bytes).unwrap();
    aws(
        "s3",
        &[
            "-X",
            "PUT",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("{base}/{bucket}/{key}"),
        ],
    );
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "strata-ud-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One node booted against LocalStack: returns the run, its fake root and the instance id.
fn boot(agent_in_s3: &[u8], sha_in_config: &str, tag: &str) -> (Run, FakeNode, String) {
    require_localstack();
    let id = run_instance();
    let imds = imds(&id);
    let mut cfg = source_with_agent(sha_in_config);
    let bucket = unique(tag);
    let artifact = cfg.install.agent.as_mut().unwrap();
    artifact.bucket = bucket.clone();
    let key = artifact.key.clone();

    let mut node = FakeNode::with_real_curl(DEBIAN_12);
    upload(&bucket, &key, agent_in_s3, node.scratch());
    // The engine is on the image, so no package manager runs; the agent comes from S3.
    node.bake("/usr/sbin/mariadbd", b"#!/bin/sh\n");
    node.set("AWS_ENDPOINT_URL", &endpoint());
    node.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url);
    node.set("NO_PROXY", "*");
    let run = node.run(&render_user_data(&cfg));
    let requests = imds.requests.lock().unwrap().clone();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /latest/api/token"),
        "{requests:?}"
    );
    (run, node, id)
}

#[test]
#[ignore = "needs LocalStack"]
fn downloads_the_agent_with_sigv4_and_tags_the_instance() {
    let agent = std::fs::read("/bin/true").unwrap();
    let sha = sha256_hex(&agent);
    let (run, node, id) = boot(&agent, &sha, "ok");
    assert!(run.ok(), "{}", run.describe());
    let installed = node.root().join(AGENT_BINARY_PATH.trim_start_matches('/'));
    assert_eq!(std::fs::read(&installed).unwrap(), agent);
    let tags = instance_tags(&id);
    assert_eq!(
        tags.get("strata:node-state").map(String::as_str),
        Some("installing"),
        "{tags:?}"
    );
    assert!(!tags.contains_key("strata:node-error"), "{tags:?}");
    assert!(
        run.of("systemctl")
            .iter()
            .any(|a| a.join(" ") == "enable --now strata-agent.service"),
        "{}",
        run.describe()
    );
    terminate(&id);
}

#[test]
#[ignore = "needs LocalStack"]
fn a_checksum_mismatch_lands_failed_and_the_reason_on_the_instance() {
    let agent = std::fs::read("/bin/true").unwrap();
    let wrong = sha256_hex(b"what the provider uploaded");
    let (run, node, id) = boot(&agent, &wrong, "bad");
    assert!(!run.ok(), "{}", run.describe());
    let tags = instance_tags(&id);
    assert_eq!(
        tags.get("strata:node-state").map(String::as_str),
        Some("failed"),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("strata:node-error").cloned().unwrap_or_default(),
        format!(
            "agent: checksum mismatch (expected {wrong}, got {})",
            sha256_hex(&agent)
        )
    );
    assert!(
        !node
            .root()
            .join(AGENT_BINARY_PATH.trim_start_matches('/'))
            .exists()
    );
    terminate(&id);
}
