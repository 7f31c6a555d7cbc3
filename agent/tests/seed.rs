//! A replica added to a cluster that already holds data (and purged its binlogs) is seeded
//! from a consistent copy of its source while a writer keeps writing, then catches up; and
//! the admin account, local to every node, writes on the source but not on a replica.
//! Real mariadbd processes.

// The std Mutex guard serializes whole tests (they share ports and CPU); holding it across
// awaits is the point, and nothing else locks it.
#![allow(clippy::await_holding_lock)]

mod common;

use common::*;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_topology::{Account, CredentialRef, NodeConfig, ReplicationMode, Role};

const ACK_TIMEOUT_MS: u64 = 500;
const MB: u64 = 1_000_000;

fn with_admin(mut cfg: NodeConfig) -> NodeConfig {
    cfg.admin = Some(Account {
        user: "strata_admin".into(),
        credential: CredentialRef {
            ssm_parameter: "/strata/test/admin-password".into(),
            ssm_region: "us-east-1".into(),
        },
    });
    cfg
}

fn source() -> Node {
    Node::new(|d, p| {
        with_admin(node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::SemiSync,
            ACK_TIMEOUT_MS,
        ))
    })
}

fn replica(name: &str, id: u32, source_port: u16) -> Node {
    Node::new(|d, p| {
        with_admin(node_config(
            d,
            name,
            Role::Replica,
            id,
            p,
            Some(source_port),
            ReplicationMode::SemiSync,
            ACK_TIMEOUT_MS,
        ))
    })
}

async fn q(c: &mut Conn, sql: &str) {
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar(c: &mut Conn, sql: &str) -> String {
    c.query_first::<Option<String>, _>(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .flatten()
        .unwrap_or_default()
}

async fn user_schemas(n: &Node) -> Vec<String> {
    n.root()
        .await
        .query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
             ('mysql','information_schema','performance_schema','sys') ORDER BY 1",
        )
        .await
        .unwrap()
}

async fn checksums(n: &Node, tables: &[&str]) -> Vec<(String, Option<u64>)> {
    let mut c = n.root().await;
    c.query(format!("CHECKSUM TABLE {}", tables.join(", ")))
        .await
        .unwrap()
}

fn seed_step(report: &serde_json::Value) -> Option<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "seed")
        .map(|s| s["detail"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mariadbd: run via scripts/test"]
async fn new_replica_is_seeded_from_a_copy_while_the_source_takes_writes() {
    let _serial = serial();
    let mut src = source();
    src.start();
    let rep = src.bootstrap();
    assert!(
        changes(&rep).iter().any(|c| c.contains("admin_account")),
        "{rep:#}"
    );
    let mut s = src.root().await;

    // --- a seed that fails halfway leaves the replica empty, and the next round seeds ---
    q(&mut s, "CREATE DATABASE a").await;
    q(
        &mut s,
        "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    q(&mut s, "INSERT INTO a.t VALUES (1, 'one'), (2, 'two')").await;
    q(&mut s, "CREATE DATABASE zz").await;
    q(&mut s, "CREATE VIEW zz.v AS SELECT * FROM a.t").await;
    // The dump copies a.t, then cannot read the view's definition.
    q(&mut s, "SET SESSION sql_log_bin = 0").await;
    q(&mut s, "REVOKE SHOW VIEW ON *.* FROM 'strata_repl'@'%'").await;
    q(&mut s, "SET SESSION sql_log_bin = 1").await;
    let mut r = replica("r1", 2, src.port());
    r.start();
    let (ok, out, err) = r.agent("bootstrap", &r.config_path(), &[]);
    assert!(!ok, "bootstrap must fail without SHOW VIEW:\n{out}");
    assert!(err.contains("seeding this replica"), "{err}");
    assert_eq!(user_schemas(&r).await, Vec::<String>::new(), "{err}");
    let mut rc = r.root().await;
    assert_eq!(scalar(&mut rc, "SELECT @@GLOBAL.gtid_slave_pos").await, "");
    let link: Vec<mysql_async::Row> = rc.query("SHOW SLAVE STATUS").await.unwrap();
    assert!(link.is_empty(), "a failed seed must not start replication");
    // The source's agent gives the replication user back what the seed needs.
    let rep = src.bootstrap();
    assert!(
        changes(&rep)
            .iter()
            .any(|c| c.contains("replication_grant")),
        "{rep:#}"
    );

    // --- at least 100 MB on the source, binlogs purged up to now ---
    q(&mut s, "CREATE DATABASE app").await;
    q(
        &mut s,
        "CREATE TABLE app.big (id BIGINT PRIMARY KEY AUTO_INCREMENT, n INT NOT NULL, \
         pad VARCHAR(255) NOT NULL) ENGINE=InnoDB",
    )
    .await;
    q(
        &mut s,
        "CREATE TABLE app.w (id BIGINT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(40)) ENGINE=InnoDB",
    )
    .await;
    q(
        &mut s,
        "CREATE TRIGGER app.w_upper BEFORE INSERT ON app.w FOR EACH ROW SET NEW.v = UPPER(NEW.v)",
    )
    .await;
    q(
        &mut s,
        "INSERT INTO app.big (n, pad) VALUES (1, REPEAT(MD5(RAND()), 6))",
    )
    .await;
    let t = Instant::now();
    loop {
        let bytes: u64 = scalar(
            &mut s,
            "SELECT COALESCE(SUM(LENGTH(pad)) + 12 * COUNT(*), 0) FROM app.big",
        )
        .await
        .parse()
        .unwrap();
        if bytes >= 100 * MB {
            eprintln!(
                "source holds {:.1} MB in app.big (generated in {:.1}s)",
                bytes as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            break;
        }
        q(
            &mut s,
            "INSERT INTO app.big (n, pad) SELECT n + 1, REPEAT(MD5(RAND()), 6) FROM app.big",
        )
        .await;
    }
    q(&mut s, "FLUSH BINARY LOGS").await;
    let last: Vec<(String, u64)> = s.query("SHOW BINARY LOGS").await.unwrap();
    let newest = last.last().unwrap().0.clone();
    // The server keeps a log a reader still has open (under load the purge can come before
    // that reader moved on), so retry for a while before calling it a failure.
    let mut tries = 0;
    let logs: Vec<(String, u64)> = loop {
        q(&mut s, &format!("PURGE BINARY LOGS TO '{newest}'")).await;
        let l: Vec<(String, u64)> = s.query("SHOW BINARY LOGS").await.unwrap();
        tries += 1;
        if l.len() == 1 || tries >= 50 {
            break l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_ne!(logs[0].0, "strata-bin.000001", "binlogs were not purged");

    // --- an agent that died mid-seed left a marker and a partial copy behind ---
    q(&mut rc, "SET SESSION sql_log_bin = 0").await;
    q(&mut rc, "CREATE DATABASE strata_seed_incomplete").await;
    q(&mut rc, "CREATE DATABASE app").await;
    q(&mut rc, "CREATE TABLE app.big (id INT PRIMARY KEY)").await;
    q(&mut rc, "INSERT INTO app.big VALUES (1)").await;

    // --- a continuous writer during the seed ---
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut w = src.root().await;
        let (stop, written) = (stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                w.query_drop(format!("INSERT INTO app.w (v) VALUES ('row{i}')"))
                    .await
                    .unwrap();
                w.query_drop(format!(
                    "UPDATE app.big SET n = n + 1 WHERE id = {}",
                    1 + (i * 7919) % 400_000
                ))
                .await
                .unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    q(&mut s, "SET GLOBAL general_log_file = 'general.log'").await;
    q(&mut s, "SET GLOBAL general_log = ON").await;

    let t = Instant::now();
    let rep = r.bootstrap();
    let seed_time = t.elapsed();
    let detail = seed_step(&rep).unwrap_or_else(|| panic!("no seed step:\n{rep:#}"));
    eprintln!("seed: {detail}\nbootstrap with seed took {seed_time:.1?}");
    assert!(
        detail.starts_with("removed an unfinished copy; copied a, app, zz"),
        "{detail}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    q(&mut s, "SET GLOBAL general_log = OFF").await;
    let writes = written.load(Ordering::Relaxed);
    assert!(writes > 10, "the writer barely ran: {writes}");

    // The copy took no global read lock on the source (consistent snapshot only).
    let datadir = scalar(&mut s, "SELECT @@GLOBAL.datadir").await;
    let general = std::fs::read_to_string(std::path::Path::new(&datadir).join("general.log"))
        .unwrap_or_default();
    assert!(
        general.contains("WITH CONSISTENT SNAPSHOT"),
        "the dump did not run"
    );
    assert!(
        !general.contains("FLUSH TABLES WITH READ LOCK"),
        "the seed locked the source"
    );

    // Caught up: the replica applied everything the source has, and holds the same data.
    let target = scalar(&mut s, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let have = scalar(&mut rc, "SELECT @@GLOBAL.gtid_slave_pos").await;
        if have == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica at {have}, source at {target}:\n{:#}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tables = ["app.big", "app.w", "a.t"];
    let (sc, rcs) = (checksums(&src, &tables).await, checksums(&r, &tables).await);
    eprintln!("checksums source {sc:?} replica {rcs:?}");
    assert_eq!(sc, rcs);
    assert!(sc.iter().all(|(_, c)| c.is_some()));
    assert_eq!(
        count(&mut rc, "app.w").await,
        writes,
        "every write made during and after the seed arrived"
    );
    let view: u64 = rc
        .query_first("SELECT COUNT(*) FROM zz.v")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view, 2);
    let triggers: u64 = rc
        .query_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'app'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(triggers, 1, "the copy lost the trigger");
    let st = r.status();
    assert_eq!(st["replication"]["io_thread"], "Yes", "{st:#}");
    assert_eq!(st["replication"]["sql_thread"], "Yes", "{st:#}");
    assert_eq!(st["replication"]["gtid_gap"], 0, "{st:#}");
    assert_eq!(st["semi_sync"]["replica_active"], true, "{st:#}");

    // A second bootstrap of the seeded replica changes nothing (and does not seed again).
    let again = r.bootstrap();
    assert_eq!(changes(&again), Vec::<String>::new(), "{again:#}");

    // The admin account exists on both nodes, outside the binlog, and cannot write on the
    // replica (read_only holds for it: no READ_ONLY ADMIN), but writes on the source.
    let mut adm_src = src.as_user("strata_admin", ADMIN_PASSWORD).await;
    q(&mut adm_src, "INSERT INTO app.w (v) VALUES ('by-admin')").await;
    let mut adm_rep = r.as_user("strata_admin", ADMIN_PASSWORD).await;
    let err = adm_rep
        .query_drop("INSERT INTO app.w (v) VALUES ('nope')")
        .await
        .expect_err("the admin account must not write on a replica");
    assert!(
        err.to_string().contains("1290") || err.to_string().contains("read-only"),
        "{err}"
    );
    let err = adm_rep
        .query_drop("SET GLOBAL read_only = OFF")
        .await
        .expect_err("the admin account must not lift read_only");
    assert!(err.to_string().contains("READ_ONLY ADMIN"), "{err}");
    let admins: u64 = s
        .query_first("SELECT COUNT(*) FROM mysql.user WHERE User = 'strata_admin'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admins, 1);
    drop(adm_rep);
    drop(adm_src);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mariadbd: run via scripts/test"]
async fn admin_account_is_local_and_follows_its_credential() {
    let _serial = serial();
    let mut src = source();
    src.start();
    src.bootstrap();
    let mut r = replica("r1", 2, src.port());
    r.start();
    let rep = r.bootstrap();
    let did = changes(&rep);
    assert!(
        did.iter()
            .any(|c| c.contains("admin_account") && c.contains("created")),
        "{did:?}"
    );
    // Created outside the binlog: the source's own creation did not replicate.
    let mut s = src.root().await;
    let pos = scalar(&mut s, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    let mut b: Vec<(String, String)> = Vec::new();
    for (log, _) in s
        .query::<(String, u64), _>("SHOW BINARY LOGS")
        .await
        .unwrap()
    {
        let rows: Vec<mysql_async::Row> = s
            .query(format!("SHOW BINLOG EVENTS IN '{log}'"))
            .await
            .unwrap();
        for row in rows {
            let info: Option<String> = row.get("Info");
            b.push((log.clone(), info.unwrap_or_default()));
        }
    }
    assert!(
        !b.iter().any(|(_, i)| i.contains("strata_admin")),
        "the admin account reached the binlog (pos {pos})"
    );

    // A new password in the credential: the next bootstrap alters the account everywhere.
    let new_pw = "rotated'pw\"2";
    for n in [&src, &r] {
        std::fs::write(n.admin_password_path(), new_pw).unwrap();
        let did = changes(&n.bootstrap());
        assert_eq!(
            did,
            vec!["\"admin_account\": \"strata_admin: credential updated\"".to_string()],
            "{}",
            n.cfg.node_name
        );
        let mut c = n.as_user("strata_admin", new_pw).await;
        q(&mut c, "SELECT 1").await;
        assert_eq!(changes(&n.bootstrap()), Vec::<String>::new());
    }
    // Privileges granted by hand beyond the list are taken back.
    let mut rc = r.root().await;
    q(&mut rc, "SET SESSION sql_log_bin = 0").await;
    q(
        &mut rc,
        "GRANT READ_ONLY ADMIN ON *.* TO 'strata_admin'@'%'",
    )
    .await;
    let did = changes(&r.bootstrap());
    assert!(did.iter().any(|c| c.contains("privileges set")), "{did:?}");
    let grants: Vec<String> = rc
        .query("SHOW GRANTS FOR 'strata_admin'@'%'")
        .await
        .unwrap();
    assert!(
        !grants.iter().any(|g| g.contains("READ_ONLY ADMIN")),
        "{grants:?}"
    );
}
