//! Status: what the node is doing right now, as JSON. Read-only: it never changes the node.

use crate::bootstrap::replica_link;
use crate::credential::Credentials;
use crate::engine::{self, same_value};
use crate::error::AgentError;
use crate::sql::{self, LocalTarget};
use serde::Serialize;
use std::time::Duration;
use strata_topology::{Engine, NodeConfig, Role};

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub cluster_id: String,
    pub role: Role,
    pub engine: Engine,
    pub version: String,
    pub server_id: u32,
    /// The server refuses writes from ordinary clients.
    pub read_only: bool,
    /// MySQL only: refuses writes from admins too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub super_read_only: Option<bool>,
    /// Transactions this server holds (`gtid_binlog_pos` / `gtid_executed`).
    pub gtid_executed: String,
    pub replication: Option<ReplicationStatus>,
    pub semi_sync: SemiSyncStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicationStatus {
    pub source_host: String,
    pub source_port: u16,
    pub io_thread: String,
    pub sql_thread: String,
    pub tls: bool,
    pub lag_seconds: Option<u64>,
    /// Transactions applied from the source (`gtid_slave_pos` / `gtid_executed`).
    pub gtid_applied: String,
    pub source_gtid_executed: Option<String>,
    /// Transactions the source has that this replica lacks.
    pub gtid_gap: Option<u64>,
    /// Why the source's position is unknown, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_error: Option<String>,
    pub last_io_error: String,
    pub last_sql_error: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SemiSyncStatus {
    /// The node config asks for semi-sync on this node.
    pub configured: bool,
    /// Source side switched on.
    pub source_enabled: bool,
    /// Source is currently waiting for acks (false after a fallback to async).
    pub source_active: bool,
    pub source_clients: u64,
    /// Commits acknowledged by a replica.
    pub acked_transactions: u64,
    /// Commits that went on without an ack.
    pub unacked_transactions: u64,
    /// Times the source fell back to async.
    pub fallbacks: u64,
    pub replica_enabled: bool,
    pub replica_active: bool,
}

pub async fn status(
    cfg: &NodeConfig,
    local: &LocalTarget,
    creds: Option<&Credentials>,
    timeout: Duration,
) -> Result<NodeStatus, AgentError> {
    let eng = engine::for_engine(cfg.engine);
    let mut conn =
        sql::connect_local(local, timeout)
            .await
            .map_err(|reason| AgentError::LocalConnect {
                engine: cfg.engine,
                target: local.describe(),
                reason,
            })?;
    let version = sql::scalar(&mut conn, "SELECT VERSION()", "version")
        .await?
        .unwrap_or_default();
    let server_id = sql::scalar(&mut conn, "SELECT @@GLOBAL.server_id", "server_id")
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut ro = Vec::new();
    for var in eng.read_only_vars() {
        let v = sql::scalar(&mut conn, &eng.read_global_sql(var), var)
            .await?
            .unwrap_or_default();
        ro.push(same_value(&v, "ON"));
    }
    let gtid_executed = sql::scalar(&mut conn, eng.executed_gtids_sql(), "GTID position")
        .await?
        .unwrap_or_default();

    let names = eng.semi_sync_status_names();
    let vars = sql::status_vars(&mut conn, eng.semi_sync_status_sql(), "semi-sync status").await?;
    let num = |k: &str| vars.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let on = |k: &str| vars.get(k).is_some_and(|v| same_value(v, "ON"));
    let (src_var, rep_var) = eng.semi_sync_enabled_vars();
    // On MySQL the variables exist only with the plugin loaded: absent means off.
    let source_enabled = sql::scalar(&mut conn, &eng.read_global_sql(src_var), src_var)
        .await
        .ok()
        .flatten()
        .is_some_and(|v| same_value(&v, "ON"));
    let replica_enabled = sql::scalar(&mut conn, &eng.read_global_sql(rep_var), rep_var)
        .await
        .ok()
        .flatten()
        .is_some_and(|v| same_value(&v, "ON"));
    let semi_sync = SemiSyncStatus {
        configured: cfg.semi_sync(),
        source_enabled,
        source_active: on(names.source_status),
        source_clients: num(names.source_clients),
        acked_transactions: num(names.source_yes_tx),
        unacked_transactions: num(names.source_no_tx),
        fallbacks: num(names.source_off_times),
        replica_enabled,
        replica_active: on(names.replica_status),
    };

    let replication = match replica_link(eng, &mut conn).await? {
        None => None,
        Some(link) => {
            let gtid_applied = sql::scalar(&mut conn, eng.applied_gtids_sql(), "applied GTIDs")
                .await?
                .unwrap_or_default();
            let (source_gtid_executed, source_error) =
                source_position(cfg, creds, &link.source_host, link.source_port, timeout).await;
            let gtid_gap = source_gtid_executed
                .as_deref()
                .and_then(|s| eng.gtid_gap(s, &gtid_applied));
            Some(ReplicationStatus {
                source_host: link.source_host.clone(),
                source_port: link.source_port,
                io_thread: link.io_running.clone(),
                sql_thread: link.sql_running.clone(),
                tls: link.ssl,
                lag_seconds: link.seconds_behind_source,
                gtid_applied,
                source_gtid_executed,
                gtid_gap,
                source_error,
                last_io_error: link.last_io_error,
                last_sql_error: link.last_sql_error,
            })
        }
    };
    let _ = conn.disconnect().await;
    Ok(NodeStatus {
        node: cfg.node_name.clone(),
        cluster_id: cfg.cluster_id.clone(),
        role: cfg.role,
        engine: cfg.engine,
        version,
        server_id,
        read_only: ro.first().copied().unwrap_or(false),
        super_read_only: ro.get(1).copied(),
        gtid_executed,
        replication,
        semi_sync,
    })
}

async fn source_position(
    cfg: &NodeConfig,
    creds: Option<&Credentials>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> (Option<String>, Option<String>) {
    let Some(creds) = creds else {
        return (None, Some("no credential source given".into()));
    };
    let pw = match creds.replication_password(cfg).await {
        Ok(p) => p,
        Err(e) => return (None, Some(e.to_string())),
    };
    let eng = engine::for_engine(cfg.engine);
    let tls = cfg.role == Role::RegionReplica;
    let mut conn = match sql::connect_remote(
        host,
        port,
        &cfg.replication.user,
        pw.expose(),
        tls,
        cfg.tls.ca_file.as_deref(),
        timeout,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return (None, Some(format!("source {host}:{port}: {e}"))),
    };
    let pos = sql::scalar(&mut conn, eng.executed_gtids_sql(), "source GTID position").await;
    let _ = conn.disconnect().await;
    match pos {
        Ok(p) => (Some(p.unwrap_or_default()), None),
        Err(e) => (None, Some(e.to_string())),
    }
}
