//! All MariaDB SQL (10.11, Debian's package). Semi-sync is built into the server (no plugin
//! to install) and waits for one replica's ack: MariaDB has no wait-for-replica-count, which
//! `strata_topology` validation enforces. Replicas position with `MASTER_USE_GTID=slave_pos`.

use super::{EngineSql, LinkSpec, ReplicaLink, SemiSyncStatusNames, gtid, quote};
use std::collections::BTreeMap;
use strata_topology::{Engine, NodeConfig, Role};

pub struct MariaDb;

fn on_off(b: bool) -> String {
    if b { "ON" } else { "OFF" }.to_string()
}

impl EngineSql for MariaDb {
    fn engine(&self) -> Engine {
        Engine::Mariadb
    }

    fn recognizes_version(&self, version: &str) -> bool {
        version.to_ascii_lowercase().contains("mariadb")
    }

    fn render_server_config(&self, cfg: &NodeConfig) -> String {
        let semi = cfg.semi_sync();
        let mut s = String::new();
        s.push_str(
            "# Managed by strata-agent from /etc/strata/node.json; local edits are overwritten.\n",
        );
        s.push_str(&format!(
            "# cluster {} node {} role {}\n",
            cfg.cluster_id, cfg.node_name, cfg.role
        ));
        s.push_str("[mariadbd]\n");
        s.push_str(&format!("server_id = {}\n", cfg.server_id));
        s.push_str(&format!("port = {}\n", cfg.local.port));
        s.push_str(&format!("report_host = {}\n", cfg.node_name));
        s.push_str("log_bin = strata-bin\n");
        s.push_str("binlog_format = ROW\n");
        s.push_str("log_slave_updates = ON\n");
        s.push_str("gtid_strict_mode = ON\n");
        s.push_str("sync_binlog = 1\n");
        s.push_str("innodb_flush_log_at_trx_commit = 1\n");
        // Host-independent relay log names, and a replica that crashed re-fetches from its
        // GTID position instead of trusting a half-written relay log.
        s.push_str("relay_log = strata-relay\n");
        s.push_str("relay_log_recovery = ON\n");
        s.push_str(&format!("ssl_cert = {}\n", cfg.tls.cert_file));
        s.push_str(&format!("ssl_key = {}\n", cfg.tls.key_file));
        if let Some(ca) = &cfg.tls.ca_file {
            s.push_str(&format!("ssl_ca = {ca}\n"));
        }
        // Written here too so a restarted node comes up in its role before the agent runs.
        s.push_str(&format!("read_only = {}\n", on_off(cfg.role.is_replica())));
        let semi_source = semi && cfg.role == Role::Source;
        // rpl_semi_sync_master_enabled is left to the agent: on a fresh source it first
        // creates the replication user, a commit that would otherwise wait a full ack
        // timeout for replicas that cannot connect yet.
        if semi_source {
            s.push_str(&format!(
                "rpl_semi_sync_master_timeout = {}\n",
                cfg.replication.ack_timeout_ms
            ));
            s.push_str("rpl_semi_sync_master_wait_point = AFTER_SYNC\n");
        }
        s.push_str(&format!(
            "rpl_semi_sync_slave_enabled = {}\n",
            on_off(semi && cfg.role.is_replica())
        ));
        s
    }

    fn static_settings(&self, cfg: &NodeConfig) -> Vec<(&'static str, String)> {
        vec![
            ("server_id", cfg.server_id.to_string()),
            ("log_bin", "ON".into()),
            ("log_slave_updates", "ON".into()),
            ("have_ssl", "YES".into()),
            ("ssl_cert", cfg.tls.cert_file.clone()),
        ]
    }

    fn required_plugins(&self, _cfg: &NodeConfig) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    fn plugin_loaded_sql(&self, plugin: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = {} AND PLUGIN_STATUS = 'ACTIVE'",
            quote(plugin)
        )
    }

    fn install_plugin_sql(&self, plugin: &str, library: &str) -> String {
        format!("INSTALL PLUGIN {plugin} SONAME {}", quote(library))
    }

    fn dynamic_settings(&self, cfg: &NodeConfig) -> Vec<(&'static str, String)> {
        let semi = cfg.semi_sync();
        let mut v = vec![
            ("binlog_format", "ROW".to_string()),
            ("gtid_strict_mode", "ON".into()),
            ("read_only", on_off(cfg.role.is_replica())),
        ];
        if cfg.role == Role::Source {
            if semi {
                v.push((
                    "rpl_semi_sync_master_timeout",
                    cfg.replication.ack_timeout_ms.to_string(),
                ));
                v.push(("rpl_semi_sync_master_wait_point", "AFTER_SYNC".into()));
            }
            v.push(("rpl_semi_sync_master_enabled", on_off(semi)));
            v.push(("rpl_semi_sync_slave_enabled", "OFF".into()));
        } else {
            v.push(("rpl_semi_sync_master_enabled", "OFF".into()));
            v.push(("rpl_semi_sync_slave_enabled", on_off(semi)));
        }
        v
    }

    fn read_global_sql(&self, var: &str) -> String {
        format!("SELECT @@GLOBAL.{var}")
    }

    fn set_global_sql(&self, var: &str, value: &str) -> String {
        let numeric_or_keyword = value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if numeric_or_keyword {
            format!("SET GLOBAL {var} = {value}")
        } else {
            format!("SET GLOBAL {var} = {}", quote(value))
        }
    }

    fn user_exists_sql(&self, user: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM mysql.user WHERE User = {} AND Host = '%'",
            quote(user)
        )
    }

    fn credential_matches_sql(&self, user: &str, password: &str) -> Option<String> {
        Some(format!(
            "SELECT COUNT(*) FROM mysql.user WHERE User = {} AND Host = '%' AND authentication_string = PASSWORD({})",
            quote(user),
            quote(password)
        ))
    }

    fn create_replication_user_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE USER {}@'%' IDENTIFIED BY {}",
                quote(user),
                quote(password)
            ),
            self.grant_replication_sql(user),
        ]
    }

    fn set_replication_password_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![format!(
            "ALTER USER {}@'%' IDENTIFIED BY {}",
            quote(user),
            quote(password)
        )]
    }

    fn show_grants_sql(&self, user: &str) -> String {
        format!("SHOW GRANTS FOR {}@'%'", quote(user))
    }

    fn replication_privilege(&self) -> &'static str {
        "REPLICATION SLAVE"
    }

    fn grant_replication_sql(&self, user: &str) -> String {
        // REPLICATION MASTER ADMIN lets a replica list the source's other replicas
        // (SHOW SLAVE HOSTS) and so refuse a duplicate server_id before it connects.
        format!(
            "GRANT REPLICATION SLAVE, REPLICATION MASTER ADMIN ON *.* TO {}@'%'",
            quote(user)
        )
    }

    fn replica_status_sql(&self) -> &'static str {
        "SHOW SLAVE STATUS"
    }

    fn parse_replica_status(&self, row: &BTreeMap<String, Option<String>>) -> ReplicaLink {
        let s = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
        ReplicaLink {
            source_host: s("Master_Host"),
            source_port: s("Master_Port").parse().unwrap_or(0),
            source_user: s("Master_User"),
            io_running: s("Slave_IO_Running"),
            sql_running: s("Slave_SQL_Running"),
            gtid_positioning: s("Using_Gtid").eq_ignore_ascii_case("slave_pos"),
            ssl: s("Master_SSL_Allowed").eq_ignore_ascii_case("yes"),
            seconds_behind_source: s("Seconds_Behind_Master").parse().ok(),
            last_io_errno: s("Last_IO_Errno").parse().unwrap_or(0),
            last_io_error: s("Last_IO_Error"),
            last_sql_errno: s("Last_SQL_Errno").parse().unwrap_or(0),
            last_sql_error: s("Last_SQL_Error"),
        }
    }

    fn replica_hosts_sql(&self) -> &'static str {
        "SHOW SLAVE HOSTS"
    }

    fn replica_hosts_server_id_column(&self) -> &'static str {
        "Server_id"
    }

    fn change_source_sql(&self, link: &LinkSpec<'_>) -> String {
        let mut change = format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 5",
            quote(link.host),
            link.port,
            quote(link.user),
            quote(link.password)
        );
        if link.tls {
            change.push_str(", MASTER_SSL = 1");
            match link.ca_file {
                Some(ca) => change.push_str(&format!(
                    ", MASTER_SSL_CA = {}, MASTER_SSL_VERIFY_SERVER_CERT = 1",
                    quote(ca)
                )),
                None => change.push_str(", MASTER_SSL_VERIFY_SERVER_CERT = 0"),
            }
        } else {
            change.push_str(", MASTER_SSL = 0");
        }
        change
    }

    fn start_replica_sql(&self) -> &'static str {
        "START SLAVE"
    }

    fn stop_replica_sql(&self) -> &'static str {
        "STOP SLAVE"
    }

    fn restart_io_thread_sql(&self) -> Vec<String> {
        vec![
            "STOP SLAVE IO_THREAD".into(),
            "START SLAVE IO_THREAD".into(),
        ]
    }

    fn executed_gtids_sql(&self) -> &'static str {
        "SELECT @@GLOBAL.gtid_binlog_pos"
    }

    fn applied_gtids_sql(&self) -> &'static str {
        "SELECT @@GLOBAL.gtid_slave_pos"
    }

    fn gtid_gap(&self, source: &str, replica: &str) -> Option<u64> {
        gtid::mariadb_gap(source, replica)
    }

    fn semi_sync_status_names(&self) -> SemiSyncStatusNames {
        SemiSyncStatusNames {
            source_status: "Rpl_semi_sync_master_status",
            source_clients: "Rpl_semi_sync_master_clients",
            source_yes_tx: "Rpl_semi_sync_master_yes_tx",
            source_no_tx: "Rpl_semi_sync_master_no_tx",
            source_off_times: "Rpl_semi_sync_master_no_times",
            replica_status: "Rpl_semi_sync_slave_status",
        }
    }

    fn semi_sync_status_sql(&self) -> &'static str {
        "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"
    }

    fn semi_sync_enabled_vars(&self) -> (&'static str, &'static str) {
        (
            "rpl_semi_sync_master_enabled",
            "rpl_semi_sync_slave_enabled",
        )
    }

    fn read_only_vars(&self) -> &'static [&'static str] {
        &["read_only"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_master_uses_gtid_and_tls_for_region_links() {
        let sql = MariaDb.change_source_sql(&LinkSpec {
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            password: "p'w",
            tls: true,
            ca_file: None,
        });
        assert_eq!(
            sql,
            "CHANGE MASTER TO MASTER_HOST = '10.0.0.5', MASTER_PORT = 3306, MASTER_USER = 'strata_repl', MASTER_PASSWORD = 'p''w', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 5, MASTER_SSL = 1, MASTER_SSL_VERIFY_SERVER_CERT = 0"
        );
    }

    #[test]
    fn set_global_quotes_only_non_keywords() {
        assert_eq!(
            MariaDb.set_global_sql("read_only", "ON"),
            "SET GLOBAL read_only = ON"
        );
        assert_eq!(MariaDb.set_global_sql("x", "a b"), "SET GLOBAL x = 'a b'");
    }
}
