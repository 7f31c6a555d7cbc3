//! Failover end to end on booted nodes: `tofu apply` of a semi-sync source with two replicas
//! while `strata-nodehost` boots each instance as a Debian 12 node (MariaDB from the OS's
//! packages, the agent from S3, the NodeConfig's `failover` section from the provider). The
//! agents take the lease and keep the writer record; a continuous writer resolves the writer
//! name through the Route 53 API on every reconnect and records each acknowledged commit.
//!
//! Then, repeatedly, the source is lost, alternating two faults that model an instance loss:
//! `kill -9` of its `mariadbd` and agent (no restart), and a cut of its network (its veth goes
//! down). Each time: a replica must be promoted and the writer record moved; the time from the
//! fault to the first write acknowledged by the new source is measured; every acknowledged
//! write must be on the new source and the surviving replica; the old source (stopped by the
//! promoter through EC2, started again here) must come back as a replica, never as a second
//! writer. Then a planned switchover through `strata-agent switchover` inside a node: zero loss,
//! the writer record moves, the write gap is measured; a rolling `engine_settings` change
//! through `tofu apply`. Then a replica's instance is terminated outside Terraform while writes
//! go on: the source's agent relaunches it, the twin seeds, catches up and takes the rolled
//! settings (time to caught up measured). After a refresh the cluster's status attributes
//! report the failover, the replica resource names its twin, and `tofu plan` is empty. Last,
//! the instance the cluster resource launched is terminated: the plan never replaces or creates
//! anything, the agents relaunch it, and after a refresh `source_node_id` names the twin and
//! the plan is empty.

mod acc_support;

use acc_support::{Acc, HOME, write_config};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_acceptance_tests::nodes::NodeHost;
use strata_acceptance_tests::one_line;

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// [`wait_for`] that runs `diagnose` before it fails.
fn wait_for_or<T>(
    what: &str,
    timeout: Duration,
    diagnose: impl Fn(),
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() >= timeout {
            diagnose();
            panic!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a node says (agent status, units, the agent's last log lines), printed so a failure
/// can be understood after the stack is gone.
fn dump_node(nodes: &NodeHost, n: &Node) {
    for cmd in [
        &[
            "strata-agent",
            "status",
            "--socket",
            "/run/mysqld/mysqld.sock",
        ][..],
        &[
            "systemctl",
            "--no-pager",
            "status",
            "strata-agent",
            "mariadb",
        ][..],
        &[
            "journalctl",
            "-u",
            "strata-agent",
            "-u",
            "mariadb",
            "-o",
            "short-precise",
            "--no-pager",
            "-q",
            "-n",
            "250",
        ][..],
    ] {
        let out = nodes.exec(&n.instance, cmd);
        eprintln!(
            "failover-boot: {} `{}`:\n{}",
            n.node_id,
            cmd.join(" "),
            out.map(|o| format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
            .unwrap_or_else(|e| format!("{e:#}"))
        );
    }
}

/// The instance the agents launched in place of `lost` (tagged `strata:replaces`), with its
/// private IP, once it exists.
fn replacement_of(acc: &Acc, lost: &str) -> Option<(String, String)> {
    let out = acc
        .block(
            acc.ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{}", strata_topology::replace::TAG_REPLACES))
                        .values(lost)
                        .build(),
                )
                .send(),
        )
        .ok()?;
    let i = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()?;
    Some((
        i.instance_id()?.to_string(),
        i.private_ip_address()?.to_string(),
    ))
}

/// One write the server acknowledged: the id written and the server (hostname) that said OK.
#[derive(Clone, Debug)]
struct Ack {
    id: u64,
    host: String,
    at: Instant,
}

/// The continuous writer: one `mariadb` client process per statement, run in the router
/// namespace (the only place the nodes' private IPs exist). The writer's address is looked up
/// through Route 53 (`ListResourceRecordSets`, as the VPC's resolver would answer) whenever a
/// write fails, i.e. on each reconnect. A write counts as acknowledged only when the client
/// got OK for the commit and printed the server's hostname.
struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// The last failed statement's target and error, for a failure's diagnosis.
    last_error: Arc<Mutex<String>>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

struct WriterCfg {
    /// LocalStack's URL: the writer makes its own Route 53 client, because an SDK client's
    /// pooled connections belong to the runtime that opened them (sharing the test's client
    /// with this thread's runtime hangs).
    endpoint: String,
    zone_id: String,
    writer_name: String,
    router: String,
    user: String,
    password: String,
}

fn resolve_writer(
    rt: &tokio::runtime::Runtime,
    route53: &aws_sdk_route53::Client,
    c: &WriterCfg,
) -> Option<String> {
    let out = rt
        .block_on(
            route53
                .list_resource_record_sets()
                .hosted_zone_id(&c.zone_id)
                .send(),
        )
        .ok()?;
    let want = format!("{}.", c.writer_name.trim_end_matches('.'));
    out.resource_record_sets()
        .iter()
        .filter(|s| {
            s.name().eq_ignore_ascii_case(&want) && *s.r#type() == aws_sdk_route53::types::RrType::A
        })
        .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
        .next()
}

impl Writer {
    fn start(c: WriterCfg) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(String::new()));
        let (s, a, le) = (stop.clone(), acks.clone(), last_error.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let conf = aws_sdk_route53::Config::builder()
                .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
                .region(aws_sdk_route53::config::Region::new("us-east-1"))
                .endpoint_url(&c.endpoint)
                .credentials_provider(aws_sdk_route53::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "strata-acc",
                ))
                .build();
            let route53 = aws_sdk_route53::Client::from_conf(conf);
            let mut target: Option<String> = None;
            let mut attempts = 0u64;
            while !s.load(Ordering::SeqCst) {
                let Some(host) = target.clone().or_else(|| resolve_writer(&rt, &route53, &c))
                else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                attempts += 1;
                let id = attempts;
                // `timeout` bounds a statement sent to a source that vanished from the
                // network (the client would wait for TCP to give up).
                let out = Command::new("timeout")
                    .args([
                        "-s", "KILL", "4", "ip", "netns", "exec", &c.router, "mariadb",
                    ])
                    .args(["-h", &host, "-P", "3306", "-u", &c.user])
                    .args(["-N", "-B", "--connect-timeout=2", "-e"])
                    .arg(format!(
                        "INSERT INTO fo.w (id) VALUES ({id}); SELECT @@hostname"
                    ))
                    .env("MYSQL_PWD", &c.password)
                    .output();
                match out {
                    Ok(o) if o.status.success() => {
                        let server = String::from_utf8_lossy(&o.stdout).trim().to_string();
                        a.lock().unwrap().push(Ack {
                            id,
                            host: server,
                            at: Instant::now(),
                        });
                        target = Some(host);
                    }
                    other => {
                        let why = match other {
                            Ok(o) => format!(
                                "exit {:?}: {}",
                                o.status.code(),
                                String::from_utf8_lossy(&o.stderr).trim()
                            ),
                            Err(e) => e.to_string(),
                        };
                        *le.lock().unwrap() = format!("{host}: {why}");
                        target = None;
                        // Not faster: each failure looks the record up again, and a flood of
                        // Route 53 calls slows LocalStack's S3, where the agents hold the lease.
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            attempts
        });
        Writer {
            stop,
            acks,
            last_error,
            handle: Some(handle),
        }
    }

    fn last_error(&self) -> String {
        self.last_error.lock().unwrap().clone()
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().expect("writer thread"))
            .unwrap_or(0)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node of the cluster as the test sees it.
#[derive(Clone, Debug)]
struct Node {
    instance: String,
    node_id: String,
    ip: String,
}

/// Waits until EC2 says the instance is stopped and the node host has stopped its container:
/// a stop takes effect on AWS before a start can follow. (Starting it again before the node
/// host stopped it left a node whose killed services nothing restarted.)
fn wait_stopped(acc: &Acc, nodes: &NodeHost, instance: &str, by: &str) {
    wait_for(
        &format!("{instance} stopped {by}"),
        Duration::from_secs(60),
        || {
            let st = acc.instance(&acc.ec2, instance);
            matches!(
                st.state().and_then(|s| s.name()),
                Some(aws_sdk_ec2::types::InstanceStateName::Stopped)
            )
            .then_some(())
        },
    );
    wait_for(
        &format!("node host stopped {instance}"),
        Duration::from_secs(120),
        || {
            nodes
                .status()
                .ok()?
                .iter()
                .any(|n| {
                    n.get("instance_id").and_then(serde_json::Value::as_str) == Some(instance)
                        && n.get("state").and_then(serde_json::Value::as_str) == Some("stopped")
                })
                .then_some(())
        },
    );
}

/// `Some("replica")` when the node's agent says it is a read-only replica whose IO thread runs.
fn replicating(nodes: &NodeHost, n: &Node) -> Option<String> {
    let out = nodes
        .exec(
            &n.instance,
            &[
                "strata-agent",
                "status",
                "--socket",
                "/run/mysqld/mysqld.sock",
            ],
        )
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let me = v["failover"]["nodes"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == n.node_id.as_str())?
        .clone();
    let role = me["role"].as_str()?.to_string();
    let io = v["replication"]["io_thread"].as_str() == Some("Yes");
    (role == "replica" && io && v["read_only"] == true).then_some(role)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill9,
    NetCut,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
#[ignore = "needs root, systemd-nspawn, tofu and LocalStack on CPython 3.13: run via scripts/test"]
fn booted_cluster_fails_over_and_switches_over_without_losing_acknowledged_writes() {
    let mut acc = Acc::new("fob");
    let nodes = NodeHost::start(&[&acc.name]).expect("start the node host");
    let body = format!(
        r#"
resource "strata_cluster" "main" {{
  name                             = "{name}"
  engine                           = "mariadb"
  instance_type                    = "t3.micro"
  subnet_id                        = "{s0}"
  replication_mode                 = "semi_sync"
  semi_sync_wait_for_replica_count = 1
  allowed_cidr_blocks              = ["10.0.0.0/8"]
}}

resource "strata_replica" "r" {{
  count      = 2
  cluster_id = strata_cluster.main.id
  subnet_id  = count.index == 0 ? "{s0}" : "{s1}"
}}
"#,
        name = acc.name,
        s0 = acc.subnet(0),
        s1 = acc.subnet(acc.net.home_subnet_ids.len().min(2) - 1),
    );
    write_config(&acc.dir, &acc.provider_hcl_waiting("15m"), &body);
    // The same configuration with engine_settings: a rolling change (docs/rolling-changes.md).
    let body_rolled = body.replace(
        "  allowed_cidr_blocks              = [\"10.0.0.0/8\"]\n}",
        "  allowed_cidr_blocks              = [\"10.0.0.0/8\"]\n  engine_settings = {\n    max_connections            = \"333\"\n    table_open_cache_instances = \"4\"\n  }\n}",
    );
    assert_ne!(body_rolled, body, "engine_settings not inserted");
    let t0 = Instant::now();
    acc.apply();
    eprintln!(
        "failover-boot: apply (source + 2 replicas booted, ready) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // LocalStack writes an unversioned key's PUT into the key's one backing file as the body
    // arrives: a node killed or cut off while it renews the lease would leave lease.json
    // unreadable for every node (docs/failover.md, Limits). S3 applies a PUT whole or not at
    // all; with versioning on, LocalStack gives each PUT its own file. The destroy at the end
    // removes the versions.
    let lease_bucket = strata_topology::agent_bucket_name(&acc.name, "000000000000", HOME);
    acc.block(
        acc.s3
            .put_bucket_versioning()
            .bucket(&lease_bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .expect("turn versioning on for the cluster's bucket (the lease's)");

    let cluster = acc.resource("strata_cluster.main");
    let s = |k: &str| {
        cluster[k]
            .as_str()
            .unwrap_or_else(|| panic!("strata_cluster.main.{k}: {cluster}"))
            .to_string()
    };
    let zone_id = s("dns_zone_id");
    let writer_endpoint = s("writer_endpoint");
    let writer_name = writer_endpoint
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap();
    let user = s("admin_user");
    let password = acc
        .block(
            acc.ssm
                .get_parameter()
                .name(s("admin_parameter_name"))
                .with_decryption(true)
                .send(),
        )
        .expect("admin password parameter")
        .parameter
        .and_then(|p| p.value)
        .expect("admin password value");
    let mut all: Vec<Node> = Vec::new();
    let mut instances = vec![(s("source_node_id"), s("source_private_ip"))];
    for i in 0..2 {
        let r = acc.resource(&format!("strata_replica.r[{i}]"));
        instances.push((
            r["node_id"].as_str().unwrap().to_string(),
            r["private_ip"].as_str().unwrap().to_string(),
        ));
    }
    for (instance, ip) in instances {
        let (_, cfg) = acc.user_data(&instance);
        assert!(
            cfg.failover.is_some(),
            "{instance}: NodeConfig has no failover section"
        );
        all.push(Node {
            instance,
            node_id: cfg.node_id,
            ip,
        });
    }
    let by_host = |h: &str| -> Option<Node> {
        // @@hostname is the private DNS name, ip-10-42-1-5(.ec2.internal).
        let dashed = |ip: &str| format!("ip-{}", ip.replace('.', "-"));
        all.iter()
            .find(|n| h.split('.').next() == Some(dashed(&n.ip).as_str()) || h == n.ip)
            .cloned()
    };
    let sql = |host: &str, q: &str| nodes.sql(host, &user, &password, q);
    let writer_ip = || acc.resolve(&zone_id, &writer_name);

    // The launch source holds the writer name.
    assert_eq!(
        writer_ip(),
        vec![all[0].ip.clone()],
        "writer before any failover"
    );
    sql(
        &all[0].ip,
        "CREATE DATABASE fo; CREATE TABLE fo.w (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .expect("schema on the source");

    let mut writer = Writer::start(WriterCfg {
        endpoint: acc.endpoint.clone(),
        zone_id: zone_id.clone(),
        writer_name: writer_name.clone(),
        router: nodes.router_netns().to_string(),
        user: user.clone(),
        password: password.clone(),
    });
    wait_for("first acknowledged writes", Duration::from_secs(30), || {
        (writer.acks().len() >= 5).then_some(())
    });
    let host_of_first = writer.acks()[0].host.clone();
    assert_eq!(
        by_host(&host_of_first).map(|n| n.instance),
        Some(all[0].instance.clone()),
        "first writes acknowledged by {host_of_first}, not the launch source"
    );

    let cycles: usize = std::env::var("STRATA_FAILOVER_BOOT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut source = all[0].clone();
    let mut times_ms: Vec<f64> = Vec::new();
    let mut split_brain = 0usize;
    let mut rebuilt = 0usize;
    for cycle in 0..cycles {
        let fault = if cycle % 2 == 0 {
            Fault::Kill9
        } else {
            Fault::NetCut
        };
        let before = writer.acks().len();
        wait_for_or(
            "writes flowing before the fault",
            Duration::from_secs(30),
            || {
                eprintln!(
                    "failover-boot: writer's last failure: {}",
                    writer.last_error()
                );
                for n in &all {
                    dump_node(&nodes, n);
                }
            },
            || (writer.acks().len() >= before + 3).then_some(()),
        );
        // Every other node replicates before the fault, as an Auto Scaling group would see to:
        // a node that an unplanned extra failover fenced (say, the lease store out of reach
        // for a while) is started again, so each fault meets a source with two replicas.
        for n in all.iter().filter(|n| n.instance != source.instance) {
            if replicating(&nodes, n).is_some() {
                continue;
            }
            use aws_sdk_ec2::types::InstanceStateName as S;
            let st = acc.instance(&acc.ec2, &n.instance);
            if matches!(
                st.state().and_then(|s| s.name()),
                Some(S::Stopping | S::Stopped)
            ) {
                eprintln!(
                    "failover-boot: before cycle {cycle}: {} is stopped (fenced by a failover the test did not cause); starting it",
                    n.node_id
                );
                wait_stopped(&acc, &nodes, &n.instance, "by a fencing promoter");
                acc.block(acc.ec2.start_instances().instance_ids(&n.instance).send())
                    .expect("StartInstances of a stopped replica");
            }
            wait_for_or(
                &format!("before cycle {cycle}: {} replicating", n.node_id),
                Duration::from_secs(300),
                || dump_node(&nodes, n),
                || replicating(&nodes, n),
            );
        }
        // The fault goes to the node the writer record names. Should that not be the node the
        // last cycle left as source, a failover happened that the test did not cause: say so,
        // with every node's account, rather than fault a node that no longer serves.
        let serving = writer_ip();
        if serving != vec![source.ip.clone()] {
            eprintln!(
                "failover-boot: before cycle {cycle} the writer record names {serving:?}, not {} ({}); every node's state and log follow",
                source.node_id, source.ip
            );
            for n in &all {
                dump_node(&nodes, n);
            }
            panic!(
                "before cycle {cycle}: a failover the test did not cause moved the writer from {} to {serving:?}",
                source.node_id
            );
        }
        let killed_at = Instant::now();
        match fault {
            Fault::Kill9 => {
                // No restart: systemd would bring both back in 5 s; an instance loss does not.
                nodes
                    .exec_ok(
                        &source.instance,
                        &[
                            "sh",
                            "-c",
                            "kill -9 $(pidof mariadbd) $(pidof strata-agent); \
                             systemctl stop strata-agent.service mariadb.service",
                        ],
                    )
                    .expect("kill -9 in the source node");
            }
            Fault::NetCut => {
                let ns = format!("strata-{}", source.instance);
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns, "ip", "link", "set", "eth0", "down"])
                    .output()
                    .expect("ip link set down");
                assert!(
                    out.status.success(),
                    "cutting {ns}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // The first write acknowledged by another server.
        let first_new = wait_for_or(
            &format!("cycle {cycle} ({fault:?}): a write acknowledged by a new source"),
            Duration::from_secs(90),
            || {
                eprintln!(
                    "failover-boot: writer's last failure: {}",
                    writer.last_error()
                );
                for n in &all {
                    dump_node(&nodes, n);
                }
            },
            || {
                writer.acks().into_iter().find(|a| {
                    a.at > killed_at
                        && by_host(&a.host).map(|n| n.instance) != Some(source.instance.clone())
                })
            },
        );
        let took = first_new.at.duration_since(killed_at).as_secs_f64() * 1000.0;
        times_ms.push(took);
        if took > 20_000.0 {
            // Not a failure (the figure is reported, not bounded), but far above the usual
            // 6-10 s: keep the agents' own account of where the time went.
            eprintln!(
                "failover-boot: cycle {cycle} ({fault:?}) took {took:.0} ms; every node's state and log follow"
            );
            for n in &all {
                dump_node(&nodes, n);
            }
        }
        let new_source = by_host(&first_new.host)
            .unwrap_or_else(|| panic!("acknowledged by unknown server {}", first_new.host));
        assert_eq!(
            writer_ip(),
            vec![new_source.ip.clone()],
            "writer record after failover {cycle}"
        );
        // Split brain: an ack by the old source after the new one acknowledged a write.
        let late_old = writer
            .acks()
            .iter()
            .filter(|a| {
                a.at > first_new.at
                    && by_host(&a.host).map(|n| n.instance) == Some(source.instance.clone())
            })
            .count();
        split_brain += usize::from(late_old > 0);
        eprintln!(
            "failover-boot: cycle {cycle} {fault:?}: {} -> {} in {took:.0} ms (first write on the new source)",
            source.node_id, new_source.node_id
        );

        // The promoter stops the old source's instance (fencing through EC2); start it again,
        // as an operator or an Auto Scaling group would, and it must come back as a replica.
        let old = source.clone();
        wait_stopped(&acc, &nodes, &old.instance, "by the promoter");
        acc.block(acc.ec2.start_instances().instance_ids(&old.instance).send())
            .expect("StartInstances of the old source");
        let back = Instant::now();
        let diagnose = || dump_node(&nodes, &old);
        let role = wait_for_or(
            &format!("old source {} back as a replica", old.node_id),
            Duration::from_secs(300),
            diagnose,
            || replicating(&nodes, &old),
        );
        assert_eq!(role, "replica");
        // Never a second writer: the returning node refuses writes.
        let err = sql(&old.ip, "INSERT INTO fo.w (id) VALUES (0)")
            .expect_err("the old source accepted a write after coming back");
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("READ ONLY"),
            "{err:#}"
        );
        eprintln!(
            "failover-boot: cycle {cycle}: {} back as a replica {:.1} s after StartInstances",
            old.node_id,
            back.elapsed().as_secs_f64()
        );
        let log = nodes
            .exec(
                &old.instance,
                &["journalctl", "-u", "strata-agent", "--no-pager", "-q"],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if log.contains("rebuilding") || log.contains("rebuild") {
            rebuilt += 1;
        }
        source = new_source;
    }

    // A planned switchover to a replica, from inside a node.
    let target = all
        .iter()
        .find(|n| n.instance != source.instance)
        .unwrap()
        .clone();
    let before = writer.acks().len();
    wait_for(
        "writes before the switchover",
        Duration::from_secs(30),
        || (writer.acks().len() >= before + 3).then_some(()),
    );
    let asked = Instant::now();
    let out = nodes
        .exec_ok(
            &target.instance,
            &[
                "strata-agent",
                "switchover",
                "--to",
                &target.node_id,
                "--wait",
                "60",
            ],
        )
        .expect("strata-agent switchover");
    eprintln!("failover-boot: switchover printed {}", out.trim());
    let first_on_target = wait_for(
        "a write acknowledged by the switchover target",
        Duration::from_secs(60),
        || {
            writer.acks().into_iter().find(|a| {
                a.at > asked
                    && by_host(&a.host).map(|n| n.instance) == Some(target.instance.clone())
            })
        },
    );
    let acks = writer.acks();
    let last_on_old = acks
        .iter()
        .filter(|a| {
            a.at < first_on_target.at
                && by_host(&a.host).map(|n| n.instance) == Some(source.instance.clone())
        })
        .map(|a| a.at)
        .max()
        .unwrap_or(asked);
    let switch_gap_ms = first_on_target.at.duration_since(last_on_old).as_secs_f64() * 1000.0;
    assert_eq!(
        writer_ip(),
        vec![target.ip.clone()],
        "writer after switchover"
    );
    eprintln!(
        "failover-boot: switchover {} -> {}: write gap {switch_gap_ms:.0} ms",
        source.node_id, target.node_id
    );
    source = target;
    wait_for(
        "writes after the switchover",
        Duration::from_secs(30),
        || {
            (writer
                .acks()
                .iter()
                .filter(|a| a.at > first_on_target.at)
                .count()
                >= 3)
                .then_some(())
        },
    );

    // A rolling engine-settings change through `tofu apply` (issue 12): every node restarts
    // with the settings, replicas first, then a switchover, then the old source; writes go on.
    let roll_from = writer.acks().len();
    write_config(&acc.dir, &acc.provider_hcl_waiting("15m"), &body_rolled);
    let d = acc.dir.clone();
    let (_, plan_out, plan_err) = acc.plan_in(&d);
    assert!(
        one_line(&format!("{plan_out}{plan_err}"))
            .contains("This change rolls through the cluster"),
        "plan does not say the change rolls:\n{plan_out}\n{plan_err}"
    );
    assert!(
        plan_out.contains("update in-place") && !plan_out.contains("must be replaced"),
        "{plan_out}"
    );
    let roll_t0 = Instant::now();
    acc.run_ok(&d, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    let roll_t1 = Instant::now();
    acc.assert_plan_empty_in(&d);
    let roll_s = roll_t1.duration_since(roll_t0).as_secs_f64();
    for n in &all {
        let v = sql(
            &n.ip,
            "SELECT CONCAT(@@GLOBAL.max_connections, ' ', @@GLOBAL.table_open_cache_instances)",
        )
        .unwrap();
        assert_eq!(v.trim(), "333 4", "{} after the roll", n.node_id);
    }
    let mut roll_acks: Vec<Instant> = writer.acks()[roll_from..].iter().map(|a| a.at).collect();
    roll_acks.retain(|&a| a >= roll_t0 && a <= roll_t1);
    roll_acks.sort();
    let mut roll_gap = roll_acks
        .first()
        .map(|f| f.duration_since(roll_t0))
        .unwrap_or(roll_t1 - roll_t0);
    for w in roll_acks.windows(2) {
        roll_gap = roll_gap.max(w[1] - w[0]);
    }
    // The roll's switchover moved the source to the first replica in order.
    let holder_host = sql(&writer_ip()[0], "SELECT @@hostname").unwrap();
    let rolled_to = by_host(holder_host.trim()).expect("the writer after the roll");
    assert_ne!(
        rolled_to.instance, source.instance,
        "the roll did not switch the source over"
    );
    source = rolled_to;
    wait_for("writes after the roll", Duration::from_secs(60), || {
        (writer.acks().iter().filter(|a| a.at > roll_t1).count() >= 3).then_some(())
    });
    eprintln!(
        "ROLL-BOOT-REPORT: nodes=3 apply_s={roll_s:.1} acked_during_roll={} longest_write_gap_ms={} (includes the plan-free apply's refresh)",
        roll_acks.len(),
        roll_gap.as_millis()
    );

    // A home replica's instance is lost (terminated outside Terraform) while writes go on: the
    // source's agent relaunches it from the parameters it published; the new instance seeds,
    // catches up and serves; Terraform follows it on refresh with an empty plan (below).
    let (victim_idx, victim) = all
        .iter()
        .enumerate()
        .find(|(_, n)| n.instance != source.instance && n.instance != all[0].instance)
        .map(|(i, n)| (i, n.clone()))
        .expect("a replica resource's node that is not the source");
    let lost_at = Instant::now();
    acc.block(
        acc.ec2
            .terminate_instances()
            .instance_ids(&victim.instance)
            .send(),
    )
    .expect("TerminateInstances of a replica");
    let (new_instance, new_ip) = wait_for_or(
        &format!("a replacement launched for {}", victim.instance),
        Duration::from_secs(120),
        || dump_node(&nodes, &source),
        || replacement_of(&acc, &victim.instance),
    );
    let launched_s = lost_at.elapsed().as_secs_f64();
    let twin = Node {
        instance: new_instance.clone(),
        node_id: victim.node_id.clone(),
        ip: new_ip.clone(),
    };
    // Caught up: the new server has every transaction the source had a moment ago.
    wait_for_or(
        &format!("replacement {new_instance} caught up"),
        Duration::from_secs(300),
        || {
            dump_node(&nodes, &twin);
            dump_node(&nodes, &source);
        },
        || {
            let pos = sql(&source.ip, "SELECT @@gtid_binlog_pos").ok()?;
            let w = sql(
                &new_ip,
                &format!("SELECT MASTER_GTID_WAIT('{}', 1)", pos.trim()),
            )
            .ok()?;
            (w.trim() == "0").then_some(())
        },
    );
    let caught_up_s = lost_at.elapsed().as_secs_f64();
    // The twin runs with the rolled engine_settings too (its agent applies the desired config
    // its node id was given, restarting its server once).
    wait_for_or(
        &format!("replacement {new_instance} runs the rolled settings"),
        Duration::from_secs(120),
        || dump_node(&nodes, &twin),
        || {
            let v = sql(
                &new_ip,
                "SELECT CONCAT(@@GLOBAL.max_connections, ' ', @@GLOBAL.table_open_cache_instances)",
            )
            .ok()?;
            (v.trim() == "333 4").then_some(())
        },
    );
    eprintln!(
        "REPLACE-BOOT-REPORT: replica {} lost; replacement {new_instance} launched after {launched_s:.1} s, caught up (seeded, replicating) after {caught_up_s:.1} s",
        victim.instance
    );
    all[victim_idx] = twin;

    let attempts = writer.stop();
    let acks = writer.acks();

    // Every acknowledged write is on the source and on every replica.
    let acked: BTreeSet<u64> = acks.iter().map(|a| a.id).collect();
    let pos = sql(&source.ip, "SELECT @@gtid_binlog_pos").unwrap();
    let mut lost_total = 0usize;
    for n in &all {
        // A node may be restarting its server (a replacement applying settings): retry.
        let sql_retry = |q: &str| {
            wait_for(
                &format!("{} answers `{q}`", n.node_id),
                Duration::from_secs(90),
                || sql(&n.ip, q).ok(),
            )
        };
        if n.instance != source.instance {
            let w = sql_retry(&format!("SELECT MASTER_GTID_WAIT('{}', 60)", pos.trim()));
            assert_eq!(w.trim(), "0", "{} did not reach {}", n.node_id, pos.trim());
        }
        let have: BTreeSet<u64> = sql_retry("SELECT id FROM fo.w")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let lost: Vec<&u64> = acked.difference(&have).collect();
        lost_total += lost.len();
        assert!(
            lost.is_empty(),
            "{} lacks {} acknowledged writes: {:?}",
            n.node_id,
            lost.len(),
            lost.iter().take(20).collect::<Vec<_>>()
        );
    }
    // Whoever acknowledged changed only at the failovers and the switchover.
    let mut changes = 0usize;
    for w in acks.windows(2) {
        if w[0].host != w[1].host {
            changes += 1;
        }
    }
    assert_eq!(
        changes,
        cycles + 2,
        "the acknowledging server changed {changes} times for {cycles} failovers + 1 switchover + the roll's switchover"
    );

    // Terraform: after a refresh the status attributes report the last change, plan is empty.
    let d = acc.dir.clone();
    acc.run_ok(
        &d,
        &[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ],
    );
    let cluster = acc.resource("strata_cluster.main");
    assert_eq!(
        cluster["current_source_node_id"].as_str(),
        Some(source.instance.as_str()),
        "current_source_node_id after the failovers: {cluster}"
    );
    assert_eq!(
        cluster["source_node_id"].as_str(),
        Some(all[0].instance.as_str())
    );
    let lf = &cluster["last_failover"];
    assert!(
        lf["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("switchover")),
        "last_failover: {lf}"
    );
    assert_eq!(
        lf["node_id"].as_str(),
        Some(source.instance.as_str()),
        "{lf}"
    );
    let replaced = acc.resource(&format!("strata_replica.r[{}]", victim_idx - 1));
    assert_eq!(
        replaced["node_id"].as_str(),
        Some(all[victim_idx].instance.as_str()),
        "the replica resource follows its replacement on refresh: {replaced}"
    );
    let (code, out, err) = acc.plan();
    assert_eq!(
        code, 0,
        "plan after the failovers and the replica's replacement is not empty:\n{out}\n{err}"
    );

    // The instance the cluster resource launched is terminated outside Terraform (it may be
    // serving as a replica now). The agents relaunch it like any lost home node; the plan must
    // never recreate the cluster (that would replace the replicas, the serving source among
    // them), and once the twin runs, a refresh reports it as the launched source: plan empty.
    let lost = all[0].clone();
    let lost_at = Instant::now();
    acc.block(
        acc.ec2
            .terminate_instances()
            .instance_ids(&lost.instance)
            .send(),
    )
    .expect("TerminateInstances of the launched source");
    if lost.instance == source.instance {
        wait_for(
            "a failover away from the terminated source",
            Duration::from_secs(90),
            || (acc.resolve(&zone_id, &writer_name) != vec![lost.ip.clone()]).then_some(()),
        );
    }
    let serving = acc.resolve(&zone_id, &writer_name);
    let (code, out, err) = acc.plan();
    assert!(
        code == 0 || (code == 2 && out.contains("strata_cluster.main will be updated in-place")),
        "plan after the launched source was terminated:\n{out}\n{err}"
    );
    assert!(
        !out.contains("must be replaced") && !out.contains("will be created"),
        "nothing may be replaced or created for a lost node:\n{out}"
    );
    let (twin_id, twin_ip) = wait_for_or(
        &format!(
            "a replacement launched for the launched source {}",
            lost.instance
        ),
        Duration::from_secs(120),
        || dump_node(&nodes, &source),
        || replacement_of(&acc, &lost.instance),
    );
    let twin = Node {
        instance: twin_id.clone(),
        node_id: lost.node_id.clone(),
        ip: twin_ip.clone(),
    };
    wait_for_or(
        &format!("the launched source's twin {twin_id} caught up"),
        Duration::from_secs(300),
        || {
            eprintln!(
                "failover-boot: writer record now {:?} (was {serving:?})",
                acc.resolve(&zone_id, &writer_name)
            );
            dump_node(&nodes, &twin)
        },
        || {
            // The source as the writer record names it now: should an unrelated failover
            // move it, the catch-up is still measured, and the assertion below says so.
            let src_ip = acc.resolve(&zone_id, &writer_name).first().cloned()?;
            let pos = sql(&src_ip, "SELECT @@gtid_binlog_pos").ok()?;
            let w = sql(
                &twin_ip,
                &format!("SELECT MASTER_GTID_WAIT('{}', 1)", pos.trim()),
            )
            .ok()?;
            (w.trim() == "0").then_some(())
        },
    );
    let twin_s = lost_at.elapsed().as_secs_f64();
    acc.run_ok(
        &d,
        &[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ],
    );
    let cluster = acc.resource("strata_cluster.main");
    assert_eq!(
        cluster["source_node_id"].as_str(),
        Some(twin_id.as_str()),
        "source_node_id follows the launched source's twin: {cluster}"
    );
    let (code, out, err) = acc.plan();
    assert_eq!(
        code, 0,
        "plan after the launched source was replaced is not empty:\n{out}\n{err}"
    );
    let writer_now = acc.resolve(&zone_id, &writer_name);
    if writer_now != serving {
        for n in all.iter().chain([&twin]) {
            dump_node(&nodes, n);
        }
    }
    assert_eq!(
        writer_now, serving,
        "the writer record stays on the serving source (every node's state and log above)"
    );
    eprintln!(
        "failover-boot: launched source {} terminated: relaunched as {twin_id}, caught up after {twin_s:.1} s, plan empty, writer unmoved",
        lost.instance
    );

    let mut sorted = times_ms.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "FAILOVER-BOOT-REPORT: failovers={} (kill9 + netcut alternating) acked_writes={} attempts={attempts} \
         lost_acked_writes={lost_total} split_brain_windows={split_brain} rebuilt_returns={rebuilt} \
         failover_ms min={:.0} p50={:.0} max={:.0} all={:?} switchover_gap_ms={switch_gap_ms:.0}",
        times_ms.len(),
        acked.len(),
        sorted.first().copied().unwrap_or(f64::NAN),
        percentile(&sorted, 0.5),
        sorted.last().copied().unwrap_or(f64::NAN),
        times_ms
            .iter()
            .map(|t| t.round() as u64)
            .collect::<Vec<_>>(),
    );
    assert_eq!(split_brain, 0, "split-brain windows seen");
    acc.destroy_and_check();
}
