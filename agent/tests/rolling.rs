//! Rolling engine-settings change (issue 12) on real `mariadbd` processes with real
//! `strata-agent run` processes (the failover harness: lease in LocalStack S3, writer record in
//! LocalStack Route 53), driven by `strata-agent roll`, with continuous writers that resolve
//! the writer record and record every acknowledged commit.
//!
//! 1. A setting the server refuses: the first replica does not start with it, its agent
//!    restores the previous settings, the roll stops naming it, the source is never touched.
//! 2. A restart-requiring change (`table_open_cache_instances` is read only at startup):
//!    replica, replica, switchover, old source. 0 acknowledged writes lost; the longest gap
//!    between acknowledged writes is reported (`ROLL-REPORT`).
//! 3. The same roll again (an interrupted apply resumed after everything landed): nothing is
//!    restarted, no switchover.
//!
//! Needs LocalStack at $LOCALSTACK_ENDPOINT and mariadbd (scripts/test provides both).
#![allow(clippy::await_holding_lock)]

mod common;
mod failover_harness;

use failover_harness::*;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let mut t: Vec<Instant> = acks
        .iter()
        .map(|a| a.at)
        .filter(|&a| a >= from && a <= to)
        .collect();
    t.sort();
    let mut gap = t
        .first()
        .map(|f| f.duration_since(from))
        .unwrap_or_default();
    for w in t.windows(2) {
        gap = gap.max(w[1].duration_since(w[0]));
    }
    if let Some(l) = t.last() {
        gap = gap.max(to.duration_since(*l));
    }
    gap
}

const ROLL_ARGS: &[&str] = &[
    "--set",
    "max_connections=333",
    "--set",
    "table_open_cache_instances=4",
    "--node-timeout",
    "120",
];

/// `strata-agent roll` on node `i`, in the background (to be interrupted).
fn spawn_roll(c: &Cluster, i: usize) -> std::process::Child {
    let n = &c.nodes[i].node;
    std::process::Command::new(common::agent_bin())
        .arg("roll")
        .arg("--config")
        .arg(n.config_path())
        .args(ROLL_ARGS)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn strata-agent roll")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs LocalStack and mariadbd"]
async fn rolling_settings_change_loses_no_acknowledged_write() {
    let _g = common::serial();
    // The roll, not failure detection, is under test: a lease long enough that a loaded CI
    // machine's slow heartbeat never starts an unplanned failover in the middle of it.
    let timing = strata_topology::FailoverTiming {
        heartbeat_ms: 250,
        lease_ms: 3_000,
        clock_margin_ms: 500,
        detect_misses: 3,
    };
    let c = Cluster::start(3, timing).await;
    let writers = Writers::start_paced(&c, 2, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = c.lease().await.unwrap();
    assert_eq!(first.holder.node_id, "n1");

    // 1. A setting the server refuses stops the roll at the first replica.
    let t_bad = Instant::now();
    let (ok, out, err) = c.agent_cli(
        0,
        "roll",
        &[
            "--set",
            "no_such_variable_strata=1",
            "--node-timeout",
            "120",
        ],
    );
    let bad_ms = t_bad.elapsed().as_millis();
    assert!(!ok, "a roll with an unknown variable succeeded:\n{out}");
    assert!(
        err.contains("node n2") && err.contains("did not start"),
        "the failure names the node and why:\n{err}"
    );
    // The source was not touched and n2 serves again with its old settings.
    assert_eq!(c.lease().await.unwrap().epoch, first.epoch);
    c.wait_replicating(&[1, 2], Duration::from_secs(60)).await;
    eprintln!("refused setting: roll stopped at n2 after {bad_ms} ms");

    // 2. The real roll, interrupted (the driver killed once it asked n2) and run again: it
    //    resumes, without asking n2 twice or switching over twice.
    let t0 = Instant::now();
    let mut first_run = spawn_roll(&c, 0);
    let key = strata_topology::roll::config_key(&c.prefix, "n2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = match c.s3.get_object().bucket(&c.bucket).key(&key).send().await {
            Ok(o) => o.body.collect().await.map(|b| b.into_bytes().to_vec()).ok(),
            Err(_) => None,
        };
        if body
            .and_then(|b| strata_topology::roll::parse_desired_config(&b).ok())
            .is_some_and(|d| d.generation == 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the roll never asked n2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first_run.kill();
    let _ = first_run.wait();
    let (ok, out, err) = c.agent_cli(0, "roll", ROLL_ARGS);
    let t1 = Instant::now();
    assert!(ok, "roll failed:\n{err}\n{out}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["order"], "n2, n3, switchover to n2, n1", "{out}");
    // n2 was asked by the interrupted run: the resumed run waits for it, never asks again.
    let asked_here: Vec<&str> = rep["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[0].as_str())
        .collect();
    assert!(!asked_here.contains(&"n2"), "{out}");
    assert!(
        asked_here.contains(&"n3") && asked_here.contains(&"n1"),
        "{out}"
    );
    assert_eq!(rep["generation"], 2, "{out}");
    assert_eq!(rep["switchover"]["to"], "n2", "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = c.lease().await.unwrap();
    assert_eq!(l.holder.node_id, "n2");
    assert_eq!(l.epoch, first.epoch + 1, "exactly one change of source");

    // 3. Again: everything is at the generation already.
    let (ok, out2, err2) = c.agent_cli(1, "roll", ROLL_ARGS);
    assert!(ok, "{err2}\n{out2}");
    let rep2: serde_json::Value = serde_json::from_str(&out2).unwrap();
    assert!(rep2["switchover"].is_null(), "{out2}\n{err2}");
    assert_eq!(rep2["nodes"].as_array().map(|a| a.len()), Some(0), "{out2}");
    assert_eq!(rep2["generation"], 2, "{out2}");

    let acks = writers.stop().await;
    // Every node runs with the new settings (a static one: only a restart applies it).
    for i in 0..3 {
        let mut conn = c.nodes[i].node.root().await;
        let (mc, toci): (u64, u64) = conn
            .query_first("SELECT @@GLOBAL.max_connections, @@GLOBAL.table_open_cache_instances")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((mc, toci), (333, 4), "{}", c.nodes[i].id());
    }
    // Every acknowledged write is on the new source and on every replica.
    let src = c.idx("n2");
    let present = c.ids_on(src).await;
    let lost = lost(&acks, &present);
    let split = split_brain_windows(&acks, 1);
    c.wait_replicating(&[0, 2], Duration::from_secs(60)).await;
    for i in [0, 2] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ids_on(i).await != present {
            assert!(
                Instant::now() < deadline,
                "{} differs from n2",
                c.nodes[i].id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let gap = longest_gap(&acks, t0, t1);
    let in_roll = acks.iter().filter(|a| a.at >= t0 && a.at <= t1).count();
    eprintln!(
        "ROLL-REPORT settings: nodes=3 generation=2 acked_writes={} acked_during_roll={in_roll} lost_acked_writes={} split_brain_windows={split} longest_write_gap_ms={} roll_total_ms={} switchover_ms={} per_node_ms={} refused_setting_stop_ms={bad_ms}",
        acks.len(),
        lost.len(),
        gap.as_millis(),
        (t1 - t0).as_millis(),
        rep["switchover"]["ms"],
        rep["nodes"],
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(split, 0);
    assert!(in_roll > 0, "no write was acknowledged during the roll");
    // The longest write gap is a figure (ROLL-REPORT, README), not a pass/fail bound.
}
