//! One node's root (an overlay over the image, like an EBS root made from an AMI) and its
//! systemd-nspawn container.
use crate::cmd::{run, run_tolerating};
use crate::state::NodeRecord;
use crate::{Error, Result, node_aws_endpoint};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Is `path` a mount point right now (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mount(m) == want)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mounts the node's copy-on-write root: the image below, the node's own upper layer above.
pub async fn mount_root(image: &Path, node_dir: &Path) -> Result<PathBuf> {
    let upper = node_dir.join("upper");
    let work = node_dir.join("work");
    let root = node_dir.join("root");
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    if !is_mounted(&root) {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.display(),
            upper.display(),
            work.display()
        );
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &opts,
                &root.to_string_lossy(),
            ],
        )
        .await?;
    }
    Ok(root)
}

pub async fn unmount_root(root: &Path) -> Result<()> {
    for _ in 0..10 {
        if !is_mounted(root) {
            return Ok(());
        }
        run_tolerating("umount", &[&root.to_string_lossy()], &["not mounted"])
            .await
            .ok();
        if !is_mounted(root) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Something still holds it (a process we do not know): detach it rather than leave it.
    run("umount", &["-l", &root.to_string_lossy()]).await?;
    Ok(())
}

/// Writes the per-node files through the overlay (they land in the node's upper layer).
pub fn write_node_files(root: &Path, node: &NodeRecord) -> Result<()> {
    let endpoint = node_aws_endpoint();
    let write = |rel: &str, body: String| -> Result<()> {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&p, body).map_err(|e| Error::io(format!("writing {}", p.display()), e))
    };
    write("etc/hostname", format!("{}\n", node.hostname))?;
    let short = node.hostname.split('.').next().unwrap_or(&node.hostname);
    write(
        "etc/hosts",
        format!(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{} {} {}\n",
            node.private_ip, node.hostname, short
        ),
    )?;
    write("etc/environment", format!("AWS_ENDPOINT_URL={endpoint}\n"))?;
    write(
        "etc/systemd/system.conf.d/50-strata-aws-endpoint.conf",
        format!(
            "# Written by strata-nodehost: AWS calls from this node go to the forwarder to LocalStack.\n\
             [Manager]\nDefaultEnvironment=\"AWS_ENDPOINT_URL={endpoint}\"\n"
        ),
    )?;
    // A stable machine id per instance keeps the journal across stop/start.
    let digest = Sha256::digest(node.instance_id.as_bytes());
    write(
        "etc/machine-id",
        format!("{}\n", &hex::encode(digest)[..32]),
    )?;
    Ok(())
}

/// Starts `systemd-nspawn --boot` for the node; stdout/stderr (the node's console) go to
/// `console.log`. The child is in its own process group, so a Ctrl-C at the daemon's terminal
/// does not reach it: the daemon stops nodes itself, in order.
pub fn spawn_container(
    node: &NodeRecord,
    root: &Path,
    netns: &str,
    console_log: &Path,
) -> Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(console_log)
        .map_err(|e| Error::io(format!("opening {}", console_log.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("duplicating the console log", e))?;
    let netns_path = crate::net::netns_path(netns);
    let mut cmd = tokio::process::Command::new("systemd-nspawn");
    cmd.arg("--quiet")
        .arg("--boot")
        // There is no systemd on the host to register with (PID 1 is not systemd).
        .arg("--register=no")
        .arg("--keep-unit")
        .arg("--link-journal=no")
        .arg("--resolv-conf=off")
        .arg("--timezone=off")
        .arg("--console=read-only")
        .arg(format!("--machine={}", machine_name(&node.instance_id)))
        .arg(format!("--network-namespace-path={}", netns_path.display()))
        .arg("-D")
        .arg(root)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn().map_err(|e| {
        Error::io(
            "starting systemd-nspawn (apt-get install systemd-container)",
            e,
        )
    })
}

pub fn machine_name(instance_id: &str) -> String {
    format!("strata-{instance_id}")
}

/// Is `pid` a live (non-zombie) process?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Does `pid` run systemd-nspawn for this root? Guards against PID reuse before a kill.
pub fn is_our_nspawn(pid: i32, root: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let root = root.as_os_str().as_encoded_bytes();
    alive(pid)
        && args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"))
        && args.contains(&root)
}

/// Is `pid` in the node's network namespace (so a kill cannot hit a reused PID elsewhere)?
pub fn is_our_leader(pid: i32, netns: Option<&str>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(ns) = netns else { return false };
    let Ok(want) = std::fs::metadata(crate::net::netns_path(ns)) else {
        return false;
    };
    alive(pid)
        && std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| m.ino() == want.ino() && m.dev() == want.dev())
}

/// The container's PID 1 as the host sees it: a descendant of nspawn whose PID in its own
/// namespace is 1.
pub fn find_leader(nspawn_pid: i32) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .map(str::to_string)
        };
        let ppid = field("PPid:").and_then(|p| p.parse::<i32>().ok());
        let nspid_is_1 = field("NSpid:").is_some_and(|n| {
            let parts: Vec<&str> = n.split_whitespace().collect();
            parts.len() >= 2 && parts.last() == Some(&"1")
        });
        if nspid_is_1
            && ppid.is_some_and(|pp| pp == nspawn_pid || parent_of(pp) == Some(nspawn_pid))
        {
            return Some(pid);
        }
    }
    None
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Waits for the container's PID 1 to appear.
pub async fn wait_leader(nspawn_pid: i32, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(pid) = find_leader(nspawn_pid) {
            return Some(pid);
        }
        if !alive(nspawn_pid) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we checked belongs to this node.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Stops a node's container: SIGTERM to nspawn (it asks the node's systemd to power off), then
/// SIGKILL to PID 1 (which ends every process of the node) if it has not stopped in `grace`.
/// `child` is the nspawn process when this daemon started it (it is then reaped here).
pub async fn stop_container(
    node: &NodeRecord,
    root: &Path,
    child: Option<tokio::process::Child>,
    grace: Duration,
) {
    let nspawn = node.nspawn_pid.filter(|p| is_our_nspawn(*p, root));
    let netns = node.netns.as_deref();
    let leader = node.leader_pid.filter(|p| is_our_leader(*p, netns));
    if let Some(p) = nspawn {
        signal(p, libc::SIGTERM);
    } else if let Some(p) = leader {
        // nspawn is gone (say, a crashed daemon's node): ask systemd directly to power off.
        signal(p, libc::SIGRTMIN() + 4);
    }
    let gone = |nspawn: Option<i32>, leader: Option<i32>| {
        nspawn.is_none_or(|p| !alive(p)) && leader.is_none_or(|p| !alive(p))
    };
    let mut child = child;
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Some(c) = child.as_mut() {
            let _ = c.try_wait();
        }
        if gone(nspawn, leader) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !gone(nspawn, leader) {
        tracing::warn!(instance = %node.instance_id, "node did not power off in {grace:?}; killing it");
        if let Some(p) = leader.filter(|p| is_our_leader(*p, netns)) {
            signal(p, libc::SIGKILL);
        }
        if let Some(p) = nspawn.filter(|p| is_our_nspawn(*p, root)) {
            signal(p, libc::SIGKILL);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) && !gone(nspawn, leader) {
            if let Some(c) = child.as_mut() {
                let _ = c.try_wait();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(mut c) = child {
        let _ = c.try_wait();
    }
}
