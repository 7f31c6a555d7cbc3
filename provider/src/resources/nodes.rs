//! The `NodeConfig` every instance Strata launches carries in its user-data, and reading it
//! back: the source's config is the cluster's record of its engine and replication settings,
//! so replicas and regions inherit exactly what the source runs.

use std::collections::BTreeMap;

use strata_topology::{
    Account, AgentArtifact, Arch, CredentialRef, DnsRecords, Engine, Failover, FailoverTiming,
    Install, LeaseRef, LocalServer, NodeConfig, Replication, ReplicationMode, Role, SCHEMA_VERSION,
    SourceEndpoint, Storage, Tls, agent_object_key, parse_user_data,
};

use crate::aws::artifact::{self, AGENT_VERSION};
use crate::aws::{AwsError, Clients, ObjectTags, RegionClients};
use crate::cty::{AttributePath, Value};
use crate::framework::{ApplyFailure, Diagnostic, Diagnostics};

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
    /// The admin account every node creates (None on clusters made before it existed).
    pub admin: Option<Account>,
    /// What first boot installs; a node of another architecture gets its own agent key.
    pub install: Install,
    /// Automatic failover as the source's config has it (`None`: a cluster made before
    /// failover, or one without a bucket for the lease). Each node gets a copy with its own
    /// region's reader name.
    pub failover: Option<Failover>,
    /// `engine_settings` at launch (a later change rolls through the desired-config objects
    /// in the lease store, not through user-data).
    pub engine_settings: BTreeMap<String, String>,
    /// `backup_policy` with where the backups go; None: no backups.
    pub backup: Option<strata_topology::backup::BackupConfig>,
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
            admin: cfg.admin.clone(),
            install: cfg.install.clone(),
            failover: cfg.failover.clone(),
            engine_settings: cfg.engine_settings.clone(),
            backup: cfg.backup.clone(),
        }
    }
}

/// The failover section of a cluster: the lease in the cluster's own bucket (so none when the
/// image has the agent baked in and no bucket is made), and the zone's records when there is
/// a zone. Timings are the contract's defaults.
pub fn failover_for(
    cluster_id: &str,
    home_region: &str,
    install: &Install,
    zone: Option<&crate::aws::dns::Zone>,
) -> Option<Failover> {
    let bucket = install.agent.as_ref()?.bucket.clone();
    Some(Failover {
        lease: LeaseRef {
            bucket,
            key_prefix: strata_topology::failover::default_key_prefix(cluster_id),
            region: home_region.to_string(),
        },
        dns: zone.map(|z| DnsRecords {
            zone_id: z.zone_id.clone(),
            writer_name: crate::aws::dns::writer_name(&z.base),
            reader_name: crate::aws::dns::reader_name(&z.base),
            ttl: crate::aws::dns::DEFAULT_TTL,
        }),
        timing: FailoverTiming::default(),
        advertise: None,
        stop_old_source: true,
        allow_async_fallback: false,
    })
}

/// The `<cluster>.<domain>` part of the cluster's endpoint names, from its writer name.
pub fn dns_base(f: &Failover) -> Option<String> {
    f.dns
        .as_ref()
        .and_then(|d| d.writer_name.strip_prefix("writer.").map(str::to_string))
}

/// What a node of `arch` installs at first boot, given the cluster's install: the same, with
/// the agent build for `arch` (uploaded into the cluster's bucket if it is not there yet: a
/// replica may run another architecture, or a newer provider than the cluster's create).
pub async fn node_install(
    c: &Clients,
    s: &ClusterSettings,
    arch: Arch,
) -> Result<Install, AwsError> {
    let Some(a) = &s.install.agent else {
        return Ok(s.install.clone());
    };
    let build = artifact::local_agent(arch).await?;
    let key = agent_object_key(AGENT_VERSION, arch, &build.sha256);
    let rc = c.region(Some(&a.region)).await?;
    let resource = format!("strata_cluster.{}", s.cluster_id);
    let tags = crate::aws::build_tags(
        c.default_tags(),
        &BTreeMap::new(),
        &ObjectTags {
            cluster: &s.cluster_id,
            resource: &resource,
            role: Some("agent-artifacts"),
            creation_token: "",
            name: None,
        },
    );
    artifact::ensure_object(&rc, &a.bucket, &key, &build, &tags, false).await?;
    Ok(Install {
        engine_packages: s.install.engine_packages,
        agent: Some(AgentArtifact {
            bucket: a.bucket.clone(),
            key,
            region: a.region.clone(),
            sha256: build.sha256.clone(),
        }),
    })
}

/// Plan-time check: the instance type's architecture has an agent build this provider can
/// upload. The error sits on `instance_type` and says what to do instead.
pub fn check_agent_build(instance_type: &str) -> Result<(), Diagnostics> {
    let arch = crate::aws::arch_of(instance_type);
    artifact::find_agent(arch).map(|_| ()).map_err(|e| {
        Diagnostics::from(
            Diagnostic::error(
                format!("No strata-agent build for instance_type {instance_type:?} ({arch})"),
                e.to_string(),
            )
            .at(AttributePath::attr("instance_type")),
        )
    })
}

/// Waits for launched nodes to report ready (the provider's `node_ready_timeout`; zero skips
/// it). On failure the resource's state so far goes back as partial state, so Terraform keeps
/// it as tainted and the next apply replaces it, while the failed node stays for inspection.
pub async fn wait_ready(
    c: &Clients,
    region: &str,
    instance_ids: &[String],
    resource: &str,
    state: &Value,
) -> Result<(), ApplyFailure> {
    let timeout = c.node_ready_timeout();
    if timeout.is_zero() || instance_ids.is_empty() {
        return Ok(());
    }
    let fail = |e: AwsError| {
        if let AwsError::Cancelled { .. } = e {
            // Ctrl-C: the node keeps booting on its own. Record it as made (a warning, not an
            // error, so it is not tainted and replaced): the next plan finds it by its id.
            return ApplyFailure {
                diagnostics: Diagnostic::warning(
                    format!("{resource}: stopped waiting for the node to become ready"),
                    format!("{e}. The node was launched and is kept in state."),
                )
                .into(),
                partial_state: Some(state.clone()),
            };
        }
        ApplyFailure {
            diagnostics: Diagnostic::error(
                format!("{resource}: a node did not become ready"),
                format!(
                    "{e}. The resource is kept in state as tainted: the next apply replaces it, \
                 and destroy removes it."
                ),
            )
            .into(),
            partial_state: Some(state.clone()),
        }
    };
    let rc = c.region(Some(region)).await.map_err(fail)?;
    crate::aws::wait_nodes_ready(&rc, instance_ids, timeout)
        .await
        .map_err(fail)
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
    // Every node reads its region's reader name; a region replica publishes its own region's.
    let failover = s.failover.clone().map(|mut f| {
        if role == Role::RegionReplica
            && let Some(base) = dns_base(&f)
            && let Some(d) = f.dns.as_mut()
        {
            d.reader_name = crate::aws::dns::region_reader_name(&base, region);
        }
        f
    });
    // With failover, `source` is only the first hint of where the source is: the writer's
    // name, which a failover moves, so no user-data ever goes stale.
    let source = source.map(|ip| {
        failover
            .as_ref()
            .and_then(|f| f.dns.as_ref())
            .map(|d| d.writer_name.clone())
            .unwrap_or_else(|| ip.to_string())
    });
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
            host,
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
        admin: s.admin.clone(),
        install: s.install.clone(),
        failover,
        engine_settings: s.engine_settings.clone(),
        backup: s.backup.clone(),
        restore: None,
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
    // Base64 of the gzip'd script (AWS), or the script as sent (LocalStack may do that):
    // parse_user_data reads both.
    Ok(parse_user_data(b64).ok())
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
