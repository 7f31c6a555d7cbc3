//! `strata_replica`: a read-only replica in the home region, replicating from the cluster's
//! source (a semi-sync participant when the cluster is semi-sync).

use std::collections::BTreeMap;
use std::time::Duration;

use strata_topology::{NodeConfig, ReplicationMode, Role, render_user_data};

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
                .description("EC2 instance type. Left out, the replica follows the cluster's: it is launched with it and a change of `strata_cluster.instance_type` rolls it (the new type is read at the next refresh). Set, it is pinned: the cluster's roll leaves the replica alone, and a change here stops, modifies and starts it in place under the cluster's roll lock, after moving the source role off it when it holds it (docs/rolling-changes.md)."),
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

/// A `strata_replica`'s configuration or plan, typed. Null and unknown both read as None
/// (and as an empty map): the defaults live in the schema alone, and `instance_type` has none
/// (apply falls back to the cluster's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaModel {
    pub cluster_id: Option<String>,
    pub subnet_id: Option<String>,
    pub instance_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl ReplicaModel {
    pub fn from_value(v: &Value) -> ReplicaModel {
        ReplicaModel {
            cluster_id: str_attr(v, "cluster_id"),
            subnet_id: str_attr(v, "subnet_id"),
            instance_type: str_attr(v, "instance_type"),
            tags: string_map(v, "tags"),
        }
    }

    pub fn cluster_id(&self) -> Result<String, Diagnostics> {
        required(self.cluster_id.clone(), "cluster_id")
    }

    pub fn subnet_id(&self) -> Result<String, Diagnostics> {
        required(self.subnet_id.clone(), "subnet_id")
    }

    /// What the AWS layer launches or changes, before the cluster's parts (image, group,
    /// profile, user-data) are filled in.
    pub fn spec(&self, cluster: &str, instance_type: String) -> Result<ReplicaSpec, Diagnostics> {
        let mut s = ReplicaSpec::new(
            cluster.to_string(),
            format!("{TYPE_NAME}.{cluster}"),
            String::new(),
            self.subnet_id()?,
            instance_type,
        );
        s.tags = self.tags.clone();
        s.role = "replica".into();
        Ok(s)
    }
}

/// What state records about a replica: AWS's view of the instance, the replication facts of
/// its node config, and what only the configuration knows (kept from the prior value).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaState {
    pub id: String,
    pub cluster_id: Option<String>,
    pub subnet_id: Option<String>,
    pub instance_type: String,
    /// `tags` as state holds it (null when neither the configuration nor the object has any).
    pub tags: Value,
    pub tags_all: BTreeMap<String, String>,
    pub private_ip: Option<String>,
    pub availability_zone: Option<String>,
    pub server_id: Option<i64>,
    pub semi_sync: Option<bool>,
    pub timeouts: Value,
}

impl ReplicaState {
    /// `prior`: the planned value (create, update) or the prior state (read), for what AWS
    /// cannot say; `default_tags`: the provider's, which `tags` leaves out unless configured.
    pub fn from_node(
        n: &NodeInfo,
        cfg: Option<&NodeConfig>,
        prior: &Value,
        default_tags: &BTreeMap<String, String>,
    ) -> ReplicaState {
        let tags = own_tags_over(default_tags, &n.user_tags(), prior);
        ReplicaState {
            id: n.instance_id.clone(),
            cluster_id: n
                .tags
                .get(crate::aws::tags::TAG_CLUSTER)
                .cloned()
                .or_else(|| str_attr(prior, "cluster_id")),
            subnet_id: n.subnet_id.clone(),
            instance_type: n.instance_type.clone(),
            tags: tags_value(&tags, prior),
            tags_all: merge_tags(default_tags, &tags),
            private_ip: n.private_ip.clone(),
            availability_zone: n.availability_zone.clone(),
            server_id: cfg
                .map(|c| i64::from(c.server_id))
                .or_else(|| i64_attr(prior, "server_id")),
            semi_sync: cfg
                .map(|c| c.replication.mode == ReplicationMode::SemiSync)
                .or_else(|| bool_attr(prior, "semi_sync")),
            timeouts: prior
                .get_attr("timeouts")
                .cloned()
                .unwrap_or_else(Value::null),
        }
    }

    pub fn to_value(&self) -> Value {
        Value::object([
            ("id", Value::string(self.id.clone())),
            ("node_id", Value::string(self.id.clone())),
            ("cluster_id", opt_string(self.cluster_id.as_deref())),
            ("subnet_id", opt_string(self.subnet_id.as_deref())),
            ("instance_type", Value::string(self.instance_type.clone())),
            ("tags", self.tags.clone()),
            ("tags_all", map_value(&self.tags_all)),
            ("private_ip", opt_string(self.private_ip.as_deref())),
            (
                "availability_zone",
                opt_string(self.availability_zone.as_deref()),
            ),
            (
                "server_id",
                self.server_id
                    .map(Value::number_i64)
                    .unwrap_or_else(Value::null),
            ),
            (
                "semi_sync",
                self.semi_sync.map(Value::bool).unwrap_or_else(Value::null),
            ),
            ("timeouts", self.timeouts.clone()),
        ])
    }
}

fn state(c: &Clients, n: &NodeInfo, cfg: Option<&NodeConfig>, prior: &Value) -> Value {
    ReplicaState::from_node(n, cfg, prior, c.default_tags()).to_value()
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
        let planned = ReplicaModel::from_value(&plan.planned);
        if plan.is_create()
            && let (Ok(c), Some(subnet)) = (clients(&plan.ctx), planned.subnet_id.clone())
        {
            // The subnet must exist, in the cluster's VPC: refused before anything is made.
            let vpc = match &planned.cluster_id {
                Some(id) => aws::cluster::read_cluster_shared(c, None, id)
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
            && let Some(t) = &planned.instance_type
            && let Some(cluster_id) = &planned.cluster_id
            && let Ok(c) = clients(&plan.ctx)
            && let Ok((_, settings)) = cluster_and_settings(c, cluster_id).await
            && settings.install.agent.is_some()
        {
            nodes::check_agent_build(t)?;
        }
        plan_tags_all(plan);
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let c = clients(&req.ctx)?;
        // The replicas created together (Terraform applies them in parallel) share their
        // launch waits' polls and one edit of the reader record: each says so first.
        let polls = match c.home().await {
            Ok(rc) => Some(rc.shared.instance_polls.expect()),
            Err(_) => None,
        };
        let reader_add = aws::dns::expect_reader_add();
        let planned = ReplicaModel::from_value(&req.planned);
        let cluster_id = planned.cluster_id()?;
        let (cluster, mut settings) = cluster_and_settings(c, &cluster_id).await?;
        let instance_type = planned
            .instance_type
            .clone()
            .unwrap_or(cluster.instance_type.clone());
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
        let claim =
            super::owned::replica_token(c, &cluster_id, &planned.subnet_id()?, &token).await?;
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
        let mut spec = planned.spec(&cluster_id, instance_type)?;
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
        drop(polls);
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
        drop(reader_add);
        super::cluster_roll::pin_type(c, &n.region, &n.instance_id, Some(&n.tags), &req.config)
            .await
            .map_err(|e| apply_failure(&spec.resource, "tag its instance type", &e))?;
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
        if n.instance_id != id {
            tracing::info!(lost = %id, replacement = %n.instance_id, "the replica's instance was lost and replaced by the cluster's agents");
        }
        // The instance read, which is a replacement's when the agents replaced a lost one.
        let id = n.instance_id.clone();
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
        let planned = ReplicaModel::from_value(&req.planned);
        let cluster_id = planned.cluster_id()?;
        let current = aws::read_replica(c, None, &id)
            .await
            .map_err(|e| apply_failure(&format!("{TYPE_NAME} {id}"), "read", &e))?;
        let instance_type = planned
            .instance_type
            .clone()
            .unwrap_or(current.instance_type.clone());
        let mut spec = planned.spec(&cluster_id, instance_type)?;
        spec.timeout = timeout(&req.planned, Op::Update, DEFAULT_TIMEOUT);
        // A type of its own: under the cluster's roll lock, off the source role first, and
        // back in replication before the apply goes on (docs/rolling-changes.md).
        if current.instance_type != spec.instance_type {
            super::cluster_roll::change_pinned(
                c,
                &format!("{TYPE_NAME} {id}"),
                &current,
                &spec.instance_type,
                spec.timeout,
            )
            .await
            .map_err(|e| {
                apply_failure(&format!("{TYPE_NAME} {id}"), "change the instance type", &e)
            })?;
        }
        super::cluster_roll::pin_type(
            c,
            &current.region,
            &id,
            // The tags are another instance's when the agents replaced this one.
            (current.instance_id == id).then_some(&current.tags),
            &req.config,
        )
        .await
        .map_err(|e| apply_failure(&format!("{TYPE_NAME} {id}"), "tag its instance type", &e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{CancellationToken, Context};

    fn planned() -> Value {
        let mut v = schema().null_object_with([
            ("cluster_id", Value::string("orders")),
            ("subnet_id", Value::string("subnet-b")),
        ]);
        set_attr(
            &mut v,
            "tags",
            Value::map([("team".to_string(), Value::string("db"))]),
        );
        set_attr(&mut v, "id", Value::unknown());
        v
    }

    #[test]
    fn the_model_reads_the_plan_and_builds_the_spec() {
        let m = ReplicaModel::from_value(&planned());
        assert_eq!(m.cluster_id.as_deref(), Some("orders"));
        assert_eq!(
            m.instance_type, None,
            "no default: apply takes the cluster's"
        );
        let spec = m.spec("orders", "r7g.large".into()).unwrap();
        assert_eq!(spec.resource, "strata_replica.orders");
        assert_eq!(spec.subnet_id, "subnet-b");
        assert_eq!(spec.instance_type, "r7g.large");
        assert_eq!(spec.role, "replica");
        assert_eq!(spec.tags["team"], "db");
        let unknown_subnet =
            ReplicaModel::from_value(&schema().null_object_with([("subnet_id", Value::unknown())]));
        let e = unknown_subnet
            .spec("orders", "t3.micro".into())
            .unwrap_err();
        assert!(e.to_string().contains("subnet_id"), "{e}");
    }

    #[test]
    fn state_keeps_what_aws_cannot_say_and_leaves_default_tags_out() {
        let n = NodeInfo {
            instance_id: "i-1".into(),
            region: "us-east-1".into(),
            state: "running".into(),
            private_ip: Some("10.0.2.7".into()),
            private_dns: None,
            subnet_id: Some("subnet-b".into()),
            vpc_id: None,
            availability_zone: Some("us-east-1b".into()),
            instance_type: "t3.micro".into(),
            ami: None,
            security_group_ids: Vec::new(),
            instance_profile_arn: None,
            http_tokens_required: true,
            root_volume_id: None,
            devices: Vec::new(),
            tags: BTreeMap::from([
                ("strata:cluster".to_string(), "orders".to_string()),
                ("team".to_string(), "db".to_string()),
                ("env".to_string(), "prod".to_string()),
            ]),
        };
        let mut prior = planned();
        set_attr(&mut prior, "server_id", Value::number_i64(77));
        set_attr(&mut prior, "semi_sync", Value::bool(true));
        let defaults = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let st = ReplicaState::from_node(&n, None, &prior, &defaults);
        assert_eq!(st.cluster_id.as_deref(), Some("orders"));
        assert_eq!((st.server_id, st.semi_sync), (Some(77), Some(true)));
        assert_eq!(
            st.tags,
            Value::map([("team".to_string(), Value::string("db"))])
        );
        assert_eq!(st.tags_all.len(), 2);
        let v = st.to_value();
        assert_eq!(str_attr(&v, "node_id").as_deref(), Some("i-1"));
        assert_eq!(i64_attr(&v, "server_id"), Some(77));
        assert!(v.is_wholly_known());
    }

    #[tokio::test]
    async fn a_planned_create_gets_a_creation_token_and_an_update_keeps_its_private() {
        let mut create = PlanChange::for_test(Value::null(), planned());
        ReplicaResource.modify_plan(&mut create).await.unwrap();
        let token = String::from_utf8(create.private.clone()).unwrap();
        assert!(token.len() >= 32, "{token}");
        let mut prior = planned();
        set_attr(&mut prior, "id", Value::string("i-1"));
        set_attr(&mut prior, "instance_type", Value::string("t3.micro"));
        let mut update = PlanChange::for_test(prior.clone(), prior);
        update.private = b"kept".to_vec();
        ReplicaResource.modify_plan(&mut update).await.unwrap();
        assert_eq!(update.private, b"kept");
    }

    #[tokio::test]
    async fn import_takes_only_instance_ids() {
        let ctx = || Context::new(None, CancellationToken::new());
        let ok = ReplicaResource
            .import(ImportRequest {
                ctx: ctx(),
                id: "i-0abc".into(),
            })
            .await
            .unwrap();
        assert_eq!(str_attr(&ok.state, "id").as_deref(), Some("i-0abc"));
        assert!(
            ReplicaResource
                .import(ImportRequest {
                    ctx: ctx(),
                    id: "orders".into(),
                })
                .await
                .is_err()
        );
    }
}
