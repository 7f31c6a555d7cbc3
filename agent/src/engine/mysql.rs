//! All MySQL 8.4 SQL. No MySQL server is available where Strata is tested, so this module is
//! covered by golden tests of its statements only (see docs/agent.md). 8.4 names: `SOURCE`/
//! `REPLICA` statements and variables, semi-sync from the `rpl_semi_sync_source` /
//! `rpl_semi_sync_replica` plugins, GTID auto-position, `super_read_only` on replicas.

use super::{EngineSql, LinkSpec, ReplicaLink, SemiSyncStatusNames, gtid, quote};
use std::collections::BTreeMap;
use strata_topology::{Engine, NodeConfig, Role};

pub struct MySql;

const SOURCE_PLUGIN: (&str, &str) = ("rpl_semi_sync_source", "semisync_source.so");
const REPLICA_PLUGIN: (&str, &str) = ("rpl_semi_sync_replica", "semisync_replica.so");

fn on_off(b: bool) -> String {
    if b { "ON" } else { "OFF" }.to_string()
}

impl EngineSql for MySql {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn recognizes_version(&self, version: &str) -> bool {
        !version.to_ascii_lowercase().contains("mariadb")
    }

    fn render_server_config(&self, cfg: &NodeConfig) -> String {
        let semi = cfg.semi_sync();
        let replica = cfg.role.is_replica();
        let mut s = String::new();
        s.push_str(
            "# Managed by strata-agent from /etc/strata/node.json; local edits are overwritten.\n",
        );
        s.push_str(&format!(
            "# cluster {} node {} role {}\n",
            cfg.cluster_id, cfg.node_name, cfg.role
        ));
        s.push_str("[mysqld]\n");
        s.push_str(&format!("server_id = {}\n", cfg.server_id));
        s.push_str(&format!("port = {}\n", cfg.local.port));
        s.push_str(&format!("report_host = {}\n", cfg.node_name));
        s.push_str("log_bin = strata-bin\n");
        s.push_str("binlog_format = ROW\n");
        s.push_str("log_replica_updates = ON\n");
        s.push_str("gtid_mode = ON\n");
        s.push_str("enforce_gtid_consistency = ON\n");
        s.push_str("sync_binlog = 1\n");
        s.push_str("innodb_flush_log_at_trx_commit = 1\n");
        s.push_str("relay_log = strata-relay\n");
        s.push_str("relay_log_recovery = ON\n");
        s.push_str(&format!("ssl_cert = {}\n", cfg.tls.cert_file));
        s.push_str(&format!("ssl_key = {}\n", cfg.tls.key_file));
        if let Some(ca) = &cfg.tls.ca_file {
            s.push_str(&format!("ssl_ca = {ca}\n"));
        }
        s.push_str(&format!("read_only = {}\n", on_off(replica)));
        s.push_str(&format!("super_read_only = {}\n", on_off(replica)));
        if semi {
            // loose_: the variables exist only once the plugin is loaded. The source's
            // `enabled` is left to the agent, as for MariaDB (user first, then semi-sync).
            if cfg.role == Role::Source {
                s.push_str(&format!("plugin_load_add = {}\n", SOURCE_PLUGIN.1));
                s.push_str(&format!(
                    "loose_rpl_semi_sync_source_timeout = {}\n",
                    cfg.replication.ack_timeout_ms
                ));
                s.push_str(&format!(
                    "loose_rpl_semi_sync_source_wait_for_replica_count = {}\n",
                    cfg.replication.ack_count
                ));
                s.push_str("loose_rpl_semi_sync_source_wait_point = AFTER_SYNC\n");
            } else {
                s.push_str(&format!("plugin_load_add = {}\n", REPLICA_PLUGIN.1));
                s.push_str("loose_rpl_semi_sync_replica_enabled = ON\n");
            }
        }
        s
    }

    fn static_settings(&self, cfg: &NodeConfig) -> Vec<(&'static str, String)> {
        vec![
            ("server_id", cfg.server_id.to_string()),
            ("log_bin", "ON".into()),
            ("log_replica_updates", "ON".into()),
            ("gtid_mode", "ON".into()),
            ("enforce_gtid_consistency", "ON".into()),
            ("ssl_cert", cfg.tls.cert_file.clone()),
        ]
    }

    fn required_plugins(&self, cfg: &NodeConfig) -> Vec<(&'static str, &'static str)> {
        match (cfg.semi_sync(), cfg.role) {
            (false, _) => Vec::new(),
            (true, Role::Source) => vec![SOURCE_PLUGIN],
            (true, _) => vec![REPLICA_PLUGIN],
        }
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
        let mut v = Vec::new();
        // super_read_only implies read_only: lift it first, set it last.
        if cfg.role == Role::Source {
            v.push(("super_read_only", "OFF".to_string()));
            v.push(("read_only", "OFF".to_string()));
            if semi {
                v.push((
                    "rpl_semi_sync_source_timeout",
                    cfg.replication.ack_timeout_ms.to_string(),
                ));
                v.push((
                    "rpl_semi_sync_source_wait_for_replica_count",
                    cfg.replication.ack_count.to_string(),
                ));
                v.push(("rpl_semi_sync_source_wait_point", "AFTER_SYNC".into()));
                v.push(("rpl_semi_sync_source_enabled", "ON".into()));
            }
        } else {
            v.push(("read_only", "ON".to_string()));
            v.push(("super_read_only", "ON".to_string()));
            if semi {
                v.push(("rpl_semi_sync_replica_enabled", "ON".into()));
            }
        }
        v
    }

    fn read_global_sql(&self, var: &str) -> String {
        format!("SELECT @@GLOBAL.{var}")
    }

    fn set_global_sql(&self, var: &str, value: &str) -> String {
        // SET PERSIST would outlive our config file; the file is the single source of truth.
        let plain = value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
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

    fn credential_matches_sql(&self, _user: &str, _password: &str) -> Option<String> {
        // caching_sha2_password hashes are salted: the stored hash cannot be compared with a
        // candidate in SQL, so the agent re-sets the password on every bootstrap.
        None
    }

    fn create_replication_user_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE USER {}@'%' IDENTIFIED WITH caching_sha2_password BY {}",
                quote(user),
                quote(password)
            ),
            self.grant_replication_sql(user),
        ]
    }

    fn set_replication_password_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![format!(
            "ALTER USER {}@'%' IDENTIFIED WITH caching_sha2_password BY {}",
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
        // MySQL still spells the privilege REPLICATION SLAVE in 8.4; SHOW REPLICAS needs it too.
        format!("GRANT REPLICATION SLAVE ON *.* TO {}@'%'", quote(user))
    }

    fn replica_status_sql(&self) -> &'static str {
        "SHOW REPLICA STATUS"
    }

    fn parse_replica_status(&self, row: &BTreeMap<String, Option<String>>) -> ReplicaLink {
        let s = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
        ReplicaLink {
            source_host: s("Source_Host"),
            source_port: s("Source_Port").parse().unwrap_or(0),
            source_user: s("Source_User"),
            io_running: s("Replica_IO_Running"),
            sql_running: s("Replica_SQL_Running"),
            gtid_positioning: s("Auto_Position") == "1",
            ssl: s("Source_SSL_Allowed").eq_ignore_ascii_case("yes"),
            seconds_behind_source: s("Seconds_Behind_Source").parse().ok(),
            last_io_errno: s("Last_IO_Errno").parse().unwrap_or(0),
            last_io_error: s("Last_IO_Error"),
            last_sql_errno: s("Last_SQL_Errno").parse().unwrap_or(0),
            last_sql_error: s("Last_SQL_Error"),
        }
    }

    fn replica_hosts_sql(&self) -> &'static str {
        "SHOW REPLICAS"
    }

    fn replica_hosts_server_id_column(&self) -> &'static str {
        "Server_Id"
    }

    fn change_source_sql(&self, link: &LinkSpec<'_>) -> String {
        let mut change = format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {}, SOURCE_PORT = {}, SOURCE_USER = {}, SOURCE_PASSWORD = {}, SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 5",
            quote(link.host),
            link.port,
            quote(link.user),
            quote(link.password)
        );
        if link.tls {
            change.push_str(", SOURCE_SSL = 1");
            match link.ca_file {
                Some(ca) => change.push_str(&format!(
                    ", SOURCE_SSL_CA = {}, SOURCE_SSL_VERIFY_SERVER_CERT = 1",
                    quote(ca)
                )),
                None => change.push_str(", SOURCE_SSL_VERIFY_SERVER_CERT = 0"),
            }
        } else {
            // Without TLS, caching_sha2_password needs the source's RSA key to send the
            // password; asking for it is what the MySQL manual prescribes.
            change.push_str(", SOURCE_SSL = 0, GET_SOURCE_PUBLIC_KEY = 1");
        }
        change
    }

    fn start_replica_sql(&self) -> &'static str {
        "START REPLICA"
    }

    fn stop_replica_sql(&self) -> &'static str {
        "STOP REPLICA"
    }

    fn restart_io_thread_sql(&self) -> Vec<String> {
        vec![
            "STOP REPLICA IO_THREAD".into(),
            "START REPLICA IO_THREAD".into(),
        ]
    }

    fn executed_gtids_sql(&self) -> &'static str {
        "SELECT @@GLOBAL.gtid_executed"
    }

    fn applied_gtids_sql(&self) -> &'static str {
        "SELECT @@GLOBAL.gtid_executed"
    }

    fn gtid_gap(&self, source: &str, replica: &str) -> Option<u64> {
        gtid::mysql_gap(source, replica)
    }

    fn semi_sync_status_names(&self) -> SemiSyncStatusNames {
        SemiSyncStatusNames {
            source_status: "Rpl_semi_sync_source_status",
            source_clients: "Rpl_semi_sync_source_clients",
            source_yes_tx: "Rpl_semi_sync_source_yes_tx",
            source_no_tx: "Rpl_semi_sync_source_no_tx",
            source_off_times: "Rpl_semi_sync_source_no_times",
            replica_status: "Rpl_semi_sync_replica_status",
        }
    }

    fn semi_sync_status_sql(&self) -> &'static str {
        "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"
    }

    fn semi_sync_enabled_vars(&self) -> (&'static str, &'static str) {
        (
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_replica_enabled",
        )
    }

    fn read_only_vars(&self) -> &'static [&'static str] {
        &["read_only", "super_read_only"]
    }
}

#[cfg(test)]
mod tests {
    //! Golden tests: MySQL 8.4 has no server here, so its statements are pinned as text.
    use super::*;
    use strata_topology::{
        CredentialRef, LocalServer, NodeConfig, Replication, ReplicationMode, SCHEMA_VERSION,
        SourceEndpoint, Storage, Tls,
    };

    fn cfg(role: Role) -> NodeConfig {
        NodeConfig {
            version: SCHEMA_VERSION,
            cluster_id: "orders".into(),
            node_id: "n1".into(),
            node_name: "orders-1".into(),
            role,
            region: "us-east-1".into(),
            engine: Engine::Mysql,
            engine_version: "8.4".into(),
            server_id: 7,
            source: role.is_replica().then(|| SourceEndpoint {
                host: "10.0.0.5".into(),
                port: 3306,
            }),
            replication: Replication {
                mode: ReplicationMode::SemiSync,
                ack_count: 2,
                ack_timeout_ms: 2500,
                user: "strata_repl".into(),
                credential: CredentialRef {
                    ssm_parameter: "/p".into(),
                    ssm_region: "us-east-1".into(),
                },
            },
            local: LocalServer::default(),
            tls: Tls::default(),
            storage: Storage {
                device: "/dev/xvdf".into(),
                mount_point: "/var/lib/mysql".into(),
                max_size_gib: 100,
                grow_at_percent: 80,
                grow_by_percent: 20,
                min_step_gib: 10,
            },
            admin: None,
            install: Default::default(),
            tags: Default::default(),
        }
    }

    #[test]
    fn source_config_file() {
        assert_eq!(
            MySql.render_server_config(&cfg(Role::Source)),
            "# Managed by strata-agent from /etc/strata/node.json; local edits are overwritten.
# cluster orders node orders-1 role source
[mysqld]
server_id = 7
port = 3306
report_host = orders-1
log_bin = strata-bin
binlog_format = ROW
log_replica_updates = ON
gtid_mode = ON
enforce_gtid_consistency = ON
sync_binlog = 1
innodb_flush_log_at_trx_commit = 1
relay_log = strata-relay
relay_log_recovery = ON
ssl_cert = /etc/strata/tls/server.crt
ssl_key = /etc/strata/tls/server.key
read_only = OFF
super_read_only = OFF
plugin_load_add = semisync_source.so
loose_rpl_semi_sync_source_timeout = 2500
loose_rpl_semi_sync_source_wait_for_replica_count = 2
loose_rpl_semi_sync_source_wait_point = AFTER_SYNC
"
        );
    }

    #[test]
    fn source_statements() {
        let c = cfg(Role::Source);
        assert_eq!(
            MySql.required_plugins(&c),
            vec![("rpl_semi_sync_source", "semisync_source.so")]
        );
        assert_eq!(
            MySql.install_plugin_sql("rpl_semi_sync_source", "semisync_source.so"),
            "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'"
        );
        let sets: Vec<String> = MySql
            .dynamic_settings(&c)
            .iter()
            .map(|(k, v)| MySql.set_global_sql(k, v))
            .collect();
        assert_eq!(
            sets,
            vec![
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF",
                "SET GLOBAL rpl_semi_sync_source_timeout = 2500",
                "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 2",
                "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
            ]
        );
        assert_eq!(
            MySql.create_replication_user_sql("strata_repl", "s3cr'et"),
            vec![
                "CREATE USER 'strata_repl'@'%' IDENTIFIED WITH caching_sha2_password BY 's3cr''et'",
                "GRANT REPLICATION SLAVE ON *.* TO 'strata_repl'@'%'",
            ]
        );
        assert_eq!(MySql.credential_matches_sql("u", "p"), None);
    }

    #[test]
    fn replica_statements() {
        let c = cfg(Role::Replica);
        let sets: Vec<String> = MySql
            .dynamic_settings(&c)
            .iter()
            .map(|(k, v)| MySql.set_global_sql(k, v))
            .collect();
        assert_eq!(
            sets,
            vec![
                "SET GLOBAL read_only = ON",
                "SET GLOBAL super_read_only = ON",
                "SET GLOBAL rpl_semi_sync_replica_enabled = ON",
            ]
        );
        assert_eq!(
            MySql.required_plugins(&c),
            vec![("rpl_semi_sync_replica", "semisync_replica.so")]
        );
        let link = LinkSpec {
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            password: "pw",
            tls: false,
            ca_file: None,
        };
        assert_eq!(
            MySql.change_source_sql(&link),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.5', SOURCE_PORT = 3306, SOURCE_USER = 'strata_repl', SOURCE_PASSWORD = 'pw', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 5, SOURCE_SSL = 0, GET_SOURCE_PUBLIC_KEY = 1"
        );
        assert_eq!(
            MySql.restart_io_thread_sql(),
            vec!["STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"]
        );
    }

    #[test]
    fn region_replica_is_async_over_verified_tls() {
        let mut c = cfg(Role::RegionReplica);
        c.tls.ca_file = Some("/etc/strata/tls/ca.crt".into());
        assert!(MySql.required_plugins(&c).is_empty());
        assert!(!MySql.render_server_config(&c).contains("semi_sync"));
        let link = LinkSpec {
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            password: "pw",
            tls: true,
            ca_file: c.tls.ca_file.as_deref(),
        };
        assert_eq!(
            MySql.change_source_sql(&link),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.5', SOURCE_PORT = 3306, SOURCE_USER = 'strata_repl', SOURCE_PASSWORD = 'pw', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 5, SOURCE_SSL = 1, SOURCE_SSL_CA = '/etc/strata/tls/ca.crt', SOURCE_SSL_VERIFY_SERVER_CERT = 1"
        );
    }

    #[test]
    fn replica_status_columns() {
        let row: BTreeMap<String, Option<String>> = [
            ("Source_Host", "10.0.0.5"),
            ("Source_Port", "3306"),
            ("Source_User", "strata_repl"),
            ("Replica_IO_Running", "Yes"),
            ("Replica_SQL_Running", "Yes"),
            ("Auto_Position", "1"),
            ("Source_SSL_Allowed", "No"),
            ("Seconds_Behind_Source", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
        let link = MySql.parse_replica_status(&row);
        assert!(link.io_running() && link.sql_running() && link.gtid_positioning);
        assert_eq!(link.seconds_behind_source, Some(3));
        assert_eq!(
            MySql.semi_sync_status_names().source_no_tx,
            "Rpl_semi_sync_source_no_tx"
        );
        assert_eq!(MySql.replica_status_sql(), "SHOW REPLICA STATUS");
    }
}
