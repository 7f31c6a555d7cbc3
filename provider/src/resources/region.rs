//! `strata_region`: a read-only region. Replicas in another AWS region replicating
//! asynchronously (over TLS) from the home source, their own security group there, and an
//! engine-port rule on the home group open to that subnet's CIDR only.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_topology::{Role, render_user_data};

use super::cluster::cluster_and_settings;
use super::common::*;
use super::nodes;
use super::owned;
use crate::aws::{self, Clients, RegionInfo, RegionSpec};
use crate::cty::{AttributePath, Value};
use crate::framework::{
    ApplyFailure, Attr, CreateRequest, DeleteRequest, Diagnostic, Diagnostics, ImportRequest,
    NewState, PlanChange, ReadRequest, Resource, Schema, Type, UpdateRequest, async_trait,
};

pub const TYPE_NAME: &str = "strata_region";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub struct RegionResource;

pub fn schema() -> Schema {
    let computed =
        |name: &str, ty: Type, what: &str| Attr::of(name, ty).computed_only().description(what);
    Schema::builder(0)
        .description(
            "A read-only region: replicas in another AWS region that replicate asynchronously \
             from the home source over TLS. The home security group's engine port is opened to \
             this region's subnet CIDR only (the two VPCs must be routable, e.g. peered). \
             Changing `replica_count` adds or removes replicas in place.",
        )
        .attribute(Attr::string("cluster_id").required().requires_replace().validate(super::checks::cluster_name()).description("The `strata_cluster`'s id."))
        .attribute(
            Attr::string("region")
                .required()
                .requires_replace()
                .validate(super::checks::region())
                .description("The other AWS region, e.g. `eu-west-1`; not the provider's own region (that is the cluster's home)."),
        )
        .attribute(Attr::string("subnet_id").required().requires_replace().validate(super::checks::subnet_id()).description("A subnet in that region for the replicas."))
        .attribute(
            Attr::number("replica_count")
                .optional()
                .default(Value::number_i64(1))
                .validate(super::checks::replica_count())
                .description("How many replicas the region runs (1-15). Changed in place; removing takes the highest-numbered replicas first."),
        )
        .attribute(
            Attr::string("instance_type")
                .optional()
                .validate(super::checks::instance_type())
                .computed()
                .use_state_for_unknown()
                .description("EC2 instance type of the region's replicas. Left out, they follow the cluster's: a change of `strata_cluster.instance_type` rolls them (read at the next refresh). Set, it is pinned: changed in place here, one replica at a time under the cluster's roll lock, each back in replication before the next (docs/rolling-changes.md)."),
        )
        .attribute(Attr::map("tags", Type::String).optional().validate(super::checks::tags()).description("Tags for the region's AWS objects."))
        .attribute(computed("tags_all", Type::Map(Box::new(Type::String)), "The tags with the provider's `default_tags` merged in.").use_state_for_unknown())
        .attribute(computed("id", Type::String, "`<cluster_id>/<region>`.").use_state_for_unknown())
        .attribute(computed("security_group_id", Type::String, "The region's security group.").use_state_for_unknown())
        .attribute(computed("replica_node_ids", Type::List(Box::new(Type::String)), "Instance ids of the region's replicas, by index."))
        .attribute(computed("replica_private_ips", Type::List(Box::new(Type::String)), "Private IPs of the region's replicas, by index."))
        .attribute(computed("reader_endpoint", Type::String, "Where clients in this region read: `reader-<region>.<cluster name>.<dns_domain>:<port>`, a name in the cluster's private zone (associated with this region's VPC too) with one address per healthy replica of the region, kept by the agents. Null for clusters without endpoints.").use_state_for_unknown())
        .block(timeouts_block())
        .build()
}

/// A `strata_region`'s configuration or plan, typed. Null and unknown both read as None (and
/// as an empty map); defaults live in the schema alone (`replica_count`'s is read from it;
/// `instance_type` has none: apply falls back to the cluster's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionModel {
    pub cluster_id: Option<String>,
    pub region: Option<String>,
    pub subnet_id: Option<String>,
    pub replica_count: Option<i64>,
    pub instance_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl RegionModel {
    pub fn from_value(v: &Value) -> RegionModel {
        RegionModel {
            cluster_id: str_attr(v, "cluster_id"),
            region: str_attr(v, "region"),
            subnet_id: str_attr(v, "subnet_id"),
            replica_count: i64_attr(v, "replica_count"),
            instance_type: str_attr(v, "instance_type"),
            tags: string_map(v, "tags"),
        }
    }

    pub fn cluster_id(&self) -> Result<String, Diagnostics> {
        required(self.cluster_id.clone(), "cluster_id")
    }

    pub fn region(&self) -> Result<String, Diagnostics> {
        required(self.region.clone(), "region")
    }

    pub fn subnet_id(&self) -> Result<String, Diagnostics> {
        required(self.subnet_id.clone(), "subnet_id")
    }

    /// How many replicas, the schema's default when unset.
    pub fn count(&self) -> Result<u32, Diagnostics> {
        let n = self
            .replica_count
            .or_else(|| {
                schema()
                    .block
                    .default_of("replica_count")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(1);
        u32::try_from(n).map_err(|_| {
            Diagnostics::from(
                Diagnostic::error("Invalid replica_count", "replica_count must be 0 to 15")
                    .at(AttributePath::attr("replica_count")),
            )
        })
    }
}

fn resource_name(cluster: &str, region: &str) -> String {
    format!("{TYPE_NAME}.{cluster}.{region}")
}

/// The region's reader name, when the cluster has endpoints.
fn region_reader(cluster: &aws::ClusterInfo, region: &str) -> Option<(aws::dns::Zone, String)> {
    cluster
        .zone
        .as_ref()
        .map(|z| (z.clone(), aws::dns::region_reader_name(&z.base, region)))
}

/// Tags every region replica pinned or following per the resource's configuration (create and
/// update both end with it).
async fn pin_types(
    c: &Clients,
    info: &RegionInfo,
    config: &Value,
    resource: &str,
) -> Result<(), ApplyFailure> {
    for n in &info.replicas {
        super::cluster_roll::pin_type(c, &info.region, &n.instance_id, Some(&n.tags), config)
            .await
            .map_err(|e| apply_failure(resource, "tag its instance type", &e))?;
    }
    Ok(())
}

/// Associates the cluster's zone with the region's VPC (its replicas resolve the writer name)
/// and points the region's reader name at its replicas. Afterwards the agents keep it.
async fn publish_region(
    c: &Clients,
    cluster_id: &str,
    info: &RegionInfo,
) -> Result<(), aws::AwsError> {
    let cluster = aws::cluster::read_cluster_shared(c, None, cluster_id).await?;
    let Some((z, name)) = region_reader(&cluster, &info.region) else {
        return Ok(());
    };
    let rc = c.region(Some(&cluster.region)).await?;
    if !info.vpc_id.is_empty() {
        aws::dns::associate_vpc(&rc, &z.zone_id, &info.vpc_id, &info.region).await?;
    }
    let ips: Vec<String> = info
        .replicas
        .iter()
        .filter_map(|n| n.private_ip.clone())
        .collect();
    aws::dns::put_reader(&rc, &z.zone_id, &name, &ips, aws::dns::DEFAULT_TTL).await
}

/// Removes the region's reader name and the zone's association with the region's VPC.
async fn unpublish_region(
    c: &Clients,
    cluster_id: &str,
    region: &str,
    vpc_id: &str,
) -> Result<(), aws::AwsError> {
    let cluster = match aws::read_cluster(c, None, cluster_id).await {
        Ok(x) => x,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some((z, name)) = region_reader(&cluster, region) else {
        return Ok(());
    };
    let rc = c.region(Some(&cluster.region)).await?;
    aws::dns::delete_names(&rc, &z.zone_id, &[name]).await?;
    if !vpc_id.is_empty() && vpc_id != cluster.vpc_id {
        aws::dns::disassociate_vpc(&rc, &z.zone_id, vpc_id, region).await?;
    }
    Ok(())
}

async fn reader_endpoint(c: &Clients, cluster_id: &str, region: &str) -> Value {
    match aws::cluster::read_cluster_shared(c, None, cluster_id).await {
        Ok(cl) => region_reader(&cl, region)
            .map(|(_, n)| Value::string(aws::dns::endpoint(&n, cl.port)))
            .unwrap_or_else(Value::null),
        Err(_) => Value::null(),
    }
}

/// The state of a region as AWS shows it; `prior` (the plan or the prior state) for what AWS
/// cannot say, `default_tags` for what `tags` leaves out.
fn state(
    default_tags: &BTreeMap<String, String>,
    cluster: &str,
    info: &RegionInfo,
    spec: &RegionSpec,
    prior: &Value,
) -> Value {
    let keep = |k: &str| prior.get_attr(k).cloned().unwrap_or_else(Value::null);
    let tags = own_tags_over(default_tags, &spec.tags, prior);
    let tags_v = tags_value(&tags, prior);
    let instance_type = info
        .replicas
        .first()
        .map(|n| Value::string(n.instance_type.clone()))
        .unwrap_or_else(|| keep("instance_type"));
    Value::object([
        ("id", Value::string(format!("{cluster}/{}", info.region))),
        ("cluster_id", Value::string(cluster.to_string())),
        ("region", Value::string(info.region.clone())),
        ("subnet_id", Value::string(info.subnet_id.clone())),
        (
            "replica_count",
            Value::number_i64(info.replicas.len() as i64),
        ),
        ("instance_type", instance_type),
        ("tags", tags_v),
        ("tags_all", map_value(&merge_tags(default_tags, &tags))),
        (
            "security_group_id",
            Value::string(info.security_group_id.clone()),
        ),
        (
            "replica_node_ids",
            Value::list(
                info.replicas
                    .iter()
                    .map(|n| Value::string(n.instance_id.clone())),
            ),
        ),
        (
            "replica_private_ips",
            Value::list(
                info.replicas
                    .iter()
                    .map(|n| opt_string(n.private_ip.as_deref())),
            ),
        ),
        ("reader_endpoint", keep("reader_endpoint")),
        ("timeouts", keep("timeouts")),
    ])
}

/// The full spec for a create or update: the cluster's group, profile, source and settings,
/// and one rendered user-data per replica index (each with its own server id).
async fn spec(c: &Clients, v: &Value, op: Op) -> Result<RegionSpec, Diagnostics> {
    let m = RegionModel::from_value(v);
    let cluster_id = m.cluster_id()?;
    let region = m.region()?;
    let (cluster, mut settings) = cluster_and_settings(c, &cluster_id).await?;
    let instance_type = m
        .instance_type
        .clone()
        .unwrap_or(cluster.instance_type.clone());
    // Region replicas fetch the agent from the home region's bucket (the instance role may).
    settings.install = nodes::node_install(c, &settings, aws::arch_of(&instance_type))
        .await
        .map_err(|e| {
            Diagnostics::from(
                Diagnostic::error(format!("{TYPE_NAME}: the agent build"), e.to_string())
                    .at(AttributePath::attr("instance_type")),
            )
        })?;
    let count = m.count()?;
    let source_ip = cluster.private_ip.clone().ok_or_else(|| {
        Diagnostics::from(Diagnostic::error(
            format!("{TYPE_NAME}: the cluster's source has no private IP yet"),
            "apply again once the source instance is running",
        ))
    })?;
    let mut user_data = Vec::new();
    for i in 0..count.max(1) {
        let cfg = nodes::node_config(
            &settings,
            Role::RegionReplica,
            &format!("{cluster_id}-{region}-{i}"),
            &region,
            server_id_for(&format!("{cluster_id}/region/{region}/{i}")),
            Some(&source_ip),
        );
        cfg.validate().map_err(|e| {
            Diagnostics::from(Diagnostic::error(
                format!("{TYPE_NAME}: invalid node configuration"),
                e.to_string(),
            ))
        })?;
        user_data.push(render_user_data(&cfg));
    }
    Ok(RegionSpec {
        cluster: cluster_id.clone(),
        resource: resource_name(&cluster_id, &region),
        creation_token: aws::creation_token(&[TYPE_NAME, &cluster_id, &region]),
        region,
        subnet_id: m.subnet_id()?,
        replica_count: count,
        instance_type,
        ami: None,
        instance_profile: Some(cluster.instance_profile.clone()),
        port: cluster.port,
        home_region: Some(cluster.region.clone()),
        home_security_group_id: cluster.security_group_id.clone(),
        home_source_cidr: cluster.subnet_cidr.clone(),
        allowed_cidrs: Vec::new(),
        user_data,
        tags: m.tags,
        root_volume_size_gib: 20,
        timeout: timeout(v, op, DEFAULT_TIMEOUT),
    })
}

fn split_id(id: &str) -> Option<(String, String)> {
    let (c, r) = id.split_once('/')?;
    (!c.is_empty() && !r.is_empty()).then(|| (c.to_string(), r.to_string()))
}

#[async_trait]
impl Resource for RegionResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn modify_plan(&self, plan: &mut PlanChange) -> Result<(), Diagnostics> {
        let planned = RegionModel::from_value(&plan.planned);
        if let (Some(cl), Some(r)) = (&planned.cluster_id, &planned.region) {
            owned::plan_create(plan, &owned::region_identity(cl, r, &resource_name(cl, r)))?;
        }
        if let (Ok(c), Some(r)) = (clients(&plan.ctx), &planned.region) {
            super::checks::not_home_region(c.default_region(), r)?;
        }
        if plan.is_create()
            && let (Ok(c), Some(r), Some(subnet)) =
                (clients(&plan.ctx), &planned.region, &planned.subnet_id)
        {
            super::checks::plan_subnet(c, Some(r), subnet, None).await?;
        }
        plan_tags_all(plan);
        let type_changes = plan.is_create()
            || plan.prior.get_attr("instance_type") != plan.planned.get_attr("instance_type");
        if type_changes
            && let Some(t) = &planned.instance_type
            && let Some(cluster_id) = &planned.cluster_id
            && let Ok(c) = clients(&plan.ctx)
            && let Ok((_, settings)) = cluster_and_settings(c, cluster_id).await
            && settings.install.agent.is_some()
        {
            nodes::check_agent_build(t)?;
        }
        // The replica lists change exactly when the count or the instance type does.
        if !plan.is_create() {
            let same = |a: &str| plan.prior.get_attr(a) == plan.planned.get_attr(a);
            if same("replica_count") && same("instance_type") {
                for a in ["replica_node_ids", "replica_private_ips"] {
                    if let Some(v) = plan.prior.get_attr(a).cloned() {
                        set_attr(&mut plan.planned, a, v);
                    }
                }
            }
        }
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let spec = spec(c, &req.planned, Op::Create).await?;
        let identity = owned::region_identity(&spec.cluster, &spec.region, &spec.resource);
        let creating = owned::begin_create(c, &identity).await?;
        let info = aws::create_region(c, &spec)
            .await
            .map_err(|e| apply_failure(&spec.resource, "create", &e))?;
        let private =
            owned::finish_create(c, &identity, &creating, &info.security_group_id).await?;
        publish_region(c, &spec.cluster, &info).await.map_err(|e| {
            apply_failure(&spec.resource, "publish the region's reader endpoint", &e)
        })?;
        pin_types(c, &info, &req.config, &spec.resource).await?;
        let mut st = state(c.default_tags(), &spec.cluster, &info, &spec, &req.planned);
        set_attr(
            &mut st,
            "reader_endpoint",
            reader_endpoint(c, &spec.cluster, &info.region).await,
        );
        nodes::wait_ready(
            c,
            &info.region,
            &info.replica_instance_ids(),
            &spec.resource,
            &st,
        )
        .await?;
        Ok(NewState::new(st).with_private(private))
    }

    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.state, "id")?;
        let Some((cluster, region)) = split_id(&id) else {
            return Err(Diagnostic::error(
                "Invalid id",
                format!("{TYPE_NAME} id {id:?} is not <cluster_id>/<region>"),
            )
            .into());
        };
        let (mut spec, info) = match aws::discover_region(
            c,
            None,
            &cluster,
            &region,
            &resource_name(&cluster, &region),
        )
        .await
        {
            Ok(x) => x,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(aws_diag(&resource_name(&cluster, &region), "read", &e)),
        };
        if spec.replica_count == 0 {
            spec.tags = string_map(&req.state, "tags");
        }
        let Some(private) =
            owned::read_check(c, Some(&region), &info.security_group_id, &req.private)
                .await
                .map_err(|e| aws_diag(&resource_name(&cluster, &region), "read", &e))?
        else {
            return Ok(None);
        };
        let mut info = info;
        if info.subnet_id.is_empty()
            && let Some(s) = str_attr(&req.state, "subnet_id")
        {
            info.subnet_id = s;
        }
        let mut st = state(c.default_tags(), &cluster, &info, &spec, &req.state);
        set_attr(
            &mut st,
            "reader_endpoint",
            reader_endpoint(c, &cluster, &region).await,
        );
        Ok(Some(NewState::new(st).with_private(private)))
    }

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let spec = spec(c, &req.planned, Op::Update).await?;
        // A type change goes one replica at a time under the cluster's roll lock, each back in
        // replication before the next (update_region then finds them changed).
        if req.prior.get_attr("instance_type") != req.planned.get_attr("instance_type") {
            for id in string_list(&req.prior, "replica_node_ids") {
                let n = match aws::read_replica(c, Some(&spec.region), &id).await {
                    Ok(n) if !n.is_gone() => n,
                    _ => continue,
                };
                if n.instance_type != spec.instance_type {
                    super::cluster_roll::change_pinned(
                        c,
                        &spec.resource,
                        &n,
                        &spec.instance_type,
                        spec.timeout,
                    )
                    .await
                    .map_err(|e| apply_failure(&spec.resource, "change the instance type", &e))?;
                }
            }
        }
        let info = aws::update_region(c, &spec)
            .await
            .map_err(|e| apply_failure(&spec.resource, "update", &e))?;
        pin_types(c, &info, &req.config, &spec.resource).await?;
        if req.prior.get_attr("replica_count") != req.planned.get_attr("replica_count") {
            publish_region(c, &spec.cluster, &info).await.map_err(|e| {
                apply_failure(&spec.resource, "publish the region's reader endpoint", &e)
            })?;
        }
        let mut st = state(c.default_tags(), &spec.cluster, &info, &spec, &req.planned);
        set_attr(
            &mut st,
            "reader_endpoint",
            reader_endpoint(c, &spec.cluster, &info.region).await,
        );
        // Only the replicas this update launched are waited for.
        let before = string_list(&req.prior, "replica_node_ids");
        let launched: Vec<String> = info
            .replica_instance_ids()
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        nodes::wait_ready(c, &info.region, &launched, &spec.resource, &st).await?;
        Ok(NewState::new(st).with_private(req.private))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        let Some((cluster, region)) = split_id(&id) else {
            return Err(Diagnostic::error(
                "Invalid id",
                format!("{TYPE_NAME} id {id:?} is not <cluster_id>/<region>"),
            )
            .into());
        };
        let resource = resource_name(&cluster, &region);
        let (mut spec, _) = match aws::discover_region(c, None, &cluster, &region, &resource).await
        {
            Ok(x) => x,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(aws_diag(&resource, "delete", &e)),
        };
        if spec.subnet_id.is_empty()
            && let Some(s) = str_attr(&req.prior, "subnet_id")
        {
            spec.subnet_id = s;
        }
        spec.timeout = timeout(&req.prior, Op::Delete, DEFAULT_TIMEOUT);
        let vpc_id = aws::read_region(c, &spec)
            .await
            .map(|i| i.vpc_id)
            .unwrap_or_default();
        unpublish_region(c, &cluster, &region, &vpc_id)
            .await
            .map_err(|e| aws_diag(&resource, "remove the region's reader endpoint", &e))?;
        aws::delete_region(c, &spec)
            .await
            .map_err(|e| aws_diag(&resource, "delete", &e))
    }

    async fn import(&self, req: ImportRequest) -> Result<NewState, Diagnostics> {
        if split_id(&req.id).is_none() {
            return Err(Diagnostic::error(
                "Invalid import id",
                format!("import a strata_region as <cluster_id>/<region>, e.g. `orders/eu-west-1`; got {:?}", req.id),
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
    fn the_model_reads_a_plan_without_aws() {
        let v = Value::object([
            ("cluster_id", Value::string("orders")),
            ("region", Value::string("eu-west-1")),
            ("subnet_id", Value::string("subnet-0eu")),
            ("replica_count", Value::number_i64(3)),
            ("instance_type", Value::unknown()),
            (
                "tags",
                Value::map([("team".to_string(), Value::string("db"))]),
            ),
        ]);
        let m = RegionModel::from_value(&v);
        assert_eq!(m.cluster_id().unwrap(), "orders");
        assert_eq!(m.region().unwrap(), "eu-west-1");
        assert_eq!(m.subnet_id().unwrap(), "subnet-0eu");
        assert_eq!(m.count().unwrap(), 3);
        // Unknown reads as unset: apply falls back to the cluster's type.
        assert_eq!(m.instance_type, None);
        assert_eq!(m.tags["team"], "db");
    }

    #[test]
    fn an_unset_count_takes_the_schemas_default_and_a_bad_one_names_it() {
        let m = RegionModel::default();
        assert_eq!(
            i64::from(m.count().unwrap()),
            schema()
                .block
                .default_of("replica_count")
                .and_then(Value::as_i64)
                .unwrap()
        );
        let bad = RegionModel {
            replica_count: Some(-1),
            ..RegionModel::default()
        };
        assert!(format!("{:?}", bad.count().unwrap_err()).contains("replica_count"));
        assert!(format!("{:?}", m.subnet_id().unwrap_err()).contains("subnet_id"));
    }
}
