//! Real nodes for LocalStack instances: a VPC with two subnets in us-east-1 and one in
//! eu-west-1, an instance in each region running a handcrafted user-data, booted by a real
//! `strata-nodehost run` as systemd-nspawn containers. Needs root, systemd-nspawn, LocalStack at
//! $LOCALSTACK_ENDPOINT and the node image (scripts/node-image builds it).
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceType, ResourceType, Tag, TagSpecification,
};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOME: &str = "us-east-1";
const OTHER: &str = "eu-west-1";
const NEEDS: &str = "needs root, systemd-nspawn, LocalStack (scripts/test)";

fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4566".into())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn ec2(region: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "nodehost-tests",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn iam() -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new(HOME))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "nodehost-tests",
        ))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// Fails loudly (this test must never pass without running) when a prerequisite is missing.
fn require_tools() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "{NEEDS}: run as root");
    for tool in ["systemd-nspawn", "nsenter", "ip", "mount"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{NEEDS}: {tool} is missing (apt-get install systemd-container iproute2)"
        );
    }
    let health = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            &format!("{}/_localstack/health", endpoint()),
        ])
        .output()
        .expect("curl");
    assert!(
        health.status.success(),
        "{NEEDS}: LocalStack does not answer at {} (scripts/localstack start)",
        endpoint()
    );
}

fn node_image() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/node-image"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/node-image");
    assert!(out.status.success(), "scripts/node-image failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata-nodehost")
}

struct Daemon {
    child: Option<Child>,
    state_dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: the PID of the daemon this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        // Roots and console logs stay for a post-mortem; a passing run removes the folder.
        let _ = Command::new(bin())
            .args(["down", "--state-dir"])
            .arg(&self.state_dir)
            .status();
        if self.state_dir.exists() {
            eprintln!("node host state kept at {}", self.state_dir.display());
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- strata-nodehost log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A TCP proxy to LocalStack that the test can cut: while `cut`, connections are dropped at
/// once, as during a LocalStack restart or hiccup.
async fn flaky_proxy(target: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    let cut2 = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if cut2.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            let cut3 = cut2.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                    // Kept-alive connections are cut too, not only new ones.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = async {
                            while !cut3.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        } => {}
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), cut)
}

fn exec(state: &Path, id: &str, script: &str) -> (i32, String) {
    let out = Command::new(bin())
        .args(["exec", "--state-dir"])
        .arg(state)
        .args([id, "--", "bash", "-c", script])
        .output()
        .expect("strata-nodehost exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn status(state: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .args(["status", "--state-dir"])
        .arg(state)
        .output()
        .expect("strata-nodehost status");
    assert!(out.status.success());
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("status JSON")
}

fn node_status(state: &Path, id: &str) -> Option<serde_json::Value> {
    status(state).into_iter().find(|n| n["instance_id"] == id)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn netns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// The user-data: writes the instance id, tags its own instance through EC2 with the IMDS role
/// credentials (curl --aws-sigv4), installs MariaDB from the offline repository and opens it to
/// the network.
const USER_DATA: &str = r#"#!/bin/bash
set -euo pipefail
IMDS=http://169.254.169.254
TOKEN=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" $IMDS/latest/api/token)
md() { curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/$1"; }
IID=$(md meta-data/instance-id)
echo "$IID" > /root/instance-id
REGION=$(md meta-data/placement/region)
ROLE=$(md meta-data/iam/security-credentials/)
CREDS=$(md "meta-data/iam/security-credentials/$ROLE")
field() { echo "$CREDS" | grep -o "\"$1\" *: *\"[^\"]*\"" | cut -d'"' -f4; }
tag() {
  curl -sf --aws-sigv4 "aws:amz:$REGION:ec2" --user "$(field AccessKeyId):$(field SecretAccessKey)" \
    -H "X-Amz-Security-Token: $(field Token)" \
    --data "Action=CreateTags&Version=2016-11-15&ResourceId.1=$IID&Tag.1.Key=$1&Tag.1.Value=$2" \
    "${AWS_ENDPOINT_URL:?}/" >/dev/null
}
tag nodehost-test%3Astage installing
t0=$(date +%s.%N)
apt-get update -q
apt-get install -y -q mariadb-server
t1=$(date +%s.%N)
echo "$t0 $t1" > /root/apt-times
sed -i 's/^bind-address.*/bind-address = 0.0.0.0/' /etc/mysql/mariadb.conf.d/50-server.cnf
systemctl restart mariadb
tag nodehost-test%3Astage ready
"#;

async fn tag_value(region: &str, id: &str, key: &str) -> Option<String> {
    let resp = ec2(region)
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(id).build())
        .filters(Filter::builder().name("key").values(key).build())
        .send()
        .await
        .ok()?;
    resp.tags()
        .first()
        .and_then(|t| t.value())
        .map(str::to_string)
}

async fn instance_state(region: &str, id: &str) -> String {
    let resp = ec2(region)
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    resp.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

/// VPC + subnets in a region; returns the subnet ids.
async fn network(region: &str, vpc_cidr: &str, subnets: &[&str]) -> Vec<String> {
    let c = ec2(region);
    let vpc = c
        .create_vpc()
        .cidr_block(vpc_cidr)
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    let mut out = Vec::new();
    for (i, cidr) in subnets.iter().enumerate() {
        let az = format!("{region}{}", ['a', 'b', 'c'][i]);
        let s = c
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(*cidr)
            .availability_zone(az)
            .send()
            .await
            .expect("CreateSubnet");
        out.push(s.subnet().and_then(|s| s.subnet_id()).unwrap().to_string());
    }
    out
}

async fn run_instance(
    region: &str,
    subnet: &str,
    cluster: &str,
    profile: &str,
) -> (String, String) {
    let resp = ec2(region)
        .run_instances()
        .image_id("ami-03cf127a")
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .user_data(base64::engine::general_purpose::STANDARD.encode(USER_DATA))
        .iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .name(profile)
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("strata:cluster").value(cluster).build())
                .build(),
        )
        .send()
        .await
        .expect("RunInstances");
    let i = &resp.instances()[0];
    (
        i.instance_id().unwrap().to_string(),
        i.private_ip_address().unwrap().to_string(),
    )
}

fn read_f64s(s: &str) -> Vec<f64> {
    s.split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root, systemd-nspawn, LocalStack (scripts/test)"]
async fn localstack_instances_boot_as_real_nodes() {
    require_tools();
    let image = node_image();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let uniq = format!("{}-{}", std::process::id(), nanos % 100_000);
    let cluster = format!("nodehost-test-{uniq}");
    let router = format!("strata-t{}", std::process::id());
    let state_dir = std::env::temp_dir().join(format!("nodehost-test-{uniq}"));
    let _ = std::fs::remove_dir_all(&state_dir);

    // Network and IAM.
    let home_subnets = network(HOME, "10.61.0.0/16", &["10.61.1.0/24", "10.61.2.0/24"]).await;
    let other_subnets = network(OTHER, "10.62.0.0/16", &["10.62.1.0/24"]).await;
    let role = format!("nodehost-role-{uniq}");
    let profile = format!("nodehost-profile-{uniq}");
    iam()
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("CreateRole");
    iam()
        .create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .expect("CreateInstanceProfile");
    iam()
        .add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&role)
        .send()
        .await
        .expect("AddRoleToInstanceProfile");

    let target = endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (proxy, cut) = flaky_proxy(target).await;
    let log = std::env::temp_dir().join(format!("nodehost-test-{uniq}.log"));
    let log_file = std::fs::File::create(&log).expect("daemon log");
    let mut daemon = Daemon {
        child: Some(
            Command::new(bin())
                .args([
                    "run",
                    "--endpoint",
                    &proxy,
                    "--region",
                    HOME,
                    "--region",
                    OTHER,
                ])
                .args([
                    "--cluster",
                    &cluster,
                    "--router-netns",
                    &router,
                    "--state-dir",
                ])
                .arg(&state_dir)
                .arg("--image")
                .arg(&image)
                .stderr(log_file)
                .spawn()
                .expect("starting strata-nodehost run"),
        ),
        state_dir: state_dir.clone(),
        log: log.clone(),
    };

    let (a, a_ip) = run_instance(HOME, &home_subnets[1], &cluster, &profile).await;
    let (b, b_ip) = run_instance(OTHER, &other_subnets[0], &cluster, &profile).await;
    let launched = Instant::now();
    eprintln!("instances: {a} ({a_ip}, {HOME}), {b} ({b_ip}, {OTHER})");

    // User-data ran: both instances tagged themselves through the EC2 API.
    for (region, id) in [(HOME, &a), (OTHER, &b)] {
        let start = Instant::now();
        loop {
            if tag_value(region, id, "nodehost-test:stage")
                .await
                .as_deref()
                == Some("ready")
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "{id} never tagged itself ready; console: {}",
                std::fs::read_to_string(state_dir.join(format!("nodes/{id}/console.log")))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    eprintln!(
        "both nodes ready {:.1} s after RunInstances",
        launched.elapsed().as_secs_f64()
    );
    for id in [&a, &b] {
        let booted = node_status(&state_dir, id).unwrap()["booted_at"]
            .as_f64()
            .unwrap();
        let (rc, out) = exec(
            &state_dir,
            id,
            &format!("cat /var/lib/strata-user-data/{id}/finished-at /root/apt-times"),
        );
        assert_eq!(rc, 0);
        let t = read_f64s(&out);
        eprintln!(
            "FIGURE {id}: boot to user-data done {:.1} s; apt-get update+install mariadb-server {:.1} s",
            t[0] - booted,
            t[2] - t[1]
        );
    }

    // exec: sees the node's files, passes the exit status through.
    assert_eq!(
        exec(&state_dir, &a, "cat /root/instance-id"),
        (0, a.clone())
    );
    assert_eq!(
        exec(&state_dir, &b, "cat /root/instance-id"),
        (0, b.clone())
    );
    assert_eq!(exec(&state_dir, &a, "exit 7").0, 7);
    assert_eq!(
        exec(
            &state_dir,
            &a,
            "echo $AWS_ENDPOINT_URL; ip -4 -o addr show eth0 | awk '{print $4}'; \
             systemctl show-environment | grep AWS_ENDPOINT_URL"
        )
        .1,
        format!(
            "http://169.254.169.254:4566\n{a_ip}/24\nAWS_ENDPOINT_URL=http://169.254.169.254:4566"
        )
    );

    // Across the two VPCs (regions): MariaDB answers on each node's private IP.
    for (from, to_ip) in [(&a, &b_ip), (&b, &a_ip)] {
        let (rc, _) = exec(
            &state_dir,
            from,
            &format!("timeout 5 bash -c '</dev/tcp/{to_ip}/3306'"),
        );
        assert_eq!(rc, 0, "{from} cannot reach {to_ip}:3306");
    }

    // A LocalStack hiccup (every call fails for a while) tears nothing down.
    let leaders: Vec<serde_json::Value> = [&a, &b]
        .iter()
        .map(|id| node_status(&state_dir, id).unwrap()["leader_pid"].clone())
        .collect();
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("DescribeInstances failed"),
        "the daemon never saw the hiccup: the proxy did not cut it off"
    );
    for (id, leader) in [&a, &b].iter().zip(&leaders) {
        let st = node_status(&state_dir, id).unwrap();
        assert_eq!(st["state"], "running", "{id} after the hiccup: {st}");
        assert_eq!(&st["leader_pid"], leader, "{id} was rebooted by the hiccup");
    }

    // Stop: the container's processes are gone, the root is kept.
    let leader = node_status(&state_dir, &a).unwrap()["leader_pid"]
        .as_i64()
        .unwrap();
    ec2(HOME)
        .stop_instances()
        .instance_ids(&a)
        .send()
        .await
        .expect("StopInstances");
    wait_for("node A stopped", Duration::from_secs(120), || {
        (node_status(&state_dir, &a)?["state"] == "stopped").then_some(())
    });
    assert!(
        !Path::new(&format!("/proc/{leader}")).exists(),
        "node A's PID 1 survived the stop"
    );
    assert!(!netns_list().contains(&format!("strata-{a}")));
    assert!(
        state_dir
            .join(format!("nodes/{a}/upper/root/instance-id"))
            .exists()
    );

    // Start: boots again, user-data is not run a second time.
    let started_at_before = std::fs::read_to_string(state_dir.join(format!(
        "nodes/{a}/upper/var/lib/strata-user-data/{a}/started-at"
    )))
    .unwrap();
    ec2(HOME)
        .start_instances()
        .instance_ids(&a)
        .send()
        .await
        .expect("StartInstances");
    wait_for("node A running again", Duration::from_secs(120), || {
        (node_status(&state_dir, &a)?["state"] == "running").then_some(())
    });
    wait_for(
        "the first-boot runner to finish on A",
        Duration::from_secs(120),
        || {
            let (_, out) = exec(
                &state_dir,
                &a,
                "grep -c 'not running it again' /var/log/strata-user-data.log",
            );
            (out == "1").then_some(())
        },
    );
    let (_, started_at_after) = exec(
        &state_dir,
        &a,
        &format!("cat /var/lib/strata-user-data/{a}/started-at"),
    );
    assert_eq!(started_at_after, started_at_before.trim());
    wait_for(
        "MariaDB on A after restart",
        Duration::from_secs(120),
        || {
            (exec(
                &state_dir,
                &b,
                &format!("timeout 5 bash -c '</dev/tcp/{a_ip}/3306'"),
            )
            .0 == 0)
                .then_some(())
        },
    );

    // Terminate: no namespace, veth, mount or state left.
    ec2(HOME)
        .terminate_instances()
        .instance_ids(&a)
        .send()
        .await
        .expect("TerminateInstances");
    ec2(OTHER)
        .terminate_instances()
        .instance_ids(&b)
        .send()
        .await
        .expect("TerminateInstances");
    for id in [&a, &b] {
        wait_for("node removed", Duration::from_secs(120), || {
            (!state_dir.join(format!("nodes/{id}")).exists()).then_some(())
        });
        assert!(!netns_list().contains(&format!("strata-{id}")));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(id.as_str()), "a mount of {id} is left");
    }
    let links = Command::new("ip")
        .args(["-n", &router, "-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(links.trim().is_empty(), "veths left in the router: {links}");
    assert_eq!(instance_state(HOME, &a).await, "terminated");

    // down: the router namespace is gone.
    daemon.stop();
    let down = Command::new(bin())
        .args(["down", "--state-dir"])
        .arg(&state_dir)
        .status()
        .unwrap();
    assert!(down.success());
    assert!(
        !netns_list().contains(&router),
        "router namespace {router} left"
    );
    assert!(!state_dir.join("router.json").exists());
    let _ = std::fs::remove_dir_all(&state_dir);
}
