//! The `strata-agent` command line.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_agent::credential::{
    CredentialSource, Credentials, EnvCredentialSource, FileCredentialSource, SsmCredentialSource,
};
use strata_agent::node_state::{self, Fault};
use strata_agent::sql::LocalTarget;
use strata_agent::{BootstrapOptions, bootstrap, render_server_config, status};
use strata_topology::{AGENT_CONFIG_PATH, NodeConfig, NodeState, Role};

#[derive(Parser)]
#[command(name = "strata-agent", version, about = "Strata node agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Configure the engine and replication for this node's role; prints what it did.
    Bootstrap(Common),
    /// Print the node's replication status as JSON.
    Status(Common),
    /// Bootstrap, then keep the node in shape (re-checks every --interval seconds). Tags the
    /// instance `strata:node-state=ready` after the first successful bootstrap, `failed` (with
    /// `strata:node-error`) for an error no retry fixes; retries other errors sooner.
    Run {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// The instance to tag; default: this instance, from IMDSv2.
        #[arg(long)]
        instance_id: Option<String>,
        /// Do not tag the instance (not on EC2).
        #[arg(long)]
        no_node_tags: bool,
        /// Run validated backup cycles whenever the config's `backup.policy` says one is due
        /// (checked every --interval seconds) or `backup --now` asks. Implied when the config's
        /// role is `backup` (the cluster's backup node).
        #[arg(long)]
        backup_node: bool,
        #[command(flatten)]
        backup: BackupArgs,
    },
    /// Planned, zero-loss switchover to NODE (failover clusters): the source's agent makes
    /// it read-only, waits for NODE to hold every transaction, hands it the lease; NODE
    /// promotes itself and moves the writer record. Prints the new lease.
    Switchover {
        #[command(flatten)]
        common: Common,
        /// Node id to promote.
        #[arg(long)]
        to: String,
        /// Seconds to wait for the lease to move.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Rolling engine-settings change (failover clusters): each replica in turn restarts with
    /// the settings and catches up, then the source switches over to a changed replica and
    /// restarts as a replica. Resumes an interrupted roll. Prints what it did as JSON.
    Roll {
        #[command(flatten)]
        common: Common,
        /// A server variable, NAME=VALUE (repeat; the complete set: names not given are
        /// removed from the settings file).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Node ids to roll (comma-separated); default: every node with a fresh heartbeat.
        #[arg(long, value_delimiter = ',')]
        nodes: Option<Vec<String>>,
        /// Seconds one node may take to come back before the roll stops.
        #[arg(long, default_value_t = 300)]
        node_timeout: u64,
        /// A replica is caught up at this replication lag (seconds) or less.
        #[arg(long, default_value_t = 0)]
        max_lag_seconds: u64,
    },
    /// One validated backup cycle on this backup node (a replica): restore the latest
    /// validated backup into a scratch server, check it, catch it up to a held GTID, check
    /// again, then store a new backup taken from it; a failed check marks that backup failed
    /// and takes a fresh full one. Applies retention. Prints what it did as JSON.
    Backup {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        backup: BackupArgs,
        /// Run only when the policy says a cycle is due (for timers); default: always.
        #[arg(long)]
        if_due: bool,
        /// Ask this node's running agent (`run`, on the backup node) for a cycle now, wait for
        /// it and print its report: the cycle runs inside the agent, which keeps its own
        /// replication upkeep off the replica while the cycle holds it.
        #[arg(long, conflicts_with = "if_due")]
        now: bool,
        /// With --now: seconds to wait for the cycle.
        #[arg(long, default_value_t = 1800)]
        wait: u64,
    },
    /// Restore a backup into DIR/data (every chunk's SHA-256 checked, then prepared): a datadir
    /// a server can start on. Prints the backup's manifest facts as JSON.
    Restore {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        backup: BackupArgs,
        /// The backup id; default: the newest validated backup.
        #[arg(long)]
        backup_id: Option<String>,
        #[arg(long)]
        target_dir: PathBuf,
    },
    /// Print the engine config file this node's server must be started with.
    RenderServerConfig {
        #[arg(long, default_value = AGENT_CONFIG_PATH)]
        config: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// The node config (JSON written by user-data).
    #[arg(long, default_value = AGENT_CONFIG_PATH)]
    config: PathBuf,
    /// Local server socket; overrides `local.socket`.
    #[arg(long)]
    socket: Option<String>,
    /// Local server TCP port (used when no socket); overrides `local.port`.
    #[arg(long)]
    port: Option<u16>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value = "root")]
    admin_user: String,
    /// File with the admin password; none means an empty password.
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    /// Read the replication password from this file instead of SSM (tests, labs).
    #[arg(long, conflicts_with = "credential_env")]
    credential_file: Option<PathBuf>,
    /// Read the replication password from this environment variable instead of SSM.
    #[arg(long)]
    credential_env: Option<String>,
    /// Read the admin account's password (`admin.credential`) from this file instead of SSM.
    #[arg(long, conflicts_with = "admin_credential_env")]
    admin_credential_file: Option<PathBuf>,
    /// Read the admin account's password from this environment variable instead of SSM.
    #[arg(long)]
    admin_credential_env: Option<String>,
    /// Command that restarts the local server when its config file changed,
    /// e.g. "systemctl restart mariadb" (split on whitespace).
    #[arg(long)]
    restart_command: Option<String>,
    /// Seconds to wait for a server to answer.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
}

#[derive(Args, Clone)]
struct BackupArgs {
    /// Where the scratch server's datadir and the stream's temp files go.
    #[arg(long, default_value = "/var/lib/strata-backup")]
    work_dir: PathBuf,
    #[arg(long, default_value = "/usr/sbin/mariadbd")]
    mariadbd: PathBuf,
    #[arg(long, default_value = "mariadb-backup")]
    mariadb_backup: PathBuf,
    #[arg(long, default_value = "mbstream")]
    mbstream: PathBuf,
    /// Port of the scratch server a restore is validated on (127.0.0.1 only).
    #[arg(long, default_value_t = 3307)]
    scratch_port: u16,
    /// Size of one stored chunk, MiB.
    #[arg(long, default_value_t = 64)]
    chunk_mib: usize,
    /// Seconds a restored backup may take to catch up through replication.
    #[arg(long, default_value_t = 1800)]
    catch_up_timeout: u64,
    /// S3 endpoint override (AWS_ENDPOINT_URL is honoured without it).
    #[arg(long)]
    endpoint: Option<String>,
}

impl BackupArgs {
    fn tools(&self) -> strata_agent::backup::mariadb::Tools {
        strata_agent::backup::mariadb::Tools {
            mariadbd: self.mariadbd.clone(),
            mariadb_backup: self.mariadb_backup.clone(),
            mbstream: self.mbstream.clone(),
        }
    }

    async fn store(
        &self,
        cfg: &NodeConfig,
    ) -> anyhow::Result<strata_agent::backup::store::BackupStore> {
        let b = cfg.backup.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "this node's config has no `backup` section (strata_cluster.backup_policy)"
            )
        })?;
        Ok(strata_agent::backup::store::BackupStore::connect(b, self.endpoint.as_deref()).await)
    }
}

impl Common {
    fn load(&self) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        Ok(NodeConfig::from_json(&text)?)
    }

    fn local(&self, cfg: &NodeConfig) -> anyhow::Result<LocalTarget> {
        let password = match &self.admin_password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => None,
        };
        let socket = match (&self.socket, self.port) {
            (Some(s), _) => Some(s.clone()),
            // An explicit port means TCP even when the config names a socket.
            (None, Some(_)) => None,
            (None, None) => cfg.local.socket.clone(),
        };
        Ok(LocalTarget {
            socket,
            host: self.host.clone(),
            port: self.port.unwrap_or(cfg.local.port),
            user: self.admin_user.clone(),
            password,
        })
    }

    fn creds(&self) -> Credentials {
        fn pick(file: &Option<PathBuf>, env: &Option<String>) -> Arc<dyn CredentialSource> {
            match (file, env) {
                (Some(path), _) => Arc::new(FileCredentialSource { path: path.clone() }),
                (None, Some(var)) => Arc::new(EnvCredentialSource { var: var.clone() }),
                (None, None) => Arc::new(SsmCredentialSource),
            }
        }
        Credentials {
            replication: pick(&self.credential_file, &self.credential_env),
            admin: pick(&self.admin_credential_file, &self.admin_credential_env),
        }
    }

    fn options(&self, cfg: &NodeConfig) -> anyhow::Result<BootstrapOptions> {
        let mut o = BootstrapOptions::new(self.local(cfg)?);
        o.connect_timeout = Duration::from_secs(self.connect_timeout);
        o.restart_command = self
            .restart_command
            .as_ref()
            .map(|c| c.split_whitespace().map(str::to_string).collect());
        Ok(o)
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Bootstrap(c) => {
            let cfg = c.load()?;
            let report = bootstrap(&cfg, &c.creds(), &c.options(&cfg)?).await?;
            print_json(&report)?;
        }
        Cmd::Status(c) => {
            let cfg = c.load()?;
            let creds = c.creds();
            let st = status(
                &cfg,
                &c.local(&cfg)?,
                Some(&creds),
                Duration::from_secs(c.connect_timeout),
            )
            .await?;
            if cfg.failover.is_some() {
                let fo = strata_agent::failover::status(&cfg).await;
                let mut v = serde_json::to_value(&st)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("failover".into(), serde_json::to_value(&fo)?);
                }
                print_json(&v)?;
            } else {
                print_json(&st)?;
            }
        }
        Cmd::Switchover {
            common: c,
            to,
            wait,
        } => {
            let cfg = c.load()?;
            let started = std::time::Instant::now();
            let lease =
                strata_agent::failover::request_switchover(&cfg, &to, Duration::from_secs(wait))
                    .await
                    .map_err(|e| anyhow::anyhow!("switchover: {e}"))?;
            print_json(&serde_json::json!({
                "source": lease.holder.node_id,
                "epoch": lease.epoch,
                "last_failover": lease.last_failover,
                "waited_ms": started.elapsed().as_millis() as u64,
            }))?;
        }
        Cmd::Roll {
            common: c,
            set,
            nodes,
            node_timeout,
            max_lag_seconds,
        } => {
            let cfg = c.load()?;
            let f = cfg
                .failover
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("roll: this node has no failover config"))?;
            let mut settings = std::collections::BTreeMap::new();
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--set {kv:?}: use NAME=VALUE"))?;
                strata_topology::roll::check_engine_setting(k, v)
                    .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
                settings.insert(k.to_string(), v.to_string());
            }
            let store = strata_agent::failover::store::LeaseStore::connect(
                &f.lease,
                Duration::from_secs(5),
                None,
            )
            .await;
            let o = strata_agent::failover::roll::RollOptions {
                node_timeout: Duration::from_secs(node_timeout),
                switchover_wait: Duration::from_secs(60),
                fresh_ms: (f.timing.lease_ms * 2).max(3_000),
                max_lag_seconds,
                poll: Duration::from_millis(f.timing.heartbeat_ms.clamp(50, 1_000)),
            };
            let report = strata_agent::failover::roll::roll_settings(&store, &settings, nodes, &o)
                .await
                .map_err(|e| anyhow::anyhow!("roll: {e}"))?;
            print_json(&report)?;
        }
        Cmd::Run {
            common: c,
            interval,
            instance_id,
            no_node_tags,
            backup_node,
            backup,
        } => {
            let tagger = Tagger {
                enabled: !no_node_tags,
                instance_id,
                last: None,
            };
            let is_backup_node = backup_node || c.load().is_ok_and(|cfg| cfg.role == Role::Backup);
            let backups = is_backup_node
                .then(|| tokio::spawn(backup_loop(c.clone(), backup.clone(), interval)));
            run(c, interval, tagger, backup).await;
            if let Some(b) = backups {
                b.abort();
            }
        }
        Cmd::Backup {
            common: c,
            backup: b,
            if_due,
            now,
            wait,
        } => {
            use strata_agent::backup as bk;
            if now {
                let report = request_cycle(&b.work_dir, Duration::from_secs(wait)).await?;
                print_json(&report)?;
                if report.get("error").is_some_and(|e| !e.is_null()) {
                    anyhow::bail!("the backup cycle failed");
                }
                return Ok(());
            }
            let cfg = c.load()?;
            let store = b.store(&cfg).await?;
            if if_due {
                let last = store.last_validated_ms().await?;
                let now = strata_agent::failover::wall_ms();
                let policy = &cfg.backup.as_ref().map(|b| b.policy.clone());
                if !policy.as_ref().is_some_and(|p| p.due(last, now)) {
                    print_json(&serde_json::json!({"due": false}))?;
                    return Ok(());
                }
            }
            let o = cycle_options(&c, &b, &cfg).await?;
            let started = std::time::Instant::now();
            let mut report = bk::run_cycle(&cfg, &store, &o).await?;
            report
                .timings_ms
                .insert("total".into(), started.elapsed().as_millis() as u64);
            print_json(&report)?;
        }
        Cmd::Restore {
            common: c,
            backup: b,
            backup_id,
            target_dir,
        } => {
            let cfg = c.load()?;
            let store = b.store(&cfg).await?;
            let id = match backup_id {
                Some(id) => id,
                None => store
                    .list()
                    .await?
                    .into_iter()
                    .rev()
                    .find(|(_, t)| t.validation.is_validated())
                    .map(|(id, _)| id)
                    .ok_or_else(|| anyhow::anyhow!("restore: no validated backup"))?,
            };
            let m = store.manifest(&id).await?;
            let started = std::time::Instant::now();
            strata_agent::backup::restore_into(&store, &m, &b.tools(), &target_dir)
                .await
                .map_err(|e| anyhow::anyhow!("restore of {id}: {e}"))?;
            print_json(&serde_json::json!({
                "backup_id": m.backup_id,
                "gtid": m.gtid,
                "time": m.time,
                "datadir": target_dir.join("data"),
                "bytes": m.total_bytes(),
                "restore_ms": started.elapsed().as_millis() as u64,
                "table_checksums": m.table_checksums,
            }))?;
        }
        Cmd::RenderServerConfig { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let cfg = NodeConfig::from_json(&text)?;
            print!("{}", render_server_config(&cfg));
        }
    }
    Ok(())
}

/// Writes the node's state tags on its own instance, once per change. Failures are logged
/// and retried at the next change of state: tags never stop the agent.
struct Tagger {
    enabled: bool,
    instance_id: Option<String>,
    last: Option<(NodeState, String)>,
}

impl Tagger {
    async fn set(&mut self, region: Option<&str>, state: NodeState, error: Option<&str>) {
        if !self.enabled {
            return;
        }
        let key = (state, error.unwrap_or_default().to_string());
        if self.last.as_ref() == Some(&key) {
            return;
        }
        let done = tokio::time::timeout(Duration::from_secs(30), async {
            let instance = match &self.instance_id {
                Some(i) => i.clone(),
                None => strata_agent::storage::discover::own_instance_id()
                    .await
                    .map_err(|e| e.to_string())?,
            };
            self.instance_id = Some(instance.clone());
            let region = match region {
                Some(r) => r.to_string(),
                None => node_state::own_region().await.map_err(|e| e.to_string())?,
            };
            let ec2 = node_state::ec2_client(&region, None).await;
            node_state::tag_node_state(&ec2, &instance, state, error)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(instance)
        })
        .await;
        match done {
            Ok(Ok(instance)) => {
                tracing::info!(%instance, state = %state, "tagged the instance");
                self.last = Some(key);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, state = %state, "could not tag the instance"),
            Err(_) => tracing::warn!(state = %state, "tagging the instance timed out"),
        }
    }
}

/// `strata-agent run`. Never returns an error: a node whose config or server is wrong keeps
/// its agent running (tagged `failed`), so `status` and a fixed config work without a reboot.
async fn run(c: Common, interval: u64, mut tagger: Tagger, b: BackupArgs) {
    let every = Duration::from_secs(interval.max(1));
    // The config and the local admin password are read once; an unreadable one is a failed
    // node until it is fixed.
    let (cfg, opts) = loop {
        match c.load().and_then(|cfg| Ok((c.options(&cfg)?, cfg))) {
            Ok((opts, cfg)) => break (cfg, opts),
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "cannot start: fix the node config");
                tagger.set(None, NodeState::Failed, Some(&reason)).await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tokio::signal::ctrl_c() => return,
                }
            }
        }
    };
    let creds = c.creds();
    if cfg.restore.is_some() && cfg.role == Role::Source {
        // A cluster made from a backup: the data goes in before the source takes writes (no
        // first lease, no ready tag until it is in and checked).
        if !restore_first(&b, &cfg, &creds, &opts, every, &mut tagger).await {
            return;
        }
    }
    let autoscaler = tokio::spawn(storage_autoscaling(cfg.clone(), interval));
    if cfg.failover.is_some() {
        // The lease decides the role: the failover controller runs the bootstrap rounds.
        let instance_id = if tagger.enabled {
            match &tagger.instance_id {
                Some(i) => Some(i.clone()),
                None => strata_agent::storage::discover::own_instance_id()
                    .await
                    .ok(),
            }
        } else {
            None
        };
        strata_agent::failover::run(strata_agent::failover::Params {
            cfg,
            creds,
            opts,
            instance_id,
            tags: tagger.enabled,
            bootstrap_every: every,
        })
        .await;
        autoscaler.abort();
        return;
    }
    let first_retry = Duration::from_secs(2);
    let mut backoff = first_retry;
    loop {
        if strata_agent::backup::replica_held() {
            // A backup cycle holds this replica's SQL thread: bootstrap would restart it.
            tokio::select! {
                _ = tokio::time::sleep(first_retry) => continue,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let wait = match bootstrap(&cfg, &creds, &opts).await {
            Ok(r) => {
                if r.changes() > 0 {
                    let report = serde_json::to_string(&r).unwrap_or_default();
                    tracing::info!(changes = r.changes(), %report, "bootstrap changed the node");
                } else {
                    tracing::debug!("node in shape");
                }
                tagger.set(Some(&cfg.region), NodeState::Ready, None).await;
                backoff = first_retry;
                every
            }
            Err(e) => match node_state::classify(&e) {
                Fault::Permanent => {
                    tracing::error!(error = %e, "bootstrap failed; a retry will not fix this");
                    tagger
                        .set(Some(&cfg.region), NodeState::Failed, Some(&e.to_string()))
                        .await;
                    backoff = first_retry;
                    every
                }
                // The node keeps its role whatever fails: a replica waits for its source,
                // it never starts taking writes on its own.
                Fault::Transient => {
                    let wait = backoff;
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "bootstrap failed; retrying");
                    backoff = (backoff * 2).min(every);
                    wait
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    autoscaler.abort();
}

/// Before a restoring source's first lease: the server configured as a source but kept
/// read-only, then the backup loaded and checked. Returns false when the agent is stopped.
async fn restore_first(
    b: &BackupArgs,
    cfg: &NodeConfig,
    creds: &strata_agent::credential::Credentials,
    opts: &BootstrapOptions,
    every: Duration,
    tagger: &mut Tagger,
) -> bool {
    use strata_agent::backup::restore;
    let Some(r) = cfg.restore.clone() else {
        return true;
    };
    if let Some(done) = restore::finished(&b.work_dir, &r.backup_id) {
        tracing::info!(backup = %done.backup_id, "restored earlier");
        return true;
    }
    let mut held = opts.clone();
    held.hold_read_only = true;
    let mut backoff = Duration::from_secs(2);
    loop {
        let attempt = async {
            bootstrap(cfg, creds, &held)
                .await
                .map_err(|e| restore::RestoreError::Transient(format!("bootstrap: {e}")))?;
            let mut conn = strata_agent::sql::connect_local(&held.local, held.connect_timeout)
                .await
                .map_err(restore::RestoreError::Transient)?;
            // Nothing but the restore writes until it is done and checked.
            strata_agent::sql::exec(&mut conn, "SET GLOBAL read_only = ON", "read-only")
                .await
                .map_err(|e| restore::RestoreError::Transient(e.to_string()))?;
            drop(conn);
            let store = strata_agent::backup::store::BackupStore::connect(
                &r.store_config(),
                b.endpoint.as_deref(),
            )
            .await;
            let o = restore::RestoreOptions {
                local: held.local.clone(),
                connect_timeout: held.connect_timeout,
                work_dir: b.work_dir.clone(),
                tools: b.tools(),
                dump: "mariadb-dump".into(),
                client: "mariadb".into(),
                scratch_port: b.scratch_port,
                scratch_server_id: 4_000_000_000u32.saturating_add(cfg.server_id % 1_000_000),
            };
            restore::restore_source(cfg, &store, &o).await
        };
        match attempt.await {
            Ok(report) => {
                tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "restored the backup");
                return true;
            }
            Err(e) => {
                let wait = if e.is_permanent() {
                    tracing::error!(error = %e, "restore failed; a retry will not fix this");
                    tagger
                        .set(Some(&cfg.region), NodeState::Failed, Some(&e.to_string()))
                        .await;
                    every
                } else {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "restore failed; retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(every);
                    w
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tokio::signal::ctrl_c() => return false,
                }
            }
        }
    }
}

/// Where `backup --now` leaves its request and the agent its answer.
fn request_path(work_dir: &std::path::Path) -> PathBuf {
    work_dir.join("cycle-request")
}
fn answer_path(work_dir: &std::path::Path) -> PathBuf {
    work_dir.join("cycle-answer.json")
}

/// `backup --now`: writes a request id for the running agent and waits for its answer.
async fn request_cycle(
    work_dir: &std::path::Path,
    wait: Duration,
) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(work_dir)?;
    let id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    std::fs::write(request_path(work_dir), &id)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Ok(text) = std::fs::read_to_string(answer_path(work_dir))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && v.get("request").and_then(|r| r.as_str()) == Some(id.as_str())
        {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "no answer from the agent within {}s (is `strata-agent run` running on the backup node, with --work-dir {}?)",
                wait.as_secs(),
                work_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Backups for the backup node (`run` with role `backup`, or `--backup-node`): a validated
/// cycle whenever the policy says one is due (checked every `interval`), or at once when
/// `backup --now` asks. A failed cycle is logged and retried at the next check; it never
/// disturbs the node's role.
async fn backup_loop(c: Common, b: BackupArgs, interval: u64) {
    let every = Duration::from_secs(interval.max(1));
    let mut last_check: Option<std::time::Instant> = None;
    loop {
        let request = std::fs::read_to_string(request_path(&b.work_dir)).ok();
        if let Some(id) = request {
            let _ = std::fs::remove_file(request_path(&b.work_dir));
            let started = std::time::Instant::now();
            let answer = match backup_now(&c, &b).await {
                Ok(mut report) => {
                    report
                        .timings_ms
                        .insert("total".into(), started.elapsed().as_millis() as u64);
                    serde_json::json!({"request": id.trim(), "report": report, "error": null})
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "requested backup cycle failed");
                    serde_json::json!({"request": id.trim(), "report": null, "error": format!("{e:#}")})
                }
            };
            let tmp = b.work_dir.join("cycle-answer.json.tmp");
            if let Err(e) = std::fs::write(&tmp, answer.to_string())
                .and_then(|()| std::fs::rename(&tmp, answer_path(&b.work_dir)))
            {
                tracing::warn!(error = %e, "could not write the cycle's answer");
            }
        } else if last_check.is_none_or(|t| t.elapsed() >= every) {
            last_check = Some(std::time::Instant::now());
            if let Err(e) = backup_if_due(&c, &b).await {
                tracing::warn!(error = %format!("{e:#}"), "backup cycle failed; the next check retries");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The node config with `source` set to where the source is now: the lease holder when the
/// cluster fails over (the configured source is only a first hint), else the configured one.
async fn config_now(c: &Common) -> anyhow::Result<NodeConfig> {
    let mut cfg = c.load()?;
    if let Some(f) = &cfg.failover {
        let store = strata_agent::failover::store::LeaseStore::connect(
            &f.lease,
            Duration::from_secs(5),
            None,
        )
        .await;
        if let Some((l, _)) = store
            .read_lease()
            .await
            .map_err(|e| anyhow::anyhow!("reading the lease: {e}"))?
        {
            cfg.source = Some(strata_topology::SourceEndpoint {
                host: l.holder.host.clone(),
                port: l.holder.port,
            });
        }
    }
    Ok(cfg)
}

/// Whether the local replica replicates and is caught up: a cycle holds it, so it starts
/// only from a replica in shape (the first one soon after the node caught up).
async fn replica_in_shape(c: &Common, cfg: &NodeConfig) -> anyhow::Result<bool> {
    let mut conn =
        strata_agent::sql::connect_local(&c.local(cfg)?, Duration::from_secs(c.connect_timeout))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = strata_agent::sql::rows(&mut conn, "SHOW SLAVE STATUS", "replica status").await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let get = |k: &str| row.get(k).cloned().flatten().unwrap_or_default();
    Ok(get("Slave_IO_Running") == "Yes"
        && get("Slave_SQL_Running") == "Yes"
        && get("Seconds_Behind_Master") == "0")
}

async fn backup_now(
    c: &Common,
    b: &BackupArgs,
) -> anyhow::Result<strata_agent::backup::CycleReport> {
    let cfg = config_now(c).await?;
    let store = b.store(&cfg).await?;
    Ok(strata_agent::backup::run_cycle(&cfg, &store, &cycle_options(c, b, &cfg).await?).await?)
}

async fn backup_if_due(c: &Common, b: &BackupArgs) -> anyhow::Result<()> {
    let cfg = config_now(c).await?;
    let Some(policy) = cfg.backup.as_ref().map(|b| b.policy.clone()) else {
        return Ok(());
    };
    if !replica_in_shape(c, &cfg).await? {
        tracing::debug!("backup: the replica is not caught up yet");
        return Ok(());
    }
    let store = b.store(&cfg).await?;
    let last = store.last_validated_ms().await?;
    let now = strata_agent::failover::wall_ms();
    if !policy.due(last, now) {
        return Ok(());
    }
    let report =
        strata_agent::backup::run_cycle(&cfg, &store, &cycle_options(c, b, &cfg).await?).await?;
    tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "backup cycle done");
    Ok(())
}

async fn cycle_options(
    c: &Common,
    b: &BackupArgs,
    cfg: &NodeConfig,
) -> anyhow::Result<strata_agent::backup::CycleOptions> {
    let password = c.creds().replication_password(cfg).await?;
    Ok(strata_agent::backup::CycleOptions {
        local: c.local(cfg)?,
        connect_timeout: Duration::from_secs(c.connect_timeout),
        replication_password: password.expose().to_string(),
        work_dir: b.work_dir.clone(),
        tools: b.tools(),
        scratch_port: b.scratch_port,
        // Unique in the cluster: node ids are small, this range is never handed out.
        scratch_server_id: 4_000_000_000u32.saturating_add(cfg.server_id % 1_000_000),
        chunk_bytes: b.chunk_mib.max(1) * 1024 * 1024,
        catch_up_timeout: Duration::from_secs(b.catch_up_timeout),
    })
}

/// Storage autoscaling for `run`: waits until Terraform has attached a storage segment (found
/// by this instance's id; bounds from its `strata:autoscale` tag), then runs the autoscaler on
/// the data mount. Failures are logged and retried: storage growth must never stop bootstrap.
async fn storage_autoscaling(cfg: NodeConfig, interval: u64) {
    use strata_agent::storage::{
        AutoscaleConfig, AutoscaleStatus, Ec2Client, LinuxBlockStorage, SystemClock, discover,
        run_autoscaler,
    };
    let every = Duration::from_secs(interval.max(1));
    loop {
        let found = async {
            let instance = discover::own_instance_id().await?;
            let ec2 = Ec2Client::connect(&cfg.region, None, &cfg.cluster_id).await;
            let segments = discover::segments_of(ec2.client(), &instance).await?;
            Ok::<_, discover::DiscoverError>(segments.map(|s| (ec2, s)))
        }
        .await;
        match found {
            Ok(Some((ec2, (volume_ids, bounds)))) => {
                let mount = std::path::PathBuf::from(&cfg.storage.mount_point);
                let storage = match LinuxBlockStorage::detect(&mount).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, mount = %mount.display(), "data filesystem not ready; retrying");
                        tokio::time::sleep(every).await;
                        continue;
                    }
                };
                tracing::info!(?volume_ids, "storage autoscaling started");
                let (tx, _rx) = tokio::sync::watch::channel(AutoscaleStatus::default());
                let ac = AutoscaleConfig {
                    data_mount: mount,
                    volume_ids,
                    bounds,
                    region: cfg.region.clone(),
                    endpoint: None,
                    cluster_id: cfg.cluster_id.clone(),
                    interval: every,
                };
                if let Err(e) = run_autoscaler(ac, ec2, storage, SystemClock, tx).await {
                    tracing::warn!(error = %e, "storage autoscaling stopped; restarting");
                }
            }
            Ok(None) => tracing::debug!("no storage segment attached yet"),
            Err(e) => tracing::warn!(error = %e, "storage segments not found; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}
