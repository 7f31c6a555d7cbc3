//! What `strata_cluster` plans and decides for rolling changes (docs/rolling-changes.md):
//! which `engine_version` changes roll and which need new nodes, and the plan-time warning
//! that names the order a roll takes. The rolls themselves are `crate::aws::roll`.

use strata_topology::roll::{VersionChange, version_change};

use super::cluster::engine_settings_attr;
use super::common::*;
use super::nodes;
use crate::aws;
use crate::cty::{AttributePath, Value};
use crate::framework::{Diagnostic, PlanChange};

fn engine_of(v: &Value) -> strata_topology::Engine {
    str_attr(v, "engine")
        .as_deref()
        .and_then(nodes::engine_from)
        .unwrap_or(strata_topology::Engine::Mariadb)
}

/// What an `engine_version` change from `prior` to `planned` means (Same when either is
/// unknown or null: nothing to decide yet).
pub(crate) fn version_plan(prior: &Value, planned: &Value) -> VersionChange {
    match (
        str_attr(prior, "engine_version"),
        str_attr(planned, "engine_version"),
    ) {
        (Some(old), Some(new)) if !prior.is_null() => {
            version_change(engine_of(planned), &old, &new)
        }
        _ => VersionChange::Same,
    }
}

/// The version a rolling upgrade goes to, when the change rolls.
pub(crate) fn version_roll(prior: &Value, planned: &Value) -> Option<String> {
    match version_plan(prior, planned) {
        VersionChange::Roll => str_attr(planned, "engine_version"),
        _ => None,
    }
}

/// A version change that cannot roll (a downgrade, a skipped series, an unknown version)
/// replaces the cluster, and the plan says why.
pub(crate) fn plan_version(plan: &mut PlanChange) {
    if let VersionChange::Replace(why) = version_plan(&plan.prior, &plan.planned) {
        plan.requires_replace
            .push(AttributePath::attr("engine_version"));
        plan.diagnostics.push(
            Diagnostic::warning(
                "This engine_version change replaces the cluster",
                format!(
                    "{why}. Only a patch release or the next release series on the upgrade \
                     path rolls through the running nodes; this change needs new nodes, so \
                     the cluster and its data are replaced."
                ),
            )
            .at(AttributePath::attr("engine_version")),
        );
    }
}

/// The version state reports: the launch NodeConfig's, unless the prior state holds a version
/// a roll went to from it (user-data keeps the launch version; the roll's desired config
/// carries the new one to every node, those launched later included).
pub(crate) fn state_version(launch_version: &str, prior: &Value) -> Value {
    match str_attr(prior, "engine_version") {
        Some(p) if version_change(engine_of(prior), launch_version, &p) == VersionChange::Roll => {
            Value::string(p)
        }
        _ => Value::string(launch_version),
    }
}

/// A change that restarts nodes says so at plan time, with the order it will take: plan
/// cannot print free text, so a warning diagnostic carries it.
pub(crate) async fn plan_roll_warning(plan: &mut PlanChange) {
    let type_changes =
        plan.prior.get_attr("instance_type") != plan.planned.get_attr("instance_type");
    let settings_change = engine_settings_attr(&plan.prior) != engine_settings_attr(&plan.planned);
    let version = version_roll(&plan.prior, &plan.planned);
    if !type_changes && !settings_change && version.is_none() {
        return;
    }
    let mut order = None;
    let mut type_order = None;
    if let (Ok(c), Some(id)) = (clients(&plan.ctx), str_attr(&plan.prior, "source_node_id"))
        && let Ok(rc) = c.home().await
        && let Ok(Some(cfg)) = nodes::read_node_config(&rc, &id).await
        && let Some(f) = &cfg.failover
    {
        order = aws::roll::planned_order(&rc, &f.lease).await;
        if type_changes && let Some(name) = str_attr(&plan.prior, "name") {
            type_order = aws::roll::planned_type_order(c, &rc, &f.lease, &name).await;
        }
    }
    let mut what = Vec::new();
    let mut restarts = Vec::new();
    if settings_change {
        restarts.push("engine_settings".to_string());
    }
    if let Some(v) = &version {
        restarts.push(format!(
            "engine_version {v} (each node installs it first when its package source has it, \
             then restarts)"
        ));
    }
    if !restarts.is_empty() {
        let list = restarts.join(" and ");
        what.push(match &order {
            Some(o) => format!(
                "{list} rolls through the cluster, one node at a time without stopping writes: {o}. Each replica restarts and is back in replication and caught up before the next; the source is switched over (zero-loss) before it restarts."
            ),
            None => format!("{list} rolls through the cluster, one node at a time: replicas first, then a switchover to a changed replica, then the old source."),
        });
    }
    if type_changes {
        let new = str_attr(&plan.planned, "instance_type").unwrap_or_default();
        what.push(match &type_order {
            Some((o, pinned)) => {
                let mut s = format!(
                    "instance_type {new} rolls through the cluster's nodes, one at a time (stop, modify, start, back in replication and caught up) without stopping writes: {o}."
                );
                if !pinned.is_empty() {
                    s.push_str(&format!(
                        " Left alone (their own resource sets instance_type): {}.",
                        pinned.join(", ")
                    ));
                }
                s.push_str(" Replicas that follow the cluster's type read the new one at the next refresh.");
                s
            }
            None => format!("instance_type {new} rolls through the nodes that follow the cluster's type (replicas, then region replicas, then a switchover, then the old source), one node at a time."),
        });
    }
    let at = if settings_change {
        "engine_settings"
    } else if version.is_some() {
        "engine_version"
    } else {
        "instance_type"
    };
    plan.diagnostics.push(
        Diagnostic::warning("This change rolls through the cluster", what.join(" "))
            .at(AttributePath::attr(at)),
    );
}

/// Tags the instance as pinning its own type when the resource's configuration sets
/// `instance_type` (and clears the tag when it does not): the cluster's instance-type roll
/// leaves pinned nodes alone, and the others follow the cluster's type. `tags`: the
/// instance's tags as just read or launched, if known; when they already say what the
/// configuration does, nothing is written (a new unpinned instance has no tag to clear).
pub(crate) async fn pin_type(
    c: &aws::Clients,
    region: &str,
    instance_id: &str,
    tags: Option<&std::collections::BTreeMap<String, String>>,
    config: &Value,
) -> Result<(), aws::AwsError> {
    let pinned = config
        .get_attr("instance_type")
        .is_some_and(|v| !v.is_null());
    if tags
        .is_some_and(|t| t.contains_key(strata_topology::roll::TAG_INSTANCE_TYPE_PINNED) == pinned)
    {
        return Ok(());
    }
    let rc = c.region(Some(region)).await?;
    aws::roll::set_type_pin(&rc, instance_id, pinned).await
}

/// Changes the instance type of one node of a cluster from its own resource: through the
/// roll (lock, source role moved off, back in replication) when its node config names a lease
/// store, else directly.
pub(crate) async fn change_pinned(
    c: &aws::Clients,
    me: &str,
    node: &aws::NodeInfo,
    instance_type: &str,
    timeout: std::time::Duration,
) -> Result<(), aws::AwsError> {
    let home = c.home().await?;
    let rc = c.region(Some(&node.region)).await?;
    let cfg = nodes::read_node_config(&rc, &node.instance_id)
        .await
        .ok()
        .flatten();
    match cfg.and_then(|cfg| cfg.failover.map(|f| (cfg.node_id, f.lease))) {
        Some((node_id, lr)) => {
            aws::roll::change_one_node(
                c,
                &home,
                &lr,
                me,
                &node_id,
                &node.instance_id,
                &node.region,
                instance_type,
                timeout,
            )
            .await
        }
        None => aws::node::change_instance_type(&rc, &node.instance_id, instance_type, timeout)
            .await
            .map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(engine: &str, version: &str) -> Value {
        Value::object([
            ("engine", Value::string(engine)),
            ("engine_version", Value::string(version)),
        ])
    }

    #[test]
    fn a_patch_or_the_next_series_rolls_and_the_rest_replaces() {
        assert_eq!(
            version_roll(&v("mariadb", "10.11"), &v("mariadb", "10.11.9")),
            Some("10.11.9".into())
        );
        assert_eq!(
            version_roll(&v("mariadb", "10.11"), &v("mariadb", "11.4")),
            Some("11.4".into())
        );
        assert_eq!(
            version_roll(&v("mysql", "8.0"), &v("mysql", "8.4")),
            Some("8.4".into())
        );
        assert_eq!(
            version_roll(&v("mariadb", "10.11"), &v("mariadb", "10.11")),
            None
        );
        for (old, new, why) in [
            ("11.4", "10.11", "downgrade"),
            ("10.6", "11.4", "skips"),
            ("10.11.9", "10.11.2", "downgrade"),
        ] {
            match version_plan(&v("mariadb", old), &v("mariadb", new)) {
                VersionChange::Replace(r) => assert!(r.contains(why), "{old}->{new}: {r}"),
                other => panic!("{old}->{new}: {other:?}"),
            }
        }
        // Creating: nothing to decide.
        assert_eq!(
            version_plan(&Value::null(), &v("mariadb", "11.4")),
            VersionChange::Same
        );
    }

    #[tokio::test]
    async fn plan_replaces_only_what_cannot_roll_and_says_why() {
        // Downgrade: a replacement at engine_version, with the reason as a warning.
        let mut p = PlanChange::for_test(v("mariadb", "11.4"), v("mariadb", "10.11"));
        plan_version(&mut p);
        assert_eq!(
            p.requires_replace,
            vec![AttributePath::attr("engine_version")]
        );
        let text = format!("{:?}", p.diagnostics);
        assert!(text.contains("downgrade"), "{text}");
        // Next series: no replacement; the roll warning names it (without AWS: no order).
        let mut p = PlanChange::for_test(v("mariadb", "10.11"), v("mariadb", "11.4"));
        plan_version(&mut p);
        assert!(p.requires_replace.is_empty());
        plan_roll_warning(&mut p).await;
        let text = format!("{:?}", p.diagnostics);
        assert!(
            text.contains("rolls through the cluster") && text.contains("engine_version 11.4"),
            "{text}"
        );
        // Same version: nothing.
        let mut p = PlanChange::for_test(v("mariadb", "10.11"), v("mariadb", "10.11"));
        plan_version(&mut p);
        plan_roll_warning(&mut p).await;
        assert!(p.requires_replace.is_empty() && p.diagnostics.is_empty());
    }

    #[test]
    fn state_keeps_a_rolled_version_and_not_an_unrolled_one() {
        assert_eq!(
            state_version("10.11", &v("mariadb", "11.4")),
            Value::string("11.4")
        );
        assert_eq!(
            state_version("10.11", &v("mariadb", "10.6")),
            Value::string("10.11"),
            "a version no roll goes to is drift, read as the nodes' version"
        );
    }
}
