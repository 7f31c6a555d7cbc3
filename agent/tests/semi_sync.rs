//! One source and two home replicas, semi-sync with one ack, on real mariadbd processes.

// The std Mutex guard serializes whole tests (they share ports and CPU); holding it across
// awaits is the point, and nothing else locks it.
#![allow(clippy::await_holding_lock)]

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};
use strata_topology::{ReplicationMode, Role};

const ACK_TIMEOUT_MS: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mariadbd: run via scripts/test"]
async fn semi_sync_cluster_replicates_falls_back_and_resumes() {
    let _serial = serial();
    let mut src = Node::new(|d, p| {
        node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::SemiSync,
            ACK_TIMEOUT_MS,
        )
    });
    src.start();
    let sp = src.port();
    let mut r1 = Node::new(|d, p| {
        node_config(
            d,
            "r1",
            Role::Replica,
            2,
            p,
            Some(sp),
            ReplicationMode::SemiSync,
            ACK_TIMEOUT_MS,
        )
    });
    let mut r2 = Node::new(|d, p| {
        node_config(
            d,
            "r2",
            Role::Replica,
            3,
            p,
            Some(sp),
            ReplicationMode::SemiSync,
            ACK_TIMEOUT_MS,
        )
    });
    r1.start();
    r2.start();

    // Bootstrap: the source first, then the replicas.
    let rep = src.bootstrap();
    let did = changes(&rep);
    assert!(
        did.iter().any(|c| c.contains("replication_user")),
        "{did:?}"
    );
    assert!(
        did.iter()
            .any(|c| c.contains("rpl_semi_sync_master_enabled")),
        "{did:?}"
    );
    for r in [&r1, &r2] {
        let did = changes(&r.bootstrap());
        assert!(
            did.iter().any(|c| c.contains("replication_link")),
            "{did:?}"
        );
        // read_only comes from the rendered config file the server started with.
        assert_eq!(did.len(), 1, "{did:?}");
    }

    // Bootstrap again: a configured node is left alone.
    for n in [&src, &r1, &r2] {
        let again = n.bootstrap();
        assert_eq!(changes(&again), Vec::<String>::new(), "{}", n.cfg.node_name);
    }

    // A row written on the source lands on both replicas.
    let mut s = src.root().await;
    s.query_drop("CREATE DATABASE app").await.unwrap();
    s.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(32))")
        .await
        .unwrap();
    s.query_drop("CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'")
        .await
        .unwrap();
    s.query_drop("GRANT ALL ON app.* TO 'app'@'%'")
        .await
        .unwrap();
    s.query_drop("INSERT INTO app.t (v) VALUES ('hello')")
        .await
        .unwrap();
    for r in [&r1, &r2] {
        wait_rows(r, "app.t", 1, Duration::from_secs(20)).await;
        let v: Option<String> = r
            .root()
            .await
            .query_first("SELECT v FROM app.t")
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("hello"));
    }

    // Replicas refuse writes from clients.
    for r in [&r1, &r2] {
        let mut app = r.as_user("app", "app-pw").await;
        let err = app
            .query_drop("INSERT INTO app.t (v) VALUES ('nope')")
            .await
            .expect_err("a replica must refuse writes");
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("1290"),
            "{err}"
        );
    }

    // The source waits for acks and gets them.
    let st = src.status();
    assert_eq!(st["semi_sync"]["source_active"], true, "{st:#}");
    assert_eq!(st["semi_sync"]["source_clients"], 2, "{st:#}");
    assert!(
        st["semi_sync"]["acked_transactions"].as_u64().unwrap() >= 1,
        "{st:#}"
    );
    assert_eq!(st["read_only"], false);
    let rst = r1.status();
    assert_eq!(rst["read_only"], true);
    assert_eq!(rst["semi_sync"]["replica_active"], true, "{rst:#}");
    assert_eq!(rst["replication"]["io_thread"], "Yes");
    assert_eq!(rst["replication"]["sql_thread"], "Yes");
    assert_eq!(rst["replication"]["gtid_gap"], 0, "{rst:#}");

    // Every replica stopped: a commit waits for the ack timeout, then goes on async.
    r1.stop();
    r2.stop();
    let fallbacks_before = src.status()["semi_sync"]["fallbacks"].as_u64().unwrap();
    let t = Instant::now();
    s.query_drop("INSERT INTO app.t (v) VALUES ('alone')")
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(ACK_TIMEOUT_MS - 100),
        "commit returned after {waited:?}, before the ack timeout"
    );
    assert!(
        waited < Duration::from_millis(ACK_TIMEOUT_MS + 5000),
        "{waited:?}"
    );
    // Once fallen back, commits no longer wait.
    let t = Instant::now();
    s.query_drop("INSERT INTO app.t (v) VALUES ('async')")
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(ACK_TIMEOUT_MS / 2),
        "{:?}",
        t.elapsed()
    );
    let st = src.status();
    assert_eq!(st["semi_sync"]["source_active"], false, "{st:#}");
    assert_eq!(
        st["semi_sync"]["fallbacks"].as_u64().unwrap(),
        fallbacks_before + 1,
        "{st:#}"
    );
    assert!(
        st["semi_sync"]["unacked_transactions"].as_u64().unwrap() >= 1,
        "{st:#}"
    );

    // A replica returns (same datadir, not rebuilt): it catches up and semi-sync resumes.
    r2.start();
    let again = r2.bootstrap();
    assert_eq!(
        changes(&again),
        Vec::<String>::new(),
        "restart resumes on its own"
    );
    wait_rows(&r2, "app.t", 3, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Semi-sync switches back on when the returning replica acks a commit at the head.
        s.query_drop("INSERT INTO app.t (v) VALUES ('probe')")
            .await
            .unwrap();
        let st = src.status();
        if st["semi_sync"]["source_active"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "semi-sync did not resume: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acked_before = src.status()["semi_sync"]["acked_transactions"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    s.query_drop("INSERT INTO app.t (v) VALUES ('acked')")
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(ACK_TIMEOUT_MS),
        "{:?}",
        t.elapsed()
    );
    let acked_after = src.status()["semi_sync"]["acked_transactions"]
        .as_u64()
        .unwrap();
    assert!(
        acked_after > acked_before,
        "{acked_before} -> {acked_after}"
    );

    // A replica killed mid-stream resumes from its GTID position, without a rebuild.
    r1.start();
    r1.bootstrap();
    let writer = {
        let mut w = src.root().await;
        tokio::spawn(async move {
            for i in 0..300 {
                w.query_drop(format!("INSERT INTO app.t (v) VALUES ('load{i}')"))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    r1.crash();
    tokio::time::sleep(Duration::from_millis(300)).await;
    r1.start();
    let rep = r1.bootstrap();
    writer.await.unwrap();
    let total = count(&mut s, "app.t").await;
    wait_rows(&r1, "app.t", total, Duration::from_secs(30)).await;
    wait_rows(&r2, "app.t", total, Duration::from_secs(30)).await;
    let rst = r1.status();
    assert_eq!(
        rst["replication"]["sql_thread"], "Yes",
        "{rst:#} after {rep:#}"
    );
    assert_eq!(rst["replication"]["gtid_gap"], 0, "{rst:#}");
    assert_eq!(
        rst["replication"]["gtid_applied"],
        src.status()["gtid_executed"]
    );
}
