//! The cluster as a whole: checks that only make sense across nodes (one source, unique
//! `server_id`s, replicas pointing at the source's engine and mode).

use crate::{ConfigError, NodeConfig, Role};
use std::collections::BTreeMap;

/// All nodes of one cluster, as the provider is about to launch them.
#[derive(Debug, Clone, Default)]
pub struct ClusterShape {
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("cluster has {0} source nodes; it needs exactly one")]
    SourceCount(usize),
    #[error("server_id {server_id} is used by both {first} and {second}")]
    DuplicateServerId {
        server_id: u32,
        first: String,
        second: String,
    },
    #[error("node {node} belongs to cluster {found}, not {expected}")]
    ForeignNode {
        node: String,
        found: String,
        expected: String,
    },
    #[error("node {node} differs from the source in `{field}`")]
    Mismatch { node: String, field: &'static str },
    #[error("node {node}: {error}")]
    Node { node: String, error: ConfigError },
}

impl ClusterShape {
    pub fn validate(&self) -> Result<(), ShapeError> {
        for n in &self.nodes {
            n.validate().map_err(|error| ShapeError::Node {
                node: n.node_name.clone(),
                error,
            })?;
        }
        let sources: Vec<&NodeConfig> = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Source)
            .collect();
        let [source] = sources.as_slice() else {
            return Err(ShapeError::SourceCount(sources.len()));
        };
        let mut ids: BTreeMap<u32, &str> = BTreeMap::new();
        for n in &self.nodes {
            if n.cluster_id != source.cluster_id {
                return Err(ShapeError::ForeignNode {
                    node: n.node_name.clone(),
                    found: n.cluster_id.clone(),
                    expected: source.cluster_id.clone(),
                });
            }
            if n.engine != source.engine || n.engine_version != source.engine_version {
                return Err(ShapeError::Mismatch {
                    node: n.node_name.clone(),
                    field: "engine",
                });
            }
            if n.replication.mode != source.replication.mode {
                return Err(ShapeError::Mismatch {
                    node: n.node_name.clone(),
                    field: "replication.mode",
                });
            }
            if let Some(first) = ids.insert(n.server_id, &n.node_name) {
                return Err(ShapeError::DuplicateServerId {
                    server_id: n.server_id,
                    first: first.to_string(),
                    second: n.node_name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The lowest server_id not yet used, for the next node the provider adds.
    pub fn next_server_id(&self) -> u32 {
        let used: std::collections::BTreeSet<u32> =
            self.nodes.iter().map(|n| n.server_id).collect();
        (1..=u32::MAX)
            .find(|id| !used.contains(id))
            .unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sample_replica;

    fn shape() -> ClusterShape {
        let mut source = sample_replica();
        source.role = Role::Source;
        source.source = None;
        source.server_id = 1;
        source.node_name = "src".into();
        let r1 = sample_replica();
        let mut r2 = sample_replica();
        r2.server_id = 3;
        r2.node_name = "r2".into();
        ClusterShape {
            nodes: vec![source, r1, r2],
        }
    }

    #[test]
    fn valid_shape_passes_and_finds_next_id() {
        let s = shape();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.next_server_id(), 4);
    }

    #[test]
    fn duplicate_ids_and_source_count_are_caught() {
        let mut s = shape();
        s.nodes[2].server_id = 2;
        assert!(matches!(
            s.validate(),
            Err(ShapeError::DuplicateServerId { server_id: 2, .. })
        ));
        let mut s = shape();
        s.nodes.remove(0);
        assert_eq!(s.validate(), Err(ShapeError::SourceCount(0)));
    }
}
