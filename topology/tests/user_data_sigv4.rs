//! The script's SigV4 requests, checked against the AWS SDK for Python's signer (botocore):
//! LocalStack does not verify signatures, real AWS does. A stand-in endpoint records the S3 GET
//! and the EC2 CreateTags POST that the real `curl --aws-sigv4` sends; botocore recomputes each
//! Authorization header from the same method, path, signed headers and body.
//! curl 7.88 (Debian 12) sends no x-amz-content-sha256 for s3, which S3 requires: the script
//! adds it, and this test proves curl then signs it as S3 expects.
//!
//! Needs a Python with botocore: LocalStack's venv ($STRATA_CACHE/localstack-venv-py313, made
//! by scripts/localstack) or $STRATA_BOTOCORE_PYTHON.

mod common;

use common::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use strata_topology::render_user_data;

fn botocore_python() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BOTOCORE_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("STRATA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/strata")
        });
    cache.join("localstack-venv-py313/bin/python")
}

/// Reads [{service, region, method, url, headers, body_hex, authorization}] on stdin and prints
/// one line per request: "ok" or "mismatch <curl> <botocore>".
const VERIFY: &str = r#"
import json, sys, re
from botocore.auth import SigV4Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
for r in json.load(sys.stdin):
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d+)/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=(\w+)", r["authorization"])
    key, _, region, service, signed, sig = m.groups()
    names = signed.split(";")
    headers = {k: v for k, v in r["headers"] if k.lower() in names}
    req = AWSRequest(method=r["method"], url=r["url"], data=bytes.fromhex(r["body_hex"]), headers=headers)
    req.context["timestamp"] = headers.get("X-Amz-Date") or headers.get("x-amz-date")
    cls = S3SigV4Auth if service == "s3" else SigV4Auth
    auth = cls(Credentials(key, "SECRET-FOR-SIGNING", r["token"]), service, region)
    canonical = auth.canonical_request(req)
    expected = auth.signature(auth.string_to_sign(req, canonical), req)
    print("ok" if expected == sig else f"mismatch {sig} {expected}\n{canonical}")
"#;

#[test]
#[ignore = "needs botocore (LocalStack's venv: scripts/localstack install)"]
fn curl_signs_s3_and_ec2_requests_like_the_aws_sdk() {
    let python = botocore_python();
    let probe = Command::new(&python)
        .args(["-c", "import botocore"])
        .output();
    assert!(
        matches!(&probe, Ok(o) if o.status.success()),
        "no Python with botocore at {} (run scripts/localstack install, or set STRATA_BOTOCORE_PYTHON): {probe:?}",
        python.display()
    );
    let agent = b"#!/bin/sh\necho agent\n".to_vec();
    let sha = sha256_hex(&agent);
    let aws = fake_aws(agent);
    let imds = imds_with_secret("i-0sigv4", "SECRET-FOR-SIGNING");
    let mut node = FakeNode::with_real_curl(DEBIAN_12);
    node.bake("/usr/sbin/mariadbd", b"#!/bin/sh\n");
    node.set("AWS_ENDPOINT_URL", &aws.url);
    node.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url);
    node.set("NO_PROXY", "*");
    let run = node.run(&render_user_data(&source_with_agent(&sha)));
    assert!(run.ok(), "{}", run.describe());

    let requests = aws.requests.lock().unwrap().clone();
    let s3 = requests.iter().filter(|r| r.method == "GET").count();
    let ec2 = requests.iter().filter(|r| r.method == "POST").count();
    assert_eq!((s3, ec2), (1, 1), "{requests:?}");
    let host = aws.url.trim_start_matches("http://");
    let items: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let auth = r
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("unsigned request {r:?}"));
            serde_json::json!({
                "method": r.method,
                "url": format!("http://{host}{}", r.path),
                "headers": r.headers,
                "body_hex": r.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "authorization": auth,
                "token": "localstack-session",
            })
        })
        .collect();
    let mut child = Command::new(&python)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&items).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.lines().count() == 2 && text.lines().all(|l| l == "ok"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the S3 GET carried the content hash header S3 insists on.
    let get = requests.iter().find(|r| r.method == "GET").unwrap();
    assert!(
        get.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256")),
        "{get:?}"
    );
}
