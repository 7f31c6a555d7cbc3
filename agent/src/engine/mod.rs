//! The engine seam: every statement the agent sends to a server comes from an [`EngineSql`]
//! implementation, one module per engine. The rest of the agent never writes SQL text, so the
//! two engines' differences (variable and plugin names, accounts, seeding) stay in `mariadb.rs`
//! and `mysql.rs`; their replication statements (CHANGE MASTER vs CHANGE REPLICATION SOURCE,
//! `gtid_slave_pos` vs auto-position) come from one builder, `replication.rs`, fed with each
//! engine's [`replication::Dialect`].

pub mod gtid;
pub mod mariadb;
pub mod mysql;
pub mod replication;

use std::collections::BTreeSet;
use strata_topology::{Engine, NodeConfig, Role};

/// Schemas that belong to the server, never copied by a seed nor counted as user data.
pub const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// Created on a replica (outside the binlog) before a seed loads anything and dropped once the
/// copy and its GTID position are in place: a replica holding it was seeded halfway.
pub const SEED_MARKER_SCHEMA: &str = "strata_seed_incomplete";

/// The user schemas of a server (same SQL on both engines), in name order.
pub fn user_schemas_sql() -> String {
    let skip: Vec<String> = SYSTEM_SCHEMAS
        .iter()
        .chain(std::iter::once(&SEED_MARKER_SCHEMA))
        .map(|s| quote(s))
        .collect();
    format!(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({}) ORDER BY SCHEMA_NAME",
        skip.join(", ")
    )
}

/// Quotes an identifier with backticks.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A client program and its arguments. Never holds a password: that goes in the 0600
/// options file named by `--defaults-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub args: Vec<String>,
}

/// The logical copy a seed streams from the source.
#[derive(Debug, Clone)]
pub struct DumpSpec<'a> {
    /// Options file holding `[client] password=...`.
    pub defaults_file: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub tls: bool,
    pub ca_file: Option<&'a str>,
    pub schemas: &'a [String],
}

/// Where the seed loads the copy: the local server, with the agent's admin connection.
#[derive(Debug, Clone)]
pub struct LoadSpec<'a> {
    pub defaults_file: &'a str,
    pub socket: Option<&'a str>,
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
}

/// The engine's command-line client loading a dump into the local server. Both engines' clients
/// take the same flags; only the program differs.
pub(crate) fn client_load_command(program: &'static str, spec: &LoadSpec<'_>) -> Tool {
    let mut args = vec![format!("--defaults-file={}", spec.defaults_file)];
    match spec.socket {
        Some(sock) => args.push(format!("--socket={sock}")),
        None => {
            args.push(format!("--host={}", spec.host));
            args.push(format!("--port={}", spec.port));
            args.push("--protocol=TCP".into());
        }
    }
    args.push(format!("--user={}", spec.user));
    args.push("--default-character-set=utf8mb4".into());
    // The copy is this replica's own: in its binlog it would be a second history of the
    // source's transactions under this server's id.
    args.push("--init-command=SET SESSION sql_log_bin = 0".into());
    args.push("--batch".into());
    Tool { program, args }
}

/// The privileges on `*.*` in SHOW GRANTS rows (`GRANT a, b ON *.* TO ...`), upper-case.
pub fn global_privileges(grants: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in grants {
        let Some(rest) = g.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, _)) = rest.split_once(" ON *.* TO ") else {
            continue;
        };
        for p in privs.split(',') {
            let p = p.trim().to_ascii_uppercase();
            if !p.is_empty() {
                out.insert(p);
            }
        }
    }
    out
}

/// Whether the global grant row carries WITH GRANT OPTION.
pub fn has_global_grant_option(grants: &[String]) -> bool {
    grants
        .iter()
        .any(|g| g.contains(" ON *.* TO ") && g.ends_with("WITH GRANT OPTION"))
}

/// A replica's view of its replication link, normalized across engines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaLink {
    pub source_host: String,
    pub source_port: u16,
    pub source_user: String,
    pub io_running: String,
    pub sql_running: String,
    /// Whether the link positions by GTID (MariaDB `Using_Gtid=Slave_Pos`, MySQL auto-position).
    pub gtid_positioning: bool,
    pub ssl: bool,
    pub seconds_behind_source: Option<u64>,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
}

impl ReplicaLink {
    pub fn io_running(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("yes")
    }
    pub fn sql_running(&self) -> bool {
        self.sql_running.eq_ignore_ascii_case("yes")
    }
}

/// Names of the semi-sync status counters, which the engines spell differently.
#[derive(Debug, Clone, Copy)]
pub struct SemiSyncStatusNames {
    /// ON while the source is waiting for acks, OFF after it fell back to async.
    pub source_status: &'static str,
    pub source_clients: &'static str,
    pub source_yes_tx: &'static str,
    pub source_no_tx: &'static str,
    /// How many times the source turned semi-sync off (fell back to async).
    pub source_off_times: &'static str,
    pub replica_status: &'static str,
}

/// Parameters of the replication link a replica is pointed at.
#[derive(Debug, Clone)]
pub struct LinkSpec<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub tls: bool,
    /// CA to verify the source's certificate with, when configured.
    pub ca_file: Option<&'a str>,
}

pub trait EngineSql: Send + Sync {
    fn engine(&self) -> Engine;

    /// Whether `SELECT VERSION()` output belongs to this engine.
    fn recognizes_version(&self, version: &str) -> bool;

    /// The config file the agent owns: settings a running server cannot change.
    fn render_server_config(&self, cfg: &NodeConfig) -> String;

    /// Static settings as `(variable, expected value)`, read back with `SELECT @@GLOBAL.x` to
    /// tell whether the running server was started with the rendered file.
    fn static_settings(&self, cfg: &NodeConfig) -> Vec<(&'static str, String)>;

    /// Plugins the node needs, as `(plugin name, library)`.
    fn required_plugins(&self, cfg: &NodeConfig) -> Vec<(&'static str, &'static str)>;
    fn plugin_loaded_sql(&self, plugin: &str) -> String;
    fn install_plugin_sql(&self, plugin: &str, library: &str) -> String;

    /// Settings applied at run time, `(variable, value)`; order matters (read-only flags).
    fn dynamic_settings(&self, cfg: &NodeConfig) -> Vec<(&'static str, String)>;
    fn read_global_sql(&self, var: &str) -> String;
    fn set_global_sql(&self, var: &str, value: &str) -> String;

    fn user_exists_sql(&self, user: &str) -> String;
    /// A query returning one row with 1 when the stored credential matches `password`;
    /// `None` when the engine cannot tell (salted hashes), so the agent re-sets it.
    fn credential_matches_sql(&self, user: &str, password: &str) -> Option<String>;
    fn create_user_sql(&self, user: &str, password: &str) -> String;
    fn create_replication_user_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![
            self.create_user_sql(user, password),
            self.grant_replication_sql(user),
        ]
    }
    fn set_password_sql(&self, user: &str, password: &str) -> Vec<String>;
    fn show_grants_sql(&self, user: &str) -> String;
    /// Global privileges the replication user needs: the binlog stream, and the reads a
    /// seed's logical copy makes on the source.
    fn replication_privileges(&self) -> &'static [&'static str];
    fn grant_replication_sql(&self, user: &str) -> String;
    /// Statements that give the admin account exactly its privileges.
    fn grant_admin_sql(&self, user: &str) -> Vec<String>;
    /// Whether SHOW GRANTS rows show the admin account with exactly its privileges.
    fn admin_grants_match(&self, grants: &[String]) -> bool;
    /// Statements around writes the agent makes on this node only (the admin account, a
    /// seed): (before, after). They keep the writes out of the binlog and, on engines whose
    /// replicas refuse even the agent's writes, lift that for the duration.
    fn local_write_sql(&self, role: Role) -> (Vec<String>, Vec<String>);

    /// The logical copy of `spec.schemas` from the source, with its GTID position.
    fn dump_command(&self, spec: &DumpSpec<'_>) -> Tool;
    /// The client that loads a dump into the local server without binlogging it.
    fn load_command(&self, spec: &LoadSpec<'_>) -> Tool;
    /// The snapshot's GTID position, when `line` of the dump carries it.
    fn dump_gtid(&self, line: &str) -> Option<String>;
    /// Makes the replica start from the snapshot's position; None when loading the dump
    /// already did (MySQL's GTID_PURGED).
    fn seed_position_sql(&self, gtid: &str) -> Option<String>;
    /// Forgets a position a failed seed left behind.
    fn reset_seed_position_sql(&self) -> Vec<String>;

    /// The words this engine spells its replication statements and status columns with.
    fn dialect(&self) -> &'static replication::Dialect;

    fn replica_status_sql(&self) -> &'static str {
        self.dialect().status
    }
    /// Normalizes one row of the replica status (column name → value).
    fn parse_replica_status(
        &self,
        row: &std::collections::BTreeMap<String, Option<String>>,
    ) -> ReplicaLink {
        self.dialect().parse_replica_status(row)
    }
    fn replica_hosts_sql(&self) -> &'static str {
        self.dialect().hosts
    }
    /// Column of `replica_hosts_sql` that holds the server id.
    fn replica_hosts_server_id_column(&self) -> &'static str {
        self.dialect().hosts_server_id
    }

    /// Points a stopped replica at its source (the agent stops and starts around it).
    fn change_source_sql(&self, link: &LinkSpec<'_>) -> String {
        self.dialect().change_source_sql(link)
    }
    fn start_replica_sql(&self) -> &'static str {
        self.dialect().start
    }
    fn stop_replica_sql(&self) -> &'static str {
        self.dialect().stop
    }
    /// Semi-sync replica settings take effect when the IO thread reconnects.
    fn restart_io_thread_sql(&self) -> Vec<String> {
        self.dialect().restart_io_thread_sql()
    }

    /// The transactions this server has (source side of a GTID gap).
    fn executed_gtids_sql(&self) -> &'static str;
    /// The transactions a replica has applied from its source.
    fn applied_gtids_sql(&self) -> &'static str;
    /// How many transactions the replica lacks, from the two positions above.
    fn gtid_gap(&self, source: &str, replica: &str) -> Option<u64>;

    fn semi_sync_status_names(&self) -> SemiSyncStatusNames {
        self.dialect().semi_sync
    }
    fn semi_sync_status_sql(&self) -> &'static str {
        "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"
    }
    /// The (source, replica) semi-sync on/off variables.
    fn semi_sync_enabled_vars(&self) -> (&'static str, &'static str) {
        self.dialect().semi_sync_vars
    }
    /// Variables whose ON value means "refuses writes".
    fn read_only_vars(&self) -> &'static [&'static str];

    // --- failover ---

    /// Stops fetching from the source (and so acknowledging its semi-sync commits) while
    /// the SQL thread applies what was already received.
    fn stop_io_thread_sql(&self) -> &'static str {
        self.dialect().stop_io
    }
    /// Applies the relay log again after the SQL thread was stopped (by hand, or by a
    /// lag-holding tool) without an error.
    fn start_sql_thread_sql(&self) -> &'static str {
        self.dialect().start_sql
    }
    /// Forgets the replication link entirely (a promoted replica).
    fn reset_replica_all_sql(&self) -> &'static str {
        self.dialect().reset_all
    }
    /// Whether a replica status row shows every received event applied, by binlog
    /// coordinates. Not enough alone: see [`EngineSql::received_gtids`].
    fn relay_log_applied(&self, row: &std::collections::BTreeMap<String, Option<String>>) -> bool {
        self.dialect().relay_log_applied(row)
    }
    /// The GTIDs a replica's IO thread received (and may have acknowledged), from a replica
    /// status row; compare with [`EngineSql::applied_gtids_sql`]. In one failover test run the
    /// coordinates check passed within 60 ms of `START SLAVE SQL_THREAD` on a MariaDB replica
    /// whose relay log still held about 650 received transactions, none of them applied.
    fn received_gtids(
        &self,
        row: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Option<String> {
        self.dialect().received_gtids(row)
    }
    /// Before a former source (or any node) follows a new source by GTID: make the position it
    /// asks for equal to everything it has executed.
    fn rejoin_position_sql(&self) -> Vec<String>;
    /// Forgets the node's binlog history and position, so a rebuilt node can be seeded anew.
    fn forget_history_sql(&self) -> Vec<String>;
    /// Whether GTID position `outer` contains everything in `inner`; None when unparsable.
    fn gtid_contains(&self, outer: &str, inner: &str) -> Option<bool>;
    /// Connections a fencing source kills: clients and binlog dump threads, not its own
    /// threads (`ID`, `COMMAND` columns).
    fn client_connections_sql(&self) -> &'static str {
        "SELECT ID, COMMAND, STATE FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
         AND USER NOT IN ('system user', 'event_scheduler') \
         AND COMMAND NOT IN ('Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker', 'Connect')"
    }
    fn kill_connection_sql(&self, id: u64) -> String {
        format!("KILL CONNECTION {id}")
    }
}

/// Semi-sync ack timeout used when a failover cluster must never fall back to async:
/// about 49 days, the largest value both engines accept on every platform.
pub const NO_FALLBACK_ACK_TIMEOUT_MS: u64 = 4_294_967_295;

/// The implementation for an engine.
pub fn for_engine(engine: Engine) -> &'static dyn EngineSql {
    match engine {
        Engine::Mariadb => &mariadb::MariaDb,
        Engine::Mysql => &mysql::MySql,
    }
}

/// Quotes a string as an SQL literal. Both engines run with the default sql_mode, where
/// backslash is an escape character, so both `'` and `\` are escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Normalizes a variable value for comparison: ON/1/TRUE alike, case-insensitive.
pub fn same_value(current: &str, wanted: &str) -> bool {
    fn norm(v: &str) -> String {
        match v.trim().to_ascii_uppercase().as_str() {
            "1" | "ON" | "TRUE" | "YES" => "ON".to_string(),
            "0" | "OFF" | "FALSE" | "NO" => "OFF".to_string(),
            other => other.to_string(),
        }
    }
    norm(current) == norm(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_quotes_and_backslashes() {
        assert_eq!(quote("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn values_compare_loosely() {
        assert!(same_value("1", "ON"));
        assert!(same_value("off", "0"));
        assert!(same_value("AFTER_SYNC", "after_sync"));
        assert!(!same_value("1000", "10000"));
    }
}
