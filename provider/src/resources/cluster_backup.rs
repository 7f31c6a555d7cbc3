//! `strata_cluster`'s backup node and `restore_from` (docs/backups.md), kept apart from
//! `cluster.rs` so the cluster's own lifecycle code stays readable.
//!
//! - With `backup_policy`, the cluster launches one more instance, its **backup node**: role
//!   `backup` in its NodeConfig and its `strata:role` tag, replicating asynchronously from the
//!   current source (it follows the lease like a replica), never in a reader record, never an
//!   election candidate nor a switchover target, never acknowledging semi-sync commits. Its
//!   agent runs the validated cycle on the policy's schedule. It is found by its tags
//!   (`backup_node_id`), relaunched by an apply when it is gone, and terminated with the cluster.
//! - With `restore_from { cluster, backup_id }`, the new cluster's source loads that backup of
//!   a cluster, existing or destroyed, before its first lease (so before it takes writes, and
//!   before its replicas seed from it). The backup is checked at apply before anything is
//!   made: it must exist in the backup bucket under that cluster name (any generation), be
//!   tagged validated, be that cluster's, and be of this cluster's engine; each refusal names
//!   the attribute.

use strata_topology::backup::{
    self, BackupObjectError, RESTORE_ATTRIBUTE, RestoreFrom, Validation, manifest_key,
    parse_backup_tags, parse_manifest,
};
use strata_topology::{Engine, Role, render_user_data};

use super::common::*;
use super::nodes::{self, ClusterSettings};
use crate::aws::{self, Clients, ClusterInfo, NodeInfo, RegionClients};
use crate::cty::{AttributePath, Value};
use crate::framework::{
    ApplyFailure, Attr, Block, Diagnostic, Diagnostics, NestedBlock, PlanChange,
};

/// The `strata:role` tag of the backup node.
pub const ROLE_BACKUP: &str = "backup";
/// The block's name in `strata_cluster`'s schema and state.
pub const RESTORE_ATTRIBUTE_NAME: &str = RESTORE_ATTRIBUTE;

pub fn restore_from_block() -> NestedBlock {
    NestedBlock::single(
        RESTORE_ATTRIBUTE,
        Block::new()
            .description(
                "Create the cluster from a validated backup of a cluster (see \
                 docs/backups.md): the source loads the backup before it first takes writes, \
                 and its replicas copy it from the source. The backup is read from the \
                 account-and-region backup bucket, so that cluster may since have been \
                 destroyed (destroy keeps validated backups unless \
                 `backup_policy.delete_backups_on_destroy`). Changing this replaces the cluster.",
            )
            .attribute(
                Attr::string("cluster")
                    .required()
                    .requires_replace()
                    .description("Name of the cluster the backup was taken of, in this provider's account and region; it may have been destroyed, and may have had this cluster's name."),
            )
            .attribute(
                Attr::string("backup_id")
                    .required()
                    .requires_replace()
                    .description("The backup's id, `YYYYMMDDTHHMMSSmmmZ` (its start time, UTC), e.g. from `strata-agent backup` or the backup objects under that cluster's `backup_location` (`backups/<cluster>/<created>/<backup_id>/`). It must be tagged `strata:validated=true`."),
            ),
    )
}

/// `(cluster, backup_id)` as configured; None without the block or while unknown.
pub fn restore_from(v: &Value) -> Option<(String, String)> {
    let b = v.get_attr(RESTORE_ATTRIBUTE).filter(|b| !b.is_null())?;
    Some((
        b.get_attr("cluster")?.as_str()?.to_string(),
        b.get_attr("backup_id")?.as_str()?.to_string(),
    ))
}

fn at(name: &str) -> AttributePath {
    AttributePath::attr(RESTORE_ATTRIBUTE).attribute(name)
}

/// Plan-time checks of the block's shape.
pub fn validate(config: &Value, d: &mut Diagnostics) {
    let Some((cluster, id)) = restore_from(config) else {
        return;
    };
    if backup::parse_backup_id(&id).is_none() {
        d.push(
            Diagnostic::error(
                "Invalid restore_from.backup_id",
                format!(
                    "`restore_from.backup_id` = {id:?} is not a backup id: backups are named \
                     by their start time, YYYYMMDDTHHMMSSmmmZ (e.g. 20261130T031405123Z)"
                ),
            )
            .at(at("backup_id")),
        );
    }
    if let Err(e) = crate::aws::rules::cluster_name(&cluster) {
        d.push(
            Diagnostic::error(
                "Invalid restore_from.cluster",
                format!("`restore_from.cluster` = {cluster:?}: {e}"),
            )
            .at(at("cluster")),
        );
    }
    // `cluster` may be this cluster's own name: a destroyed cluster's backups are kept under
    // its generation, and this one writes under a new one.
}

/// Apply-time check of the backup, before anything is made; the restore the source runs.
pub async fn check_restore(
    c: &Clients,
    rc: &RegionClients,
    engine: Engine,
    planned: &Value,
) -> Result<Option<RestoreFrom>, ApplyFailure> {
    let Some((cluster, backup_id)) = restore_from(planned) else {
        return Ok(None);
    };
    let fail = |attr: &str, summary: String, detail: String| {
        ApplyFailure::from(Diagnostic::error(summary, detail).at(at(attr)))
    };
    let account = c
        .account_id()
        .await
        .map_err(|e| ApplyFailure::from(aws_diag(RESTORE_ATTRIBUTE, "read the account id", &e)))?;
    let bucket = backup::backup_bucket_name(&account, &rc.region);
    let searched = format!(
        "s3://{bucket}/{}/*/{backup_id}/",
        backup::default_key_prefix(&cluster)
    );
    let missing = |e: String| {
        fail(
            "backup_id",
            format!("restore_from: backup {backup_id} of cluster {cluster} not found"),
            format!(
                "No backup manifest at {searched} ({e}). Check `restore_from.cluster` and \
                 `restore_from.backup_id`: the backup may have been deleted by retention, or \
                 by the destroy of a cluster with `backup_policy.delete_backups_on_destroy`."
            ),
        )
    };
    let key_prefix = aws::backups::find_backup(rc, &bucket, &cluster, &backup_id)
        .await
        .map_err(|e| ApplyFailure::from(aws_diag(RESTORE_ATTRIBUTE, "look the backup up", &e)))?
        .ok_or_else(|| missing("no such object".into()))?;
    let r = RestoreFrom {
        bucket,
        key_prefix,
        region: rc.region.clone(),
        cluster: cluster.clone(),
        backup_id: backup_id.clone(),
    };
    let key = manifest_key(&r.key_prefix, &backup_id);
    let where_ = format!("s3://{}/{key}", r.bucket);
    let tags = match rc
        .s3
        .get_object_tagging()
        .bucket(&r.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let e = aws::AwsError::from_sdk(e, "s3:GetObjectTagging", &where_);
            if e.is_not_found() || matches!(e.code(), Some("NoSuchKey" | "NoSuchBucket")) {
                return Err(missing(e.to_string()));
            }
            return Err(ApplyFailure::from(aws_diag(
                RESTORE_ATTRIBUTE,
                "read the backup's tags",
                &e,
            )));
        }
    };
    let tags = parse_backup_tags(tags.tag_set().iter().map(|t| (t.key(), t.value())))
        .map_err(|e: BackupObjectError| missing(e.to_string()))?;
    match tags.validation {
        Validation::Validated => {}
        Validation::Pending => {
            return Err(fail(
                "backup_id",
                format!("restore_from: backup {backup_id} is not validated"),
                "Its cycle did not finish (it is tagged strata:validated=false without a \
                 reason). Restore a backup tagged strata:validated=true."
                    .into(),
            ));
        }
        Validation::Failed { reason } => {
            return Err(fail(
                "backup_id",
                format!("restore_from: backup {backup_id} failed validation"),
                format!(
                    "It is tagged strata:validated=false: {reason}. Restore a backup tagged \
                     strata:validated=true."
                ),
            ));
        }
    }
    if tags.cluster != cluster {
        return Err(fail(
            "cluster",
            format!("restore_from: backup {backup_id} is not of cluster {cluster}"),
            format!("Its tags say it is of cluster {:?}.", tags.cluster),
        ));
    }
    let body = rc
        .s3
        .get_object()
        .bucket(&r.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| missing(format!("{e:?}").chars().take(300).collect()))?
        .body
        .collect()
        .await
        .map_err(|e| missing(e.to_string()))?
        .into_bytes();
    let m = parse_manifest(&body, &r.key_prefix).map_err(|e| missing(e.to_string()))?;
    if m.engine != engine {
        return Err(fail(
            "backup_id",
            format!("restore_from: backup {backup_id} is of another engine"),
            format!(
                "The backup holds {} data; this cluster runs {engine}. A backup restores only \
                 into a cluster of the same engine.",
                m.engine
            ),
        ));
    }
    Ok(Some(r))
}

/// The cluster's backup node now (None when there is none, or it is terminated).
pub async fn find_backup_node(
    rc: &RegionClients,
    cluster: &str,
) -> Result<Option<NodeInfo>, aws::AwsError> {
    let [(k1, v1), (k2, v2)] = aws::node::role_filters(cluster, ROLE_BACKUP);
    let found = aws::node::find_nodes(rc, &[(&k1, v1), (&k2, v2)]).await?;
    Ok(found.into_iter().find(|n| !n.is_gone()))
}

/// Launches the backup node (find-or-create by a creation token derived from the cluster's,
/// so a retried apply finds the one it launched).
pub async fn ensure_backup_node(
    c: &Clients,
    s: &ClusterSettings,
    info: &ClusterInfo,
    planned: &Value,
    source_ip: &str,
    timeout: std::time::Duration,
) -> Result<NodeInfo, aws::AwsError> {
    let name = &s.cluster_id;
    let cfg = nodes::node_config(
        s,
        Role::Backup,
        &format!("{name}-backup"),
        &info.region,
        server_id_for(&format!("{name}/backup")),
        Some(source_ip),
    );
    cfg.validate()
        .map_err(|e| aws::AwsError::Invalid(format!("backup node config: {e}")))?;
    let token = aws::creation_token(&["strata_cluster", name]);
    let mut spec = aws::node::NodeSpec::new(
        name.clone(),
        format!("strata_cluster.{name}"),
        aws::tags::sub_token(&token, ROLE_BACKUP),
        info.subnet_id.clone(),
        info.instance_type.clone(),
    );
    spec.role = ROLE_BACKUP.into();
    spec.ami = info.ami.clone();
    spec.security_group_ids = vec![info.security_group_id.clone()];
    spec.instance_profile = Some(info.instance_profile.clone());
    spec.user_data = render_user_data(&cfg);
    spec.tags = string_map(planned, "tags");
    spec.timeout = timeout;
    aws::create_replica(c, &spec).await
}

/// `restore_from` as state holds it: from the source's config (import), else as it was.
pub fn restore_value(cfg: Option<&strata_topology::NodeConfig>, prior: &Value) -> Value {
    match cfg.and_then(|c| c.restore.as_ref()) {
        Some(r) => Value::object([
            ("cluster", Value::string(r.cluster.clone())),
            ("backup_id", Value::string(r.backup_id.clone())),
        ]),
        None => prior
            .get_attr(RESTORE_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(Value::null),
    }
}

/// Plan: a change of `restore_from` replaces the cluster (adding or removing the block too);
/// a backup node read as gone (null `backup_node_id` with a policy) is relaunched by the apply.
pub fn plan_backup_changes(plan: &mut PlanChange) {
    let (p, n) = (
        plan.prior.get_attr(RESTORE_ATTRIBUTE),
        plan.planned.get_attr(RESTORE_ATTRIBUTE),
    );
    let null = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if n.is_some_and(Value::is_wholly_known) && (p != n) && !(null(p) && null(n)) {
        plan.requires_replace
            .push(AttributePath::attr(RESTORE_ATTRIBUTE));
    }
    let has_policy = plan
        .prior
        .get_attr("backup_policy")
        .is_some_and(|b| !b.is_null());
    if has_policy
        && plan
            .prior
            .get_attr("backup_node_id")
            .is_none_or(Value::is_null)
    {
        set_attr(&mut plan.planned, "backup_node_id", Value::unknown());
    }
}

/// Update: the backup node as it is, relaunched when it is gone and the cluster has a policy.
pub async fn repair_backup_node(
    c: &Clients,
    rc: &RegionClients,
    info: &ClusterInfo,
    cfg: Option<&strata_topology::NodeConfig>,
    planned: &Value,
    spec: &aws::ClusterSpec,
) -> Result<Option<String>, aws::AwsError> {
    if let Some(n) = find_backup_node(rc, &info.cluster_id).await? {
        return Ok(Some(n.instance_id));
    }
    let Some(cfg) = cfg.filter(|c| c.backup.is_some()) else {
        return Ok(None);
    };
    let settings = ClusterSettings::from_source(cfg);
    let Some(ip) = info.private_ip.clone() else {
        return Ok(None);
    };
    tracing::info!(cluster = %info.cluster_id, "the backup node is gone: launching it again");
    let n = ensure_backup_node(c, &settings, info, planned, &ip, spec.node.timeout).await?;
    Ok(Some(n.instance_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cluster: &str, id: &str) -> Value {
        super::super::cluster::schema().null_object_with([
            ("name", Value::string("orders2")),
            (
                RESTORE_ATTRIBUTE,
                Value::object([
                    ("cluster", Value::string(cluster)),
                    ("backup_id", Value::string(id)),
                ]),
            ),
        ])
    }

    #[test]
    fn restore_from_shape_is_checked_at_plan_naming_the_attribute() {
        let mut d = Diagnostics::new();
        validate(&cfg("orders", "20261130T031405123Z"), &mut d);
        assert!(!d.has_errors());
        // Its own name is fine: a destroyed cluster's backups outlive it.
        let mut d = Diagnostics::new();
        validate(&cfg("orders2", "20261130T031405123Z"), &mut d);
        assert!(!d.has_errors());
        for (v, attr) in [
            (cfg("orders", "latest"), "backup_id"),
            (cfg("Orders!", "20261130T031405123Z"), "cluster"),
        ] {
            let mut d = Diagnostics::new();
            validate(&v, &mut d);
            let e = d.iter().find(|d| d.is_error()).expect("an error");
            assert_eq!(e.attribute, Some(at(attr)), "{}", e.detail);
            assert!(e.summary.contains("restore_from") || e.detail.contains("restore_from"));
        }
        assert_eq!(
            restore_from(&cfg("orders", "20261130T031405123Z")),
            Some(("orders".into(), "20261130T031405123Z".into()))
        );
    }
}
