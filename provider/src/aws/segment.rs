//! `strata_storage_segment`: an EBS data volume attached to a node. Created in the node's AZ
//! (gp3 and encrypted by default), attached at a free device name, grown in place with
//! ModifyVolume (never shrunk), moved between nodes of one AZ by detach and attach.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, VolumeModificationState, VolumeType};

use super::config::{Clients, RegionClients};
use super::error::{AwsError, ErrorKind};
use super::network;
use super::node::{self, NodeInfo};
use super::tags::{self, ObjectTags, TAG_TOKEN};
use super::wait::{Backoff, Poll, retry_while, wait_for};

pub use strata_topology::tags::ROLE_SEGMENT;
use strata_topology::tags::{AGENT_SEGMENT_TAGS, TAG_AUTOSCALE};

/// What `strata_storage_segment` asks for.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub cluster: String,
    /// `strata_storage_segment.<name>`-like address.
    pub resource: String,
    pub creation_token: String,
    /// `None`: the provider's region.
    pub region: Option<String>,
    /// The node (instance) it attaches to; the volume is made in that node's AZ.
    pub node_instance_id: String,
    pub size_gib: i32,
    /// `gp3` unless set.
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// `None`: the first free of /dev/sdf../dev/sdp.
    pub device_name: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Strata's own tags for a new volume beyond the object tags (the autoscaling bounds), so
    /// CreateVolume carries them and no tagging call follows.
    pub creation_tags: BTreeMap<String, String>,
    pub timeout: Duration,
    /// The caller's own lookup just showed that no volume carries `creation_token`: the
    /// find-by-token before CreateVolume is skipped.
    pub token_unused: bool,
}

impl SegmentSpec {
    pub fn new(
        cluster: impl Into<String>,
        resource: impl Into<String>,
        creation_token: impl Into<String>,
        node_instance_id: impl Into<String>,
        size_gib: i32,
    ) -> SegmentSpec {
        SegmentSpec {
            cluster: cluster.into(),
            resource: resource.into(),
            creation_token: creation_token.into(),
            region: None,
            node_instance_id: node_instance_id.into(),
            size_gib,
            volume_type: "gp3".into(),
            iops: None,
            throughput: None,
            encrypted: true,
            kms_key_id: None,
            device_name: None,
            tags: BTreeMap::new(),
            creation_tags: BTreeMap::new(),
            timeout: Duration::from_secs(10 * 60),
            token_unused: false,
        }
    }
}

/// A segment as read back from AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub volume_id: String,
    pub region: String,
    /// Current size: may be larger than configured when the agent grew it.
    pub size_gib: i32,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub availability_zone: String,
    /// `creating`, `available`, `in-use`, ...
    pub state: String,
    pub attached_instance_id: Option<String>,
    pub device_name: Option<String>,
    pub attachment_state: Option<String>,
    /// All tags, `strata:*` included.
    pub tags: BTreeMap<String, String>,
}

impl SegmentInfo {
    pub fn user_tags(&self) -> BTreeMap<String, String> {
        tags::user_visible(&self.tags)
    }
}

fn segment_info(region: &str, v: &aws_sdk_ec2::types::Volume) -> SegmentInfo {
    let att = v.attachments().first();
    SegmentInfo {
        volume_id: v.volume_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        size_gib: v.size().unwrap_or_default(),
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        iops: v.iops(),
        throughput: v.throughput(),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_string),
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        state: v
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        attached_instance_id: att.and_then(|a| a.instance_id()).map(str::to_string),
        device_name: att.and_then(|a| a.device()).map(str::to_string),
        attachment_state: att.and_then(|a| a.state()).map(|s| s.as_str().to_string()),
        tags: tags::from_ec2(v.tags()),
    }
}

/// The first device name in /dev/sdf../dev/sdp not in `used` (`/dev/xvdX` counts as `sdX`).
pub fn free_device(used: &[String]) -> Option<String> {
    let norm = |d: &str| d.replace("/dev/xvd", "/dev/sd");
    let used: Vec<String> = used.iter().map(|d| norm(d)).collect();
    ('f'..='p')
        .map(|c| format!("/dev/sd{c}"))
        .find(|d| !used.contains(d))
}

/// The volume as CreateVolume describes it (a new volume has no attachment).
fn created_info(
    region: &str,
    v: &aws_sdk_ec2::operation::create_volume::CreateVolumeOutput,
) -> SegmentInfo {
    SegmentInfo {
        volume_id: v.volume_id().unwrap_or_default().to_string(),
        region: region.to_string(),
        size_gib: v.size().unwrap_or_default(),
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        iops: v.iops(),
        throughput: v.throughput(),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_string),
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        state: v
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        attached_instance_id: None,
        device_name: None,
        attachment_state: None,
        tags: tags::from_ec2(v.tags()),
    }
}

async fn describe_volume(rc: &RegionClients, volume_id: &str) -> Result<SegmentInfo, AwsError> {
    let what = format!("volume {volume_id}");
    let out = rc
        .ec2
        .describe_volumes()
        .volume_ids(volume_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumes", &what))?;
    present_or_not_found(
        out.volumes().first().map(|v| segment_info(&rc.region, v)),
        volume_id,
    )
}

/// `v` when it is there and not deleted; else the not-found error `describe_volume` gives.
fn present_or_not_found(v: Option<SegmentInfo>, volume_id: &str) -> Result<SegmentInfo, AwsError> {
    match v {
        Some(v) if v.state != "deleted" => Ok(v),
        _ => Err(AwsError::api(
            "ec2:DescribeVolumes",
            &format!("volume {volume_id}"),
            "InvalidVolume.NotFound",
            "the volume does not exist",
        )),
    }
}

/// Several volumes by id in one call (EC2 refuses the whole call when one id is unknown).
async fn describe_volumes(
    rc: &RegionClients,
    volume_ids: Vec<String>,
) -> Result<std::collections::HashMap<String, SegmentInfo>, AwsError> {
    let out = rc
        .ec2
        .describe_volumes()
        .set_volume_ids(Some(volume_ids))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumes", "volumes being waited on"))?;
    Ok(out
        .volumes()
        .iter()
        .map(|v| segment_info(&rc.region, v))
        .map(|v| (v.volume_id.clone(), v))
        .collect())
}

/// One poll of a wait: [`describe_volume`], answered together with the other waits of this
/// region polling at the same moment (`Shared::volume_polls`).
async fn poll_volume(rc: &RegionClients, volume_id: &str) -> Result<SegmentInfo, AwsError> {
    let v = rc
        .shared
        .volume_polls
        .poll(
            volume_id,
            |ids| describe_volumes(rc, ids),
            || describe_volume(rc, volume_id),
        )
        .await?;
    present_or_not_found(Some(v), volume_id)
}

async fn wait_volume(
    rc: &RegionClients,
    volume_id: &str,
    wanted: &str,
    timeout: Duration,
    ready: impl Fn(&SegmentInfo) -> bool,
) -> Result<SegmentInfo, AwsError> {
    let what = format!("volume {volume_id}");
    wait_for(&what, wanted, timeout, Backoff::default(), || async {
        match poll_volume(rc, volume_id).await {
            Ok(v) if ready(&v) => Ok(Poll::Ready(v)),
            Ok(v) if v.state == "error" => Err(AwsError::BadState {
                object: what.clone(),
                state: v.state,
                wanted: wanted.into(),
                what_to_do: "EBS reports the volume failed; delete it and apply again".into(),
            }),
            Ok(v) => Ok(Poll::Pending(format!(
                "{}{}",
                v.state,
                v.attachment_state
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default()
            ))),
            Err(e) => Err(e),
        }
    })
    .await
}

async fn wait_gone(rc: &RegionClients, volume_id: &str, timeout: Duration) -> Result<(), AwsError> {
    let what = format!("volume {volume_id}");
    wait_for(&what, "deleted", timeout, Backoff::default(), || async {
        match poll_volume(rc, volume_id).await {
            Ok(v) => Ok(Poll::Pending(v.state)),
            Err(e) if e.is_not_found() => Ok(Poll::Ready(())),
            Err(e) => Err(e),
        }
    })
    .await
}

fn attached_to(v: &SegmentInfo, instance_id: &str) -> bool {
    v.attached_instance_id.as_deref() == Some(instance_id)
        && v.attachment_state.as_deref() == Some("attached")
}

/// Attaches at the spec's device or the first free one, retrying when a concurrent attach
/// took the same device name. `known`: the node as the caller just read it, for the first
/// attempt (a retry reads it again: a concurrent attach changed its devices), and the volume
/// as the caller has it: when AttachVolume answers `attached`, that is the result, unread.
async fn attach(
    rc: &RegionClients,
    volume_id: &str,
    instance_id: &str,
    device: Option<&str>,
    timeout: Duration,
    known: Option<(NodeInfo, SegmentInfo)>,
) -> Result<SegmentInfo, AwsError> {
    let what = format!("volume {volume_id} on instance {instance_id}");
    let volume = known.as_ref().map(|(_, v)| v.clone());
    let known = std::sync::Mutex::new(known.map(|(n, _)| n));
    let out = retry_while(
        Duration::from_secs(60).min(timeout),
        Backoff::default(),
        |e| matches!(e, AwsError::Api { message, .. } if message.contains("in use") || message.contains("already")),
        || async {
            let first = known.lock().ok().and_then(|mut k| k.take());
            let node = match first {
                Some(n) => n,
                None => node::describe_node(rc, instance_id).await?,
            };
            let dev = match device {
                Some(d) => d.to_string(),
                None => free_device(&node.devices).ok_or_else(|| {
                    AwsError::Invalid(format!("instance {instance_id} has no free device name left in /dev/sdf../dev/sdp"))
                })?,
            };
            rc.ec2
                .attach_volume()
                .volume_id(volume_id)
                .instance_id(instance_id)
                .device(&dev)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ec2:AttachVolume", &what))
        },
    )
    .await?;
    // Its devices changed: a later reader of the launch's answer reads it again.
    rc.shared.launched.forget(&instance_id.to_string());
    if let Some(mut v) = volume
        && out.state() == Some(&aws_sdk_ec2::types::VolumeAttachmentState::Attached)
        && out.instance_id() == Some(instance_id)
    {
        v.state = "in-use".into();
        v.attached_instance_id = Some(instance_id.to_string());
        v.device_name = out.device().map(str::to_string);
        v.attachment_state = Some("attached".into());
        return Ok(v);
    }
    wait_volume(rc, volume_id, "attached", timeout, |v| {
        attached_to(v, instance_id)
    })
    .await
}

async fn detach(
    rc: &RegionClients,
    volume_id: &str,
    timeout: Duration,
) -> Result<SegmentInfo, AwsError> {
    let what = format!("volume {volume_id}");
    let v = describe_volume(rc, volume_id).await?;
    if v.attached_instance_id.is_none() {
        return Ok(v);
    }
    // Instance and device are optional for AWS; LocalStack (moto) fails without them.
    let req = rc
        .ec2
        .detach_volume()
        .volume_id(volume_id)
        .set_instance_id(v.attached_instance_id.clone())
        .set_device(v.device_name.clone());
    if let Err(e) = req.send().await {
        let e = AwsError::from_sdk(e, "ec2:DetachVolume", &what);
        // Already detached (IncorrectState) or gone is fine; the wait below decides.
        if !(e.is_not_found() || e.is_kind(ErrorKind::Conflict)) {
            return Err(e);
        }
    }
    wait_volume(rc, volume_id, "available", timeout, |v| {
        v.state == "available" && v.attached_instance_id.is_none()
    })
    .await
}

/// Creates (or finds, by creation token) the volume in the node's AZ and attaches it; waits
/// until it is in use. A volume this call created is deleted again if attaching fails.
pub async fn create_segment(
    clients: &Clients,
    spec: &SegmentSpec,
) -> Result<SegmentInfo, AwsError> {
    let rc = clients.region(spec.region.as_deref()).await?;
    let node = node::describe_node(&rc, &spec.node_instance_id).await?;
    create_segment_on(clients, spec, node).await
}

/// [`create_segment`] with the node (`spec.node_instance_id`) as the caller just read it.
pub async fn create_segment_on(
    clients: &Clients,
    spec: &SegmentSpec,
    node: NodeInfo,
) -> Result<SegmentInfo, AwsError> {
    validate_size(spec.size_gib)?;
    let rc = clients.region(spec.region.as_deref()).await?;
    let what = format!(
        "storage segment {} of cluster {:?}",
        spec.resource, spec.cluster
    );
    let az = node.availability_zone.clone().ok_or_else(|| {
        AwsError::missing(
            "ec2:DescribeInstances",
            &spec.node_instance_id,
            "AvailabilityZone",
        )
    })?;

    let found = if spec.token_unused {
        None
    } else {
        Some(
            rc.ec2
                .describe_volumes()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{TAG_TOKEN}"))
                        .values(&spec.creation_token)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("status")
                        .values("creating")
                        .values("available")
                        .values("in-use")
                        .build(),
                )
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumes", &what))?,
        )
    };
    let (vol, created) = match found.as_ref().and_then(|f| f.volumes().first()) {
        Some(v) => (segment_info(&rc.region, v), false),
        None => {
            let mut t = tags::build_tags(
                clients.default_tags(),
                &spec.tags,
                &ObjectTags {
                    cluster: &spec.cluster,
                    resource: &spec.resource,
                    role: Some(ROLE_SEGMENT),
                    creation_token: &spec.creation_token,
                    name: Some(&format!("{}-segment", spec.cluster)),
                },
            );
            t.extend(spec.creation_tags.clone());
            let client_token = tags::call_client_token(&spec.creation_token);
            let out = rc
                .ec2
                .create_volume()
                .availability_zone(&az)
                .size(spec.size_gib)
                .volume_type(VolumeType::from(spec.volume_type.as_str()))
                .set_iops(spec.iops)
                .set_throughput(spec.throughput)
                .encrypted(spec.encrypted)
                .set_kms_key_id(spec.kms_key_id.clone())
                .tag_specifications(tags::ec2_tag_spec(ResourceType::Volume, &t))
                .client_token(client_token.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ec2:CreateVolume", &what))?;
            let id = out
                .volume_id()
                .ok_or_else(|| AwsError::missing("ec2:CreateVolume", &what, "VolumeId"))?;
            tracing::info!(volume_id = %id, cluster = %spec.cluster, az = %az, "volume created");
            // CreateVolume answers with the volume: no read-back.
            (created_info(&rc.region, &out), true)
        }
    };
    let id = vol.volume_id.clone();
    let result = async {
        if attached_to(&vol, &spec.node_instance_id) {
            return Ok(vol.clone());
        }
        if vol.attached_instance_id.is_none() {
            if vol.state != "available" {
                wait_volume(&rc, &id, "available", spec.timeout, |v| {
                    v.state == "available" || attached_to(v, &spec.node_instance_id)
                })
                .await?;
            }
            attach(
                &rc,
                &id,
                &spec.node_instance_id,
                spec.device_name.as_deref(),
                spec.timeout,
                Some((node.clone(), vol.clone())),
            )
            .await
        } else {
            // Attached, or attaching, to this node by an earlier attempt.
            wait_volume(&rc, &id, "attached", spec.timeout, |v| {
                attached_to(v, &spec.node_instance_id)
            })
            .await
        }
    }
    .await;
    match result {
        Ok(v) => Ok(v),
        Err(e) if created => {
            match delete_segment(clients, spec.region.as_deref(), &id, spec.timeout).await {
                Ok(()) => Err(e),
                Err(_) => Err(AwsError::Partial {
                    source: Box::new(e),
                    leftovers: vec![id],
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// The segment now (its current size and attachment); not-found when it is gone.
pub async fn read_segment(
    clients: &Clients,
    region: Option<&str>,
    volume_id: &str,
) -> Result<SegmentInfo, AwsError> {
    let rc = clients.region(region).await?;
    describe_volume(&rc, volume_id).await
}

fn validate_size(size: i32) -> Result<(), AwsError> {
    if !(1..=65536).contains(&size) {
        return Err(AwsError::Invalid(format!(
            "size_gib {size}: EBS volumes are 1 to 65536 GiB"
        )));
    }
    Ok(())
}

/// Whether going from `current` to `wanted` GiB is allowed: never smaller.
pub fn check_resize(volume_id: &str, current: i32, wanted: i32) -> Result<bool, AwsError> {
    validate_size(wanted)?;
    if wanted < current {
        return Err(AwsError::Invalid(format!(
            "volume {volume_id} is {current} GiB and cannot shrink to {wanted} GiB (EBS volumes \
             only grow): set size_gib to at least {current}, or replace the segment"
        )));
    }
    Ok(wanted > current)
}

/// Grows the volume to `size_gib` (ModifyVolume) and waits until the modification is
/// `optimizing` or `completed` (the new size is usable then). Equal size: nothing to do;
/// smaller: an error.
pub async fn grow_segment(
    clients: &Clients,
    region: Option<&str>,
    volume_id: &str,
    size_gib: i32,
    timeout: Duration,
) -> Result<SegmentInfo, AwsError> {
    modify_segment(
        clients,
        region,
        volume_id,
        Some(size_gib),
        None,
        None,
        timeout,
    )
    .await
}

/// ModifyVolume for size, IOPS and throughput together (EBS allows one modification per 6
/// hours, so they go in one call).
pub async fn modify_segment(
    clients: &Clients,
    region: Option<&str>,
    volume_id: &str,
    size_gib: Option<i32>,
    iops: Option<i32>,
    throughput: Option<i32>,
    timeout: Duration,
) -> Result<SegmentInfo, AwsError> {
    let rc = clients.region(region).await?;
    let what = format!("volume {volume_id}");
    let cur = describe_volume(&rc, volume_id).await?;
    let grow = match size_gib {
        Some(s) => check_resize(volume_id, cur.size_gib, s)?,
        None => false,
    };
    let iops = iops.filter(|i| Some(*i) != cur.iops);
    let throughput = throughput.filter(|t| Some(*t) != cur.throughput);
    if !grow && iops.is_none() && throughput.is_none() {
        return Ok(cur);
    }
    rc.ec2
        .modify_volume()
        .volume_id(volume_id)
        .set_size(if grow { size_gib } else { None })
        .set_iops(iops)
        .set_throughput(throughput)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:ModifyVolume", &what))?;
    wait_for(
        &what,
        "modified (optimizing or completed)",
        timeout,
        Backoff::default(),
        || async {
            let out = rc
                .ec2
                .describe_volumes_modifications()
                .volume_ids(volume_id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumesModifications", &what))?;
            let state = out
                .volumes_modifications()
                .iter()
                .max_by(|a, b| {
                    a.start_time()
                        .map(|t| t.as_nanos())
                        .cmp(&b.start_time().map(|t| t.as_nanos()))
                })
                .and_then(|m| m.modification_state().cloned());
            match state {
                Some(VolumeModificationState::Optimizing)
                | Some(VolumeModificationState::Completed) => Ok(Poll::Ready(())),
                Some(VolumeModificationState::Failed) => Err(AwsError::BadState {
                    object: what.clone(),
                    state: "modification failed".into(),
                    wanted: "modified".into(),
                    what_to_do: "check the size/iops/throughput combination for the volume type"
                        .into(),
                }),
                Some(s) => Ok(Poll::Pending(s.as_str().to_string())),
                // No modification record: some emulators apply the change at once.
                None => Ok(Poll::Ready(())),
            }
        },
    )
    .await?;
    describe_volume(&rc, volume_id).await
}

/// Moves the volume to another node in the same AZ: detach, wait available, attach, wait
/// in use. Already attached to `to_instance_id`: nothing to do.
pub async fn move_segment(
    clients: &Clients,
    region: Option<&str>,
    volume_id: &str,
    to_instance_id: &str,
    timeout: Duration,
) -> Result<SegmentInfo, AwsError> {
    let rc = clients.region(region).await?;
    let v = describe_volume(&rc, volume_id).await?;
    if attached_to(&v, to_instance_id) {
        return Ok(v);
    }
    let target = node::describe_node(&rc, to_instance_id).await?;
    if target.availability_zone.as_deref() != Some(v.availability_zone.as_str()) {
        return Err(AwsError::Invalid(format!(
            "volume {volume_id} is in {} and node {to_instance_id} in {}: a segment can only \
             move within its availability zone (replace it instead)",
            v.availability_zone,
            target.availability_zone.unwrap_or_default()
        )));
    }
    detach(&rc, volume_id, timeout).await?;
    attach(&rc, volume_id, to_instance_id, None, timeout, None).await
}

/// In-place changes from a spec: size/iops/throughput (one ModifyVolume), the node (move),
/// and tags. The spec's size is a floor: a volume the agent grew beyond it is left alone.
pub async fn update_segment(
    clients: &Clients,
    volume_id: &str,
    spec: &SegmentSpec,
) -> Result<SegmentInfo, AwsError> {
    let rc = clients.region(spec.region.as_deref()).await?;
    let cur = describe_volume(&rc, volume_id).await?;
    let size = (spec.size_gib > cur.size_gib).then_some(spec.size_gib);
    let mut v = modify_segment(
        clients,
        spec.region.as_deref(),
        volume_id,
        size,
        spec.iops,
        spec.throughput,
        spec.timeout,
    )
    .await?;
    if !attached_to(&v, &spec.node_instance_id) {
        v = move_segment(
            clients,
            spec.region.as_deref(),
            volume_id,
            &spec.node_instance_id,
            spec.timeout,
        )
        .await?;
    }
    let wanted = tags::build_tags(
        clients.default_tags(),
        &spec.tags,
        &ObjectTags {
            cluster: &spec.cluster,
            resource: &spec.resource,
            role: Some(ROLE_SEGMENT),
            creation_token: v
                .tags
                .get(TAG_TOKEN)
                .map(String::as_str)
                .unwrap_or(&spec.creation_token),
            name: Some(&format!("{}-segment", spec.cluster)),
        },
    );
    // The node agent records its growth on the volume; those tags are its, not Terraform's.
    let mut wanted = wanted;
    for (k, val) in &v.tags {
        if AGENT_SEGMENT_TAGS.contains(&k.as_str()) || k == TAG_AUTOSCALE {
            wanted.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    network::sync_tags(&rc.ec2, volume_id, &v.tags, &wanted).await?;
    describe_volume(&rc, volume_id).await
}

/// Detaches (waiting until available), deletes, and waits until the volume is gone. A volume
/// already gone is success.
pub async fn delete_segment(
    clients: &Clients,
    region: Option<&str>,
    volume_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(region).await?;
    let what = format!("volume {volume_id}");
    match detach(&rc, volume_id, timeout).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    }
    let r = retry_while(
        Duration::from_secs(60).min(timeout),
        Backoff::default(),
        |e| e.is_kind(ErrorKind::Conflict),
        || async {
            rc.ec2
                .delete_volume()
                .volume_id(volume_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(e, "ec2:DeleteVolume", &what))
        },
    )
    .await;
    match r {
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    wait_gone(&rc, volume_id, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_device_skips_used_names_in_either_spelling() {
        assert_eq!(
            free_device(&["/dev/xvda".into()]).as_deref(),
            Some("/dev/sdf")
        );
        assert_eq!(
            free_device(&["/dev/xvda".into(), "/dev/sdf".into(), "/dev/xvdg".into()]).as_deref(),
            Some("/dev/sdh")
        );
        let all: Vec<String> = ('f'..='p').map(|c| format!("/dev/sd{c}")).collect();
        assert_eq!(free_device(&all), None);
    }

    #[test]
    fn segments_never_shrink() {
        assert!(!check_resize("vol-1", 100, 100).unwrap());
        assert!(check_resize("vol-1", 100, 150).unwrap());
        let e = check_resize("vol-1", 150, 100).unwrap_err().to_string();
        assert!(
            e.contains("cannot shrink") && e.contains("vol-1") && e.contains("150"),
            "{e}"
        );
        assert!(check_resize("vol-1", 1, 70000).is_err());
    }
}
