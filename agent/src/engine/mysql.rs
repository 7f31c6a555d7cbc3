//! All MySQL 8.4 SQL. No MySQL server is available where Strata is tested, so this module is
//! covered by golden tests of its statements only (see docs/agent.md). 8.4 names: `SOURCE`/
//! `REPLICA` statements and variables, semi-sync from the `rpl_semi_sync_source` /
//! `rpl_semi_sync_replica` plugins, GTID auto-position, `super_read_only` on replicas.

use super::replication::{Dialect, REPLICA_NET_TIMEOUT_S};
use super::{
    DumpSpec, EngineSql, LoadSpec, SemiSyncStatusNames, Tool, global_privileges, gtid,
    has_global_grant_option, quote,
};
use strata_topology::{Engine, NodeConfig, Role};

pub struct MySql;

/// The replication user's global privileges: the binlog stream (REPLICATION SLAVE, which
/// SHOW REPLICAS needs too) and what `mysqldump --single-transaction --source-data=2
/// --set-gtid-purged=ON --routines --events --triggers --no-tablespaces` reads to seed a
/// replica: SELECT, SHOW VIEW, TRIGGER, EVENT; RELOAD for the short FLUSH TABLES WITH READ
/// LOCK MySQL's mysqldump takes to read the position with --source-data, and REPLICATION
/// CLIENT for SHOW BINARY LOG STATUS. Untested here (no MySQL server): the MariaDB list was
/// found by testing; the exposure argument is the same (the binlog already carries every
/// row). MySQL 8.4's password hashes in mysql.user become readable, as on MariaDB.
pub const REPLICATION_PRIVILEGES: &[&str] = &[
    "REPLICATION SLAVE",
    "REPLICATION CLIENT",
    "RELOAD",
    "SELECT",
    "SHOW VIEW",
    "TRIGGER",
    "EVENT",
];

/// The line mysqldump writes with --set-gtid-purged=ON (executed by the load).
const DUMP_GTID_PREFIX: &str = "SET @@GLOBAL.GTID_PURGED=";

const SOURCE_PLUGIN: (&str, &str) = ("rpl_semi_sync_source", "semisync_source.so");
const REPLICA_PLUGIN: (&str, &str) = ("rpl_semi_sync_replica", "semisync_replica.so");

fn on_off(b: bool) -> String {
    if b { "ON" } else { "OFF" }.to_string()
}

/// MySQL 8.4's words: `REPLICA`/`SOURCE`, GTID positioning by auto-position.
pub const DIALECT: Dialect = Dialect {
    change_to: "CHANGE REPLICATION SOURCE TO",
    option: "SOURCE_",
    gtid_option: "SOURCE_AUTO_POSITION = 1",
    // Without TLS, caching_sha2_password needs the source's RSA key to send the password;
    // asking for it is what the MySQL manual prescribes.
    without_tls: ", GET_SOURCE_PUBLIC_KEY = 1",
    source_col: "Source",
    replica_col: "Replica",
    gtid_positioning: ("Auto_Position", "1"),
    received_gtids_col: "Retrieved_Gtid_Set",
    status: "SHOW REPLICA STATUS",
    start: "START REPLICA",
    stop: "STOP REPLICA",
    start_io: "START REPLICA IO_THREAD",
    stop_io: "STOP REPLICA IO_THREAD",
    start_sql: "START REPLICA SQL_THREAD",
    reset_all: "RESET REPLICA ALL",
    hosts: "SHOW REPLICAS",
    hosts_server_id: "Server_Id",
    net_timeout_var: "replica_net_timeout",
    semi_sync: SemiSyncStatusNames {
        source_status: "Rpl_semi_sync_source_status",
        source_clients: "Rpl_semi_sync_source_clients",
        source_yes_tx: "Rpl_semi_sync_source_yes_tx",
        source_no_tx: "Rpl_semi_sync_source_no_tx",
        source_off_times: "Rpl_semi_sync_source_no_times",
        replica_status: "Rpl_semi_sync_replica_status",
    },
    semi_sync_vars: (
        "rpl_semi_sync_source_enabled",
        "rpl_semi_sync_replica_enabled",
    ),
};

impl EngineSql for MySql {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

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
        // Packaged servers may listen on loopback only; replicas connect from other hosts.
        s.push_str("bind_address = 0.0.0.0\n");
        // Accounts are '%': a reverse DNS lookup per connection only costs time.
        s.push_str("skip_name_resolve = ON\n");
        s.push_str("log_bin = strata-bin\n");
        s.push_str("binlog_format = ROW\n");
        s.push_str("log_replica_updates = ON\n");
        s.push_str("gtid_mode = ON\n");
        s.push_str("enforce_gtid_consistency = ON\n");
        s.push_str("sync_binlog = 1\n");
        s.push_str("innodb_flush_log_at_trx_commit = 1\n");
        s.push_str("relay_log = strata-relay\n");
        s.push_str("relay_log_recovery = ON\n");
        s.push_str(&format!("replica_net_timeout = {REPLICA_NET_TIMEOUT_S}\n"));
        s.push_str(&format!("ssl_cert = {}\n", cfg.tls.cert_file));
        s.push_str(&format!("ssl_key = {}\n", cfg.tls.key_file));
        if let Some(ca) = &cfg.tls.ca_file {
            s.push_str(&format!("ssl_ca = {ca}\n"));
        }
        // With failover every node starts read-only until its agent holds the lease.
        let starts_read_only = replica || cfg.failover.is_some();
        s.push_str(&format!("read_only = {}\n", on_off(starts_read_only)));
        s.push_str(&format!("super_read_only = {}\n", on_off(starts_read_only)));
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
        // A running server started before the config file had it (an upgraded agent).
        v.push(("replica_net_timeout", REPLICA_NET_TIMEOUT_S.to_string()));
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

    fn create_user_sql(&self, user: &str, password: &str) -> String {
        format!(
            "CREATE USER {}@'%' IDENTIFIED WITH caching_sha2_password BY {}",
            quote(user),
            quote(password)
        )
    }

    fn set_password_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![format!(
            "ALTER USER {}@'%' IDENTIFIED WITH caching_sha2_password BY {}",
            quote(user),
            quote(password)
        )]
    }

    fn show_grants_sql(&self, user: &str) -> String {
        format!("SHOW GRANTS FOR {}@'%'", quote(user))
    }

    fn replication_privileges(&self) -> &'static [&'static str] {
        REPLICATION_PRIVILEGES
    }

    fn grant_replication_sql(&self, user: &str) -> String {
        // MySQL still spells the privilege REPLICATION SLAVE in 8.4.
        format!(
            "GRANT {} ON *.* TO {}@'%'",
            REPLICATION_PRIVILEGES.join(", "),
            quote(user)
        )
    }

    fn grant_admin_sql(&self, user: &str) -> Vec<String> {
        // MySQL keeps replicas read-only with super_read_only, which refuses writes from
        // every account, SUPER and CONNECTION_ADMIN included (they only bypass read_only):
        // the admin account can have everything.
        vec![format!(
            "GRANT ALL PRIVILEGES ON *.* TO {}@'%' WITH GRANT OPTION",
            quote(user)
        )]
    }

    fn admin_grants_match(&self, grants: &[String]) -> bool {
        // ALL PRIVILEGES shows as its static privileges plus a row of dynamic ones.
        let have = global_privileges(grants);
        [
            "SELECT",
            "INSERT",
            "CREATE USER",
            "SUPER",
            "CONNECTION_ADMIN",
        ]
        .iter()
        .all(|p| have.contains(*p))
            && has_global_grant_option(grants)
    }

    fn local_write_sql(&self, role: Role) -> (Vec<String>, Vec<String>) {
        let mut before = vec!["SET SESSION sql_log_bin = 0".to_string()];
        let mut after = vec!["SET SESSION sql_log_bin = 1".to_string()];
        if role.is_replica() {
            // super_read_only refuses the agent too; lift it for the local write only.
            before.push("SET GLOBAL super_read_only = OFF".into());
            after.insert(0, "SET GLOBAL super_read_only = ON".into());
        }
        (before, after)
    }

    fn dump_command(&self, spec: &DumpSpec<'_>) -> Tool {
        let mut args = vec![
            format!("--defaults-file={}", spec.defaults_file),
            format!("--host={}", spec.host),
            format!("--port={}", spec.port),
            format!("--user={}", spec.user),
            "--protocol=TCP".to_string(),
        ];
        if spec.tls {
            match spec.ca_file {
                Some(ca) => {
                    args.push("--ssl-mode=VERIFY_CA".into());
                    args.push(format!("--ssl-ca={ca}"));
                }
                None => args.push("--ssl-mode=REQUIRED".into()),
            }
        } else {
            // caching_sha2_password over plain TCP needs the server's RSA key.
            args.push("--get-server-public-key".into());
        }
        args.extend(
            [
                "--default-character-set=utf8mb4",
                "--single-transaction",
                "--source-data=2",
                "--set-gtid-purged=ON",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--no-tablespaces",
                "--databases",
            ]
            .map(String::from),
        );
        args.extend(spec.schemas.iter().cloned());
        Tool {
            program: "mysqldump",
            args,
        }
    }

    fn load_command(&self, spec: &LoadSpec<'_>) -> Tool {
        super::client_load_command("mysql", spec)
    }

    fn dump_gtid(&self, line: &str) -> Option<String> {
        // SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'uuid:1-5';
        let rest = line.trim().strip_prefix(DUMP_GTID_PREFIX)?;
        let rest = rest.strip_prefix("/*!80000 '+'*/").unwrap_or(rest).trim();
        let set = rest.strip_suffix(';')?.trim().trim_matches('\'');
        gtid::parse_mysql_set(set)?;
        Some(set.to_string())
    }

    fn seed_position_sql(&self, _gtid: &str) -> Option<String> {
        // Loading the dump ran its SET @@GLOBAL.GTID_PURGED: auto-position starts there.
        None
    }

    fn reset_seed_position_sql(&self) -> Vec<String> {
        // The replica had no transactions of its own before the seed (it was checked empty).
        vec!["RESET BINARY LOGS AND GTIDS".into()]
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

    fn read_only_vars(&self) -> &'static [&'static str] {
        &["read_only", "super_read_only"]
    }

    fn rejoin_position_sql(&self) -> Vec<String> {
        // Auto-position sends gtid_executed: nothing to set.
        Vec::new()
    }

    fn forget_history_sql(&self) -> Vec<String> {
        vec!["RESET BINARY LOGS AND GTIDS".into()]
    }

    fn gtid_contains(&self, outer: &str, inner: &str) -> Option<bool> {
        gtid::mysql_gap(inner, outer).map(|g| g == 0)
    }
}

#[cfg(test)]
mod tests {
    //! Golden tests: MySQL 8.4 has no server here, so its statements are pinned as text.
    use super::*;
    use crate::engine::LinkSpec;
    use std::collections::BTreeMap;
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
            failover: None,
            engine_settings: BTreeMap::new(),
            backup: None,
            restore: None,
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
bind_address = 0.0.0.0
skip_name_resolve = ON
log_bin = strata-bin
binlog_format = ROW
log_replica_updates = ON
gtid_mode = ON
enforce_gtid_consistency = ON
sync_binlog = 1
innodb_flush_log_at_trx_commit = 1
relay_log = strata-relay
relay_log_recovery = ON
replica_net_timeout = 4
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
                "SET GLOBAL replica_net_timeout = 4",
            ]
        );
        assert_eq!(
            MySql.create_replication_user_sql("strata_repl", "s3cr'et"),
            vec![
                "CREATE USER 'strata_repl'@'%' IDENTIFIED WITH caching_sha2_password BY 's3cr''et'",
                "GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD, SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO 'strata_repl'@'%'",
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
                "SET GLOBAL replica_net_timeout = 4",
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
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.5', SOURCE_PORT = 3306, SOURCE_USER = 'strata_repl', SOURCE_PASSWORD = 'pw', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_HEARTBEAT_PERIOD = 2, SOURCE_SSL = 0, GET_SOURCE_PUBLIC_KEY = 1"
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
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.5', SOURCE_PORT = 3306, SOURCE_USER = 'strata_repl', SOURCE_PASSWORD = 'pw', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_HEARTBEAT_PERIOD = 2, SOURCE_SSL = 1, SOURCE_SSL_CA = '/etc/strata/tls/ca.crt', SOURCE_SSL_VERIFY_SERVER_CERT = 1"
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

    #[test]
    fn admin_account_statements() {
        assert_eq!(
            MySql.grant_admin_sql("ops"),
            vec!["GRANT ALL PRIVILEGES ON *.* TO 'ops'@'%' WITH GRANT OPTION"]
        );
        let shown = vec![
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, FILE, REFERENCES, INDEX, ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER, CREATE TABLESPACE, CREATE ROLE, DROP ROLE ON *.* TO `ops`@`%` WITH GRANT OPTION".to_string(),
            "GRANT APPLICATION_PASSWORD_ADMIN,BACKUP_ADMIN,CONNECTION_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `ops`@`%` WITH GRANT OPTION".to_string(),
        ];
        assert!(MySql.admin_grants_match(&shown));
        assert!(!MySql.admin_grants_match(&shown[..1]));
        // A replica's super_read_only refuses the agent's own local writes: lifted around them.
        assert_eq!(
            MySql.local_write_sql(Role::Replica),
            (
                vec![
                    "SET SESSION sql_log_bin = 0".to_string(),
                    "SET GLOBAL super_read_only = OFF".to_string()
                ],
                vec![
                    "SET GLOBAL super_read_only = ON".to_string(),
                    "SET SESSION sql_log_bin = 1".to_string()
                ]
            )
        );
        assert_eq!(MySql.local_write_sql(Role::Source).0.len(), 1);
    }

    #[test]
    fn seed_commands() {
        let schemas = vec!["app".to_string(), "shop".to_string()];
        let dump = MySql.dump_command(&DumpSpec {
            defaults_file: "/run/strata/seed-1.cnf",
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            tls: false,
            ca_file: None,
            schemas: &schemas,
        });
        assert_eq!(dump.program, "mysqldump");
        assert_eq!(
            dump.args.join(" "),
            "--defaults-file=/run/strata/seed-1.cnf --host=10.0.0.5 --port=3306 --user=strata_repl --protocol=TCP --get-server-public-key --default-character-set=utf8mb4 --single-transaction --source-data=2 --set-gtid-purged=ON --routines --events --triggers --hex-blob --no-tablespaces --databases app shop"
        );
        let tls = MySql.dump_command(&DumpSpec {
            defaults_file: "/f",
            host: "h",
            port: 1,
            user: "u",
            tls: true,
            ca_file: Some("/ca.pem"),
            schemas: &schemas,
        });
        assert!(
            tls.args
                .join(" ")
                .contains("--ssl-mode=VERIFY_CA --ssl-ca=/ca.pem --default"),
            "{:?}",
            tls.args
        );
        let load = MySql.load_command(&LoadSpec {
            defaults_file: "/run/strata/local-1.cnf",
            socket: Some("/run/mysqld/mysqld.sock"),
            host: "127.0.0.1",
            port: 3306,
            user: "root",
        });
        assert_eq!(load.program, "mysql");
        assert_eq!(
            load.args,
            vec![
                "--defaults-file=/run/strata/local-1.cnf",
                "--socket=/run/mysqld/mysqld.sock",
                "--user=root",
                "--default-character-set=utf8mb4",
                "--init-command=SET SESSION sql_log_bin = 0",
                "--batch",
            ]
        );
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert_eq!(
            MySql.dump_gtid(&format!(
                "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '{u}:1-42';"
            )),
            Some(format!("{u}:1-42"))
        );
        assert_eq!(MySql.dump_gtid("-- CHANGE REPLICATION SOURCE TO x;"), None);
        assert_eq!(MySql.seed_position_sql("x"), None);
        assert_eq!(
            MySql.reset_seed_position_sql(),
            vec!["RESET BINARY LOGS AND GTIDS"]
        );
    }
}
