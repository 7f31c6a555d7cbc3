//! MariaDB's side of a backup: streaming `mariadb-backup --stream=mbstream`, unpacking and
//! preparing a stream into a datadir, the scratch server a restore is started on, and the SQL
//! the cycle needs (hold a replica, table checksums, replicate up to a GTID). MySQL has no
//! backup path yet; the cycle refuses it before anything here runs.

use crate::engine::{SYSTEM_SCHEMAS, quote, quote_ident};
use crate::sql;
use mysql_async::Conn;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Programs and where a backup's scratch server runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub mariadbd: PathBuf,
    pub mariadb_backup: PathBuf,
    pub mbstream: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            mariadbd: "/usr/sbin/mariadbd".into(),
            mariadb_backup: "mariadb-backup".into(),
            mbstream: "mbstream".into(),
        }
    }
}

/// How `mariadb-backup --backup` reaches the server to copy.
#[derive(Debug, Clone)]
pub struct BackupSource {
    /// `--defaults-file` (the server's own config), or None for `--no-defaults`.
    pub defaults_file: Option<String>,
    pub socket: String,
    pub user: String,
    pub password: Option<String>,
    pub datadir: String,
}

/// Starts `mariadb-backup --backup --stream=mbstream`; the stream is the child's stdout.
pub fn start_backup_stream(
    tools: &Tools,
    src: &BackupSource,
    tmp_dir: &Path,
    log: &Path,
) -> std::io::Result<Child> {
    std::fs::create_dir_all(tmp_dir)?;
    let log = std::fs::File::create(log)?;
    let mut cmd = Command::new(&tools.mariadb_backup);
    // The defaults option must come first.
    match &src.defaults_file {
        Some(f) => cmd.arg(format!("--defaults-file={f}")),
        None => cmd.arg("--no-defaults"),
    };
    cmd.arg("--backup")
        .arg("--stream=mbstream")
        .arg(format!("--target-dir={}", tmp_dir.display()))
        .arg(format!("--datadir={}", src.datadir))
        .arg(format!("--socket={}", src.socket))
        .arg(format!("--user={}", src.user));
    if let Some(p) = &src.password {
        // In the environment, not the command line (which every process may read).
        cmd.env("MYSQL_PWD", p);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
}

/// Reads up to `size` bytes (less only at the end of the stream).
pub async fn read_chunk(
    r: &mut (impl AsyncReadExt + Unpin),
    size: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// `mbstream -x` into `datadir`, fed by the caller through the returned child's stdin.
pub fn start_unpack(tools: &Tools, datadir: &Path, log: &Path) -> std::io::Result<Child> {
    std::fs::create_dir_all(datadir)?;
    let log = std::fs::File::create(log)?;
    Command::new(&tools.mbstream)
        .arg("-x")
        .arg("-C")
        .arg(datadir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
}

pub async fn feed(child: &mut Child, bytes: &[u8]) -> std::io::Result<()> {
    match child.stdin.as_mut() {
        Some(stdin) => stdin.write_all(bytes).await,
        None => Err(std::io::Error::other("mbstream has no stdin")),
    }
}

/// Applies the redo log the stream carries, leaving a datadir a server can start on.
pub async fn prepare(tools: &Tools, datadir: &Path, log: &Path) -> Result<(), String> {
    let out = Command::new(&tools.mariadb_backup)
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", datadir.display()))
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", tools.mariadb_backup.display()))?;
    let _ = std::fs::write(log, [&out.stdout[..], &out.stderr[..]].concat());
    if !out.status.success() {
        return Err(format!(
            "mariadb-backup --prepare exited with {}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 5)
        ));
    }
    Ok(())
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A server started on a restored datadir, for validation only: its own port, socket and
/// server id, no binlog, never started replicating on its own. Stopped by its PID on drop.
pub struct ScratchServer {
    pub dir: PathBuf,
    pub socket: String,
    child: Option<Child>,
}

impl ScratchServer {
    pub fn datadir(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    pub async fn start(
        tools: &Tools,
        dir: &Path,
        port: u16,
        server_id: u32,
        within: Duration,
    ) -> Result<ScratchServer, String> {
        let socket = dir.join("scratch.sock").display().to_string();
        let err_log = dir.join("error.log");
        let child = Command::new(&tools.mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", Self::datadir(dir).display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={socket}"))
            .arg(format!("--pid-file={}", dir.join("scratch.pid").display()))
            .arg(format!("--log-error={}", err_log.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--server-id={server_id}"))
            .arg("--skip-slave-start")
            .arg("--gtid-strict-mode=1")
            .arg("--skip-name-resolve")
            // The agent runs as root on a node; mariadbd refuses root without this.
            .arg("--user=root")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--performance-schema=OFF")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", tools.mariadbd.display()))?;
        let mut s = ScratchServer {
            dir: dir.to_path_buf(),
            socket,
            child: Some(child),
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                s.child = None;
                return Err(format!(
                    "the engine did not start on the restored data (exited with {status}): {}",
                    s.error_lines()
                ));
            }
            if tokio::net::UnixStream::connect(&s.socket).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the engine did not start on the restored data within {}s: {}",
                    within.as_secs(),
                    s.error_lines()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(s)
    }

    /// Stops a scratch server a cut-short cycle left running on `dir` (the agent killed before
    /// it could stop it), found by its PID file and only if that process runs on `dir`.
    pub async fn stop_leftover(dir: &Path) {
        let Ok(pid) = std::fs::read_to_string(dir.join("scratch.pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            return;
        };
        let ours = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir.display().to_string()))
        };
        if !ours(pid) {
            return;
        }
        tracing::warn!(
            pid,
            "stopping the scratch server a cut-short cycle left running"
        );
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ours(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if ours(pid) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }

    /// `[ERROR]` lines of the server's log: a clean start has none.
    pub fn error_lines(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("[ERROR]")).collect();
        if errors.is_empty() {
            tail(&log, 3)
        } else {
            errors[errors.len().saturating_sub(5)..].join(" | ")
        }
    }

    pub fn started_clean(&self) -> Result<(), String> {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        if log.lines().any(|l| l.contains("[ERROR]")) {
            return Err(format!(
                "the engine logged errors starting on the restored data: {}",
                self.error_lines()
            ));
        }
        Ok(())
    }

    /// Clean shutdown (SIGTERM through `kill`), then SIGKILL if it does not go.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(60), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// Stops the SQL thread: the data stays at one GTID while the IO thread keeps receiving.
pub const HOLD_SQL: &str = "STOP SLAVE SQL_THREAD";
pub const RELEASE_SQL: &str = "START SLAVE SQL_THREAD";
pub const APPLIED_GTIDS: &str = "SELECT @@GLOBAL.gtid_slave_pos";
pub const DATADIR: &str = "SELECT @@GLOBAL.datadir";

/// `CHECKSUM TABLE` of every user base table, keyed `schema.table`.
pub async fn table_checksums(conn: &mut Conn) -> Result<BTreeMap<String, u64>, String> {
    let skip: Vec<String> = SYSTEM_SCHEMAS.iter().map(|s| quote(s)).collect();
    let list = sql::rows(
        conn,
        &format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({}) \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
            skip.join(", ")
        ),
        "list tables",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for r in list {
        let (Some(Some(schema)), Some(Some(table))) = (r.get("TABLE_SCHEMA"), r.get("TABLE_NAME"))
        else {
            continue;
        };
        let rows = sql::rows(
            conn,
            &format!(
                "CHECKSUM TABLE {}.{} EXTENDED",
                quote_ident(schema),
                quote_ident(table)
            ),
            "checksum table",
        )
        .await
        .map_err(|e| e.to_string())?;
        let sum = rows
            .first()
            .and_then(|r| r.get("Checksum").cloned().flatten())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("CHECKSUM TABLE {schema}.{table} returned no checksum"))?;
        out.insert(format!("{schema}.{table}"), sum);
    }
    Ok(out)
}

/// The first difference between two checksum sets, None when equal.
pub fn checksum_difference(
    want: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> Option<String> {
    for (t, w) in want {
        match found.get(t) {
            None => return Some(format!("table {t} is missing")),
            Some(f) if f != w => {
                return Some(format!("checksum of {t} is {f}, expected {w}"));
            }
            Some(_) => {}
        }
    }
    found
        .keys()
        .find(|t| !want.contains_key(*t))
        .map(|t| format!("table {t} is not expected"))
}

/// Statements that point the scratch server at the source from `gtid` and replicate until
/// `until` (both checked GTID lists; the password is quoted).
pub fn catch_up_sql(
    gtid: &str,
    link: &crate::engine::LinkSpec<'_>,
    until: &str,
) -> (Vec<String>, String) {
    use crate::engine::EngineSql;
    let e = crate::engine::mariadb::MariaDb;
    (
        vec![
            e.reset_replica_all_sql().to_string(),
            format!("SET GLOBAL gtid_slave_pos = {}", quote(gtid)),
            e.change_source_sql(link),
        ],
        format!("START SLAVE UNTIL master_gtid_pos = {}", quote(until)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_differences_are_named() {
        let a: BTreeMap<String, u64> = [("s.a".to_string(), 1), ("s.b".to_string(), 2)].into();
        assert_eq!(checksum_difference(&a, &a), None);
        let mut b = a.clone();
        b.insert("s.b".into(), 3);
        assert_eq!(
            checksum_difference(&a, &b).unwrap(),
            "checksum of s.b is 3, expected 2"
        );
        b.remove("s.b");
        assert_eq!(checksum_difference(&a, &b).unwrap(), "table s.b is missing");
        let mut c = a.clone();
        c.insert("s.c".into(), 0);
        assert_eq!(
            checksum_difference(&a, &c).unwrap(),
            "table s.c is not expected"
        );
    }

    #[test]
    fn catch_up_quotes_what_it_embeds() {
        let link = crate::engine::LinkSpec {
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            password: "p'w",
            tls: false,
            ca_file: None,
        };
        let (setup, start) = catch_up_sql("0-1-5", &link, "0-1-9");
        assert_eq!(setup[1], "SET GLOBAL gtid_slave_pos = '0-1-5'");
        assert!(setup[2].contains("MASTER_PASSWORD = 'p''w'"));
        assert_eq!(start, "START SLAVE UNTIL master_gtid_pos = '0-1-9'");
    }
}
