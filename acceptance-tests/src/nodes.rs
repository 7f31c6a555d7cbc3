//! Booted nodes for acceptance tests and benches: runs `scripts/nodehost` (LocalStack instances
//! of the given clusters become systemd-nspawn nodes) with a state folder and a router namespace
//! of its own, so a test never sees another test's nodes, and talks SQL to the nodes from inside
//! that router namespace (the nodes' private IPs exist nowhere else).
//!
//! Everything it starts is stopped through `scripts/nodehost stop`, by PID file, in `Drop` too.

use crate::repo_root;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running `strata-nodehost` daemon for some clusters.
pub struct NodeHost {
    state: tempfile::TempDir,
    router: String,
    stopped: bool,
}

impl NodeHost {
    /// Builds the node image if needed and starts the daemon for `clusters` against LocalStack.
    pub fn start(clusters: &[&str]) -> Result<NodeHost> {
        let state = tempfile::Builder::new()
            .prefix("strata-nodehost-")
            .tempdir()
            .context("state folder")?;
        // Interface and namespace names are short in Linux; the PID keeps parallel test
        // processes apart.
        let router = format!("strata-t{}", std::process::id());
        let mut args = vec!["start".to_string()];
        for c in clusters {
            args.push("--cluster".into());
            args.push((*c).to_string());
        }
        args.push("--endpoint".into());
        args.push(crate::localstack_endpoint());
        args.push("--router-netns".into());
        args.push(router.clone());
        let host = NodeHost {
            state,
            router,
            stopped: false,
        };
        let out = host.script(&args)?;
        if !out.status.success() {
            bail!(
                "scripts/nodehost start failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(host)
    }

    fn script<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Output> {
        Command::new(repo_root().join("scripts/nodehost"))
            .args(args)
            .env("STRATA_NODEHOST_STATE", self.state.path())
            .output()
            .context("running scripts/nodehost")
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The router namespace: where the nodes' private IPs are reachable from.
    pub fn router_netns(&self) -> &str {
        &self.router
    }

    /// The nodes the daemon knows, as `strata-nodehost status` prints them.
    pub fn status(&self) -> Result<Vec<Value>> {
        let out = self.script(&["status"])?;
        if !out.status.success() {
            bail!(
                "scripts/nodehost status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "status is not JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        match v {
            Value::Array(a) => Ok(a),
            Value::Object(ref o) => Ok(o
                .get("nodes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()),
            other => Err(anyhow!("unexpected status: {other}")),
        }
    }

    /// Runs a command inside a booted node; returns its output whatever the exit status.
    pub fn exec(&self, instance_id: &str, cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["exec", instance_id, "--"];
        args.extend_from_slice(cmd);
        self.script(&args)
    }

    /// Like [`NodeHost::exec`], failing with both streams unless the command succeeded.
    pub fn exec_ok(&self, instance_id: &str, cmd: &[&str]) -> Result<String> {
        let out = self.exec(instance_id, cmd)?;
        if !out.status.success() {
            bail!(
                "`{}` on {instance_id} failed ({}):\n{}\n{}",
                cmd.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the daemon reports a node for each of `ids` in state `running`.
    pub fn wait_running(&self, ids: &[String], timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let st = self.status()?;
            let running = |id: &String| {
                st.iter().any(|n| {
                    n.get("instance_id").and_then(Value::as_str) == Some(id)
                        && n.get("state").and_then(Value::as_str) == Some("running")
                })
            };
            if ids.iter().all(running) {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                bail!("nodes {ids:?} not all running after {timeout:?}: {st:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs SQL as `user` against `host` (a node's private IP) from the router namespace, with
    /// the host's `mariadb` client; returns tab-separated rows. The password travels in the
    /// environment, not the command line.
    pub fn sql(&self, host: &str, user: &str, password: &str, sql: &str) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.router, "mariadb"])
            .args(["-h", host, "-P", "3306", "-u", user])
            .args(["-N", "-B", "--connect-timeout=5", "-e", sql])
            .env("MYSQL_PWD", password)
            .output()
            .context("running mariadb in the router namespace")?;
        if !out.status.success() {
            bail!(
                "SQL on {host} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the daemon and every node, and removes namespaces, bridges and mounts.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let out = self.script(&["stop", "--purge"])?;
        if !out.status.success() {
            bail!(
                "scripts/nodehost stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("nodehost: {e:#}");
        }
        // A failing test takes its state folder with it: keep the daemon's log, which holds
        // what happened to every node (boots, stops, forwarder and IMDS errors).
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join("strata-nodehost-logs");
            let to = keep.join(format!("{}.log", self.router));
            if std::fs::create_dir_all(&keep).is_ok()
                && std::fs::copy(self.state.path().join("nodehost.log"), &to).is_ok()
            {
                eprintln!("nodehost: its log is kept in {}", to.display());
            }
        }
    }
}

/// Network namespaces that exist now (`ip netns list`), names only.
pub fn netns_list() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The image folder `scripts/node-image` builds (or finds cached).
pub fn node_image() -> Result<PathBuf> {
    let out = Command::new(repo_root().join("scripts/node-image"))
        .output()
        .context("running scripts/node-image")?;
    if !out.status.success() {
        bail!(
            "scripts/node-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}
