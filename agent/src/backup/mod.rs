//! The validated backup cycle, run by the agent of a backup node (a replica that serves no
//! reads). One cycle:
//!
//! 1. Restore the most recent validated backup into a scratch datadir (every chunk's SHA-256
//!    checked on the way), prepare it, start a scratch server on it (it must start clean), and
//!    check its tables against the manifest's checksums at the backup's GTID.
//! 2. Hold the local replica for a moment at a GTID (its SQL thread stopped), record its table
//!    checksums there and let it go; replicate the scratch server from the source up to exactly
//!    that GTID (`START SLAVE UNTIL master_gtid_pos`), and check its tables against the
//!    recorded ones.
//! 3. Only then take the new backup, from the scratch server (its data is what was just
//!    validated), store it, read every chunk back against its SHA-256, and tag it
//!    `strata:validated=true`.
//!
//! If step 1 or 2 fails, the restored backup is tagged failed with the reason and a fresh full
//! backup is taken from the local replica instead, then itself restored and checked the same
//! way before it is tagged validated. With no validated backup yet, the cycle starts there.
//! Retention then deletes old backups, never the newest `keep` validated ones nor anything
//! newer than them. A cycle cut short leaves at most a backup tagged pending (never validated);
//! the next cycle starts over from the last validated one.

pub mod mariadb;
pub mod restore;
pub mod store;

/// Set while a cycle holds the local replica's SQL thread: the agent's own replication
/// upkeep (bootstrap rounds, rejoins after a failover) waits until it is released, so nothing
/// restarts the thread in the middle of a copy taken at one GTID.
static REPLICA_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a backup cycle in this process holds the local replica.
pub fn replica_held() -> bool {
    REPLICA_HELD.load(std::sync::atomic::Ordering::SeqCst)
}

struct HeldFlag;
impl HeldFlag {
    fn set() -> HeldFlag {
        REPLICA_HELD.store(true, std::sync::atomic::Ordering::SeqCst);
        HeldFlag
    }
}
impl Drop for HeldFlag {
    fn drop(&mut self) {
        REPLICA_HELD.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

use crate::engine::LinkSpec;
use crate::sql::{self, LocalTarget};
use mariadb::{BackupSource, ScratchServer, Tools};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{BackupStore, StoreError, sha256_hex};
use strata_topology::backup::{
    BackupTags, Chunk, MANIFEST_VERSION, Manifest, Validation, chunk_key, is_gtid_list,
    render_backup_id, retention,
};
use strata_topology::failover::render_tag_time;
use strata_topology::{Engine, NodeConfig, Role};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backups: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local replica could not be backed up (or held, or read).
    #[error("backup of the local server failed: {0}")]
    Take(String),
    /// A fresh full backup was taken but did not pass validation.
    #[error("the fresh full backup {backup_id} failed validation: {reason}")]
    FreshFailed { backup_id: String, reason: String },
}

/// What one cycle needs beyond the node config.
#[derive(Debug, Clone)]
pub struct CycleOptions {
    /// The backup node's own server (a replica).
    pub local: LocalTarget,
    pub connect_timeout: Duration,
    /// The replication password, for the scratch server's catch-up from the source.
    pub replication_password: String,
    /// Scratch datadir, stream temp files and logs live here; emptied by every cycle.
    pub work_dir: PathBuf,
    pub tools: Tools,
    pub scratch_port: u16,
    pub scratch_server_id: u32,
    pub chunk_bytes: usize,
    /// How long a catch-up may take.
    pub catch_up_timeout: Duration,
}

/// What a cycle did, printed as JSON by `strata-agent backup`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// The backup this cycle made and validated.
    pub backup_id: String,
    pub gtid: String,
    /// `incremental-restore` (taken from a validated restore of `parent`) or `fresh-full`.
    pub kind: String,
    pub parent: Option<String>,
    /// Backups tagged failed by this cycle, with the reason.
    pub failed: Vec<(String, String)>,
    pub deleted: Vec<String>,
    pub bytes: u64,
    pub chunks: usize,
    pub tables: usize,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<String, u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Timer<'a>(&'a mut BTreeMap<String, u64>);
impl Timer<'_> {
    fn add(&mut self, step: &str, since: Instant) {
        *self.0.entry(step.to_string()).or_default() += since.elapsed().as_millis() as u64;
    }
}

/// A restored, checked scratch server held at `gtid`, whose tables are `checksums`.
struct Validated {
    server: ScratchServer,
    gtid: String,
    checksums: BTreeMap<String, u64>,
}

pub async fn run_cycle(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &CycleOptions,
) -> Result<CycleReport, BackupError> {
    if cfg.engine != Engine::Mariadb {
        return Err(BackupError::Unsupported(format!(
            "the validated cycle is built for MariaDB (mariadb-backup); this node runs {}",
            cfg.engine
        )));
    }
    let Some(backup) = &cfg.backup else {
        return Err(BackupError::Unsupported(
            "the node config has no `backup` section (strata_cluster.backup_policy)".into(),
        ));
    };
    if cfg.role == Role::Source || cfg.source.is_none() {
        return Err(BackupError::Unsupported(
            "backups run on a replica (the backup node), never on the source".into(),
        ));
    }
    let mut report = CycleReport::default();
    // A cycle cut short may have left its scratch server running on the scratch datadir.
    ScratchServer::stop_leftover(&o.work_dir.join("scratch")).await;
    let listed = store.list().await?;
    let last_validated = listed
        .iter()
        .rev()
        .find(|(_, t)| t.validation.is_validated())
        .map(|(id, _)| id.clone());

    let mut made = None;
    if let Some(prev) = last_validated {
        let manifest = store.manifest(&prev).await;
        let outcome = match manifest {
            Ok(m) => validate(cfg, store, o, &m, &mut report).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(v) => {
                // Taken from the restore just validated: its data is what was checked.
                let taken = take_from_scratch(cfg, store, o, &v, &prev, &mut report).await;
                v.server.stop().await;
                let m = taken?;
                verify_stored(store, &m, &mut report).await?;
                store
                    .set_tags(&m.backup_id, &tags(cfg, &m, Validation::Validated))
                    .await?;
                report.kind = "incremental-restore".into();
                made = Some(m);
            }
            Err(reason) => {
                tracing::warn!(backup = %prev, %reason, "backup failed validation; taking a fresh full backup");
                let t = store.tags(&prev).await.unwrap_or(BackupTags {
                    cluster: cfg.cluster_id.clone(),
                    gtid: String::new(),
                    time_ms: 0,
                    validation: Validation::Pending,
                });
                store
                    .set_tags(
                        &prev,
                        &BackupTags {
                            validation: Validation::Failed {
                                reason: reason.clone(),
                            },
                            ..t
                        },
                    )
                    .await?;
                report.failed.push((prev.clone(), reason));
            }
        }
    }
    let made = match made {
        Some(m) => m,
        None => {
            let m = take_fresh_full(cfg, store, o, &mut report).await?;
            match validate(cfg, store, o, &m, &mut report).await {
                Ok(v) => {
                    v.server.stop().await;
                    store
                        .set_tags(&m.backup_id, &tags(cfg, &m, Validation::Validated))
                        .await?;
                }
                Err(reason) => {
                    store
                        .set_tags(
                            &m.backup_id,
                            &tags(
                                cfg,
                                &m,
                                Validation::Failed {
                                    reason: reason.clone(),
                                },
                            ),
                        )
                        .await?;
                    report.failed.push((m.backup_id.clone(), reason.clone()));
                    return Err(BackupError::FreshFailed {
                        backup_id: m.backup_id,
                        reason,
                    });
                }
            }
            report.kind = "fresh-full".into();
            m
        }
    };
    report.backup_id = made.backup_id.clone();
    report.gtid = made.gtid.clone();
    report.parent = made.parent.clone();
    report.bytes = made.total_bytes();
    report.chunks = made.chunks.len();
    report.tables = made.table_checksums.len();

    let t = Instant::now();
    let all = store.list().await?;
    let states: Vec<(String, Validation)> =
        all.into_iter().map(|(id, t)| (id, t.validation)).collect();
    for id in retention(&states, backup.policy.keep) {
        store.delete(&id).await?;
        report.deleted.push(id);
    }
    Timer(&mut report.timings_ms).add("retention", t);
    let _ = std::fs::remove_dir_all(o.work_dir.join("scratch"));
    Ok(report)
}

fn tags(cfg: &NodeConfig, m: &Manifest, validation: Validation) -> BackupTags {
    BackupTags {
        cluster: cfg.cluster_id.clone(),
        gtid: m.gtid.clone(),
        time_ms: strata_topology::failover::parse_tag_time(&m.time).unwrap_or(0),
        validation,
    }
}

async fn connect(t: &LocalTarget, timeout: Duration) -> Result<mysql_async::Conn, String> {
    sql::connect_local(t, timeout).await
}

async fn scalar(conn: &mut mysql_async::Conn, q: &str) -> Result<String, String> {
    sql::scalar(conn, q, q)
        .await
        .map_err(|e| e.to_string())
        .map(|v| v.unwrap_or_default())
}

/// Holds the local replica's SQL thread, runs `f` with the GTID it is held at, and lets it go
/// whatever `f` returned.
async fn with_replica_held<T>(
    o: &CycleOptions,
    f: impl AsyncFnOnce(&mut mysql_async::Conn, String) -> Result<T, String>,
) -> Result<T, String> {
    let mut conn = connect(&o.local, o.connect_timeout).await?;
    let _held = HeldFlag::set();
    sql::exec(&mut conn, mariadb::HOLD_SQL, "hold the replica")
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let gtid = scalar(&mut conn, mariadb::APPLIED_GTIDS).await?;
        if !is_gtid_list(&gtid) {
            return Err(format!("the replica reports GTID position {gtid:?}"));
        }
        f(&mut conn, gtid).await
    }
    .await;
    let released = sql::exec(&mut conn, mariadb::RELEASE_SQL, "release the replica").await;
    let value = result?;
    released.map_err(|e| e.to_string())?;
    Ok(value)
}

/// A fresh full backup of the local replica, held at one GTID while it is copied.
async fn take_fresh_full(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &CycleOptions,
    report: &mut CycleReport,
) -> Result<Manifest, BackupError> {
    let t = Instant::now();
    let id = render_backup_id(now_ms());
    let m = with_replica_held(o, async |conn, gtid| {
        let checksums = mariadb::table_checksums(conn).await?;
        let datadir = scalar(conn, mariadb::DATADIR).await?;
        let src = BackupSource {
            defaults_file: Some(cfg.server_config_path().to_string()),
            socket: o
                .local
                .socket
                .clone()
                .ok_or("the agent reaches the local server by socket for backups")?,
            user: o.local.user.clone(),
            password: o.local.password.clone(),
            datadir,
        };
        stream_to_store(
            cfg,
            store,
            o,
            &id,
            &src,
            gtid,
            checksums,
            None,
            &cfg.node_name,
        )
        .await
    })
    .await
    .map_err(BackupError::Take)?;
    Timer(&mut report.timings_ms).add("take_fresh_full", t);
    Ok(m)
}

/// The next backup, from the validated scratch server (replication there is stopped at
/// `v.gtid`, so the copy is at that GTID).
async fn take_from_scratch(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &CycleOptions,
    v: &Validated,
    parent: &str,
    report: &mut CycleReport,
) -> Result<Manifest, BackupError> {
    let t = Instant::now();
    let id = render_backup_id(now_ms());
    let src = BackupSource {
        defaults_file: None,
        socket: v.server.socket.clone(),
        user: o.local.user.clone(),
        password: o.local.password.clone(),
        datadir: ScratchServer::datadir(&v.server.dir).display().to_string(),
    };
    let m = stream_to_store(
        cfg,
        store,
        o,
        &id,
        &src,
        v.gtid.clone(),
        v.checksums.clone(),
        Some(parent.to_string()),
        &format!("{} (restore of {parent})", cfg.node_name),
    )
    .await
    .map_err(BackupError::Take)?;
    Timer(&mut report.timings_ms).add("take_from_restore", t);
    Ok(m)
}

/// Streams `mariadb-backup` into chunks in S3, then writes the manifest tagged pending.
#[allow(clippy::too_many_arguments)] // one call site per kind of backup
async fn stream_to_store(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &CycleOptions,
    id: &str,
    src: &BackupSource,
    gtid: String,
    checksums: BTreeMap<String, u64>,
    parent: Option<String>,
    taken_from: &str,
) -> Result<Manifest, String> {
    let time_ms = now_ms();
    let stream_dir = o.work_dir.join("stream");
    let _ = std::fs::remove_dir_all(&stream_dir);
    let log = o.work_dir.join("backup.log");
    let mut child = mariadb::start_backup_stream(&o.tools, src, &stream_dir, &log)
        .map_err(|e| format!("starting {}: {e}", o.tools.mariadb_backup.display()))?;
    let mut out = child.stdout.take().ok_or("mariadb-backup has no stdout")?;
    let mut chunks = Vec::new();
    loop {
        let buf = mariadb::read_chunk(&mut out, o.chunk_bytes)
            .await
            .map_err(|e| format!("reading the backup stream: {e}"))?;
        if buf.is_empty() {
            break;
        }
        let key = chunk_key(store.prefix(), id, chunks.len() as u32);
        let chunk = Chunk {
            key: key.clone(),
            size: buf.len() as u64,
            sha256: sha256_hex(&buf),
        };
        store.put(&key, buf).await.map_err(|e| e.to_string())?;
        chunks.push(chunk);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for mariadb-backup: {e}"))?;
    if !status.success() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "mariadb-backup exited with {status}: {}",
            mariadb::tail(&log, 5)
        ));
    }
    let m = Manifest {
        version: MANIFEST_VERSION,
        cluster: cfg.cluster_id.clone(),
        backup_id: id.to_string(),
        engine: cfg.engine,
        engine_version: cfg.engine_version.clone(),
        gtid,
        time: render_tag_time(time_ms),
        method: "mariadb-backup/mbstream".into(),
        taken_from: taken_from.to_string(),
        parent,
        chunks,
        table_checksums: checksums,
    };
    store
        .put_manifest(&m, &tags(cfg, &m, Validation::Pending))
        .await
        .map_err(|e| e.to_string())?;
    Ok(m)
}

/// Reads every chunk back and checks its SHA-256: what is stored is what was streamed.
async fn verify_stored(
    store: &BackupStore,
    m: &Manifest,
    report: &mut CycleReport,
) -> Result<(), BackupError> {
    let t = Instant::now();
    for c in &m.chunks {
        store.get_verified(&c.key, &c.sha256).await?;
    }
    Timer(&mut report.timings_ms).add("verify_stored", t);
    Ok(())
}

/// Downloads (checking every chunk), unpacks and prepares a backup into `dir/data`.
pub async fn restore_into(
    store: &BackupStore,
    m: &Manifest,
    tools: &Tools,
    dir: &Path,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let data = ScratchServer::datadir(dir);
    let mut unpack = mariadb::start_unpack(tools, &data, &dir.join("mbstream.log"))
        .map_err(|e| format!("starting {}: {e}", tools.mbstream.display()))?;
    for (i, c) in m.chunks.iter().enumerate() {
        let bytes = store
            .get_verified(&c.key, &c.sha256)
            .await
            .map_err(|e| format!("chunk {i}: {e}"))?;
        mariadb::feed(&mut unpack, &bytes)
            .await
            .map_err(|e| format!("unpacking chunk {i}: {e}"))?;
    }
    drop(unpack.stdin.take());
    let st = unpack
        .wait()
        .await
        .map_err(|e| format!("waiting for mbstream: {e}"))?;
    if !st.success() {
        let log = std::fs::read_to_string(dir.join("mbstream.log")).unwrap_or_default();
        return Err(format!(
            "mbstream exited with {st}: {}",
            mariadb::tail(&log, 5)
        ));
    }
    mariadb::prepare(tools, &data, &dir.join("prepare.log")).await
}

/// Restore, start, check at the backup's GTID, catch up to a held replica's GTID, check again.
async fn validate(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &CycleOptions,
    m: &Manifest,
    report: &mut CycleReport,
) -> Result<Validated, String> {
    if m.engine != cfg.engine {
        return Err(format!(
            "backup {} is of engine {}, this cluster runs {}",
            m.backup_id, m.engine, cfg.engine
        ));
    }
    let dir = o.work_dir.join("scratch");
    let t = Instant::now();
    restore_into(store, m, &o.tools, &dir)
        .await
        .map_err(|e| format!("restore: {e}"))?;
    Timer(&mut report.timings_ms).add("restore", t);

    let t = Instant::now();
    let server = ScratchServer::start(
        &o.tools,
        &dir,
        o.scratch_port,
        o.scratch_server_id,
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| format!("start: {e}"))?;
    server.started_clean().map_err(|e| format!("start: {e}"))?;
    Timer(&mut report.timings_ms).add("start_restored", t);

    let scratch = LocalTarget {
        socket: Some(server.socket.clone()),
        ..o.local.clone()
    };
    let mut conn = connect(&scratch, o.connect_timeout)
        .await
        .map_err(|e| format!("connect to the restored server: {e}"))?;
    let t = Instant::now();
    let found = mariadb::table_checksums(&mut conn)
        .await
        .map_err(|e| format!("check: {e}"))?;
    if let Some(d) = mariadb::checksum_difference(&m.table_checksums, &found) {
        return Err(format!("check at the backup's GTID {}: {d}", m.gtid));
    }
    Timer(&mut report.timings_ms).add("check_at_backup_gtid", t);

    // Hold the replica only as long as it takes to read its checksums.
    let t = Instant::now();
    let (until, want) = with_replica_held(o, async |conn, gtid| {
        Ok((gtid, mariadb::table_checksums(conn).await?))
    })
    .await
    .map_err(|e| format!("hold the replica: {e}"))?;
    Timer(&mut report.timings_ms).add("hold_replica", t);

    let t = Instant::now();
    let src = cfg.source.as_ref().ok_or("no source to catch up from")?;
    let link = LinkSpec {
        host: &src.host,
        port: src.port,
        user: &cfg.replication.user,
        password: &o.replication_password,
        tls: cfg.role == Role::RegionReplica,
        ca_file: cfg.tls.ca_file.as_deref(),
    };
    let (setup, start) = mariadb::catch_up_sql(&m.gtid, &link, &until);
    for s in &setup {
        sql::exec(&mut conn, s, "point the restored server at the source")
            .await
            .map_err(|e| format!("catch-up: {e}"))?;
    }
    sql::exec(&mut conn, &start, "start the catch-up")
        .await
        .map_err(|e| format!("catch-up: {e}"))?;
    wait_until(&mut conn, &until, o.catch_up_timeout)
        .await
        .map_err(|e| format!("catch-up to {until}: {e}"))?;
    Timer(&mut report.timings_ms).add("catch_up", t);

    let t = Instant::now();
    let found = mariadb::table_checksums(&mut conn)
        .await
        .map_err(|e| format!("check: {e}"))?;
    if let Some(d) = mariadb::checksum_difference(&want, &found) {
        return Err(format!("check at the replica's GTID {until}: {d}"));
    }
    // The next backup is taken from this server: without the link it carries none.
    sql::exec(&mut conn, "STOP SLAVE", "stop the catch-up")
        .await
        .map_err(|e| format!("catch-up: {e}"))?;
    sql::exec(&mut conn, "RESET SLAVE ALL", "drop the catch-up link")
        .await
        .map_err(|e| format!("catch-up: {e}"))?;
    Timer(&mut report.timings_ms).add("check_at_replica_gtid", t);
    drop(conn);
    Ok(Validated {
        server,
        gtid: until,
        checksums: want,
    })
}

/// Polls the scratch server until replication stopped at `until`, or fails with its error.
async fn wait_until(
    conn: &mut mysql_async::Conn,
    until: &str,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let rows = sql::rows(conn, "SHOW SLAVE STATUS", "replica status")
            .await
            .map_err(|e| e.to_string())?;
        let row = rows.first().cloned().unwrap_or_default();
        let get = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
        let pos = scalar(conn, mariadb::APPLIED_GTIDS).await?;
        let sql_running = get("Slave_SQL_Running");
        if crate::engine::gtid::mariadb_gap(until, &pos) == Some(0) && sql_running != "Yes" {
            return Ok(());
        }
        let err = get("Last_SQL_Error");
        if !err.is_empty() {
            return Err(format!("replication stopped: {err}"));
        }
        let io_err = get("Last_IO_Error");
        if Instant::now() > deadline {
            return Err(format!(
                "not there within {}s (at {pos:?}; io: {io_err})",
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
