//! `strata_cluster`: the home region of a replicated database. Its source node, security
//! group, instance profile and replication credential (see `aws::cluster`). The source's
//! user-data carries its `NodeConfig`, which is also how Strata reads the engine and
//! replication settings back (import included).

use std::collections::BTreeMap;
use std::time::Duration;

use strata_topology::{
    Account, AgentArtifact, CredentialRef, Install, ReplicationMode, Role, agent_bucket_name,
    agent_object_key, render_user_data,
};

use super::checks;
use super::cluster_roll::{plan_roll_warning, plan_version, state_version, version_roll};
use super::common::*;
use super::nodes::{self, ClusterSettings};
use super::owned;
use crate::aws::artifact::{self, AGENT_VERSION, AgentUpload};
use crate::aws::dns::{self, EndpointsState, Zone};
use crate::aws::failover::{self, ClusterStatus};
use crate::aws::{self, Clients, ClusterInfo, ClusterSpec};
use crate::cty::{AttributePath, Value};
use crate::framework::{
    ApplyFailure, Attr, Block, CreateRequest, DeleteRequest, Diagnostic, Diagnostics,
    ImportRequest, NestedBlock, NewState, PlanChange, ReadRequest, Resource, Schema, Type,
    UpdateRequest, async_trait, validators,
};

pub const TYPE_NAME: &str = "strata_cluster";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// 1: `replication_password` left the state (the credential lives only in SSM).
const SCHEMA_VERSION: i64 = 1;

/// Settings a running cluster cannot change in place yet: the agent reads them at boot.
const REPLICATION_ATTRS: [&str; 3] = [
    "replication_mode",
    "semi_sync_wait_for_replica_count",
    "semi_sync_timeout_ms",
];

pub struct ClusterResource;

fn name_ok(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) => crate::aws::rules::cluster_name(s),
        None => Ok(()),
    }
}

pub fn schema() -> Schema {
    let computed = |name: &str, ty: Type, what: &str| {
        Attr::of(name, ty)
            .computed_only()
            .use_state_for_unknown()
            .description(what)
    };
    // Reported by the agents, changed outside Terraform: never planned from the prior state
    // (see `modify_plan`).
    let volatile =
        |name: &str, ty: Type, what: &str| Attr::of(name, ty).computed_only().description(what);
    Schema::builder(SCHEMA_VERSION)
        .description(
            "The home region of a replicated MySQL-compatible database: a source node (an EC2 \
             instance running the engine and the Strata agent), its security group, an \
             instance profile for the agent, and the replication credential in an SSM \
             SecureString parameter. Add `strata_replica`, `strata_region` and \
             `strata_storage_segment` resources to grow it.",
        )
        .attribute(
            Attr::string("name")
                .required()
                .requires_replace()
                .validate(checks::cluster_name())
                .description("Cluster name. It is the cluster's id and its `strata:cluster` tag."),
        )
        .attribute(
            Attr::string("engine")
                .optional()
                .default("mariadb")
                .requires_replace()
                .validate(validators::one_of(&["mariadb", "mysql"]))
                .description("Database engine: `mariadb` or `mysql`."),
        )
        .attribute(
            Attr::string("engine_version")
                .optional()
                .computed()
                .description("Engine version: what first boot installs, `10.11` for MariaDB (Debian 12's), `8.0` or `8.4` for MySQL (MySQL's repository). Defaults to `10.11` for MariaDB and `8.4` for MySQL. A patch release or the next series on the upgrade path (MariaDB 10.6 → 10.11 → 11.4 → 11.8, MySQL 8.0 → 8.4) rolls through the nodes in place (docs/rolling-changes.md); a downgrade, a skipped series or another version replaces the cluster."),
        )
        .attribute(
            Attr::string("instance_type")
                .required()
                .validate(checks::instance_type())
                .description("EC2 instance type of the cluster's nodes, e.g. `r7i.large`: the source and every `strata_replica` and `strata_region` that does not set its own. A change rolls through them in place without stopping writes: replicas one at a time (stop, modify, start, back in replication and caught up), region replicas, a switchover to a changed replica, then the old source (docs/rolling-changes.md). Without `ami_id` its architecture needs an agent build in the provider release (x86_64 today)."),
        )
        .attribute(
            Attr::string("ami_id")
                .optional()
                .validate(checks::ami_id())
                .computed()
                .requires_replace()
                .use_state_for_unknown()
                .description("AMI of the source node. Defaults to the latest official Debian 12 image for the instance type's architecture; first boot then installs the engine from Debian's packages and the agent from the cluster's own private S3 bucket (the provider uploads the agent build it ships with). Set it to an image with the engine and the agent (at `/usr/local/bin/strata-agent`) baked in, and nothing is installed at boot."),
        )
        .attribute(
            Attr::string("subnet_id")
                .required()
                .validate(checks::subnet_id())
                .requires_replace()
                .description("Subnet of the source node; the security group is made in its VPC."),
        )
        .attribute(
            Attr::set("allowed_cidr_blocks", Type::String)
                .optional()
                .validate(checks::cidr_blocks())
                .description("Client CIDR blocks allowed to reach the engine port. Cluster members always reach each other."),
        )
        .attribute(
            Attr::set("allowed_security_group_ids", Type::String)
                .optional()
                .validate(checks::security_group_ids())
                .description("Client security groups allowed to reach the engine port."),
        )
        .attribute(
            Attr::string("replication_mode")
                .optional()
                .default("async")
                .validate(validators::one_of(&["async", "semi_sync"]))
                .description("`async`, or `semi_sync`: a commit on the source waits for `semi_sync_wait_for_replica_count` home replicas to acknowledge it, for at most `semi_sync_timeout_ms`, then falls back to async. Fixed once the cluster exists (the nodes read it at boot)."),
        )
        .attribute(
            Attr::number("semi_sync_wait_for_replica_count")
                .optional()
                .default(Value::number_i64(1))
                .validate(validators::int_range(1, 15))
                .description("Replica acknowledgements a semi-sync commit waits for. MariaDB supports only 1."),
        )
        .attribute(
            Attr::number("semi_sync_timeout_ms")
                .optional()
                .default(Value::number_i64(10_000))
                .validate(validators::int_range(1, 3_600_000))
                .description("How long a semi-sync commit waits for acknowledgements before the source falls back to async."),
        )
        .attribute(
            Attr::string("instance_profile_name")
                .optional()
                .validate(checks::iam_name())
                .computed()
                .requires_replace()
                .use_state_for_unknown()
                .description("An existing instance profile for the nodes. By default Strata makes one whose policy allows exactly what the agent needs."),
        )
        .attribute(
            Attr::map("engine_settings", Type::String)
                .optional()
                .validate(checks::engine_settings())
                .description("Server variables for every node, e.g. `{ max_connections = \"500\" }`, written by the agent into a settings file the server reads at start. A change rolls through the cluster without stopping writes: each replica in turn restarts with the new settings and catches up, then the source switches over to a changed replica and restarts as a replica (see docs/rolling-changes.md). Names are lowercase with underscores; the variables Strata sets itself (server_id, log_bin, binlog_format, gtid_strict_mode, sync_binlog, innodb_flush_log_at_trx_commit, read_only, rpl_semi_sync_*, ...) are refused. Whether the server knows a variable is learnt when the first replica restarts: one it refuses stops the roll there, with that replica back on its old settings."),
        )
        .attribute(Attr::map("tags", Type::String).optional().validate(checks::tags()).description("Tags for every AWS object of the cluster."))
        .attribute(computed("tags_all", Type::Map(Box::new(Type::String)), "The tags with the provider's `default_tags` merged in."))
        .attribute(computed("id", Type::String, "The cluster's id: its name."))
        .attribute(computed("source_node_id", Type::String, "Instance id of the node this resource launched as the source. It stays the same after a failover (storage segments attached to it stay where they are); `current_source_node_id` says who the source is now."))
        .attribute(computed("source_private_ip", Type::String, "Private IP of the source node."))
        .attribute(
            Attr::string("dns_domain")
                .optional()
                .default("strata.internal")
                .validate(checks::dns_domain())
                .requires_replace()
                .description("Domain of the cluster's endpoints: Strata makes the private hosted zone `<name>.<dns_domain>`, associated with the cluster's VPC. Ignored when `dns_zone_id` is set."),
        )
        .attribute(
            Attr::string("dns_zone_id")
                .optional()
                .computed()
                .validate(checks::hosted_zone_id())
                .requires_replace()
                .use_state_for_unknown()
                .description("A private Route 53 hosted zone of yours to put the endpoint records in (as `writer.<name>.<zone name>`); Strata associates it with the cluster's VPC and never deletes it. By default Strata makes (and deletes) the cluster's own zone, and this is its id."),
        )
        .attribute(computed("writer_endpoint", Type::String, "Where clients write: `writer.<name>.<dns_domain>:<port>`, a name in the cluster's private hosted zone that always points at the current source (a failover moves it). Resolvable inside the cluster's VPCs."))
        .attribute(computed("reader_endpoint", Type::String, "Where clients read: `reader.<name>.<dns_domain>:<port>`, a name with one address per healthy home replica (the source when there is none), kept by the agents."))
        .attribute(volatile("current_source_node_id", Type::String, "Instance id of the node that is the source now, as the agents report it (the `strata:current-role` tag). Equals `source_node_id` until a failover or switchover."))
        .attribute(volatile("last_failover", Type::Map(Box::new(Type::String)), "The last failover or switchover the agents reported: `at` (RFC 3339), `reason`, `duration_ms`, `node_id` (the promoted instance). Null when there was none."))
        .attribute(volatile("node_roles", Type::Map(Box::new(Type::String)), "Each home node (instance id) and its current role as its agent reports it (`source`, `replica`, `fenced`, `diverged`, `unknown`), or the role it was launched with before its agent reports."))
        .attribute(volatile("node_health", Type::Map(Box::new(Type::String)), "Each home node (instance id) and its agent's reported state (`ready`, `installing`, `failed`, ...), or the instance state when it is not running."))
        .attribute(computed("port", Type::Number, "The engine port."))
        .attribute(computed("security_group_id", Type::String, "The cluster's security group."))
        .attribute(computed("vpc_id", Type::String, "VPC of the subnet."))
        .attribute(computed("availability_zone", Type::String, "Availability zone of the source node."))
        .attribute(computed("replication_parameter_name", Type::String, "SSM SecureString parameter holding the replication credential the provider generated. The credential itself is never in Terraform state: read it from this parameter."))
        .attribute(computed("admin_user", Type::String, "The database account clients and operators log in with (`strata_admin`); every node creates it."))
        .attribute(computed("admin_parameter_name", Type::String, "SSM SecureString parameter holding the admin account's password, generated by the provider. The password is never in Terraform state: read it from this parameter."))
        .block(timeouts_block())
        .attribute(computed("backup_node_id", Type::String, "Instance id of the cluster's backup node, which `backup_policy` launches: it replicates from the current source, serves no reads, never becomes source, and runs the validated backup cycle. Null without `backup_policy`."))
        .attribute(computed("backup_location", Type::String, "Where this cluster's backups are: `s3://strata-<account>-<region>-backups/backups/<name>/<created>/`, in the account-and-region backup bucket that no cluster owns. Validated backups stay there after the cluster is destroyed (unless `backup_policy.delete_backups_on_destroy`), and `restore_from` finds them by cluster name and backup id. Null without `backup_policy`."))
        .block(backup_policy_block())
        .block(super::cluster_backup::restore_from_block())
        .build()
}

/// `backup_policy { interval_hours, keep, window_start }`: the validated backup cycle's
/// policy (topology::backup), carried to every node in its NodeConfig.
fn backup_policy_block() -> NestedBlock {
    NestedBlock::single(
        "backup_policy",
        Block::new()
            .description(
                "Validated backups (see docs/backups.md): the backup node restores the latest \
                 validated backup into a scratch server, checks it, catches it up through \
                 replication and checks it again before it takes the next backup; a failed \
                 check marks that backup failed and takes a fresh full one. Backups are stored \
                 in the account-and-region backup bucket (`backup_location`) and outlive the \
                 cluster unless `delete_backups_on_destroy` is set. Needs the agent bucket \
                 Strata makes when `ami_id` is not set. Fixed once the cluster exists (the \
                 nodes read it at boot), except `delete_backups_on_destroy`.",
            )
            .attribute(
                Attr::number("interval_hours")
                    .required()
                    .validate(validators::int_range(1, 720))
                    .description("Hours between backup cycles, 1 to 720."),
            )
            .attribute(
                Attr::number("keep")
                    .required()
                    .validate(validators::int_range(1, 1000))
                    .description("Validated backups to keep, at least 1. Older backups are deleted only once this many newer validated ones exist."),
            )
            .attribute(
                Attr::string("window_start")
                    .optional()
                    .description("UTC time of day the cycles are anchored at, `HH:MM`; cycles start at this time and every `interval_hours` after it. Default `00:00`."),
            )
            .attribute(
                Attr::bool("delete_backups_on_destroy")
                    .optional()
                    .description("Delete the cluster's validated backups when the cluster is destroyed. Default `false`: destroy keeps them at `backup_location` (pending and failed backups are deleted), where `restore_from` can still restore them and they cost their S3 storage until deleted. Can change in place; destroy acts on the value in state, so apply the change before destroying."),
            ),
    )
}

/// The configured policy (None without a `backup_policy` block, or while it is unknown).
fn backup_policy(v: &Value) -> Option<strata_topology::backup::BackupPolicy> {
    let b = v.get_attr("backup_policy").filter(|b| !b.is_null())?;
    let num = |n: &str| b.get_attr(n).and_then(Value::as_i64);
    Some(strata_topology::backup::BackupPolicy {
        interval_hours: u32::try_from(num("interval_hours")?).unwrap_or(0),
        keep: u32::try_from(num("keep")?).unwrap_or(0),
        window_start: b
            .get_attr("window_start")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_WINDOW_START)
            .to_string(),
    })
}

const DEFAULT_WINDOW_START: &str = "00:00";

/// The policy as state holds it (from a node's config on read and import).
fn backup_policy_value(p: &strata_topology::backup::BackupPolicy, prior: &Value) -> Value {
    // A window left unset stays unset in state while it is the default.
    let prior_window = prior
        .get_attr("backup_policy")
        .and_then(|b| b.get_attr("window_start"))
        .cloned()
        .unwrap_or_else(Value::null);
    let window = if prior_window.is_null() && p.window_start == DEFAULT_WINDOW_START {
        Value::null()
    } else {
        Value::string(p.window_start.clone())
    };
    Value::object([
        (
            "interval_hours",
            Value::number_i64(i64::from(p.interval_hours)),
        ),
        ("keep", Value::number_i64(i64::from(p.keep))),
        ("window_start", window),
        // The provider's alone (the nodes never see it): as configured.
        (
            DELETE_BACKUPS_ON_DESTROY,
            prior
                .get_attr("backup_policy")
                .and_then(|b| b.get_attr(DELETE_BACKUPS_ON_DESTROY))
                .cloned()
                .unwrap_or_else(Value::null),
        ),
    ])
}

/// `backup_policy.delete_backups_on_destroy`: the one policy attribute that may change in place.
const DELETE_BACKUPS_ON_DESTROY: &str = "delete_backups_on_destroy";

/// Whether destroy deletes the validated backups too (null reads as the default, false).
fn delete_backups_on_destroy(v: &Value) -> bool {
    v.get_attr("backup_policy")
        .and_then(|b| b.get_attr(DELETE_BACKUPS_ON_DESTROY))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `backup_policy` without the attributes that may change in place.
fn fixed_policy(v: Option<&Value>) -> Option<Value> {
    let b = v?;
    if b.is_null() || !b.is_known() {
        return Some(b.clone());
    }
    let mut b = b.clone();
    set_attr(&mut b, DELETE_BACKUPS_ON_DESTROY, Value::null());
    Some(b)
}

/// A `strata_cluster`'s configuration or plan, typed: what building its node settings and
/// its AWS spec reads. Null and unknown both read as None (and as empty); the defaults are
/// the schema's own, read from it where a value is unset, never restated here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterModel {
    pub name: Option<String>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub replication_mode: Option<String>,
    pub semi_sync_wait_for_replica_count: Option<i64>,
    pub semi_sync_timeout_ms: Option<i64>,
    pub subnet_id: Option<String>,
    pub instance_type: Option<String>,
    pub ami_id: Option<String>,
    pub instance_profile_name: Option<String>,
    pub allowed_cidr_blocks: Vec<String>,
    pub allowed_security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub engine_settings: BTreeMap<String, String>,
}

impl ClusterModel {
    pub fn from_value(v: &Value) -> ClusterModel {
        ClusterModel {
            name: str_attr(v, "name"),
            engine: str_attr(v, "engine"),
            engine_version: str_attr(v, "engine_version"),
            replication_mode: str_attr(v, "replication_mode"),
            semi_sync_wait_for_replica_count: i64_attr(v, "semi_sync_wait_for_replica_count"),
            semi_sync_timeout_ms: i64_attr(v, "semi_sync_timeout_ms"),
            subnet_id: str_attr(v, "subnet_id"),
            instance_type: str_attr(v, "instance_type"),
            ami_id: str_attr(v, "ami_id"),
            instance_profile_name: str_attr(v, "instance_profile_name"),
            allowed_cidr_blocks: string_list(v, "allowed_cidr_blocks"),
            allowed_security_group_ids: string_list(v, "allowed_security_group_ids"),
            tags: string_map(v, "tags"),
            engine_settings: engine_settings_attr(v),
        }
    }

    pub fn name(&self) -> Result<String, Diagnostics> {
        required(self.name.clone(), "name")
    }

    /// `engine` as configured, or the schema's default.
    pub fn engine_name(&self) -> String {
        self.engine
            .clone()
            .or_else(|| schema_default_str("engine"))
            .unwrap_or_default()
    }

    pub fn engine(&self) -> Result<strata_topology::Engine, Diagnostics> {
        nodes::engine_from(&self.engine_name()).ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::error("Invalid engine", "engine must be mariadb or mysql")
                    .at(AttributePath::attr("engine")),
            )
        })
    }

    /// `replication_mode`, or the schema's default. A value the schema's validator let through
    /// but this provider does not know is an error naming the attribute, not async.
    pub fn mode(&self) -> Result<ReplicationMode, Diagnostics> {
        let m = self
            .replication_mode
            .clone()
            .or_else(|| schema_default_str("replication_mode"))
            .unwrap_or_default();
        nodes::mode_from(&m).ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::error(
                    "Invalid replication_mode",
                    format!("replication_mode must be async or semi_sync, not {m:?}"),
                )
                .at(AttributePath::attr("replication_mode")),
            )
        })
    }

    /// The semi-sync ack count and timeout (ms), the schema's defaults where unset.
    pub fn semi_sync(&self) -> (u32, u64) {
        let n = |v: Option<i64>, attr: &str| {
            v.or_else(|| schema().block.default_of(attr).and_then(Value::as_i64))
                .unwrap_or(0)
        };
        (
            u32::try_from(n(
                self.semi_sync_wait_for_replica_count,
                "semi_sync_wait_for_replica_count",
            ))
            .unwrap_or(0),
            u64::try_from(n(self.semi_sync_timeout_ms, "semi_sync_timeout_ms")).unwrap_or(0),
        )
    }

    /// What the AWS layer makes for the cluster, before its parts (bucket, zone, profile) exist.
    pub fn spec(&self, user_data: String, timeout: Duration) -> Result<ClusterSpec, Diagnostics> {
        let name = self.name()?;
        let mut spec = ClusterSpec::new(
            name.clone(),
            aws::creation_token(&[TYPE_NAME, &name]),
            required(self.subnet_id.clone(), "subnet_id")?,
            required(self.instance_type.clone(), "instance_type")?,
        );
        spec.node.resource = format!("{TYPE_NAME}.{name}");
        spec.node.ami = self.ami_id.clone();
        spec.allowed_cidrs = self.allowed_cidr_blocks.clone();
        spec.allowed_security_group_ids = self.allowed_security_group_ids.clone();
        spec.node.instance_profile = self.instance_profile_name.clone();
        spec.node.user_data = user_data;
        spec.node.tags = self.tags.clone();
        spec.node.timeout = timeout;
        Ok(spec)
    }
}

/// A string attribute's default in this resource's schema.
fn schema_default_str(attr: &str) -> Option<String> {
    schema()
        .block
        .default_of(attr)
        .and_then(|v| v.as_str().map(str::to_string))
}

fn settings(v: &Value, home_region: &str) -> Result<ClusterSettings, Diagnostics> {
    let m = ClusterModel::from_value(v);
    let name = m.name()?;
    let engine = m.engine()?;
    let mode = m.mode()?;
    let (ack_count, ack_timeout_ms) = m.semi_sync();
    let admin = Some(Account {
        user: aws::ADMIN_USER.to_string(),
        credential: CredentialRef {
            ssm_parameter: aws::admin_parameter_name(&name),
            ssm_region: home_region.to_string(),
        },
    });
    Ok(ClusterSettings {
        parameter_name: aws::replication_parameter_name(&name),
        cluster_id: name,
        home_region: home_region.to_string(),
        engine,
        engine_version: m
            .engine_version
            .clone()
            .unwrap_or_else(|| nodes::default_engine_version(engine).to_string()),
        mode,
        ack_count,
        ack_timeout_ms,
        admin,
        install: Install::default(),
        failover: None,
        engine_settings: m.engine_settings,
        // Where the backups go is known once the bucket is (see `create`).
        backup: None,
    })
}

/// `engine_settings` as configured (empty when null).
pub(crate) fn engine_settings_attr(v: &Value) -> BTreeMap<String, String> {
    v.get_attr("engine_settings")
        .and_then(|m| m.as_map())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What the source installs at first boot, and the agent build to upload first. An `ami_id`
/// is an image with everything baked in: nothing is installed and no bucket is made.
async fn install_for(
    c: &Clients,
    name: &str,
    home: &str,
    instance_type: &str,
    ami_configured: bool,
) -> Result<(Install, Option<AgentUpload>), aws::AwsError> {
    if ami_configured {
        return Ok((
            Install {
                engine_packages: false,
                agent: None,
            },
            None,
        ));
    }
    let arch = aws::arch_of(instance_type);
    let build = artifact::local_agent(arch).await?;
    let bucket = agent_bucket_name(name, &c.account_id().await?, home);
    let key = agent_object_key(AGENT_VERSION, arch, &build.sha256);
    let install = Install {
        engine_packages: true,
        agent: Some(AgentArtifact {
            bucket: bucket.clone(),
            key: key.clone(),
            region: home.to_string(),
            sha256: build.sha256.clone(),
        }),
    };
    Ok((install, Some(AgentUpload { bucket, key, build })))
}

fn spec(v: &Value, user_data: String, op: Op) -> Result<ClusterSpec, Diagnostics> {
    ClusterModel::from_value(v).spec(user_data, timeout(v, op, DEFAULT_TIMEOUT))
}

/// Null when the configuration had it null and AWS has nothing; the AWS values otherwise.
fn set_like_prior(prior: &Value, name: &str, items: &[String]) -> Value {
    let was_null = prior.get_attr(name).is_none_or(Value::is_null);
    if was_null && items.is_empty() {
        Value::null()
    } else {
        set_value(items)
    }
}

/// What Route 53 and the agents say, beside `ClusterInfo`.
#[derive(Debug, Clone, Default)]
struct Live {
    /// The zone and its records; `None` when the cluster has no zone recorded.
    endpoints: Option<(Zone, EndpointsState)>,
    status: ClusterStatus,
}

async fn live(c: &Clients, info: &ClusterInfo) -> Result<Live, aws::AwsError> {
    live_with(c, info, None, None).await
}

/// [`live`], with the endpoints and members when the caller knows them already (it just wrote
/// or listed them).
async fn live_with(
    c: &Clients,
    info: &ClusterInfo,
    known: Option<EndpointsState>,
    members: Option<&[aws::NodeInfo]>,
) -> Result<Live, aws::AwsError> {
    let rc = c.region(Some(&info.region)).await?;
    let endpoints = match (&info.zone, known) {
        (Some(z), Some(e)) => Some((z.clone(), e)),
        (Some(z), None) => Some((z.clone(), dns::read_endpoints(&rc, z).await?)),
        (None, _) => None,
    };
    let status = match members {
        Some(m) => failover::status_from_nodes(m, &info.source_instance_id),
        None => failover::cluster_status(&rc, &info.cluster_id, &info.source_instance_id).await?,
    };
    Ok(Live { endpoints, status })
}

fn str_map(m: &std::collections::BTreeMap<String, String>) -> Value {
    map_value(m)
}

fn state(
    clients: &Clients,
    info: &ClusterInfo,
    cfg: Option<&strata_topology::NodeConfig>,
    live: &Live,
    prior: &Value,
) -> Value {
    // A missing zone or writer record reads as a null endpoint: drift the next apply repairs.
    // Where the writer points is the agents' business and never read as drift.
    let (writer_endpoint, reader_endpoint, zone_id) = match &live.endpoints {
        Some((z, e)) if e.healthy() => (
            Value::string(dns::endpoint(&dns::writer_name(&z.base), info.port)),
            Value::string(dns::endpoint(&dns::reader_name(&z.base), info.port)),
            Value::string(z.zone_id.clone()),
        ),
        Some((z, _)) if !z.owned => (
            Value::null(),
            Value::null(),
            Value::string(z.zone_id.clone()),
        ),
        _ => (
            Value::null(),
            Value::null(),
            prior
                .get_attr("dns_zone_id")
                .cloned()
                .unwrap_or_else(Value::null),
        ),
    };
    let dns_domain = match prior.get_attr("dns_domain") {
        Some(v) if !v.is_null() => v.clone(),
        _ => match &live.endpoints {
            Some((z, _)) if z.owned => Value::string(
                z.base
                    .strip_prefix(&format!("{}.", info.cluster_id))
                    .unwrap_or(dns::DEFAULT_DOMAIN),
            ),
            _ => Value::string(dns::DEFAULT_DOMAIN),
        },
    };
    let st = &live.status;
    let tags = own_tags(clients, &info.tags, prior);
    let tags_v = tags_value(&tags, prior);
    let keep = |n: &str| prior.get_attr(n).cloned().unwrap_or_else(Value::null);
    let admin_user = match cfg {
        Some(c) => opt_string(c.admin.as_ref().map(|a| a.user.as_str())),
        None => keep("admin_user"),
    };
    let (engine, version, mode, acks, ack_timeout) = match cfg {
        Some(c) => (
            Value::string(c.engine.as_str()),
            state_version(&c.engine_version, prior),
            Value::string(nodes::mode_str(c.replication.mode)),
            Value::number_i64(i64::from(c.replication.ack_count)),
            Value::number_i64(c.replication.ack_timeout_ms as i64),
        ),
        None => (
            keep("engine"),
            keep("engine_version"),
            keep("replication_mode"),
            keep("semi_sync_wait_for_replica_count"),
            keep("semi_sync_timeout_ms"),
        ),
    };
    Value::object([
        ("id", Value::string(info.cluster_id.clone())),
        ("name", Value::string(info.cluster_id.clone())),
        ("engine", engine),
        ("engine_version", version),
        ("instance_type", Value::string(info.instance_type.clone())),
        ("ami_id", opt_string(info.ami.as_deref())),
        ("subnet_id", Value::string(info.subnet_id.clone())),
        (
            "allowed_cidr_blocks",
            set_like_prior(prior, "allowed_cidr_blocks", &info.allowed_cidrs),
        ),
        (
            "allowed_security_group_ids",
            set_like_prior(
                prior,
                "allowed_security_group_ids",
                &info.allowed_security_group_ids,
            ),
        ),
        ("replication_mode", mode),
        ("semi_sync_wait_for_replica_count", acks),
        ("semi_sync_timeout_ms", ack_timeout),
        (
            "instance_profile_name",
            Value::string(info.instance_profile.clone()),
        ),
        // What the configuration asked for: the launch settings are in the source's
        // user-data, later ones in the lease store's desired-config objects (a roll).
        ("engine_settings", keep("engine_settings")),
        ("tags", tags_v),
        ("tags_all", map_value(&tags_all(Some(clients), &tags))),
        (
            "source_node_id",
            Value::string(info.source_instance_id.clone()),
        ),
        ("source_private_ip", opt_string(info.private_ip.as_deref())),
        ("dns_domain", dns_domain),
        ("dns_zone_id", zone_id),
        ("writer_endpoint", writer_endpoint),
        ("reader_endpoint", reader_endpoint),
        (
            "current_source_node_id",
            opt_string(st.current_source.as_deref()),
        ),
        (
            "last_failover",
            st.last_failover
                .as_ref()
                .map(str_map)
                .unwrap_or_else(Value::null),
        ),
        ("node_roles", str_map(&st.roles)),
        ("node_health", str_map(&st.health)),
        ("port", Value::number_i64(i64::from(info.port))),
        (
            "security_group_id",
            Value::string(info.security_group_id.clone()),
        ),
        ("vpc_id", Value::string(info.vpc_id.clone())),
        (
            "availability_zone",
            Value::string(info.availability_zone.clone()),
        ),
        (
            "replication_parameter_name",
            Value::string(info.parameter_name.clone()),
        ),
        ("admin_user", admin_user),
        (
            "admin_parameter_name",
            Value::string(info.admin_parameter_name.clone()),
        ),
        ("timeouts", keep("timeouts")),
        ("backup_node_id", keep("backup_node_id")),
        (
            super::cluster_backup::RESTORE_ATTRIBUTE_NAME,
            super::cluster_backup::restore_value(cfg, prior),
        ),
        (
            "backup_policy",
            match cfg {
                Some(c) => c
                    .backup
                    .as_ref()
                    .map(|b| backup_policy_value(&b.policy, prior))
                    .unwrap_or_else(Value::null),
                None => keep("backup_policy"),
            },
        ),
        (
            "backup_location",
            match cfg {
                Some(c) => c
                    .backup
                    .as_ref()
                    .map(|b| {
                        Value::string(strata_topology::backup::render_location(
                            &b.bucket,
                            &b.key_prefix,
                        ))
                    })
                    .unwrap_or_else(Value::null),
                None => keep("backup_location"),
            },
        ),
    ])
}

#[async_trait]
impl Resource for ClusterResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        let model = ClusterModel::from_value(config);
        let engine = model.engine_name();
        let acks = model.semi_sync_wait_for_replica_count;
        if let Some(v) = str_attr(config, "engine_version")
            && let Err(msg) = crate::aws::rules::engine_version(&engine, &v)
        {
            d.push(
                Diagnostic::error("Unsupported engine_version", msg)
                    .at(AttributePath::attr("engine_version")),
            );
        }
        if engine == "mariadb" && acks.is_some_and(|n| n > 1) {
            d.push(
                Diagnostic::error(
                    "MariaDB waits for one replica acknowledgement",
                    "MariaDB's semi-sync replication has no wait-for-replica-count setting: a \
                     commit waits for exactly one replica. Set semi_sync_wait_for_replica_count \
                     = 1, or use engine = \"mysql\" for larger ack counts.",
                )
                .at(AttributePath::attr("semi_sync_wait_for_replica_count")),
            );
        }
        super::cluster_backup::validate(config, &mut d);
        if let Some(p) = backup_policy(config) {
            if let Err(e) = p.validate() {
                let attr = e
                    .attribute()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                d.push(
                    Diagnostic::error("Invalid backup_policy", e.to_string())
                        .at(AttributePath::attr("backup_policy").attribute(attr)),
                );
            }
            if config.get_attr("ami_id").is_some_and(|a| !a.is_null()) {
                d.push(
                    Diagnostic::error(
                        "backup_policy needs the cluster's bucket",
                        "The backup node's agent is installed from the S3 bucket Strata makes \
                         for the cluster, which it makes only when ami_id is not set. Remove \
                         ami_id or backup_policy.",
                    )
                    .at(AttributePath::attr("backup_policy")),
                );
            }
        }
        d
    }

    async fn modify_plan(&self, plan: &mut PlanChange) -> Result<(), Diagnostics> {
        if let (Ok(c), Some(name)) = (clients(&plan.ctx), str_attr(&plan.planned, "name")) {
            owned::plan_create(plan, &owned::cluster_identity(c.default_region(), &name))?;
        }
        if plan.is_create()
            && let (Ok(c), Some(subnet)) =
                (clients(&plan.ctx), str_attr(&plan.planned, "subnet_id"))
        {
            checks::plan_subnet(c, None, &subnet, None).await?;
        }
        if plan
            .planned
            .get_attr("engine_version")
            .is_some_and(|v| !v.is_known())
            && let Some(e) = str_attr(&plan.planned, "engine")
                .as_deref()
                .and_then(nodes::engine_from)
        {
            set_attr(
                &mut plan.planned,
                "engine_version",
                Value::string(nodes::default_engine_version(e)),
            );
        }
        // Without ami_id, first boot fetches the agent build for the instance type's
        // architecture: say at plan time when this provider has none.
        let type_changes = plan.is_create()
            || plan.prior.get_attr("instance_type") != plan.planned.get_attr("instance_type");
        if type_changes
            && plan.config.get_attr("ami_id").is_none_or(Value::is_null)
            && let Some(t) = str_attr(&plan.planned, "instance_type")
        {
            nodes::check_agent_build(&t)?;
        }
        if plan.is_create() {
            set_attr(
                &mut plan.planned,
                "admin_user",
                Value::string(aws::ADMIN_USER),
            );
        }
        if !plan.is_create() {
            let mut d = Diagnostics::new();
            for a in REPLICATION_ATTRS {
                let (p, n) = (plan.prior.get_attr(a), plan.planned.get_attr(a));
                if let (Some(p), Some(n)) = (p, n)
                    && n.is_known()
                    && !p.is_null()
                    && p != n
                {
                    d.push(
                        Diagnostic::error(
                            format!("{a} cannot change on a running cluster"),
                            format!(
                                "The nodes read {a} when they boot, and changing it in place is \
                                 not supported yet. Set it back to {p}, or create a new cluster \
                                 with the new setting and move to it."
                            ),
                        )
                        .at(AttributePath::attr(a)),
                    );
                }
            }
            let (p, n) = (
                plan.prior.get_attr("backup_policy"),
                plan.planned.get_attr("backup_policy"),
            );
            if n.is_some_and(Value::is_wholly_known) && fixed_policy(p) != fixed_policy(n) {
                d.push(
                    Diagnostic::error(
                        "backup_policy cannot change on a running cluster",
                        "The nodes read backup_policy when they boot, and changing, adding or \
                         removing it in place is not supported yet. Set it back, or create a \
                         new cluster with the policy and move to it.",
                    )
                    .at(AttributePath::attr("backup_policy")),
                );
            }
            if d.has_errors() {
                return Err(d);
            }
        }
        if !plan.is_create() {
            plan_version(plan);
            plan_roll_warning(plan).await;
            super::cluster_backup::plan_backup_changes(plan);
        }
        plan_repairs(plan);
        plan_tags_all(plan);
        plan_volatile(plan);
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let home = c.default_region().to_string();
        let mut s = settings(&req.planned, &home)?;
        let name = s.cluster_id.clone();
        let resource = format!("{TYPE_NAME}.{name}");
        let instance_type = required_str(&req.planned, "instance_type")?;
        let ami_configured = str_attr(&req.config, "ami_id").is_some();
        let (install, upload) = install_for(c, &name, &home, &instance_type, ami_configured)
            .await
            .map_err(|e| {
                ApplyFailure::from(
                    Diagnostic::error(format!("{resource}: the agent build"), e.to_string())
                        .at(AttributePath::attr("instance_type")),
                )
            })?;
        s.install = install;
        let rc = c
            .home()
            .await
            .map_err(|e| apply_failure(&resource, "create", &e))?;
        let subnet_id = required_str(&req.planned, "subnet_id")?;
        let subnet = aws::network::subnet(&rc, &subnet_id)
            .await
            .map_err(|e| apply_failure(&resource, "create", &e))?;
        let token = aws::creation_token(&[TYPE_NAME, &name]);
        let zone_spec = dns::ZoneSpec {
            cluster: name.clone(),
            resource: resource.clone(),
            creation_token: aws::tags::sub_token(&token, "zone"),
            domain: str_attr(&req.planned, "dns_domain")
                .unwrap_or_else(|| dns::DEFAULT_DOMAIN.into()),
            user_zone_id: str_attr(&req.config, "dns_zone_id"),
            vpc_id: subnet.vpc_id.clone(),
            vpc_region: home.clone(),
            tags: dns::zone_object_tags(
                c.default_tags(),
                &string_map(&req.planned, "tags"),
                &name,
                &resource,
                &aws::tags::sub_token(&token, "zone"),
            ),
        };
        // A backup to restore is checked before anything is made.
        let restore = super::cluster_backup::check_restore(c, &rc, s.engine, &req.planned).await?;
        // The backup bucket too: made when missing and never deleted with a cluster (it is no
        // cluster's), so a failure here leaves nothing of this cluster behind.
        let backup_bucket = match backup_policy(&req.planned).filter(|_| s.install.agent.is_some())
        {
            Some(_) => Some(
                aws::backups::ensure_bucket(c, &rc)
                    .await
                    .map_err(|e| apply_failure(&resource, "make the backup bucket", &e))?,
            ),
            None => None,
        };
        // Refused before anything is made when another resource instance owns this name.
        let identity = owned::cluster_identity(&home, &name);
        let creating = owned::begin_create(c, &identity).await?;
        let (zone, zone_made) = dns::ensure_zone(&rc, &zone_spec).await.map_err(|e| {
            ApplyFailure::from(
                Diagnostic::error(
                    format!("{resource}: the endpoints' hosted zone"),
                    e.to_string(),
                )
                .at(AttributePath::attr("dns_zone_id")),
            )
        })?;
        s.failover = nodes::failover_for(&name, &home, &s.install, Some(&zone));
        // Backups go to the account-and-region backup bucket, under this cluster's own
        // generation: its creation time.
        s.backup = match (backup_policy(&req.planned), backup_bucket) {
            (Some(policy), Some(bucket)) => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                let generation = strata_topology::backup::render_backup_id(now_ms);
                Some(strata_topology::backup::BackupConfig {
                    policy,
                    bucket,
                    key_prefix: strata_topology::backup::generation_key_prefix(&name, &generation),
                    region: home.clone(),
                })
            }
            _ => None,
        };
        let mut cfg = nodes::node_config(
            &s,
            Role::Source,
            &format!("{name}-source"),
            &home,
            server_id_for(&format!("{name}/source")),
            None,
        );
        cfg.restore = restore;
        cfg.validate().map_err(|e| {
            ApplyFailure::from(Diagnostic::error(
                format!("{TYPE_NAME}.{name}: invalid node configuration"),
                e.to_string(),
            ))
        })?;
        let mut spec = spec(&req.planned, render_user_data(&cfg), Op::Create)?;
        spec.restore_read = cfg
            .restore
            .as_ref()
            .map(|r| (r.bucket.clone(), r.key_prefix.clone()));
        spec.backup_store = s
            .backup
            .as_ref()
            .map(|b| (b.bucket.clone(), b.key_prefix.clone()));
        spec.agent = upload;
        spec.zone = Some(zone.clone());
        let created = match aws::create_cluster(c, &spec).await {
            Ok(x) => x,
            Err(e) => {
                // The zone goes with the rest of a failed create (create_cluster cleaned up
                // its own objects).
                if zone_made && let Err(ce) = dns::delete_endpoints(&rc, &zone, &name).await {
                    tracing::warn!(error = %ce, zone_id = %zone.zone_id, "clean-up of the zone after a failed create failed");
                }
                return Err(apply_failure(&spec.node.resource, "create", &e));
            }
        };
        let source_ip = created.info.private_ip.clone().unwrap_or_default();
        let mut endpoints = None;
        if !source_ip.is_empty() {
            endpoints = Some(
                dns::ensure_initial_endpoints(
                    &rc,
                    &zone,
                    &source_ip,
                    &cfg.node_id,
                    dns::DEFAULT_TTL,
                    zone_made,
                )
                .await
                .map_err(|e| {
                    apply_failure(&spec.node.resource, "create the endpoint records", &e)
                })?,
            );
        }
        let private =
            owned::finish_create(c, &identity, &creating, &created.info.security_group_id).await?;
        let live = live_with(c, &created.info, endpoints, Some(&created.members))
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "read the endpoints", &e))?;
        let mut st = state(c, &created.info, Some(&cfg), &live, &req.planned);
        set_attr(&mut st, "backup_node_id", Value::null());
        let mut launched = vec![created.info.source_instance_id.clone()];
        if s.backup.is_some() {
            let b = super::cluster_backup::ensure_backup_node(
                c,
                &s,
                &created.info,
                &req.planned,
                &source_ip,
                spec.node.timeout,
            )
            .await
            .map_err(|e| {
                let mut f = apply_failure(&resource, "launch the backup node", &e);
                // The cluster exists: kept in state (tainted), so destroy removes it.
                f.partial_state = Some(st.clone());
                f
            })?;
            set_attr(
                &mut st,
                "backup_node_id",
                Value::string(b.instance_id.clone()),
            );
            launched.push(b.instance_id);
        }
        nodes::wait_ready(c, &created.info.region, &launched, &resource, &st).await?;
        Ok(NewState::new(st).with_private(private))
    }

    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.state, "id")?;
        let info = match aws::read_cluster(c, None, &id).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(aws_diag(&format!("{TYPE_NAME}.{id}"), "read", &e)),
        };
        // Objects of this name that another resource instance owns are not this one's.
        let Some(private) = owned::read_check(c, None, &info.security_group_id, &req.private)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "read", &e))?
        else {
            return Ok(None);
        };
        let rc = c.home().await.map_err(|e| aws_diag(&id, "read", &e))?;
        let cfg = cluster_node_config(&rc, &info)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "read user-data", &e))?;
        let live = live(c, &info)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "read the endpoints", &e))?;
        // The launched source is gone and no other node took over (no agent reports a
        // current source: nodes that never ran an agent, or no failover): the cluster is gone
        // as before, and the plan makes it again around what is left.
        if info.launch_node_lost
            && live
                .status
                .current_source
                .as_deref()
                .is_none_or(str::is_empty)
        {
            return Ok(None);
        }
        let mut st = state(c, &info, cfg.as_ref(), &live, &req.state);
        let backup_node = super::cluster_backup::find_backup_node(&rc, &id)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "read the backup node", &e))?;
        set_attr(
            &mut st,
            "backup_node_id",
            opt_string(backup_node.map(|n| n.instance_id).as_deref()),
        );
        if info.launch_node_lost {
            mark_launch_node_lost(&mut st, &req.state);
        }
        mark_drift(&rc, &info, &mut st)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "read", &e))?;
        Ok(Some(NewState::new(st).with_private(private)))
    }

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let mut spec = spec(&req.planned, String::new(), Op::Update)?;
        let rc = c
            .home()
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "update", &e))?;
        spec.zone = repair_endpoints(c, &rc, &req.planned, &req.config)
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "repair the endpoints", &e))?;
        let cur = aws::read_cluster(c, None, spec.name())
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "update", &e))?;
        // A launched source that is gone and not (yet) relaunched by the agents (they relaunch
        // a terminated node from its published launch parameters; Read then finds the twin,
        // which carries the launched source's tags): apply refuses and changes nothing.
        if cur.launch_node_lost {
            // Read nulled source_node_id (that is what shows the loss in the plan).
            let lost = str_attr(&req.prior, "source_node_id")
                .map(|id| format!(" ({id})"))
                .unwrap_or_default();
            return Err(ApplyFailure::from(
                Diagnostic::error(
                    format!("{}: the node it launched is gone", spec.node.resource),
                    format!(
                        "The instance this resource launched as source{lost} was terminated outside \
                         Terraform. The agents failed over and the cluster keeps serving from \
                         its current source (current_source_node_id after a refresh). The agents \
                         relaunch a terminated node within a minute or so when it published its \
                         launch parameters (docs/failover.md); run a refresh once the new \
                         instance runs. This one has not been relaunched yet, so nothing was \
                         changed. Do not use \
                         `-replace` on this resource: that would create the cluster again and \
                         replace its replicas, the serving source among them."
                    ),
                )
                .at(AttributePath::attr("source_node_id")),
            ));
        }
        // Rolling changes (docs/rolling-changes.md): an instance-type change first moves the
        // source role off the node this resource owns; an engine-settings change rolls
        // through every node after the update.
        let type_changes =
            str_attr(&req.prior, "instance_type") != str_attr(&req.planned, "instance_type");
        let settings_change =
            engine_settings_attr(&req.prior) != engine_settings_attr(&req.planned);
        let lease_ref = if type_changes
            || settings_change
            || version_roll(&req.prior, &req.planned).is_some()
        {
            cluster_node_config(&rc, &cur)
                .await
                .map_err(|e| apply_failure(&spec.node.resource, "read user-data", &e))?
                .and_then(|cfg| cfg.failover.map(|f| (cfg.node_id, f.lease)))
        } else {
            None
        };
        if (settings_change || version_roll(&req.prior, &req.planned).is_some())
            && lease_ref.is_none()
        {
            return Err(apply_failure(
                &spec.node.resource,
                "roll engine_settings",
                &aws::AwsError::BadState {
                    object: format!("cluster {}", spec.name()),
                    state: "without failover (no lease store: a baked ami_id cluster without the agent bucket)".into(),
                    wanted: "rolled to the new engine_settings".into(),
                    what_to_do: "engine_settings can change only on a cluster whose nodes run failover; set it back".into(),
                },
            ));
        }
        // The instance type rolls through every node that follows the cluster's (not those whose
        // own resource pins one), before update_cluster finds its node already changed.
        if type_changes && let Some((_, lr)) = &lease_ref {
            aws::roll::roll_instance_type(
                c,
                &rc,
                lr,
                spec.name(),
                &spec.node.resource,
                &spec.node.instance_type,
                spec.node.timeout,
            )
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "roll instance_type", &e))?;
        }
        let info = aws::update_cluster(c, &spec)
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "update", &e))?;
        // Every roll carries the cluster's version, so a node launched after a version roll
        // (user-data says the launch version) installs the rolled one from config.json.
        if (settings_change || version_roll(&req.prior, &req.planned).is_some())
            && let Some((_, lr)) = &lease_ref
        {
            aws::roll::roll_settings(
                &rc,
                lr,
                &engine_settings_attr(&req.planned),
                str_attr(&req.planned, "engine_version").as_deref(),
                spec.node.timeout,
            )
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "roll the engine", &e))?;
        }
        let cfg = cluster_node_config(&rc, &info)
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "read user-data", &e))?;
        let live = live(c, &info)
            .await
            .map_err(|e| apply_failure(&spec.node.resource, "read the endpoints", &e))?;
        let mut st = state(c, &info, cfg.as_ref(), &live, &req.planned);
        let backup_node = super::cluster_backup::repair_backup_node(
            c,
            &rc,
            &info,
            cfg.as_ref(),
            &req.planned,
            &spec,
        )
        .await
        .map_err(|e| apply_failure(&spec.node.resource, "relaunch the backup node", &e))?;
        set_attr(
            &mut st,
            "backup_node_id",
            opt_string(backup_node.as_deref()),
        );
        Ok(NewState::new(st).with_private(req.private))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        aws::delete_cluster(
            c,
            None,
            &id,
            timeout(&req.prior, Op::Delete, DEFAULT_TIMEOUT),
        )
        .await
        .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "delete", &e))?;
        // The nodes are gone, so nothing writes backups any more: keep the validated ones
        // (unless told otherwise) and delete what cannot be restored.
        let Some((bucket, prefix)) = str_attr(&req.prior, "backup_location")
            .as_deref()
            .and_then(strata_topology::backup::parse_location)
        else {
            return Ok(());
        };
        let delete_all = delete_backups_on_destroy(&req.prior);
        let rc = c
            .home()
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "delete", &e))?;
        let settled = aws::backups::settle_on_destroy(&rc, &bucket, &prefix, delete_all)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME}.{id}"), "settle its backups", &e))?;
        tracing::info!(
            cluster = %id,
            location = %strata_topology::backup::render_location(&bucket, &prefix),
            kept = ?settled.kept,
            deleted_objects = settled.deleted_objects,
            "cluster destroyed; its validated backups are kept unless delete_backups_on_destroy"
        );
        Ok(())
    }

    /// Version 0 kept the replication credential in state as `replication_password`; it now
    /// lives only in the SSM SecureString parameter, so the upgrade drops it.
    fn upgrade_state(
        &self,
        from_version: i64,
        raw: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
        if from_version != 0 {
            return Err(Diagnostic::error(
                "Cannot upgrade state",
                format!("{TYPE_NAME} has no upgrade from schema version {from_version}"),
            )
            .into());
        }
        let mut raw = raw.clone();
        if let Some(o) = raw.as_object_mut() {
            o.remove("replication_password");
        }
        crate::cty::json::decode_value(&raw, &schema().implied_type(), true).map_err(|e| {
            Diagnostic::error(
                format!("Could not upgrade the stored state of {TYPE_NAME}"),
                format!("schema version 0 state: {e}"),
            )
            .into()
        })
    }

    async fn import(&self, req: ImportRequest) -> Result<NewState, Diagnostics> {
        if name_ok(&Value::string(req.id.clone())).is_err() {
            return Err(Diagnostic::error(
                "Invalid import id",
                format!(
                    "import a strata_cluster by its name, e.g. `orders`; got {:?}",
                    req.id
                ),
            )
            .into());
        }
        Ok(NewState::new(
            schema().null_object_with([("id", Value::string(req.id.clone()))]),
        ))
    }
}

/// The attributes the agents change outside Terraform. Planned as the prior state when nothing
/// else changes (so a failover never shows as a change), unknown when an apply will run (the
/// apply reports them as they are then).
const VOLATILE: [&str; 4] = [
    "current_source_node_id",
    "last_failover",
    "node_roles",
    "node_health",
];

fn plan_volatile(plan: &mut PlanChange) {
    if plan.is_create() {
        return;
    }
    // Read reports a missing zone or writer record as a null endpoint: plan the repair (the
    // planner alone marks nothing unknown when the configuration did not change).
    if plan
        .prior
        .get_attr("writer_endpoint")
        .is_some_and(Value::is_null)
    {
        set_attr(&mut plan.planned, "writer_endpoint", Value::unknown());
    }
    for a in VOLATILE {
        let v = plan.prior.get_attr(a).cloned().unwrap_or_else(Value::null);
        set_attr(&mut plan.planned, a, v);
    }
    if plan.planned == plan.prior {
        return;
    }
    for a in VOLATILE {
        set_attr(&mut plan.planned, a, Value::unknown());
    }
    // A repair (the endpoints read as missing) may make a new zone.
    if plan
        .planned
        .get_attr("writer_endpoint")
        .is_some_and(|v| !v.is_known())
        && plan
            .config
            .get_attr("dns_zone_id")
            .is_none_or(Value::is_null)
    {
        set_attr(&mut plan.planned, "dns_zone_id", Value::unknown());
        set_attr(&mut plan.planned, "reader_endpoint", Value::unknown());
    }
}

/// Before an update: the zone and the writer record exist again (made if they were deleted
/// outside Terraform, the writer pointing at the current source), and the first records of a
/// cluster made before endpoints existed. Existing records keep their values.
async fn repair_endpoints(
    c: &Clients,
    rc: &aws::RegionClients,
    planned: &Value,
    config: &Value,
) -> Result<Option<Zone>, aws::AwsError> {
    let name = str_attr(planned, "name").unwrap_or_default();
    let info = aws::read_cluster(c, None, &name).await?;
    let l = live(c, &info).await?;
    if l.endpoints.as_ref().is_some_and(|(_, e)| e.healthy()) {
        return Ok(None);
    }
    let resource = format!("{TYPE_NAME}.{name}");
    let token = aws::creation_token(&[TYPE_NAME, &name]);
    let user_zone = str_attr(config, "dns_zone_id").or_else(|| {
        info.zone
            .as_ref()
            .filter(|z| !z.owned)
            .map(|z| z.zone_id.clone())
    });
    let spec = dns::ZoneSpec {
        cluster: name.clone(),
        resource: resource.clone(),
        creation_token: aws::tags::sub_token(&token, "zone"),
        domain: str_attr(planned, "dns_domain").unwrap_or_else(|| dns::DEFAULT_DOMAIN.into()),
        user_zone_id: user_zone,
        vpc_id: info.vpc_id.clone(),
        vpc_region: info.region.clone(),
        tags: dns::zone_object_tags(
            c.default_tags(),
            &string_map(planned, "tags"),
            &name,
            &resource,
            &aws::tags::sub_token(&token, "zone"),
        ),
    };
    let (zone, _) = dns::ensure_zone(rc, &spec).await?;
    let source_ip = l
        .status
        .current_source_ip
        .clone()
        .or(info.private_ip.clone())
        .unwrap_or_default();
    let node_id = format!("{name}-source");
    if !source_ip.is_empty() {
        dns::ensure_initial_records(rc, &zone, &source_ip, &node_id, dns::DEFAULT_TTL).await?;
    }
    Ok(Some(zone))
}

/// Attributes whose null in a refreshed state means "drifted, repair me" (see `mark_drift`).
const REPAIR_ATTRS: [&str; 5] = [
    "security_group_id",
    "replication_parameter_name",
    "admin_parameter_name",
    "source_node_id",
    "source_private_ip",
];

/// The attributes read from the launched source instance itself: kept as they were when it is
/// gone (they describe the node as it was), beside the markers.
const LAUNCH_NODE_ATTRS: [&str; 5] = [
    "instance_type",
    "ami_id",
    "subnet_id",
    "instance_profile_name",
    "availability_zone",
];

/// Read's report of a launched source that is gone while the cluster lives on: the node's id
/// and address null (the plan shows them changing, so the loss is visible; apply refuses with
/// what to do and changes nothing; it never re-creates the cluster, which would replace the
/// replicas, the serving source among them), its settings as they were.
fn mark_launch_node_lost(st: &mut Value, prior: &Value) {
    for a in LAUNCH_NODE_ATTRS {
        if let Some(v) = prior.get_attr(a).filter(|v| !v.is_null()) {
            set_attr(st, a, v.clone());
        }
    }
    for a in ["tags", "tags_all"] {
        if let Some(v) = prior.get_attr(a) {
            set_attr(st, a, v.clone());
        }
    }
    set_attr(st, "source_node_id", Value::null());
    set_attr(st, "source_private_ip", Value::null());
}

/// The Strata node config the cluster's nodes run: the launched source's user-data, or when
/// that node is gone, a surviving member's (they share every cluster-wide setting).
async fn cluster_node_config(
    rc: &aws::RegionClients,
    info: &ClusterInfo,
) -> Result<Option<strata_topology::NodeConfig>, aws::AwsError> {
    if !info.launch_node_lost {
        return nodes::read_node_config(rc, &info.source_instance_id).await;
    }
    let tc = format!("tag:{}", aws::tags::TAG_CLUSTER);
    for n in aws::node::find_nodes(rc, &[(&tc, &info.cluster_id)]).await? {
        if let Some(cfg) = nodes::read_node_config(rc, &n.instance_id).await? {
            return Ok(Some(cfg));
        }
    }
    Ok(None)
}

/// Read's drift report for objects the configuration does not name: a member outside the
/// cluster's group, a deleted credential parameter. The attribute standing for it is nulled,
/// so the plan shows it changing and apply (update) repairs it.
async fn mark_drift(
    rc: &crate::aws::RegionClients,
    info: &ClusterInfo,
    st: &mut Value,
) -> Result<(), aws::AwsError> {
    let outside =
        aws::drift::members_outside(rc, &info.cluster_id, &info.security_group_id).await?;
    if !outside.is_empty() {
        tracing::info!(cluster = %info.cluster_id, members = ?outside.iter().map(|n| &n.instance_id).collect::<Vec<_>>(), "drift: members outside the cluster's security group");
        set_attr(st, "security_group_id", Value::null());
    }
    let names = [
        info.parameter_name.clone(),
        info.admin_parameter_name.clone(),
    ];
    for m in aws::drift::missing_parameters(rc, &names).await? {
        tracing::info!(parameter = %m, "drift: credential parameter deleted");
        let attr = if m == info.parameter_name {
            "replication_parameter_name"
        } else {
            "admin_parameter_name"
        };
        set_attr(st, attr, Value::null());
    }
    Ok(())
}

/// An update whose prior state carries a drift marker plans the repair (unknown until apply).
fn plan_repairs(plan: &mut PlanChange) {
    if plan.is_create() || plan.prior.is_null() {
        return;
    }
    for a in REPAIR_ATTRS {
        if plan.prior.get_attr(a).is_some_and(Value::is_null) {
            set_attr(&mut plan.planned, a, Value::unknown());
        }
    }
}

/// Used by `strata_replica` and `strata_region`: the cluster and the settings its source runs.
pub async fn cluster_and_settings(
    c: &Clients,
    cluster_id: &str,
) -> Result<(ClusterInfo, ClusterSettings), Diagnostics> {
    let what = format!("cluster {cluster_id:?}");
    let info = aws::cluster::read_cluster_shared(c, None, cluster_id)
        .await
        .map_err(|e| {
            // Only a real "not found" blames cluster_id; throttling or an outage does not.
            if !e.is_not_found() {
                return aws_diag(&what, "look up", &e);
            }
            Diagnostics::from(
                Diagnostic::error(
                    format!("Cannot find {what}"),
                    format!("{e}. Check cluster_id: it is the strata_cluster's id (its name)."),
                )
                .at(AttributePath::attr("cluster_id")),
            )
        })?;
    let rc = c.home().await.map_err(|e| aws_diag(&what, "read", &e))?;
    let cfg = rc
        .shared
        .node_configs
        .get_or_try(&info.source_instance_id, || cluster_node_config(&rc, &info))
        .await
        .map_err(|e| aws_diag(&what, "read the source's user-data", &e))?
        .ok_or_else(|| {
            Diagnostics::from(Diagnostic::error(
                format!("{what} has no Strata node config"),
                "the source instance's user-data is not Strata's; was it replaced outside Terraform?",
            ))
        })?;
    Ok((info, ClusterSettings::from_source(&cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before/after of issue 14, for this resource: the plan is read once into a typed model,
    /// which builds the node settings and the AWS spec without AWS.
    #[test]
    fn the_model_reads_a_plan_and_builds_settings_and_spec_without_aws() {
        let v = Value::object([
            ("name", Value::string("orders")),
            ("engine", Value::null()),
            ("replication_mode", Value::string("semi_sync")),
            ("semi_sync_wait_for_replica_count", Value::number_i64(2)),
            ("semi_sync_timeout_ms", Value::null()),
            ("subnet_id", Value::string("subnet-0a")),
            ("instance_type", Value::string("t3.medium")),
            ("ami_id", Value::unknown()),
            (
                "allowed_cidr_blocks",
                Value::list([Value::string("10.0.0.0/16")]),
            ),
            (
                "tags",
                Value::map([("team".to_string(), Value::string("db"))]),
            ),
            (
                "engine_settings",
                Value::map([("max_connections".to_string(), Value::string("500"))]),
            ),
        ]);
        let m = ClusterModel::from_value(&v);
        // Unset values take the schema's defaults.
        assert_eq!(m.engine().unwrap(), strata_topology::Engine::Mariadb);
        assert_eq!(m.semi_sync(), (2, 10_000));
        assert_eq!(m.mode().unwrap(), ReplicationMode::SemiSync);
        let st = settings(&v, "us-east-1").unwrap();
        assert_eq!((st.cluster_id.as_str(), st.ack_count), ("orders", 2));
        assert_eq!(st.engine_settings["max_connections"], "500");
        let spec = m.spec("#!/bin/sh\n".into(), DEFAULT_TIMEOUT).unwrap();
        assert_eq!(spec.name(), "orders");
        assert_eq!(spec.node.resource, "strata_cluster.orders");
        assert_eq!(
            (
                spec.node.subnet_id.as_str(),
                spec.node.instance_type.as_str()
            ),
            ("subnet-0a", "t3.medium")
        );
        assert_eq!(spec.node.ami, None, "unknown reads as unset");
        assert_eq!(spec.allowed_cidrs, vec!["10.0.0.0/16".to_string()]);
        assert_eq!(spec.node.tags["team"], "db");
        assert_eq!(spec.node.role, "source");
    }

    #[test]
    fn the_model_names_the_attribute_it_cannot_use() {
        let bad_mode = ClusterModel {
            replication_mode: Some("sync".into()),
            ..ClusterModel::default()
        };
        assert!(format!("{:?}", bad_mode.mode().unwrap_err()).contains("replication_mode"));
        let bad_engine = ClusterModel {
            engine: Some("oracle".into()),
            ..ClusterModel::default()
        };
        assert!(format!("{:?}", bad_engine.engine().unwrap_err()).contains("engine"));
        let no_subnet = ClusterModel {
            name: Some("orders".into()),
            instance_type: Some("t3.micro".into()),
            ..ClusterModel::default()
        };
        assert!(
            format!(
                "{:?}",
                no_subnet.spec(String::new(), DEFAULT_TIMEOUT).unwrap_err()
            )
            .contains("subnet_id")
        );
    }

    #[test]
    fn version_0_state_loses_the_password_and_keeps_the_rest() {
        let mut raw = serde_json::Map::new();
        for a in &schema().block.attributes {
            raw.insert(a.name.clone(), serde_json::Value::Null);
        }
        raw.insert("id".into(), "orders".into());
        raw.insert("name".into(), "orders".into());
        raw.insert("source_node_id".into(), "i-0abc".into());
        raw.insert("replication_password".into(), "s3cret-from-v0".into());
        raw.insert("timeouts".into(), serde_json::Value::Null);
        let raw = serde_json::Value::Object(raw);
        let v = ClusterResource.upgrade_state(0, &raw).unwrap();
        assert_eq!(v.get_attr("id"), Some(&Value::string("orders")));
        assert_eq!(v.get_attr("source_node_id"), Some(&Value::string("i-0abc")));
        assert_eq!(v.get_attr("replication_password"), None);
        assert!(!format!("{v:?}").contains("s3cret"));
        assert!(ClusterResource.upgrade_state(7, &raw).is_err());
    }

    #[test]
    fn a_lost_launch_node_reads_as_a_repair_with_its_settings_kept() {
        let prior = schema().null_object_with([
            ("id", Value::string("orders")),
            ("instance_type", Value::string("m6i.large")),
            ("subnet_id", Value::string("subnet-1")),
            ("source_node_id", Value::string("i-gone")),
            ("source_private_ip", Value::string("10.0.1.5")),
            ("security_group_id", Value::string("sg-1")),
        ]);
        // What Read builds from a ClusterInfo with no launched source: empty fields.
        let mut st = schema().null_object_with([
            ("id", Value::string("orders")),
            ("instance_type", Value::string("")),
            ("subnet_id", Value::string("")),
            ("source_node_id", Value::string("")),
            ("security_group_id", Value::string("sg-1")),
        ]);
        mark_launch_node_lost(&mut st, &prior);
        assert_eq!(
            st.get_attr("instance_type"),
            Some(&Value::string("m6i.large"))
        );
        assert_eq!(st.get_attr("subnet_id"), Some(&Value::string("subnet-1")));
        assert_eq!(st.get_attr("source_node_id"), Some(&Value::null()));
        assert_eq!(st.get_attr("source_private_ip"), Some(&Value::null()));
        assert!(
            REPAIR_ATTRS.contains(&"source_node_id"),
            "a null source_node_id must show in the plan"
        );
    }

    #[test]
    fn backup_policy_is_validated_at_plan_naming_the_attribute() {
        let cfg = |keep: i64, window: &str| {
            schema().null_object_with([
                ("name", Value::string("orders")),
                (
                    "backup_policy",
                    Value::object([
                        ("interval_hours", Value::number_i64(24)),
                        ("keep", Value::number_i64(keep)),
                        ("window_start", Value::string(window)),
                    ]),
                ),
            ])
        };
        assert!(!ClusterResource.validate(&cfg(7, "03:00")).has_errors());
        for (c, attr) in [
            (cfg(0, "03:00"), "keep"),
            (cfg(7, "25:00"), "window_start"),
            (cfg(7, "3am"), "window_start"),
        ] {
            let d = ClusterResource.validate(&c);
            let e = d.iter().find(|d| d.is_error()).expect("an error");
            assert_eq!(
                e.attribute,
                Some(AttributePath::attr("backup_policy").attribute(attr)),
                "{}",
                e.detail
            );
            assert!(
                e.detail.contains(&format!("backup_policy.{attr}")),
                "{}",
                e.detail
            );
        }
        // The policy reaches the nodes as it was written, the window defaulted.
        let mut v = cfg(3, "03:00");
        set_attr(
            &mut v,
            "backup_policy",
            Value::object([
                ("interval_hours", Value::number_i64(6)),
                ("keep", Value::number_i64(3)),
                ("window_start", Value::null()),
                (DELETE_BACKUPS_ON_DESTROY, Value::null()),
            ]),
        );
        let p = backup_policy(&v).unwrap();
        assert_eq!(
            (p.interval_hours, p.keep, p.window_start.as_str()),
            (6, 3, "00:00")
        );
        // And reads back into state without a diff (the unset window stays unset).
        assert_eq!(
            backup_policy_value(&p, &v),
            v.get_attr("backup_policy").cloned().unwrap()
        );
        // Destroy keeps backups unless told; the opt-out is the provider's alone (not in the
        // nodes' policy), read back from state as configured, and may change in place.
        assert!(!delete_backups_on_destroy(&v));
        let mut opted = v.clone();
        let mut b = opted.get_attr("backup_policy").cloned().unwrap();
        set_attr(&mut b, DELETE_BACKUPS_ON_DESTROY, Value::bool(true));
        set_attr(&mut opted, "backup_policy", b);
        assert!(delete_backups_on_destroy(&opted));
        assert_eq!(backup_policy(&opted), Some(p.clone()));
        assert_eq!(
            backup_policy_value(&p, &opted),
            opted.get_attr("backup_policy").cloned().unwrap()
        );
        assert_eq!(
            fixed_policy(v.get_attr("backup_policy")),
            fixed_policy(opted.get_attr("backup_policy"))
        );
        let mut other = v.clone();
        let mut b = other.get_attr("backup_policy").cloned().unwrap();
        set_attr(&mut b, "keep", Value::number_i64(4));
        set_attr(&mut other, "backup_policy", b);
        assert_ne!(
            fixed_policy(v.get_attr("backup_policy")),
            fixed_policy(other.get_attr("backup_policy"))
        );
    }

    #[test]
    fn import_stub_has_every_schema_attribute() {
        let ty = schema().implied_type();
        let stub = schema().null_object_with([("id", Value::string("orders"))]);
        let crate::cty::Type::Object { attrs, .. } = &ty else {
            panic!("not an object type")
        };
        for name in attrs.keys() {
            assert!(stub.get_attr(name).is_some(), "import stub lacks {name}");
        }
        assert_eq!(stub.get_attr("id"), Some(&Value::string("orders")));
        crate::cty::msgpack::encode(&stub, &ty).expect("stub conforms to the schema type");
    }
}
