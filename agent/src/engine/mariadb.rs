//! All MariaDB SQL (10.11, Debian's package). Semi-sync is built into the server (no plugin
//! to install) and waits for one replica's ack: MariaDB has no wait-for-replica-count, which
//! `strata_topology` validation enforces. Replicas position with `MASTER_USE_GTID=slave_pos`.

use super::replication::{Dialect, REPLICA_NET_TIMEOUT_S};
use super::{
    DumpSpec, EngineSql, LoadSpec, SemiSyncStatusNames, Tool, global_privileges, gtid,
    has_global_grant_option, quote,
};
use strata_topology::{Engine, NodeConfig, Role};

pub struct MariaDb;

/// What the replication user may do on a source. REPLICATION SLAVE reads the binlog;
/// REPLICATION MASTER ADMIN lists the source's replicas (SHOW SLAVE HOSTS) so a replica can
/// refuse a duplicate server_id. The rest is what `mariadb-dump --single-transaction --gtid
/// --master-data=2 --routines --events --triggers` needs to seed a new replica, found by
/// taking each away on 10.11: SELECT (rows, and routine bodies in mysql.proc), SHOW VIEW
/// (view definitions), TRIGGER (without it triggers are silently left out of the dump), EVENT
/// (SHOW EVENTS). It needs no RELOAD, LOCK TABLES nor BINLOG MONITOR: combining
/// --single-transaction with --master-data takes the position from the consistent snapshot
/// (binlog_snapshot_file/position, BINLOG_GTID_POS), without FLUSH TABLES WITH READ LOCK.
///
/// Exposure: this credential already reads every row ever written with binary logging on,
/// through the binlog stream (from the oldest retained log, which a replica may ask for at
/// any time). The read grants add rows older than the retained binlogs (exactly what a seed
/// must copy) and writes made with sql_log_bin=0. On a Strata node the latter is the admin
/// account's entry in mysql.global_priv (a password hash); its password lives in SSM beside
/// the replication password, readable by the same instance role. None of these grants can
/// write anything.
pub const REPLICATION_PRIVILEGES: &[&str] = &[
    "REPLICATION SLAVE",
    "REPLICATION MASTER ADMIN",
    "SELECT",
    "SHOW VIEW",
    "TRIGGER",
    "EVENT",
];

/// The admin (operator) account: every MariaDB 10.11 global privilege except READ_ONLY
/// ADMIN, which is the one that writes through `read_only` (and changes it). Since 10.11
/// SUPER no longer includes READ_ONLY ADMIN (MDEV-29596), so the admin account keeps SUPER
/// and still cannot write on a replica. Listed rather than `ALL PRIVILEGES` minus one, so a
/// later server's new privileges are a decision, not an accident.
pub const ADMIN_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "RELOAD",
    "SHUTDOWN",
    "PROCESS",
    "FILE",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "SHOW DATABASES",
    "SUPER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "REPLICATION SLAVE",
    "BINLOG MONITOR",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "CREATE USER",
    "EVENT",
    "TRIGGER",
    "CREATE TABLESPACE",
    "DELETE HISTORY",
    "SET USER",
    "FEDERATED ADMIN",
    "CONNECTION ADMIN",
    "REPLICATION SLAVE ADMIN",
    "REPLICATION MASTER ADMIN",
    "BINLOG ADMIN",
    "BINLOG REPLAY",
    "SLAVE MONITOR",
];

/// The dump's commented GTID line: `-- SET GLOBAL gtid_slave_pos='0-1-14';`, written at its
/// end ("deferred") by 10.11.
const DUMP_GTID_PREFIX: &str = "-- SET GLOBAL gtid_slave_pos='";

fn on_off(b: bool) -> String {
    if b { "ON" } else { "OFF" }.to_string()
}

/// MariaDB's words: `SLAVE`/`MASTER`, GTID positioning by `gtid_slave_pos`.
pub const DIALECT: Dialect = Dialect {
    change_to: "CHANGE MASTER TO",
    option: "MASTER_",
    gtid_option: "MASTER_USE_GTID = slave_pos",
    without_tls: "",
    source_col: "Master",
    replica_col: "Slave",
    gtid_positioning: ("Using_Gtid", "slave_pos"),
    received_gtids_col: "Gtid_IO_Pos",
    status: "SHOW SLAVE STATUS",
    start: "START SLAVE",
    stop: "STOP SLAVE",
    start_io: "START SLAVE IO_THREAD",
    stop_io: "STOP SLAVE IO_THREAD",
    start_sql: "START SLAVE SQL_THREAD",
    reset_all: "RESET SLAVE ALL",
    hosts: "SHOW SLAVE HOSTS",
    hosts_server_id: "Server_id",
    net_timeout_var: "slave_net_timeout",
    semi_sync: SemiSyncStatusNames {
        source_status: "Rpl_semi_sync_master_status",
        source_clients: "Rpl_semi_sync_master_clients",
        source_yes_tx: "Rpl_semi_sync_master_yes_tx",
        source_no_tx: "Rpl_semi_sync_master_no_tx",
        source_off_times: "Rpl_semi_sync_master_no_times",
        replica_status: "Rpl_semi_sync_slave_status",
    },
    semi_sync_vars: (
        "rpl_semi_sync_master_enabled",
        "rpl_semi_sync_slave_enabled",
    ),
};

impl EngineSql for MariaDb {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

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
        // Debian's packaged server listens on 127.0.0.1 only (50-server.cnf); this file is
        // read after it, so replicas and clients on other hosts can reach the node.
        s.push_str("bind_address = 0.0.0.0\n");
        // Accounts are '%' and addressed by IP: a reverse DNS lookup per connection only
        // costs time, and a node without DNS would wait it out on every replica connect.
        s.push_str("skip_name_resolve = ON\n");
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
        s.push_str(&format!("slave_net_timeout = {REPLICA_NET_TIMEOUT_S}\n"));
        s.push_str(&format!("ssl_cert = {}\n", cfg.tls.cert_file));
        s.push_str(&format!("ssl_key = {}\n", cfg.tls.key_file));
        if let Some(ca) = &cfg.tls.ca_file {
            s.push_str(&format!("ssl_ca = {ca}\n"));
        }
        // Written here too so a restarted node comes up in its role before the agent runs.
        // With failover every node starts read-only: only its agent, once it holds the
        // lease, lets it take writes (a restarted old source must not).
        let failover = cfg.failover.is_some();
        s.push_str(&format!(
            "read_only = {}\n",
            on_off(cfg.role.is_replica() || failover)
        ));
        let semi_source = semi && cfg.role == Role::Source && !failover;
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
            // With failover, also on a source: a server started with it truncates, in crash
            // recovery, binlogged transactions no replica acknowledged (MDEV-21117), so a
            // crashed source can rejoin without a history the new source lacks.
            on_off(semi && (cfg.role.is_replica() || failover))
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
        // A running server started before the config file had it (an upgraded agent).
        v.push(("slave_net_timeout", REPLICA_NET_TIMEOUT_S.to_string()));
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

    fn create_user_sql(&self, user: &str, password: &str) -> String {
        format!(
            "CREATE USER {}@'%' IDENTIFIED BY {}",
            quote(user),
            quote(password)
        )
    }

    fn set_password_sql(&self, user: &str, password: &str) -> Vec<String> {
        vec![format!(
            "ALTER USER {}@'%' IDENTIFIED BY {}",
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
        format!(
            "GRANT {} ON *.* TO {}@'%'",
            REPLICATION_PRIVILEGES.join(", "),
            quote(user)
        )
    }

    fn grant_admin_sql(&self, user: &str) -> Vec<String> {
        vec![
            // Takes away what the list does not hold (READ_ONLY ADMIN given by hand).
            format!(
                "REVOKE ALL PRIVILEGES, GRANT OPTION FROM {}@'%'",
                quote(user)
            ),
            format!(
                "GRANT {} ON *.* TO {}@'%' WITH GRANT OPTION",
                ADMIN_PRIVILEGES.join(", "),
                quote(user)
            ),
        ]
    }

    fn admin_grants_match(&self, grants: &[String]) -> bool {
        let want: std::collections::BTreeSet<String> =
            ADMIN_PRIVILEGES.iter().map(|p| p.to_string()).collect();
        global_privileges(grants) == want && has_global_grant_option(grants)
    }

    fn local_write_sql(&self, _role: Role) -> (Vec<String>, Vec<String>) {
        // The agent's root connection holds READ_ONLY ADMIN, so read_only does not stop it.
        (
            vec!["SET SESSION sql_log_bin = 0".into()],
            vec!["SET SESSION sql_log_bin = 1".into()],
        )
    }

    fn dump_command(&self, spec: &DumpSpec<'_>) -> Tool {
        // --defaults-file first: the only options file read, so nothing on the host changes
        // what is dumped, and the password stays out of argv.
        let mut args = vec![
            format!("--defaults-file={}", spec.defaults_file),
            format!("--host={}", spec.host),
            format!("--port={}", spec.port),
            format!("--user={}", spec.user),
            "--protocol=TCP".to_string(),
        ];
        if spec.tls {
            args.push("--ssl".into());
            if let Some(ca) = spec.ca_file {
                args.push(format!("--ssl-ca={ca}"));
                args.push("--ssl-verify-server-cert".into());
            }
        }
        args.extend(
            [
                "--default-character-set=utf8mb4",
                "--single-transaction",
                "--gtid",
                "--master-data=2",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--databases",
            ]
            .map(String::from),
        );
        args.extend(spec.schemas.iter().cloned());
        Tool {
            program: "mariadb-dump",
            args,
        }
    }

    fn load_command(&self, spec: &LoadSpec<'_>) -> Tool {
        super::client_load_command("mariadb", spec)
    }

    fn dump_gtid(&self, line: &str) -> Option<String> {
        let rest = line.trim_end().strip_prefix(DUMP_GTID_PREFIX)?;
        let pos = rest.strip_suffix("';")?;
        gtid::parse_mariadb_pos(pos)?;
        Some(pos.to_string())
    }

    fn seed_position_sql(&self, gtid: &str) -> Option<String> {
        Some(format!("SET GLOBAL gtid_slave_pos = {}", quote(gtid)))
    }

    fn reset_seed_position_sql(&self) -> Vec<String> {
        vec!["SET GLOBAL gtid_slave_pos = ''".into()]
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

    fn read_only_vars(&self) -> &'static [&'static str] {
        &["read_only"]
    }

    fn rejoin_position_sql(&self) -> Vec<String> {
        vec!["SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos".into()]
    }

    fn forget_history_sql(&self) -> Vec<String> {
        vec![
            "RESET MASTER".into(),
            "SET GLOBAL gtid_slave_pos = ''".into(),
        ]
    }

    fn gtid_contains(&self, outer: &str, inner: &str) -> Option<bool> {
        // With gtid_strict_mode a domain's history is one sequence: a position that is not
        // beyond `outer`'s in any domain is contained in it.
        gtid::mariadb_gap(inner, outer).map(|g| g == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LinkSpec;
    use std::collections::BTreeMap;

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
            "CHANGE MASTER TO MASTER_HOST = '10.0.0.5', MASTER_PORT = 3306, MASTER_USER = 'strata_repl', MASTER_PASSWORD = 'p''w', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 2, MASTER_SSL = 1, MASTER_SSL_VERIFY_SERVER_CERT = 0"
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

    #[test]
    fn replication_user_can_seed_but_not_write() {
        assert_eq!(
            MariaDb.grant_replication_sql("strata_repl"),
            "GRANT REPLICATION SLAVE, REPLICATION MASTER ADMIN, SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO 'strata_repl'@'%'"
        );
    }

    #[test]
    fn admin_account_statements() {
        let sql = MariaDb.grant_admin_sql("ops");
        assert_eq!(sql[0], "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'ops'@'%'");
        assert!(sql[1].starts_with("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD,"));
        assert!(sql[1].ends_with(" ON *.* TO 'ops'@'%' WITH GRANT OPTION"));
        assert!(!sql[1].contains("READ_ONLY"), "{}", sql[1]);
        assert!(sql[1].contains("SUPER"), "{}", sql[1]);
        // SHOW GRANTS as 10.11 prints it after those statements.
        let shown = vec![format!(
            "GRANT {} ON *.* TO `ops`@`%` IDENTIFIED BY PASSWORD '*667F407DE7C6AD07358FA38DAED7828A72014B4E' WITH GRANT OPTION",
            ADMIN_PRIVILEGES.join(", ")
        )];
        assert!(MariaDb.admin_grants_match(&shown));
        let with_ro = vec![shown[0].replace("SUPER,", "SUPER, READ_ONLY ADMIN,")];
        assert!(!MariaDb.admin_grants_match(&with_ro));
        let no_option = vec![shown[0].replace(" WITH GRANT OPTION", "")];
        assert!(!MariaDb.admin_grants_match(&no_option));
        assert_eq!(
            MariaDb.local_write_sql(Role::Replica),
            (
                vec!["SET SESSION sql_log_bin = 0".to_string()],
                vec!["SET SESSION sql_log_bin = 1".to_string()]
            )
        );
    }

    #[test]
    fn seed_commands() {
        let schemas = vec!["app".to_string(), "shop".to_string()];
        let dump = MariaDb.dump_command(&DumpSpec {
            defaults_file: "/run/strata/seed-1.cnf",
            host: "10.0.0.5",
            port: 3306,
            user: "strata_repl",
            tls: false,
            ca_file: None,
            schemas: &schemas,
        });
        assert_eq!(dump.program, "mariadb-dump");
        assert_eq!(
            dump.args.join(" "),
            "--defaults-file=/run/strata/seed-1.cnf --host=10.0.0.5 --port=3306 --user=strata_repl --protocol=TCP --default-character-set=utf8mb4 --single-transaction --gtid --master-data=2 --routines --events --triggers --hex-blob --databases app shop"
        );
        let tls = MariaDb.dump_command(&DumpSpec {
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
                .contains("--ssl --ssl-ca=/ca.pem --ssl-verify-server-cert --default"),
            "{:?}",
            tls.args
        );
        let load = MariaDb.load_command(&LoadSpec {
            defaults_file: "/f",
            socket: None,
            host: "127.0.0.1",
            port: 3307,
            user: "root",
        });
        assert_eq!(load.program, "mariadb");
        assert_eq!(
            load.args.join(" "),
            "--defaults-file=/f --host=127.0.0.1 --port=3307 --protocol=TCP --user=root --default-character-set=utf8mb4 --init-command=SET SESSION sql_log_bin = 0 --batch"
        );
        assert_eq!(
            MariaDb.dump_gtid("-- SET GLOBAL gtid_slave_pos='0-1-14,1-2-3';\n"),
            Some("0-1-14,1-2-3".to_string())
        );
        assert_eq!(
            MariaDb.dump_gtid("-- SET GLOBAL gtid_slave_pos='garbage';"),
            None
        );
        assert_eq!(MariaDb.dump_gtid("INSERT INTO t VALUES (1);"), None);
        assert_eq!(
            MariaDb.seed_position_sql("0-1-14").as_deref(),
            Some("SET GLOBAL gtid_slave_pos = '0-1-14'")
        );
    }

    #[test]
    fn packaged_server_listens_everywhere() {
        use strata_topology::{
            CredentialRef, LocalServer, Replication, ReplicationMode, SCHEMA_VERSION, Storage, Tls,
        };
        let cfg = NodeConfig {
            version: SCHEMA_VERSION,
            cluster_id: "orders".into(),
            node_id: "n1".into(),
            node_name: "orders-1".into(),
            role: Role::Source,
            region: "us-east-1".into(),
            engine: Engine::Mariadb,
            engine_version: "10.11".into(),
            server_id: 7,
            source: None,
            replication: Replication {
                mode: ReplicationMode::SemiSync,
                ack_count: 1,
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
        };
        let text = MariaDb.render_server_config(&cfg);
        assert!(text.starts_with("# Managed by strata-agent"));
        assert!(text.contains("\n[mariadbd]\n"), "{text}");
        assert!(text.contains("\nbind_address = 0.0.0.0\n"), "{text}");
        assert!(text.contains("\nskip_name_resolve = ON\n"), "{text}");
    }
}
