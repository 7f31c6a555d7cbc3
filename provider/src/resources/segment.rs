//! `strata_storage_segment`: an EBS data volume attached to a node, with the autoscaling
//! bounds the node agent grows it within. The agent's growth is not drift: `size_gib` stays
//! what the configuration says (a floor), `current_size_gib` shows the volume's real size, and
//! a plan never shrinks what the agent grew.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, Tag};

use super::common::*;
use crate::aws::{self, Clients, SegmentInfo, SegmentSpec};
use crate::cty::{AttributePath, Value};
use crate::framework::{
    ApplyFailure, Attr, CreateRequest, DeleteRequest, Diagnostic, Diagnostics, ImportRequest,
    NewState, PlanChange, ReadRequest, Resource, Schema, Type, UpdateRequest, async_trait,
    validators,
};

pub const TYPE_NAME: &str = "strata_storage_segment";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
use strata_topology::tags::{AutoscaleTag, EBS_MAX_VOLUME_GIB};
pub use strata_topology::tags::{TAG_AUTOSCALE, TAG_AUTOSCALED_FROM, TAG_LAST_GROW};
/// The largest gp3/io2 volume, as the schema's numbers are.
const EBS_MAX_GIB: i64 = EBS_MAX_VOLUME_GIB as i64;

pub struct SegmentResource;

pub fn schema() -> Schema {
    let computed =
        |name: &str, ty: Type, what: &str| Attr::of(name, ty).computed_only().description(what);
    Schema::builder(0)
        .description(
            "A storage segment: an EBS data volume attached to a node, which the node's agent \
             grows before it fills (ModifyVolume, then the filesystem online) up to \
             `max_size_gib`; during EBS's six-hour modification cooldown it adds a new segment \
             instead. Growth by the agent is not drift. EBS volumes cannot shrink.",
        )
        .attribute(
            Attr::string("node_id")
                .validate(super::checks::node_id())
                .required()
                .description("Instance id of the node (`strata_cluster.source_node_id`, `strata_replica.node_id`). Another node in the same availability zone: detached and attached in place; another zone: a new volume."),
        )
        .attribute(
            Attr::number("size_gib")
                .required()
                .validate(validators::int_range(1, EBS_MAX_GIB))
                .description("Size in GiB. A larger value grows the volume in place; a smaller one is an error (EBS cannot shrink). The agent may grow the volume beyond it: see `current_size_gib`."),
        )
        .attribute(
            Attr::number("max_size_gib")
                .optional()
                .computed()
                .validate(validators::int_range(1, EBS_MAX_GIB))
                .description("The agent never grows the node's data storage beyond this (all its segments together). Defaults to 4 x `size_gib`, at most 16384."),
        )
        .attribute(
            Attr::number("grow_at_percent")
                .optional()
                .default(Value::number_i64(80))
                .validate(validators::int_range(50, 95))
                .description("The agent grows the storage when the filesystem is this full."),
        )
        .attribute(
            Attr::number("grow_by_percent")
                .optional()
                .default(Value::number_i64(20))
                .validate(validators::int_range(5, 100))
                .description("Each growth adds this percentage of the current size, but never less than `min_grow_step_gib`."),
        )
        .attribute(
            Attr::number("min_grow_step_gib")
                .optional()
                .default(Value::number_i64(10))
                .validate(validators::int_range(1, EBS_MAX_GIB))
                .description("The smallest growth in GiB, for small volumes where `grow_by_percent` would add little."),
        )
        .attribute(
            Attr::string("volume_type")
                .optional()
                .default("gp3")
                .requires_replace()
                .validate(validators::one_of(&["gp3", "gp2", "io2"]))
                .description("EBS volume type."),
        )
        .attribute(Attr::number("iops").optional().computed().validate(validators::int_range(100, 256_000)).use_state_for_unknown().description("Provisioned IOPS (gp3, io2). Changed in place."))
        .attribute(Attr::number("throughput").optional().computed().validate(validators::int_range(125, 2_000)).use_state_for_unknown().description("Throughput in MiB/s (gp3 only). Changed in place."))
        .attribute(Attr::bool("encrypted").optional().default(true).requires_replace().description("Encrypt the volume."))
        .attribute(Attr::string("kms_key_id").optional().validate(super::checks::kms_key()).requires_replace().description("KMS key for encryption; the account's default EBS key when unset."))
        .attribute(Attr::string("device_name").optional().validate(super::checks::device_name()).computed().requires_replace().use_state_for_unknown().description("Device name on the node, e.g. `/dev/sdf`. The first free of `/dev/sdf`-`/dev/sdp` by default."))
        .attribute(Attr::map("tags", Type::String).optional().validate(super::checks::tags()).description("Tags for the volume."))
        .attribute(computed("tags_all", Type::Map(Box::new(Type::String)), "The tags with the provider's `default_tags` merged in.").use_state_for_unknown())
        .attribute(computed("id", Type::String, "The EBS volume id.").use_state_for_unknown())
        .attribute(computed("volume_id", Type::String, "The EBS volume id.").use_state_for_unknown())
        .attribute(computed("current_size_gib", Type::Number, "The volume's size now, including what the agent grew."))
        .attribute(computed("availability_zone", Type::String, "Availability zone of the volume (the node's).").use_state_for_unknown())
        .attribute(computed("cluster_id", Type::String, "The cluster of the node.").use_state_for_unknown())
        .attribute(computed("autoscaled", Type::Bool, "Whether the agent has grown this segment."))
        .attribute(computed("added_segment_ids", Type::List(Box::new(Type::String)), "Volumes the agent added to this node's storage, grown from this segment, while this one was in its modification cooldown."))
        .block(timeouts_block())
        .build()
}

/// A `strata_storage_segment`'s configuration or plan, typed. Null and unknown both read as
/// None (and as an empty map). Defaults live in the schema alone: a planned value already
/// carries them, and where one is still None the schema's own default is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentModel {
    pub node_id: Option<String>,
    pub size_gib: Option<i64>,
    pub max_size_gib: Option<i64>,
    pub grow_at_percent: Option<i64>,
    pub grow_by_percent: Option<i64>,
    pub min_grow_step_gib: Option<i64>,
    pub volume_type: Option<String>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub device_name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl SegmentModel {
    pub fn from_value(v: &Value) -> SegmentModel {
        SegmentModel {
            node_id: str_attr(v, "node_id"),
            size_gib: i64_attr(v, "size_gib"),
            max_size_gib: i64_attr(v, "max_size_gib"),
            grow_at_percent: i64_attr(v, "grow_at_percent"),
            grow_by_percent: i64_attr(v, "grow_by_percent"),
            min_grow_step_gib: i64_attr(v, "min_grow_step_gib"),
            volume_type: str_attr(v, "volume_type"),
            iops: i64_attr(v, "iops"),
            throughput: i64_attr(v, "throughput"),
            encrypted: bool_attr(v, "encrypted"),
            kms_key_id: str_attr(v, "kms_key_id"),
            device_name: str_attr(v, "device_name"),
            tags: string_map(v, "tags"),
        }
    }

    pub fn node_id(&self) -> Result<String, Diagnostics> {
        required(self.node_id.clone(), "node_id")
    }

    /// The configuration's own checks (beyond each attribute's validators).
    pub fn check(&self) -> Diagnostics {
        let mut d = Diagnostics::new();
        if let (Some(size), Some(max)) = (self.size_gib, self.max_size_gib)
            && max < size
        {
            d.push(
                Diagnostic::error(
                    "max_size_gib is below size_gib",
                    format!("max_size_gib ({max}) must be at least size_gib ({size})"),
                )
                .at(AttributePath::attr("max_size_gib")),
            );
        }
        if self.volume_type.as_deref().is_some_and(|t| t != "gp3") && self.throughput.is_some() {
            d.push(
                Diagnostic::error(
                    "throughput is for gp3 only",
                    "remove throughput or use volume_type = \"gp3\"",
                )
                .at(AttributePath::attr("throughput")),
            );
        }
        d
    }

    /// The `strata:autoscale` bounds. A bound left null takes the schema's default
    /// (`max_size_gib` has none in the schema: the largest volume).
    pub fn autoscale(&self) -> AutoscaleTag {
        let schema = schema();
        let n = |value: Option<i64>, attr: &str| {
            let value = value
                .or_else(|| schema.block.default_of(attr).and_then(Value::as_i64))
                .unwrap_or(EBS_MAX_GIB);
            // The schema's validators keep every bound positive.
            u64::try_from(value).unwrap_or(0)
        };
        AutoscaleTag {
            max_size_gib: n(self.max_size_gib, "max_size_gib"),
            grow_at_percent: n(self.grow_at_percent, "grow_at_percent"),
            grow_by_percent: n(self.grow_by_percent, "grow_by_percent"),
            min_step_gib: n(self.min_grow_step_gib, "min_grow_step_gib"),
        }
    }

    /// What the AWS layer creates or changes. `volume_type` and `encrypted` come from the plan
    /// (the schema's defaults fill them), or from the schema when a caller passes none.
    pub fn spec(&self, cluster: &str, timeout: Duration) -> Result<SegmentSpec, Diagnostics> {
        let schema = schema();
        let mut s = SegmentSpec::new(
            cluster.to_string(),
            format!("{TYPE_NAME}.{cluster}"),
            String::new(),
            self.node_id()?,
            i32::try_from(self.size_gib.unwrap_or(0)).unwrap_or(i32::MAX),
        );
        if let Some(t) = self.volume_type.clone().or_else(|| {
            schema
                .block
                .default_of("volume_type")
                .and_then(|v| v.as_str().map(str::to_string))
        }) {
            s.volume_type = t;
        }
        s.iops = self.iops.and_then(|n| i32::try_from(n).ok());
        s.throughput = self.throughput.and_then(|n| i32::try_from(n).ok());
        if let Some(e) = self.encrypted.or_else(|| {
            schema
                .block
                .default_of("encrypted")
                .and_then(Value::as_bool)
        }) {
            s.encrypted = e;
        }
        s.kms_key_id = self.kms_key_id.clone();
        s.device_name = self.device_name.clone();
        s.tags = self.tags.clone();
        s.timeout = timeout;
        Ok(s)
    }
}

/// The `strata:autoscale` value of a plan.
fn autoscale_tag(v: &Value) -> String {
    SegmentModel::from_value(v).autoscale().render()
}

/// Reads `strata:autoscale` back, for import and drift, as `(attribute, value)`. A tag that
/// does not parse gives nothing: the prior values stand.
fn autoscale_bounds(tag: &str) -> BTreeMap<&'static str, i64> {
    let Ok(t) = AutoscaleTag::parse(tag) else {
        return BTreeMap::new();
    };
    let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    BTreeMap::from([
        ("max_size_gib", n(t.max_size_gib)),
        ("grow_at_percent", n(t.grow_at_percent)),
        ("grow_by_percent", n(t.grow_by_percent)),
        ("min_grow_step_gib", n(t.min_step_gib)),
    ])
}

fn default_max(size: i64) -> i64 {
    (size.saturating_mul(4)).min(EBS_MAX_GIB).max(size)
}

async fn added_segments(c: &Clients, volume_id: &str) -> Result<Vec<String>, aws::AwsError> {
    let rc = c.home().await?;
    let out = rc
        .ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_AUTOSCALED_FROM}"))
                .values(volume_id)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws::AwsError::from_sdk(e, "ec2:DescribeVolumes", volume_id))?;
    let mut ids: Vec<String> = out
        .volumes()
        .iter()
        .filter(|v| !matches!(v.state().map(|s| s.as_str()), Some("deleting" | "deleted")))
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn set_autoscale_tag(c: &Clients, volume_id: &str, value: &str) -> Result<(), aws::AwsError> {
    let rc = c.home().await?;
    rc.ec2
        .create_tags()
        .resources(volume_id)
        .tags(Tag::builder().key(TAG_AUTOSCALE).value(value).build())
        .send()
        .await
        .map_err(|e| aws::AwsError::from_sdk(e, "ec2:CreateTags", volume_id))?;
    Ok(())
}

/// The state of a segment as AWS shows it; `prior` (the plan or the prior state) for what AWS
/// cannot say, `default_tags` for what `tags` leaves out.
fn state(
    default_tags: &BTreeMap<String, String>,
    info: &SegmentInfo,
    added: Vec<String>,
    prior: &Value,
) -> Value {
    let keep = |k: &str| prior.get_attr(k).cloned().unwrap_or_else(Value::null);
    let tags = own_tags_over(default_tags, &info.user_tags(), prior);
    let tags_v = tags_value(&tags, prior);
    let bounds = info
        .tags
        .get(TAG_AUTOSCALE)
        .map(|t| autoscale_bounds(t))
        .unwrap_or_default();
    let bound = |attr: &str| {
        bounds
            .get(attr)
            .map(|n| Value::number_i64(*n))
            .unwrap_or_else(|| keep(attr))
    };
    let current = i64::from(info.size_gib);
    // The configured size is a floor the agent may have grown past: keep it unless the volume
    // is somehow smaller (then show the truth, and the plan grows it back).
    let size = match i64_attr(prior, "size_gib") {
        Some(p) if p <= current => Value::number_i64(p),
        _ => Value::number_i64(current),
    };
    let autoscaled = info.tags.contains_key(TAG_LAST_GROW)
        || i64_attr(prior, "size_gib").is_some_and(|p| current > p)
        || !added.is_empty();
    Value::object([
        ("id", Value::string(info.volume_id.clone())),
        ("volume_id", Value::string(info.volume_id.clone())),
        (
            "node_id",
            match info.attached_instance_id.as_deref() {
                Some(n) => Value::string(n),
                // Detached (out of band): the plan shows node_id coming back, apply attaches.
                None if info.state == "available" => Value::null(),
                None => keep("node_id"),
            },
        ),
        ("size_gib", size),
        ("max_size_gib", bound("max_size_gib")),
        ("grow_at_percent", bound("grow_at_percent")),
        ("grow_by_percent", bound("grow_by_percent")),
        ("min_grow_step_gib", bound("min_grow_step_gib")),
        ("volume_type", Value::string(info.volume_type.clone())),
        (
            "iops",
            info.iops
                .map(|n| Value::number_i64(i64::from(n)))
                .unwrap_or_else(Value::null),
        ),
        (
            "throughput",
            info.throughput
                .map(|n| Value::number_i64(i64::from(n)))
                .unwrap_or_else(Value::null),
        ),
        ("encrypted", Value::bool(info.encrypted)),
        (
            "kms_key_id",
            if prior.get_attr("kms_key_id").is_none_or(Value::is_null) {
                Value::null()
            } else {
                opt_string(info.kms_key_id.as_deref())
            },
        ),
        (
            "device_name",
            info.device_name
                .as_deref()
                .map(Value::string)
                .unwrap_or_else(|| keep("device_name")),
        ),
        ("tags", tags_v),
        ("tags_all", map_value(&merge_tags(default_tags, &tags))),
        ("current_size_gib", Value::number_i64(current)),
        (
            "availability_zone",
            Value::string(info.availability_zone.clone()),
        ),
        (
            "cluster_id",
            info.tags
                .get(crate::aws::tags::TAG_CLUSTER)
                .map(|s| Value::string(s.clone()))
                .unwrap_or_else(|| keep("cluster_id")),
        ),
        ("autoscaled", Value::bool(autoscaled)),
        (
            "added_segment_ids",
            Value::list(added.into_iter().map(Value::string)),
        ),
        ("timeouts", keep("timeouts")),
    ])
}

fn spec(v: &Value, cluster: &str, op: Op) -> Result<SegmentSpec, Diagnostics> {
    SegmentModel::from_value(v).spec(cluster, timeout(v, op, DEFAULT_TIMEOUT))
}

/// The node and its cluster. `launched_ok`: a create may take the node as this process
/// launched it moments ago (`aws::node::read_replica_launched`).
async fn node_cluster(
    c: &Clients,
    node_id: &str,
    launched_ok: bool,
) -> Result<(String, aws::NodeInfo), Diagnostics> {
    let read = if launched_ok {
        aws::node::read_replica_launched(c, node_id).await
    } else {
        aws::read_replica(c, None, node_id).await
    };
    let n = read.map_err(|e| {
        // Only a real "not found" blames node_id; throttling or an outage says nothing
        // about whether the node exists.
        if !e.is_not_found() {
            return aws_diag(&format!("node {node_id}"), "look up", &e);
        }
        Diagnostics::from(
            Diagnostic::error(
                format!("Cannot find node {node_id}"),
                format!("{e}. node_id must be the instance id of a Strata node in the provider's region."),
            )
            .at(AttributePath::attr("node_id")),
        )
    })?;
    let cluster = n.tags.get(crate::aws::tags::TAG_CLUSTER).cloned().ok_or_else(|| {
        Diagnostics::from(
            Diagnostic::error(
                format!("{node_id} is not a Strata node"),
                "node_id must be a node of a strata_cluster (its source_node_id, a strata_replica's node_id)",
            )
            .at(AttributePath::attr("node_id")),
        )
    })?;
    Ok((cluster, n))
}

#[async_trait]
impl Resource for SegmentResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        SegmentModel::from_value(config).check()
    }

    async fn modify_plan(&self, plan: &mut PlanChange) -> Result<(), Diagnostics> {
        if plan.is_create() {
            plan.private = new_creation_token().into_bytes();
        }
        let planned = SegmentModel::from_value(&plan.planned);
        let prior = SegmentModel::from_value(&plan.prior);
        let size = planned.size_gib;
        if plan
            .planned
            .get_attr("max_size_gib")
            .is_some_and(|v| !v.is_known())
            && let Some(size) = size
        {
            let keep_prior = SegmentModel::from_value(&plan.config)
                .max_size_gib
                .is_none()
                && prior.size_gib == Some(size);
            let max = match (keep_prior, prior.max_size_gib) {
                (true, Some(p)) => p,
                _ => default_max(size),
            };
            set_attr(&mut plan.planned, "max_size_gib", Value::number_i64(max));
        }
        if plan.is_create() {
            return Ok(());
        }
        if let (Some(new), Some(old)) = (size, prior.size_gib)
            && new < old
        {
            return Err(Diagnostic::error(
                "EBS volumes cannot shrink",
                format!(
                    "size_gib would go from {old} to {new} GiB. EBS volumes only grow: set \
                     size_gib to {old} or more, or replace the segment (data is lost) with \
                     `tofu apply -replace=...`."
                ),
            )
            .at(AttributePath::attr("size_gib"))
            .into());
        }
        // The real size changes only when the configured size passes it.
        let current = i64_attr(&plan.prior, "current_size_gib");
        let grows = matches!((size, current), (Some(s), Some(c)) if s > c) || size.is_none();
        for a in ["current_size_gib", "autoscaled", "added_segment_ids"] {
            let v = if grows && a == "current_size_gib" {
                Value::unknown()
            } else {
                plan.prior.get_attr(a).cloned().unwrap_or_else(Value::null)
            };
            set_attr(&mut plan.planned, a, v);
        }
        plan_tags_all(plan);
        // Moving to a node in another availability zone needs a new volume.
        if let (Some(old), Some(new)) = (prior.node_id, planned.node_id)
            && old != new
            && let Ok(c) = clients(&plan.ctx)
        {
            let new_az = node_cluster(c, &new, false).await?.1.availability_zone;
            let old_az = str_attr(&plan.prior, "availability_zone");
            if new_az.is_some() && new_az != old_az {
                plan.requires_replace.push(AttributePath::attr("node_id"));
                for a in [
                    "id",
                    "volume_id",
                    "current_size_gib",
                    "availability_zone",
                    "device_name",
                    "cluster_id",
                    "autoscaled",
                    "added_segment_ids",
                ] {
                    set_attr(&mut plan.planned, a, Value::unknown());
                }
            }
        }
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        // The segments created together (Terraform applies them in parallel) share their
        // waits' polls: each says so first.
        let polls = match c.home().await {
            Ok(rc) => Some(rc.shared.volume_polls.expect()),
            Err(_) => None,
        };
        let node = required_str(&req.planned, "node_id")?;
        let (cluster, node_info) = node_cluster(c, &node, true).await?;
        let az = node_info.availability_zone.clone();
        let mut spec = spec(&req.planned, &cluster, Op::Create)?;
        spec.creation_token = String::from_utf8(req.private.clone())
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(new_creation_token);
        // After a forced exit, the volume an unfinished create made is found again.
        let claim = super::owned::segment_token(
            c,
            &cluster,
            &spec.resource,
            az.as_deref(),
            TAG_AUTOSCALED_FROM,
            &spec.creation_token,
        )
        .await?;
        spec.creation_token = claim.token.clone();
        spec.token_unused = claim.unused;
        let tag = autoscale_tag(&req.planned);
        spec.creation_tags.insert(TAG_AUTOSCALE.into(), tag.clone());
        // The node as just read: create_segment needs its AZ and devices, not another read.
        let info = aws::segment::create_segment_on(c, &spec, node_info)
            .await
            .map_err(|e| apply_failure(&spec.resource, "create", &e))?;
        drop(polls);
        // A volume of an earlier attempt (found by its token) may lack the bounds.
        if info.tags.get(TAG_AUTOSCALE) != Some(&tag)
            && let Err(e) = set_autoscale_tag(c, &info.volume_id, &tag).await
        {
            // The volume exists: keep it in state (tainted) rather than orphan it.
            let partial = state(c.default_tags(), &info, Vec::new(), &req.planned);
            return Err(ApplyFailure {
                diagnostics: aws_diag(&spec.resource, "tag the autoscaling bounds", &e),
                partial_state: Some(partial),
            });
        }
        let mut info = info;
        info.tags.insert(TAG_AUTOSCALE.into(), tag);
        Ok(NewState::new(state(
            c.default_tags(),
            &info,
            Vec::new(),
            &req.planned,
        )))
    }

    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.state, "id")?;
        let info = match aws::read_segment(c, None, &id).await {
            Ok(i) if matches!(i.state.as_str(), "deleting" | "deleted") => return Ok(None),
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(aws_diag(&format!("{TYPE_NAME} {id}"), "read", &e)),
        };
        super::owned::mark_read(c, &id, &info.tags)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "read", &e))?;
        let added = added_segments(c, &id)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "read", &e))?;
        Ok(Some(NewState::new(state(
            c.default_tags(),
            &info,
            added,
            &req.state,
        ))))
    }

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        let cluster = str_attr(&req.prior, "cluster_id").unwrap_or_default();
        let spec = spec(&req.planned, &cluster, Op::Update)?;
        let info = aws::update_segment(c, &id, &spec)
            .await
            .map_err(|e| apply_failure(&format!("{TYPE_NAME} {id}"), "update", &e))?;
        let tag = autoscale_tag(&req.planned);
        set_autoscale_tag(c, &id, &tag).await.map_err(|e| {
            apply_failure(
                &format!("{TYPE_NAME} {id}"),
                "tag the autoscaling bounds",
                &e,
            )
        })?;
        let mut info = info;
        info.tags.insert(TAG_AUTOSCALE.into(), tag);
        let added = added_segments(c, &id).await.unwrap_or_default();
        Ok(NewState::new(state(
            c.default_tags(),
            &info,
            added,
            &req.planned,
        )))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        aws::delete_segment(
            c,
            None,
            &id,
            timeout(&req.prior, Op::Delete, DEFAULT_TIMEOUT),
        )
        .await
        .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "delete", &e))
    }

    async fn import(&self, req: ImportRequest) -> Result<NewState, Diagnostics> {
        if !req.id.starts_with("vol-") {
            return Err(Diagnostic::error(
                "Invalid import id",
                format!("import a strata_storage_segment by its volume id, e.g. `vol-0123456789abcdef0`; got {:?}", req.id),
            )
            .into());
        }
        Ok(NewState::new(
            schema().null_object_with([("id", Value::string(req.id.clone()))]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscale_tag_round_trip() {
        let v = Value::object([
            ("max_size_gib", Value::number_i64(2000)),
            ("grow_at_percent", Value::number_i64(80)),
            ("grow_by_percent", Value::number_i64(25)),
            ("min_grow_step_gib", Value::number_i64(10)),
        ]);
        let t = autoscale_tag(&v);
        assert_eq!(t, "max=2000,at=80,by=25,step=10");
        let m = autoscale_bounds(&t);
        assert_eq!(m["max_size_gib"], 2000);
        assert_eq!(m["grow_by_percent"], 25);
    }

    #[test]
    fn a_null_bound_takes_the_schemas_default() {
        let v = Value::object([
            ("max_size_gib", Value::null()),
            ("grow_at_percent", Value::null()),
            ("grow_by_percent", Value::number_i64(25)),
            ("min_grow_step_gib", Value::null()),
        ]);
        assert_eq!(autoscale_tag(&v), "max=16384,at=80,by=25,step=10");
    }

    #[test]
    fn default_max_is_four_times_capped() {
        assert_eq!(default_max(100), 400);
        assert_eq!(default_max(10_000), 16_384);
        assert_eq!(default_max(16_384), 16_384);
    }
    #[test]
    fn the_model_reads_a_plan_and_builds_a_spec_without_aws() {
        let v = Value::object([
            ("node_id", Value::string("i-0abc")),
            ("size_gib", Value::number_i64(100)),
            ("max_size_gib", Value::number_i64(300)),
            ("volume_type", Value::string("io2")),
            ("iops", Value::number_i64(4000)),
            ("throughput", Value::null()),
            ("encrypted", Value::bool(false)),
            (
                "tags",
                Value::map([("team".to_string(), Value::string("db"))]),
            ),
        ]);
        let m = SegmentModel::from_value(&v);
        assert!(m.check().is_empty());
        let s = m.spec("orders", DEFAULT_TIMEOUT).unwrap();
        assert_eq!(
            (
                s.node_instance_id.as_str(),
                s.size_gib,
                s.volume_type.as_str()
            ),
            ("i-0abc", 100, "io2")
        );
        assert_eq!(
            (s.iops, s.throughput, s.encrypted),
            (Some(4000), None, false)
        );
        assert_eq!(s.resource, "strata_storage_segment.orders");
        assert_eq!(s.tags["team"], "db");
        // Unset type and encryption take the schema's defaults, not copies of them.
        let bare = SegmentModel {
            node_id: Some("i-0abc".into()),
            size_gib: Some(10),
            ..SegmentModel::default()
        };
        let s = bare.spec("orders", DEFAULT_TIMEOUT).unwrap();
        assert_eq!((s.volume_type.as_str(), s.encrypted), ("gp3", true));
        // A missing node_id names the attribute.
        let e = SegmentModel::default()
            .spec("orders", DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(format!("{e:?}").contains("node_id"), "{e:?}");
    }

    #[test]
    fn the_models_checks_name_their_attribute() {
        let m = SegmentModel {
            size_gib: Some(100),
            max_size_gib: Some(50),
            volume_type: Some("gp2".into()),
            throughput: Some(250),
            ..SegmentModel::default()
        };
        let d = format!("{:?}", m.check());
        assert!(d.contains("max_size_gib is below size_gib"), "{d}");
        assert!(d.contains("throughput is for gp3 only"), "{d}");
    }

    #[test]
    fn state_keeps_the_configured_floor_when_the_agent_grew_the_volume() {
        let info = SegmentInfo {
            volume_id: "vol-1".into(),
            size_gib: 150,
            volume_type: "gp3".into(),
            state: "in-use".into(),
            attached_instance_id: Some("i-0abc".into()),
            availability_zone: "us-east-1a".into(),
            tags: BTreeMap::from([(
                TAG_AUTOSCALE.to_string(),
                "max=400,at=80,by=20,step=10".to_string(),
            )]),
            region: "us-east-1".into(),
            iops: None,
            throughput: None,
            encrypted: true,
            kms_key_id: None,
            device_name: Some("/dev/sdf".into()),
            attachment_state: Some("attached".into()),
        };
        let prior = Value::object([
            ("size_gib", Value::number_i64(100)),
            ("tags", Value::null()),
        ]);
        let defaults = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let st = state(&defaults, &info, vec!["vol-2".into()], &prior);
        assert_eq!(i64_attr(&st, "size_gib"), Some(100));
        assert_eq!(i64_attr(&st, "current_size_gib"), Some(150));
        assert_eq!(i64_attr(&st, "max_size_gib"), Some(400));
        assert_eq!(bool_attr(&st, "autoscaled"), Some(true));
        assert_eq!(string_map(&st, "tags_all")["env"], "prod");
        assert_eq!(str_attr(&st, "node_id").as_deref(), Some("i-0abc"));
    }
}
