//! The validated backup cycle on real mariadbd processes and LocalStack S3: a source, a
//! replica that is the backup node, `strata-agent backup` run against them, backups stored as
//! chunks with SHA-256 in a LocalStack bucket.
//!
//! Needs LocalStack at $LOCALSTACK_ENDPOINT (default http://127.0.0.1:4566), mariadbd and
//! mariadb-backup (scripts/test provides all three).

// The std Mutex guard serializes whole tests (they share ports and CPU); holding it across
// awaits is the point, and nothing else locks it.
#![allow(clippy::await_holding_lock)]

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_topology::backup::{
    BackupConfig, BackupPolicy, Validation, default_key_prefix, manifest_key, parse_backup_tags,
    parse_manifest,
};
use strata_topology::{ReplicationMode, Role};

fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

async fn s3() -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

struct Cluster {
    src: Node,
    replica: Node,
    backup: BackupConfig,
    s3: aws_sdk_s3::Client,
    scratch_port: u16,
}

/// A source and a replica (the backup node) bootstrapped by the agent, a fresh bucket, and
/// `shop` tables on the source with `rows` rows each, replicated.
async fn cluster(keep: u32, rows: u32) -> Cluster {
    let s3 = s3().await;
    let cluster_id = format!("bk{}", std::process::id());
    let bucket = format!("strata-backup-test-{}-{}", std::process::id(), free_port());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("LocalStack S3 at {} must run: {e:?}", endpoint()));
    let backup = BackupConfig {
        policy: BackupPolicy {
            interval_hours: 24,
            keep,
            window_start: "03:00".into(),
        },
        bucket,
        key_prefix: default_key_prefix(&cluster_id),
        region: "us-east-1".into(),
    };
    let mut src = Node::new(|d, p| {
        node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::Async,
            0,
        )
    });
    src.start();
    let sp = src.port();
    let b = backup.clone();
    let mut replica = Node::new(move |d, p| {
        let mut c = node_config(
            d,
            "backup-node",
            Role::Replica,
            2,
            p,
            Some(sp),
            ReplicationMode::Async,
            0,
        );
        c.backup = Some(b);
        c
    });
    replica.start();
    src.bootstrap();
    replica.bootstrap();

    let mut conn = src.root().await;
    conn.query_drop("CREATE DATABASE shop").await.unwrap();
    for t in ["orders", "customers"] {
        conn.query_drop(format!(
            "CREATE TABLE shop.{t} (id INT PRIMARY KEY AUTO_INCREMENT, note VARCHAR(200), amount DECIMAL(10,2))"
        ))
        .await
        .unwrap();
    }
    insert_rows(&mut conn, rows).await;
    wait_rows(
        &replica,
        "shop.orders",
        rows.into(),
        Duration::from_secs(300),
    )
    .await;
    Cluster {
        src,
        replica,
        backup,
        s3,
        scratch_port: free_port(),
    }
}

async fn insert_rows(conn: &mut mysql_async::Conn, rows: u32) {
    // One statement per 1000 rows: a few seconds for tens of thousands.
    let mut left = rows;
    while left > 0 {
        let n = left.min(1000);
        let values: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "('row {i} {}', {}.{:02})",
                    "x".repeat(100),
                    i % 997,
                    i % 100
                )
            })
            .collect();
        for t in ["orders", "customers"] {
            conn.query_drop(format!(
                "INSERT INTO shop.{t} (note, amount) VALUES {}",
                values.join(",")
            ))
            .await
            .unwrap();
        }
        left -= n;
    }
}

impl Cluster {
    fn work_dir(&self) -> std::path::PathBuf {
        self.replica.dir.path().join("backup-work")
    }

    /// `strata-agent <sub>` on the backup node with LocalStack's S3; (success, stdout, stderr).
    fn agent(&self, sub: &str, extra: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(agent_bin())
            .arg(sub)
            .arg("--config")
            .arg(self.replica.config_path())
            .arg("--socket")
            .arg(self.replica.socket())
            .arg("--credential-file")
            .arg(self.replica.password_path())
            .arg("--admin-credential-file")
            .arg(self.replica.admin_password_path())
            .arg("--work-dir")
            .arg(self.work_dir())
            .arg("--scratch-port")
            .arg(self.scratch_port.to_string())
            // Small chunks, so a backup has several and one can be corrupted.
            .arg("--chunk-mib")
            .arg("2")
            .arg("--catch-up-timeout")
            .arg("120")
            .args(extra)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run strata-agent");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn cycle(&self) -> serde_json::Value {
        let started = Instant::now();
        let (ok, out, err) = self.agent("backup", &[]);
        assert!(ok, "backup cycle failed:\n{err}\n{out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        eprintln!(
            "cycle {} in {:?}: {}",
            report["kind"],
            started.elapsed(),
            report["timings_ms"]
        );
        report
    }

    async fn validation(&self, id: &str) -> Validation {
        let key = manifest_key(&self.backup.key_prefix, id);
        let out = self
            .s3
            .get_object_tagging()
            .bucket(&self.backup.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        parse_backup_tags(out.tag_set().iter().map(|t| (t.key(), t.value())))
            .unwrap()
            .validation
    }

    async fn manifest(&self, id: &str) -> strata_topology::backup::Manifest {
        let key = manifest_key(&self.backup.key_prefix, id);
        let body = self
            .s3
            .get_object()
            .bucket(&self.backup.bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        parse_manifest(&body, &self.backup.key_prefix).unwrap()
    }

    async fn exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.backup.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

async fn checksums(conn: &mut mysql_async::Conn) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for t in ["shop.customers", "shop.orders"] {
        let row: (String, u64) = conn
            .query_first(format!("CHECKSUM TABLE {t}"))
            .await
            .unwrap()
            .unwrap();
        out.insert(t.to_string(), row.1);
    }
    out
}

/// A plain mariadbd on a restored datadir; killed on drop.
struct Restored {
    child: std::process::Child,
    socket: String,
}

impl Restored {
    fn start(dir: &Path) -> Restored {
        let socket = dir.join("r.sock").display().to_string();
        let child = std::process::Command::new(
            std::env::var("STRATA_MARIADBD").unwrap_or_else(|_| MARIADBD.to_string()),
        )
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--port={}", free_port()))
        .arg(format!("--socket={socket}"))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!("--pid-file={}", dir.join("r.pid").display()))
        .arg("--bind-address=127.0.0.1")
        .arg("--user=root")
        .arg("--skip-slave-start")
        .arg("--server-id=77")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "restored server did not start: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Restored { child, socket }
    }

    async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(
            mysql_async::OptsBuilder::default()
                .socket(Some(self.socket.clone()))
                .user(Some("root"))
                .prefer_socket(false),
        )
        .await
        .unwrap()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack, mariadbd and mariadb-backup: run via scripts/test"]
async fn cycles_validate_backups_and_a_restore_matches_the_source_at_its_gtid() {
    let _serial = serial();
    // STRATA_BACKUP_ROWS sizes the data for a measurement (docs/backups.md); the default keeps
    // the test short.
    let rows: u32 = std::env::var("STRATA_BACKUP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let c = cluster(1, rows).await;

    // First cycle: no backup yet, so a fresh full one, restored and checked before it counts.
    let r1 = c.cycle();
    assert_eq!(r1["kind"], "fresh-full", "{r1}");
    let id1 = r1["backup_id"].as_str().unwrap().to_string();
    assert_eq!(c.validation(&id1).await, Validation::Validated);
    let m1 = c.manifest(&id1).await;
    assert!(m1.chunks.len() >= 2, "several chunks: {}", m1.chunks.len());
    assert_eq!(m1.table_checksums.len(), 2, "{:?}", m1.table_checksums);
    assert!(m1.parent.is_none());

    // More writes, then a second cycle: it restores the first backup, catches up through
    // replication to the replica's GTID, checks, and takes the next backup from that restore.
    let mut conn = c.src.root().await;
    insert_rows(&mut conn, 5_000).await;
    conn.query_drop("UPDATE shop.customers SET amount = amount + 1 WHERE id % 7 = 0")
        .await
        .unwrap();
    wait_rows(
        &c.replica,
        "shop.orders",
        u64::from(rows) + 5_000,
        Duration::from_secs(300),
    )
    .await;
    let r2 = c.cycle();
    assert_eq!(r2["kind"], "incremental-restore", "{r2}");
    assert_eq!(r2["parent"], id1.as_str());
    let id2 = r2["backup_id"].as_str().unwrap().to_string();
    assert!(id2 > id1);
    assert_eq!(c.validation(&id2).await, Validation::Validated);
    let m2 = c.manifest(&id2).await;
    assert_ne!(m2.gtid, m1.gtid, "the second backup is at a later GTID");
    // keep = 1: the first backup goes once the second is validated, all of its objects.
    assert_eq!(r2["deleted"], serde_json::json!([id1]));
    assert!(!c.exists(&manifest_key(&c.backup.key_prefix, &id1)).await);
    assert!(!c.exists(&m1.chunks[0].key).await);

    // Restore the latest backup into a new server: its tables match the source's at the
    // backup's GTID (the source is idle, so its position is the backup's).
    let src_gtid: String = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(src_gtid, m2.gtid, "no write since the second cycle");
    let src_sums = checksums(&mut conn).await;
    assert_eq!(src_sums, m2.table_checksums);
    let target = c.replica.dir.path().join("restore-target");
    let started = Instant::now();
    let (ok, out, err) = c.agent("restore", &["--target-dir", target.to_str().unwrap()]);
    assert!(ok, "restore failed:\n{err}\n{out}");
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["backup_id"], id2.as_str());
    let server = Restored::start(&target);
    eprintln!(
        "restore of {} bytes and start: {:?}",
        restored["bytes"],
        started.elapsed()
    );
    let mut rc = server.conn().await;
    assert_eq!(checksums(&mut rc).await, src_sums);
    assert_eq!(
        rc.query_first::<u64, _>("SELECT COUNT(*) FROM shop.orders")
            .await
            .unwrap(),
        Some(u64::from(rows) + 5_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack, mariadbd and mariadb-backup: run via scripts/test"]
async fn a_corrupted_backup_is_caught_marked_failed_and_replaced_by_a_fresh_full_one() {
    let _serial = serial();
    let c = cluster(2, 10_000).await;
    let r1 = c.cycle();
    let id1 = r1["backup_id"].as_str().unwrap().to_string();
    assert_eq!(c.validation(&id1).await, Validation::Validated);

    // Flip bytes in the middle of a stored chunk, as a bad disk or a bad copy would.
    let m1 = c.manifest(&id1).await;
    let victim = &m1.chunks[m1.chunks.len() / 2];
    let mut body =
        c.s3.get_object()
            .bucket(&c.backup.bucket)
            .key(&victim.key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec();
    let mid = body.len() / 2;
    for b in &mut body[mid..mid + 16] {
        *b ^= 0xA5;
    }
    c.s3.put_object()
        .bucket(&c.backup.bucket)
        .key(&victim.key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();

    let r2 = c.cycle();
    assert_eq!(r2["kind"], "fresh-full", "{r2}");
    let failed = r2["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r2}");
    assert_eq!(failed[0][0], id1.as_str());
    let reason = failed[0][1].as_str().unwrap();
    assert!(reason.contains("sha256"), "{reason}");
    match c.validation(&id1).await {
        Validation::Failed { reason } => assert!(reason.contains("sha256"), "{reason}"),
        other => panic!("the corrupted backup is {other:?}"),
    }
    let id2 = r2["backup_id"].as_str().unwrap().to_string();
    assert_eq!(c.validation(&id2).await, Validation::Validated);
    assert!(
        c.manifest(&id2).await.parent.is_none(),
        "a fresh full backup"
    );
    // keep = 2 and one validated backup newer than the failed one: it stays, for inspection.
    assert_eq!(r2["deleted"], serde_json::json!([]));

    // The next cycle builds on the fresh backup again.
    let r3 = c.cycle();
    assert_eq!(r3["kind"], "incremental-restore", "{r3}");
    assert_eq!(r3["parent"], id2.as_str());
    // Now two validated backups are newer than the failed one: it goes.
    assert_eq!(r3["deleted"], serde_json::json!([id1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack, mariadbd and mariadb-backup: run via scripts/test"]
async fn a_cycle_cut_short_leaves_nothing_validated_and_the_next_starts_over() {
    let _serial = serial();
    let c = cluster(1, 10_000).await;
    // Kill the agent once its scratch server runs: the backup it made is stored but not
    // validated yet, and the scratch server is left behind.
    let mut agent = std::process::Command::new(agent_bin())
        .arg("backup")
        .arg("--config")
        .arg(c.replica.config_path())
        .arg("--socket")
        .arg(c.replica.socket())
        .arg("--credential-file")
        .arg(c.replica.password_path())
        .arg("--work-dir")
        .arg(c.work_dir())
        .arg("--scratch-port")
        .arg(c.scratch_port.to_string())
        .arg("--chunk-mib")
        .arg("2")
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scratch_pid = c.work_dir().join("scratch/scratch.pid");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !scratch_pid.exists() {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the cycle ended before it could be cut short"
        );
        assert!(Instant::now() < deadline, "no scratch server started");
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.kill().unwrap();
    agent.wait().unwrap();

    let listed =
        c.s3.list_objects_v2()
            .bucket(&c.backup.bucket)
            .prefix(format!("{}/", c.backup.key_prefix))
            .send()
            .await
            .unwrap();
    let cut: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| strata_topology::backup::parse_manifest_key(&c.backup.key_prefix, o.key()?))
        .collect();
    assert_eq!(cut.len(), 1, "one backup stored before the cut: {cut:?}");
    assert_eq!(c.validation(&cut[0]).await, Validation::Pending);

    // The next cycle stops the leftover scratch server, starts over with a fresh full backup,
    // and retention (keep = 1) removes the pending one behind the new validated one.
    let r = c.cycle();
    assert_eq!(r["kind"], "fresh-full", "{r}");
    let id = r["backup_id"].as_str().unwrap().to_string();
    assert_ne!(id, cut[0]);
    assert_eq!(c.validation(&id).await, Validation::Validated);
    assert_eq!(r["deleted"], serde_json::json!([cut[0]]));
}

/// `strata-agent run` on `node` with LocalStack's S3 and `work_dir`; killed on drop.
struct Running(std::process::Child);

impl Running {
    fn start(node: &Node, work_dir: &Path, scratch_port: u16, extra: &[&str]) -> Running {
        let log = std::fs::File::create(work_dir.with_extension("log")).unwrap();
        let child = std::process::Command::new(agent_bin())
            .arg("run")
            .arg("--config")
            .arg(node.config_path())
            .arg("--socket")
            .arg(node.socket())
            .arg("--credential-file")
            .arg(node.password_path())
            .arg("--admin-credential-file")
            .arg(node.admin_password_path())
            .arg("--work-dir")
            .arg(work_dir)
            .arg("--scratch-port")
            .arg(scratch_port.to_string())
            .arg("--chunk-mib")
            .arg("2")
            .arg("--no-node-tags")
            .args(extra)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The backup node's own agent runs the cycles (`run` as the backup node: the first at once,
/// since there is no backup yet) and `backup --now` asks it for one; then a new source whose
/// config names a backup (`restore`, from `strata_cluster.restore_from`) loads it before it
/// takes writes, with the source's tables at the backup's GTID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack, mariadbd and mariadb-backup: run via scripts/test"]
async fn the_agent_runs_cycles_and_a_new_source_restores_a_backup_before_writes() {
    let _serial = serial();
    let c = cluster(2, 5_000).await;
    let work = c.work_dir();
    std::fs::create_dir_all(&work).unwrap();
    let agent = Running::start(
        &c.replica,
        &work,
        c.scratch_port,
        &["--backup-node", "--interval", "3600"],
    );
    let now = |c: &Cluster| {
        let (ok, out, err) = c.agent("backup", &["--now", "--wait", "300"]);
        assert!(ok, "backup --now failed:\n{err}\n{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        eprintln!("requested cycle: {}", v["report"]["timings_ms"]);
        v["report"].clone()
    };
    let r1 = now(&c);
    let id1 = r1["backup_id"].as_str().unwrap().to_string();
    assert_eq!(c.validation(&id1).await, Validation::Validated);

    let mut conn = c.src.root().await;
    insert_rows(&mut conn, 1_000).await;
    wait_rows(&c.replica, "shop.orders", 6_000, Duration::from_secs(120)).await;
    // A validated backup exists now, so this cycle restores it and takes the next from it;
    // the agent's replication upkeep ran beside it without restarting the held replica.
    let r2 = now(&c);
    assert_eq!(r2["kind"], "incremental-restore", "{r2}");
    let id2 = r2["backup_id"].as_str().unwrap().to_string();
    assert_eq!(c.validation(&id2).await, Validation::Validated);
    let m2 = c.manifest(&id2).await;
    drop(agent);
    // The replica replicates again after the cycles.
    insert_rows(&mut conn, 10).await;
    wait_rows(&c.replica, "shop.orders", 6_010, Duration::from_secs(60)).await;

    // A new cluster's source restoring the second backup.
    let restore = strata_topology::backup::RestoreFrom {
        cluster: m2.cluster.clone(),
        backup_id: id2.clone(),
        bucket: c.backup.bucket.clone(),
        key_prefix: c.backup.key_prefix.clone(),
        region: c.backup.region.clone(),
    };
    let mut fresh = Node::new(move |d, p| {
        let mut cfg = node_config(
            d,
            "restored",
            Role::Source,
            11,
            p,
            None,
            ReplicationMode::Async,
            0,
        );
        cfg.restore = Some(restore);
        cfg
    });
    fresh.start();
    let fresh_work = fresh.dir.path().join("backup-work");
    let started = Instant::now();
    let _run = Running::start(&fresh, &fresh_work, free_port(), &["--interval", "2"]);
    let done = strata_agent::backup::restore::done_path(&fresh_work);
    while !done.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no restore recorded: {}",
            std::fs::read_to_string(fresh_work.with_extension("log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("restore into a new source: {:?}", started.elapsed());
    let mut fc = fresh.root().await;
    assert_eq!(checksums(&mut fc).await, m2.table_checksums);
    // Then the source takes writes: the agent's bootstrap makes it writable.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ro: Option<u64> = fc.query_first("SELECT @@GLOBAL.read_only").await.unwrap();
        if ro == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restored source stays read-only"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fc.query_drop("INSERT INTO shop.orders (note, amount) VALUES ('after restore', 1)")
        .await
        .unwrap();
    assert_eq!(count(&mut fc, "shop.orders").await, 6_001);
}
