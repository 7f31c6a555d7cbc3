//! The whole chain on booted nodes: `tofu apply` of `examples/complete` against LocalStack
//! while `strata-nodehost` boots every instance of the cluster as a Debian 12 node that runs the
//! exact user-data the provider wrote (engine from the OS's packages, agent from the cluster's
//! S3 bucket, checked by SHA-256). Then, through the writer endpoint the provider outputs: a row
//! written is read on every replica in both regions; replicas refuse writes; each node's agent
//! reports its role and semi-sync state. Then a region replica is added to a cluster holding
//! 100+ MB and must catch up from a copy with the same `CHECKSUM TABLE`. Then destroy leaves no
//! node, namespace or AWS object.

mod acc_support;

use acc_support::Acc;
use serde_json::Value;
use std::time::{Duration, Instant};
use strata_acceptance_tests::nodes::{NodeHost, netns_list};
use strata_acceptance_tests::{copy_tree, repo_root};

fn write_vars(acc: &Acc, region_replicas: u32) {
    let vars = serde_json::json!({
        "name": acc.name,
        "subnet_ids": acc.net.home_subnet_ids,
        "eu_subnet_id": acc.net.read_only_subnet_id,
        "aws_endpoint_url": acc.endpoint,
        "read_only_replica_count": region_replicas,
        "storage_size_gib": 10,
    });
    std::fs::write(
        acc.dir.join("test.auto.tfvars.json"),
        serde_json::to_string_pretty(&vars).unwrap(),
    )
    .unwrap();
}

fn outputs(acc: &Acc) -> Value {
    let d = acc.dir.clone();
    serde_json::from_str(&acc.run_ok(&d, &["output", "-json", "-no-color"])).unwrap()
}

fn out<'a>(o: &'a Value, name: &str) -> &'a Value {
    o.get(name)
        .and_then(|v| v.get("value"))
        .unwrap_or_else(|| panic!("no output {name}: {o}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

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

#[test]
#[ignore = "needs root, systemd-nspawn, tofu and LocalStack on CPython 3.13: run via scripts/test"]
fn complete_example_boots_replicates_and_seeds_a_new_replica() {
    let mut acc = Acc::new("boot");
    let mut nodes = NodeHost::start(&[&acc.name]).expect("start the node host");

    copy_tree(&repo_root().join("examples/complete"), &acc.dir).unwrap();
    write_vars(&acc, 1);
    let t0 = Instant::now();
    // Waits for every node to report ready (the provider's node_ready_timeout), then an empty
    // plan.
    acc.apply();
    eprintln!(
        "boot: apply of examples/complete (source, 2 replicas, 1 region replica) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let o = outputs(&acc);
    let writer_endpoint = out(&o, "writer_endpoint").as_str().unwrap().to_string();
    let (writer_name, port) = writer_endpoint
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("writer_endpoint {writer_endpoint} is not host:port"));
    assert_eq!(port, "3306");
    // The writer is a name in the cluster's private zone; the router namespace cannot resolve
    // it, so ask Route 53 as the VPC's resolver would.
    let zone_id = acc.attr_str("strata_cluster.main", "dns_zone_id");
    let writer_ips = acc.resolve(&zone_id, writer_name);
    assert_eq!(writer_ips.len(), 1, "{writer_name} -> {writer_ips:?}");
    let writer = writer_ips[0].as_str();
    let admin_user = out(&o, "admin_user").as_str().unwrap().to_string();
    let admin_param = out(&o, "admin_parameter_name")
        .as_str()
        .unwrap()
        .to_string();
    let password = acc
        .block(
            acc.ssm
                .get_parameter()
                .name(&admin_param)
                .with_decryption(true)
                .send(),
        )
        .expect("admin password parameter")
        .parameter
        .and_then(|p| p.value)
        .expect("admin password value");
    let source_id = out(&o, "source")["node_id"].as_str().unwrap().to_string();
    let replicas: Vec<(String, String)> = out(&o, "replicas")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node_id"].as_str().unwrap().to_string(),
                r["private_ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let region = out(&o, "read_only_region");
    let region_ids = strings(&region["replica_node_ids"]);
    let region_ips = strings(&region["replica_private_ips"]);
    assert_eq!(replicas.len(), 2);
    assert_eq!(region_ids.len(), 1);
    let mut all_replicas = replicas.clone();
    all_replicas.extend(region_ids.iter().cloned().zip(region_ips.iter().cloned()));

    let sql = |host: &str, q: &str| nodes.sql(host, &admin_user, &password, q);

    // A row written through the writer endpoint is read on every replica, both regions.
    sql(
        writer,
        "CREATE DATABASE acc; CREATE TABLE acc.t (id INT PRIMARY KEY, note VARCHAR(64)); \
         INSERT INTO acc.t VALUES (1, 'written on the writer')",
    )
    .expect("write through the writer endpoint");
    let written = Instant::now();
    for (id, ip) in &all_replicas {
        wait_for(
            &format!("the row on replica {id} ({ip})"),
            Duration::from_secs(60),
            || {
                sql(ip, "SELECT note FROM acc.t WHERE id = 1")
                    .ok()
                    .filter(|r| r.trim() == "written on the writer")
            },
        );
        eprintln!(
            "boot: row visible on {id} ({ip}) {:.0} ms after the write returned",
            written.elapsed().as_secs_f64() * 1000.0
        );
    }

    // Replicas refuse writes, even from the admin account.
    for (id, ip) in &all_replicas {
        let err = sql(ip, "INSERT INTO acc.t VALUES (2, 'on a replica')")
            .expect_err(&format!("replica {id} accepted a write"));
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("READ ONLY"),
            "replica {id} refused the write for another reason: {err:#}"
        );
    }

    // Each node's agent reports its role and semi-sync state.
    let status = |id: &str| -> Value {
        let s = nodes
            .exec_ok(
                id,
                &[
                    "strata-agent",
                    "status",
                    "--socket",
                    "/run/mysqld/mysqld.sock",
                ],
            )
            .unwrap();
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("status of {id} is not JSON ({e}): {s}"))
    };
    let st = status(&source_id);
    assert_eq!(st["role"], "source", "{st}");
    assert_eq!(st["semi_sync"]["source_enabled"], true, "{st}");
    for (id, _) in &replicas {
        let st = status(id);
        assert_eq!(st["role"], "replica", "{st}");
        assert_eq!(st["read_only"], true, "{st}");
        assert_eq!(st["semi_sync"]["configured"], true, "{st}");
        assert_eq!(st["replication"]["io_thread"], "Yes", "{st}");
        assert_eq!(st["replication"]["sql_thread"], "Yes", "{st}");
    }
    for id in &region_ids {
        let st = status(id);
        assert_eq!(st["role"], "region_replica", "{st}");
        assert_eq!(st["semi_sync"]["configured"], false, "{st}");
        assert_eq!(st["replication"]["tls"], true, "{st}");
    }

    // 100+ MB on the cluster, then one more region replica: it must catch up from a copy.
    sql(
        writer,
        "CREATE TABLE acc.big (id BIGINT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(1024)) ENGINE=InnoDB; \
         INSERT INTO acc.big (pad) SELECT REPEAT(MD5(seq), 32) FROM acc.seq_1_to_1024;",
    )
    .unwrap();
    for _ in 0..7 {
        sql(
            writer,
            "INSERT INTO acc.big (pad) SELECT REPEAT(MD5(RAND()), 32) FROM acc.big",
        )
        .unwrap();
    }
    let bytes: u64 = sql(writer, "SELECT SUM(LENGTH(pad)) FROM acc.big")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(bytes >= 100 << 20, "only {bytes} bytes loaded");

    write_vars(&acc, 2);
    let t1 = Instant::now();
    acc.apply();
    let o = outputs(&acc);
    let region = out(&o, "read_only_region");
    let ids = strings(&region["replica_node_ids"]);
    let ips = strings(&region["replica_private_ips"]);
    assert_eq!(ids.len(), 2);
    let (new_id, new_ip) = ids
        .iter()
        .zip(&ips)
        .find(|(id, _)| !region_ids.contains(id))
        .map(|(a, b)| (a.clone(), b.clone()))
        .expect("a new region replica");
    let pos = sql(writer, "SELECT @@gtid_binlog_pos").unwrap();
    let pos = pos.trim();
    let waited = sql(&new_ip, &format!("SELECT MASTER_GTID_WAIT('{pos}', 600)")).unwrap();
    assert_eq!(waited.trim(), "0", "new replica did not reach {pos}");
    eprintln!(
        "boot: new region replica {new_id} holds {} MB and caught up {:.1} s after apply started",
        bytes >> 20,
        t1.elapsed().as_secs_f64()
    );
    let src_sum = sql(writer, "CHECKSUM TABLE acc.big, acc.t").unwrap();
    let new_sum = sql(&new_ip, "CHECKSUM TABLE acc.big, acc.t").unwrap();
    assert_eq!(src_sum, new_sum, "checksums differ");
    let st = status(&new_id);
    assert_eq!(st["role"], "region_replica", "{st}");

    // Destroy: no AWS object, then no node, namespace or router left.
    let mut every_id: Vec<String> = vec![source_id.clone()];
    every_id.extend(replicas.iter().map(|(id, _)| id.clone()));
    every_id.extend(ids.iter().cloned());
    acc.destroy_and_check();
    wait_for(
        "every node removed after destroy",
        Duration::from_secs(120),
        || {
            let st = nodes.status().ok()?;
            st.is_empty().then_some(())
        },
    );
    let router = nodes.router_netns().to_string();
    nodes.stop().unwrap();
    let left = netns_list().unwrap();
    for id in &every_id {
        assert!(
            !left.iter().any(|n| n.contains(id.as_str())),
            "namespace of {id} left: {left:?}"
        );
    }
    assert!(
        !left.contains(&router),
        "router namespace {router} left: {left:?}"
    );
}
