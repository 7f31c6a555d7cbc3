//! `strata_cluster`: the home region's security group, the node IAM role and instance profile,
//! the replication credential (an SSM SecureString), and the source instance.

use std::collections::BTreeMap;
use std::time::Duration;

use super::artifact::{self, AgentUpload};
use super::config::{Clients, RegionClients};
pub use super::credential::{
    ADMIN_USER, SecretString, admin_parameter_name, replication_parameter_name,
};
use super::credential::{delete_parameter, ensure_parameter};
use super::dns;
use super::error::AwsError;
pub use super::iam::managed_profile_name;
use super::iam::{delete_profile_and_role, ensure_profile};
use super::network::{self, Rule, RuleSource, SubnetInfo};
use super::node::{self, NodeInfo, NodeSpec};
use super::policy;
use super::tags::{self, ObjectTags, TAG_CLUSTER, TAG_ROLE, sub_token};

pub const DEFAULT_ENGINE_PORT: u16 = 3306;
pub use strata_topology::tags::{REGION_RULE_PREFIX, TAG_PORT};
use strata_topology::tags::{RULE_ALLOWED_CLIENTS, RULE_CLUSTER_MEMBERS};
pub const ROLE_SOURCE: &str = "source";
/// The backup node's `strata:role` (docs/backups.md).
pub const ROLE_BACKUP: &str = "backup";
pub const ROLE_SECURITY_GROUP: &str = "security-group";
/// What `strata_cluster` asks for: the source node it launches (every launch parameter is
/// declared once, in [`NodeSpec`]) and what only a cluster has.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The source node. `cluster` is the cluster's name (lowercase letters, digits, '-'; at
    /// most 40 characters: the cluster id and the `strata:cluster` tag), `resource` the
    /// `strata_cluster.<name>`-like address, `creation_token` the cluster's (each object a
    /// create makes derives its own from it), `instance_profile` an existing profile to use
    /// instead of the one Strata would make, `user_data` the source's rendered user-data (no
    /// secrets: the node reads the parameter). Its security group is the cluster's, made by
    /// the create.
    pub node: NodeSpec,
    pub port: u16,
    pub allowed_cidrs: Vec<String>,
    pub allowed_security_group_ids: Vec<String>,
    /// The agent build to put into the cluster's bucket before the source boots; `None` when
    /// the image has the agent baked in (then no bucket is made).
    pub agent: Option<AgentUpload>,
    /// The endpoints' zone (made by the caller first: its id goes into the nodes' config and
    /// the node policy); recorded on the security group.
    pub zone: Option<dns::Zone>,
    /// A cluster made from a backup (`restore_from`): the bucket and backup prefix of the
    /// cluster it comes from, which the node policy lets the nodes read.
    pub restore_read: Option<(String, String)>,
    /// A cluster with `backup_policy`: the backup bucket and this cluster's key prefix in it
    /// (its generation), which the node policy lets the nodes write.
    pub backup_store: Option<(String, String)>,
}

impl ClusterSpec {
    /// The tags of one of the cluster's objects: its `role`, and a creation token derived from
    /// the cluster's by `part`, so each object one create makes has its own.
    pub(super) fn object_tags(
        &self,
        clients: &Clients,
        role: &str,
        part: &str,
        name: Option<&str>,
    ) -> BTreeMap<String, String> {
        tags::build_tags(
            clients.default_tags(),
            &self.node.tags,
            &ObjectTags {
                cluster: &self.node.cluster,
                resource: &self.node.resource,
                role: Some(role),
                creation_token: &sub_token(&self.node.creation_token, part),
                name,
            },
        )
    }

    /// A spec with Strata's defaults (port 3306, 20 GiB root, 20 min timeout).
    pub fn new(
        name: impl Into<String>,
        creation_token: impl Into<String>,
        subnet_id: impl Into<String>,
        instance_type: impl Into<String>,
    ) -> ClusterSpec {
        let name = name.into();
        let mut node = NodeSpec::new(
            name.clone(),
            format!("strata_cluster.{name}"),
            creation_token,
            subnet_id,
            instance_type,
        );
        node.role = ROLE_SOURCE.into();
        node.timeout = Duration::from_secs(20 * 60);
        ClusterSpec {
            node,
            port: DEFAULT_ENGINE_PORT,
            allowed_cidrs: Vec::new(),
            allowed_security_group_ids: Vec::new(),
            agent: None,
            zone: None,
            restore_read: None,
            backup_store: None,
        }
    }

    /// The cluster's name (its id).
    pub fn name(&self) -> &str {
        &self.node.cluster
    }
}

/// What a cluster is, as read back from AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's name.
    pub cluster_id: String,
    pub region: String,
    /// The instance this resource launched (`source_instance_id`) is gone while the cluster
    /// (its group) is not: `source_instance_id` is empty and the launch-time fields below
    /// (`instance_type`, `ami`, `tags`, subnet) come from a surviving member or are empty.
    pub launch_node_lost: bool,
    pub source_instance_id: String,
    pub private_ip: Option<String>,
    /// `<private ip>:<port>`, where clients write.
    pub writer_endpoint: Option<String>,
    pub port: u16,
    pub security_group_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub availability_zone: String,
    pub parameter_name: String,
    pub parameter_arn: String,
    /// The SSM parameter holding the admin account's password.
    pub admin_parameter_name: String,
    /// `None` when the parameter is gone (deleted outside Terraform).
    pub parameter_version: Option<i64>,
    pub instance_profile: String,
    pub instance_profile_arn: Option<String>,
    /// True when Strata made (and will delete) the profile and its role.
    pub managed_profile: bool,
    pub instance_type: String,
    pub ami: Option<String>,
    pub allowed_cidrs: Vec<String>,
    pub allowed_security_group_ids: Vec<String>,
    /// User-visible tags of the source instance.
    pub tags: BTreeMap<String, String>,
    pub source: NodeInfo,
    /// The endpoints' zone, from the security group's tags (`None`: made before endpoints).
    pub zone: Option<dns::Zone>,
}

/// `create_cluster`'s answer: the info plus the generated replication password (for
/// sensitive state only; it also lives in the SSM parameter).
#[derive(Debug, Clone)]
pub struct ClusterCreated {
    pub info: ClusterInfo,
    pub replication_password: SecretString,
    /// The cluster's home members (source and replicas) as the create listed them.
    pub members: Vec<NodeInfo>,
}

pub fn security_group_name(cluster: &str) -> String {
    format!("strata-{cluster}")
}

/// The schema's rule too (`rules::cluster_name`): one rule, two places it is enforced.
pub fn validate_cluster_name(name: &str) -> Result<(), AwsError> {
    super::rules::cluster_name(name).map_err(AwsError::Invalid)
}

/// The cluster group's wanted ingress: the engine port from members (the group itself), the
/// allowed CIDRs and the allowed groups. Nothing else.
pub fn cluster_ingress(
    group_id: &str,
    port: u16,
    cidrs: &[String],
    groups: &[String],
) -> Vec<Rule> {
    let mut rules = vec![Rule::tcp(
        port,
        RuleSource::Group(group_id.into()),
        RULE_CLUSTER_MEMBERS,
    )];
    rules.extend(
        cidrs
            .iter()
            .map(|c| Rule::tcp(port, RuleSource::Cidr(c.clone()), RULE_ALLOWED_CLIENTS)),
    );
    rules.extend(
        groups
            .iter()
            .filter(|g| g.as_str() != group_id)
            .map(|g| Rule::tcp(port, RuleSource::Group(g.clone()), RULE_ALLOWED_CLIENTS)),
    );
    rules
}

fn is_region_rule(r: &Rule) -> bool {
    r.description
        .as_deref()
        .is_some_and(|d| d.starts_with(REGION_RULE_PREFIX))
}

/// What this call made, for clean-up if a later step fails.
#[derive(Debug)]
enum Made {
    Group(String),
    Profile(String),
    Parameter(String),
    Bucket(String),
}

/// Creates (or, on a retried apply, finds) everything a cluster is. On failure it removes what
/// this call made; what it could not remove is listed in `AwsError::Partial`.
pub async fn create_cluster(
    clients: &Clients,
    spec: &ClusterSpec,
) -> Result<ClusterCreated, AwsError> {
    validate_cluster_name(spec.name())?;
    let rc = clients.region(spec.node.region.as_deref()).await?;
    let mut made = Vec::new();
    match create_steps(clients, &rc, spec, &mut made).await {
        Ok(c) => Ok(c),
        Err(e) => {
            let mut leftovers = Vec::new();
            for m in made.iter().rev() {
                let r = match m {
                    Made::Group(id) => {
                        network::delete_group(
                            &rc.ec2,
                            id,
                            spec.node.timeout.min(Duration::from_secs(120)),
                        )
                        .await
                    }
                    Made::Profile(n) => delete_profile_and_role(&rc, n, spec.name()).await,
                    Made::Parameter(n) => delete_parameter(&rc, n).await,
                    Made::Bucket(b) => {
                        artifact::delete_bucket(&rc, b, spec.name(), &spec.node.resource).await
                    }
                };
                if let Err(ce) = r {
                    tracing::warn!(error = %ce, object = ?m, "clean-up after a failed create failed");
                    leftovers.push(match m {
                        Made::Group(x) | Made::Profile(x) | Made::Parameter(x) => x.clone(),
                        Made::Bucket(b) => format!("s3://{b}"),
                    });
                }
            }
            if leftovers.is_empty() {
                Err(e)
            } else {
                Err(AwsError::Partial {
                    source: Box::new(e),
                    leftovers,
                })
            }
        }
    }
}

async fn create_steps(
    clients: &Clients,
    rc: &RegionClients,
    spec: &ClusterSpec,
    made: &mut Vec<Made>,
) -> Result<ClusterCreated, AwsError> {
    let subnet = network::subnet(rc, &spec.node.subnet_id).await?;

    // Security group.
    let mut sg_tags = spec.object_tags(
        clients,
        ROLE_SECURITY_GROUP,
        "sg",
        Some(&security_group_name(spec.name())),
    );
    sg_tags.insert(TAG_PORT.into(), spec.port.to_string());
    if let Some(z) = &spec.zone {
        sg_tags.extend(z.group_tags());
    }
    let sg_name = security_group_name(spec.name());
    let (group, group_made) = network::ensure_group(
        &rc.ec2,
        &subnet.vpc_id,
        &sg_name,
        &format!(
            "Strata cluster {}: engine port between members and allowed clients",
            spec.name()
        ),
        &sg_tags,
    )
    .await?;
    if group_made {
        made.push(Made::Group(group.group_id.clone()));
    }
    let wanted = cluster_ingress(
        &group.group_id,
        spec.port,
        &spec.allowed_cidrs,
        &spec.allowed_security_group_ids,
    );
    let group = network::apply_ingress(&rc.ec2, &group, &wanted, is_region_rule).await?;

    // Instance profile.
    let profile = match &spec.node.instance_profile {
        Some(p) if !p.is_empty() => p.clone(),
        _ => {
            let name = managed_profile_name(spec.name(), &rc.region);
            let created = ensure_profile(
                clients,
                rc,
                spec,
                &name,
                spec.agent.as_ref().map(|a| a.bucket.as_str()),
            )
            .await?;
            if created {
                made.push(Made::Profile(name.clone()));
            }
            name
        }
    };

    // Replication and admin credentials.
    let parameter_name = replication_parameter_name(spec.name());
    let (password, created, parameter_version) = ensure_parameter(
        clients,
        rc,
        spec,
        &parameter_name,
        "replication-credential",
        "replication",
    )
    .await?;
    if created {
        made.push(Made::Parameter(parameter_name.clone()));
    }
    let admin_name = admin_parameter_name(spec.name());
    let (_, created, _) =
        ensure_parameter(clients, rc, spec, &admin_name, "admin-credential", "admin").await?;
    if created {
        made.push(Made::Parameter(admin_name));
    }

    // The agent build, in the cluster's own bucket, before any node asks for it.
    if let Some(up) = &spec.agent {
        let t = spec.object_tags(clients, "agent-artifacts", "bucket", None);
        let bucket_made =
            artifact::ensure_bucket(rc, &up.bucket, spec.name(), &spec.node.resource, &t).await?;
        if bucket_made {
            made.push(Made::Bucket(up.bucket.clone()));
        }
        artifact::ensure_object(rc, &up.bucket, &up.key, &up.build, &t, bucket_made).await?;
    }

    // Source instance.
    let node_token = sub_token(&spec.node.creation_token, "source");
    // The source as the cluster asked for it, in the group and with the profile just made.
    let mut node_spec = spec.node.clone();
    node_spec.creation_token = node_token;
    node_spec.region = Some(rc.region.clone());
    node_spec.security_group_ids = vec![group.group_id.clone()];
    node_spec.instance_profile = Some(profile.clone());
    node::validate_node_spec(&node_spec)?;
    // One listing of the cluster's live home members serves both the source's find-by-token
    // (a source launched with this token carries the cluster and role tags, so it is among
    // them) and the group repair below.
    let mut listed = super::drift::list_members(rc, spec.name()).await?;
    super::ownership::note_members_listed(rc, spec.name(), &listed).await;
    let found = listed
        .iter()
        .find(|n| n.tags.get(tags::TAG_TOKEN) == Some(&node_spec.creation_token))
        .cloned();
    let (source, source_made) = match found {
        Some(n) => (n, false),
        None => {
            node_spec.token_unused = true;
            node::ensure_node(clients, &node_spec).await?
        }
    };
    if source_made {
        // The replicas of the next wave read the source's NodeConfig from its user-data: a
        // source launched now has exactly the user-data just sent.
        rc.shared
            .node_configs
            .put(
                &source.instance_id,
                strata_topology::parse_user_data(&node_spec.user_data).ok(),
            )
            .await;
    }
    // A re-made group (deleted out of band) must hold the members that were in the old one.
    // A source launched now is in the group and joins the listing in its place (sources
    // first, then by instance id).
    if source_made {
        listed.push(source.clone());
        listed.sort_by(|a, b| {
            let replica =
                |n: &NodeInfo| n.tags.get(TAG_ROLE).map(String::as_str) != Some(ROLE_SOURCE);
            replica(a)
                .cmp(&replica(b))
                .then_with(|| a.instance_id.cmp(&b.instance_id))
        });
    }
    let members = super::drift::ensure_listed_members(rc, &group.group_id, listed).await?;
    // Every part was just made or read above: no read-back. (An adopted source of an earlier
    // attempt is in the group already: ensure_members put it there before it was read.)
    let source = if source.security_group_ids.contains(&group.group_id) {
        source
    } else {
        node::describe_node(rc, &source.instance_id).await?
    };
    let info = cluster_info(rc, spec.name(), source, &group, subnet, parameter_version);
    // The replicas, segments and regions that wait on this create read it next.
    rc.shared
        .clusters
        .put(&spec.node.cluster, info.clone())
        .await;
    Ok(ClusterCreated {
        info,
        replication_password: password,
        members,
    })
}

async fn find_cluster_group(
    rc: &RegionClients,
    cluster: &str,
) -> Result<Option<network::GroupInfo>, AwsError> {
    let tc = format!("tag:{TAG_CLUSTER}");
    let tr = format!("tag:{TAG_ROLE}");
    let groups =
        network::find_groups(&rc.ec2, &[(&tc, cluster), (&tr, ROLE_SECURITY_GROUP)]).await?;
    Ok(groups.into_iter().next())
}

/// [`read_cluster`], shared by the resources of one wave (see `memo`): what replicas, segments
/// and regions read of their cluster. Refresh reads with `read_cluster`.
pub async fn read_cluster_shared(
    clients: &Clients,
    region: Option<&str>,
    name: &str,
) -> Result<ClusterInfo, AwsError> {
    let rc = clients.region(region).await?;
    rc.shared
        .clusters
        .get_or_try(&name.to_string(), || {
            read_cluster(clients, Some(&rc.region), name)
        })
        .await
}

/// Reads the cluster back by name (its id). A not-found error (`is_not_found`) when the
/// security group is gone: the cluster must be created again. A launched source that is gone
/// while the group is there reads as `launch_node_lost`.
pub async fn read_cluster(
    clients: &Clients,
    region: Option<&str>,
    name: &str,
) -> Result<ClusterInfo, AwsError> {
    let rc = clients.region(region).await?;
    let what = format!("cluster {name:?} in {}", rc.region);
    let [(k1, v1), (k2, v2)] = node::role_filters(name, ROLE_SOURCE);
    let launched = node::find_nodes(&rc, &[(&k1, v1), (&k2, v2)])
        .await?
        .into_iter()
        .next();
    let group = find_cluster_group(&rc, name).await?;
    let (source, group) = match (launched, group) {
        (Some(s), Some(g)) => (s, g),
        (None, None) => {
            return Err(AwsError::api(
                "ec2:DescribeInstances",
                &format!("source instance of {what}"),
                "InvalidInstanceID.NotFound",
                "no live source instance and no security group",
            ));
        }
        (Some(_), None) => {
            return Err(AwsError::api(
                "ec2:DescribeSecurityGroups",
                &format!("security group of {what}"),
                "InvalidGroup.NotFound",
                "no security group",
            ));
        }
        // The instance this resource launched is gone (terminated outside Terraform), but the
        // cluster is not: its group is there and, after a failover, another node is its
        // source. Read as a lost node (the plan shows it), never as a cluster to
        // create again: that plan would replace every replica, the serving source included.
        (None, Some(g)) => (lost_launch_node(&rc, name, &g).await?, g),
    };
    let subnet_id = source.subnet_id.clone().unwrap_or_default();
    let subnet = match network::subnet(&rc, &subnet_id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() || subnet_id.is_empty() => SubnetInfo {
            subnet_id: subnet_id.clone(),
            vpc_id: group.vpc_id.clone(),
            availability_zone: source.availability_zone.clone().unwrap_or_default(),
            cidr_block: String::new(),
        },
        Err(e) => return Err(e),
    };
    let parameter_name = replication_parameter_name(name);
    let parameter_version = match rc.ssm.get_parameter().name(&parameter_name).send().await {
        Ok(out) => out.parameter().map(|p| p.version()),
        Err(e) => {
            let e = AwsError::from_sdk(e, "ssm:GetParameter", &parameter_name);
            if e.is_not_found() {
                None
            } else {
                return Err(e);
            }
        }
    };
    Ok(cluster_info(
        &rc,
        name,
        source,
        &group,
        subnet,
        parameter_version,
    ))
}

/// The cluster from its parts: the source instance, the security group, the source's subnet
/// and the replication parameter's version.
fn cluster_info(
    rc: &RegionClients,
    name: &str,
    source: NodeInfo,
    group: &network::GroupInfo,
    subnet: SubnetInfo,
    parameter_version: Option<i64>,
) -> ClusterInfo {
    let port = group
        .tags
        .get(TAG_PORT)
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_ENGINE_PORT);
    let subnet_id = source.subnet_id.clone().unwrap_or_default();
    let mut allowed_cidrs = Vec::new();
    let mut allowed_groups = Vec::new();
    for r in &group.ingress {
        if is_region_rule(r) || r.from_port != i32::from(port) {
            continue;
        }
        match &r.source {
            RuleSource::Cidr(c) => allowed_cidrs.push(c.clone()),
            RuleSource::Group(g) if *g != group.group_id => allowed_groups.push(g.clone()),
            RuleSource::Group(_) => {}
        }
    }
    allowed_cidrs.sort();
    allowed_cidrs.dedup();
    allowed_groups.sort();
    allowed_groups.dedup();
    let parameter_name = replication_parameter_name(name);
    let profile_arn = source.instance_profile_arn.clone();
    let instance_profile = profile_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    let managed = instance_profile == managed_profile_name(name, &rc.region);
    ClusterInfo {
        cluster_id: name.to_string(),
        region: rc.region.clone(),
        launch_node_lost: source.instance_id.is_empty(),
        source_instance_id: source.instance_id.clone(),
        private_ip: source.private_ip.clone(),
        writer_endpoint: source.private_ip.as_ref().map(|ip| format!("{ip}:{port}")),
        port,
        security_group_id: group.group_id.clone(),
        vpc_id: subnet.vpc_id,
        subnet_id,
        subnet_cidr: subnet.cidr_block,
        availability_zone: source
            .availability_zone
            .clone()
            .unwrap_or(subnet.availability_zone),
        parameter_arn: policy::parameter_arn(&rc.region, &parameter_name),
        parameter_name,
        admin_parameter_name: admin_parameter_name(name),
        parameter_version,
        instance_profile,
        instance_profile_arn: profile_arn,
        managed_profile: managed,
        instance_type: source.instance_type.clone(),
        ami: source.ami.clone(),
        allowed_cidrs,
        allowed_security_group_ids: allowed_groups,
        tags: source.user_tags(),
        source,
        zone: dns::Zone::from_group_tags(&group.tags),
    }
}

/// Stands in for the launched source when it is gone: the fields a member shares with every
/// other member of the cluster (subnet, image, instance profile) from a surviving one, if
/// any; the instance id empty.
async fn lost_launch_node(
    rc: &RegionClients,
    name: &str,
    group: &network::GroupInfo,
) -> Result<NodeInfo, AwsError> {
    let tc = format!("tag:{TAG_CLUSTER}");
    let sibling = node::find_nodes(rc, &[(&tc, name)])
        .await?
        .into_iter()
        .next();
    tracing::warn!(cluster = %name, "the source instance this cluster launched is gone");
    let mut n = NodeInfo::gone(&rc.region, "");
    n.vpc_id = Some(group.vpc_id.clone());
    if let Some(s) = sibling {
        n.ami = s.ami;
        n.instance_profile_arn = s.instance_profile_arn;
    }
    Ok(n)
}

/// In place: instance type (stop, modify, start), the allowed CIDRs and groups (a rule diff
/// that leaves regions' rules alone), and tags. Other changes need a replacement.
pub async fn update_cluster(
    clients: &Clients,
    spec: &ClusterSpec,
) -> Result<ClusterInfo, AwsError> {
    let rc = clients.region(spec.node.region.as_deref()).await?;
    let cur = read_cluster(clients, Some(&rc.region), spec.name()).await?;
    let wanted = cluster_ingress(
        &cur.security_group_id,
        cur.port,
        &spec.allowed_cidrs,
        &spec.allowed_security_group_ids,
    );
    let group =
        network::sync_ingress(&rc.ec2, &cur.security_group_id, &wanted, is_region_rule).await?;
    let mut sg_tags = tags::build_tags(
        clients.default_tags(),
        &spec.node.tags,
        &ObjectTags {
            cluster: spec.name(),
            resource: &spec.node.resource,
            role: Some(ROLE_SECURITY_GROUP),
            creation_token: group
                .tags
                .get(tags::TAG_TOKEN)
                .map(String::as_str)
                .unwrap_or_default(),
            name: Some(&security_group_name(spec.name())),
        },
    );
    sg_tags.insert(TAG_PORT.into(), cur.port.to_string());
    // The endpoints' zone: a repair may have made a new one (spec.zone), else the one recorded.
    if let Some(z) = spec.zone.as_ref().or(cur.zone.as_ref()) {
        sg_tags.extend(z.group_tags());
    }
    network::sync_tags(&rc.ec2, &cur.security_group_id, &group.tags, &sg_tags).await?;
    // Drift repair: members back in the group, deleted credential parameters made again (the
    // agents re-read them and converge on the new credential).
    super::drift::ensure_members(&rc, spec.name(), &cur.security_group_id).await?;
    for (name, role, purpose) in [
        (
            replication_parameter_name(spec.name()),
            "replication-credential",
            "replication",
        ),
        (
            admin_parameter_name(spec.name()),
            "admin-credential",
            "admin",
        ),
    ] {
        ensure_parameter(clients, &rc, spec, &name, role, purpose).await?;
    }
    // What an update may change on the source, over what it runs with (its subnet, image,
    // group and profile stay; user-data, key and root key are launch-only).
    let mut node_spec = spec.node.clone();
    node_spec.creation_token = sub_token(&spec.node.creation_token, "source");
    node_spec.region = Some(rc.region.clone());
    node_spec.subnet_id = cur.subnet_id.clone();
    node_spec.ami = cur.ami.clone();
    node_spec.security_group_ids = vec![cur.security_group_id.clone()];
    node_spec.instance_profile = Some(cur.instance_profile.clone());
    node_spec.user_data = String::new();
    node_spec.root_kms_key_id = None;
    node_spec.key_name = None;
    node::update_node(clients, &cur.source_instance_id, &node_spec).await?;
    let info = read_cluster(clients, Some(&rc.region), spec.name()).await?;
    rc.shared
        .clusters
        .put(&spec.node.cluster, info.clone())
        .await;
    Ok(info)
}

/// Deletes everything `create_cluster` made: the source instance (waiting for termination),
/// the security group (retrying while it is still in use), the Strata-made profile and role,
/// both parameters, and the agent bucket with its objects. Missing objects are skipped, so it
/// is safe to retry.
pub async fn delete_cluster(
    clients: &Clients,
    region: Option<&str>,
    name: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(region).await?;
    rc.shared.clusters.forget(&name.to_string());
    let [(k1, v1), (k2, v2)] = node::role_filters(name, ROLE_SOURCE);
    let mut sources = node::find_nodes(&rc, &[(&k1, v1), (&k2, v2)]).await?;
    // The backup node (`backup_policy`) goes with the cluster.
    let [(k1, v1), (k2, v2)] = node::role_filters(name, ROLE_BACKUP);
    sources.extend(node::find_nodes(&rc, &[(&k1, v1), (&k2, v2)]).await?);
    futures::future::try_join_all(
        sources
            .iter()
            .map(|n| node::terminate_node(&rc, &n.instance_id, timeout)),
    )
    .await?;
    if let Some(g) = find_cluster_group(&rc, name).await? {
        if let Some(z) = dns::Zone::from_group_tags(&g.tags) {
            dns::delete_endpoints(&rc, &z, name).await?;
        }
        network::delete_group(&rc.ec2, &g.group_id, timeout).await?;
    }
    delete_profile_and_role(&rc, &managed_profile_name(name, &rc.region), name).await?;
    delete_parameter(&rc, &replication_parameter_name(name)).await?;
    delete_parameter(&rc, &admin_parameter_name(name)).await?;
    let bucket = strata_topology::agent_bucket_name(name, &clients.account_id().await?, &rc.region);
    artifact::delete_bucket(&rc, &bucket, name, &format!("strata_cluster.{name}")).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::credential::generate_password;

    #[test]
    fn names() {
        assert!(validate_cluster_name("orders-2").is_ok());
        for bad in [
            "",
            "Orders",
            "2orders",
            "orders_x",
            "orders-",
            &"a".repeat(41),
        ] {
            assert!(validate_cluster_name(bad).is_err(), "{bad:?}");
        }
        assert!(managed_profile_name(&"a".repeat(40), "ap-southeast-2").len() <= 64);
        assert_eq!(
            replication_parameter_name("orders"),
            "/strata/orders/replication"
        );
        assert_eq!(
            admin_parameter_name("orders"),
            "/strata/orders/admin-password"
        );
    }

    #[test]
    fn ingress_is_members_and_allowed_only() {
        let r = cluster_ingress(
            "sg-self",
            3306,
            &["10.0.0.0/16".into()],
            &["sg-app".into(), "sg-self".into()],
        );
        let sources: Vec<_> = r
            .iter()
            .map(|r| (r.from_port, r.to_port, r.source.clone()))
            .collect();
        assert_eq!(
            sources,
            vec![
                (3306, 3306, RuleSource::Group("sg-self".into())),
                (3306, 3306, RuleSource::Cidr("10.0.0.0/16".into())),
                (3306, 3306, RuleSource::Group("sg-app".into())),
            ]
        );
        assert!(r.iter().all(|r| r.protocol == "tcp"));
    }

    #[test]
    fn passwords_are_random_and_secrets_are_redacted() {
        let a = generate_password();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
        let s = SecretString::new(a.clone());
        assert!(!format!("{s:?}").contains(&a));
        assert_eq!(s.expose(), a);
    }
}
