//! The `NodeConfig` every instance Strata launches carries in its user-data, and reading it
//! back: the source's config is the cluster's record of its engine and replication settings,
//! so replicas and regions inherit exactly what the source runs.

use std::collections::BTreeMap;

use base64::Engine as _;
use strata_topology::{
    CredentialRef, Engine, LocalServer, NodeConfig, Replication, ReplicationMode, Role,
    SCHEMA_VERSION, SourceEndpoint, Storage, Tls, parse_user_data,
};

use crate::aws::{AwsError, RegionClients};

/// Where the data volume is mounted on every node.
pub const DATA_MOUNT: &str = "/var/lib/mysql";
/// The device the first storage segment attaches at (the AWS layer's first free name).
pub const DATA_DEVICE: &str = "/dev/sdf";

/// The cluster-wide settings a node's config is made from.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub cluster_id: String,
    pub home_region: String,
    pub engine: Engine,
    pub engine_version: String,
    pub mode: ReplicationMode,
    pub ack_count: u32,
    pub ack_timeout_ms: u64,
    pub parameter_name: String,
}

impl ClusterSettings {
    /// The settings as the source's config records them.
    pub fn from_source(cfg: &NodeConfig) -> ClusterSettings {
        ClusterSettings {
            cluster_id: cfg.cluster_id.clone(),
            home_region: cfg.replication.credential.ssm_region.clone(),
            engine: cfg.engine,
            engine_version: cfg.engine_version.clone(),
            mode: cfg.replication.mode,
            ack_count: cfg.replication.ack_count,
            ack_timeout_ms: cfg.replication.ack_timeout_ms,
            parameter_name: cfg.replication.credential.ssm_parameter.clone(),
        }
    }
}

/// One node's config. `source` is `None` for the source itself.
pub fn node_config(
    s: &ClusterSettings,
    role: Role,
    node_name: &str,
    region: &str,
    server_id: u32,
    source: Option<&str>,
) -> NodeConfig {
    // Region replicas are always asynchronous: a commit never waits on another region.
    let mode = if role == Role::RegionReplica {
        ReplicationMode::Async
    } else {
        s.mode
    };
    NodeConfig {
        version: SCHEMA_VERSION,
        cluster_id: s.cluster_id.clone(),
        node_id: node_name.to_string(),
        node_name: node_name.to_string(),
        role,
        region: region.to_string(),
        engine: s.engine,
        engine_version: s.engine_version.clone(),
        server_id,
        source: source.map(|host| SourceEndpoint {
            host: host.to_string(),
            port: crate::aws::DEFAULT_ENGINE_PORT,
        }),
        replication: Replication {
            mode,
            ack_count: s.ack_count,
            ack_timeout_ms: s.ack_timeout_ms,
            user: "strata_repl".to_string(),
            credential: CredentialRef {
                ssm_parameter: s.parameter_name.clone(),
                ssm_region: s.home_region.clone(),
            },
        },
        local: LocalServer::default(),
        tls: Tls::default(),
        storage: Storage {
            device: DATA_DEVICE.to_string(),
            mount_point: DATA_MOUNT.to_string(),
            // The segment's own bounds travel as tags on its volume; these are the agent's
            // fallbacks until a segment is attached.
            max_size_gib: 16384,
            grow_at_percent: 80,
            grow_by_percent: 20,
            min_step_gib: 10,
        },
        admin: None,
        install: Default::default(),
        tags: BTreeMap::new(),
    }
}

/// The NodeConfig in an instance's user-data; `None` when the instance has none of ours.
pub async fn read_node_config(
    rc: &RegionClients,
    instance_id: &str,
) -> Result<Option<NodeConfig>, AwsError> {
    let out = rc
        .ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstanceAttribute", instance_id))?;
    let Some(b64) = out.user_data().and_then(|u| u.value()) else {
        return Ok(None);
    };
    // LocalStack may hand the script back as sent; AWS returns base64.
    let text = match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => b64.to_string(),
    };
    Ok(parse_user_data(&text).ok())
}

pub fn engine_from(s: &str) -> Option<Engine> {
    match s {
        "mariadb" => Some(Engine::Mariadb),
        "mysql" => Some(Engine::Mysql),
        _ => None,
    }
}

pub fn mode_from(s: &str) -> Option<ReplicationMode> {
    match s {
        "async" => Some(ReplicationMode::Async),
        "semi_sync" => Some(ReplicationMode::SemiSync),
        _ => None,
    }
}

pub fn mode_str(m: ReplicationMode) -> &'static str {
    match m {
        ReplicationMode::Async => "async",
        ReplicationMode::SemiSync => "semi_sync",
    }
}

pub fn default_engine_version(e: Engine) -> &'static str {
    match e {
        Engine::Mariadb => "10.11",
        Engine::Mysql => "8.4",
    }
}
