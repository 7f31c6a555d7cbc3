//! The `strata-agent` command line.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use strata_agent::credential::{
    CredentialSource, EnvCredentialSource, FileCredentialSource, SsmCredentialSource,
};
use strata_agent::sql::LocalTarget;
use strata_agent::{BootstrapOptions, bootstrap, render_server_config, status};
use strata_topology::{AGENT_CONFIG_PATH, NodeConfig};

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
    /// Bootstrap, then keep the node in shape (re-checks every --interval seconds).
    Run {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 60)]
        interval: u64,
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
    /// Command that restarts the local server when its config file changed,
    /// e.g. "systemctl restart mariadb" (split on whitespace).
    #[arg(long)]
    restart_command: Option<String>,
    /// Seconds to wait for a server to answer.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
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

    fn creds(&self) -> Box<dyn CredentialSource> {
        match (&self.credential_file, &self.credential_env) {
            (Some(path), _) => Box::new(FileCredentialSource { path: path.clone() }),
            (None, Some(var)) => Box::new(EnvCredentialSource { var: var.clone() }),
            (None, None) => Box::new(SsmCredentialSource),
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
            let report = bootstrap(&cfg, c.creds().as_ref(), &c.options(&cfg)?).await?;
            print_json(&report)?;
        }
        Cmd::Status(c) => {
            let cfg = c.load()?;
            let creds = c.creds();
            let st = status(
                &cfg,
                &c.local(&cfg)?,
                Some(creds.as_ref()),
                Duration::from_secs(c.connect_timeout),
            )
            .await?;
            print_json(&st)?;
        }
        Cmd::Run {
            common: c,
            interval,
        } => {
            let cfg = c.load()?;
            let creds = c.creds();
            let opts = c.options(&cfg)?;
            let autoscaler = tokio::spawn(storage_autoscaling(cfg.clone(), interval));
            let mut tick = tokio::time::interval(Duration::from_secs(interval.max(1)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
                // A failed round is logged and retried: the source may simply not be up yet.
                match bootstrap(&cfg, creds.as_ref(), &opts).await {
                    Ok(r) if r.changes() > 0 => {
                        tracing::info!(changes = r.changes(), report = %serde_json::to_string(&r)?, "bootstrap changed the node");
                    }
                    Ok(_) => tracing::debug!("node in shape"),
                    Err(e) => tracing::warn!(error = %e, "bootstrap failed; retrying"),
                }
            }
            autoscaler.abort();
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
