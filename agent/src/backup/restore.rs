//! Restore into a new cluster (`strata_cluster.restore_from`): before the new cluster's source
//! first takes writes, its agent loads a validated backup of another cluster.
//!
//! The backup is restored as in a cycle (every chunk's SHA-256 checked, unpacked, prepared)
//! into a scratch datadir, a scratch server starts on it (it must start clean), and its user
//! schemas are copied into the local server with the engine's dump tool and client. The copy
//! goes through the local binlog on purpose: the new cluster's replicas seed from the source
//! as they would for any data, and nothing of the old cluster's accounts, server ids or
//! replication state comes along. Then every table's `CHECKSUM TABLE` on the local server must
//! equal the manifest's (the source cluster's tables at the backup's GTID), and only then is
//! the restore recorded as done (a file under the work dir); until then the agent neither
//! creates the first lease nor reports ready, so the source takes no writes and the replicas
//! wait. A restore cut short is redone from the start: the schemas the backup holds are
//! dropped and loaded again.

use super::mariadb::{self, ScratchServer, Tools};
use super::restore_into;
use super::store::{BackupStore, StoreError};
use crate::engine::{quote_ident, user_schemas_sql};
use crate::sql::{self, LocalTarget};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use strata_topology::backup::{RESTORE_ATTRIBUTE, Validation};
use strata_topology::{Engine, NodeConfig, Role};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Retrying cannot help (missing, failed or foreign backup, data that does not match):
    /// the node is tagged failed with this reason.
    #[error("{RESTORE_ATTRIBUTE}: {0}")]
    Permanent(String),
    /// Retried (the store or the local server not reachable yet, a tool that failed).
    #[error("{RESTORE_ATTRIBUTE}: {0}")]
    Transient(String),
}

impl RestoreError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, RestoreError::Permanent(_))
    }
}

/// What a restore needs beyond the node config.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub local: LocalTarget,
    pub connect_timeout: Duration,
    /// The scratch datadir goes under here, and the record of a finished restore.
    pub work_dir: PathBuf,
    pub tools: Tools,
    /// The engine's dump tool and command-line client.
    pub dump: PathBuf,
    pub client: PathBuf,
    pub scratch_port: u16,
    pub scratch_server_id: u32,
}

/// What a restore did (also the content of the record of a finished restore).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub cluster: String,
    pub gtid: String,
    pub schemas: Vec<String>,
    pub table_checksums: BTreeMap<String, u64>,
    pub bytes: u64,
    /// True when an earlier run had finished it (nothing was done now).
    #[serde(default)]
    pub already_done: bool,
    pub timings_ms: BTreeMap<String, u64>,
}

/// Where a finished restore is recorded.
pub fn done_path(work_dir: &Path) -> PathBuf {
    work_dir.join("restored.json")
}

/// The finished restore of `backup_id`, if one was recorded.
pub fn finished(work_dir: &Path, backup_id: &str) -> Option<RestoreReport> {
    let text = std::fs::read_to_string(done_path(work_dir)).ok()?;
    let r: RestoreReport = serde_json::from_str(&text).ok()?;
    (r.backup_id == backup_id).then_some(r)
}

fn perm(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Permanent(e.to_string())
}
fn trans(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Transient(e.to_string())
}

/// Restores `cfg.restore` into the local server, once. `store` reads the backup's cluster's
/// bucket ([`strata_topology::backup::RestoreFrom::store_config`]).
pub async fn restore_source(
    cfg: &NodeConfig,
    store: &BackupStore,
    o: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let Some(r) = &cfg.restore else {
        return Err(perm("the node config names no backup to restore"));
    };
    if cfg.role != Role::Source {
        return Err(perm("only a cluster's source restores a backup"));
    }
    if let Some(mut done) = finished(&o.work_dir, &r.backup_id) {
        done.already_done = true;
        return Ok(done);
    }
    if cfg.engine != Engine::Mariadb {
        return Err(perm(format!(
            "restoring is built for MariaDB (mariadb-backup); this cluster runs {}",
            cfg.engine
        )));
    }
    let mut timings = BTreeMap::new();
    let where_ = format!("s3://{}/{}", r.bucket, r.key_prefix);
    let tags = match store.tags(&r.backup_id).await {
        Ok(t) => t,
        Err(StoreError::NotFound(_)) => {
            return Err(perm(format!(
                "backup {} of cluster {} is not in {where_} (was it deleted by retention, or the cluster destroyed?)",
                r.backup_id, r.cluster
            )));
        }
        Err(e) => return Err(trans(e)),
    };
    match &tags.validation {
        Validation::Validated => {}
        Validation::Pending => {
            return Err(perm(format!(
                "backup {} is not validated (a cycle did not finish it)",
                r.backup_id
            )));
        }
        Validation::Failed { reason } => {
            return Err(perm(format!(
                "backup {} failed validation: {reason}",
                r.backup_id
            )));
        }
    }
    if tags.cluster != r.cluster {
        return Err(perm(format!(
            "backup {} is of cluster {}, not {}",
            r.backup_id, tags.cluster, r.cluster
        )));
    }
    let m = store.manifest(&r.backup_id).await.map_err(|e| match e {
        StoreError::NotFound(_) => perm(e),
        other => trans(other),
    })?;
    if m.engine != cfg.engine {
        return Err(perm(format!(
            "backup {} is of engine {}, this cluster runs {}",
            r.backup_id, m.engine, cfg.engine
        )));
    }

    let dir = o.work_dir.join("restore");
    ScratchServer::stop_leftover(&dir).await;
    let t = Instant::now();
    restore_into(store, &m, &o.tools, &dir).await.map_err(|e| {
        // A chunk whose SHA-256 differs is a damaged backup, not a passing fault.
        if e.contains("sha256") {
            perm(format!("backup {}: {e}", r.backup_id))
        } else {
            trans(format!("backup {}: {e}", r.backup_id))
        }
    })?;
    timings.insert("restore".to_string(), t.elapsed().as_millis() as u64);

    let t = Instant::now();
    let server = ScratchServer::start(
        &o.tools,
        &dir,
        o.scratch_port,
        o.scratch_server_id,
        Duration::from_secs(120),
    )
    .await
    .map_err(trans)?;
    server.started_clean().map_err(perm)?;
    timings.insert("start_restored".to_string(), t.elapsed().as_millis() as u64);

    let result = copy_and_check(&server, &m.table_checksums, o, &mut timings).await;
    server.stop().await;
    let schemas = result?;
    let _ = std::fs::remove_dir_all(&dir);
    let report = RestoreReport {
        backup_id: m.backup_id.clone(),
        cluster: m.cluster.clone(),
        gtid: m.gtid.clone(),
        schemas,
        table_checksums: m.table_checksums.clone(),
        bytes: m.total_bytes(),
        already_done: false,
        timings_ms: timings,
    };
    std::fs::create_dir_all(&o.work_dir).map_err(trans)?;
    let tmp = o.work_dir.join("restored.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&report).unwrap_or_default())
        .and_then(|()| std::fs::rename(&tmp, done_path(&o.work_dir)))
        .map_err(|e| trans(format!("recording the finished restore: {e}")))?;
    Ok(report)
}

/// Copies the scratch server's user schemas into the local server (dropping what an earlier,
/// cut-short attempt loaded) and checks every table against the manifest.
async fn copy_and_check(
    server: &ScratchServer,
    want: &BTreeMap<String, u64>,
    o: &RestoreOptions,
    timings: &mut BTreeMap<String, u64>,
) -> Result<Vec<String>, RestoreError> {
    let scratch = LocalTarget {
        socket: Some(server.socket.clone()),
        ..o.local.clone()
    };
    let mut sconn = sql::connect_local(&scratch, o.connect_timeout)
        .await
        .map_err(|e| trans(format!("connect to the restored server: {e}")))?;
    let schemas = schema_list(&mut sconn).await?;
    drop(sconn);

    let mut local = sql::connect_local(&o.local, o.connect_timeout)
        .await
        .map_err(|e| trans(format!("connect to the local server: {e}")))?;
    let present = schema_list(&mut local).await?;
    for s in schemas.iter().filter(|s| present.contains(s)) {
        tracing::warn!(schema = %s, "dropping what a cut-short restore loaded");
        sql::exec(
            &mut local,
            &format!("DROP DATABASE {}", quote_ident(s)),
            "drop a half-restored schema",
        )
        .await
        .map_err(trans)?;
    }
    let t = Instant::now();
    if !schemas.is_empty() {
        dump_into_local(&server.socket, &schemas, o).await?;
    }
    timings.insert("copy".to_string(), t.elapsed().as_millis() as u64);

    let t = Instant::now();
    let found = mariadb::table_checksums(&mut local)
        .await
        .map_err(|e| trans(format!("check: {e}")))?;
    if let Some(d) = mariadb::checksum_difference(want, &found) {
        return Err(perm(format!(
            "the restored tables differ from the backup's at its GTID: {d}"
        )));
    }
    timings.insert("check".to_string(), t.elapsed().as_millis() as u64);
    Ok(schemas)
}

async fn schema_list(conn: &mut mysql_async::Conn) -> Result<Vec<String>, RestoreError> {
    let rows = sql::rows(conn, &user_schemas_sql(), "list schemas")
        .await
        .map_err(trans)?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("SCHEMA_NAME").cloned().flatten())
        .collect())
}

/// `mariadb-dump` of the schemas from the scratch server piped into `mariadb` on the local one.
async fn dump_into_local(
    scratch_socket: &str,
    schemas: &[String],
    o: &RestoreOptions,
) -> Result<(), RestoreError> {
    let log = o.work_dir.join("restore-copy.log");
    let dump_err = std::fs::File::create(&log).map_err(trans)?;
    let load_err = dump_err.try_clone().map_err(trans)?;
    let mut dump = std::process::Command::new(&o.dump);
    dump.arg("--no-defaults")
        .arg(format!("--socket={scratch_socket}"))
        .arg(format!("--user={}", o.local.user))
        .args([
            "--single-transaction",
            "--routines",
            "--events",
            "--triggers",
            "--hex-blob",
            "--databases",
        ])
        .args(schemas)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(dump_err));
    let mut load = std::process::Command::new(&o.client);
    load.arg("--no-defaults");
    match &o.local.socket {
        Some(s) => {
            load.arg(format!("--socket={s}"));
        }
        None => {
            load.arg(format!("--host={}", o.local.host))
                .arg(format!("--port={}", o.local.port))
                .arg("--protocol=TCP");
        }
    }
    load.arg(format!("--user={}", o.local.user))
        .stdout(Stdio::null())
        .stderr(Stdio::from(load_err));
    if let Some(p) = &o.local.password {
        // In the environment, not on the command line (which every process may read). The
        // scratch server is the old cluster's data: the agent's account there is the same
        // local account (root by socket on a node).
        dump.env("MYSQL_PWD", p);
        load.env("MYSQL_PWD", p);
    }
    let (dump_prog, load_prog) = (o.dump.display().to_string(), o.client.display().to_string());
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut d = dump
            .spawn()
            .map_err(|e| format!("starting {dump_prog}: {e}"))?;
        let out = d.stdout.take().ok_or("the dump has no stdout")?;
        let mut l = load
            .stdin(Stdio::from(out))
            .spawn()
            .map_err(|e| format!("starting {load_prog}: {e}"))?;
        let ls = l.wait().map_err(|e| e.to_string())?;
        let ds = d.wait().map_err(|e| e.to_string())?;
        if !ds.success() {
            return Err(format!("{dump_prog} exited with {ds}"));
        }
        if !ls.success() {
            return Err(format!("{load_prog} exited with {ls}"));
        }
        Ok(())
    })
    .await
    .map_err(trans)?;
    outcome.map_err(|e| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        trans(format!(
            "copying the restored data: {e}: {}",
            mariadb::tail(&log, 5)
        ))
    })
}
