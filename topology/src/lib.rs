//! The contract between the Strata provider and the node agent.
//!
//! The provider builds one [`NodeConfig`] per instance it launches and renders it into
//! user-data with [`render_user_data`]; the agent on the instance reads the same JSON back from
//! `/etc/strata/node.json`. [`parse_user_data`] is the inverse, so tests can check what a launched
//! instance was told. This crate holds data and pure functions only: no I/O, no AWS, no SQL, and
//! never a secret (the replication password lives in SSM; the config only names the parameter).

pub mod backup;
mod boot;
pub mod failover;
pub mod replace;
pub mod roll;
mod shape;
pub mod tags;
mod user_data;

pub use boot::{
    AgentArtifact, Arch, Install, NodeState, TAG_NODE_ERROR, TAG_NODE_STATE, agent_bucket_name,
    agent_file_name, agent_object_key,
};

pub use failover::{
    CurrentRole, DnsRecords, Failover, FailoverTiming, LeaseRef, TAG_CURRENT_ROLE,
    TAG_LAST_FAILOVER_AT, TAG_LAST_FAILOVER_DURATION_MS, TAG_LAST_FAILOVER_REASON, TAG_LEASE_EPOCH,
};
pub use shape::{ClusterShape, ShapeError};
pub use user_data::{
    AGENT_BINARY_PATH, AGENT_CONFIG_PATH, AGENT_UNIT_NAME, UserDataError, decode_user_data,
    encode_user_data, parse_user_data, render_user_data,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The schema version this crate writes and the only one it accepts. Bump it on any change a
/// reader of the previous version would misread; the golden test pins the JSON of this version.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything one node needs to know to become its part of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Schema version; must equal [`SCHEMA_VERSION`].
    pub version: u32,
    /// The cluster name (`strata_cluster.id`).
    pub cluster_id: String,
    /// Stable id of the node (the provider uses the instance id once known, else its own key).
    pub node_id: String,
    /// Human name, used in tags and logs.
    pub node_name: String,
    pub role: Role,
    /// AWS region the node runs in.
    pub region: String,
    pub engine: Engine,
    /// Engine version, e.g. "10.11" for MariaDB or "8.4" for MySQL.
    pub engine_version: String,
    /// Unique within the cluster, 1..=4294967295.
    pub server_id: u32,
    /// Where this node replicates from; required for replicas, absent on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceEndpoint>,
    pub replication: Replication,
    /// How the agent reaches the local server.
    #[serde(default)]
    pub local: LocalServer,
    /// Server-side TLS for replication links (region replicas require it).
    #[serde(default)]
    pub tls: Tls,
    pub storage: Storage,
    /// The account clients and operators log in with (password in SSM). Every node creates it
    /// locally, outside the binlog, so a promoted replica has it too. None: no such account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Account>,
    /// What first boot installs: the engine from the OS's packages, the agent from S3.
    #[serde(default)]
    pub install: Install,
    /// Automatic failover: lease, DNS records, timings. None: the node keeps the role it was
    /// launched with. With it, `source` is only the first hint (see [`Failover`]). Older agents
    /// reject the field (unknown fields are refused) rather than misread it, so the schema
    /// version stays 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Server variables the user set (`strata_cluster.engine_settings`), written by the agent
    /// into its settings file ([`roll::render_settings_file`]) before the server first starts.
    /// Later changes reach running nodes through their desired-config object
    /// ([`roll::DesiredConfig`]), not through this field. Omitted when empty, so the
    /// version-2 JSON of a node without settings is unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engine_settings: BTreeMap<String, String>,
    /// Where backups go and the policy the backup cycle follows (`strata_cluster.backup_policy`).
    /// None: the cluster is not backed up. Omitted when None, so the version-2 JSON of a node
    /// without backups is unchanged; older agents refuse the field rather than ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<backup::BackupConfig>,
    /// The backup a new cluster's source loads before it takes writes
    /// (`strata_cluster.restore_from`); only in the source's config. Omitted when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<backup::RestoreFrom>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A database account whose password lives in SSM (never in the config itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: String,
    pub credential: CredentialRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The writable node of the home region.
    Source,
    /// A read replica in the home region; semi-sync when the cluster is.
    Replica,
    /// A read replica in another region: always asynchronous and over TLS.
    RegionReplica,
    /// The cluster's backup node (`strata_cluster.backup_policy`): a home node that replicates
    /// asynchronously from the current source and runs the validated backup cycle. It serves
    /// no reads (never in a reader record), never acknowledges semi-sync commits, is never an
    /// election candidate nor a switchover target, and follows failovers like a replica.
    Backup,
}

impl Role {
    pub fn is_replica(self) -> bool {
        !matches!(self, Role::Source)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Replica => "replica",
            Role::RegionReplica => "region_replica",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Mariadb,
    Mysql,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mariadb => "mariadb",
            Engine::Mysql => "mysql",
        }
    }

    /// The largest semi-sync ack count the engine can wait for. MariaDB (10.11 and later) has
    /// no `wait_for_slave_count`: a semi-sync commit waits for exactly one replica's ack.
    pub fn max_semi_sync_ack_count(self) -> u32 {
        match self {
            Engine::Mariadb => 1,
            Engine::Mysql => u32::MAX,
        }
    }

    /// Default path of the config file the agent owns for this engine.
    pub fn default_server_config_path(self) -> &'static str {
        match self {
            Engine::Mariadb => "/etc/mysql/mariadb.conf.d/90-strata.cnf",
            Engine::Mysql => "/etc/mysql/mysql.conf.d/90-strata.cnf",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEndpoint {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationMode {
    Async,
    SemiSync,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    pub mode: ReplicationMode,
    /// Replica acks a semi-sync commit waits for (ignored in async mode).
    #[serde(default = "default_ack_count")]
    pub ack_count: u32,
    /// How long a semi-sync commit waits before the source falls back to async.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// The replication account's user name.
    #[serde(default = "default_replication_user")]
    pub user: String,
    pub credential: CredentialRef,
}

/// Where the replication password lives. Only the location: the secret itself never appears
/// in a NodeConfig, user-data, logs or state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRef {
    /// SSM SecureString parameter name, e.g. "/strata/orders/replication-password".
    pub ssm_parameter: String,
    /// Region of the parameter (the home region, also for region replicas).
    pub ssm_region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalServer {
    /// TCP port the engine listens on (also the port replicas use to reach a source).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Unix socket the agent uses for its admin connection, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The server config file the agent owns; engine default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_config_path: Option<String>,
}

impl Default for LocalServer {
    fn default() -> Self {
        LocalServer {
            port: default_port(),
            socket: None,
            server_config_path: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate; the agent generates a self-signed one here when the file is missing.
    #[serde(default = "default_cert_file")]
    pub cert_file: String,
    #[serde(default = "default_key_file")]
    pub key_file: String,
    /// CA a replica verifies its source's certificate with; without it the link is encrypted
    /// but the source is not authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            cert_file: default_cert_file(),
            key_file: default_key_file(),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Block device of the data volume, e.g. "/dev/nvme1n1" or "/dev/xvdf".
    pub device: String,
    /// Where the data volume is mounted, e.g. "/var/lib/mysql".
    pub mount_point: String,
    /// The volume never grows beyond this.
    pub max_size_gib: u64,
    /// Grow when the filesystem is this full (1..=99).
    pub grow_at_percent: u8,
    /// Grow by this share of the current size (1..=100)...
    pub grow_by_percent: u8,
    /// ...but by at least this much.
    pub min_step_gib: u64,
}

fn default_port() -> u16 {
    3306
}
fn default_ack_count() -> u32 {
    1
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}
fn default_replication_user() -> String {
    "strata_repl".to_string()
}
fn default_cert_file() -> String {
    "/etc/strata/tls/server.crt".to_string()
}
fn default_key_file() -> String {
    "/etc/strata/tls/server.key".to_string()
}

/// Why a NodeConfig cannot be used. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node config: invalid JSON: {0}")]
    Json(String),
    #[error(
        "node config: schema version {found} is not supported (this build reads version {expected})"
    )]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("node config: `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("node config: `server_id` must be between 1 and 4294967295 (0 disables replication)")]
    ServerIdZero,
    #[error("node config: role `{role}` needs a `source` endpoint to replicate from")]
    ReplicaWithoutSource { role: Role },
    #[error("node config: the source must not have a `source` endpoint")]
    SourceWithSource,
    #[error("node config: `replication.ack_count` must be at least 1 in semi_sync mode")]
    AckCountZero,
    #[error(
        "node config: `replication.ack_count` = {requested}, but {engine} waits for at most {max} replica ack(s) per commit (MariaDB has no wait-for-replica-count setting)"
    )]
    AckCountUnsupported {
        engine: Engine,
        requested: u32,
        max: u32,
    },
    #[error("node config: `replication.ack_timeout_ms` must be at least 1 in semi_sync mode")]
    AckTimeoutZero,
    #[error("node config: `{field}` = {value} is out of range ({range})")]
    OutOfRange {
        field: &'static str,
        value: u64,
        range: &'static str,
    },
    #[error("node config: `{field}` must be an absolute path, got {value:?}")]
    NotAbsolute { field: &'static str, value: String },
    #[error("node config: `{field}` contains a character that is not allowed: {value:?}")]
    BadCharacter { field: &'static str, value: String },
    #[error("node config: `backup.policy`: {0}")]
    BackupPolicy(#[from] backup::PolicyError),
    #[error("node config: `engine_settings`: {0}")]
    EngineSetting(#[from] roll::EngineSettingError),
    #[error("node config: `restore`: {0}")]
    Restore(#[from] backup::BackupObjectError),
    #[error("node config: `restore` is for the source only (this node is {0})")]
    RestoreOnReplica(Role),
}

impl NodeConfig {
    /// Parses and validates the JSON form (the content of `/etc/strata/node.json`).
    pub fn from_json(json: &str) -> Result<NodeConfig, ConfigError> {
        // Read the version first so an old agent reading a newer config says "version" rather
        // than tripping over a field it does not know.
        #[derive(Deserialize)]
        struct VersionOnly {
            version: Option<u32>,
        }
        let probe: VersionOnly =
            serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        let found = probe.version.unwrap_or(0);
        if found != SCHEMA_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        let cfg: NodeConfig =
            serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The canonical JSON form (pretty, stable field order).
    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks everything that can be checked without talking to a server.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != SCHEMA_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                found: self.version,
                expected: SCHEMA_VERSION,
            });
        }
        non_empty("cluster_id", &self.cluster_id)?;
        non_empty("node_id", &self.node_id)?;
        non_empty("node_name", &self.node_name)?;
        non_empty("region", &self.region)?;
        non_empty("engine_version", &self.engine_version)?;
        if self.server_id == 0 {
            return Err(ConfigError::ServerIdZero);
        }
        match (&self.source, self.role) {
            (None, role) if role.is_replica() => {
                return Err(ConfigError::ReplicaWithoutSource { role });
            }
            (Some(_), Role::Source) => return Err(ConfigError::SourceWithSource),
            (Some(src), _) => {
                non_empty("source.host", &src.host)?;
                // The host ends up inside a quoted SQL literal; keep it to host-name characters.
                if !src
                    .host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
                {
                    return Err(ConfigError::BadCharacter {
                        field: "source.host",
                        value: src.host.clone(),
                    });
                }
                if src.port == 0 {
                    return Err(ConfigError::OutOfRange {
                        field: "source.port",
                        value: 0,
                        range: "1..=65535",
                    });
                }
            }
            (None, _) => {}
        }
        let r = &self.replication;
        account_user("replication.user", &r.user)?;
        non_empty(
            "replication.credential.ssm_parameter",
            &r.credential.ssm_parameter,
        )?;
        non_empty(
            "replication.credential.ssm_region",
            &r.credential.ssm_region,
        )?;
        if r.mode == ReplicationMode::SemiSync {
            if r.ack_count == 0 {
                return Err(ConfigError::AckCountZero);
            }
            let max = self.engine.max_semi_sync_ack_count();
            if r.ack_count > max {
                return Err(ConfigError::AckCountUnsupported {
                    engine: self.engine,
                    requested: r.ack_count,
                    max,
                });
            }
            if r.ack_timeout_ms == 0 {
                return Err(ConfigError::AckTimeoutZero);
            }
        }
        if self.local.port == 0 {
            return Err(ConfigError::OutOfRange {
                field: "local.port",
                value: 0,
                range: "1..=65535",
            });
        }
        absolute("tls.cert_file", &self.tls.cert_file)?;
        absolute("tls.key_file", &self.tls.key_file)?;
        if let Some(ca) = &self.tls.ca_file {
            absolute("tls.ca_file", ca)?;
        }
        if let Some(p) = &self.local.server_config_path {
            absolute("local.server_config_path", p)?;
        }
        let s = &self.storage;
        absolute("storage.device", &s.device)?;
        absolute("storage.mount_point", &s.mount_point)?;
        if s.max_size_gib == 0 {
            return Err(ConfigError::OutOfRange {
                field: "storage.max_size_gib",
                value: 0,
                range: "1..=65536",
            });
        }
        if !(1..=99).contains(&s.grow_at_percent) {
            return Err(ConfigError::OutOfRange {
                field: "storage.grow_at_percent",
                value: s.grow_at_percent.into(),
                range: "1..=99",
            });
        }
        if !(1..=100).contains(&s.grow_by_percent) {
            return Err(ConfigError::OutOfRange {
                field: "storage.grow_by_percent",
                value: s.grow_by_percent.into(),
                range: "1..=100",
            });
        }
        if let Some(admin) = &self.admin {
            account_user("admin.user", &admin.user)?;
            non_empty(
                "admin.credential.ssm_parameter",
                &admin.credential.ssm_parameter,
            )?;
            non_empty("admin.credential.ssm_region", &admin.credential.ssm_region)?;
        }
        if let Some(a) = &self.install.agent {
            // These end up in a shell script and a URL: keep them to S3's safe characters.
            for (field, v) in [
                ("install.agent.bucket", &a.bucket),
                ("install.agent.key", &a.key),
                ("install.agent.region", &a.region),
            ] {
                s3_safe(field, v)?;
            }
            if a.sha256.len() != 64 || !a.sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
            {
                return Err(ConfigError::BadCharacter {
                    field: "install.agent.sha256",
                    value: a.sha256.clone(),
                });
            }
        }
        if let Some(f) = &self.failover {
            self.validate_failover(f)?;
        }
        for (k, v) in &self.engine_settings {
            roll::check_engine_setting(k, v)?;
        }
        if let Some(b) = &self.backup {
            b.policy.validate()?;
            for (field, v) in [
                ("backup.bucket", &b.bucket),
                ("backup.key_prefix", &b.key_prefix),
                ("backup.region", &b.region),
            ] {
                s3_safe(field, v)?;
            }
        }
        if let Some(r) = &self.restore {
            if self.role != Role::Source {
                return Err(ConfigError::RestoreOnReplica(self.role));
            }
            r.validate()?;
        }
        Ok(())
    }

    fn validate_failover(&self, f: &Failover) -> Result<(), ConfigError> {
        for (field, v) in [
            ("failover.lease.bucket", &f.lease.bucket),
            ("failover.lease.key_prefix", &f.lease.key_prefix),
            ("failover.lease.region", &f.lease.region),
        ] {
            s3_safe(field, v)?;
        }
        if let Some(d) = &f.dns {
            for (field, v) in [
                ("failover.dns.zone_id", &d.zone_id),
                ("failover.dns.writer_name", &d.writer_name),
                ("failover.dns.reader_name", &d.reader_name),
            ] {
                s3_safe(field, v)?;
            }
        }
        if let Some(a) = &f.advertise {
            non_empty("failover.advertise.host", &a.host)?;
            if !a
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
            {
                return Err(ConfigError::BadCharacter {
                    field: "failover.advertise.host",
                    value: a.host.clone(),
                });
            }
        }
        let t = &f.timing;
        // The source must renew several times per lease, and the margin must leave it time
        // to fence itself before anyone else may take over.
        if t.heartbeat_ms == 0 || t.lease_ms < 2 * t.heartbeat_ms {
            return Err(ConfigError::OutOfRange {
                field: "failover.timing.lease_ms",
                value: t.lease_ms,
                range: ">= 2 * heartbeat_ms, heartbeat_ms >= 1",
            });
        }
        if t.clock_margin_ms == 0 || t.clock_margin_ms >= t.lease_ms {
            return Err(ConfigError::OutOfRange {
                field: "failover.timing.clock_margin_ms",
                value: t.clock_margin_ms,
                range: "1..lease_ms",
            });
        }
        if t.detect_misses == 0 {
            return Err(ConfigError::OutOfRange {
                field: "failover.timing.detect_misses",
                value: 0,
                range: ">= 1",
            });
        }
        Ok(())
    }

    /// Whether this node takes part in semi-sync (the source and home replicas of a semi-sync
    /// cluster; region replicas and the backup node are always asynchronous).
    pub fn semi_sync(&self) -> bool {
        self.replication.mode == ReplicationMode::SemiSync
            && !matches!(self.role, Role::RegionReplica | Role::Backup)
    }

    /// The server config file the agent owns on this node.
    pub fn server_config_path(&self) -> &str {
        self.local
            .server_config_path
            .as_deref()
            .unwrap_or(self.engine.default_server_config_path())
    }
}

/// A database user name: it is quoted into SQL, so 1 to 32 of `[A-Za-z0-9_-]`.
fn account_user(field: &'static str, user: &str) -> Result<(), ConfigError> {
    non_empty(field, user)?;
    if user.len() > 32
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::BadCharacter {
            field,
            value: user.to_string(),
        });
    }
    Ok(())
}

/// Non-empty and only S3's safe characters: these values end up in shell scripts, URLs and
/// record names.
fn s3_safe(field: &'static str, v: &str) -> Result<(), ConfigError> {
    non_empty(field, v)?;
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        Ok(())
    } else {
        Err(ConfigError::BadCharacter {
            field,
            value: v.to_string(),
        })
    }
}

fn non_empty(field: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(ConfigError::Empty { field })
    } else {
        Ok(())
    }
}

fn absolute(field: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::NotAbsolute {
            field,
            value: v.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_replica() -> NodeConfig {
        NodeConfig {
            version: SCHEMA_VERSION,
            cluster_id: "orders".into(),
            node_id: "i-0abc".into(),
            node_name: "orders-replica-1".into(),
            role: Role::Replica,
            region: "us-east-1".into(),
            engine: Engine::Mariadb,
            engine_version: "10.11".into(),
            server_id: 2,
            source: Some(SourceEndpoint {
                host: "10.0.1.10".into(),
                port: 3306,
            }),
            replication: Replication {
                mode: ReplicationMode::SemiSync,
                ack_count: 1,
                ack_timeout_ms: 10_000,
                user: "strata_repl".into(),
                credential: CredentialRef {
                    ssm_parameter: "/strata/orders/replication-password".into(),
                    ssm_region: "us-east-1".into(),
                },
            },
            local: LocalServer::default(),
            tls: Tls::default(),
            storage: Storage {
                device: "/dev/xvdf".into(),
                mount_point: "/var/lib/mysql".into(),
                max_size_gib: 2000,
                grow_at_percent: 80,
                grow_by_percent: 20,
                min_step_gib: 10,
            },
            admin: Some(Account {
                user: "strata_admin".into(),
                credential: CredentialRef {
                    ssm_parameter: "/strata/orders/admin-password".into(),
                    ssm_region: "us-east-1".into(),
                },
            }),
            install: Install {
                engine_packages: true,
                agent: Some(AgentArtifact {
                    bucket: "strata-orders-000000000000-us-east-1".into(),
                    key: "agent/0.1.0/x86_64/ab12/strata-agent".into(),
                    region: "us-east-1".into(),
                    sha256: "ab".repeat(32),
                }),
            },
            failover: None,
            engine_settings: BTreeMap::new(),
            backup: None,
            restore: None,
            tags: BTreeMap::from([("team".to_string(), "payments".to_string())]),
        }
    }

    pub(crate) fn sample_failover() -> Failover {
        Failover {
            lease: LeaseRef {
                bucket: "strata-orders-000000000000-us-east-1".into(),
                key_prefix: failover::default_key_prefix("orders"),
                region: "us-east-1".into(),
            },
            dns: Some(DnsRecords {
                zone_id: "Z0123456789ABCDEFGHIJ".into(),
                writer_name: "writer.orders.strata.internal".into(),
                reader_name: "reader.orders.strata.internal".into(),
                ttl: 5,
            }),
            timing: FailoverTiming::default(),
            advertise: Some(SourceEndpoint {
                host: "10.0.1.11".into(),
                port: 3306,
            }),
            stop_old_source: true,
            allow_async_fallback: false,
        }
    }

    /// The failover part as both sides read it (the rest of the NodeConfig is pinned above).
    const FAILOVER_GOLDEN: &str = r#"{
  "lease": {
    "bucket": "strata-orders-000000000000-us-east-1",
    "key_prefix": "failover/orders",
    "region": "us-east-1"
  },
  "dns": {
    "zone_id": "Z0123456789ABCDEFGHIJ",
    "writer_name": "writer.orders.strata.internal",
    "reader_name": "reader.orders.strata.internal",
    "ttl": 5
  },
  "timing": {
    "heartbeat_ms": 1000,
    "lease_ms": 4000,
    "clock_margin_ms": 1000,
    "detect_misses": 3
  },
  "advertise": {
    "host": "10.0.1.11",
    "port": 3306
  },
  "stop_old_source": true,
  "allow_async_fallback": false
}"#;

    #[test]
    fn failover_json_is_pinned_and_round_trips() {
        let mut c = sample_replica();
        c.failover = Some(sample_failover());
        let json = c.to_json();
        let start = json.find("\"failover\": ").unwrap() + "\"failover\": ".len();
        let end = json.find(",\n  \"tags\"").unwrap();
        let part: String = json[start..end]
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(part, FAILOVER_GOLDEN);
        assert_eq!(NodeConfig::from_json(&json).unwrap(), c);
        // Without the field, the JSON is exactly version 2's.
        assert!(!sample_replica().to_json().contains("failover"));
    }

    #[test]
    fn backup_config_round_trips_and_is_validated() {
        let mut cfg = sample_replica();
        cfg.backup = Some(backup::BackupConfig {
            policy: backup::BackupPolicy {
                interval_hours: 24,
                keep: 7,
                window_start: "03:00".into(),
            },
            bucket: "strata-orders-000000000000-us-east-1".into(),
            key_prefix: backup::default_key_prefix("orders"),
            region: "us-east-1".into(),
        });
        let json = cfg.to_json();
        assert_eq!(NodeConfig::from_json(&json).unwrap(), cfg);
        // A config without backups has no `backup` key: older readers see the JSON unchanged.
        assert!(!sample_replica().to_json().contains("\"backup\""));
        let mut bad = cfg.clone();
        if let Some(b) = bad.backup.as_mut() {
            b.policy.keep = 0;
        }
        let e = bad.validate().unwrap_err();
        assert!(e.to_string().contains("backup_policy.keep"), "{e}");
        let mut bad = cfg;
        if let Some(b) = bad.backup.as_mut() {
            b.bucket = "a bucket; rm".into();
        }
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::BadCharacter {
                field: "backup.bucket",
                ..
            })
        ));
    }

    #[test]
    fn engine_settings_round_trip_and_are_validated() {
        let mut c = sample_replica();
        assert!(!c.to_json().contains("engine_settings"));
        c.engine_settings
            .insert("max_connections".into(), "300".into());
        let json = c.to_json();
        assert!(json.contains("\"max_connections\": \"300\""), "{json}");
        assert_eq!(NodeConfig::from_json(&json).unwrap(), c);
        c.engine_settings.insert("sync_binlog".into(), "0".into());
        let e = NodeConfig::from_json(&c.to_json()).unwrap_err().to_string();
        assert!(
            e.contains("engine_settings") && e.contains("sync_binlog"),
            "{e}"
        );
    }

    #[test]
    fn failover_validation_names_the_problem() {
        let mut c = sample_replica();
        let mut f = sample_failover();
        f.timing.lease_ms = f.timing.heartbeat_ms;
        c.failover = Some(f);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange {
                field: "failover.timing.lease_ms",
                ..
            })
        ));
        let mut f = sample_failover();
        f.timing.clock_margin_ms = f.timing.lease_ms;
        c.failover = Some(f);
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));
        let mut f = sample_failover();
        f.lease.key_prefix = "a b".into();
        c.failover = Some(f);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadCharacter { .. })
        ));
        let mut f = sample_failover();
        f.dns.as_mut().unwrap().writer_name = "w'x".into();
        c.failover = Some(f);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadCharacter { .. })
        ));
        c.failover = Some(sample_failover());
        assert_eq!(c.validate(), Ok(()));
    }

    /// The JSON form both sides read. If this test fails, the provider and the agent no longer
    /// agree: bump SCHEMA_VERSION rather than editing the string to match.
    const GOLDEN: &str = r#"{
  "version": 2,
  "cluster_id": "orders",
  "node_id": "i-0abc",
  "node_name": "orders-replica-1",
  "role": "replica",
  "region": "us-east-1",
  "engine": "mariadb",
  "engine_version": "10.11",
  "server_id": 2,
  "source": {
    "host": "10.0.1.10",
    "port": 3306
  },
  "replication": {
    "mode": "semi_sync",
    "ack_count": 1,
    "ack_timeout_ms": 10000,
    "user": "strata_repl",
    "credential": {
      "ssm_parameter": "/strata/orders/replication-password",
      "ssm_region": "us-east-1"
    }
  },
  "local": {
    "port": 3306
  },
  "tls": {
    "cert_file": "/etc/strata/tls/server.crt",
    "key_file": "/etc/strata/tls/server.key"
  },
  "storage": {
    "device": "/dev/xvdf",
    "mount_point": "/var/lib/mysql",
    "max_size_gib": 2000,
    "grow_at_percent": 80,
    "grow_by_percent": 20,
    "min_step_gib": 10
  },
  "admin": {
    "user": "strata_admin",
    "credential": {
      "ssm_parameter": "/strata/orders/admin-password",
      "ssm_region": "us-east-1"
    }
  },
  "install": {
    "engine_packages": true,
    "agent": {
      "bucket": "strata-orders-000000000000-us-east-1",
      "key": "agent/0.1.0/x86_64/ab12/strata-agent",
      "region": "us-east-1",
      "sha256": "abababababababababababababababababababababababababababababababab"
    }
  },
  "tags": {
    "team": "payments"
  }
}"#;

    #[test]
    fn json_form_is_pinned() {
        assert_eq!(sample_replica().to_json(), GOLDEN);
        assert_eq!(NodeConfig::from_json(GOLDEN).unwrap(), sample_replica());
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let json = r#"{"version":2,"cluster_id":"c","node_id":"n","node_name":"n","role":"source",
            "region":"us-east-1","engine":"mysql","engine_version":"8.4","server_id":1,
            "replication":{"mode":"async","credential":{"ssm_parameter":"/p","ssm_region":"us-east-1"}},
            "storage":{"device":"/dev/xvdf","mount_point":"/data","max_size_gib":10,
                       "grow_at_percent":80,"grow_by_percent":10,"min_step_gib":1}}"#;
        let cfg = NodeConfig::from_json(json).unwrap();
        assert_eq!(cfg.replication.user, "strata_repl");
        assert_eq!(cfg.replication.ack_timeout_ms, 10_000);
        assert_eq!(cfg.local.port, 3306);
        assert_eq!(cfg.admin, None);
        assert_eq!(cfg.install, Install::default());
        assert!(cfg.install.engine_packages);
        assert_eq!(
            cfg.server_config_path(),
            "/etc/mysql/mysql.conf.d/90-strata.cnf"
        );
    }

    #[test]
    fn unknown_engine_and_fields_are_rejected() {
        let bad_engine = GOLDEN.replace("\"mariadb\"", "\"postgres\"");
        let err = NodeConfig::from_json(&bad_engine).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `postgres`"),
            "{err}"
        );
        let extra = GOLDEN.replace("\"version\": 2,", "\"version\": 2, \"password\": \"x\",");
        let err = NodeConfig::from_json(&extra).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `password`"),
            "{err}"
        );
    }

    #[test]
    fn other_versions_are_rejected_by_version() {
        let v1 = GOLDEN.replace("\"version\": 2", "\"version\": 1");
        assert_eq!(
            NodeConfig::from_json(&v1).unwrap_err(),
            ConfigError::UnsupportedVersion {
                found: 1,
                expected: 2
            }
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = sample_replica();
        c.server_id = 0;
        assert_eq!(c.validate(), Err(ConfigError::ServerIdZero));

        let mut c = sample_replica();
        c.source = None;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ReplicaWithoutSource {
                role: Role::Replica
            })
        );

        let mut c = sample_replica();
        c.role = Role::Source;
        assert_eq!(c.validate(), Err(ConfigError::SourceWithSource));

        let mut c = sample_replica();
        c.replication.ack_count = 0;
        assert_eq!(c.validate(), Err(ConfigError::AckCountZero));

        let mut c = sample_replica();
        c.replication.ack_count = 2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::AckCountUnsupported {
                requested: 2,
                max: 1,
                ..
            })
        ));
        c.engine = Engine::Mysql;
        assert_eq!(c.validate(), Ok(()));

        // Async mode ignores the ack settings.
        let mut c = sample_replica();
        c.replication.mode = ReplicationMode::Async;
        c.replication.ack_count = 0;
        assert_eq!(c.validate(), Ok(()));

        let mut c = sample_replica();
        c.source.as_mut().unwrap().host = "x'; DROP".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadCharacter { .. })
        ));

        let mut c = sample_replica();
        c.storage.grow_at_percent = 100;
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));
    }

    #[test]
    fn region_replicas_never_semi_sync() {
        let mut c = sample_replica();
        assert!(c.semi_sync());
        c.role = Role::RegionReplica;
        assert!(!c.semi_sync());
    }
}
