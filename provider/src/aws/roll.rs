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
    DesiredConfig, LockVerdict, RollAction, RollLock, RollNode, TAG_INSTANCE_TYPE_PINNED,
    cluster_config_key, config_key, describe_order, lock_verdict, next_roll_action,
    parse_desired_config, parse_roll_lock, render_desired_config, render_roll_lock, resume_point,
    roll_lock_key, roll_order,
};

use super::config::{Clients, RegionClients};
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
        Ok(self.get_versioned(key).await?.map(|(b, _)| b))
    }

    /// The object's bytes and its ETag (the version a conditional write names).
    async fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, AwsError> {
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
                let etag = o.e_tag().unwrap_or_default().to_string();
                let b = o.body.collect().await.map_err(|e| AwsError::Transport {
                    operation: "s3:GetObject".into(),
                    object: what.clone(),
                    message: e.to_string(),
                })?;
                Ok(Some((b.into_bytes().to_vec(), etag)))
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

    /// Creates `key` only when it does not exist (`If-None-Match: *`); Ok(false) when it does.
    async fn put_if_absent(&self, key: &str, body: String) -> Result<bool, AwsError> {
        self.put_conditional(key, body, None).await
    }

    /// Writes `key` only when it is still at version `etag` (`If-Match`); Ok(false) when
    /// someone wrote it since.
    async fn put_if_match(&self, key: &str, body: String, etag: &str) -> Result<bool, AwsError> {
        self.put_conditional(key, body, Some(etag)).await
    }

    async fn put_conditional(
        &self,
        key: &str,
        body: String,
        etag: Option<&str>,
    ) -> Result<bool, AwsError> {
        let what = format!("s3://{}/{key}", self.lr.bucket);
        let req = self
            .s3
            .put_object()
            .bucket(&self.lr.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()));
        let req = match etag {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                // 412: it exists (or changed); 409: a concurrent conditional write won.
                let status = e.raw_response().map(|r| r.status().as_u16());
                if matches!(status, Some(412) | Some(409)) {
                    Ok(false)
                } else {
                    Err(AwsError::from_sdk(e, "s3:PutObject", &what))
                }
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), AwsError> {
        let what = format!("s3://{}/{key}", self.lr.bucket);
        self.s3
            .delete_object()
            .bucket(&self.lr.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "s3:DeleteObject", &what))
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

/// Rolls `settings` (and, when given, an engine version: the agents install it where the
/// package source has it, then restart) through every node with a fresh heartbeat. Returns
/// the order taken.
pub async fn roll_settings(
    rc: &RegionClients,
    lr: &LeaseRef,
    settings: &BTreeMap<String, String>,
    engine_version: Option<&str>,
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
    let (target, mut asked, mut started) = resume_point(&existing, settings, engine_version, now);
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
                        engine_version: engine_version.map(str::to_string),
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
                        engine_version: engine_version.map(str::to_string),
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
    wait_back_in(&Store { s3: &rc.s3, lr }, node_id, since_ms, timeout).await
}

async fn wait_back_in(
    st: &Store<'_>,
    node_id: &str,
    since_ms: u64,
    timeout: Duration,
) -> Result<(), AwsError> {
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

// ------------------------------------------------------------------ instance-type rolls

/// Takes the cluster's roll lock for `me` (waiting while another driver holds it, taking over a
/// stale one), so two resources applied in parallel never stop two nodes at once. Every write
/// over an existing lock names the version it read (`If-Match`): two drivers that both find
/// the same stale lock cannot both take it, the slower one's write fails and it waits.
async fn acquire_lock(
    st: &Store<'_>,
    me: &str,
    hold_for: Duration,
    wait_at_most: Duration,
) -> Result<(), AwsError> {
    let key = roll_lock_key(&st.lr.key_prefix);
    let deadline = Instant::now() + wait_at_most;
    loop {
        let now = now_ms();
        let body = render_roll_lock(&RollLock {
            version: FAILOVER_OBJECT_VERSION,
            holder: me.to_string(),
            acquired_at_ms: now,
            expires_at_ms: now + hold_for.as_millis() as u64,
        });
        if st.put_if_absent(&key, body.clone()).await? {
            return Ok(());
        }
        // Gone again since the create failed: try the create once more.
        let Some((bytes, etag)) = st.get_versioned(&key).await? else {
            continue;
        };
        let existing = parse_roll_lock(&bytes);
        match lock_verdict(existing.as_ref(), me, now) {
            LockVerdict::Mine => {
                if st.put_if_match(&key, body, &etag).await? {
                    return Ok(());
                }
            }
            LockVerdict::Stale => {
                tracing::warn!(lock = ?existing, "taking over a stale roll lock");
                if st.put_if_match(&key, body, &etag).await? {
                    return Ok(());
                }
                // Another driver took it first: loop, read its lock and wait for it.
            }
            LockVerdict::Wait(holder) => {
                if Instant::now() >= deadline {
                    return Err(AwsError::BadState {
                        object: format!("s3://{}/{key}", st.lr.bucket),
                        state: format!("held by {holder}"),
                        wanted: format!("free, for {me} to stop a node"),
                        what_to_do: "another change is rolling through the cluster's nodes; apply again when it is done (a lock left by a killed apply expires after its timeout)".into(),
                    });
                }
                tracing::info!(%holder, "waiting for the cluster's roll lock");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// [`acquire_lock`] for callers outside this module (the roll lock's LocalStack test).
pub async fn acquire_roll_lock(
    s3: &aws_sdk_s3::Client,
    lr: &LeaseRef,
    me: &str,
    hold_for: Duration,
    wait_at_most: Duration,
) -> Result<(), AwsError> {
    acquire_lock(&Store { s3, lr }, me, hold_for, wait_at_most).await
}

/// [`release_lock`] for callers outside this module.
pub async fn release_roll_lock(
    s3: &aws_sdk_s3::Client,
    lr: &LeaseRef,
    me: &str,
) -> Result<(), AwsError> {
    release_lock(&Store { s3, lr }, me).await
}

/// Deletes the roll lock when it is still `me`'s.
async fn release_lock(st: &Store<'_>, me: &str) -> Result<(), AwsError> {
    let key = roll_lock_key(&st.lr.key_prefix);
    if let Some(l) = st.get(&key).await?.and_then(|b| parse_roll_lock(&b))
        && l.holder == me
    {
        st.delete(&key).await?;
    }
    Ok(())
}

/// One node an instance-type roll may change.
#[derive(Debug, Clone)]
struct TypeNode {
    node_id: String,
    instance_id: String,
    region: String,
    instance_type: String,
    home: bool,
    pinned: bool,
    /// A fresh heartbeat: the node is serving. Nodes without one are changed first, without
    /// waiting for them (they serve nothing now).
    live: bool,
}

/// Every node of the cluster with the instance behind it: members of the lease store (with
/// their instance id and region), and instances of the cluster no member names (never booted,
/// or down long enough that their heartbeat is stale).
async fn type_nodes(
    clients: &Clients,
    st: &Store<'_>,
    cluster: &str,
) -> Result<Vec<TypeNode>, AwsError> {
    let now = now_ms();
    let members = st.members().await?;
    let mut out: Vec<TypeNode> = Vec::new();
    let mut regions: Vec<String> = vec![clients.default_region().to_string()];
    for m in &members {
        if !regions.contains(&m.region) {
            regions.push(m.region.clone());
        }
    }
    for region in &regions {
        let rc = clients.region(Some(region)).await?;
        for n in cluster_instances(&rc, cluster).await? {
            let m = members
                .iter()
                .filter(|m| m.instance_id.as_deref() == Some(n.instance_id.as_str()))
                .max_by_key(|m| m.updated_at_ms);
            out.push(TypeNode {
                node_id: m
                    .map(|m| m.node_id.clone())
                    .unwrap_or_else(|| n.instance_id.clone()),
                instance_id: n.instance_id.clone(),
                region: region.clone(),
                instance_type: n.instance_type.clone(),
                home: m.map_or(region == clients.default_region(), |m| {
                    m.launch_role != strata_topology::Role::RegionReplica
                }),
                pinned: n.tags.contains_key(TAG_INSTANCE_TYPE_PINNED),
                live: m.is_some_and(|m| fresh(m, now)),
            });
        }
    }
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(out)
}

/// The cluster's database instances in one region (running, pending, stopping or stopped; not
/// backup or other helper instances: those carry no replication role).
async fn cluster_instances(
    rc: &RegionClients,
    cluster: &str,
) -> Result<Vec<super::NodeInfo>, AwsError> {
    use aws_sdk_ec2::types::Filter;
    let out = rc
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", strata_topology::tags::TAG_CLUSTER))
                .values(cluster)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeInstances", cluster))?;
    let mut v = Vec::new();
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        let Some(id) = i.instance_id() else { continue };
        let n = super::node::describe_node(rc, id).await?;
        let role = n
            .tags
            .get(strata_topology::tags::TAG_ROLE)
            .map(String::as_str);
        if matches!(role, Some("source" | "replica" | "region-replica")) {
            v.push(n);
        }
    }
    Ok(v)
}

/// The order an instance-type roll of the cluster would take now (nodes whose type the user
/// pinned on their own resource left out), and those pinned nodes; None when the lease store
/// or EC2 cannot be read.
pub async fn planned_type_order(
    clients: &Clients,
    rc: &RegionClients,
    lr: &LeaseRef,
    cluster: &str,
) -> Option<(String, Vec<String>)> {
    let st = Store { s3: &rc.s3, lr };
    let lease = st.lease().await.ok()??;
    let nodes = type_nodes(clients, &st, cluster).await.ok()?;
    let view: Vec<RollNode> = nodes
        .iter()
        .filter(|n| !n.pinned)
        .map(|n| RollNode {
            node_id: n.node_id.clone(),
            home: n.home,
            done: false,
            started_at_ms: None,
        })
        .collect();
    let pinned = nodes
        .iter()
        .filter(|n| n.pinned)
        .map(|n| n.node_id.clone())
        .collect();
    Some((
        describe_order(&roll_order(&lease.holder.node_id, &view)),
        pinned,
    ))
}

/// Rolls a new instance type through every node of `cluster` that does not pin its own:
/// replicas one at a time (stop, modify, start, then back in replication and caught up),
/// region replicas, a switchover to a changed home replica, the old source. Holds the roll
/// lock throughout. Without a lease (no agent ever ran: nodes not booted) the instances are
/// changed one by one with nothing to wait for. Returns the order taken.
pub async fn roll_instance_type(
    clients: &Clients,
    rc: &RegionClients,
    lr: &LeaseRef,
    cluster: &str,
    me: &str,
    instance_type: &str,
    node_timeout: Duration,
) -> Result<String, AwsError> {
    let st = Store { s3: &rc.s3, lr };
    acquire_lock(&st, me, node_timeout * 8, node_timeout).await?;
    let out = roll_type_locked(clients, &st, cluster, instance_type, node_timeout).await;
    let released = release_lock(&st, me).await;
    let order = out?;
    released?;
    Ok(order)
}

async fn change_type(
    clients: &Clients,
    n: &TypeNode,
    instance_type: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(Some(&n.region)).await?;
    tracing::info!(node = %n.node_id, instance = %n.instance_id, %instance_type, "changing the instance type");
    super::node::change_instance_type(&rc, &n.instance_id, instance_type, timeout)
        .await
        .map(|_| ())
}

/// Starts the node's instance when it is stopped (a roll interrupted between its stop and
/// its start).
async fn ensure_running(
    clients: &Clients,
    n: &TypeNode,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(Some(&n.region)).await?;
    let cur = super::node::describe_node(&rc, &n.instance_id).await?;
    if cur.state == "running" {
        return Ok(());
    }
    if cur.state == "stopping" {
        super::node::wait_node_state(&rc, &n.instance_id, "stopped", timeout).await?;
    }
    if cur.state != "pending" {
        let what = format!("instance {}", n.instance_id);
        rc.ec2
            .start_instances()
            .instance_ids(&n.instance_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:StartInstances", &what))?;
    }
    super::node::wait_node_state(&rc, &n.instance_id, "running", timeout)
        .await
        .map(|_| ())
}

/// How long a stopped node's agent may go on heartbeating before the roll goes on anyway.
const DOWN_WAIT: Duration = Duration::from_secs(60);

/// Stops a live node and waits until its agent stopped heartbeating: EC2 reports `stopped`
/// before the machine is down everywhere (an emulator's state flips at once), and the modify
/// and start that follow must restart a node that really went down, not one still serving.
async fn stop_live(
    clients: &Clients,
    st: &Store<'_>,
    n: &TypeNode,
    timeout: Duration,
) -> Result<(), AwsError> {
    let rc = clients.region(Some(&n.region)).await?;
    let what = format!("instance {}", n.instance_id);
    rc.ec2
        .stop_instances()
        .instance_ids(&n.instance_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:StopInstances", &what))?;
    super::node::wait_node_state(&rc, &n.instance_id, "stopped", timeout).await?;
    let t0 = Instant::now();
    let mut last = None;
    let mut changed = Instant::now();
    loop {
        let hb = st
            .members()
            .await?
            .iter()
            .find(|m| m.node_id == n.node_id)
            .map(|m| m.updated_at_ms);
        if hb != last {
            last = hb;
            changed = Instant::now();
        }
        // Agents heartbeat about once a second: three quiet seconds is a node that is down.
        if changed.elapsed() >= Duration::from_secs(3) {
            tracing::info!(node = %n.node_id, secs = t0.elapsed().as_secs_f64(), "stopped node is down");
            return Ok(());
        }
        if t0.elapsed() >= DOWN_WAIT {
            tracing::warn!(node = %n.node_id, "stopped in EC2 but its agent still heartbeats; going on");
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn roll_type_locked(
    clients: &Clients,
    st: &Store<'_>,
    cluster: &str,
    instance_type: &str,
    node_timeout: Duration,
) -> Result<String, AwsError> {
    let nodes: Vec<TypeNode> = type_nodes(clients, st, cluster)
        .await?
        .into_iter()
        .filter(|n| !n.pinned)
        .collect();
    // Nodes that serve nothing now (no fresh heartbeat, or no agent ever ran) change first:
    // stopping them cannot touch writes or reads.
    let lease = st.lease().await?;
    let members = st.members().await?;
    for n in nodes.iter().filter(|n| !n.live || lease.is_none()) {
        if n.instance_type != instance_type {
            change_type(clients, n, instance_type, node_timeout).await?;
        }
        // A member that is down now (e.g. stopped by an interrupted roll): started again and
        // waited for, so the roll never has it down while it stops the next node.
        if lease.is_some() && members.iter().any(|m| m.node_id == n.node_id) {
            ensure_running(clients, n, node_timeout).await?;
            wait_back_in(st, &n.node_id, 0, node_timeout).await?;
        }
    }
    if lease.is_none() {
        return Ok(describe_order(
            &nodes
                .iter()
                .map(|n| strata_topology::roll::RollStep::Change(n.node_id.clone()))
                .collect::<Vec<_>>(),
        ));
    }
    let live: Vec<&TypeNode> = nodes.iter().filter(|n| n.live).collect();
    let mut types: BTreeMap<String, String> = live
        .iter()
        .map(|n| (n.node_id.clone(), n.instance_type.clone()))
        .collect();
    let mut asked: BTreeMap<String, u64> = BTreeMap::new();
    let mut order = String::new();
    let t0 = Instant::now();
    loop {
        let Some(lease) = st.lease().await? else {
            return Err(failed("(none)", "the cluster's lease is gone".into()));
        };
        let members = st.members().await?;
        let now = now_ms();
        let view: Vec<RollNode> = live
            .iter()
            .map(|n| {
                let m = members.iter().find(|m| m.node_id == n.node_id);
                RollNode {
                    node_id: n.node_id.clone(),
                    home: n.home,
                    done: types.get(&n.node_id).map(String::as_str) == Some(instance_type)
                        && m.is_some_and(|m| {
                            back(m, &lease, asked.get(&n.node_id).copied().unwrap_or(0), now)
                        }),
                    started_at_ms: asked.get(&n.node_id).copied(),
                }
            })
            .collect();
        if order.is_empty() {
            order = describe_order(&roll_order(&lease.holder.node_id, &view));
            tracing::info!(%instance_type, %order, "rolling the instance type");
        }
        match next_roll_action(
            &lease.holder.node_id,
            &view,
            now,
            node_timeout.as_millis() as u64,
        ) {
            RollAction::Change(id) => {
                let Some(n) = live.iter().find(|n| n.node_id == id) else {
                    return Err(failed(&id, "not found among the cluster's nodes".into()));
                };
                asked.insert(id.clone(), now);
                if types.get(&id).map(String::as_str) != Some(instance_type) {
                    stop_live(clients, st, n, node_timeout)
                        .await
                        .map_err(|e| failed(&id, format!("stopping it: {e}")))?;
                    change_type(clients, n, instance_type, node_timeout)
                        .await
                        .map_err(|e| failed(&id, format!("changing its instance type: {e}")))?;
                    types.insert(id.clone(), instance_type.to_string());
                }
                tracing::info!(node = %id, secs = t0.elapsed().as_secs_f64(), "instance type changed; waiting for it back in replication");
            }
            RollAction::Wait(_) => tokio::time::sleep(POLL).await,
            RollAction::Switchover { to } => {
                tracing::info!(%to, "switching the source over before changing it");
                switchover(st, &lease, &to, Duration::from_secs(90)).await?
            }
            RollAction::Done => {
                tracing::info!(%order, secs = t0.elapsed().as_secs_f64(), "instance type rolled");
                return Ok(order);
            }
            RollAction::Failed { node_id, reason } => return Err(failed(&node_id, reason)),
        }
    }
}

/// An instance-type change of one node whose type its own resource sets (a pinned
/// `strata_replica` or a `strata_region`'s replica): under the cluster's roll lock, moves the
/// source role off it when it holds the lease, changes it, and waits until it is back in
/// replication and caught up. Without a lease (no agent ever ran) it just changes it.
#[allow(clippy::too_many_arguments)]
pub async fn change_one_node(
    clients: &Clients,
    rc: &RegionClients,
    lr: &LeaseRef,
    me: &str,
    node_id: &str,
    instance_id: &str,
    region: &str,
    instance_type: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let n = TypeNode {
        node_id: node_id.to_string(),
        instance_id: instance_id.to_string(),
        region: region.to_string(),
        instance_type: String::new(),
        home: true,
        pinned: true,
        live: true,
    };
    let st = Store { s3: &rc.s3, lr };
    if st.lease().await?.is_none() {
        return change_type(clients, &n, instance_type, timeout).await;
    }
    acquire_lock(&st, me, timeout * 3, timeout).await?;
    let out = async {
        move_source_off(rc, lr, node_id, timeout).await?;
        let since = now_ms();
        stop_live(clients, &st, &n, timeout).await?;
        change_type(clients, &n, instance_type, timeout).await?;
        wait_back(rc, lr, node_id, since, timeout).await
    }
    .await;
    let released = release_lock(&st, me).await;
    out?;
    released
}

/// Marks (or unmarks) an instance as pinning its own instance type
/// ([`TAG_INSTANCE_TYPE_PINNED`]): the cluster's instance-type roll leaves it alone.
pub async fn set_type_pin(
    rc: &RegionClients,
    instance_id: &str,
    pinned: bool,
) -> Result<(), AwsError> {
    use aws_sdk_ec2::types::Tag;
    let what = format!("instance {instance_id}");
    let tag = Tag::builder()
        .key(TAG_INSTANCE_TYPE_PINNED)
        .value("true")
        .build();
    if pinned {
        rc.ec2
            .create_tags()
            .resources(instance_id)
            .tags(tag)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "ec2:CreateTags", &what))
    } else {
        rc.ec2
            .delete_tags()
            .resources(instance_id)
            .tags(Tag::builder().key(TAG_INSTANCE_TYPE_PINNED).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "ec2:DeleteTags", &what))
    }
}
