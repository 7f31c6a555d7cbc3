//! Automatic failover and planned switchover, run by the agents themselves.
//!
//! Who is source is decided by one S3 object, the lease ([`store`]), written only with
//! conditional PUTs, never by a protocol of our own. Its epoch is the fencing token. Each agent
//! runs [`run`]: one heartbeat loop that, depending on what the lease says,
//!
//! - **holds** it (the source): renews it every heartbeat; a watchdog task fences the server
//!   (read-only, clients killed) the moment the last renewal's validity, minus the clock
//!   margin, runs out — whatever the loop is doing;
//! - **follows** it (a replica): replicates from the holder's address; withdraws its semi-sync
//!   acks (stops the IO thread) as soon as the lease nears expiry or the source stops answering
//!   SQL pings;
//! - **elects** when the lease expired (past the clock margin): candidates stop fetching, apply
//!   what they received, publish their final GTID position, and the most advanced one
//!   (lowest node id among equals) takes the lease with `If-Match`; exactly one write wins;
//! - **promotes** when it finds itself the holder of a new epoch (won an election, or was
//!   handed the lease by a switchover): stops replication, applies the relay log, turns on
//!   semi-sync with no async fallback, then lets the server take writes, and moves the writer
//!   record in Route 53 (fenced by the epoch, see [`dns`]).
//!
//! The argument that no acknowledged write is lost and no two sources take writes is in
//! `docs/failover.md`.

pub mod decide;
pub mod dns;
pub mod replace;
pub mod roll;
pub mod settings;
pub mod store;

use crate::bootstrap::{Options as BootstrapOptions, bootstrap};
use crate::credential::{Credentials, Secret};
use crate::engine::{self, EngineSql, NO_FALLBACK_ACK_TIMEOUT_MS, quote_ident};
use crate::error::AgentError;
use crate::sql::{self, TextRow};
use decide::{Candidate, Probes, Rejoin};
use dns::Dns;
use mysql_async::Conn;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{ETag, LeaseStore, StoreError};
use strata_topology::failover::{
    CurrentRole, FAILOVER_OBJECT_VERSION, FailoverRecord, Lease, LeaseHolder, Member, Promotion,
    SwitchoverRequest, render_tag_time,
};
use strata_topology::{
    Failover, NodeConfig, NodeState, Role, SourceEndpoint, TAG_CURRENT_ROLE, TAG_LAST_FAILOVER_AT,
    TAG_LAST_FAILOVER_DURATION_MS, TAG_LAST_FAILOVER_REASON, TAG_LEASE_EPOCH,
};

/// Unix milliseconds now.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What `run` needs besides the config.
pub struct Params {
    pub cfg: NodeConfig,
    pub creds: Credentials,
    pub opts: BootstrapOptions,
    /// This node's instance: tags and `StopInstances` of a lost source. None: not on EC2.
    pub instance_id: Option<String>,
    /// Write instance tags (needs `instance_id`).
    pub tags: bool,
    /// How often a node in shape is re-bootstrapped (the plain agent's `--interval`).
    pub bootstrap_every: Duration,
}

/// The node's config for the role the lease gives it: bootstrap, the engine modules and the
/// seed only ever see this, so they need not know about failover.
pub fn effective_config(cfg: &NodeConfig, follow: Option<&LeaseHolder>) -> NodeConfig {
    let mut c = cfg.clone();
    match follow {
        None => {
            c.role = Role::Source;
            c.source = None;
        }
        Some(h) => {
            c.role = match cfg.role {
                Role::RegionReplica | Role::Backup => cfg.role,
                _ => Role::Replica,
            };
            c.source = Some(SourceEndpoint {
                host: h.host.clone(),
                port: h.port,
            });
        }
    }
    if cfg
        .failover
        .as_ref()
        .is_some_and(|f| !f.allow_async_fallback)
    {
        c.replication.ack_timeout_ms = NO_FALLBACK_ACK_TIMEOUT_MS;
    }
    c
}

/// Where peers reach this node: the configured address, else the instance's private IPv4.
pub async fn advertised(cfg: &NodeConfig) -> Result<SourceEndpoint, String> {
    if let Some(a) = cfg.failover.as_ref().and_then(|f| f.advertise.clone()) {
        return Ok(a);
    }
    let imds = aws_config::imds::Client::builder().build();
    let ip = imds
        .get("/latest/meta-data/local-ipv4")
        .await
        .map_err(|e| format!("IMDS local-ipv4: {e}"))?;
    Ok(SourceEndpoint {
        host: ip.as_ref().to_string(),
        port: cfg.local.port,
    })
}

/// Shared with the fencing watchdog.
#[derive(Default)]
struct Guard {
    /// The source may take writes until this instant (last renewal + lease - margin).
    deadline: Option<Instant>,
    /// Set by the watchdog when it fenced the server.
    fenced: bool,
    /// A fence killed commits that waited for a replica's ack (see [`fence`]).
    cut_commits: bool,
}

struct Node {
    cfg: NodeConfig,
    f: Failover,
    eng: &'static dyn EngineSql,
    creds: Credentials,
    password: Secret,
    opts: BootstrapOptions,
    store: LeaseStore,
    dns: Option<Dns>,
    ec2: Option<aws_sdk_ec2::Client>,
    instance_id: Option<String>,
    me: LeaseHolder,
    guard: Arc<Mutex<Guard>>,
    bootstrap_every: Duration,

    role: CurrentRole,
    /// The epoch whose source this node follows or is.
    epoch_seen: u64,
    conn: Option<Conn>,
    ping_failures: u32,
    acks_withdrawn: bool,
    /// Wall ms when this node first saw the source in trouble (the failover's start).
    suspect_since_ms: Option<u64>,
    suspect_reason: String,
    /// The epoch for which this node published its final position.
    final_for: Option<u64>,
    election_wait: Option<Instant>,
    last_bootstrap: Option<Instant>,
    ready_tagged: bool,
    /// A failover this node completed whose duration the lease does not carry yet.
    /// The failover duration the lease keeper writes into `last_failover` at its next renewal.
    record_duration: Arc<Mutex<Option<(u64, u64)>>>,
    /// Renews the lease every heartbeat while this node is (becoming) the source, apart from
    /// the heartbeat loop so slow duties (DNS, members) never delay a renewal.
    keeper: Option<tokio::task::JoinHandle<()>>,
    dns_pending: Option<u64>,
    readers_set: BTreeMap<String, Vec<String>>,
    tags_set: Option<(CurrentRole, u64)>,
    ticks: u64,
    /// The desired-config generation the server runs with (reported in the member object).
    config_generation: Option<u64>,
    /// Why the last generation tried could not be applied, and which generation it was.
    config_error: Option<(u64, String)>,
    /// This node's replication link ran at least once since its data was copied, or it was
    /// source (see `Member::replicated`): until then it is no candidate in an election.
    replicated: bool,
    /// The "leaving the lease to an election" warning was logged.
    cut_logged: bool,
    /// Since when this fenced holder, whose fence cut commits, has left its lease to peers.
    cut_wait: Option<Instant>,
    /// The GTIDs the link had received, and since when they have not moved.
    link_progress: Option<(String, Instant)>,
    /// Since when the source has been seen ahead while the link did not move.
    link_behind: Option<Instant>,
    /// When the source was last asked for its position by `stalled_link`.
    link_checked: Option<Instant>,
    /// The launch parameters were published (`replace::publish_launch_spec`).
    spec_published: bool,
}

/// Runs the failover controller until the process ends. Never returns an error: every
/// failure is logged and retried on the next heartbeat.
pub async fn run(p: Params) {
    let Some(f) = p.cfg.failover.clone() else {
        tracing::error!("failover::run without a failover config");
        return;
    };
    let timing = f.timing;
    let op_timeout = Duration::from_millis((timing.lease_ms / 3).clamp(200, 3_000));
    let store = LeaseStore::connect(&f.lease, op_timeout, None).await;
    let dns = match &f.dns {
        Some(d) => Some(Dns::connect(d, Duration::from_secs(5), None).await),
        None => None,
    };
    let ec2 = match &p.instance_id {
        Some(_) => Some(crate::node_state::ec2_client(&p.cfg.region, None).await),
        None => None,
    };
    let me = loop {
        match advertised(&p.cfg).await {
            Ok(a) => {
                break LeaseHolder {
                    node_id: p.cfg.node_id.clone(),
                    host: a.host,
                    port: a.port,
                    instance_id: p.instance_id.clone(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "no address to advertise yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let password = loop {
        match p.creds.replication_password(&p.cfg).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "replication credential not readable yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut opts = p.opts.clone();
    opts.replica_start_timeout = Duration::from_millis(timing.lease_ms * 2);
    let guard = Arc::new(Mutex::new(Guard::default()));
    tokio::spawn(watchdog(
        guard.clone(),
        p.cfg.clone(),
        opts.clone(),
        Duration::from_millis((timing.heartbeat_ms / 4).clamp(10, 250)),
    ));
    let mut node = Node {
        eng: engine::for_engine(p.cfg.engine),
        cfg: p.cfg,
        f,
        creds: p.creds,
        password,
        opts,
        store,
        dns,
        ec2: if p.tags { ec2 } else { None },
        instance_id: p.instance_id,
        me,
        guard,
        bootstrap_every: p.bootstrap_every,
        role: CurrentRole::Unknown,
        epoch_seen: 0,
        conn: None,
        ping_failures: 0,
        acks_withdrawn: false,
        suspect_since_ms: None,
        suspect_reason: String::new(),
        final_for: None,
        election_wait: None,
        last_bootstrap: None,
        ready_tagged: false,
        record_duration: Arc::new(Mutex::new(None)),
        keeper: None,
        dns_pending: None,
        readers_set: BTreeMap::new(),
        tags_set: None,
        ticks: 0,
        config_generation: None,
        config_error: None,
        replicated: false,
        spec_published: false,
        cut_logged: false,
        cut_wait: None,
        link_progress: None,
        link_behind: None,
        link_checked: None,
    };
    node.load_epoch_seen().await;
    let every = Duration::from_millis(timing.heartbeat_ms);
    loop {
        let started = Instant::now();
        node.tick().await;
        node.ticks += 1;
        let left = every.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

/// Fences the local server when the source's lease validity runs out, independently of the
/// heartbeat loop (which may be stuck on a slow call).
async fn watchdog(
    guard: Arc<Mutex<Guard>>,
    cfg: NodeConfig,
    opts: BootstrapOptions,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let expired = {
            let mut g = guard.lock().unwrap_or_else(|p| p.into_inner());
            match g.deadline {
                Some(d) if Instant::now() >= d => {
                    g.deadline = None;
                    g.fenced = true;
                    true
                }
                _ => false,
            }
        };
        if expired {
            tracing::warn!("lease not renewed in time: fencing this source");
            if fence(&cfg, &opts, "lease validity ran out").await {
                guard.lock().unwrap_or_else(|p| p.into_inner()).cut_commits = true;
            }
        }
    }
}

/// Makes the local server refuse writes: kills client connections (and binlog dump threads,
/// so no replica acks anything more) and sets every read-only variable, retrying until it
/// holds. Semi-sync stays on: a commit waiting for an ack is never acknowledged without a
/// replica; its client's connection is killed.
///
/// Returns whether it killed such a waiting commit. Its events are in this server's binlog
/// and may be on replicas already, but MariaDB 10.11 was seen rolling the killed commit back
/// in InnoDB: binlog and tables then disagree (the agent failover tests found rows on replicas
/// that the source, same GTIDs, did not have). A server fenced that way is rebuilt before it
/// serves again.
pub async fn fence(cfg: &NodeConfig, opts: &BootstrapOptions, why: &str) -> bool {
    fence_with(cfg, opts, why, true).await
}

/// [`fence`]; `kill_replicas = false` keeps binlog dump threads and lets commits waiting for
/// an ack finish (a switchover: the target must still receive everything, and acks them).
pub async fn fence_with(
    cfg: &NodeConfig,
    opts: &BootstrapOptions,
    why: &str,
    kill_replicas: bool,
) -> bool {
    let mut cut = false;
    let eng = engine::for_engine(cfg.engine);
    for attempt in 0..50u32 {
        let done = tokio::time::timeout(Duration::from_secs(2), async {
            let mut c = sql::connect_local(&opts.local, Duration::from_secs(2))
                .await
                .map_err(|e| AgentError::sql("connecting to fence", e))?;
            let first = kill_clients(eng, &mut c, kill_replicas).await?;
            for v in eng.read_only_vars() {
                sql::exec(&mut c, &eng.set_global_sql(v, "ON"), "setting read-only").await?;
            }
            let second = kill_clients(eng, &mut c, kill_replicas).await?;
            Ok::<_, AgentError>(first || second)
        })
        .await;
        match done {
            Ok(Ok(killed_waiting)) => {
                cut |= killed_waiting;
                if cut {
                    tracing::warn!(%why, "fenced: server is read-only, clients disconnected, commits that waited for a replica's ack killed (this server is rebuilt before it serves again)");
                } else {
                    tracing::warn!(%why, "fenced: server is read-only, clients disconnected");
                }
                return cut;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, attempt, "fencing failed; retrying"),
            Err(_) => tracing::warn!(attempt, "fencing timed out; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::error!("could not fence the local server");
    cut
}

/// Kills client connections; true when one of them was a commit waiting for a replica's ack.
async fn kill_clients(
    eng: &dyn EngineSql,
    c: &mut Conn,
    kill_replicas: bool,
) -> Result<bool, AgentError> {
    let rows = sql::rows(c, eng.client_connections_sql(), "listing connections").await?;
    let mut cut = false;
    for r in rows {
        let dump = r
            .get("COMMAND")
            .cloned()
            .flatten()
            .is_some_and(|cmd| cmd.starts_with("Binlog Dump"));
        // "Waiting for semi-sync ACK from slave" (MariaDB) / "... from replica" (MySQL).
        let waiting_ack = r
            .get("STATE")
            .cloned()
            .flatten()
            .is_some_and(|st| st.to_ascii_lowercase().contains("semi-sync ack"));
        if (dump || waiting_ack) && !kill_replicas {
            continue;
        }
        if let Some(Some(id)) = r.get("ID")
            && let Ok(id) = id.parse::<u64>()
        {
            // A connection may end on its own meanwhile: ignore "unknown thread".
            let _ = sql::exec(c, &eng.kill_connection_sql(id), "killing a client").await;
            cut |= waiting_ack;
        }
    }
    Ok(cut)
}

impl Node {
    fn timing(&self) -> strata_topology::FailoverTiming {
        self.f.timing
    }

    async fn local(&mut self) -> Result<&mut Conn, AgentError> {
        if self.conn.is_none() {
            let c = sql::connect_local(&self.opts.local, self.opts.connect_timeout)
                .await
                .map_err(|reason| AgentError::LocalConnect {
                    engine: self.cfg.engine,
                    target: self.opts.local.describe(),
                    reason,
                })?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| AgentError::sql("local", "no connection"))
    }

    /// Runs `f` on the local connection, dropping the connection on error so the next call
    /// reconnects.
    async fn q_scalar(&mut self, sql_text: &str, what: &str) -> Result<Option<String>, AgentError> {
        let c = self.local().await?;
        let r = sql::scalar(c, sql_text, what).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn q_exec(&mut self, sql_text: &str, what: &str) -> Result<(), AgentError> {
        let c = self.local().await?;
        let r = sql::exec(c, sql_text, what).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn link_row(&mut self) -> Result<Option<TextRow>, AgentError> {
        let eng = self.eng;
        let c = self.local().await?;
        let r = sql::rows(c, eng.replica_status_sql(), "reading replica status").await;
        match r {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    async fn gtid(&mut self) -> Result<String, AgentError> {
        Ok(self
            .q_scalar(self.eng.executed_gtids_sql(), "reading executed GTIDs")
            .await?
            .unwrap_or_default())
    }

    /// The epoch this node followed before the agent (re)started, from its own member object.
    /// Waits for an answer: read as "no member object", a failed read would make a restarted
    /// former source look like a new node, which follows without the divergence check (its
    /// server starts read-only meanwhile, so waiting is safe).
    async fn load_epoch_seen(&mut self) {
        let mut warned = false;
        let me = loop {
            match self.store.read_member(&self.me.node_id).await {
                Ok(m) => break m,
                Err(e @ StoreError::Corrupt { .. }) => {
                    // Nothing to learn from it; the next heartbeat rewrites it.
                    tracing::error!(error = %e, "own member object unreadable: starting without its history");
                    break None;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "member objects unreadable at start; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(self.timing().heartbeat_ms)).await;
                }
            }
        };
        if let Some(m) = me {
            // The same node id on another instance is a replacement of a lost node: a fresh
            // server that inherits nothing of its predecessor's state.
            if m.instance_id.is_some() && m.instance_id != self.instance_id {
                tracing::info!(previous = ?m.instance_id, "this node replaces a lost instance");
                return;
            }
            self.epoch_seen = m.epoch_seen;
            self.config_generation = m.config_generation;
            self.replicated = m.replicated.unwrap_or(true);
        }
    }

    fn set_deadline(&self, renewal_started: Instant) {
        let t = self.timing();
        let d =
            renewal_started + Duration::from_millis(t.lease_ms.saturating_sub(t.clock_margin_ms));
        let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.deadline = Some(d);
        g.fenced = false;
    }

    fn deadline_left(&self) -> Option<Duration> {
        let g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        g.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    async fn fence_now(&mut self, why: &str) {
        self.stop_keeper();
        {
            let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
            g.deadline = None;
            g.fenced = true;
        }
        if fence(&self.cfg, &self.opts, why).await {
            self.guard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .cut_commits = true;
        }
        self.conn = None;
        self.role = CurrentRole::Fenced;
    }

    async fn tick(&mut self) {
        if self.role == CurrentRole::Source {
            let fenced = self.guard.lock().map(|g| g.fenced).unwrap_or(true);
            if fenced {
                self.role = CurrentRole::Fenced;
                self.stop_keeper();
            }
        }
        let now = wall_ms();
        let margin = self.timing().clock_margin_ms;
        match self.store.read_lease().await {
            Err(e) => {
                tracing::warn!(error = %e, "lease store unreachable");
                if self.is_follower() {
                    // No lease to go by: the direct path alone decides whether to keep acking.
                    self.probe_and_withdraw(None, now).await;
                }
            }
            Ok(None) => {
                if self.cfg.role == Role::Source && self.role != CurrentRole::Source {
                    self.create_first_lease().await;
                }
            }
            Ok(Some((l, etag))) => {
                if l.holder.node_id == self.me.node_id {
                    if self.role == CurrentRole::Source {
                        if self.keeper.as_ref().is_none_or(|k| k.is_finished()) {
                            self.fence_now("lost the lease (conditional renewal refused)")
                                .await;
                        } else {
                            self.source_duties(&l).await;
                        }
                    } else if self.role != CurrentRole::Diverged {
                        if self.cut_commits() && self.live_peer(&l, now).await {
                            // Its tables may lack commits its binlog (and replicas) hold: it
                            // leaves the expired lease to an election and is rebuilt after.
                            if !self.cut_logged {
                                tracing::warn!(
                                    "this fenced source killed commits that waited for acks: leaving the lease to an election"
                                );
                                self.cut_logged = true;
                            }
                        } else {
                            self.take_over(l, etag).await;
                        }
                    }
                } else {
                    if self.role == CurrentRole::Source {
                        let why =
                            format!("the lease names {} at epoch {}", l.holder.node_id, l.epoch);
                        self.fence_now(&why).await;
                    }
                    if l.expired(now, margin) && self.eligible() {
                        self.elect(l, etag).await;
                    } else {
                        self.follow(&l, now).await;
                    }
                }
            }
        }
        self.heartbeat().await;
        self.publish_launch_spec().await;
    }

    fn is_follower(&self) -> bool {
        matches!(self.role, CurrentRole::Replica | CurrentRole::RegionReplica)
    }

    /// Home replicas that replicate in shape, and whose replication link ran at least once
    /// since their data was copied, may become source; region replicas never. (A node still
    /// copying its first data may show a position that looks complete to an election.)
    fn eligible(&self) -> bool {
        // The backup node (Role::Backup) is never one: it does not acknowledge writes.
        !matches!(self.cfg.role, Role::RegionReplica | Role::Backup)
            && self.role == CurrentRole::Replica
            && self.replicated
    }

    async fn create_first_lease(&mut self) {
        let gtid = match self.gtid().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "local server not ready for the first lease");
                return;
            }
        };
        let started = Instant::now();
        let now = wall_ms();
        let lease = Lease {
            version: FAILOVER_OBJECT_VERSION,
            epoch: 1,
            holder: self.me.clone(),
            expires_at_ms: now + self.timing().lease_ms,
            renewed_at_ms: now,
            promotions: vec![Promotion {
                epoch: 1,
                node_id: self.me.node_id.clone(),
                gtid_at_promotion: gtid,
            }],
            last_failover: None,
        };
        match self.store.create_lease(&lease).await {
            Ok(etag) => {
                tracing::info!("created the cluster's lease (epoch 1)");
                self.set_deadline(started);
                self.promote(&lease, etag, None).await;
            }
            Err(e) => tracing::info!(error = %e, "first lease not created"),
        }
    }

    /// This node holds the lease but is not taking writes: it just won it, was handed it by a
    /// switchover, or restarted. Renew first (a fresh validity), then promote.
    async fn take_over(&mut self, l: Lease, etag: ETag) {
        let started = Instant::now();
        let now = wall_ms();
        let mut next = l.clone();
        next.expires_at_ms = now + self.timing().lease_ms;
        next.renewed_at_ms = now;
        match self.store.replace_lease(&next, &etag).await {
            Ok(etag) => {
                self.set_deadline(started);
                self.promote(&next, etag, None).await;
            }
            Err(e) => tracing::info!(error = %e, "could not renew the lease to take over"),
        }
    }

    /// Makes the local server the source of `l`: replication stopped after everything
    /// received is applied, semi-sync on without fallback, then writable; then the writer
    /// record. `old` is the holder this node replaces after an election (to stop).
    async fn promote(&mut self, l: &Lease, etag: ETag, old: Option<&LeaseHolder>) {
        // The keeper renews the lease from here on (a first bootstrap can take longer than a
        // short lease); the server takes writes only at the very end of the steps.
        self.start_keeper(l.clone(), etag);
        self.promote_steps(l, old).await;
        if self.role != CurrentRole::Source {
            self.stop_keeper();
        }
    }

    fn start_keeper(&mut self, lease: Lease, etag: ETag) {
        self.stop_keeper();
        self.keeper = Some(tokio::spawn(keep_lease(
            self.store.clone(),
            self.guard.clone(),
            self.timing(),
            lease,
            etag,
            self.record_duration.clone(),
        )));
    }

    fn stop_keeper(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
    }

    async fn promote_steps(&mut self, l: &Lease, old: Option<&LeaseHolder>) {
        if let (Some(old), true) = (old, self.f.stop_old_source)
            && let (Some(ec2), Some(id)) = (self.ec2.clone(), old.instance_id.clone())
        {
            tokio::spawn(async move {
                // Only an instance that runs: a terminated one is gone already (and an
                // emulator that lets StopInstances bring it back as "stopped" would make a
                // lost node look alive to Terraform).
                let state = ec2
                    .describe_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| {
                        o.reservations()
                            .iter()
                            .flat_map(|r| r.instances())
                            .next()
                            .and_then(|i| i.state())
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                    });
                if let Some(st) = state.as_deref()
                    && !matches!(st, "pending" | "running")
                {
                    tracing::info!(instance = %id, state = %st, "the old source's instance is not running: not stopping it");
                    return;
                }
                match ec2
                    .stop_instances()
                    .instance_ids(&id)
                    .force(true)
                    .send()
                    .await
                {
                    Ok(_) => tracing::info!(instance = %id, "stopped the old source's instance"),
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %aws_sdk_ec2::error::DisplayErrorContext(&e), "could not stop the old source's instance")
                    }
                }
            });
        }
        if let Err(e) = self.stop_replication_applied().await {
            tracing::warn!(error = %e, "promotion: replication not stopped cleanly; retrying next beat");
            return;
        }
        let eff = effective_config(&self.cfg, None);
        // Everything a source needs (replication user, semi-sync on with no fallback) while
        // the server is still read-only; writable last: a commit before semi-sync was on
        // would be acknowledged without any replica.
        let mut opts = self.opts.clone();
        opts.hold_read_only = true;
        if let Err(e) = bootstrap(&eff, &self.creds, &opts).await {
            tracing::warn!(error = %e, "promotion: bootstrap as source failed; retrying");
            return;
        }
        if self.deadline_left().is_none_or(|d| d.is_zero())
            || self.guard.lock().map(|g| g.fenced).unwrap_or(true)
        {
            tracing::warn!("promotion: lease validity ran out before taking writes");
            return;
        }
        // MySQL: super_read_only first (read_only cannot go OFF under it).
        for v in self.eng.read_only_vars().iter().rev() {
            if let Err(e) = self
                .q_exec(&self.eng.set_global_sql(v, "OFF"), "taking writes")
                .await
            {
                tracing::warn!(error = %e, "promotion: could not make the server writable");
                self.fence_now("promotion failed").await;
                return;
            }
        }
        self.last_bootstrap = Some(Instant::now());
        // The watchdog may have fenced during the bootstrap: then this is no source.
        if self.guard.lock().map(|g| g.fenced).unwrap_or(true) {
            self.role = CurrentRole::Fenced;
            return;
        }
        self.role = CurrentRole::Source;
        self.replicated = true;
        self.epoch_seen = l.epoch;
        self.acks_withdrawn = false;
        self.suspect_since_ms = None;
        self.final_for = None;
        self.election_wait = None;
        self.cut_wait = None;
        let now = wall_ms();
        if let Some(r) = l
            .last_failover
            .as_ref()
            .filter(|r| r.epoch == l.epoch && r.duration_ms == 0)
        {
            let duration = now.saturating_sub(r.at_ms);
            if let Ok(mut d) = self.record_duration.lock() {
                *d = Some((l.epoch, duration));
            }
            tracing::info!(epoch = l.epoch, duration_ms = duration, reason = %r.reason, "this node is the source now");
            self.tag_failover(r, duration).await;
        } else {
            tracing::info!(epoch = l.epoch, "this node is the source");
        }
        self.dns_pending = Some(l.epoch);
        self.move_writer().await;
        self.tag_ready().await;
    }

    /// Stops fetching, waits until the received events are applied, then drops the link.
    async fn stop_replication_applied(&mut self) -> Result<(), AgentError> {
        self.wait_applied().await?;
        let _ = self
            .q_exec(self.eng.stop_replica_sql(), "stopping replication")
            .await;
        self.q_exec(
            self.eng.reset_replica_all_sql(),
            "forgetting the replication link",
        )
        .await
    }

    /// Stops the IO thread and waits for the SQL thread to apply the relay log. Ok at once when
    /// there is no link.
    async fn wait_applied(&mut self) -> Result<(), AgentError> {
        if self.link_row().await?.is_none() {
            return Ok(());
        }
        let _ = self
            .q_exec(self.eng.stop_io_thread_sql(), "stopping the IO thread")
            .await;
        let deadline = Instant::now() + Duration::from_millis(self.timing().lease_ms * 4);
        let mut started_sql = false;
        loop {
            let Some(row) = self.link_row().await? else {
                return Ok(());
            };
            let link = self.eng.parse_replica_status(&row);
            if self.eng.relay_log_applied(&row) && self.received_applied(&row).await? {
                return Ok(());
            }
            // A SQL thread stopped without an error (by hand, or to hold a replica back) still
            // holds received events, which this node may have acknowledged: apply them, so the
            // election can count them. A SQL error is different: the node cannot apply past it
            // and is no candidate.
            if !link.sql_running() {
                if link.last_sql_errno != 0 {
                    return Err(AgentError::ReplicaNotRunning {
                        seconds: 0,
                        reason: format!("SQL thread stopped: {}", link.last_sql_error),
                    });
                }
                if !started_sql {
                    started_sql = true;
                    tracing::warn!(
                        "election: starting the stopped SQL thread to apply what this replica received"
                    );
                    self.q_exec(self.eng.start_sql_thread_sql(), "starting the SQL thread")
                        .await?;
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Err(AgentError::ReplicaNotRunning {
                    seconds: self.timing().lease_ms * 4 / 1000,
                    reason: "relay log not applied in time".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Why the link is stuck for good, if it is: the GTIDs it received have not moved for ten
    /// leases, and its source, answering, has been ahead of this node for two more leases
    /// without the link receiving anything. Seen when the source is a node rebuilt from a copy
    /// (its binlog starts at the copy's GTID) and this replica is behind that point: the IO
    /// thread reconnects forever, without the error (1236) that says so. A link stuck that
    /// long has acknowledged nothing meanwhile, so a rebuild loses nothing. An idle cluster is
    /// not taken for a stuck link (the source is not ahead), nor is a write the link is about
    /// to receive (ahead for two leases, not a moment). The source is asked at most once a
    /// lease.
    async fn stalled_link(&mut self, l: &Lease, row: &TextRow) -> Option<String> {
        let received = self.eng.received_gtids(row).unwrap_or_default();
        let lease = Duration::from_millis(self.timing().lease_ms);
        let moved = self
            .link_progress
            .as_ref()
            .is_none_or(|(pos, _)| *pos != received);
        if moved {
            self.link_progress = Some((received, Instant::now()));
            self.link_behind = None;
            return None;
        }
        let still = self.link_progress.as_ref().map(|(_, t)| t.elapsed())?;
        if still < lease * 10 || self.link_checked.is_some_and(|t| t.elapsed() < lease) {
            return None;
        }
        self.link_checked = Some(Instant::now());
        let source = self.peer_gtid(&l.holder.host, l.holder.port).await?;
        let mine = self.gtid().await.ok()?;
        let behind = self.eng.gtid_gap(&source, &mine)?;
        if behind == 0 {
            self.link_behind = None;
            return None;
        }
        let since = *self.link_behind.get_or_insert_with(Instant::now);
        if since.elapsed() < lease * 2 {
            return None;
        }
        self.link_progress = None;
        self.link_behind = None;
        Some(format!(
            "received nothing for {} s while {} is {behind} transaction(s) ahead",
            still.as_secs(),
            l.holder.node_id
        ))
    }

    /// Whether every GTID the IO thread received is applied. No received GTIDs shown: nothing
    /// to wait for beyond the coordinates. Positions that cannot be compared count as not
    /// applied (the node then drops out of the election when its wait runs out).
    async fn received_applied(&mut self, row: &TextRow) -> Result<bool, AgentError> {
        let Some(received) = self.eng.received_gtids(row) else {
            return Ok(true);
        };
        let applied = self
            .q_scalar(self.eng.applied_gtids_sql(), "reading applied GTIDs")
            .await?
            .unwrap_or_default();
        Ok(self.eng.gtid_contains(&applied, &received).unwrap_or(false))
    }

    async fn move_writer(&mut self) {
        let (Some(epoch), Some(dns), Some(rec)) =
            (self.dns_pending, self.dns.clone(), self.f.dns.clone())
        else {
            return;
        };
        match dns
            .move_writer(&rec.writer_name, epoch, &self.me.node_id, &self.me.host)
            .await
        {
            Ok(()) => {
                tracing::info!(writer = %rec.writer_name, host = %self.me.host, epoch, "moved the writer record");
                self.dns_pending = None;
            }
            Err(dns::DnsError::Stale { current, ours }) => {
                tracing::warn!(
                    current,
                    ours,
                    "writer record is newer than this source's epoch"
                );
                self.dns_pending = None;
            }
            Err(e) => tracing::warn!(error = %e, "writer record not moved yet; retrying"),
        }
    }

    /// Every beat on the source: switchover requests, the writer if still pending, readers.
    async fn source_duties(&mut self, l: &Lease) {
        if self.dns_pending.is_some() {
            self.move_writer().await;
        }
        match self.store.read_switchover().await {
            Ok(Some(r)) => self.switchover(l, r).await,
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "switchover request unreadable"),
        }
        if self.role == CurrentRole::Source
            && self.ticks.is_multiple_of(5)
            && let (Some(dns), Some(rec)) = (self.dns.clone(), self.f.dns.clone())
        {
            self.update_readers(&dns, &rec.reader_name).await;
        }
        self.replace_lost_nodes().await;
        // A source in shape is re-checked like any node, while its lease has time left.
        let due = self
            .last_bootstrap
            .is_none_or(|t| t.elapsed() >= self.bootstrap_every);
        let room = self
            .deadline_left()
            .is_some_and(|d| d.as_millis() as u64 > self.timing().lease_ms / 2);
        if due && room {
            let eff = effective_config(&self.cfg, None);
            match bootstrap(&eff, &self.creds, &self.opts).await {
                Ok(r) if r.changes() > 0 => {
                    tracing::info!(changes = r.changes(), "bootstrap changed the source")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "source bootstrap failed"),
            }
            self.last_bootstrap = Some(Instant::now());
            if self.guard.lock().map(|g| g.fenced).unwrap_or(true) {
                self.role = CurrentRole::Fenced;
            }
        }
    }

    /// About every 5 s: relaunches home nodes whose instance EC2 reports terminated
    /// (`replace`). Only on nodes that talk to EC2 (booted instances).
    async fn replace_lost_nodes(&mut self) {
        let every = (5_000 / self.timing().heartbeat_ms.max(1)).max(1);
        if self.role != CurrentRole::Source || !self.ticks.is_multiple_of(every) {
            return;
        }
        let Some(ec2) = self.ec2.clone() else {
            return;
        };
        let Ok(members) = self.store.members().await else {
            return;
        };
        // Silent for two leases: long past any restart's gap in heartbeats; EC2's state
        // decides the rest.
        let silent = self.timing().lease_ms * 2;
        replace::replace_lost(
            &ec2,
            &self.store,
            &self.me.node_id,
            &members,
            &self.cfg.region,
            wall_ms(),
            silent,
        )
        .await;
    }

    /// Publishes this node's launch parameters once per start, so the source can relaunch it
    /// if its instance is lost. Retried every 5 s until it lands.
    async fn publish_launch_spec(&mut self) {
        let every = (5_000 / self.timing().heartbeat_ms.max(1)).max(1);
        // The backup node is not relaunched by the agents (it publishes no member either).
        if self.cfg.role == Role::Backup {
            self.spec_published = true;
        }
        if self.spec_published || !self.ticks.is_multiple_of(every) {
            return;
        }
        let (Some(ec2), Some(id)) = (self.ec2.clone(), self.instance_id.clone()) else {
            self.spec_published = true;
            return;
        };
        match replace::publish_launch_spec(&ec2, &self.store, &self.me.node_id, &id, wall_ms())
            .await
        {
            Ok(()) => self.spec_published = true,
            Err(e) => tracing::warn!(error = %e, "launch parameters not published yet"),
        }
    }

    async fn update_readers(&mut self, dns: &Dns, home_reader: &str) {
        let Ok(members) = self.store.members().await else {
            return;
        };
        let now = wall_ms();
        let fresh = self.timing().lease_ms * 2;
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &members {
            if let Some(name) = &m.reader_name
                && m.healthy
                && matches!(
                    m.current_role,
                    CurrentRole::Replica | CurrentRole::RegionReplica
                )
                && now.saturating_sub(m.updated_at_ms) <= fresh
            {
                by_name
                    .entry(name.clone())
                    .or_default()
                    .push(m.host.clone());
            }
        }
        let home = by_name.entry(home_reader.to_string()).or_default();
        if home.is_empty() {
            home.push(self.me.host.clone());
        }
        for (name, mut hosts) in by_name {
            hosts.sort();
            hosts.dedup();
            if self.readers_set.get(&name) == Some(&hosts) {
                continue;
            }
            match dns.set_readers(&name, &hosts).await {
                Ok(()) => {
                    tracing::info!(reader = %name, ?hosts, "reader record updated");
                    self.readers_set.insert(name, hosts);
                }
                Err(e) => tracing::warn!(reader = %name, error = %e, "reader record not updated"),
            }
        }
    }

    /// Planned switchover on the source: read-only, wait for the target to have everything,
    /// hand it the lease. Zero loss: nothing commits after read-only, and the lease moves only
    /// once the target holds every transaction this source has.
    async fn switchover(&mut self, l: &Lease, r: SwitchoverRequest) {
        let clear = |store: LeaseStore| async move {
            if let Err(e) = store.clear_switchover().await {
                tracing::warn!(error = %e, "switchover request not cleared");
            }
        };
        if r.epoch != l.epoch || r.to_node == self.me.node_id {
            tracing::info!(to = %r.to_node, epoch = r.epoch, "ignoring a stale switchover request");
            clear(self.store.clone()).await;
            return;
        }
        let started_ms = wall_ms();
        let members = match self.store.members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "switchover: members unreadable");
                return;
            }
        };
        let Some(target) = members.into_iter().find(|m| {
            m.node_id == r.to_node
                && m.launch_role != Role::RegionReplica
                && m.current_role == CurrentRole::Replica
                && m.healthy
                && started_ms.saturating_sub(m.updated_at_ms) <= self.timing().lease_ms * 2
        }) else {
            tracing::warn!(to = %r.to_node, "switchover refused: not a healthy home replica");
            clear(self.store.clone()).await;
            return;
        };
        tracing::info!(to = %target.node_id, "switchover: making this source read-only");
        fence_with(&self.cfg, &self.opts, "switchover", false).await;
        // The fence also ended this agent's own connection.
        self.conn = None;
        // No renewals from here: the hand-over below must replace the version it reads. A
        // source that resumes (target not caught up) renews through take_over.
        self.stop_keeper();
        let mine = match self.gtid().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "switchover: own position unreadable; resuming");
                self.role = CurrentRole::Fenced;
                clear(self.store.clone()).await;
                return;
            }
        };
        let caught_up = self
            .wait_peer_has(&target, &mine, Duration::from_secs(30))
            .await;
        if !caught_up {
            tracing::warn!(to = %target.node_id, "switchover: target did not catch up; resuming");
            // take_over re-promotes this node under its still-valid lease.
            self.role = CurrentRole::Fenced;
            clear(self.store.clone()).await;
            return;
        }
        let now = wall_ms();
        let mut next = l.clone();
        next.epoch = l.epoch + 1;
        next.holder = LeaseHolder {
            node_id: target.node_id.clone(),
            host: target.host.clone(),
            port: target.port,
            instance_id: target.instance_id.clone(),
        };
        next.expires_at_ms = now + self.timing().lease_ms;
        next.renewed_at_ms = now;
        next.push_promotion(Promotion {
            epoch: next.epoch,
            node_id: target.node_id.clone(),
            gtid_at_promotion: mine.clone(),
        });
        next.last_failover = Some(FailoverRecord {
            epoch: next.epoch,
            at_ms: started_ms,
            reason: "switchover: requested".into(),
            duration_ms: 0,
            from_node: Some(self.me.node_id.clone()),
            to_node: target.node_id.clone(),
        });
        // Read the current version: the renewal at the top of this beat changed it.
        let etag = match self.store.read_lease().await {
            Ok(Some((cur, e))) if cur.holder.node_id == self.me.node_id && cur.epoch == l.epoch => {
                e
            }
            _ => {
                self.role = CurrentRole::Fenced;
                return;
            }
        };
        match self.store.replace_lease(&next, &etag).await {
            Ok(_) => {
                {
                    let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
                    g.deadline = None;
                    g.fenced = true;
                }
                self.role = CurrentRole::Fenced;
                tracing::info!(to = %target.node_id, epoch = next.epoch, "switchover: lease handed over");
                clear(self.store.clone()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "switchover: lease not handed over; resuming");
                self.role = CurrentRole::Fenced;
            }
        }
    }

    /// Polls `peer` over SQL until its executed GTIDs contain `gtid`.
    async fn wait_peer_has(&self, peer: &Member, gtid: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(theirs) = self.peer_gtid(&peer.host, peer.port).await
                && self.eng.gtid_contains(&theirs, gtid) == Some(true)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A peer's executed GTIDs over SQL, as the replication user; None when unreachable.
    async fn peer_gtid(&self, host: &str, port: u16) -> Option<String> {
        let tls = false;
        let timeout = Duration::from_millis(self.timing().heartbeat_ms.clamp(200, 2_000));
        let mut c = sql::connect_remote(
            host,
            port,
            &self.cfg.replication.user,
            self.password.expose(),
            tls,
            None,
            timeout,
        )
        .await
        .ok()?;
        let g = tokio::time::timeout(
            timeout,
            sql::scalar(&mut c, self.eng.executed_gtids_sql(), "peer GTIDs"),
        )
        .await
        .ok()?
        .ok()?;
        let _ = c.disconnect().await;
        Some(g.unwrap_or_default())
    }

    /// One SQL ping of the source and the local IO thread's state; withdraws acks when
    /// `decide::withdraw_acks` says so.
    async fn probe_and_withdraw(&mut self, lease: Option<&Lease>, now: u64) {
        let Some(src) = self.current_source(lease) else {
            return;
        };
        let ok = self.peer_gtid(&src.0, src.1).await.is_some();
        self.ping_failures = if ok { 0 } else { self.ping_failures + 1 };
        let io_running = match self.link_row().await {
            Ok(Some(row)) => self.eng.parse_replica_status(&row).io_running(),
            _ => false,
        };
        let t = self.timing();
        let probes = Probes {
            ping_failures: self.ping_failures,
            io_running,
        };
        match decide::withdraw_acks(lease, now, t.clock_margin_ms, probes, t.detect_misses) {
            Some(why) => {
                if !self.acks_withdrawn {
                    tracing::warn!(%why, "source suspected: stopping the IO thread");
                    let _ = self
                        .q_exec(self.eng.stop_io_thread_sql(), "stopping the IO thread")
                        .await;
                    self.acks_withdrawn = true;
                    self.suspect_since_ms.get_or_insert(now);
                    self.suspect_reason = why;
                }
            }
            None => {
                if self.acks_withdrawn {
                    tracing::info!("source answers again: resuming replication");
                    self.acks_withdrawn = false;
                    self.suspect_since_ms = None;
                    self.last_bootstrap = None;
                }
            }
        }
    }

    fn current_source(&self, lease: Option<&Lease>) -> Option<(String, u16)> {
        lease
            .map(|l| (l.holder.host.clone(), l.holder.port))
            .or_else(|| self.cfg.source.as_ref().map(|s| (s.host.clone(), s.port)))
    }

    /// Follows the holder of a valid lease: rejoins after a change of source, else keeps the
    /// link in shape and watches the source.
    async fn follow(&mut self, l: &Lease, now: u64) {
        // The backup cycle holds this node's SQL thread at one GTID while it copies or reads
        // checksums: no rejoin or bootstrap may restart it meanwhile. The hold is short (a
        // checksum read) or a copy's length; the next beat catches up.
        if self.cfg.role == Role::Backup && crate::backup::replica_held() {
            return;
        }
        if !self.is_follower() || self.epoch_seen != l.epoch {
            self.rejoin(l).await;
            return;
        }
        self.final_for = None;
        self.election_wait = None;
        // The backup node acknowledges nothing, so it has no acks to withdraw.
        if self.cfg.role != Role::Backup {
            self.probe_and_withdraw(Some(l), now).await;
        }
        if self.acks_withdrawn {
            return;
        }
        if let Ok(Some(row)) = self.link_row().await {
            let link = self.eng.parse_replica_status(&row);
            if link.last_io_errno == 1236 {
                tracing::error!(error = %link.last_io_error, "the source refuses this node's position: rebuilding");
                self.rebuild(l, &link.last_io_error).await;
                return;
            }
            if let Some(why) = self.stalled_link(l, &row).await {
                tracing::error!(%why, "replication makes no progress: rebuilding");
                self.rebuild(l, &why).await;
                return;
            }
        }
        let due = self
            .last_bootstrap
            .is_none_or(|t| t.elapsed() >= self.bootstrap_every);
        if due {
            self.bootstrap_follower(l).await;
        }
        self.apply_desired_config().await;
    }

    /// A replica in shape applies a newer desired-config generation: settings file, server
    /// restart, replication resumed by the next bootstrap. Only followers get here, so a
    /// source never restarts itself while it holds the lease.
    async fn apply_desired_config(&mut self) {
        // About once a second whatever the heartbeat: two S3 reads that must not slow the
        // short heartbeats a failover's detection runs on.
        let every = (1_000 / self.timing().heartbeat_ms.max(1)).max(1);
        if !self.ticks.is_multiple_of(every) {
            return;
        }
        // Its own object, or the cluster's (the last completed roll) when that is newer: a
        // node launched after a roll catches up with it.
        let mut best: Option<strata_topology::roll::DesiredConfig> = None;
        for key in [self.me.node_id.as_str(), ""] {
            match self.store.read_desired_config(key).await {
                Ok(Some(d)) if best.as_ref().is_none_or(|b| d.generation > b.generation) => {
                    best = Some(d)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "desired config not read");
                    return;
                }
            }
        }
        let Some(d) = best else {
            return;
        };
        if self.config_generation.is_some_and(|g| g >= d.generation)
            || self
                .config_error
                .as_ref()
                .is_some_and(|(g, _)| *g == d.generation)
        {
            return;
        }
        // Tell the roll driver the node is going down for this generation.
        self.heartbeat().await;
        let result = settings::apply(&self.cfg, &self.opts, &d).await;
        self.conn = None;
        self.last_bootstrap = None;
        self.ping_failures = 0;
        match result {
            Ok(()) => {
                self.config_generation = Some(d.generation);
                self.config_error = None;
                // Replication resumes now rather than at the next periodic bootstrap.
                if let Ok(Some((l, _))) = self.store.read_lease().await
                    && l.holder.node_id != self.me.node_id
                {
                    self.bootstrap_follower(&l).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "desired config not applied");
                self.config_error = Some((d.generation, e));
            }
        }
    }

    async fn bootstrap_follower(&mut self, l: &Lease) -> bool {
        let eff = effective_config(&self.cfg, Some(&l.holder));
        match bootstrap(&eff, &self.creds, &self.opts).await {
            Ok(r) => {
                if r.changes() > 0 {
                    tracing::info!(changes = r.changes(), source = %l.holder.node_id, "bootstrap changed the replica");
                }
                self.last_bootstrap = Some(Instant::now());
                self.role = if self.cfg.role == Role::RegionReplica {
                    CurrentRole::RegionReplica
                } else {
                    CurrentRole::Replica
                };
                self.epoch_seen = l.epoch;
                self.tag_ready().await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, source = %l.holder.node_id, "replica bootstrap failed; retrying");
                false
            }
        }
    }

    /// After a change of source (or at start): follow the new holder if this node's history
    /// is contained in it, else rebuild.
    async fn rejoin(&mut self, l: &Lease) {
        if self.role == CurrentRole::Source {
            self.fence_now("rejoining as a replica").await;
        }
        // Whatever it was fetching from, it stops now (its acks go nowhere else).
        if let Ok(Some(_)) = self.link_row().await {
            let _ = self
                .q_exec(self.eng.stop_replica_sql(), "stopping replication")
                .await;
        }
        let mine = match self.gtid().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "local server unreadable; retrying");
                return;
            }
        };
        if self.cut_commits() {
            let why = "its fence killed commits that waited for a replica's ack (binlog and tables may disagree)";
            tracing::error!(%why, "rebuilding");
            self.rebuild(l, why).await;
            return;
        }
        match decide::rejoin(self.eng, l, self.epoch_seen, &mine) {
            Rejoin::Follow => {
                for stmt in self.eng.rejoin_position_sql() {
                    if let Err(e) = self.q_exec(&stmt, "setting the rejoin position").await {
                        tracing::warn!(error = %e, "rejoin position not set; retrying");
                        return;
                    }
                }
                if self.bootstrap_follower(l).await {
                    tracing::info!(source = %l.holder.node_id, epoch = l.epoch, "following the source");
                    self.acks_withdrawn = false;
                    self.ping_failures = 0;
                    self.suspect_since_ms = None;
                }
            }
            Rejoin::Rebuild(why) => {
                tracing::error!(%why, "this node diverged from the new source: rebuilding");
                self.rebuild(l, &why).await;
            }
        }
    }

    fn cut_commits(&self) -> bool {
        self.guard.lock().map(|g| g.cut_commits).unwrap_or(true)
    }

    /// Whether another home replica could take the lease `l` (which this node holds): a
    /// candidate heard from within three leases, or, for up to four leases from the first
    /// time this node asks, one heard from while this node last renewed. The second kind
    /// covers an S3 outage: when S3 answers again, every member object is as old as the
    /// outage, and the peers' next heartbeats are a moment away.
    async fn live_peer(&mut self, l: &Lease, now: u64) -> bool {
        let t = self.timing();
        let since = *self.cut_wait.get_or_insert_with(Instant::now);
        match self.store.members().await {
            Ok(ms) => {
                let peers = decide::election_peers(&ms, l, &self.me.node_id, now, t.lease_ms);
                peers
                    .iter()
                    .any(|m| now.saturating_sub(m.updated_at_ms) <= t.lease_ms * 3)
                    || (!peers.is_empty()
                        && since.elapsed() < Duration::from_millis(t.lease_ms * 4))
            }
            // Unknown: do not leave the cluster without a source on a guess.
            Err(_) => false,
        }
    }

    /// Drops the node's data and history (never binlogged) and seeds it from the source.
    async fn rebuild(&mut self, l: &Lease, why: &str) {
        self.role = CurrentRole::Diverged;
        self.replicated = false;
        self.heartbeat().await;
        let eng = self.eng;
        let result = async {
            let _ = self
                .q_exec(eng.stop_replica_sql(), "stopping replication")
                .await;
            let _ = self
                .q_exec(eng.reset_replica_all_sql(), "forgetting the link")
                .await;
            let (before, after) = eng.local_write_sql(Role::Replica);
            for s in &before {
                self.q_exec(s, "local writes").await?;
            }
            let c = self.local().await?;
            let schemas: Vec<String> = sql::rows(c, &engine::user_schemas_sql(), "listing schemas")
                .await?
                .into_iter()
                .filter_map(|r| r.get("SCHEMA_NAME").cloned().flatten())
                .collect();
            for s in schemas {
                self.q_exec(
                    &format!("DROP DATABASE IF EXISTS {}", quote_ident(&s)),
                    "dropping a diverged schema",
                )
                .await?;
            }
            for s in &after {
                self.q_exec(s, "local writes").await?;
            }
            for s in eng.forget_history_sql() {
                self.q_exec(&s, "forgetting the diverged history").await?;
            }
            Ok::<_, AgentError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "rebuild: wiping failed; retrying");
            return;
        }
        tracing::warn!(%why, source = %l.holder.node_id, "rebuild: wiped; seeding from the source");
        {
            let mut g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
            g.cut_commits = false;
        }
        self.cut_logged = false;
        self.cut_wait = None;
        // epoch 0: a node without history follows (and is seeded) like a new one.
        self.epoch_seen = 0;
        if self.bootstrap_follower(l).await {
            tracing::info!("rebuild: seeded and replicating");
        }
    }

    /// Election after the holder's lease expired. Every candidate makes its position final
    /// and publishes it; the most advanced takes the lease with `If-Match`.
    async fn elect(&mut self, l: Lease, etag: ETag) {
        let now = wall_ms();
        let started = *self.suspect_since_ms.get_or_insert(now);
        if self.suspect_reason.is_empty() {
            self.suspect_reason = format!("lease of {} expired", l.holder.node_id);
        }
        if self.final_for != Some(l.epoch) {
            if let Err(e) = self.wait_applied().await {
                tracing::warn!(error = %e, "cannot make this replica's position final: not a candidate");
                return;
            }
            self.acks_withdrawn = true;
            self.final_for = Some(l.epoch);
            self.heartbeat().await;
        }
        let mine = match self.gtid().await {
            Ok(g) => g,
            Err(_) => return,
        };
        let members = match self.store.members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "election: members unreadable");
                return;
            }
        };
        let t = self.timing();
        let peers: Vec<Member> =
            decide::election_peers(&members, &l, &self.me.node_id, now, t.lease_ms)
                .into_iter()
                .cloned()
                .collect();
        let waiting: Vec<&Member> = peers
            .iter()
            .filter(|m| m.final_for_epoch != Some(l.epoch))
            .collect();
        let waited = self
            .election_wait
            .get_or_insert_with(Instant::now)
            .elapsed();
        // As long as a peer may take to make its own position final (`wait_applied`).
        if !waiting.is_empty() && waited < Duration::from_millis(t.lease_ms * 4) {
            tracing::debug!(
                waiting = waiting.len(),
                "election: waiting for peers' final positions"
            );
            return;
        }
        if !waiting.is_empty() {
            let left_out: Vec<String> = waiting
                .iter()
                .map(|m| {
                    format!(
                        "{} (heard from {} ms ago)",
                        m.node_id,
                        now.saturating_sub(m.updated_at_ms)
                    )
                })
                .collect();
            tracing::warn!(
                ?left_out,
                "election: peers gave no final position in time; writes only they acknowledged may be lost"
            );
        }
        let mut cands = vec![Candidate {
            node_id: self.me.node_id.clone(),
            gtid: mine.clone(),
        }];
        for p in peers.iter().filter(|m| m.final_for_epoch == Some(l.epoch)) {
            // The direct answer is live; the member object is what the peer published.
            let gtid = self
                .peer_gtid(&p.host, p.port)
                .await
                .unwrap_or_else(|| p.gtid_executed.clone());
            cands.push(Candidate {
                node_id: p.node_id.clone(),
                gtid,
            });
        }
        let Some(best) = decide::choose(self.eng, &cands) else {
            tracing::error!(
                ?cands,
                "election: positions cannot be compared; no failover"
            );
            return;
        };
        if best.node_id != self.me.node_id {
            tracing::info!(winner = %best.node_id, "election: a peer is at least as advanced; deferring");
            return;
        }
        let considered: Vec<String> = cands
            .iter()
            .map(|c| format!("{} at {}", c.node_id, c.gtid))
            .collect();
        let cas_started = Instant::now();
        let now = wall_ms();
        let mut next = l.clone();
        next.epoch = l.epoch + 1;
        next.holder = self.me.clone();
        next.expires_at_ms = now + t.lease_ms;
        next.renewed_at_ms = now;
        next.push_promotion(Promotion {
            epoch: next.epoch,
            node_id: self.me.node_id.clone(),
            gtid_at_promotion: mine,
        });
        let reason = format!("source-lost: {}", self.suspect_reason);
        next.last_failover = Some(FailoverRecord {
            epoch: next.epoch,
            at_ms: started,
            reason: crate::node_state::tag_value(&reason),
            duration_ms: 0,
            from_node: Some(l.holder.node_id.clone()),
            to_node: self.me.node_id.clone(),
        });
        match self.store.replace_lease(&next, &etag).await {
            Ok(etag) => {
                tracing::warn!(epoch = next.epoch, old = %l.holder.node_id, %reason, ?considered, "won the election: promoting");
                self.set_deadline(cas_started);
                self.promote(&next, etag, Some(&l.holder)).await;
            }
            Err(StoreError::Conflict) => {
                tracing::info!("election: another node took the lease first");
            }
            Err(e) => tracing::warn!(error = %e, "election: lease not written"),
        }
    }

    /// Writes this node's member object, and its role tags when they changed.
    async fn heartbeat(&mut self) {
        let gtid = self.gtid().await.ok();
        let (healthy, lag, io_ran) = match self.role {
            CurrentRole::Replica | CurrentRole::RegionReplica => match self.link_row().await {
                Ok(Some(row)) => {
                    let link = self.eng.parse_replica_status(&row);
                    (
                        link.io_running() && link.sql_running(),
                        link.seconds_behind_source,
                        link.io_running(),
                    )
                }
                _ => (false, None, false),
            },
            CurrentRole::Source => (gtid.is_some(), None, false),
            _ => (false, None, false),
        };
        // The link runs only once the node's data was copied; from then on the node may
        // acknowledge writes, so it must be a candidate (and be waited for) in elections.
        if !self.replicated && self.is_follower() && io_ran {
            tracing::info!("replicating: a candidate in elections from now on");
            self.replicated = true;
        }
        let m = Member {
            version: FAILOVER_OBJECT_VERSION,
            node_id: self.me.node_id.clone(),
            instance_id: self.instance_id.clone(),
            launch_role: self.cfg.role,
            current_role: self.role,
            region: self.cfg.region.clone(),
            host: self.me.host.clone(),
            port: self.me.port,
            reader_name: self.f.dns.as_ref().map(|d| d.reader_name.clone()),
            gtid_executed: gtid.unwrap_or_default(),
            healthy,
            lag_seconds: lag,
            epoch_seen: self.epoch_seen,
            final_for_epoch: self.final_for,
            config_generation: self.config_generation,
            config_error: self.config_error.as_ref().map(|(_, e)| e.clone()),
            config_failed_generation: self.config_error.as_ref().map(|(g, _)| *g),
            replicated: Some(self.replicated),
            updated_at_ms: wall_ms(),
        };
        // The backup node publishes no member object: members are who elections wait for,
        // who reader records list, and who rolls and switchovers may pick, and it is none of
        // these. It still follows the lease (and is tagged with its role).
        if self.cfg.role == Role::Backup {
            self.tag_role().await;
            return;
        }
        if let Err(e) = self.store.write_member(&m).await {
            tracing::debug!(error = %e, "member heartbeat not written");
        }
        self.tag_role().await;
    }

    async fn tag_role(&mut self) {
        let key = (self.role, self.epoch_seen);
        if self.tags_set == Some(key) {
            return;
        }
        let (Some(ec2), Some(id)) = (self.ec2.clone(), self.instance_id.clone()) else {
            return;
        };
        let r = ec2
            .create_tags()
            .resources(&id)
            .tags(tag(TAG_CURRENT_ROLE, self.role.as_str()))
            .tags(tag(TAG_LEASE_EPOCH, &self.epoch_seen.to_string()))
            .send()
            .await;
        match r {
            Ok(_) => self.tags_set = Some(key),
            Err(e) => {
                tracing::debug!(error = %aws_sdk_ec2::error::DisplayErrorContext(&e), "role tags not written")
            }
        }
    }

    async fn tag_failover(&mut self, r: &FailoverRecord, duration: u64) {
        let (Some(ec2), Some(id)) = (self.ec2.clone(), self.instance_id.clone()) else {
            return;
        };
        let res = ec2
            .create_tags()
            .resources(&id)
            .tags(tag(TAG_LAST_FAILOVER_AT, &render_tag_time(r.at_ms)))
            .tags(tag(
                TAG_LAST_FAILOVER_REASON,
                &crate::node_state::tag_value(&r.reason),
            ))
            .tags(tag(TAG_LAST_FAILOVER_DURATION_MS, &duration.to_string()))
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %aws_sdk_ec2::error::DisplayErrorContext(&e), "failover tags not written");
        }
    }

    async fn tag_ready(&mut self) {
        if self.ready_tagged {
            return;
        }
        let (Some(ec2), Some(id)) = (self.ec2.clone(), self.instance_id.clone()) else {
            self.ready_tagged = true;
            return;
        };
        match crate::node_state::tag_node_state(&ec2, &id, NodeState::Ready, None).await {
            Ok(()) => self.ready_tagged = true,
            Err(e) => tracing::warn!(error = %e, "ready tag not written"),
        }
    }
}

/// Renews `lease` every heartbeat with `If-Match`, extending the watchdog's deadline (unless
/// it already fenced). Ends when a renewal is refused: another node holds the lease, so the
/// deadline is pulled in and the watchdog fences at once. Other errors are retried; the
/// watchdog fences when the validity runs out.
async fn keep_lease(
    store: LeaseStore,
    guard: Arc<Mutex<Guard>>,
    t: strata_topology::FailoverTiming,
    mut lease: Lease,
    mut etag: ETag,
    duration: Arc<Mutex<Option<(u64, u64)>>>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(t.heartbeat_ms)).await;
        // A fenced source renews nothing: its lease must run out so that an election can
        // follow (a fence that cut commits leaves the lease to one), or the agent's loop takes
        // it back explicitly (`take_over`). Renewing on kept an idle, read-only holder in place
        // for as long as S3 answered.
        if guard.lock().map(|g| g.fenced).unwrap_or(true) {
            return;
        }
        let started = Instant::now();
        let now = wall_ms();
        lease.expires_at_ms = now + t.lease_ms;
        lease.renewed_at_ms = now;
        let pending = duration.lock().ok().and_then(|d| *d);
        if let Some((epoch, ms)) = pending
            && let Some(r) = lease.last_failover.as_mut()
            && r.epoch == epoch
        {
            r.duration_ms = ms;
        }
        match store.replace_lease(&lease, &etag).await {
            Ok(e) => {
                etag = e;
                if pending.is_some()
                    && let Ok(mut d) = duration.lock()
                {
                    *d = None;
                }
                let mut g = guard.lock().unwrap_or_else(|p| p.into_inner());
                if !g.fenced {
                    g.deadline = Some(
                        started
                            + Duration::from_millis(t.lease_ms.saturating_sub(t.clock_margin_ms)),
                    );
                }
            }
            Err(StoreError::Conflict) => {
                tracing::warn!("lease renewal refused: another node holds the lease");
                let mut g = guard.lock().unwrap_or_else(|p| p.into_inner());
                if g.deadline.is_some() {
                    g.deadline = Some(Instant::now());
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed; the watchdog fences at expiry")
            }
        }
    }
}

fn tag(k: &str, v: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder().key(k).value(v).build()
}

/// What `strata-agent status` adds on a failover node: the lease and every member.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverStatus {
    pub current_source: Option<String>,
    pub source_address: Option<String>,
    pub epoch: Option<u64>,
    /// Milliseconds until the lease expires (negative: expired).
    pub lease_expires_in_ms: Option<i64>,
    pub last_failover: Option<LastFailover>,
    pub nodes: Vec<MemberStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastFailover {
    pub epoch: u64,
    pub at: String,
    pub reason: String,
    pub duration_ms: u64,
    pub from_node: Option<String>,
    pub to_node: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub node_id: String,
    pub role: CurrentRole,
    pub launch_role: Role,
    pub region: String,
    pub address: String,
    pub healthy: bool,
    pub lag_seconds: Option<u64>,
    pub gtid_executed: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}

pub async fn status(cfg: &NodeConfig) -> FailoverStatus {
    let mut out = FailoverStatus {
        current_source: None,
        source_address: None,
        epoch: None,
        lease_expires_in_ms: None,
        last_failover: None,
        nodes: Vec::new(),
        error: None,
    };
    let Some(f) = &cfg.failover else {
        return out;
    };
    let store = LeaseStore::connect(&f.lease, Duration::from_secs(5), None).await;
    let now = wall_ms();
    match store.read_lease().await {
        Ok(Some((l, _))) => {
            out.current_source = Some(l.holder.node_id.clone());
            out.source_address = Some(format!("{}:{}", l.holder.host, l.holder.port));
            out.epoch = Some(l.epoch);
            out.lease_expires_in_ms = Some(l.expires_at_ms as i64 - now as i64);
            out.last_failover = l.last_failover.map(|r| LastFailover {
                epoch: r.epoch,
                at: render_tag_time(r.at_ms),
                reason: r.reason,
                duration_ms: r.duration_ms,
                from_node: r.from_node,
                to_node: r.to_node,
            });
        }
        Ok(None) => out.error = Some("no lease yet".into()),
        Err(e) => out.error = Some(e.to_string()),
    }
    match store.members().await {
        Ok(ms) => {
            out.nodes = ms
                .into_iter()
                .map(|m| MemberStatus {
                    address: format!("{}:{}", m.host, m.port),
                    node_id: m.node_id,
                    role: m.current_role,
                    launch_role: m.launch_role,
                    region: m.region,
                    healthy: m.healthy
                        && now.saturating_sub(m.updated_at_ms) <= f.timing.lease_ms * 2,
                    lag_seconds: m.lag_seconds,
                    gtid_executed: m.gtid_executed,
                    heartbeat_age_ms: now.saturating_sub(m.updated_at_ms),
                })
                .collect()
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// `strata-agent switchover --to NODE`: asks the source's agent to hand over, then waits
/// until the lease names the target. Returns the new lease.
pub async fn request_switchover(
    cfg: &NodeConfig,
    to: &str,
    within: Duration,
) -> Result<Lease, String> {
    let f = cfg
        .failover
        .as_ref()
        .ok_or("this node has no failover config")?;
    let store = LeaseStore::connect(&f.lease, Duration::from_secs(5), None).await;
    switchover_via(&store, to, within).await
}

/// Writes a switchover request to `to` and waits until the lease names it (and the new
/// source recorded how long it took). Used by the CLI and by rolls.
pub async fn switchover_via(
    store: &LeaseStore,
    to: &str,
    within: Duration,
) -> Result<Lease, String> {
    let deadline = Instant::now() + within;
    // A one-shot command has no heartbeat to try again on the next tick: a store call that
    // failed for a passing reason (the instance role's credentials not served in time by a
    // busy metadata service, a dropped connection) is tried again until the deadline.
    let l = loop {
        match store.read_lease().await {
            Ok(Some((l, _))) => break l,
            Ok(None) => return Err("no lease yet".into()),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "switchover: reading the lease failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    if l.holder.node_id == to {
        return Ok(l);
    }
    let req = SwitchoverRequest {
        version: FAILOVER_OBJECT_VERSION,
        to_node: to.to_string(),
        epoch: l.epoch,
        requested_at_ms: wall_ms(),
    };
    // Writing the same request twice is harmless: the source acts on it once per epoch.
    loop {
        match store.request_switchover(&req).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "switchover: writing the request failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Some((cur, _))) = store.read_lease().await
            && cur.epoch > l.epoch
        {
            if cur.holder.node_id == to {
                // Wait for the new source to record how long it took.
                if cur
                    .last_failover
                    .as_ref()
                    .is_some_and(|r| r.duration_ms > 0)
                    || Instant::now() >= deadline
                {
                    return Ok(cur);
                }
                continue;
            }
            return Err(format!(
                "the lease moved to {} (epoch {}) instead",
                cur.holder.node_id, cur.epoch
            ));
        }
        if Instant::now() >= deadline {
            let _ = store.clear_switchover().await;
            return Err(format!(
                "no switchover to {to} within {}s (request withdrawn)",
                within.as_secs()
            ));
        }
    }
}
