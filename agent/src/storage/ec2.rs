//! The EC2 half of storage growth: reading the node's data volumes and their modification
//! history, ModifyVolume with waiting, CreateVolume + AttachVolume of new segments, and the
//! tags that record every action. Uses the instance's own credentials (default chain) and an
//! optional endpoint override (LocalStack). Nothing here touches the local disks.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ec2::types::{
    Filter, ResourceType, Tag, TagSpecification, VolumeAttachmentState, VolumeModificationState,
    VolumeType,
};

use super::decide::VolumeState;

pub use strata_topology::tags::{
    ROLE_DATA_SEGMENT, TAG_AT_MAXIMUM, TAG_AUTOSCALED_FROM, TAG_CLUSTER,
    TAG_LAST_ADD_SEGMENT as TAG_LAST_SEGMENT, TAG_LAST_GROW, TAG_RESOURCE, TAG_ROLE,
};

/// Device names tried for new segments, in order. `/dev/sd[f-p]` is the range AWS
/// recommends for EBS data volumes on Linux.
const DEVICE_LETTERS: &str = "fghijklmnop";

/// What the autoscaler knows about one EBS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub volume_id: String,
    pub size_gib: u64,
    pub availability_zone: String,
    pub volume_type: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    /// `available`, `in-use`, ...
    pub state: Option<String>,
    pub attached_instance: Option<String>,
    pub attached_as: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub last_modification: Option<ModificationInfo>,
}

impl VolumeInfo {
    /// The view the decision needs.
    pub fn to_state(&self) -> VolumeState {
        VolumeState {
            volume_id: self.volume_id.clone(),
            size_gib: self.size_gib,
            last_modified: self.last_modification.as_ref().and_then(|m| m.start_time),
            modification_in_progress: self
                .last_modification
                .as_ref()
                .is_some_and(|m| m.state == ModificationState::Modifying),
        }
    }
}

/// The latest EBS modification of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModificationInfo {
    pub state: ModificationState,
    pub start_time: Option<SystemTime>,
    pub target_size_gib: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModificationState {
    Modifying,
    Optimizing,
    Completed,
    Failed,
}

/// A segment that was created and attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    pub volume_id: String,
    pub attached_as: String,
    pub size_gib: u64,
}

/// Backoff for the waits on EBS state changes.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl Default for WaitPolicy {
    /// A modification usually reaches `optimizing` within a minute or two; attachment in
    /// seconds. Thirty minutes is where something is wrong rather than slow.
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// A failed EC2 step.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("EC2 {operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        operation: &'static str,
        code: Option<String>,
        message: String,
    },
    /// EBS refused the modification: the six-hour limit, or one still in progress.
    #[error("EBS refused to modify {volume_id} now: {message}")]
    ModificationRefused { volume_id: String, message: String },
    #[error("modification of {volume_id} failed: {message}")]
    ModificationFailed { volume_id: String, message: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("volume {0} was not found")]
    VolumeNotFound(String),
    #[error("volume {0} is not attached to an instance; cannot tell where a new segment goes")]
    NotAttached(String),
    #[error("no free device name left on instance {0}")]
    NoFreeDevice(String),
    #[error("EC2 returned an incomplete answer: {0}")]
    Incomplete(String),
}

fn api_err<E>(operation: &'static str, err: aws_sdk_ec2::error::SdkError<E>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    Ec2Error::Api {
        operation,
        code: err.code().map(str::to_owned),
        message: format!("{}", DisplayErrorContext(&err)),
    }
}

/// The EC2 operations the autoscaling loop needs; a trait so the loop is testable offline.
pub trait Ec2Volumes: Send + Sync {
    fn describe(
        &self,
        volume_ids: &[String],
    ) -> impl Future<Output = Result<Vec<VolumeInfo>, Ec2Error>> + Send;

    /// Segments this agent added earlier (tag `strata:autoscaled-from` = one of `originals`),
    /// so a restarted agent counts them again.
    fn find_autoscaled(
        &self,
        originals: &[String],
    ) -> impl Future<Output = Result<Vec<VolumeInfo>, Ec2Error>> + Send;

    /// ModifyVolume to `to_gib`, wait until `optimizing` or `completed`, tag the volume.
    fn grow_volume(
        &self,
        volume_id: &str,
        from_gib: u64,
        to_gib: u64,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;

    /// CreateVolume like `template` (same AZ, type, encryption), attach it where
    /// `template` is attached, wait until in use, tag both volumes.
    fn add_segment(
        &self,
        template: &VolumeInfo,
        size_gib: u64,
    ) -> impl Future<Output = Result<NewSegment, Ec2Error>> + Send;

    /// Sets (or clears) `strata:at-maximum` on the volumes.
    fn mark_at_maximum(
        &self,
        volume_ids: &[String],
        at_maximum: bool,
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
}

/// The real EC2 client.
#[derive(Debug, Clone)]
pub struct Ec2Client {
    client: Client,
    cluster_id: String,
    wait: WaitPolicy,
}

impl Ec2Client {
    /// Loads the default credential chain (the instance profile on a node) for `region`;
    /// `endpoint` overrides the EC2 endpoint (LocalStack). `AWS_ENDPOINT_URL` in the
    /// environment is honoured by the chain itself.
    pub async fn connect(region: &str, endpoint: Option<&str>, cluster_id: &str) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()));
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        Self::new(Client::new(&conf), cluster_id)
    }

    pub fn new(client: Client, cluster_id: &str) -> Self {
        Self {
            client,
            cluster_id: cluster_id.to_owned(),
            wait: WaitPolicy::default(),
        }
    }

    pub fn with_wait(mut self, wait: WaitPolicy) -> Self {
        self.wait = wait;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn describe_filtered(
        &self,
        ids: &[String],
        filters: Vec<Filter>,
    ) -> Result<Vec<VolumeInfo>, Ec2Error> {
        let mut req = self.client.describe_volumes();
        for id in ids {
            req = req.volume_ids(id);
        }
        for f in filters {
            req = req.filters(f);
        }
        let out = req
            .send()
            .await
            .map_err(|e| api_err("DescribeVolumes", e))?;
        let mut vols = Vec::new();
        for v in out.volumes() {
            vols.push(volume_info(v)?);
        }
        if vols.is_empty() {
            return Ok(vols);
        }
        let ids: Vec<String> = vols.iter().map(|v| v.volume_id.clone()).collect();
        let mods = self.modifications(&ids).await?;
        for v in &mut vols {
            v.last_modification = mods.get(&v.volume_id).cloned();
        }
        Ok(vols)
    }

    /// The latest modification per volume. A volume never modified is simply absent.
    async fn modifications(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, ModificationInfo>, Ec2Error> {
        let mut req = self.client.describe_volumes_modifications();
        for id in ids {
            req = req.volume_ids(id);
        }
        let out = match req.send().await {
            Ok(out) => out,
            // AWS answers a never-modified volume with this code rather than an empty list.
            Err(e) if e.code() == Some("InvalidVolumeModification.NotFound") => {
                return Ok(BTreeMap::new());
            }
            Err(e) => return Err(api_err("DescribeVolumesModifications", e)),
        };
        let mut latest: BTreeMap<String, ModificationInfo> = BTreeMap::new();
        for m in out.volumes_modifications() {
            let Some(id) = m.volume_id() else { continue };
            let state = match m.modification_state() {
                Some(VolumeModificationState::Modifying) => ModificationState::Modifying,
                Some(VolumeModificationState::Optimizing) => ModificationState::Optimizing,
                Some(VolumeModificationState::Completed) => ModificationState::Completed,
                Some(VolumeModificationState::Failed) => ModificationState::Failed,
                _ => continue,
            };
            let info = ModificationInfo {
                state,
                start_time: m.start_time().and_then(|t| SystemTime::try_from(*t).ok()),
                target_size_gib: m.target_size().and_then(|s| u64::try_from(s).ok()),
            };
            let newer = latest
                .get(id)
                .is_none_or(|old| info.start_time >= old.start_time);
            if newer {
                latest.insert(id.to_owned(), info);
            }
        }
        Ok(latest)
    }

    async fn tag(&self, resource: &str, tags: &[(&str, String)]) -> Result<(), Ec2Error> {
        let mut req = self.client.create_tags().resources(resource);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(v).build());
        }
        req.send().await.map_err(|e| api_err("CreateTags", e))?;
        Ok(())
    }

    async fn wait_modification(&self, volume_id: &str, to_gib: u64) -> Result<(), Ec2Error> {
        let ids = [volume_id.to_owned()];
        let mut delay = self.wait.first_delay;
        let start = tokio::time::Instant::now();
        loop {
            let mods = self.modifications(&ids).await?;
            if let Some(m) = mods.get(volume_id)
                && m.target_size_gib == Some(to_gib)
            {
                match m.state {
                    ModificationState::Optimizing | ModificationState::Completed => return Ok(()),
                    ModificationState::Failed => {
                        return Err(Ec2Error::ModificationFailed {
                            volume_id: volume_id.to_owned(),
                            message: format!("EBS reports state failed for target {to_gib} GiB"),
                        });
                    }
                    ModificationState::Modifying => {}
                }
            }
            if start.elapsed() >= self.wait.timeout {
                return Err(Ec2Error::Timeout {
                    what: format!("{volume_id} to reach optimizing at {to_gib} GiB"),
                    after: self.wait.timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.wait.max_delay);
        }
    }

    async fn wait_volume_state(
        &self,
        volume_id: &str,
        done: impl Fn(&VolumeInfo) -> bool,
        what: &str,
    ) -> Result<VolumeInfo, Ec2Error> {
        let mut delay = self.wait.first_delay;
        let start = tokio::time::Instant::now();
        loop {
            let out = self
                .client
                .describe_volumes()
                .volume_ids(volume_id)
                .send()
                .await
                .map_err(|e| api_err("DescribeVolumes", e))?;
            if let Some(v) = out.volumes().first() {
                let info = volume_info(v)?;
                if done(&info) {
                    return Ok(info);
                }
            }
            if start.elapsed() >= self.wait.timeout {
                return Err(Ec2Error::Timeout {
                    what: format!("{volume_id} to be {what}"),
                    after: self.wait.timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.wait.max_delay);
        }
    }

    /// Device names in use on the instance, from its block device mappings and from the
    /// volumes EC2 says are attached to it (the two can lag each other briefly).
    async fn used_devices(&self, instance_id: &str) -> Result<Vec<String>, Ec2Error> {
        let out = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| api_err("DescribeInstances", e))?;
        let mut used: Vec<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| {
                i.root_device_name().map(str::to_owned).into_iter().chain(
                    i.block_device_mappings()
                        .iter()
                        .filter_map(|m| m.device_name().map(str::to_owned)),
                )
            })
            .collect();
        let vols = self
            .client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(instance_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| api_err("DescribeVolumes", e))?;
        for v in vols.volumes() {
            for a in v.attachments() {
                if a.instance_id() == Some(instance_id)
                    && let Some(d) = a.device()
                {
                    used.push(d.to_owned());
                }
            }
        }
        Ok(used)
    }

    /// A volume this agent created for `template` earlier but never attached (crash between
    /// CreateVolume and AttachVolume): reused instead of creating another.
    async fn unattached_leftover(
        &self,
        template: &VolumeInfo,
        size_gib: u64,
    ) -> Result<Option<VolumeInfo>, Ec2Error> {
        let found = self
            .describe_filtered(
                &[],
                vec![
                    tag_filter(TAG_AUTOSCALED_FROM, &template.volume_id),
                    Filter::builder().name("status").values("available").build(),
                ],
            )
            .await?;
        Ok(found.into_iter().find(|v| v.size_gib >= size_gib))
    }
}

/// The first `/dev/sdX` (X in f..=p) not used, also under its `/dev/xvdX` alias.
pub fn free_device_name(used: &[String]) -> Option<String> {
    DEVICE_LETTERS.chars().find_map(|c| {
        let sd = format!("/dev/sd{c}");
        let xvd = format!("/dev/xvd{c}");
        let taken = used.iter().any(|u| {
            *u == sd || *u == xvd || u.strip_prefix("/dev/").is_some_and(|n| n == &sd[5..])
        });
        (!taken).then_some(sd)
    })
}

/// "2026-11-27T06:00:00Z": the timestamp form used in action tags.
pub fn tag_timestamp(t: SystemTime) -> String {
    DateTime::from(t)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "unknown-time".to_owned())
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn volume_info(v: &aws_sdk_ec2::types::Volume) -> Result<VolumeInfo, Ec2Error> {
    let volume_id = v
        .volume_id()
        .ok_or_else(|| Ec2Error::Incomplete("volume without an id".into()))?
        .to_owned();
    let size_gib = v
        .size()
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| Ec2Error::Incomplete(format!("volume {volume_id} without a size")))?;
    let attachment = v.attachments().iter().find(|a| {
        matches!(
            a.state(),
            Some(VolumeAttachmentState::Attached | VolumeAttachmentState::Attaching)
        )
    });
    Ok(VolumeInfo {
        volume_id,
        size_gib,
        availability_zone: v.availability_zone().unwrap_or_default().to_owned(),
        volume_type: v.volume_type().map(|t| t.as_str().to_owned()),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_owned),
        iops: v.iops(),
        throughput: v.throughput(),
        state: v.state().map(|s| s.as_str().to_owned()),
        attached_instance: attachment.and_then(|a| a.instance_id()).map(str::to_owned),
        attached_as: attachment.and_then(|a| a.device()).map(str::to_owned),
        tags: v
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
        last_modification: None,
    })
}

fn is_attached(v: &VolumeInfo) -> bool {
    v.state.as_deref() == Some("in-use") && v.attached_instance.is_some()
}

impl Ec2Volumes for Ec2Client {
    async fn describe(&self, volume_ids: &[String]) -> Result<Vec<VolumeInfo>, Ec2Error> {
        if volume_ids.is_empty() {
            return Ok(Vec::new());
        }
        let vols = self.describe_filtered(volume_ids, Vec::new()).await?;
        for id in volume_ids {
            if !vols.iter().any(|v| &v.volume_id == id) {
                return Err(Ec2Error::VolumeNotFound(id.clone()));
            }
        }
        Ok(vols)
    }

    async fn find_autoscaled(&self, originals: &[String]) -> Result<Vec<VolumeInfo>, Ec2Error> {
        if originals.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = Filter::builder().name(format!("tag:{TAG_AUTOSCALED_FROM}"));
        for o in originals {
            f = f.values(o);
        }
        let mut found = self.describe_filtered(&[], vec![f.build()]).await?;
        found.retain(is_attached);
        Ok(found)
    }

    async fn grow_volume(
        &self,
        volume_id: &str,
        from_gib: u64,
        to_gib: u64,
    ) -> Result<(), Ec2Error> {
        let size = i32::try_from(to_gib)
            .map_err(|_| Ec2Error::Incomplete(format!("size {to_gib} GiB out of range")))?;
        tracing::info!(volume_id, from_gib, to_gib, "ModifyVolume");
        let res = self
            .client
            .modify_volume()
            .volume_id(volume_id)
            .size(size)
            .send()
            .await;
        if let Err(e) = res {
            let code = e.code().unwrap_or_default().to_owned();
            let message = format!("{}", DisplayErrorContext(&e));
            // The six-hour rule and "a modification is already in progress" both come back
            // as client errors; the loop treats them as a cooldown and adds a segment.
            let refused = code == "VolumeModificationRateExceeded"
                || code == "IncorrectModificationState"
                || message.contains("modification rate")
                || message.contains("Wait at least 6 hours");
            if refused {
                return Err(Ec2Error::ModificationRefused {
                    volume_id: volume_id.to_owned(),
                    message,
                });
            }
            return Err(Ec2Error::Api {
                operation: "ModifyVolume",
                code: Some(code).filter(|c| !c.is_empty()),
                message,
            });
        }
        self.wait_modification(volume_id, to_gib).await?;
        self.tag(
            volume_id,
            &[(
                TAG_LAST_GROW,
                format!(
                    "{} {from_gib}->{to_gib} GiB",
                    tag_timestamp(SystemTime::now())
                ),
            )],
        )
        .await
    }

    async fn add_segment(
        &self,
        template: &VolumeInfo,
        size_gib: u64,
    ) -> Result<NewSegment, Ec2Error> {
        let instance_id = template
            .attached_instance
            .clone()
            .ok_or_else(|| Ec2Error::NotAttached(template.volume_id.clone()))?;
        let size = i32::try_from(size_gib)
            .map_err(|_| Ec2Error::Incomplete(format!("size {size_gib} GiB out of range")))?;

        let volume_id = match self.unattached_leftover(template, size_gib).await? {
            Some(v) => {
                tracing::info!(volume_id = %v.volume_id, "reusing unattached segment from an earlier attempt");
                v.volume_id
            }
            None => {
                let cluster = template
                    .tags
                    .get(TAG_CLUSTER)
                    .cloned()
                    .unwrap_or_else(|| self.cluster_id.clone());
                let mut tags = vec![
                    (TAG_CLUSTER.to_owned(), cluster),
                    (TAG_ROLE.to_owned(), ROLE_DATA_SEGMENT.to_owned()),
                    (TAG_AUTOSCALED_FROM.to_owned(), template.volume_id.clone()),
                ];
                if let Some(r) = template.tags.get(TAG_RESOURCE) {
                    tags.push((TAG_RESOURCE.to_owned(), r.clone()));
                }
                if let Some(n) = template.tags.get("Name") {
                    tags.push(("Name".to_owned(), format!("{n}-autoscaled")));
                }
                let mut spec = TagSpecification::builder().resource_type(ResourceType::Volume);
                for (k, v) in &tags {
                    spec = spec.tags(Tag::builder().key(k).value(v).build());
                }
                let mut req = self
                    .client
                    .create_volume()
                    .availability_zone(&template.availability_zone)
                    .size(size)
                    .encrypted(template.encrypted)
                    .tag_specifications(spec.build());
                if let Some(t) = &template.volume_type {
                    let vt = VolumeType::from(t.as_str());
                    // gp3/io1/io2 carry their own IOPS and throughput; copy what applies.
                    if matches!(vt, VolumeType::Gp3 | VolumeType::Io1 | VolumeType::Io2)
                        && let Some(iops) = template.iops
                    {
                        req = req.iops(iops);
                    }
                    if vt == VolumeType::Gp3
                        && let Some(tp) = template.throughput
                    {
                        req = req.throughput(tp);
                    }
                    req = req.volume_type(vt);
                }
                if template.encrypted
                    && let Some(k) = &template.kms_key_id
                {
                    req = req.kms_key_id(k);
                }
                let out = req.send().await.map_err(|e| api_err("CreateVolume", e))?;
                let id = out
                    .volume_id()
                    .ok_or_else(|| Ec2Error::Incomplete("CreateVolume returned no id".into()))?
                    .to_owned();
                tracing::info!(volume_id = %id, size_gib, az = %template.availability_zone, "CreateVolume");
                id
            }
        };

        self.wait_volume_state(
            &volume_id,
            |v| v.state.as_deref() == Some("available") || is_attached(v),
            "available",
        )
        .await?;

        let used = self.used_devices(&instance_id).await?;
        let device =
            free_device_name(&used).ok_or_else(|| Ec2Error::NoFreeDevice(instance_id.clone()))?;
        self.client
            .attach_volume()
            .volume_id(&volume_id)
            .instance_id(&instance_id)
            .device(&device)
            .send()
            .await
            .map_err(|e| api_err("AttachVolume", e))?;
        tracing::info!(volume_id = %volume_id, instance_id = %instance_id, device = %device, "AttachVolume");
        let attached = self
            .wait_volume_state(&volume_id, is_attached, "in-use")
            .await?;

        let now = tag_timestamp(SystemTime::now());
        self.tag(
            &template.volume_id,
            &[(
                TAG_LAST_SEGMENT,
                format!("{now} {volume_id} {size_gib} GiB at {device}"),
            )],
        )
        .await?;
        Ok(NewSegment {
            volume_id,
            attached_as: attached.attached_as.unwrap_or(device),
            size_gib: attached.size_gib,
        })
    }

    async fn mark_at_maximum(
        &self,
        volume_ids: &[String],
        at_maximum: bool,
    ) -> Result<(), Ec2Error> {
        if volume_ids.is_empty() {
            return Ok(());
        }
        let mut req = self.client.create_tags();
        for id in volume_ids {
            req = req.resources(id);
        }
        let value = if at_maximum {
            format!("true since {}", tag_timestamp(SystemTime::now()))
        } else {
            "false".to_owned()
        };
        req.tags(Tag::builder().key(TAG_AT_MAXIMUM).value(value).build())
            .send()
            .await
            .map_err(|e| api_err("CreateTags", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_device_skips_used_and_aliases() {
        assert_eq!(free_device_name(&[]), Some("/dev/sdf".into()));
        let used = vec!["/dev/xvda".into(), "/dev/sdf".into(), "/dev/xvdg".into()];
        assert_eq!(free_device_name(&used), Some("/dev/sdh".into()));
        let all: Vec<String> = DEVICE_LETTERS
            .chars()
            .map(|c| format!("/dev/sd{c}"))
            .collect();
        assert_eq!(free_device_name(&all), None);
    }

    #[test]
    fn tag_timestamp_is_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(tag_timestamp(t), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn state_marks_modifying_as_in_progress() {
        let mut v = VolumeInfo {
            volume_id: "vol-1".into(),
            size_gib: 20,
            availability_zone: "us-east-1a".into(),
            volume_type: Some("gp3".into()),
            encrypted: true,
            kms_key_id: None,
            iops: None,
            throughput: None,
            state: Some("in-use".into()),
            attached_instance: Some("i-1".into()),
            attached_as: Some("/dev/sdf".into()),
            tags: BTreeMap::new(),
            last_modification: None,
        };
        assert!(!v.to_state().modification_in_progress);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        v.last_modification = Some(ModificationInfo {
            state: ModificationState::Modifying,
            start_time: Some(t),
            target_size_gib: Some(30),
        });
        let s = v.to_state();
        assert!(s.modification_in_progress);
        assert_eq!(s.last_modified, Some(t));
        v.last_modification.as_mut().unwrap().state = ModificationState::Optimizing;
        assert!(!v.to_state().modification_in_progress);
    }
}
