use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use strata_nodehost::daemon;

/// Boots LocalStack's EC2 instances as real Debian 12 nodes on this machine.
#[derive(Parser)]
#[command(name = "strata-nodehost", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the node host in the foreground until SIGTERM/SIGINT.
    Run {
        #[arg(long, default_value = "http://127.0.0.1:4566")]
        endpoint: String,
        /// Regions to poll (repeat).
        #[arg(long = "region", required = true)]
        regions: Vec<String>,
        /// Only instances tagged strata:cluster=<one of these> become nodes (repeat).
        #[arg(long = "cluster", required = true)]
        clusters: Vec<String>,
        #[arg(long)]
        state_dir: PathBuf,
        /// The node image's root (scripts/node-image prints it).
        #[arg(long)]
        image: PathBuf,
        /// Name of the router network namespace.
        #[arg(long, default_value = strata_nodehost::DEFAULT_ROUTER_NETNS)]
        router_netns: String,
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        #[arg(long, default_value_t = 60)]
        stop_grace_secs: u64,
    },
    /// Runs a command inside a booted node; exits with its status.
    Exec {
        #[arg(long)]
        state_dir: PathBuf,
        instance_id: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Prints the nodes of a state folder as JSON.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Stops the daemon and every node, removes every namespace, veth, bridge and mount.
    Down {
        #[arg(long)]
        state_dir: PathBuf,
        /// Also delete the nodes' root volumes.
        #[arg(long)]
        purge: bool,
        #[arg(long, default_value_t = 60)]
        stop_grace_secs: u64,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Plain text in log files (scripts/nodehost writes one), colours on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match cli.cmd {
        Cmd::Run {
            endpoint,
            regions,
            clusters,
            state_dir,
            image,
            router_netns,
            poll_ms,
            stop_grace_secs,
        } => rt.block_on(daemon::run(daemon::Config {
            endpoint,
            regions,
            clusters,
            state_dir,
            image,
            router_netns,
            poll: Duration::from_millis(poll_ms),
            stop_grace: Duration::from_secs(stop_grace_secs),
        }))?,
        Cmd::Exec {
            state_dir,
            instance_id,
            cmd,
        } => {
            let code = daemon::exec(&state_dir, &instance_id, &cmd)?;
            std::process::exit(code);
        }
        Cmd::Status { state_dir } => {
            let nodes = daemon::status(&state_dir)?;
            println!("{}", serde_json::to_string_pretty(&nodes)?);
        }
        Cmd::Down {
            state_dir,
            purge,
            stop_grace_secs,
        } => rt.block_on(daemon::down(
            &state_dir,
            purge,
            Duration::from_secs(stop_grace_secs),
        ))?,
    }
    Ok(())
}
