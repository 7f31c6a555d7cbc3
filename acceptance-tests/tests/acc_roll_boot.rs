//! A rolling `instance_type` change end to end on booted nodes (docs/rolling-changes.md): a
//! semi-sync source, two home replicas and a region replica boot through `tofu apply`; a
//! continuous writer goes through the writer record and a reader through the reader record;
//! then the cluster's `instance_type` changes. `plan` must warn with the roll order and update
//! in place; the apply rolls every node that follows the cluster's type (replicas one at a
//! time, the region replica, a switchover, the old source): no acknowledged write lost, every
//! node on the new type (EC2 DescribeInstances), and `plan` empty after it (the replica and
//! region resources read the new type). The longest write gap and the roll's time are printed
//! (`ROLL-TYPE-REPORT`), never asserted as wall-clock limits. The node host restarts a node's
//! container on stop/start; the type itself is only a record here (the roll is about order and
//! zero loss).

mod acc_support;

use acc_support::{Acc, write_config};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_acceptance_tests::nodes::NodeHost;
use strata_acceptance_tests::one_line;

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A name of the cluster's zone as Route 53 answers it (this machine cannot resolve it).
fn resolve(
    route53: &aws_sdk_route53::Client,
    rt: &tokio::runtime::Runtime,
    zone: &str,
    name: &str,
) -> Vec<String> {
    let Ok(out) = rt.block_on(
        route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .send(),
    ) else {
        return Vec::new();
    };
    let want = format!("{}.", name.trim_end_matches('.'));
    out.resource_record_sets()
        .iter()
        .filter(|s| {
            s.name().eq_ignore_ascii_case(&want) && *s.r#type() == aws_sdk_route53::types::RrType::A
        })
        .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
        .collect()
}

#[derive(Clone)]
struct Target {
    endpoint: String,
    zone_id: String,
    name: String,
    router: String,
    user: String,
    password: String,
}

/// A loop through one endpoint name: the writer inserts ids 1, 2, ... and records each
/// acknowledged one with its time; a reader counts successful and failed reads.
struct Client {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<(u64, Instant)>>>,
    fails: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(t: Target, write: bool) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let fails = Arc::new(AtomicU64::new(0));
        let (s, a, f) = (stop.clone(), acks.clone(), fails.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let conf = aws_sdk_route53::Config::builder()
                .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
                .region(aws_sdk_route53::config::Region::new("us-east-1"))
                .endpoint_url(&t.endpoint)
                .credentials_provider(aws_sdk_route53::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "strata-acc",
                ))
                .build();
            let route53 = aws_sdk_route53::Client::from_conf(conf);
            let mut host: Option<String> = None;
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                let Some(h) = host.clone().or_else(|| {
                    resolve(&route53, &rt, &t.zone_id, &t.name)
                        .into_iter()
                        .next()
                }) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                n += 1;
                let q = if write {
                    format!("INSERT INTO ro.w (id) VALUES ({n})")
                } else {
                    "SELECT COUNT(*) FROM ro.w".to_string()
                };
                let out = Command::new("timeout")
                    .args([
                        "-s", "KILL", "4", "ip", "netns", "exec", &t.router, "mariadb",
                    ])
                    .args([
                        "-h",
                        &h,
                        "-P",
                        "3306",
                        "-u",
                        &t.user,
                        "-N",
                        "-B",
                        "--connect-timeout=2",
                        "-e",
                        &q,
                    ])
                    .env("MYSQL_PWD", &t.password)
                    .output();
                if out.is_ok_and(|o| o.status.success()) {
                    a.lock().unwrap().push((n, Instant::now()));
                    host = Some(h);
                    // Paced: a roll waits for caught-up replicas (docs/rolling-changes.md).
                    std::thread::sleep(Duration::from_millis(20));
                } else {
                    f.fetch_add(1, Ordering::SeqCst);
                    host = None;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Client {
            stop,
            acks,
            fails,
            handle: Some(handle),
        }
    }

    fn acks(&self) -> Vec<(u64, Instant)> {
        self.acks.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

fn dump(nodes: &NodeHost, instance: &str) {
    for cmd in [
        &[
            "strata-agent",
            "status",
            "--socket",
            "/run/mysqld/mysqld.sock",
        ][..],
        &[
            "journalctl",
            "-u",
            "strata-agent",
            "--no-pager",
            "-q",
            "-n",
            "80",
        ][..],
    ] {
        if let Ok(o) = nodes.exec(instance, cmd) {
            eprintln!(
                "roll-boot: {instance} `{}`:\n{}{}",
                cmd.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
#[ignore = "needs root, systemd-nspawn, tofu and LocalStack on CPython 3.13: run via scripts/test"]
fn instance_type_rolls_through_source_replicas_and_region_without_losing_writes() {
    let mut acc = Acc::new("rtb");
    let nodes = NodeHost::start(&[&acc.name]).expect("start the node host");
    let (name, s0, s1, eu) = (
        acc.name.clone(),
        acc.subnet(0).to_string(),
        acc.subnet(acc.net.home_subnet_ids.len().min(2) - 1)
            .to_string(),
        acc.eu_subnet().to_string(),
    );
    // r[1] pins its own type (set in configuration); r[0] and the region follow the cluster's.
    let body = |ty: &str, pin: &str, settings: &str| {
        format!(
            r#"
resource "strata_cluster" "main" {{
  name                             = "{name}"
  engine                           = "mariadb"
  instance_type                    = "{ty}"
  subnet_id                        = "{s0}"
  replication_mode                 = "semi_sync"
  semi_sync_wait_for_replica_count = 1
  allowed_cidr_blocks              = ["10.0.0.0/8"]
  {settings}
}}

resource "strata_replica" "r" {{
  count      = 2
  cluster_id = strata_cluster.main.id
  subnet_id  = count.index == 0 ? "{s0}" : "{s1}"
  instance_type = count.index == 1 ? "{pin}" : null
}}

resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.main.id
  region        = "eu-west-1"
  subnet_id     = "{eu}"
  replica_count = 1
}}
"#,
        )
    };
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &body("t3.micro", "t3.micro", ""),
    );
    let t0 = Instant::now();
    acc.apply();
    eprintln!(
        "roll-boot: apply (source + 2 replicas + region replica booted) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let cluster = acc.resource("strata_cluster.main");
    let s = |k: &str| {
        cluster[k]
            .as_str()
            .unwrap_or_else(|| panic!("strata_cluster.main.{k}: {cluster}"))
            .to_string()
    };
    let zone_id = s("dns_zone_id");
    let host_of = |ep: String| ep.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap();
    let writer_name = host_of(s("writer_endpoint"));
    let reader_name = host_of(s("reader_endpoint"));
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
    // (instance, private ip, is in the home region)
    let mut all: Vec<(String, String, bool)> =
        vec![(s("source_node_id"), s("source_private_ip"), true)];
    for i in 0..2 {
        let r = acc.resource(&format!("strata_replica.r[{i}]"));
        all.push((
            r["node_id"].as_str().unwrap().into(),
            r["private_ip"].as_str().unwrap().into(),
            true,
        ));
    }
    let eu = acc.resource("strata_region.eu");
    all.push((
        eu["replica_node_ids"][0].as_str().unwrap().into(),
        eu["replica_private_ips"][0].as_str().unwrap().into(),
        false,
    ));
    let sql = |host: &str, q: &str| nodes.sql(host, &user, &password, q);
    sql(&all[0].1, "CREATE DATABASE ro; CREATE TABLE ro.w (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
        .expect("schema on the source");
    let target = |name: &str| Target {
        endpoint: acc.endpoint.clone(),
        zone_id: zone_id.clone(),
        name: name.to_string(),
        router: nodes.router_netns().to_string(),
        user: user.clone(),
        password: password.clone(),
    };
    let mut writer = Client::start(target(&writer_name), true);
    let mut reader = Client::start(target(&reader_name), false);
    wait_for("first acknowledged writes", Duration::from_secs(60), || {
        (writer.acks().len() >= 5).then_some(())
    });

    let d = acc.dir.clone();
    let uptime = |ip: &str, id: &str| -> u64 {
        let up = wait_for(&format!("{id} answers"), Duration::from_secs(90), || {
            sql(ip, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'").ok()
        });
        up.trim().parse().unwrap_or(u64::MAX)
    };
    let ec2_type = |id: &str, home: bool| -> String {
        let client = if home { &acc.ec2 } else { &acc.ec2_eu };
        acc.instance(client, id)
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default()
    };
    let apply = |what: &str| -> (Instant, Instant) {
        let t0 = Instant::now();
        let out = acc.run(&d, &["apply", "-auto-approve", "-input=false", "-no-color"]);
        let t1 = Instant::now();
        if !out.status.success() {
            for n in &all {
                dump(&nodes, &n.0);
            }
            panic!(
                "{what}: apply failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (t0, t1)
    };

    // Phase 1: the cluster's type rolls through every node that follows it.
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &body("t3.small", "t3.micro", ""),
    );
    let (_, plan_out, plan_err) = acc.plan_in(&d);
    let said = one_line(&format!("{plan_out}{plan_err}"));
    assert!(
        said.contains("This change rolls through the cluster")
            && said.contains("switchover to")
            && said.contains("Left alone"),
        "plan does not show the roll order and the pinned replica:\n{said}"
    );
    assert!(
        plan_out.contains("update in-place") && !plan_out.contains("must be replaced"),
        "{plan_out}"
    );
    let (roll_t0, roll_t1) = apply("cluster instance_type roll");
    wait_for("writes after the roll", Duration::from_secs(60), || {
        (writer.acks().iter().filter(|a| a.1 > roll_t1).count() >= 3).then_some(())
    });
    let since_roll = roll_t0.elapsed().as_secs() + 5;
    for (i, (id, ip, home)) in all.iter().enumerate() {
        let (want, restarted) = if i == 2 {
            ("t3.micro", false)
        } else {
            ("t3.small", true)
        };
        assert_eq!(ec2_type(id, *home), want, "{id} after the cluster's roll");
        // Each rolled node really went down and came back (the roll waits for a stopped
        // node's agent to fall silent, so the node host's container stops too); the pinned
        // one was left alone.
        let up = uptime(ip, id);
        assert_eq!(
            up <= since_roll,
            restarted,
            "{id}: server up {up} s, the roll began {since_roll} s ago"
        );
    }
    // The replica and region resources read the new type: nothing left to do.
    acc.assert_plan_empty_in(&d);
    let holder_before_pin = resolve(&acc.route53, &acc.rt, &zone_id, &writer_name);
    // The pinned replica takes the source role (a planned switchover), so its own type change
    // must move the role off it before stopping it.
    let r1_node = acc.user_data(&all[2].0).1.node_id;
    nodes
        .exec_ok(
            &all[2].0,
            &[
                "strata-agent",
                "switchover",
                "--to",
                &r1_node,
                "--wait",
                "60",
            ],
        )
        .expect("strata-agent switchover to the pinned replica");
    wait_for(
        "the writer record on the pinned replica",
        Duration::from_secs(60),
        || {
            (resolve(&acc.route53, &acc.rt, &zone_id, &writer_name).first() == Some(&all[2].1))
                .then_some(())
        },
    );
    let pinned_was_source = true;

    // Phase 2: the pinned replica's own type (lock, source role moved off when it holds it).
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &body("t3.small", "t3.small", ""),
    );
    let (_, plan_out, _) = acc.plan_in(&d);
    assert!(
        plan_out.contains("strata_replica.r[1] will be updated in-place")
            && !plan_out.contains("strata_cluster.main will be updated"),
        "{plan_out}"
    );
    let (pin_t0, pin_t1) = apply("pinned replica instance_type");
    wait_for(
        "writes after the pinned change",
        Duration::from_secs(60),
        || (writer.acks().iter().filter(|a| a.1 > pin_t1).count() >= 3).then_some(()),
    );
    assert_eq!(ec2_type(&all[2].0, true), "t3.small");
    assert_ne!(
        resolve(&acc.route53, &acc.rt, &zone_id, &writer_name).first(),
        Some(&all[2].1),
        "the pinned replica's change did not move the source role off it"
    );
    let up = uptime(&all[2].1, &all[2].0);
    assert!(
        up <= pin_t0.elapsed().as_secs() + 5,
        "{}: not restarted (up {up} s)",
        all[2].0
    );
    acc.assert_plan_empty_in(&d);

    // Phase 3: a setting the server reads only at start rolls through every node, the region
    // replica included (the same roll, driven by the desired-config objects).
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &body(
            "t3.small",
            "t3.small",
            r#"engine_settings = { table_open_cache_instances = "3" }"#,
        ),
    );
    let (_, plan_out, plan_err) = acc.plan_in(&d);
    assert!(
        one_line(&format!("{plan_out}{plan_err}"))
            .contains("This change rolls through the cluster")
            && plan_out.contains("update in-place")
            && !plan_out.contains("must be replaced"),
        "plan of the settings roll:\n{plan_out}\n{plan_err}"
    );
    let (set_t0, set_t1) = apply("engine_settings roll");
    wait_for(
        "writes after the settings roll",
        Duration::from_secs(60),
        || (writer.acks().iter().filter(|a| a.1 > set_t1).count() >= 3).then_some(()),
    );
    for (id, ip, _) in &all {
        let v = wait_for(
            &format!("{id} runs the rolled setting"),
            Duration::from_secs(120),
            || {
                sql(ip, "SELECT @@GLOBAL.table_open_cache_instances")
                    .ok()
                    .filter(|v| v.trim() == "3")
            },
        );
        assert_eq!(v.trim(), "3", "{id}");
    }
    acc.assert_plan_empty_in(&d);
    writer.stop();
    reader.stop();

    // No acknowledged write lost: every node (caught up with the source) has every one.
    let acks = writer.acks();
    let acked: BTreeSet<u64> = acks.iter().map(|a| a.0).collect();
    let writer_ip = wait_for("the writer record", Duration::from_secs(30), || {
        resolve(&acc.route53, &acc.rt, &zone_id, &writer_name)
            .into_iter()
            .next()
    });
    let pos = sql(&writer_ip, "SELECT @@GLOBAL.gtid_binlog_pos").unwrap();
    let mut lost_total = 0;
    for (id, ip, _) in &all {
        if *ip != writer_ip {
            let w = wait_for(&format!("{id} answers"), Duration::from_secs(90), || {
                sql(
                    ip,
                    &format!("SELECT MASTER_GTID_WAIT('{}', 60)", pos.trim()),
                )
                .ok()
            });
            assert_eq!(w.trim(), "0", "{id} did not reach {}", pos.trim());
        }
        let have: BTreeSet<u64> = sql(ip, "SELECT id FROM ro.w")
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let lost: Vec<&u64> = acked.difference(&have).collect();
        lost_total += lost.len();
        assert!(
            lost.is_empty(),
            "{id} lacks {} acknowledged writes: {:?}",
            lost.len(),
            lost.iter().take(20).collect::<Vec<_>>()
        );
    }
    assert_ne!(
        holder_before_pin.first(),
        Some(&all[0].1),
        "the roll did not switch the source off the node it changed last"
    );
    let gap = |t0: Instant, t1: Instant| -> (usize, u128) {
        let mut during: Vec<Instant> = acks
            .iter()
            .map(|a| a.1)
            .filter(|&a| a >= t0 && a <= t1)
            .collect();
        during.sort();
        let mut g = during
            .first()
            .map(|f| f.duration_since(t0))
            .unwrap_or(t1 - t0);
        for w in during.windows(2) {
            g = g.max(w[1] - w[0]);
        }
        (during.len(), g.as_millis())
    };
    let (n_roll, gap_roll) = gap(roll_t0, roll_t1);
    let (n_pin, gap_pin) = gap(pin_t0, pin_t1);
    let (n_set, gap_set) = gap(set_t0, set_t1);
    let reads = reader.acks().len();
    assert!(reads > 0, "no read succeeded through the reader record");
    eprintln!(
        "ROLL-TYPE-REPORT: cluster roll of 3 following nodes (source, 1 replica, 1 region replica; 1 pinned replica left alone) apply_s={:.1} acked_during={n_roll} longest_write_gap_ms={gap_roll}; pinned replica (was source: {pinned_was_source}) apply_s={:.1} acked_during={n_pin} longest_write_gap_ms={gap_pin}; engine_settings roll of 4 nodes apply_s={:.1} acked_during={n_set} longest_write_gap_ms={gap_set}; acked_total={} lost={lost_total} reads_ok={reads} reads_failed={}",
        (roll_t1 - roll_t0).as_secs_f64(),
        (pin_t1 - pin_t0).as_secs_f64(),
        (set_t1 - set_t0).as_secs_f64(),
        acked.len(),
        reader.fails.load(Ordering::SeqCst)
    );
    acc.destroy_and_check();
}
