//! Failover time: from `kill -9` of the source (server and agent) to the first write accepted
//! through the writer endpoint (the Route 53 writer record, read through the API, then a new
//! connection and an INSERT), over BENCH_FAILOVERS (default 20) failovers on a local
//! 1 source + 2 replica cluster of real mariadbd + strata-agent processes, lease in LocalStack
//! S3. Also: time for the killed node, restarted, to be a caught-up replica again (the
//! "replaced replica caught up" figure: same path as a relaunched instance reusing its data).
//!
//! Run: `LOCALSTACK_ENDPOINT=http://127.0.0.1:4566 cargo bench -p strata-agent --bench failover`.
//! BENCH_TIMING=default uses the production timings (heartbeat 1 s, lease 4 s, margin 1 s);
//! otherwise the test timings (150 ms, 1.2 s, 300 ms).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/failover_harness/mod.rs"]
mod failover_harness;

use failover_harness::*;
use std::time::{Duration, Instant};
use strata_topology::FailoverTiming;

/// Tries one write through the writer record every 20 ms until one is acknowledged by a
/// server other than `old_srv`.
async fn first_write(c: &Cluster, old_srv: u32, base_id: u64) -> Instant {
    use mysql_async::prelude::Queryable;
    let mut id = base_id;
    loop {
        // A new id per attempt: an attempt that timed out here may still commit later.
        id += 1;
        if let Some(ip) = c.writer_ip().await
            && let Ok(mut conn) = admin_conn_to(&ip, c.port).await
        {
            let r = tokio::time::timeout(Duration::from_millis(500), async {
                let srv: Option<u32> = conn.query_first("SELECT @@server_id").await?;
                conn.exec_drop("INSERT INTO fo.t (id, srv) VALUES (?, @@server_id)", (id,))
                    .await?;
                Ok::<_, mysql_async::Error>(srv)
            })
            .await;
            if let Ok(Ok(Some(srv))) = r
                && srv != old_srv
            {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::var("BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let timing = if std::env::var("BENCH_TIMING").as_deref() == Ok("default") {
        FailoverTiming::default()
    } else {
        test_timing()
    };
    eprintln!("failover bench: {n} failovers, timing {timing:?}");
    let mut c = Cluster::start(3, timing).await;
    let writers = Writers::start(&c, 1);
    let mut to_write = Vec::new();
    let mut to_caught_up = Vec::new();
    for round in 0..n {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let l = c.lease().await.expect("lease");
        let old = c.idx(&l.holder.node_id);
        let old_srv = c.nodes[old].node.cfg.server_id;
        let t0 = Instant::now();
        c.nodes[old].kill9();
        let t1 = first_write(&c, old_srv, 2_000_000_000 + 1_000_000 * round as u64).await;
        to_write.push(t1 - t0);
        let r0 = Instant::now();
        c.nodes[old].restart();
        c.wait_replicating(&[old], Duration::from_secs(120)).await;
        // Caught up: the same rows as the new source.
        let newl = c.lease().await.expect("lease");
        let src = c.idx(&newl.holder.node_id);
        loop {
            let want = c.ids_on(src).await.len();
            let have = c.ids_on(old).await.len();
            if have >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        to_caught_up.push(r0.elapsed());
        eprintln!(
            "failover {round}: first write after {:?}; old source caught up as a replica {:?} after its restart",
            to_write.last().unwrap(),
            to_caught_up.last().unwrap()
        );
    }
    let acks = writers.stop().await;
    to_write.sort();
    to_caught_up.sort();
    let f = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "source loss -> first write through the writer record: p50 {} p99 {} max {} (n={n}, heartbeat {} ms, lease {} ms, margin {} ms)",
        f(pct(&to_write, 0.5)),
        f(pct(&to_write, 0.99)),
        f(*to_write.last().unwrap()),
        timing.heartbeat_ms,
        timing.lease_ms,
        timing.clock_margin_ms
    );
    println!(
        "restarted node -> caught-up replica: p50 {} p99 {} (acknowledged writes during the run: {})",
        f(pct(&to_caught_up, 0.5)),
        f(pct(&to_caught_up, 0.99)),
        acks.len()
    );
}
