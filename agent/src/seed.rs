//! Seeding a new replica from a logical copy of its source. A replica that joins a cluster
//! which already holds data cannot replay the source's binlogs from the beginning once the
//! source purged them, so bootstrap first streams a consistent copy of the source's user
//! schemas (`mariadb-dump --single-transaction --gtid --master-data=2`, or mysqldump) into
//! the local server, outside the local binlog, and starts replication at the copy's GTID.
//!
//! Only a replica that never replicated and holds nothing is seeded: no replication link
//! (checked by the caller), no applied GTIDs, no user schema. A seed in progress is marked
//! by [`SEED_MARKER_SCHEMA`], created before the first row is loaded and dropped only after
//! the copy and its GTID position are both in place. A replica that still holds the marker
//! (the agent died mid-seed, or the copy failed) is wiped back to empty and seeded again;
//! nothing else is ever dropped.

use crate::credential::Secret;
use crate::engine::{
    DumpSpec, EngineSql, LoadSpec, SEED_MARKER_SCHEMA, Tool, quote, quote_ident, user_schemas_sql,
};
use crate::error::AgentError;
use crate::sql::{self, LocalTarget};
use mysql_async::Conn;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use strata_topology::{NodeConfig, Role};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What a seed copied.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    pub schemas: Vec<String>,
    /// The snapshot's GTID position, where replication starts.
    pub gtid: String,
    /// Bytes of dump text streamed.
    pub bytes: u64,
    pub elapsed: Duration,
    /// A half-loaded copy from an earlier attempt was removed first.
    pub cleaned_up: bool,
}

impl SeedOutcome {
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        self.bytes as f64 / 1_000_000.0 / secs
    }
}

/// Everything the seed needs from bootstrap.
pub struct SeedParams<'a> {
    pub cfg: &'a NodeConfig,
    pub eng: &'a dyn EngineSql,
    pub password: &'a Secret,
    pub local: &'a LocalTarget,
    pub connect_timeout: Duration,
}

/// Seeds the local replica when it is new and its source holds user schemas.
/// `Ok(None)`: nothing to do (the replica has data, or the source has none).
pub async fn seed_if_new(
    p: &SeedParams<'_>,
    conn: &mut Conn,
) -> Result<Option<SeedOutcome>, AgentError> {
    let Some(src) = &p.cfg.source else {
        return Ok(None);
    };
    let source = format!("{}:{}", src.host, src.port);
    let cleaned_up = marker_present(conn).await?;
    if cleaned_up {
        tracing::warn!("a seed did not finish: removing the half-loaded copy");
        begin_local_writes(p, conn).await?;
        let wiped = wipe(p, conn).await;
        end_local_writes(p, conn).await;
        wiped?;
    } else {
        let applied = sql::scalar(conn, p.eng.applied_gtids_sql(), "reading applied GTIDs")
            .await?
            .unwrap_or_default();
        let schemas = schemas(conn, "listing local schemas").await?;
        if !applied.trim().is_empty() || !schemas.is_empty() {
            // It holds data or replicated before: never seed over it.
            return Ok(None);
        }
    }

    let schemas = source_schemas(p).await?;
    if schemas.is_empty() {
        return Ok(cleaned_up.then(|| SeedOutcome {
            schemas,
            gtid: String::new(),
            bytes: 0,
            elapsed: Duration::ZERO,
            cleaned_up,
        }));
    }

    let started = Instant::now();
    begin_local_writes(p, conn).await?;
    let copied = copy(p, conn, &schemas, &source).await;
    end_local_writes(p, conn).await;
    let (gtid, bytes) = copied?;
    Ok(Some(SeedOutcome {
        schemas,
        gtid,
        bytes,
        elapsed: started.elapsed(),
        cleaned_up,
    }))
}

/// Marker, copy, position, marker gone; a failed copy is wiped before the error returns.
async fn copy(
    p: &SeedParams<'_>,
    conn: &mut Conn,
    schemas: &[String],
    source: &str,
) -> Result<(String, u64), AgentError> {
    sql::exec(
        conn,
        &format!("CREATE DATABASE {}", quote_ident(SEED_MARKER_SCHEMA)),
        "marking the seed as started",
    )
    .await?;
    let copied = match stream_copy(p, schemas).await {
        Ok(c) => c,
        Err(reason) => {
            // Leave the replica empty for the next round; the marker goes last.
            if let Err(e) = wipe(p, conn).await {
                tracing::warn!(error = %e, "removing a failed seed's copy failed; the next round retries");
            }
            return Err(AgentError::Seed {
                from: source.to_string(),
                reason,
            });
        }
    };
    if let Some(stmt) = p.eng.seed_position_sql(&copied.0) {
        sql::exec(conn, &stmt, "setting the replica's GTID position").await?;
    }
    // Completion is recorded only now that the rows and the position are both in place.
    sql::exec(
        conn,
        &format!("DROP DATABASE {}", quote_ident(SEED_MARKER_SCHEMA)),
        "marking the seed as complete",
    )
    .await?;
    Ok(copied)
}

/// The engine's statements for writes on this node only (no binlog; a writable replica).
async fn begin_local_writes(p: &SeedParams<'_>, conn: &mut Conn) -> Result<(), AgentError> {
    for s in p.eng.local_write_sql(p.cfg.role).0 {
        sql::exec(conn, &s, "preparing local writes").await?;
    }
    Ok(())
}

/// Always run after [`begin_local_writes`], also after a failure.
async fn end_local_writes(p: &SeedParams<'_>, conn: &mut Conn) {
    for s in p.eng.local_write_sql(p.cfg.role).1 {
        if let Err(e) = sql::exec(conn, &s, "ending local writes").await {
            tracing::warn!(error = %e, "could not restore the session after local writes");
        }
    }
}

async fn marker_present(conn: &mut Conn) -> Result<bool, AgentError> {
    Ok(sql::scalar(
        conn,
        &format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            quote(SEED_MARKER_SCHEMA)
        ),
        "looking for an unfinished seed",
    )
    .await?
    .is_some_and(|n| n != "0"))
}

async fn schemas(conn: &mut Conn, what: &str) -> Result<Vec<String>, AgentError> {
    let rows = sql::rows(conn, &user_schemas_sql(), what).await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.values().next().cloned().flatten())
        .collect())
}

/// Drops what a seed loaded and its position: only called when the marker proves the
/// replica was empty before the seed began.
async fn wipe(p: &SeedParams<'_>, conn: &mut Conn) -> Result<(), AgentError> {
    for s in schemas(conn, "listing a failed seed's schemas").await? {
        sql::exec(
            conn,
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(&s)),
            "dropping a failed seed's schema",
        )
        .await?;
    }
    for stmt in p.eng.reset_seed_position_sql() {
        sql::exec(conn, &stmt, "forgetting a failed seed's position").await?;
    }
    sql::exec(
        conn,
        &format!(
            "DROP DATABASE IF EXISTS {}",
            quote_ident(SEED_MARKER_SCHEMA)
        ),
        "removing the seed marker",
    )
    .await
}

async fn source_schemas(p: &SeedParams<'_>) -> Result<Vec<String>, AgentError> {
    let Some(src) = &p.cfg.source else {
        return Ok(Vec::new());
    };
    let mut conn = sql::connect_remote(
        &src.host,
        src.port,
        &p.cfg.replication.user,
        p.password.expose(),
        p.cfg.role == Role::RegionReplica,
        p.cfg.tls.ca_file.as_deref(),
        p.connect_timeout,
    )
    .await
    .map_err(|reason| AgentError::SourceUnreachable {
        host: src.host.clone(),
        port: src.port,
        reason,
    })?;
    let out = schemas(&mut conn, "listing the source's schemas").await;
    let _ = conn.disconnect().await;
    out
}

/// A 0600 client options file holding a password, removed on drop: passwords never go in a
/// process's argv (visible to every local user) nor in its environment.
struct OptionsFile(PathBuf);

impl OptionsFile {
    fn new(password: Option<&str>) -> Result<OptionsFile, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "strata-seed-{}-{}-{nanos}.cnf",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::from("[client]\n");
        if let Some(pw) = password {
            text.push_str(&format!("password={}\n", option_value(pw)));
        }
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(OptionsFile(path))
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for OptionsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An option-file value: double-quoted, with `\` and `"` escaped (checked against the
/// mariadb client with a password holding ' " \ # and a space).
pub fn option_value(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn spawn(tool: &Tool, stdin: Stdio, stdout: Stdio) -> Result<tokio::process::Child, String> {
    tokio::process::Command::new(tool.program)
        .args(&tool.args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tool.program))
}

/// Keeps the last few KB a process wrote to stderr, for the error message.
fn collect_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let err = child.stderr.take();
    tokio::spawn(async move {
        let Some(mut err) = err else {
            return String::new();
        };
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).trim().to_string();
        let start = text
            .char_indices()
            .rev()
            .nth(2000)
            .map(|(i, _)| i)
            .unwrap_or(0);
        text[start..].to_string()
    })
}

/// Streams the dump into the local client; returns the snapshot GTID and the bytes moved.
async fn stream_copy(p: &SeedParams<'_>, schemas: &[String]) -> Result<(String, u64), String> {
    let src = p.cfg.source.as_ref().ok_or("no source")?;
    let remote_pw = OptionsFile::new(Some(p.password.expose()))?;
    let local_pw = OptionsFile::new(p.local.password.as_deref())?;
    let remote_pw_path = remote_pw.path();
    let local_pw_path = local_pw.path();
    let dump = p.eng.dump_command(&DumpSpec {
        defaults_file: &remote_pw_path,
        host: &src.host,
        port: src.port,
        user: &p.cfg.replication.user,
        tls: p.cfg.role == Role::RegionReplica,
        ca_file: p.cfg.tls.ca_file.as_deref(),
        schemas,
    });
    let load = p.eng.load_command(&LoadSpec {
        defaults_file: &local_pw_path,
        socket: p.local.socket.as_deref(),
        host: &p.local.host,
        port: p.local.port,
        user: &p.local.user,
    });
    let mut loader = spawn(&load, Stdio::piped(), Stdio::null())?;
    let mut dumper = spawn(&dump, Stdio::null(), Stdio::piped())?;
    let load_err = collect_stderr(&mut loader);
    let dump_err = collect_stderr(&mut dumper);
    let mut into = loader.stdin.take().ok_or("loader has no stdin")?;
    let out = dumper.stdout.take().ok_or("dump has no stdout")?;

    let mut reader = BufReader::with_capacity(1 << 20, out);
    let mut line = Vec::with_capacity(1 << 20);
    let mut gtid = None;
    let mut bytes = 0u64;
    let mut write_error = None;
    loop {
        line.clear();
        let n = match reader.read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(e) => {
                write_error = Some(format!("reading the dump: {e}"));
                break;
            }
        };
        if n == 0 {
            break;
        }
        bytes += n as u64;
        // The GTID line is short and starts with "-- SET" (MariaDB) or "SET @@" (MySQL).
        if line.len() < 65_536
            && (line.starts_with(b"-- SET") || line.starts_with(b"SET @@"))
            && let Some(g) = p.eng.dump_gtid(&String::from_utf8_lossy(&line))
        {
            gtid = Some(g);
        }
        if let Err(e) = into.write_all(&line).await {
            write_error = Some(format!("loading into the local server: {e}"));
            break;
        }
    }
    let flushed = into.shutdown().await;
    drop(into);
    if write_error.is_some() {
        // The loader stopped reading: do not leave the dump blocked on a full pipe.
        let _ = dumper.start_kill();
    }
    let dump_status = dumper.wait().await.map_err(|e| e.to_string())?;
    let load_status = loader.wait().await.map_err(|e| e.to_string())?;
    let dump_err = dump_err.await.unwrap_or_default();
    let load_err = load_err.await.unwrap_or_default();
    if !load_status.success() {
        return Err(format!(
            "{} exited with {load_status}: {load_err}",
            load.program
        ));
    }
    if !dump_status.success() {
        return Err(format!(
            "{} exited with {dump_status}: {dump_err}",
            dump.program
        ));
    }
    if let Some(e) = write_error {
        return Err(e);
    }
    flushed.map_err(|e| format!("loading into the local server: {e}"))?;
    let gtid = gtid.ok_or_else(|| {
        format!("the dump carried no GTID position (is the source's binary log on?) {dump_err}")
    })?;
    Ok((gtid, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_escape_quotes_and_backslashes() {
        assert_eq!(option_value("a'b\"c\\d#e f"), "\"a'b\\\"c\\\\d#e f\"");
    }

    #[test]
    fn options_files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let f = OptionsFile::new(Some("pw")).unwrap();
        let meta = std::fs::metadata(&f.0).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&f.0).unwrap(),
            "[client]\npassword=\"pw\"\n"
        );
        let path = f.0.clone();
        drop(f);
        assert!(!path.exists());
    }
}
