//! `strata-agent roll`: drives a rolling engine-settings change through the lease store
//! alone (desired-config objects, member heartbeats, a switchover request). The decisions are
//! [`strata_topology::roll::next_roll_action`]; the provider drives the same roll with the
//! same function.

use super::store::LeaseStore;
use super::{switchover_via, wall_ms};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use strata_topology::Role;
use strata_topology::failover::{CurrentRole, FAILOVER_OBJECT_VERSION, Lease, Member};
use strata_topology::roll::{
    DesiredConfig, RollAction, RollNode, describe_order, next_roll_action, resume_point, roll_order,
};

pub struct RollOptions {
    /// How long one node may take to come back (restart, replication, caught up).
    pub node_timeout: Duration,
    /// How long the switchover may take.
    pub switchover_wait: Duration,
    /// A member heartbeat older than this does not count.
    pub fresh_ms: u64,
    /// A replica counts as caught up at this lag (seconds behind its source) or less. 0 by
    /// default: the switchover target then holds everything, and the read-only moment of the
    /// switchover (which waits for it to hold every transaction) stays short.
    pub max_lag_seconds: u64,
    pub poll: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollReport {
    pub generation: u64,
    /// The order at the start, e.g. `n2, n3, switchover to n2, n1`.
    pub order: String,
    /// Each node changed in this run and how long it took (change asked → back and caught up).
    pub nodes: Vec<(String, u64)>,
    pub switchover: Option<SwitchoverDone>,
    pub skipped: Vec<String>,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchoverDone {
    pub from: String,
    pub to: String,
    pub epoch: u64,
    pub ms: u64,
}

/// The node is changed and back: it runs generation `target`, heartbeats, and replicates in
/// shape with no lag (or is the source), following the current epoch.
pub fn member_done(
    m: &Member,
    lease: &Lease,
    target: u64,
    now: u64,
    o: &RollOptions,
    since: Option<u64>,
) -> bool {
    let fresh = now.saturating_sub(m.updated_at_ms) <= o.fresh_ms
        && since.is_none_or(|s| m.updated_at_ms > s);
    let in_shape = match m.current_role {
        CurrentRole::Replica | CurrentRole::RegionReplica => {
            m.healthy
                && m.lag_seconds.is_some_and(|l| l <= o.max_lag_seconds)
                && m.epoch_seen == lease.epoch
        }
        CurrentRole::Source => m.healthy && lease.holder.node_id == m.node_id,
        _ => false,
    };
    fresh && in_shape && m.config_generation.is_some_and(|g| g >= target)
}

/// Rolls `settings` through `nodes` (None: every member with a fresh heartbeat).
pub async fn roll_settings(
    store: &LeaseStore,
    settings: &BTreeMap<String, String>,
    nodes: Option<Vec<String>>,
    o: &RollOptions,
) -> Result<RollReport, String> {
    let t0 = Instant::now();
    let members = store.members().await.map_err(|e| e.to_string())?;
    let now = wall_ms();
    let ids: Vec<(String, bool)> = match nodes {
        Some(v) => v
            .into_iter()
            .map(|id| {
                let home = members
                    .iter()
                    .find(|m| m.node_id == id)
                    .is_none_or(|m| m.launch_role != Role::RegionReplica);
                (id, home)
            })
            .collect(),
        None => members
            .iter()
            .filter(|m| now.saturating_sub(m.updated_at_ms) <= o.fresh_ms)
            .map(|m| (m.node_id.clone(), m.launch_role != Role::RegionReplica))
            .collect(),
    };
    if ids.is_empty() {
        return Err("no nodes to roll (no fresh member heartbeats)".into());
    }
    let mut existing = Vec::new();
    for (id, _) in &ids {
        if let Some(d) = store
            .read_desired_config(id)
            .await
            .map_err(|e| e.to_string())?
        {
            existing.push(d);
        }
    }
    // Resuming: a change already asked for this generation is waited for, not asked again.
    let (target, mut asked, mut started) = resume_point(&existing, settings, None, now);
    let mut asked_at: HashMap<String, Instant> = HashMap::new();
    let mut report = RollReport {
        generation: target,
        order: String::new(),
        nodes: Vec::new(),
        switchover: None,
        skipped: Vec::new(),
        total_ms: 0,
    };
    loop {
        let (lease, _) = store
            .read_lease()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no lease yet")?;
        let members = match store.members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "members not read; retrying");
                tokio::time::sleep(o.poll).await;
                continue;
            }
        };
        let now = wall_ms();
        let view: Vec<RollNode> = ids
            .iter()
            .map(|(id, home)| {
                let m = members.iter().find(|m| &m.node_id == id);
                RollNode {
                    node_id: id.clone(),
                    home: *home,
                    done: m.is_some_and(|m| {
                        member_done(m, &lease, target, now, o, asked.get(id).copied())
                    }),
                    started_at_ms: started.get(id).copied(),
                }
            })
            .collect();
        if report.order.is_empty() {
            report.order = describe_order(&roll_order(&lease.holder.node_id, &view));
            report.skipped = view
                .iter()
                .filter(|n| n.done)
                .map(|n| n.node_id.clone())
                .collect();
            tracing::info!(generation = target, order = %report.order, "rolling engine settings");
            for m in &members {
                tracing::info!(
                    node = %m.node_id,
                    role = %m.current_role,
                    healthy = m.healthy,
                    lag = ?m.lag_seconds,
                    generation = ?m.config_generation,
                    epoch_seen = m.epoch_seen,
                    age_ms = now.saturating_sub(m.updated_at_ms),
                    "member at the start"
                );
            }
        }
        // A node that refused the settings stops the roll at once, naming it.
        for n in &view {
            if started.contains_key(&n.node_id)
                && let Some(m) = members.iter().find(|m| m.node_id == n.node_id)
                && let Some(err) = &m.config_error
                && m.config_failed_generation == Some(target)
            {
                return Err(format!("node {}: {err}; the roll stopped here", n.node_id));
            }
        }
        // Record how long each node took, once it is back.
        for n in &view {
            if n.done
                && let Some(t) = asked_at.remove(&n.node_id)
            {
                report
                    .nodes
                    .push((n.node_id.clone(), t.elapsed().as_millis() as u64));
            }
        }
        let action = next_roll_action(
            &lease.holder.node_id,
            &view,
            now,
            o.node_timeout.as_millis() as u64,
        );
        match action {
            RollAction::Change(id) => {
                store
                    .write_desired_config(&DesiredConfig {
                        version: FAILOVER_OBJECT_VERSION,
                        node_id: id.clone(),
                        generation: target,
                        engine_settings: settings.clone(),
                        engine_version: None,
                        requested_at_ms: now,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(node = %id, generation = target, "change asked");
                started.insert(id.clone(), now);
                asked.insert(id.clone(), now);
                asked_at.insert(id, Instant::now());
            }
            RollAction::Wait(_) => tokio::time::sleep(o.poll).await,
            RollAction::Switchover { to } => {
                let from = lease.holder.node_id.clone();
                let t = Instant::now();
                let l = switchover_via(store, &to, o.switchover_wait).await?;
                report.switchover = Some(SwitchoverDone {
                    from,
                    to,
                    epoch: l.epoch,
                    ms: t.elapsed().as_millis() as u64,
                });
            }
            RollAction::Done => {
                store
                    .write_desired_config(&DesiredConfig {
                        version: FAILOVER_OBJECT_VERSION,
                        node_id: String::new(),
                        generation: target,
                        engine_settings: settings.clone(),
                        engine_version: None,
                        requested_at_ms: now,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                break;
            }
            RollAction::Failed { node_id, reason } => {
                return Err(format!("node {node_id}: {reason}"));
            }
        }
    }
    report.total_ms = t0.elapsed().as_millis() as u64;
    Ok(report)
}
