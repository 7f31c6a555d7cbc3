//! The engine seam: every statement the agent sends to a server comes from an [`EngineSql`]
//! implementation, one module per engine. The rest of the agent never writes SQL text, so the
//! two engines' differences (CHANGE MASTER vs CHANGE REPLICATION SOURCE, `gtid_slave_pos` vs
//! auto-position, variable and plugin names) stay in `mariadb.rs` and `mysql.rs`.

pub mod gtid;
pub mod mariadb;
pub mod mysql;

use strata_topology::{Engine, NodeConfig};

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
    fn create_replication_user_sql(&self, user: &str, password: &str) -> Vec<String>;
    fn set_replication_password_sql(&self, user: &str, password: &str) -> Vec<String>;
    fn show_grants_sql(&self, user: &str) -> String;
    /// A privilege string that must appear in SHOW GRANTS for the replication user.
    fn replication_privilege(&self) -> &'static str;
    fn grant_replication_sql(&self, user: &str) -> String;

    fn replica_status_sql(&self) -> &'static str;
    /// Normalizes one row of the replica status (column name → value).
    fn parse_replica_status(
        &self,
        row: &std::collections::BTreeMap<String, Option<String>>,
    ) -> ReplicaLink;
    fn replica_hosts_sql(&self) -> &'static str;
    /// Column of `replica_hosts_sql` that holds the server id.
    fn replica_hosts_server_id_column(&self) -> &'static str;

    /// Points a stopped replica at its source (the agent stops and starts around it).
    fn change_source_sql(&self, link: &LinkSpec<'_>) -> String;
    fn start_replica_sql(&self) -> &'static str;
    fn stop_replica_sql(&self) -> &'static str;
    /// Semi-sync replica settings take effect when the IO thread reconnects.
    fn restart_io_thread_sql(&self) -> Vec<String>;

    /// The transactions this server has (source side of a GTID gap).
    fn executed_gtids_sql(&self) -> &'static str;
    /// The transactions a replica has applied from its source.
    fn applied_gtids_sql(&self) -> &'static str;
    /// How many transactions the replica lacks, from the two positions above.
    fn gtid_gap(&self, source: &str, replica: &str) -> Option<u64>;

    fn semi_sync_status_names(&self) -> SemiSyncStatusNames;
    fn semi_sync_status_sql(&self) -> &'static str;
    /// The (source, replica) semi-sync on/off variables.
    fn semi_sync_enabled_vars(&self) -> (&'static str, &'static str);
    /// Variables whose ON value means "refuses writes".
    fn read_only_vars(&self) -> &'static [&'static str];
}

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
