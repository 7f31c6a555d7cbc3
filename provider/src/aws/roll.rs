//! Rolling changes driven by the provider through the cluster's lease store (the agents' S3
//! objects, `topology::failover` and `topology::roll`): an engine-settings change goes
//! replica by replica, then a switchover, then the old source; an instance-type change of the
//! node the cluster resource owns first moves the source role off it. The decisions are
//! `strata_topology::roll::next_roll_action`, shared with `strata-agent roll`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use strata_topology::LeaseRef;
use strata_topology::failover::{
    CurrentRole, FAILOVER_OBJECT_VERSION, Lease, Member, SwitchoverRequest, lease_key,
    members_prefix, parse_lease, parse_member, render_switchover, switchover_key,
};
use strata_topology::roll::{
    DesiredConfig, RollAction, RollNode, cluster_config_key, config_key, describe_order,
    next_roll_action, parse_desired_config, render_desired_config, resume_point, roll_order,
};

use super::config::RegionClients;
use super::error::AwsError;

/// A member heartbeat older than this does not count (the agents write one every second).
const FRESH_MS: u64 = 10_000;
const POLL: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Store<'a> {
    s3: &'a aws_sdk_s3::Client,
    lr: &'a LeaseRef,
}

impl Store<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, AwsError> {
        let what = format!("s3://{}/{key}", self.lr.bucket);
        match self
            .s3
            .get_object()
            .bucket(&self.lr.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let b = o.body.collect().await.map_err(|e| AwsError::Transport {
                    operation: "s3:GetObject".into(),
                    object: what.clone(),
                    message: e.to_string(),
                })?;
                Ok(Some(b.into_bytes().to_vec()))
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                let e = AwsError::from_sdk(e, "s3:GetObject", &what);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    async fn put(&self, key: &str, body: String) -> Result<(), AwsError> {
        let what = format!("s3://{}/{key}", self.lr.bucket);
        self.s3
            .put_object()
            .bucket(&self.lr.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "s3:PutObject", &what))
    }

    async fn lease(&self) -> Result<Option<Lease>, AwsError> {
        Ok(self
            .get(&lease_key(&self.lr.key_prefix))
            .await?
            .and_then(|b| parse_lease(&b).ok()))
    }

    async fn members(&self) -> Result<Vec<Member>, AwsError> {
        let prefix = members_prefix(&self.lr.key_prefix);
        let what = format!("s3://{}/{prefix}", self.lr.bucket);
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.lr.bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "s3:ListObjectsV2", &what))?;
        let mut v = Vec::new();
        for o in out.contents() {
            if let Some(k) = o.key()
                && let Some(b) = self.get(k).await?
                && let Ok(m) = parse_member(&b)
            {
                v.push(m);
            }
        }
        Ok(v)
    }

    async fn desired(&self, node_id: &str) -> Result<Option<DesiredConfig>, AwsError> {
        Ok(self
            .get(&config_key(&self.lr.key_prefix, node_id))
            .await?
            .and_then(|b| parse_desired_config(&b).ok()))
    }
}

fn failed(node: &str, why: String) -> AwsError {
    AwsError::BadState {
        object: format!("cluster node {node}"),
        state: why,
        wanted: "changed and back in replication".into(),
        what_to_do: "the roll stopped here and the cluster keeps serving; look at the node (strata-agent status, its journal), fix the cause and apply again: the roll resumes, skipping nodes already changed".into(),
    }
}

fn fresh(m: &Member, now: u64) -> bool {
    now.saturating_sub(m.updated_at_ms) <= FRESH_MS
}

/// Back in shape: a replica replicating with no lag following the current epoch, or the
/// source holding the lease; heartbeat newer than `since`.
fn back(m: &Member, lease: &Lease, since: u64, now: u64) -> bool {
    let shape = match m.current_role {
        CurrentRole::Replica | CurrentRole::RegionReplica => {
            m.healthy && m.lag_seconds == Some(0) && m.epoch_seen == lease.epoch
        }
        CurrentRole::Source => m.healthy && lease.holder.node_id == m.node_id,
        _ => false,
    };
    shape && fresh(m, now) && m.updated_at_ms > since
}

/// The order a roll would take now, e.g. `c-replica-a, c-replica-b, switchover to
/// c-replica-a, c-source`; None when the lease store cannot be read.
pub async fn planned_order(rc: &RegionClients, lr: &LeaseRef) -> Option<String> {
    let st = Store { s3: &rc.s3, lr };
    let lease = st.lease().await.ok()??;
    let now = now_ms();
    let nodes: Vec<RollNode> = st
        .members()
        .await
        .ok()?
        .iter()
        .filter(|m| fresh(m, now))
        .map(|m| RollNode {
            node_id: m.node_id.clone(),
            home: m.launch_role != strata_topology::Role::RegionReplica,
            done: false,
            started_at_ms: None,
        })
        .collect();
    Some(describe_order(&roll_order(&lease.holder.node_id, &nodes)))
}

/// Writes a switchover request to `to` and waits for the lease to name it.
async fn switchover(
    st: &Store<'_>,
    from: &Lease,
    to: &str,
    within: Duration,
) -> Result<(), AwsError> {
    st.put(
        &switchover_key(&st.lr.key_prefix),
        render_switchover(&SwitchoverRequest {
            version: FAILOVER_OBJECT_VERSION,
            to_node: to.to_string(),
            epoch: from.epoch,
            requested_at_ms: now_ms(),
        }),
    )
    .await?;
    let deadline = Instant::now() + within;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(l) = st.lease().await?
            && l.epoch > from.epoch
        {
            if l.holder.node_id == to {
                return Ok(());
            }
            return Err(failed(
                to,
                format!(
                    "a switchover to it was asked, but the lease moved to {} (epoch {})",
                    l.holder.node_id, l.epoch
                ),
            ));
        }
        if Instant::now() >= deadline {
            return Err(failed(
                to,
                format!(
                    "no switchover to it within {} s (the source refuses a target that is not a healthy, caught-up home replica)",
                    within.as_secs()
                ),
            ));
        }
    }
}

/// Rolls `settings` through every node with a fresh heartbeat. Returns the order taken.
pub async fn roll_settings(
    rc: &RegionClients,
    lr: &LeaseRef,
    settings: &BTreeMap<String, String>,
    node_timeout: Duration,
) -> Result<String, AwsError> {
    let st = Store { s3: &rc.s3, lr };
    let now = now_ms();
    let ids: Vec<(String, bool)> = st
        .members()
        .await?
        .iter()
        .filter(|m| fresh(m, now))
        .map(|m| {
            (
                m.node_id.clone(),
                m.launch_role != strata_topology::Role::RegionReplica,
            )
        })
        .collect();
    let mut existing = Vec::new();
    for (id, _) in &ids {
        if let Some(d) = st.desired(id).await? {
            existing.push(d);
        }
    }
    let (target, mut asked, mut started) = resume_point(&existing, settings, now);
    let mut order = String::new();
    loop {
        let Some(lease) = st.lease().await? else {
            return Err(failed("(none)", "the cluster has no lease yet".into()));
        };
        let members = st.members().await?;
        let now = now_ms();
        let view: Vec<RollNode> = ids
            .iter()
            .map(|(id, home)| {
                let m = members.iter().find(|m| &m.node_id == id);
                RollNode {
                    node_id: id.clone(),
                    home: *home,
                    done: m.is_some_and(|m| {
                        m.config_generation.is_some_and(|g| g >= target)
                            && back(m, &lease, asked.get(id).copied().unwrap_or(0), now)
                    }),
                    started_at_ms: started.get(id).copied(),
                }
            })
            .collect();
        if order.is_empty() {
            order = describe_order(&roll_order(&lease.holder.node_id, &view));
            tracing::info!(generation = target, %order, "rolling engine settings");
        }
        for m in &members {
            if started.contains_key(&m.node_id)
                && m.config_failed_generation == Some(target)
                && let Some(e) = &m.config_error
            {
                return Err(failed(&m.node_id, e.clone()));
            }
        }
        match next_roll_action(
            &lease.holder.node_id,
            &view,
            now,
            node_timeout.as_millis() as u64,
        ) {
            RollAction::Change(id) => {
                st.put(
                    &config_key(&lr.key_prefix, &id),
                    render_desired_config(&DesiredConfig {
                        version: FAILOVER_OBJECT_VERSION,
                        node_id: id.clone(),
                        generation: target,
                        engine_settings: settings.clone(),
                        requested_at_ms: now,
                    }),
                )
                .await?;
                tracing::info!(node = %id, generation = target, "engine settings asked");
                asked.insert(id.clone(), now);
                started.insert(id, now);
            }
            RollAction::Wait(_) => tokio::time::sleep(POLL).await,
            RollAction::Switchover { to } => {
                switchover(&st, &lease, &to, Duration::from_secs(90)).await?
            }
            RollAction::Done => {
                st.put(
                    &cluster_config_key(&lr.key_prefix),
                    render_desired_config(&DesiredConfig {
                        version: FAILOVER_OBJECT_VERSION,
                        node_id: String::new(),
                        generation: target,
                        engine_settings: settings.clone(),
                        requested_at_ms: now,
                    }),
                )
                .await?;
                return Ok(order);
            }
            RollAction::Failed { node_id, reason } => return Err(failed(&node_id, reason)),
        }
    }
}

/// Before the node `node_id` is stopped (an instance-type change): when it holds the lease,
/// hand it to a healthy, caught-up home replica and wait until the lease moved. Ok(false)
/// when there is nothing to do (it is not the source, or there is no lease).
pub async fn move_source_off(
    rc: &RegionClients,
    lr: &LeaseRef,
    node_id: &str,
    timeout: Duration,
) -> Result<bool, AwsError> {
    let st = Store { s3: &rc.s3, lr };
    let Some(lease) = st.lease().await? else {
        return Ok(false);
    };
    if lease.holder.node_id != node_id {
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let now = now_ms();
        let members = st.members().await?;
        let mut candidates: Vec<&Member> = members
            .iter()
            .filter(|m| {
                m.node_id != node_id
                    && m.launch_role != strata_topology::Role::RegionReplica
                    && back(m, &lease, 0, now)
            })
            .collect();
        candidates.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        if let Some(t) = candidates.first() {
            switchover(&st, &lease, &t.node_id, Duration::from_secs(90)).await?;
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Err(failed(
                node_id,
                "it is the source and no home replica is healthy and caught up to take over; changing its instance type would stop writes (add a strata_replica, or wait until one is back)".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After the node `node_id` restarted: waits until it heartbeats back in shape (a replica
/// caught up, or the source) after `since_ms`.
pub async fn wait_back(
    rc: &RegionClients,
    lr: &LeaseRef,
    node_id: &str,
    since_ms: u64,
    timeout: Duration,
) -> Result<(), AwsError> {
    let st = Store { s3: &rc.s3, lr };
    // No lease: no agent has ever run on this cluster (nodes that never booted, as with
    // `node_ready_timeout = "0s"` against an emulator): there is no replication to wait for.
    if st.lease().await?.is_none() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(lease) = st.lease().await?
            && st
                .members()
                .await?
                .iter()
                .any(|m| m.node_id == node_id && back(m, &lease, since_ms, now_ms()))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(
                node_id,
                format!(
                    "not back in replication within {} s of its restart",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// When the node's heartbeat was last written (0: none), to wait for a newer one.
pub fn now() -> u64 {
    now_ms()
}
