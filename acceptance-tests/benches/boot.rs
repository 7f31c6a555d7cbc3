//! Benchmark: from `tofu apply` start to a database that works, on booted nodes.
//!
//! For two shapes (one source; `examples/complete` = source + 2 replicas + 1 region replica) it
//! measures, from the moment `tofu apply` starts:
//! - **writer accepts writes**: the first `INSERT` through the source's private IP that succeeds
//!   (polled every 250 ms from the router namespace with the cluster's admin account);
//! - **every replica caught up**: a row written right then is readable on every replica;
//! - **apply returned**: `tofu apply` itself (it waits for every node's ready tag).
//!
//! Run as root with LocalStack up: `TF_ACC=1 TOFU=$(scripts/install-tofu) cargo bench -p
//! strata-acceptance-tests --bench boot` (`STRATA_BENCH_RUNS`, default 1 run per shape).

#[path = "../tests/acc_support/mod.rs"]
mod acc_support;

use acc_support::Acc;
use aws_sdk_ec2::types::Filter;
use std::time::{Duration, Instant};
use strata_acceptance_tests::nodes::NodeHost;
use strata_acceptance_tests::{copy_tree, repo_root};

struct Figures {
    writer: f64,
    replicas: f64,
    apply: f64,
}

/// (instance id, private ip, role) of the cluster's running instances in both regions.
fn nodes_of(acc: &Acc) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for ec2 in [&acc.ec2, &acc.ec2_eu] {
        let Ok(out) = acc.block(
            ec2.describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{}", strata_topology::tags::TAG_CLUSTER))
                        .values(&acc.name)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .build(),
                )
                .send(),
        ) else {
            continue;
        };
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let role = acc_support::tag(i.tags(), strata_topology::tags::TAG_ROLE)
                .unwrap_or("?")
                .to_string();
            if let (Some(id), Some(ip)) = (i.instance_id(), i.private_ip_address()) {
                v.push((id.to_string(), ip.to_string(), role));
            }
        }
    }
    v
}

fn admin_password(acc: &Acc) -> Option<String> {
    acc.block(
        acc.ssm
            .get_parameter()
            .name(format!("/strata/{}/admin-password", acc.name))
            .with_decryption(true)
            .send(),
    )
    .ok()?
    .parameter?
    .value
}

fn run_shape(label: &str, complete: bool, expect_nodes: usize) -> Figures {
    let mut acc = Acc::new(label);
    let nodes = NodeHost::start(&[&acc.name]).expect("node host");
    if complete {
        copy_tree(&repo_root().join("examples/complete"), &acc.dir).unwrap();
        let vars = serde_json::json!({
            "name": acc.name,
            "subnet_ids": acc.net.home_subnet_ids,
            "eu_subnet_id": acc.net.read_only_subnet_id,
            "aws_endpoint_url": acc.endpoint,
            "read_only_replica_count": 1,
            "storage_size_gib": 10,
        });
        std::fs::write(acc.dir.join("bench.auto.tfvars.json"), vars.to_string()).unwrap();
    } else {
        let body = format!(
            "resource \"strata_cluster\" \"c\" {{\n  name          = \"{}\"\n  instance_type = \"t3.medium\"\n  subnet_id     = \"{}\"\n}}\n",
            acc.name,
            acc.subnet(0)
        );
        acc_support::write_config(&acc.dir, &acc.provider_hcl_waiting("20m"), &body);
    }
    let d = acc.dir.clone();
    // `plan` initialises the folder (and marks it for destroy_and_check); nothing is created.
    let (code, _, err) = acc.plan();
    assert_eq!(code, 2, "plan before apply: {err}");

    let t0 = Instant::now();
    let mut apply = acc
        .tofu
        .command(&d, &["apply", "-auto-approve", "-input=false", "-no-color"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tofu apply");
    let mut apply_done: Option<f64> = None;
    let mut poll_apply = |apply_done: &mut Option<f64>| {
        if apply_done.is_none()
            && let Ok(Some(st)) = apply.try_wait()
        {
            assert!(st.success(), "tofu apply failed: {st}");
            *apply_done = Some(t0.elapsed().as_secs_f64());
        }
    };

    // The writer: the first INSERT through the source's IP that succeeds.
    let deadline = Duration::from_secs(900);
    let (source_ip, password, writer) = loop {
        poll_apply(&mut apply_done);
        assert!(
            t0.elapsed() < deadline,
            "{label}: no writer within {deadline:?}"
        );
        let src = nodes_of(&acc).into_iter().find(|n| n.2 == "source");
        if let (Some((_, ip, _)), Some(pw)) = (src, admin_password(&acc))
            && nodes
                .sql(
                    &ip,
                    "strata_admin",
                    &pw,
                    "CREATE DATABASE IF NOT EXISTS bench; CREATE TABLE IF NOT EXISTS bench.t (id INT PRIMARY KEY); REPLACE INTO bench.t VALUES (1)",
                )
                .is_ok()
        {
            break (ip, pw, t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(250));
    };

    // Every replica has the row (all expected nodes running first).
    let replicas = loop {
        poll_apply(&mut apply_done);
        assert!(
            t0.elapsed() < deadline,
            "{label}: replicas not caught up within {deadline:?}"
        );
        let all = nodes_of(&acc);
        if all.len() >= expect_nodes {
            let reps: Vec<_> = all.iter().filter(|n| n.1 != source_ip).collect();
            if reps.iter().all(|(_, ip, _)| {
                nodes
                    .sql(
                        ip,
                        "strata_admin",
                        &password,
                        "SELECT id FROM bench.t WHERE id = 1",
                    )
                    .map(|r| r.trim() == "1")
                    .unwrap_or(false)
            }) {
                break t0.elapsed().as_secs_f64();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let status = apply.wait().expect("tofu apply");
    assert!(status.success(), "tofu apply failed");
    let apply_s = apply_done.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    acc.destroy_and_check();
    drop(nodes);
    Figures {
        writer,
        replicas,
        apply: apply_s,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run either way.
    let runs: usize = std::env::var("STRATA_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!(
        "| shape | nodes | writer accepts writes | every replica caught up | apply returned |"
    );
    println!("|---|---|---|---|---|");
    for (label, complete, n) in [("b1", false, 1usize), ("bc", true, 4usize)] {
        for _ in 0..runs {
            let f = run_shape(label, complete, n);
            let replicas = if n == 1 {
                "-".to_string()
            } else {
                format!("{:.1} s", f.replicas)
            };
            println!(
                "| {} | {n} | {:.1} s | {replicas} | {:.1} s |",
                if complete {
                    "examples/complete (source, 2 replicas, 1 region replica)"
                } else {
                    "one source"
                },
                f.writer,
                f.apply
            );
        }
    }
}
