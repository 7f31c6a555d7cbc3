//! Instances (nodes): find-or-create by creation token, IMDSv2 and an encrypted root volume
//! always, state waiters, instance-type change (stop, modify, start), termination, the default
//! AMI lookup; and the `strata_replica` operations, which are a node and nothing more.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType,
    VolumeType,
};
use strata_topology::{Arch, NodeState, TAG_NODE_ERROR, TAG_NODE_STATE};

use super::config::{Clients, RegionClients};
use super::error::{AwsError, ErrorKind};
use super::network;
use super::tags::{self, ObjectTags, TAG_CLUSTER, TAG_ROLE, TAG_TOKEN};
use super::wait::{Backoff, Poll, retry_while, wait_for};

/// The image LocalStack (moto) has in every region; used only when it exists and no real
/// Debian image was found.
pub const EMULATOR_FALLBACK_AMI: &str = "ami-03cf127a";

pub use strata_topology::tags::TAG_INDEX;

/// One instance to run: the cluster's source, a replica, or one of a region's replicas.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Cluster name (the `strata:cluster` tag).
    pub cluster: String,
    /// Terraform address-like name, e.g. `strata_replica.orders_b` (the `strata:resource` tag).
    pub resource: String,
    /// Stable across retries of this create; see `tags::creation_token`.
    pub creation_token: String,
    /// `None`: the provider's region.
    pub region: Option<String>,
    pub subnet_id: String,
    pub instance_type: String,
    /// `None`: `default_ami` for the instance type's architecture.
    pub ami: Option<String>,
    pub security_group_ids: Vec<String>,
    /// Instance profile name (the cluster's).
    pub instance_profile: Option<String>,
    /// Already rendered; base64-encoded here.
    pub user_data: String,
    pub tags: BTreeMap<String, String>,
    /// `source`, `replica` or `region-replica` (the `strata:role` tag).
    pub role: String,
    /// Position within a region's replicas (the `strata:index` tag).
    pub index: Option<u32>,
    pub root_volume_size_gib: i32,
    pub root_kms_key_id: Option<String>,
    pub key_name: Option<String>,
    pub timeout: Duration,
    /// The caller's own lookup just showed that no live instance carries `creation_token` (a
    /// fresh token, or an index no instance has): the find-by-token before RunInstances is
    /// skipped.
    pub token_unused: bool,
}

/// `strata_replica` takes a node spec with role `replica`.
pub type ReplicaSpec = NodeSpec;

impl NodeSpec {
    /// A spec with Strata's defaults (20 GiB root, 15 min timeout, role `replica`).
    pub fn new(
        cluster: impl Into<String>,
        resource: impl Into<String>,
        creation_token: impl Into<String>,
        subnet_id: impl Into<String>,
        instance_type: impl Into<String>,
    ) -> NodeSpec {
        NodeSpec {
            cluster: cluster.into(),
            resource: resource.into(),
            creation_token: creation_token.into(),
            region: None,
            subnet_id: subnet_id.into(),
            instance_type: instance_type.into(),
            ami: None,
            security_group_ids: Vec::new(),
            instance_profile: None,
            user_data: String::new(),
            tags: BTreeMap::new(),
            role: "replica".into(),
            index: None,
            root_volume_size_gib: 20,
            root_kms_key_id: None,
            key_name: None,
            timeout: Duration::from_secs(15 * 60),
            token_unused: false,
        }
    }
}

/// An instance as Strata sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub instance_id: String,
    pub region: String,
    pub state: String,
    pub private_ip: Option<String>,
    pub private_dns: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub availability_zone: Option<String>,
    pub instance_type: String,
    pub ami: Option<String>,
    pub security_group_ids: Vec<String>,
    pub instance_profile_arn: Option<String>,
    pub http_tokens_required: bool,
    pub root_volume_id: Option<String>,
    /// Device names in use (root and data).
    pub devices: Vec<String>,
    /// All tags, `strata:*` included.
    pub tags: BTreeMap<String, String>,
}

pub type ReplicaInfo = NodeInfo;

impl NodeInfo {
    pub fn user_tags(&self) -> BTreeMap<String, String> {
        tags::user_visible(&self.tags)
    }
    pub fn is_gone(&self) -> bool {
        self.state == "terminated" || self.state == "shutting-down"
    }
}

fn node_info(region: &str, i: &aws_sdk_ec2::types::Instance) -> NodeInfo {
    let root = i.root_device_name();
    NodeInfo {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        private_ip: i.private_ip_address().map(str::to_string),
        private_dns: i
            .private_dns_name()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        subnet_id: i.subnet_id().map(str::to_string),
        vpc_id: i.vpc_id().map(str::to_string),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        ami: i.image_id().map(str::to_string),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        instance_profile_arn: i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_string),
        http_tokens_required: i
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .is_some_and(|t| *t == HttpTokensState::Required),
        root_volume_id: i
            .block_device_mappings()
            .iter()
            .find(|b| b.device_name().is_some() && b.device_name() == root)
            .and_then(|b| b.ebs())
            .and_then(|e| e.volume_id())
            .map(str::to_string),
        devices: i
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.device_name().map(str::to_string))
            .collect(),
        tags: tags::from_ec2(i.tags()),
    }
}

const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Live (not terminated) instances matching all `filters`.
pub async fn find_nodes(
    rc: &RegionClients,
    filters: &[(&str, &str)],
) -> Result<Vec<NodeInfo>, AwsError> {
    let mut req = rc.ec2.describe_instances().filters(
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
            .build(),
    );
    for (k, v) in filters {
        req = req.filters(Filter::builder().name(*k).values(*v).build());
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", "instances"))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().map(|i| node_info(&rc.region, i)));
        }
    }
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(out)
}

/// Live instances of `cluster` with any of `roles`, in one call; ordered as `roles`, then by
/// instance id.
pub async fn find_cluster_nodes(
    rc: &RegionClients,
    cluster: &str,
    roles: &[&str],
) -> Result<Vec<NodeInfo>, AwsError> {
    let req = rc
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_CLUSTER}"))
                .values(cluster)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_ROLE}"))
                .set_values(Some(roles.iter().map(|r| r.to_string()).collect()))
                .build(),
        );
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", "instances"))?;
        for r in page.reservations() {
            out.extend(r.instances().iter().map(|i| node_info(&rc.region, i)));
        }
    }
    let rank = |n: &NodeInfo| {
        let role = n.tags.get(TAG_ROLE).map(String::as_str).unwrap_or_default();
        roles.iter().position(|r| *r == role).unwrap_or(roles.len())
    };
    out.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    Ok(out)
}

/// The instance, or a not-found error if it does not exist or is terminated.
pub async fn describe_node(rc: &RegionClients, instance_id: &str) -> Result<NodeInfo, AwsError> {
    let what = format!("instance {instance_id}");
    let out = rc
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", &what))?;
    let node = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .map(|i| node_info(&rc.region, i));
    live_or_not_found(node, instance_id)
}

/// `node` when it is there and not terminated; else the not-found error `describe_node` gives.
fn live_or_not_found(node: Option<NodeInfo>, instance_id: &str) -> Result<NodeInfo, AwsError> {
    match node {
        Some(n) if n.state != "terminated" => Ok(n),
        _ => Err(AwsError::api(
            "ec2:DescribeInstances",
            &format!("instance {instance_id}"),
            "InvalidInstanceID.NotFound",
            "the instance does not exist or is terminated",
        )),
    }
}

/// Several instances by id in one call (EC2 refuses the whole call when one id is unknown).
async fn describe_nodes(
    rc: &RegionClients,
    instance_ids: Vec<String>,
) -> Result<std::collections::HashMap<String, NodeInfo>, AwsError> {
    let out = rc
        .ec2
        .describe_instances()
        .set_instance_ids(Some(instance_ids))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", "instances being waited on"))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| node_info(&rc.region, i))
        .map(|n| (n.instance_id.clone(), n))
        .collect())
}

/// One poll of a wait: [`describe_node`], answered together with the other waits of this
/// region polling at the same moment (`Shared::instance_polls`).
async fn poll_node(rc: &RegionClients, instance_id: &str) -> Result<NodeInfo, AwsError> {
    let n = rc
        .shared
        .instance_polls
        .poll(
            instance_id,
            |ids| describe_nodes(rc, ids),
            || describe_node(rc, instance_id),
        )
        .await?;
    live_or_not_found(Some(n), instance_id)
}

/// Waits until the instance is in `wanted` (`running`, `stopped`, `terminated`).
pub async fn wait_node_state(
    rc: &RegionClients,
    instance_id: &str,
    wanted: &str,
    timeout: Duration,
) -> Result<NodeInfo, AwsError> {
    let what = format!("instance {instance_id}");
    wait_for(&what, wanted, timeout, Backoff::default(), || async {
        match poll_node(rc, instance_id).await {
            Ok(n) if n.state == wanted => Ok(Poll::Ready(n)),
            Ok(n) => {
                let hopeless = (wanted == "running" || wanted == "stopped")
                    && (n.state == "terminated" || n.state == "shutting-down");
                if hopeless {
                    return Err(AwsError::BadState {
                        object: what.clone(),
                        state: n.state,
                        wanted: wanted.into(),
                        what_to_do: "it was terminated (outside Terraform, or it failed to \
                                     start: see its console output); apply again to replace it"
                            .into(),
                    });
                }
                Ok(Poll::Pending(n.state))
            }
            Err(e) if e.is_not_found() && wanted == "terminated" => {
                Ok(Poll::Ready(NodeInfo::gone(&rc.region, instance_id)))
            }
            Err(e) => Err(e),
        }
    })
    .await
}

impl NodeInfo {
    pub(crate) fn gone(region: &str, instance_id: &str) -> NodeInfo {
        NodeInfo {
            instance_id: instance_id.into(),
            region: region.into(),
            state: "terminated".into(),
            private_ip: None,
            private_dns: None,
            subnet_id: None,
            vpc_id: None,
            availability_zone: None,
            instance_type: String::new(),
            ami: None,
            security_group_ids: vec![],
            instance_profile_arn: None,
            http_tokens_required: false,
            root_volume_id: None,
            devices: vec![],
            tags: BTreeMap::new(),
        }
    }
}

/// The CPU architecture of an instance type: Graviton families carry a `g` after the
/// generation digit (`r7g`, `m6gd`, `c7gn`, `t4g`, `x2gd`, `is4gen`); `g5`, `g4dn` do not.
pub fn architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let suffix = family.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let after_digits = suffix.trim_start_matches(|c: char| c.is_ascii_digit());
    if after_digits.contains('g') {
        "arm64"
    } else {
        "x86_64"
    }
}

/// Strata's architecture for an instance type (what the agent builds are named by).
pub fn arch_of(instance_type: &str) -> Arch {
    if architecture(instance_type) == "arm64" {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

/// EC2's name for an architecture (DescribeImages' `architecture` filter).
pub fn ec2_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "arm64",
    }
}

/// Debian's name for an architecture (its image names and SSM parameters).
pub fn debian_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// The AWS account that publishes the official Debian images.
pub const DEBIAN_OWNER: &str = "136693071363";

/// One place a default image may come from, tried in order by `default_ami`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A public SSM parameter whose value is an image id.
    SsmParameter(String),
    /// The newest available image of `owner` whose name matches `name` (wildcards allowed).
    Owner {
        owner: String,
        name: String,
        architecture: String,
    },
    /// The image an EC2 emulator has in every region; only when it exists there.
    Emulator(String),
}

/// Where the default image for `arch` comes from: official Debian 12 (its public SSM
/// parameter, then its owner's newest image), and last the emulator's stock image, so a
/// LocalStack run still launches something.
pub fn default_image_sources(arch: Arch) -> Vec<ImageSource> {
    let deb = debian_arch(arch);
    vec![
        ImageSource::SsmParameter(format!("/aws/service/debian/release/bookworm/latest/{deb}")),
        ImageSource::Owner {
            owner: DEBIAN_OWNER.to_string(),
            name: format!("debian-12-{deb}-*"),
            architecture: ec2_arch(arch).to_string(),
        },
        ImageSource::Emulator(EMULATOR_FALLBACK_AMI.to_string()),
    ]
}

/// The newest of `(image id, creation date)` pairs (ISO 8601 dates sort as text).
pub fn newest_image<'a>(images: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    images
        .into_iter()
        .max_by(|a, b| a.1.cmp(b.1))
        .map(|(id, _)| id)
}

/// The default AMI for `instance_type`: the latest official Debian 12 image for its
/// architecture, else (EC2 emulators only) the emulator's stock image. Every candidate is
/// checked to exist before it is used. Looked up once per architecture and process: every node
/// of one apply gets the same image.
pub async fn default_ami(rc: &RegionClients, instance_type: &str) -> Result<String, AwsError> {
    let arch = arch_of(instance_type);
    rc.shared
        .default_amis
        .get_or_try(&ec2_arch(arch), || lookup_default_ami(rc, instance_type))
        .await
}

async fn lookup_default_ami(rc: &RegionClients, instance_type: &str) -> Result<String, AwsError> {
    let arch = arch_of(instance_type);
    for source in default_image_sources(arch) {
        match source {
            ImageSource::SsmParameter(param) => {
                // Missing or not readable: try the next source. Throttled or failing: stop,
                // rather than silently pick another image than a calmer apply would.
                let out = match rc.ssm.get_parameter().name(&param).send().await {
                    Ok(out) => Some(out),
                    Err(e) => {
                        let e = AwsError::from_sdk(e, "ssm:GetParameter", &param);
                        if e.is_transient() {
                            return Err(e);
                        }
                        None
                    }
                };
                if let Some(out) = out
                    && let Some(id) = out.parameter().and_then(|p| p.value())
                    && image_exists(rc, id).await?
                {
                    return Ok(id.to_string());
                }
            }
            ImageSource::Owner {
                owner,
                name,
                architecture,
            } => {
                let images = rc
                    .ec2
                    .describe_images()
                    .owners(&owner)
                    .filters(Filter::builder().name("name").values(&name).build())
                    .filters(
                        Filter::builder()
                            .name("architecture")
                            .values(&architecture)
                            .build(),
                    )
                    .filters(Filter::builder().name("state").values("available").build())
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::from_sdk(e, "ec2:DescribeImages", "the default Debian 12 image")
                    })?;
                let newest =
                    newest_image(images.images().iter().filter_map(|i| {
                        Some((i.image_id()?, i.creation_date().unwrap_or_default()))
                    }));
                if let Some(id) = newest {
                    return Ok(id.to_string());
                }
            }
            ImageSource::Emulator(id) => {
                if image_exists(rc, &id).await? {
                    return Ok(id);
                }
            }
        }
    }
    Err(AwsError::Invalid(format!(
        "no Debian 12 image found for {instance_type} ({}) in {}: set ami_id",
        ec2_arch(arch),
        rc.region
    )))
}

/// What one poll of a launched node says, from its `strata:node-state` tag and EC2 state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The reason, from `strata:node-error` (or the instance's own state).
    Failed(String),
    /// Not yet: the state to report if the wait times out.
    Pending(String),
}

/// The verdict for one node: its own tags decide, unless EC2 already stopped or ended it.
pub fn readiness(tags: &BTreeMap<String, String>, instance_state: &str) -> Readiness {
    let node_state = tags.get(TAG_NODE_STATE).map(String::as_str);
    match node_state.and_then(NodeState::parse) {
        Some(NodeState::Ready) => return Readiness::Ready,
        Some(NodeState::Failed) => {
            let reason = tags
                .get(TAG_NODE_ERROR)
                .filter(|r| !r.trim().is_empty())
                .cloned()
                .unwrap_or_else(|| "the node gave no reason (no strata:node-error tag)".into());
            return Readiness::Failed(reason);
        }
        _ => {}
    }
    if matches!(
        instance_state,
        "shutting-down" | "terminated" | "stopping" | "stopped"
    ) {
        return Readiness::Failed(format!(
            "the instance is {instance_state} before it reported ready"
        ));
    }
    Readiness::Pending(match node_state {
        Some(s) => format!("{s} (instance {instance_state})"),
        None => format!("not reported yet (instance {instance_state})"),
    })
}

/// Waits until every instance in `instance_ids` tags itself `strata:node-state=ready`, with one
/// DescribeInstances call per poll for all of them. Fails at the first node that reports
/// `failed` (or is terminated or stopped), and when `timeout` passes. A zero timeout returns at
/// once (emulators whose instances never boot).
pub async fn wait_nodes_ready(
    rc: &RegionClients,
    instance_ids: &[String],
    timeout: Duration,
) -> Result<(), AwsError> {
    if timeout.is_zero() || instance_ids.is_empty() {
        return Ok(());
    }
    let backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(15),
        factor: 1.5,
    };
    let start = std::time::Instant::now();
    let deadline = start + timeout;
    let mut pending: Vec<String> = instance_ids.to_vec();
    let mut last: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut attempt = 0u32;
    loop {
        let out = rc
            .ec2
            .describe_instances()
            .set_instance_ids(Some(pending.clone()))
            .send()
            .await;
        match out {
            Ok(out) => {
                for i in out.reservations().iter().flat_map(|r| r.instances()) {
                    let n = node_info(&rc.region, i);
                    let name = n
                        .tags
                        .get(tags::TAG_NAME)
                        .cloned()
                        .unwrap_or_else(|| n.instance_id.clone());
                    match readiness(&n.tags, &n.state) {
                        Readiness::Ready => {
                            tracing::info!(instance_id = %n.instance_id, waited = ?start.elapsed(), "node ready");
                            pending.retain(|p| *p != n.instance_id);
                        }
                        Readiness::Failed(reason) => {
                            return Err(AwsError::NodeFailed {
                                instance_id: n.instance_id,
                                node: name,
                                reason,
                            });
                        }
                        Readiness::Pending(s) => {
                            last.insert(n.instance_id.clone(), (name, s));
                        }
                    }
                }
            }
            Err(e) => {
                let e = AwsError::from_sdk(e, "ec2:DescribeInstances", "the nodes being waited on");
                // A just-launched instance may not be visible yet: keep waiting for it.
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        match backoff.delay_within(attempt, std::time::Instant::now(), deadline) {
            Some(d) => {
                if !crate::cancel::sleep(d).await {
                    return Err(AwsError::Cancelled {
                        waiting_for: format!("node(s) {} to report ready", pending.join(", ")),
                    });
                }
            }
            None => {
                let id = pending[0].clone();
                let (node, last_state) = last
                    .remove(&id)
                    .unwrap_or_else(|| (id.clone(), "not visible to DescribeInstances".into()));
                return Err(AwsError::NodeNotReady {
                    instance_id: id,
                    node,
                    last_state,
                    waited: start.elapsed(),
                });
            }
        }
        attempt += 1;
    }
}

async fn image_exists(rc: &RegionClients, image_id: &str) -> Result<bool, AwsError> {
    match image_root_device(rc, image_id).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.is_kind(ErrorKind::InvalidInput) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The image's root device name (where the encrypted root mapping goes); an image's never
/// changes, so it is asked once per image and process.
async fn image_root_device(rc: &RegionClients, image_id: &str) -> Result<String, AwsError> {
    rc.shared
        .image_roots
        .get_or_try(&image_id.to_string(), || {
            describe_image_root_device(rc, image_id)
        })
        .await
}

async fn describe_image_root_device(
    rc: &RegionClients,
    image_id: &str,
) -> Result<String, AwsError> {
    let what = format!("image {image_id}");
    let out = rc
        .ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeImages", &what))?;
    let img = out.images().first().ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeImages",
            &what,
            "InvalidAMIID.NotFound",
            "no such image",
        )
    })?;
    Ok(img.root_device_name().unwrap_or("/dev/xvda").to_string())
}

/// Finds the instance made with this spec's creation token, or runs it. Returns the node and
/// whether it was created now.
pub async fn ensure_node(clients: &Clients, spec: &NodeSpec) -> Result<(NodeInfo, bool), AwsError> {
    let rc = clients.region(spec.region.as_deref()).await?;
    let what = format!(
        "{} instance of cluster {:?} ({})",
        spec.role, spec.cluster, spec.resource
    );
    if !spec.token_unused {
        let existing =
            find_nodes(&rc, &[(&format!("tag:{TAG_TOKEN}"), &spec.creation_token)]).await?;
        if let Some(n) = existing.into_iter().next() {
            return Ok((n, false));
        }
    }
    let ami = match &spec.ami {
        Some(a) if !a.is_empty() => a.clone(),
        _ => default_ami(&rc, &spec.instance_type).await?,
    };
    let root_device = image_root_device(&rc, &ami).await.map_err(|e| match e {
        AwsError::Api { .. } if e.is_not_found() => AwsError::api(
            "ec2:DescribeImages",
            &what,
            "InvalidAMIID.NotFound",
            &format!("image {ami} does not exist in {}", rc.region),
        ),
        e => e,
    })?;
    let mut all_tags = tags::build_tags(
        clients.default_tags(),
        &spec.tags,
        &ObjectTags {
            cluster: &spec.cluster,
            resource: &spec.resource,
            role: Some(&spec.role),
            creation_token: &spec.creation_token,
            name: Some(&format!("{}-{}", spec.cluster, spec.role)),
        },
    );
    if let Some(i) = spec.index {
        all_tags.insert(TAG_INDEX.into(), i.to_string());
        all_tags.insert(
            tags::TAG_NAME.into(),
            format!("{}-{}-{i}", spec.cluster, spec.role),
        );
    }
    let ebs = EbsBlockDevice::builder()
        .encrypted(true)
        .set_kms_key_id(spec.root_kms_key_id.clone())
        .volume_type(VolumeType::Gp3)
        .volume_size(spec.root_volume_size_gib)
        .delete_on_termination(true)
        .build();
    let user_data = encoded_user_data(spec)?;
    let client_token = tags::call_client_token(&spec.creation_token);
    let run = || async {
        let mut req = rc
            .ec2
            .run_instances()
            .image_id(&ami)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(Some(spec.security_group_ids.clone()))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&root_device)
                    .ebs(ebs.clone())
                    .build(),
            )
            .user_data(&user_data)
            .tag_specifications(tags::ec2_tag_spec(ResourceType::Instance, &all_tags))
            .tag_specifications(tags::ec2_tag_spec(ResourceType::Volume, &all_tags))
            .set_key_name(spec.key_name.clone())
            .client_token(client_token.clone());
        if let Some(p) = &spec.instance_profile {
            req = req
                .iam_instance_profile(IamInstanceProfileSpecification::builder().name(p).build());
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:RunInstances", &what))
    };
    // A just-made instance profile takes a while to be visible to EC2.
    let out = retry_while(
        Duration::from_secs(120).min(spec.timeout),
        Backoff::default(),
        |e| {
            matches!(e, AwsError::Api { code, message, .. }
            if code == "InvalidParameterValue" && message.contains("iamInstanceProfile"))
        },
        run,
    )
    .await?;
    let inst = out
        .instances()
        .first()
        .ok_or_else(|| AwsError::missing("ec2:RunInstances", &what, "Instances"))?;
    let id = inst
        .instance_id()
        .ok_or_else(|| AwsError::missing("ec2:RunInstances", &what, "InstanceId"))?
        .to_string();
    tracing::info!(instance_id = %id, cluster = %spec.cluster, role = %spec.role, region = %rc.region, "instance launched");
    match wait_node_state(&rc, &id, "running", spec.timeout).await {
        Ok(n) => {
            rc.shared.launched.put(&id, n.clone()).await;
            Ok((n, true))
        }
        Err(e) => {
            // It never came up: do not leave it running up a bill.
            let _ = terminate_node(&rc, &id, Duration::ZERO).await;
            Err(e)
        }
    }
}

/// Terminates the instance and, unless `timeout` is zero, waits until it is terminated.
/// An instance that is already gone is success.
pub async fn terminate_node(
    rc: &RegionClients,
    instance_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let what = format!("instance {instance_id}");
    // Marked first, so the cluster's agents know this loss is wanted and never relaunch it
    // (strata_topology::replace).
    if let Err(e) = rc
        .ec2
        .create_tags()
        .resources(instance_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(strata_topology::replace::TAG_RETIRING)
                .value("true")
                .build(),
        )
        .send()
        .await
    {
        let e = AwsError::from_sdk(e, "ec2:CreateTags", &what);
        if e.is_not_found() {
            return Ok(());
        }
        return Err(e);
    }
    match rc
        .ec2
        .terminate_instances()
        .instance_ids(instance_id)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) => {
            let e = AwsError::from_sdk(e, "ec2:TerminateInstances", &what);
            if e.is_not_found() {
                return Ok(());
            }
            return Err(e);
        }
    }
    if timeout.is_zero() {
        return Ok(());
    }
    wait_node_state(rc, instance_id, "terminated", timeout)
        .await
        .map(|_| ())
}

/// Changes the instance type: stop, modify, start (the only way EC2 allows it).
pub async fn change_instance_type(
    rc: &RegionClients,
    instance_id: &str,
    instance_type: &str,
    timeout: Duration,
) -> Result<NodeInfo, AwsError> {
    let what = format!("instance {instance_id}");
    let n = describe_node(rc, instance_id).await?;
    if n.instance_type == instance_type {
        return Ok(n);
    }
    if n.state != "stopped" {
        rc.ec2
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:StopInstances", &what))?;
        wait_node_state(rc, instance_id, "stopped", timeout).await?;
    }
    rc.ec2
        .modify_instance_attribute()
        .instance_id(instance_id)
        .instance_type(
            aws_sdk_ec2::types::AttributeValue::builder()
                .value(instance_type)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:ModifyInstanceAttribute", &what))?;
    rc.ec2
        .start_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:StartInstances", &what))?;
    wait_node_state(rc, instance_id, "running", timeout).await
}

/// Makes the instance's tags exactly the wanted set for this spec (and its root volume's).
pub async fn sync_node_tags(
    clients: &Clients,
    rc: &RegionClients,
    node: &NodeInfo,
    spec: &NodeSpec,
) -> Result<(), AwsError> {
    let mut wanted = tags::build_tags(
        clients.default_tags(),
        &spec.tags,
        &ObjectTags {
            cluster: &spec.cluster,
            resource: &spec.resource,
            role: Some(&spec.role),
            // The token is the one it was made with, not a new one.
            creation_token: node
                .tags
                .get(TAG_TOKEN)
                .map(String::as_str)
                .unwrap_or(&spec.creation_token),
            name: Some(&format!("{}-{}", spec.cluster, spec.role)),
        },
    );
    if let Some(i) = node.tags.get(TAG_INDEX) {
        wanted.insert(TAG_INDEX.into(), i.clone());
    }
    // Set and cleared by the resource that pins the type (aws::roll::set_type_pin), not here.
    let pin = strata_topology::roll::TAG_INSTANCE_TYPE_PINNED;
    if let Some(v) = node.tags.get(pin) {
        wanted.insert(pin.into(), v.clone());
    }
    // The agent's own tags (node state, current role, last failover) are its, not Terraform's.
    for k in super::policy::agent_tag_keys() {
        if let Some(v) = node.tags.get(k) {
            wanted.insert(k.to_string(), v.clone());
        }
    }
    if let Some(n) = node.tags.get(tags::TAG_NAME)
        && !spec.tags.contains_key(tags::TAG_NAME)
    {
        wanted.insert(tags::TAG_NAME.into(), n.clone());
    }
    network::sync_tags(&rc.ec2, &node.instance_id, &node.tags, &wanted).await?;
    if let Some(root) = &node.root_volume_id {
        let vols = rc
            .ec2
            .describe_volumes()
            .volume_ids(root)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumes", root))?;
        if let Some(v) = vols.volumes().first() {
            network::sync_tags(&rc.ec2, root, &tags::from_ec2(v.tags()), &wanted).await?;
        }
    }
    Ok(())
}

/// Runs a replica instance (find-or-create by the spec's creation token).
pub async fn create_replica(
    clients: &Clients,
    spec: &ReplicaSpec,
) -> Result<ReplicaInfo, AwsError> {
    validate_node_spec(spec)?;
    ensure_node(clients, spec).await.map(|(n, _)| n)
}

/// The replica now; a not-found error (`is_not_found`) when it is gone or terminated and no
/// agent launched a replacement for it. A replacement (an instance tagged
/// `strata:replaces = <instance_id>`, launched by the source's agent when EC2 reported the
/// replica's instance terminated) is the replica from then on: its id is the new `id`.
pub async fn read_replica(
    clients: &Clients,
    region: Option<&str>,
    instance_id: &str,
) -> Result<ReplicaInfo, AwsError> {
    let rc = clients.region(region).await?;
    match describe_node(&rc, instance_id).await {
        Err(e) if e.is_not_found() => match find_replacement(&rc, instance_id).await? {
            Some(n) => Ok(n),
            None => Err(e),
        },
        other => other,
    }
}

/// [`read_replica`] in the home region, answered from what this process launched moments
/// ago when it launched `instance_id` (`Shared::launched`): a wave of segments made on the
/// nodes the wave before launched reads none of them again.
pub async fn read_replica_launched(
    clients: &Clients,
    instance_id: &str,
) -> Result<ReplicaInfo, AwsError> {
    let rc = clients.region(None).await?;
    rc.shared
        .launched
        .get_or_try(&instance_id.to_string(), || {
            read_replica(clients, None, instance_id)
        })
        .await
}

/// The live instance that replaced `lost`, following a chain of replacements (a replacement
/// that was itself lost and replaced) a few links deep.
pub async fn find_replacement(
    rc: &RegionClients,
    lost: &str,
) -> Result<Option<NodeInfo>, AwsError> {
    let mut current = lost.to_string();
    for _ in 0..5 {
        let out = rc
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", strata_topology::replace::TAG_REPLACES))
                    .values(&current)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", "instances"))?;
        let Some(next) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| node_info(&rc.region, i))
            .min_by_key(|n| n.state == "terminated")
        else {
            return Ok(None);
        };
        if next.state != "terminated" && next.state != "shutting-down" {
            return Ok(Some(next));
        }
        current = next.instance_id;
    }
    Ok(None)
}

/// In-place changes: instance type (stop, modify, start) and tags. Everything else in the spec
/// (subnet, AMI, user-data) needs a replacement, which is the caller's plan to make.
pub async fn update_replica(
    clients: &Clients,
    instance_id: &str,
    spec: &ReplicaSpec,
) -> Result<ReplicaInfo, AwsError> {
    update_node(clients, instance_id, spec).await
}

pub(crate) async fn update_node(
    clients: &Clients,
    instance_id: &str,
    spec: &NodeSpec,
) -> Result<NodeInfo, AwsError> {
    let rc = clients.region(spec.region.as_deref()).await?;
    let mut n = describe_node(&rc, instance_id).await?;
    if n.instance_type != spec.instance_type {
        n = change_instance_type(&rc, instance_id, &spec.instance_type, spec.timeout).await?;
    }
    sync_node_tags(clients, &rc, &n, spec).await?;
    describe_node(&rc, instance_id).await
}

/// Terminates the replica and waits; already gone is success.
pub async fn delete_replica(
    clients: &Clients,
    region: Option<&str>,
    instance_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(region).await?;
    terminate_node(&rc, instance_id, timeout).await
}

pub(crate) fn validate_node_spec(spec: &NodeSpec) -> Result<(), AwsError> {
    if spec.subnet_id.is_empty() {
        return Err(AwsError::Invalid(format!(
            "{}: subnet_id is required",
            spec.resource
        )));
    }
    if spec.instance_type.is_empty() {
        return Err(AwsError::Invalid(format!(
            "{}: instance_type is required",
            spec.resource
        )));
    }
    if spec.creation_token.is_empty() {
        return Err(AwsError::Invalid(format!(
            "{}: empty creation token",
            spec.resource
        )));
    }
    encoded_user_data(spec)?;
    Ok(())
}

/// The user-data as RunInstances takes it (gzip, then base64: the first-boot script is larger
/// than EC2's 16 KiB limit, which applies to the compressed bytes), or an error naming the size.
fn encoded_user_data(spec: &NodeSpec) -> Result<String, AwsError> {
    let (b64, len) = strata_topology::encode_user_data(&spec.user_data);
    if len > 16 * 1024 {
        return Err(AwsError::Invalid(format!(
            "{}: user-data is {len} bytes gzip-compressed; EC2 allows 16 KiB",
            spec.resource
        )));
    }
    Ok(b64)
}

/// Filters that find a cluster's live instances with one role.
pub(crate) fn role_filters<'a>(cluster: &'a str, role: &'a str) -> [(String, &'a str); 2] {
    [
        (format!("tag:{TAG_CLUSTER}"), cluster),
        (format!("tag:{TAG_ROLE}"), role),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_from_instance_type() {
        for t in [
            "r7g.large",
            "m6gd.xlarge",
            "c7gn.2xlarge",
            "t4g.micro",
            "x2gd.large",
            "is4gen.large",
            "g5g.xlarge",
            "m8g.medium",
        ] {
            assert_eq!(architecture(t), "arm64", "{t}");
        }
        for t in [
            "m7i.large",
            "g5.xlarge",
            "g4dn.xlarge",
            "t3.micro",
            "r6a.large",
            "c5n.large",
            "inf2.xlarge",
            "p4de.24xlarge",
        ] {
            assert_eq!(architecture(t), "x86_64", "{t}");
        }
    }

    #[test]
    fn arch_mapping() {
        assert_eq!(arch_of("r7g.large"), Arch::Aarch64);
        assert_eq!(arch_of("m7i.large"), Arch::X86_64);
        assert_eq!(arch_of("t3.medium"), Arch::X86_64);
        assert_eq!(ec2_arch(Arch::Aarch64), "arm64");
        assert_eq!(debian_arch(Arch::X86_64), "amd64");
        assert_eq!(debian_arch(Arch::Aarch64), "arm64");
    }

    #[test]
    fn default_image_is_official_debian_12_then_the_emulator() {
        assert_eq!(
            default_image_sources(Arch::X86_64),
            vec![
                ImageSource::SsmParameter(
                    "/aws/service/debian/release/bookworm/latest/amd64".into()
                ),
                ImageSource::Owner {
                    owner: "136693071363".into(),
                    name: "debian-12-amd64-*".into(),
                    architecture: "x86_64".into(),
                },
                ImageSource::Emulator(EMULATOR_FALLBACK_AMI.into()),
            ]
        );
        let arm = default_image_sources(Arch::Aarch64);
        assert_eq!(
            arm[0],
            ImageSource::SsmParameter("/aws/service/debian/release/bookworm/latest/arm64".into())
        );
        assert!(
            matches!(&arm[1], ImageSource::Owner { name, architecture, .. }
            if name == "debian-12-arm64-*" && architecture == "arm64")
        );
        assert_eq!(
            newest_image([
                ("ami-old", "2024-01-02T00:00:00.000Z"),
                ("ami-new", "2025-06-01T00:00:00.000Z"),
                ("ami-mid", "2024-12-31T00:00:00.000Z"),
            ]),
            Some("ami-new")
        );
        assert_eq!(newest_image([]), None);
    }

    #[test]
    fn readiness_from_tags() {
        let t = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            readiness(&t(&[(TAG_NODE_STATE, "ready")]), "running"),
            Readiness::Ready
        );
        assert_eq!(
            readiness(
                &t(&[
                    (TAG_NODE_STATE, "failed"),
                    (TAG_NODE_ERROR, "apt-get install mariadb-server failed")
                ]),
                "running"
            ),
            Readiness::Failed("apt-get install mariadb-server failed".into())
        );
        assert!(matches!(
            readiness(&t(&[(TAG_NODE_STATE, "failed")]), "running"),
            Readiness::Failed(r) if r.contains("no reason")
        ));
        assert!(matches!(
            readiness(&t(&[(TAG_NODE_STATE, "installing")]), "running"),
            Readiness::Pending(s) if s.starts_with("installing")
        ));
        assert!(matches!(
            readiness(&t(&[]), "pending"),
            Readiness::Pending(s) if s.contains("not reported")
        ));
        assert!(matches!(
            readiness(&t(&[(TAG_NODE_STATE, "installing")]), "terminated"),
            Readiness::Failed(r) if r.contains("terminated")
        ));
    }

    #[test]
    fn node_spec_validation() {
        let mut s = NodeSpec::new("c", "strata_replica.r", "tok", "subnet-1", "t3.micro");
        assert!(validate_node_spec(&s).is_ok());
        // Incompressible: the limit applies to the gzip-compressed bytes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        s.user_data = (0..40 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        assert!(
            validate_node_spec(&s)
                .unwrap_err()
                .to_string()
                .contains("16 KiB")
        );
        s.user_data.clear();
        s.subnet_id.clear();
        assert!(
            validate_node_spec(&s)
                .unwrap_err()
                .to_string()
                .contains("subnet_id")
        );
    }
}
