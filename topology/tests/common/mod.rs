//! Shared by the user-data script tests: node configs, a fake root with stub commands, and a
//! runner that executes the rendered script under bash with that root.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use strata_topology::NodeConfig;

/// A source whose first boot installs MariaDB and fetches the agent from S3.
pub(crate) fn source_with_agent(sha256: &str) -> NodeConfig {
    let json = format!(
        r#"{{
  "version": 2,
  "cluster_id": "orders",
  "node_id": "orders-source",
  "node_name": "orders-source",
  "role": "source",
  "region": "us-east-1",
  "engine": "mariadb",
  "engine_version": "10.11",
  "server_id": 1,
  "replication": {{
    "mode": "semi_sync",
    "credential": {{"ssm_parameter": "/strata/orders/replication-password", "ssm_region": "us-east-1"}}
  }},
  "storage": {{"device": "/dev/xvdf", "mount_point": "/var/lib/mysql", "max_size_gib": 100,
               "grow_at_percent": 80, "grow_by_percent": 20, "min_step_gib": 10}},
  "admin": {{"user": "strata_admin",
             "credential": {{"ssm_parameter": "/strata/orders/admin-password", "ssm_region": "us-east-1"}}}},
  "install": {{
    "engine_packages": true,
    "agent": {{"bucket": "strata-orders-000000000000-us-east-1",
               "key": "agent/0.1.0/x86_64/{sha256}/strata-agent",
               "region": "us-east-1", "sha256": "{sha256}"}}
  }},
  "tags": {{"team": "payments"}}
}}"#
    );
    NodeConfig::from_json(&json).expect("fixture is a valid config")
}

/// A replica on an image with everything baked in: nothing to install, no artifact.
pub(crate) fn baked_replica() -> NodeConfig {
    let json = r#"{
  "version": 2,
  "cluster_id": "orders",
  "node_id": "orders-replica-1",
  "node_name": "orders-replica-1",
  "role": "replica",
  "region": "us-east-1",
  "engine": "mariadb",
  "engine_version": "10.11",
  "server_id": 2,
  "source": {"host": "10.0.1.10", "port": 3306},
  "replication": {
    "mode": "async",
    "credential": {"ssm_parameter": "/strata/orders/replication-password", "ssm_region": "us-east-1"}
  },
  "storage": {"device": "/dev/xvdf", "mount_point": "/var/lib/mysql", "max_size_gib": 100,
              "grow_at_percent": 80, "grow_by_percent": 20, "min_step_gib": 10},
  "install": {"engine_packages": false}
}"#;
    NodeConfig::from_json(json).expect("fixture is a valid config")
}

pub(crate) const DEBIAN_12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
pub(crate) const AL2023: &str = "NAME=\"Amazon Linux\"\nVERSION=\"2023\"\nID=\"amzn\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"2023\"\nPLATFORM_ID=\"platform:al2023\"\nPRETTY_NAME=\"Amazon Linux 2023.6.20241212\"\n";
pub(crate) const ALPINE: &str = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n";

/// The SHA-256 of `bytes`, by the same `sha256sum` the script uses.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let dir = TempDir::new("sha");
    let f = dir.path().join("blob");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().unwrap();
    assert!(out.status.success(), "sha256sum: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A directory removed on drop (keeps topology free of extra dev-dependencies).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "strata-ud-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STRATA_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Stub commands: each logs its name and arguments (tab-separated, one call a line) to
/// $STUB_LOG. Package managers "install" by creating the engine binary in the fake root.
const LOG_CALL: &str = r#"{ printf '%s' "${0##*/}"; printf '\t%s' "$@"; echo; } >>"$STUB_LOG""#;

fn stub_package_manager() -> String {
    format!(
        r#"#!/bin/bash
{LOG_CALL}
if [[ $1 == install ]]; then
  if [[ -n ${{STUB_INSTALL_FAIL:-}} ]]; then
    echo "$STUB_INSTALL_FAIL" >&2
    exit 100
  fi
  mkdir -p "$STRATA_ROOT_PREFIX$(dirname "$STUB_ENGINE_BIN")"
  printf '#!/bin/sh\n' >"$STRATA_ROOT_PREFIX$STUB_ENGINE_BIN"
  chmod 0755 "$STRATA_ROOT_PREFIX$STUB_ENGINE_BIN"
fi
exit 0
"#
    )
}

fn stub_curl() -> String {
    format!(
        r#"#!/bin/bash
{LOG_CALL}
out='' url='' prev=''
for a in "$@"; do
  [[ $prev != -o ]] || out=$a
  [[ $a != http* ]] || url=$a
  if [[ $prev == --config && $a == - ]]; then
    while IFS= read -r line; do printf 'curl-config\t%s\n' "$line" >>"$STUB_LOG"; done
  fi
  prev=$a
done
reply() {{ if [[ -n $out ]]; then printf '%s' "$1" >"$out"; else printf '%s' "$1"; fi; }}
case "$url" in
  */latest/api/token) reply STUBTOKEN ;;
  */latest/meta-data/instance-id) reply i-0stub ;;
  */latest/meta-data/placement/region) reply us-east-1 ;;
  */latest/meta-data/iam/security-credentials/) reply stub-role ;;
  */latest/meta-data/iam/security-credentials/stub-role)
    reply '{{
  "Code" : "Success",
  "AccessKeyId" : "AKIASTUB",
  "SecretAccessKey" : "SECRETSTUB",
  "Token" : "SESSIONSTUB",
  "Expiration" : "2030-01-01T00:00:00Z"
}}' ;;
  *RPM-GPG-KEY-mysql*) reply 'MYSQL KEY' ;;
  */agent/*)
    [[ -n ${{STUB_S3_FILE:-}} ]] || {{ echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }}
    cp "$STUB_S3_FILE" "$out" ;;
  *)
    [[ -z ${{STUB_EC2_FAIL:-}} ]] || {{ echo "curl: (22) The requested URL returned error: 403" >&2; exit 22; }}
    reply '<CreateTagsResponse><return>true</return></CreateTagsResponse>' ;;
esac
"#
    )
}

fn stub_simple() -> String {
    format!("#!/bin/bash\n{LOG_CALL}\nexit 0\n")
}

/// One fake node: a root directory, stub commands and their call log.
pub(crate) struct FakeNode {
    dir: TempDir,
    pub env: Vec<(String, String)>,
}

pub(crate) struct Run {
    pub output: Output,
    pub calls: Vec<Vec<String>>,
}

impl FakeNode {
    /// A node whose /etc/os-release is `os_release`, with stub curl (IMDS, EC2, S3).
    pub(crate) fn new(os_release: &str) -> FakeNode {
        Self::with_stubs(os_release, true)
    }

    /// Same, but the real curl: for tests against a real endpoint.
    pub(crate) fn with_real_curl(os_release: &str) -> FakeNode {
        Self::with_stubs(os_release, false)
    }

    fn with_stubs(os_release: &str, stub_curl_too: bool) -> FakeNode {
        let dir = TempDir::new("node");
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(root.join("etc/os-release"), os_release).unwrap();
        let mut stubs = vec![
            ("apt-get", stub_package_manager()),
            ("dnf", stub_package_manager()),
            ("systemctl", stub_simple()),
        ];
        if stub_curl_too {
            stubs.push(("curl", stub_curl()));
        }
        for (name, text) in stubs {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let env = vec![
            ("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())),
            ("STRATA_ROOT_PREFIX".into(), root.display().to_string()),
            (
                "STUB_LOG".into(),
                dir.path().join("calls.log").display().to_string(),
            ),
            ("STUB_ENGINE_BIN".into(), "/usr/sbin/mariadbd".into()),
            ("AWS_ENDPOINT_URL".into(), "http://aws.test:4566".into()),
        ];
        FakeNode { dir, env }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(name, _)| name != k);
        self.env.push((k.into(), v.into()));
    }

    pub(crate) fn unset(&mut self, k: &str) {
        self.env.retain(|(name, _)| name != k);
    }

    /// Puts an executable file at `path` inside the root (an engine or agent baked in).
    pub(crate) fn bake(&self, path: &str, content: &[u8]) {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub(crate) fn run(&self, script: &str) -> Run {
        let path = self.dir.path().join("user-data.sh");
        std::fs::write(&path, script).unwrap();
        let output = Command::new("bash")
            .arg(&path)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("bash runs");
        let log = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        let calls = log
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        Run { output, calls }
    }
}

impl Run {
    pub(crate) fn ok(&self) -> bool {
        self.output.status.success()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Calls of one stub, arguments only.
    pub(crate) fn of(&self, program: &str) -> Vec<&[String]> {
        self.calls
            .iter()
            .filter(|c| c.first().map(String::as_str) == Some(program))
            .map(|c| &c[1..])
            .collect()
    }

    /// The tags each CreateTags call wrote, in order: key -> value.
    pub(crate) fn tag_writes(&self) -> Vec<Vec<(String, String)>> {
        self.of("curl")
            .into_iter()
            .filter(|args| args.iter().any(|a| a == "Action=CreateTags"))
            .map(|args| {
                let field = |name: &str| {
                    args.iter()
                        .find_map(|a| a.strip_prefix(&format!("{name}=")))
                        .map(str::to_string)
                };
                (1..=2)
                    .filter_map(|i| {
                        Some((
                            field(&format!("Tag.{i}.Key"))?,
                            field(&format!("Tag.{i}.Value"))?,
                        ))
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stderr\n{}\n--- calls\n{}",
            self.output.status.code(),
            self.stderr(),
            self.calls
                .iter()
                .map(|c| c.join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// IMDSv2 for one instance: answers only requests that carry the token it handed out.
pub(crate) struct Imds {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub(crate) fn imds(instance_id: &str) -> Imds {
    imds_with_secret(instance_id, "test")
}

/// IMDSv2 whose role credentials are AccessKeyId "test" and the given secret.
pub(crate) fn imds_with_secret(instance_id: &str, secret: &str) -> Imds {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let id = instance_id.to_string();
    let creds = format!(
        "{{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"test\",\n  \"SecretAccessKey\" : \"{secret}\",\n  \"Token\" : \"localstack-session\",\n  \"Expiration\" : \"2030-01-01T00:00:00Z\"\n}}"
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut token_ok = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("x-aws-ec2-metadata-token: imds-token") {
                    token_ok = true;
                }
            }
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            seen.lock().unwrap().push(format!("{method} {path}"));
            let body = match (method.as_str(), path.as_str(), token_ok) {
                ("PUT", "/latest/api/token", _) => Some("imds-token".to_string()),
                ("GET", "/latest/meta-data/instance-id", true) => Some(id.clone()),
                ("GET", "/latest/meta-data/placement/region", true) => Some("us-east-1".into()),
                ("GET", "/latest/meta-data/iam/security-credentials/", true) => {
                    Some("strata-node".into())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/strata-node", true) => {
                    Some(creds.clone())
                }
                _ => None,
            };
            let reply = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None if !token_ok => {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .into()
                }
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    Imds { url, requests }
}

/// One HTTP request as a server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A stand-in AWS endpoint that records every request: S3 GETs get `object`, anything else a
/// CreateTags-style 200.
pub(crate) struct FakeAws {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Captured>>>,
}

pub(crate) fn fake_aws(object: Vec<u8>) -> FakeAws {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let reply_body = if method == "GET" {
                object.clone()
            } else {
                b"<CreateTagsResponse><return>true</return></CreateTagsResponse>".to_vec()
            };
            seen.lock().unwrap().push(Captured {
                method,
                path,
                headers,
                body,
            });
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply_body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&reply_body);
        }
    });
    FakeAws { url, requests }
}
