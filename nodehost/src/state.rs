//! What the node host made, recorded in its state folder before it is made, so `down` (or a
//! restarted daemon) removes exactly that and nothing else.
//!
//! Layout: `<state>/nodehost.pid`, `<state>/router.json`, `<state>/nodes/<instance-id>/`
//! holding `node.json`, the overlay's `upper/` and `work/` (the node's "root volume"), the
//! mount point `root/` and `console.log`.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The router namespace and what was made inside it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouterRecord {
    pub netns: String,
    /// VPC id -> bridge name (inside the router namespace).
    pub bridges: BTreeMap<String, String>,
    /// Gateway "address/prefix" -> bridge it sits on.
    pub gateways: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Booting,
    Running,
    Stopped,
}

/// One node: the instance it stands for and everything made for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub instance_id: String,
    pub cluster: String,
    pub region: String,
    pub availability_zone: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub private_ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub hostname: String,
    pub state: NodeState,
    /// Network namespace name (under /run/netns) once made.
    pub netns: Option<String>,
    /// The veth end inside the router namespace.
    pub router_veth: Option<String>,
    /// The overlay mount point once mounted.
    pub mount: Option<PathBuf>,
    pub nspawn_pid: Option<i32>,
    /// PID (host view) of the container's PID 1.
    pub leader_pid: Option<i32>,
    /// Unix time at which the current boot started.
    pub booted_at: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("nodes"))
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let root = std::fs::canonicalize(&root)
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        Ok(StateDir { root })
    }

    /// An existing state folder, without creating it: `None` when there is none.
    pub fn open(root: impl Into<PathBuf>) -> Result<Option<Self>> {
        let root = root.into();
        if !root.join("nodes").is_dir() {
            return Ok(None);
        }
        Self::new(root).map(Some)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("nodehost.pid")
    }

    pub fn node_dir(&self, instance_id: &str) -> PathBuf {
        self.root.join("nodes").join(instance_id)
    }

    pub fn router(&self) -> Result<Option<RouterRecord>> {
        read_json(&self.root.join("router.json"))
    }

    pub fn write_router(&self, rec: &RouterRecord) -> Result<()> {
        write_json(&self.root.join("router.json"), rec)
    }

    pub fn remove_router(&self) -> Result<()> {
        remove_file(&self.root.join("router.json"))
    }

    pub fn node(&self, instance_id: &str) -> Result<Option<NodeRecord>> {
        read_json(&self.node_dir(instance_id).join("node.json"))
    }

    pub fn write_node(&self, rec: &NodeRecord) -> Result<()> {
        let dir = self.node_dir(&rec.instance_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        write_json(&dir.join("node.json"), rec)
    }

    /// Every node record, in instance-id order.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let dir = self.root.join("nodes");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            if let Some(name) = entry.file_name().to_str()
                && let Some(rec) = self.node(name)?
            {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(out)
    }

    /// Deletes a node's folder (its root volume included). The overlay must be unmounted.
    pub fn remove_node(&self, instance_id: &str) -> Result<()> {
        let dir = self.node_dir(instance_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Record {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Write to a temporary file and rename, so a crash never leaves half a record.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Record {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_records_round_trip_and_list() {
        let dir = std::env::temp_dir().join(format!("nodehost-state-{}", std::process::id()));
        let st = StateDir::new(&dir).unwrap();
        let rec = NodeRecord {
            instance_id: "i-0123".into(),
            cluster: "c".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            private_ip: Ipv4Addr::new(10, 0, 1, 5),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            hostname: "ip-10-0-1-5".into(),
            state: NodeState::Running,
            netns: Some("strata-i-0123".into()),
            router_veth: None,
            mount: None,
            nspawn_pid: Some(42),
            leader_pid: None,
            booted_at: Some(1.5),
        };
        st.write_node(&rec).unwrap();
        assert_eq!(st.node("i-0123").unwrap(), Some(rec.clone()));
        assert_eq!(st.nodes().unwrap(), vec![rec]);
        st.remove_node("i-0123").unwrap();
        assert!(st.nodes().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
