//! The node host: polls LocalStack and makes the local nodes follow their instances' states.
//!
//! running/pending -> booted (once); stopping/stopped -> container stopped, root kept (like an
//! EBS root); shutting-down/terminated/gone -> container stopped and everything removed. A failed
//! DescribeInstances is logged and retried: it never tears a node down.
use crate::cloud::{Cloud, Instance, account_of};
use crate::imds::{InstanceMeta, Registry};
use crate::node;
use crate::state::{NodeRecord, NodeState, RouterRecord, StateDir};
use crate::{Error, FORWARD_PORT, IMDS_ADDR, Result, net};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: String,
    pub regions: Vec<String>,
    pub clusters: Vec<String>,
    pub state_dir: PathBuf,
    pub image: PathBuf,
    pub router_netns: String,
    pub poll: Duration,
    /// How long a node gets to power off before it is killed.
    pub stop_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    Run,
    Stop,
    Terminate,
}

fn desired_of(state: &str) -> Desired {
    match state {
        "pending" | "running" => Desired::Run,
        "stopping" | "stopped" => Desired::Stop,
        _ => Desired::Terminate,
    }
}

#[derive(Default)]
struct Slot {
    /// Serializes boot/stop/terminate of one node.
    work: tokio::sync::Mutex<()>,
    busy: AtomicBool,
    child: Mutex<Option<tokio::process::Child>>,
    retry_after: Mutex<Option<Instant>>,
}

struct Host {
    cfg: Config,
    state: StateDir,
    cloud: Cloud,
    registry: Registry,
    router: tokio::sync::Mutex<RouterRecord>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    cidrs: Mutex<HashMap<(String, String), String>>,
    shutting_down: AtomicBool,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reads the PID file; `Some(pid)` when that process is alive and is a strata-nodehost.
pub fn running_daemon(state: &StateDir) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(state.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_nodehost = cmdline
        .split(|b| *b == 0)
        .next()
        .is_some_and(|a| a.ends_with(b"strata-nodehost"));
    (node::alive(pid) && is_nodehost).then_some(pid)
}

/// Runs the daemon until SIGTERM/SIGINT, then stops its nodes and removes what it made.
pub async fn run(cfg: Config) -> Result<()> {
    if cfg.clusters.is_empty() || cfg.regions.is_empty() {
        return Err(Error::Invalid(
            "give at least one --cluster and one --region".into(),
        ));
    }
    let image = cfg.image.clone();
    if !image.join("usr/lib/systemd/systemd").exists()
        && !image.join("lib/systemd/systemd").exists()
    {
        return Err(Error::Invalid(format!(
            "{} is not a node image (no systemd); build it with scripts/node-image",
            image.display()
        )));
    }
    let target = crate::forward::endpoint_authority(&cfg.endpoint).ok_or_else(|| {
        Error::Invalid(format!("endpoint {} is not http://host:port", cfg.endpoint))
    })?;
    let state = StateDir::new(&cfg.state_dir)?;
    if let Some(pid) = running_daemon(&state) {
        return Err(Error::Invalid(format!(
            "strata-nodehost (pid {pid}) already runs on {}",
            state.path().display()
        )));
    }
    // Leftovers of a daemon that died without cleaning: take them down (roots kept).
    cleanup(&state, false, Duration::from_secs(30)).await?;
    if net::netns_exists(&cfg.router_netns) {
        return Err(Error::Invalid(format!(
            "network namespace {} exists and this state folder did not make it (another node \
             host?); pass --router-netns NAME or run `strata-nodehost down` on its state folder",
            cfg.router_netns
        )));
    }
    let pid_file = state.pid_file();
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| Error::io(format!("writing {}", pid_file.display()), e))?;

    let router = RouterRecord {
        netns: cfg.router_netns.clone(),
        ..Default::default()
    };
    state.write_router(&router)?;
    let listeners = async {
        net::ensure_router(&cfg.router_netns).await?;
        let imds = net::bind_in_netns(&cfg.router_netns, SocketAddr::from((IMDS_ADDR, 80)))?;
        let fwd = net::bind_in_netns(
            &cfg.router_netns,
            SocketAddr::from((IMDS_ADDR, FORWARD_PORT)),
        )?;
        let imds = tokio::net::TcpListener::from_std(imds)
            .map_err(|e| Error::io("registering the IMDS socket", e))?;
        let fwd = tokio::net::TcpListener::from_std(fwd)
            .map_err(|e| Error::io("registering the forwarder socket", e))?;
        Ok::<_, Error>((imds, fwd))
    }
    .await;
    let (imds, fwd) = match listeners {
        Ok(l) => l,
        Err(e) => {
            // Leave nothing behind when the start fails half way.
            if let Err(e2) = cleanup(&state, false, cfg.stop_grace).await {
                tracing::error!(error = %e2, "cleaning up after a failed start");
            }
            let _ = std::fs::remove_file(&pid_file);
            return Err(e);
        }
    };
    let registry = Registry::default();
    let imds_task = tokio::spawn(crate::imds::serve(imds, registry.clone()));
    let fwd_task = tokio::spawn(crate::forward::serve(fwd, target));

    let host = Arc::new(Host {
        cloud: Cloud::new(&cfg.endpoint, &cfg.regions),
        cfg,
        state,
        registry,
        router: tokio::sync::Mutex::new(router),
        slots: Mutex::new(HashMap::new()),
        cidrs: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
    });
    tracing::info!(
        clusters = ?host.cfg.clusters,
        regions = ?host.cfg.regions,
        router = host.cfg.router_netns,
        "strata-nodehost running"
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("installing the SIGTERM handler", e))?;
    let mut tick = tokio::time::interval(host.cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => reconcile(&host).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping: every node of this host goes down");
    host.shutting_down.store(true, Ordering::SeqCst);
    // Wait for boots and stops in flight, then take everything down.
    let slots: Vec<Arc<Slot>> = host
        .slots
        .lock()
        .map(|s| s.values().cloned().collect())
        .unwrap_or_default();
    for slot in &slots {
        let _guard = slot.work.lock().await;
        let child = slot.child.lock().ok().and_then(|mut c| c.take());
        drop(child);
    }
    imds_task.abort();
    fwd_task.abort();
    let result = cleanup(&host.state, false, host.cfg.stop_grace).await;
    let _ = std::fs::remove_file(&pid_file);
    result
}

async fn reconcile(host: &Arc<Host>) {
    let mut seen: BTreeMap<String, Instance> = BTreeMap::new();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    for region in &host.cfg.regions {
        match host.cloud.describe(region, &host.cfg.clusters).await {
            Ok(list) => {
                answered.insert(region.clone());
                for i in list {
                    seen.insert(i.id.clone(), i);
                }
            }
            Err(e) => {
                tracing::warn!(region, error = %e, "DescribeInstances failed; retrying next poll")
            }
        }
    }
    // An instance can be described before its instance profile is (LocalStack associates the
    // profile after it records the instance): a node booted in that moment got no role, and
    // its credentials path would answer 404 for good. Give it the role once EC2 shows one.
    for (ip, id) in host.registry.without_role() {
        if let Some(arn) = seen.get(&id).and_then(|i| i.instance_profile_arn.clone()) {
            let role = host.cloud.role_name(&arn).await;
            tracing::info!(instance = id, role, "instance profile appeared after boot");
            host.registry.set_role(ip, &id, role);
        }
    }
    let records = match host.state.nodes() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading node records");
            return;
        }
    };
    let mut work: Vec<(String, Desired, Option<Instance>)> = Vec::new();
    for (id, inst) in &seen {
        work.push((id.clone(), desired_of(&inst.state), Some(inst.clone())));
    }
    for rec in &records {
        // Gone from a region that answered: terminated long ago. A region that did not answer
        // says nothing about its nodes.
        if !seen.contains_key(&rec.instance_id) && answered.contains(&rec.region) {
            work.push((rec.instance_id.clone(), Desired::Terminate, None));
        }
    }
    let by_id: HashMap<&str, &NodeRecord> = records
        .iter()
        .map(|r| (r.instance_id.as_str(), r))
        .collect();
    for (id, desired, inst) in work {
        let slot = match host.slots.lock() {
            Ok(mut s) => s.entry(id.clone()).or_default().clone(),
            Err(_) => continue,
        };
        if slot.busy.load(Ordering::SeqCst) {
            continue;
        }
        if slot
            .retry_after
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|t| Instant::now() < t)
        {
            continue;
        }
        let rec = by_id.get(id.as_str()).copied();
        let running = rec.is_some_and(|r| {
            r.state == NodeState::Running
                && r.nspawn_pid.is_some_and(|p| {
                    if let Ok(mut c) = slot.child.lock()
                        && let Some(child) = c.as_mut()
                    {
                        // Reaps nspawn if it exited, so it does not linger as a zombie.
                        let _ = child.try_wait();
                    }
                    node::alive(p)
                })
        });
        let needed = match desired {
            Desired::Run => !running,
            Desired::Stop => rec.is_some_and(|r| r.state != NodeState::Stopped),
            Desired::Terminate => rec.is_some(),
        };
        if !needed {
            continue;
        }
        if desired == Desired::Run && rec.is_some_and(|r| r.state == NodeState::Running) {
            tracing::warn!(
                instance = id,
                "node's container exited while its instance runs; booting it again"
            );
        }
        slot.busy.store(true, Ordering::SeqCst);
        let host = host.clone();
        tokio::spawn(async move {
            let _guard = slot.work.lock().await;
            if !host.shutting_down.load(Ordering::SeqCst) {
                let result = match (desired, inst) {
                    (Desired::Run, Some(inst)) => boot(&host, &slot, &inst).await,
                    (Desired::Stop, _) => teardown(&host, &slot, &id, false).await,
                    _ => teardown(&host, &slot, &id, true).await,
                };
                if let Err(e) = result {
                    tracing::error!(instance = id, ?desired, error = %e, "node change failed; retrying in 10 s");
                    if let Ok(mut r) = slot.retry_after.lock() {
                        *r = Some(Instant::now() + Duration::from_secs(10));
                    }
                    if desired == Desired::Run
                        && let Err(e2) = teardown(&host, &slot, &id, false).await
                    {
                        tracing::error!(instance = id, error = %e2, "cleaning a failed boot");
                    }
                } else if let Ok(mut r) = slot.retry_after.lock() {
                    *r = None;
                }
            }
            slot.busy.store(false, Ordering::SeqCst);
        });
    }
}

async fn subnet_cidr(host: &Host, region: &str, subnet: &str) -> Result<String> {
    let key = (region.to_string(), subnet.to_string());
    if let Some(c) = host.cidrs.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let cidr = host.cloud.subnet_cidr(region, subnet).await?;
    if let Ok(mut m) = host.cidrs.lock() {
        m.insert(key, cidr.clone());
    }
    Ok(cidr)
}

async fn boot(host: &Host, slot: &Slot, inst: &Instance) -> Result<()> {
    let missing = |what: &str| Error::Invalid(format!("instance {} has no {what}", inst.id));
    let ip = inst.private_ip.ok_or_else(|| missing("private IP"))?;
    let subnet = inst.subnet_id.clone().ok_or_else(|| missing("subnet"))?;
    let vpc = inst.vpc_id.clone().ok_or_else(|| missing("VPC"))?;
    let cidr = subnet_cidr(host, &inst.region, &subnet).await?;
    let (gateway, prefix) = net::gateway_of(&cidr)?;
    let user_data = host.cloud.user_data(&inst.region, &inst.id).await?;
    let role = match &inst.instance_profile_arn {
        Some(arn) => Some(host.cloud.role_name(arn).await),
        None => None,
    };
    let dir = host.state.node_dir(&inst.id);
    let root = dir.join("root");
    let netns = net::node_netns(&inst.id);
    let hostname = inst
        .private_dns_name
        .clone()
        .unwrap_or_else(|| inst.id.clone());
    let previous = host.state.node(&inst.id)?;
    if let Some(prev) = &previous
        && prev.state != NodeState::Stopped
    {
        // A container from an earlier boot (it died, or a boot half failed): clear it first.
        teardown(host, slot, &inst.id, false).await?;
    }
    tracing::info!(instance = inst.id, cluster = inst.cluster, %ip, cidr, "booting node");
    let mut rec = NodeRecord {
        instance_id: inst.id.clone(),
        cluster: inst.cluster.clone(),
        region: inst.region.clone(),
        availability_zone: inst.availability_zone.clone().unwrap_or_default(),
        vpc_id: vpc.clone(),
        subnet_id: subnet,
        private_ip: ip,
        prefix,
        gateway,
        hostname: hostname.clone(),
        state: NodeState::Booting,
        netns: Some(netns.clone()),
        router_veth: Some(net::router_veth_name(&inst.id)),
        mount: Some(root.clone()),
        nspawn_pid: None,
        leader_pid: None,
        booted_at: Some(now_unix()),
    };
    // Recorded before anything is made, so a crash in between is still cleaned up.
    host.state.write_node(&rec)?;
    let bridge = {
        let mut router = host.router.lock().await;
        let bridge = net::ensure_bridge(&mut router, &vpc).await?;
        net::ensure_gateway(&mut router, &bridge, gateway, prefix).await?;
        host.state.write_router(&router)?;
        bridge
    };
    net::node_up(&host.cfg.router_netns, &bridge, &rec).await?;
    node::mount_root(&host.cfg.image, &dir).await?;
    node::write_node_files(&root, &rec)?;
    host.registry.insert(InstanceMeta {
        instance_id: inst.id.clone(),
        region: inst.region.clone(),
        availability_zone: rec.availability_zone.clone(),
        private_ip: ip,
        hostname,
        account_id: account_of(inst.instance_profile_arn.as_deref()),
        instance_type: inst.instance_type.clone().unwrap_or_default(),
        image_id: inst.image_id.clone().unwrap_or_default(),
        role,
        user_data,
    });
    let child = node::spawn_container(&rec, &root, &netns, &dir.join("console.log"))?;
    let nspawn_pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| Error::Invalid("systemd-nspawn exited at once".into()))?;
    rec.nspawn_pid = Some(nspawn_pid);
    host.state.write_node(&rec)?;
    if let Ok(mut c) = slot.child.lock() {
        *c = Some(child);
    }
    let leader = node::wait_leader(nspawn_pid, Duration::from_secs(30))
        .await
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the container of {} did not start; see {}",
                inst.id,
                dir.join("console.log").display()
            ))
        })?;
    rec.leader_pid = Some(leader);
    rec.state = NodeState::Running;
    host.state.write_node(&rec)?;
    tracing::info!(instance = inst.id, nspawn_pid, leader, "node booted");
    Ok(())
}

/// Stops a node; `purge` (terminate) also removes its root volume and record.
async fn teardown(host: &Host, slot: &Slot, id: &str, purge: bool) -> Result<()> {
    let child = slot.child.lock().ok().and_then(|mut c| c.take());
    let Some(rec) = host.state.node(id)? else {
        return Ok(());
    };
    tracing::info!(instance = id, purge, "stopping node");
    host.registry.remove(rec.private_ip, id);
    take_down_node(
        &host.state,
        &host.cfg.router_netns,
        rec,
        child,
        host.cfg.stop_grace,
        purge,
    )
    .await
}

async fn take_down_node(
    state: &StateDir,
    router_netns: &str,
    mut rec: NodeRecord,
    child: Option<tokio::process::Child>,
    grace: Duration,
    purge: bool,
) -> Result<()> {
    let dir = state.node_dir(&rec.instance_id);
    let root = rec.mount.clone().unwrap_or_else(|| dir.join("root"));
    node::stop_container(&rec, &root, child, grace).await;
    net::node_down(router_netns, &rec).await?;
    node::unmount_root(&root).await?;
    if purge {
        state.remove_node(&rec.instance_id)?;
    } else {
        rec.state = NodeState::Stopped;
        rec.nspawn_pid = None;
        rec.leader_pid = None;
        rec.booted_at = None;
        state.write_node(&rec)?;
    }
    Ok(())
}

/// Stops every node of the state folder and removes every namespace, veth, bridge and overlay
/// mount recorded there. Roots are kept unless `purge`.
pub async fn cleanup(state: &StateDir, purge: bool, grace: Duration) -> Result<()> {
    let router = state.router()?;
    let router_netns = router.as_ref().map(|r| r.netns.clone()).unwrap_or_default();
    let mut first_err = None;
    for rec in state.nodes()? {
        let id = rec.instance_id.clone();
        if let Err(e) = take_down_node(state, &router_netns, rec, None, grace, purge).await {
            tracing::error!(instance = id, error = %e, "taking a node down");
            first_err.get_or_insert(e);
        }
    }
    if let Some(r) = router {
        net::delete_netns(&r.netns).await?;
        state.remove_router()?;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `down`: stops the daemon of this state folder if one runs (it cleans up as it exits), then
/// removes whatever is still recorded.
pub async fn down(state_dir: &std::path::Path, purge: bool, grace: Duration) -> Result<()> {
    // Nothing was ever made there: nothing to take down (and no folder to create).
    let Some(state) = StateDir::open(state_dir)? else {
        return Ok(());
    };
    if let Some(pid) = running_daemon(&state) {
        // SAFETY: kill(2) on the PID the file names, checked to be a strata-nodehost.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while node::alive(pid) && start.elapsed() < grace + Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if node::alive(pid) {
            return Err(Error::Invalid(format!(
                "strata-nodehost (pid {pid}) did not exit after SIGTERM"
            )));
        }
    }
    cleanup(&state, purge, grace).await?;
    let _ = std::fs::remove_file(state.pid_file());
    Ok(())
}

/// One line of `status`.
#[derive(Debug, serde::Serialize)]
pub struct NodeStatus {
    pub instance_id: String,
    pub cluster: String,
    pub region: String,
    pub ip: String,
    pub state: String,
    pub leader_pid: Option<i32>,
    pub booted_at: Option<f64>,
}

pub fn status(state_dir: &std::path::Path) -> Result<Vec<NodeStatus>> {
    let Some(state) = StateDir::open(state_dir)? else {
        return Ok(Vec::new());
    };
    Ok(state
        .nodes()?
        .into_iter()
        .map(|r| {
            let live = r
                .leader_pid
                .filter(|p| node::is_our_leader(*p, r.netns.as_deref()));
            let state = match (r.state, live) {
                (NodeState::Running, Some(_)) => "running",
                (NodeState::Running, None) => "dead",
                (NodeState::Booting, _) => "booting",
                (NodeState::Stopped, _) => "stopped",
            };
            NodeStatus {
                instance_id: r.instance_id,
                cluster: r.cluster,
                region: r.region,
                ip: r.private_ip.to_string(),
                state: state.to_string(),
                leader_pid: live,
                booted_at: r.booted_at,
            }
        })
        .collect())
}

/// `exec`: runs a command inside a booted node with the node's environment; returns its exit
/// code.
pub fn exec(state_dir: &std::path::Path, instance_id: &str, cmd: &[String]) -> Result<i32> {
    let state = StateDir::open(state_dir)?
        .ok_or_else(|| Error::Invalid(format!("no node host state in {}", state_dir.display())))?;
    let rec = state.node(instance_id)?.ok_or_else(|| {
        Error::Invalid(format!("no node {instance_id} in {}", state_dir.display()))
    })?;
    let leader = rec
        .leader_pid
        .filter(|p| {
            rec.state == NodeState::Running && node::is_our_leader(*p, rec.netns.as_deref())
        })
        .ok_or_else(|| Error::Invalid(format!("node {instance_id} is not running")))?;
    if cmd.is_empty() {
        return Err(Error::Invalid("exec needs a command after --".into()));
    }
    let status = std::process::Command::new("nsenter")
        .args(["-t", &leader.to_string(), "-a", "-r", "-w", "--"])
        .args([
            "/usr/bin/env",
            "-i",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
        ])
        .arg(format!("AWS_ENDPOINT_URL={}", crate::node_aws_endpoint()))
        .args(cmd)
        .status()
        .map_err(|e| Error::io("running nsenter", e))?;
    // A signal death maps to 128 + signal, as shells do.
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
