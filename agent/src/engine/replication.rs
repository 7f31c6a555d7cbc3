//! One builder for the replication statements of both engine families. MariaDB and MySQL 8.4
//! send the same statements and read the same status columns; they differ in the words
//! (`SLAVE`/`MASTER` against `REPLICA`/`SOURCE`), in how a link positions by GTID, and in
//! one option MySQL needs without TLS. A [`Dialect`] holds exactly those differences; the
//! statements are built here once, so a fix to one (a new option, a timeout) reaches both.

use super::{LinkSpec, ReplicaLink, SemiSyncStatusNames, quote};
use std::collections::BTreeMap;

/// The words and the few real differences of one engine family's replication SQL.
#[derive(Debug)]
pub struct Dialect {
    /// `CHANGE MASTER TO` / `CHANGE REPLICATION SOURCE TO`.
    pub change_to: &'static str,
    /// Prefix of the link's options: `MASTER_` / `SOURCE_`.
    pub option: &'static str,
    /// The option that makes the link position by GTID.
    pub gtid_option: &'static str,
    /// Options added when the link runs without TLS (MySQL's caching_sha2_password needs the
    /// source's RSA key to send the password).
    pub without_tls: &'static str,
    /// Word of the status columns naming the source: `Master` / `Source`.
    pub source_col: &'static str,
    /// Word of the status columns naming the replica threads: `Slave` / `Replica`.
    pub replica_col: &'static str,
    /// Column and value (compared case-insensitively) that show GTID positioning.
    pub gtid_positioning: (&'static str, &'static str),
    /// Status column with the GTIDs the IO thread received: `Gtid_IO_Pos` (a MariaDB
    /// position) / `Retrieved_Gtid_Set` (a MySQL set).
    pub received_gtids_col: &'static str,
    pub status: &'static str,
    pub start: &'static str,
    pub stop: &'static str,
    pub start_io: &'static str,
    pub stop_io: &'static str,
    pub start_sql: &'static str,
    pub reset_all: &'static str,
    pub hosts: &'static str,
    /// Column of `hosts` that holds the server id.
    pub hosts_server_id: &'static str,
    /// The server variable behind [`REPLICA_NET_TIMEOUT_S`].
    pub net_timeout_var: &'static str,
    pub semi_sync: SemiSyncStatusNames,
    /// The (source, replica) semi-sync on/off variables.
    pub semi_sync_vars: (&'static str, &'static str),
}

/// Seconds between a broken link's reconnect attempts: a replica that lost its source for a
/// moment (a network blip) is back a second after it returns.
const CONNECT_RETRY_S: u32 = 1;

/// Seconds without a byte from the source before a replica's IO thread gives the connection
/// up, which is also how long one connect attempt may take. The server default (60 s) lets an
/// IO thread sit in a read or a connect to a source that drops packets (a network cut) for a
/// minute, and `STOP SLAVE` waits for it: a failover that re-points replicas then stalls
/// that long. 4 s with a heartbeat every 2 s is what failover tools (orchestrator) advise; a
/// late heartbeat costs a reconnect from the replica's GTID position, nothing more.
pub const REPLICA_NET_TIMEOUT_S: u32 = 4;

/// The source's heartbeat interval on an idle link, below the timeout above.
const HEARTBEAT_PERIOD_S: u32 = REPLICA_NET_TIMEOUT_S / 2;

impl Dialect {
    /// Points a stopped replica at its source.
    pub fn change_source_sql(&self, link: &LinkSpec<'_>) -> String {
        let o = self.option;
        let mut change = format!(
            "{} {o}HOST = {}, {o}PORT = {}, {o}USER = {}, {o}PASSWORD = {}, {}, {o}CONNECT_RETRY = {CONNECT_RETRY_S}, {o}HEARTBEAT_PERIOD = {HEARTBEAT_PERIOD_S}",
            self.change_to,
            quote(link.host),
            link.port,
            quote(link.user),
            quote(link.password),
            self.gtid_option,
        );
        if link.tls {
            change.push_str(&format!(", {o}SSL = 1"));
            match link.ca_file {
                Some(ca) => change.push_str(&format!(
                    ", {o}SSL_CA = {}, {o}SSL_VERIFY_SERVER_CERT = 1",
                    quote(ca)
                )),
                None => change.push_str(&format!(", {o}SSL_VERIFY_SERVER_CERT = 0")),
            }
        } else {
            change.push_str(&format!(", {o}SSL = 0{}", self.without_tls));
        }
        change
    }

    /// Normalizes one row of the replica status (column name to value).
    pub fn parse_replica_status(&self, row: &BTreeMap<String, Option<String>>) -> ReplicaLink {
        let s = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
        let (src, rep) = (self.source_col, self.replica_col);
        let (gtid_col, gtid_on) = self.gtid_positioning;
        ReplicaLink {
            source_host: s(&format!("{src}_Host")),
            source_port: s(&format!("{src}_Port")).parse().unwrap_or(0),
            source_user: s(&format!("{src}_User")),
            io_running: s(&format!("{rep}_IO_Running")),
            sql_running: s(&format!("{rep}_SQL_Running")),
            gtid_positioning: s(gtid_col).eq_ignore_ascii_case(gtid_on),
            ssl: s(&format!("{src}_SSL_Allowed")).eq_ignore_ascii_case("yes"),
            seconds_behind_source: s(&format!("Seconds_Behind_{src}")).parse().ok(),
            last_io_errno: s("Last_IO_Errno").parse().unwrap_or(0),
            last_io_error: s("Last_IO_Error"),
            last_sql_errno: s("Last_SQL_Errno").parse().unwrap_or(0),
            last_sql_error: s("Last_SQL_Error"),
        }
    }

    /// The GTIDs the IO thread received, when the row shows any.
    pub fn received_gtids(&self, row: &BTreeMap<String, Option<String>>) -> Option<String> {
        row.get(self.received_gtids_col)
            .cloned()
            .flatten()
            .map(|s| s.split_whitespace().collect::<String>())
            .filter(|s| !s.is_empty())
    }

    /// Whether a replica status row shows every received event applied (by coordinates).
    pub fn relay_log_applied(&self, row: &BTreeMap<String, Option<String>>) -> bool {
        let s = |k: String| row.get(&k).cloned().flatten().unwrap_or_default();
        let src = self.source_col;
        s(format!("{src}_Log_File")) == s(format!("Relay_{src}_Log_File"))
            && s(format!("Read_{src}_Log_Pos")) == s(format!("Exec_{src}_Log_Pos"))
    }

    /// Semi-sync replica settings take effect when the IO thread reconnects.
    pub fn restart_io_thread_sql(&self) -> Vec<String> {
        vec![self.stop_io.into(), self.start_io.into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{mariadb, mysql};

    fn row(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    /// A replica's received GTIDs, from each dialect's column; a MySQL set that the server
    /// wraps over lines reads as one.
    #[test]
    fn received_gtids_are_read_from_each_dialects_column() {
        let m = mariadb::DIALECT.received_gtids(&row(&[
            ("Gtid_IO_Pos", "0-1-2713"),
            ("Retrieved_Gtid_Set", "x"),
        ]));
        assert_eq!(m.as_deref(), Some("0-1-2713"));
        let y = mysql::DIALECT.received_gtids(&row(&[(
            "Retrieved_Gtid_Set",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2",
        )]));
        assert_eq!(
            y.as_deref(),
            Some(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2"
            )
        );
        assert_eq!(
            mariadb::DIALECT.received_gtids(&row(&[("Gtid_IO_Pos", "")])),
            None
        );
        assert_eq!(mariadb::DIALECT.received_gtids(&row(&[])), None);
    }

    /// The two dialects read the same facts from their own column names.
    #[test]
    fn both_dialects_read_the_same_link() {
        let maria = row(&[
            ("Master_Host", "10.0.0.5"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Yes"),
            ("Using_Gtid", "Slave_Pos"),
            ("Seconds_Behind_Master", "0"),
            ("Master_Log_File", "b.000002"),
            ("Relay_Master_Log_File", "b.000002"),
            ("Read_Master_Log_Pos", "77"),
            ("Exec_Master_Log_Pos", "77"),
        ]);
        let my = row(&[
            ("Source_Host", "10.0.0.5"),
            ("Source_Port", "3306"),
            ("Replica_IO_Running", "Yes"),
            ("Auto_Position", "1"),
            ("Seconds_Behind_Source", "0"),
            ("Source_Log_File", "b.000002"),
            ("Relay_Source_Log_File", "b.000002"),
            ("Read_Source_Log_Pos", "77"),
            ("Exec_Source_Log_Pos", "70"),
        ]);
        let (a, b) = (
            mariadb::DIALECT.parse_replica_status(&maria),
            mysql::DIALECT.parse_replica_status(&my),
        );
        assert_eq!(a, b);
        assert!(a.gtid_positioning && a.io_running());
        assert_eq!(a.seconds_behind_source, Some(0));
        assert!(mariadb::DIALECT.relay_log_applied(&maria));
        assert!(
            !mysql::DIALECT.relay_log_applied(&my),
            "77 read, 70 applied"
        );
    }
}
