//! `strata_replica`: a read-only replica in the home region, replicating from the cluster's
//! source (a semi-sync participant when the cluster is semi-sync).

use std::time::Duration;

use strata_topology::{ReplicationMode, Role, render_user_data};

use super::cluster::cluster_and_settings;
use super::common::*;
use super::nodes;
use crate::aws::{self, Clients, NodeInfo, ReplicaSpec};
use crate::cty::Value;
use crate::framework::{
    ApplyFailure, Attr, CreateRequest, DeleteRequest, Diagnostic, Diagnostics, ImportRequest,
    NewState, PlanChange, ReadRequest, Resource, Schema, Type, UpdateRequest, async_trait,
};

pub const TYPE_NAME: &str = "strata_replica";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub struct ReplicaResource;

pub fn schema() -> Schema {
    let computed = |name: &str, ty: Type, what: &str| {
        Attr::of(name, ty)
            .computed_only()
            .use_state_for_unknown()
            .description(what)
    };
    Schema::builder(0)
        .description(
            "A read-only replica in the cluster's home region, replicating from the source with \
             GTID positioning; semi-sync when the cluster is. Put replicas in different \
             availability zones through their subnets.",
        )
        .attribute(
            Attr::string("cluster_id")
                .required()
                .validate(super::checks::cluster_name())
                .requires_replace()
                .description("The `strata_cluster`'s id."),
        )
        .attribute(
            Attr::string("subnet_id")
                .required()
                .validate(super::checks::subnet_id())
                .requires_replace()
                .description("Subnet (and so availability zone) of the replica, in the cluster's VPC."),
        )
        .attribute(
            Attr::string("instance_type")
                .optional()
                .validate(super::checks::instance_type())
                .computed()
                .use_state_for_unknown()
                .description("EC2 instance type. Defaults to the cluster's. Changed in place (stop, modify, start)."),
        )
        .attribute(Attr::map("tags", Type::String).optional().validate(super::checks::tags()).description("Tags for the replica's AWS objects."))
        .attribute(computed("tags_all", Type::Map(Box::new(Type::String)), "The tags with the provider's `default_tags` merged in."))
        .attribute(computed("id", Type::String, "The replica's instance id."))
        .attribute(computed("node_id", Type::String, "The replica's instance id (the id `strata_storage_segment.node_id` takes)."))
        .attribute(computed("private_ip", Type::String, "Private IP of the replica."))
        .attribute(computed("availability_zone", Type::String, "Availability zone of the replica."))
        .attribute(computed("server_id", Type::Number, "The replica's replication server id, unique in the cluster."))
        .attribute(computed("semi_sync", Type::Bool, "Whether the replica acknowledges semi-sync commits."))
        .block(timeouts_block())
        .build()
}

fn state(
    c: &Clients,
    n: &NodeInfo,
    cfg: Option<&strata_topology::NodeConfig>,
    prior: &Value,
) -> Value {
    let keep = |k: &str| prior.get_attr(k).cloned().unwrap_or_else(Value::null);
    let tags = own_tags(c, &n.user_tags(), prior);
    let tags_v = tags_value(&tags, prior);
    Value::object([
        ("id", Value::string(n.instance_id.clone())),
        ("node_id", Value::string(n.instance_id.clone())),
        (
            "cluster_id",
            n.tags
                .get(crate::aws::tags::TAG_CLUSTER)
                .map(|s| Value::string(s.clone()))
                .unwrap_or_else(|| keep("cluster_id")),
        ),
        ("subnet_id", opt_string(n.subnet_id.as_deref())),
        ("instance_type", Value::string(n.instance_type.clone())),
        ("tags", tags_v),
        ("tags_all", map_value(&tags_all(Some(c), &tags))),
        ("private_ip", opt_string(n.private_ip.as_deref())),
        (
            "availability_zone",
            opt_string(n.availability_zone.as_deref()),
        ),
        (
            "server_id",
            cfg.map(|c| Value::number_i64(i64::from(c.server_id)))
                .unwrap_or_else(|| keep("server_id")),
        ),
        (
            "semi_sync",
            cfg.map(|c| Value::bool(c.replication.mode == ReplicationMode::SemiSync))
                .unwrap_or_else(|| keep("semi_sync")),
        ),
        ("timeouts", keep("timeouts")),
    ])
}

fn spec_base(v: &Value, cluster: &str, instance_type: String) -> Result<ReplicaSpec, Diagnostics> {
    let mut s = ReplicaSpec::new(
        cluster.to_string(),
        format!("{TYPE_NAME}.{cluster}"),
        String::new(),
        required_str(v, "subnet_id")?,
        instance_type,
    );
    s.tags = string_map(v, "tags");
    s.role = "replica".into();
    Ok(s)
}

/// Takes the replica's address out of the home reader name (the source's address goes back
/// in when it was the last). Nothing to do when the cluster or its zone is gone.
async fn remove_from_reader(c: &Clients, cluster_id: &str, id: &str) -> Result<(), aws::AwsError> {
    let cluster = match aws::read_cluster(c, None, cluster_id).await {
        Ok(x) => x,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(z) = &cluster.zone else {
        return Ok(());
    };
    let n = match aws::read_replica(c, None, id).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(ip) = &n.private_ip else {
        return Ok(());
    };
    let rc = c.region(Some(&cluster.region)).await?;
    let e = aws::dns::read_endpoints(&rc, z).await?;
    if !e.zone_present {
        return Ok(());
    }
    aws::dns::edit_reader(
        &rc,
        &z.zone_id,
        &aws::dns::reader_name(&z.base),
        ip,
        false,
        e.writer_values.first().map(String::as_str),
        aws::dns::DEFAULT_TTL,
    )
    .await
}

#[async_trait]
impl Resource for ReplicaResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn modify_plan(&self, plan: &mut PlanChange) -> Result<(), Diagnostics> {
        if plan.is_create()
            && let (Ok(c), Some(subnet)) =
                (clients(&plan.ctx), str_attr(&plan.planned, "subnet_id"))
        {
            // The subnet must exist, in the cluster's VPC: refused before anything is made.
            let vpc = match str_attr(&plan.planned, "cluster_id") {
                Some(id) => aws::cluster::read_cluster_shared(c, None, &id)
                    .await
                    .ok()
                    .map(|i| i.vpc_id),
                None => None,
            };
            super::checks::plan_subnet(c, None, &subnet, vpc.as_deref()).await?;
        }
        if plan.is_create() {
            // One token per planned create: retries within this apply find what an earlier
            // attempt launched.
            plan.private = new_creation_token().into_bytes();
        }
        // A replica of another instance type may need another agent build: say so at plan
        // time when the cluster installs the agent at boot and this provider has none for it.
        let type_changes = plan.is_create()
            || plan.prior.get_attr("instance_type") != plan.planned.get_attr("instance_type");
        if type_changes
            && let Some(t) = str_attr(&plan.planned, "instance_type")
            && let Some(cluster_id) = str_attr(&plan.planned, "cluster_id")
            && let Ok(c) = clients(&plan.ctx)
            && let Ok((_, settings)) = cluster_and_settings(c, &cluster_id).await
            && settings.install.agent.is_some()
        {
            nodes::check_agent_build(&t)?;
        }
        plan_tags_all(plan);
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let cluster_id = required_str(&req.planned, "cluster_id")?;
        let (cluster, mut settings) = cluster_and_settings(c, &cluster_id).await?;
        let instance_type =
            str_attr(&req.planned, "instance_type").unwrap_or(cluster.instance_type.clone());
        settings.install = nodes::node_install(c, &settings, aws::arch_of(&instance_type))
            .await
            .map_err(|e| {
                ApplyFailure::from(
                    Diagnostic::error(format!("{TYPE_NAME}: the agent build"), e.to_string())
                        .at(crate::cty::AttributePath::attr("instance_type")),
                )
            })?;
        let token = String::from_utf8(req.private.clone())
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(new_creation_token);
        // After a forced exit, the replica an unfinished create launched is found again.
        let claim = super::owned::replica_token(
            c,
            &cluster_id,
            &required_str(&req.planned, "subnet_id")?,
            &token,
        )
        .await?;
        let token = claim.token.clone();
        let server_id = server_id_for(&format!("{cluster_id}/replica/{token}"));
        let source_ip = cluster.private_ip.clone().ok_or_else(|| {
            ApplyFailure::from(Diagnostic::error(
                format!("{TYPE_NAME}: the cluster's source has no private IP yet"),
                "apply again once the source instance is running",
            ))
        })?;
        let cfg = nodes::node_config(
            &settings,
            Role::Replica,
            &format!("{cluster_id}-replica-{}", &token[..8.min(token.len())]),
            c.default_region(),
            server_id,
            Some(&source_ip),
        );
        cfg.validate().map_err(|e| {
            ApplyFailure::from(Diagnostic::error(
                format!("{TYPE_NAME}: invalid node configuration"),
                e.to_string(),
            ))
        })?;
        let mut spec = spec_base(&req.planned, &cluster_id, instance_type)?;
        spec.creation_token = token;
        spec.token_unused = claim.unused;
        spec.ami = cluster.ami.clone();
        spec.security_group_ids = vec![cluster.security_group_id.clone()];
        spec.instance_profile = Some(cluster.instance_profile.clone());
        spec.user_data = render_user_data(&cfg);
        spec.timeout = timeout(&req.planned, Op::Create, DEFAULT_TIMEOUT);
        let n = aws::create_replica(c, &spec)
            .await
            .map_err(|e| apply_failure(&spec.resource, "create", &e))?;
        // The home reader name gets the replica's address (replacing the source, which it
        // holds while no replica does); from then on the source's agent keeps it.
        if let (Some(z), Some(ip)) = (&cluster.zone, &n.private_ip) {
            let rc = c
                .region(Some(&cluster.region))
                .await
                .map_err(|e| apply_failure(&spec.resource, "create", &e))?;
            aws::dns::add_to_home_reader(&rc, z, ip, aws::dns::DEFAULT_TTL)
                .await
                .map_err(|e| apply_failure(&spec.resource, "add it to the reader endpoint", &e))?;
        }
        let st = state(c, &n, Some(&cfg), &req.planned);
        nodes::wait_ready(
            c,
            &n.region,
            std::slice::from_ref(&n.instance_id),
            &spec.resource,
            &st,
        )
        .await?;
        Ok(NewState::new(st))
    }

    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.state, "id")?;
        let n = match aws::read_replica(c, None, &id).await {
            Ok(n) if n.is_gone() => return Ok(None),
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(aws_diag(&format!("{TYPE_NAME} {id}"), "read", &e)),
        };
        super::owned::mark_read(c, &id, &n.tags)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "read", &e))?;
        let rc = c.home().await.map_err(|e| aws_diag(&id, "read", &e))?;
        let cfg = nodes::read_node_config(&rc, &id)
            .await
            .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "read user-data", &e))?;
        Ok(Some(NewState::new(state(c, &n, cfg.as_ref(), &req.state))))
    }

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        let cluster_id = required_str(&req.planned, "cluster_id")?;
        let current = aws::read_replica(c, None, &id)
            .await
            .map_err(|e| apply_failure(&format!("{TYPE_NAME} {id}"), "read", &e))?;
        let instance_type =
            str_attr(&req.planned, "instance_type").unwrap_or(current.instance_type.clone());
        let mut spec = spec_base(&req.planned, &cluster_id, instance_type)?;
        spec.timeout = timeout(&req.planned, Op::Update, DEFAULT_TIMEOUT);
        let n = aws::update_replica(c, &id, &spec)
            .await
            .map_err(|e| apply_failure(&format!("{TYPE_NAME} {id}"), "update", &e))?;
        let rc = c.home().await.map_err(|e| apply_failure(&id, "read", &e))?;
        let cfg = nodes::read_node_config(&rc, &id).await.ok().flatten();
        Ok(NewState::new(state(c, &n, cfg.as_ref(), &req.planned)))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics> {
        let c = clients(&req.ctx)?;
        let id = required_str(&req.prior, "id")?;
        if let Some(cluster_id) = str_attr(&req.prior, "cluster_id") {
            remove_from_reader(c, &cluster_id, &id).await.map_err(|e| {
                aws_diag(
                    &format!("{TYPE_NAME} {id}"),
                    "remove it from the reader endpoint",
                    &e,
                )
            })?;
        }
        aws::delete_replica(
            c,
            None,
            &id,
            timeout(&req.prior, Op::Delete, DEFAULT_TIMEOUT),
        )
        .await
        .map_err(|e| aws_diag(&format!("{TYPE_NAME} {id}"), "delete", &e))
    }

    async fn import(&self, req: ImportRequest) -> Result<NewState, Diagnostics> {
        if !req.id.starts_with("i-") {
            return Err(Diagnostic::error(
                "Invalid import id",
                format!("import a strata_replica by its instance id, e.g. `i-0123456789abcdef0`; got {:?}", req.id),
            )
            .into());
        }
        Ok(NewState::new(
            schema().null_object_with([("id", Value::string(req.id.clone()))]),
        ))
    }
}
