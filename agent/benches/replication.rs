//! Commit latency and replication lag, semi-sync vs async, on a local 1 source + 2 replica
//! topology of real mariadbd processes set up by the agent.
//!
//! Run: `cargo bench -p strata-agent --bench replication` (or, without a release build,
//! `cargo test -p strata-agent --bench replication`). Env: BENCH_RATE (inserts/s, default
//! 200), BENCH_SECONDS (default 10).
//!
//! Commit latency: client-side time of one autocommit INSERT on the source.
//! Lag: from the INSERT returning on the source to the row being visible on a replica,
//! found by polling each replica every millisecond (so lags are rounded up to ~1 ms).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_topology::{ReplicationMode, Role};
use tokio::sync::Mutex;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Run {
    mode: &'static str,
    commits: Vec<Duration>,
    lags: Vec<Vec<Duration>>,
}

async fn poll_replica(node_socket: String, n: usize, start: Instant) -> Vec<Option<Duration>> {
    let mut conn = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .socket(Some(node_socket))
            .user(Some("root"))
            .prefer_socket(false),
    )
    .await
    .unwrap();
    let mut seen: Vec<Option<Duration>> = vec![None; n];
    let mut upto = 0usize;
    while upto < n {
        let max: Option<Option<u64>> = conn
            .query_first("SELECT MAX(id) FROM bench.t")
            .await
            .unwrap();
        let now = start.elapsed();
        let max = max.flatten().unwrap_or(0) as usize;
        while upto < max.min(n) {
            seen[upto] = Some(now);
            upto += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    seen
}

async fn run(mode: &'static str, src: &Node, replicas: &[&Node], rate: u64, secs: u64) -> Run {
    let mut s = src.root().await;
    s.query_drop("DROP TABLE IF EXISTS bench.t").await.unwrap();
    s.query_drop("CREATE TABLE bench.t (id BIGINT PRIMARY KEY, payload VARCHAR(200))")
        .await
        .unwrap();
    for r in replicas {
        wait_rows(r, "bench.t", 0, Duration::from_secs(20)).await;
    }
    let n = (rate * secs) as usize;
    let start = Instant::now();
    let pollers: Vec<_> = replicas
        .iter()
        .map(|r| tokio::spawn(poll_replica(r.socket(), n, start)))
        .collect();
    let done_at = Arc::new(Mutex::new(vec![Duration::ZERO; n]));
    let mut commits = Vec::with_capacity(n);
    let period = Duration::from_micros(1_000_000 / rate);
    let mut next = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(next).await;
        next += period;
        let t = Instant::now();
        s.query_drop(format!(
            "INSERT INTO bench.t VALUES ({}, REPEAT('x', 100))",
            i + 1
        ))
        .await
        .unwrap();
        commits.push(t.elapsed());
        done_at.lock().await[i] = start.elapsed();
    }
    let done_at = done_at.lock().await.clone();
    let mut lags = Vec::new();
    for p in pollers {
        let seen = tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .expect("replica did not catch up within 60s")
            .unwrap();
        let mut l: Vec<Duration> = seen
            .iter()
            .zip(&done_at)
            .map(|(s, d)| s.unwrap_or_default().saturating_sub(*d))
            .collect();
        l.sort();
        lags.push(l);
    }
    commits.sort();
    Run {
        mode,
        commits,
        lags,
    }
}

fn main() {
    let rate: u64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut results = Vec::new();
        for (label, mode) in [
            ("semi_sync", ReplicationMode::SemiSync),
            ("async", ReplicationMode::Async),
        ] {
            let mut src = Node::new(|d, p| node_config(d, "src", Role::Source, 1, p, None, mode, 10_000));
            src.start();
            let sp = src.port();
            let mut r1 = Node::new(|d, p| node_config(d, "r1", Role::Replica, 2, p, Some(sp), mode, 10_000));
            let mut r2 = Node::new(|d, p| node_config(d, "r2", Role::Replica, 3, p, Some(sp), mode, 10_000));
            r1.start();
            r2.start();
            src.bootstrap();
            r1.bootstrap();
            r2.bootstrap();
            src.root().await.query_drop("CREATE DATABASE bench").await.unwrap();
            let res = run(label, &src, &[&r1, &r2], rate, secs).await;
            let st = src.status();
            eprintln!(
                "{label}: semi-sync active={} acked={} unacked={}",
                st["semi_sync"]["source_active"],
                st["semi_sync"]["acked_transactions"],
                st["semi_sync"]["unacked_transactions"]
            );
            results.push(res);
        }
        println!();
        println!("{rate} inserts/s for {secs}s, 1 source + 2 replicas, mariadbd on 127.0.0.1");
        println!(
            "| mode      | commits | commit p50 | commit p99 | lag p50 r1 | lag p99 r1 | lag p50 r2 | lag p99 r2 |"
        );
        println!(
            "|-----------|---------|------------|------------|------------|------------|------------|------------|"
        );
        for r in &results {
            println!(
                "| {:<9} | {:>7} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10} |",
                r.mode,
                r.commits.len(),
                ms(pct(&r.commits, 0.5)),
                ms(pct(&r.commits, 0.99)),
                ms(pct(&r.lags[0], 0.5)),
                ms(pct(&r.lags[0], 0.99)),
                ms(pct(&r.lags[1], 0.5)),
                ms(pct(&r.lags[1], 0.99)),
            );
        }
    });
}
