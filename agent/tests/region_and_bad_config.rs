//! A region replica over TLS, and bootstraps the agent must refuse without touching the node.

// The std Mutex guard serializes whole tests (they share ports and CPU); holding it across
// awaits is the point, and nothing else locks it.
#![allow(clippy::await_holding_lock)]

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::time::Duration;
use strata_topology::{ReplicationMode, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mariadbd: run via scripts/test"]
async fn region_replica_replicates_over_tls_and_catches_up_after_a_pause() {
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
            1000,
        )
    });
    src.start();
    let sp = src.port();
    let mut eu = Node::new(|d, p| {
        node_config(
            d,
            "eu-1",
            Role::RegionReplica,
            10,
            p,
            Some(sp),
            ReplicationMode::SemiSync,
            1000,
        )
    });
    eu.start();
    src.bootstrap();
    let rep = eu.bootstrap();
    assert!(
        changes(&rep).iter().any(|c| c.contains("over TLS")),
        "{rep:#}"
    );

    let mut s = src.root().await;
    s.query_drop("CREATE TABLE mysql.strata_probe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    s.query_drop("INSERT INTO mysql.strata_probe VALUES (1)")
        .await
        .unwrap();
    wait_rows(&eu, "mysql.strata_probe", 1, Duration::from_secs(20)).await;

    let st = eu.status();
    assert_eq!(st["replication"]["tls"], true, "{st:#}");
    // A region replica never takes part in semi-sync, even in a semi-sync cluster.
    assert_eq!(st["semi_sync"]["configured"], false, "{st:#}");
    assert_eq!(st["semi_sync"]["replica_enabled"], false, "{st:#}");
    // The link really is TLS: once the source demands it, the IO thread still reconnects.
    s.query_drop("ALTER USER 'strata_repl'@'%' REQUIRE SSL")
        .await
        .unwrap();
    let mut e = eu.root().await;
    e.query_drop("STOP SLAVE IO_THREAD").await.unwrap();
    e.query_drop("START SLAVE IO_THREAD").await.unwrap();
    s.query_drop("INSERT INTO mysql.strata_probe VALUES (0)")
        .await
        .unwrap();
    s.query_drop("DELETE FROM mysql.strata_probe WHERE id = 0")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = eu.status();
    assert_eq!(st["replication"]["io_thread"], "Yes", "{st:#}");
    assert_eq!(st["replication"]["gtid_gap"], 0, "{st:#}");

    // Pause the link (as a cross-region outage would), write, and see the gap.
    eu.root().await.query_drop("STOP SLAVE").await.unwrap();
    for i in 2..=101 {
        s.query_drop(format!("INSERT INTO mysql.strata_probe VALUES ({i})"))
            .await
            .unwrap();
    }
    let st = eu.status();
    assert_eq!(st["replication"]["io_thread"], "No", "{st:#}");
    assert_eq!(st["replication"]["gtid_gap"], 100, "{st:#}");

    // The agent's next round restarts the link; the replica catches up.
    let rep = eu.bootstrap();
    assert!(
        changes(&rep).iter().any(|c| c.contains("started threads")),
        "{rep:#}"
    );
    wait_rows(&eu, "mysql.strata_probe", 101, Duration::from_secs(30)).await;
    let st = eu.status();
    assert_eq!(st["replication"]["gtid_gap"], 0, "{st:#}");
    assert_eq!(st["replication"]["tls"], true);
}

/// What a refused bootstrap must leave untouched on a fresh replica.
async fn snapshot(n: &Node) -> (String, Vec<mysql_async::Row>, String) {
    let mut c = n.root().await;
    let ro: String = c
        .query_first("SELECT @@GLOBAL.read_only")
        .await
        .unwrap()
        .unwrap();
    let slave: Vec<mysql_async::Row> = c.query("SHOW SLAVE STATUS").await.unwrap();
    let cnf = std::fs::read_to_string(n.cfg.server_config_path()).unwrap();
    (ro, slave, cnf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mariadbd: run via scripts/test"]
async fn bad_configs_are_refused_and_leave_the_node_as_it_was() {
    let _serial = serial();
    let mut src = Node::new(|d, p| {
        node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::Async,
            1000,
        )
    });
    src.start();
    src.bootstrap();
    let sp = src.port();
    let mut r = Node::new(|d, p| {
        node_config(
            d,
            "r1",
            Role::Replica,
            2,
            p,
            Some(sp),
            ReplicationMode::Async,
            1000,
        )
    });
    r.start();
    let before = snapshot(&r).await;
    assert!(before.1.is_empty());

    let bad = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&r.cfg.to_json()).unwrap();
        edit(&mut v);
        let path = r.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        path
    };
    let refused = |path: &std::path::Path, extra: &[&str], expect: &str| {
        let (ok, out, err) = r.agent("bootstrap", path, extra);
        assert!(!ok, "bootstrap with {} succeeded:\n{out}", path.display());
        assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
    };

    refused(
        &bad("engine", &|v| v["engine"] = "postgres".into()),
        &[],
        "unknown variant `postgres`, expected `mariadb` or `mysql`",
    );
    refused(
        &bad("dup", &|v| v["server_id"] = 1.into()),
        &[],
        "server_id 1 is already used by the source",
    );
    let dead = free_port();
    refused(
        &bad("unreachable", &|v| v["source"]["port"] = dead.into()),
        &["--connect-timeout", "2"],
        &format!("source 127.0.0.1:{dead} is unreachable"),
    );
    let wrong = r.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let (ok, _, err) = std::process::Command::new(agent_bin())
        .args(["bootstrap", "--config"])
        .arg(r.config_path())
        .arg("--socket")
        .arg(r.socket())
        .arg("--credential-file")
        .arg(&wrong)
        .output()
        .map(|o| {
            (
                o.status.success(),
                o.stdout,
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(!ok);
    assert!(err.contains("refused the replication credential"), "{err}");
    refused(
        &bad("acks", &|v| {
            v["replication"]["mode"] = "semi_sync".into();
            v["replication"]["ack_count"] = 2.into();
        }),
        &[],
        "MariaDB has no wait-for-replica-count",
    );
    refused(
        &bad("zero", &|v| v["server_id"] = 0.into()),
        &[],
        "server_id",
    );

    let after = snapshot(&r).await;
    assert_eq!(before.0, after.0, "read_only changed");
    assert!(after.1.is_empty(), "a replication link was configured");
    assert_eq!(before.2, after.2, "the server config file changed");

    // And the good config still works afterwards.
    let rep = r.bootstrap();
    assert!(
        changes(&rep).iter().any(|c| c.contains("replication_link")),
        "{rep:#}"
    );
}
