//! What the agents report about failover, read from their instances' tags (DescribeInstances
//! alone): who the source is now, the last failover, each node's role and health. The
//! provider reports these as computed attributes and never plans to undo them.

use std::collections::BTreeMap;

use strata_topology::{
    TAG_CURRENT_ROLE, TAG_LAST_FAILOVER_AT, TAG_LAST_FAILOVER_DURATION_MS,
    TAG_LAST_FAILOVER_REASON, TAG_LEASE_EPOCH, TAG_NODE_STATE,
};

use super::config::RegionClients;
use super::error::AwsError;
use super::node::{self, NodeInfo};
use super::tags::TAG_ROLE;

/// The cluster's status as its home nodes' tags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The instance that is the source now.
    pub current_source: Option<String>,
    pub current_source_ip: Option<String>,
    /// `at`, `reason`, `duration_ms`, `node_id`; `None` when no failover was reported.
    pub last_failover: Option<BTreeMap<String, String>>,
    /// Instance id → current role (or launch role before the agent reports).
    pub roles: BTreeMap<String, String>,
    /// Instance id → reported node state (or the instance state when not running).
    pub health: BTreeMap<String, String>,
}

/// The launch role as the agent names roles (`strata:role` uses `region-replica`).
fn launch_role(n: &NodeInfo) -> String {
    match n.tags.get(TAG_ROLE).map(String::as_str) {
        Some("source") => "source".into(),
        Some("region-replica") => "region_replica".into(),
        Some(r) => r.into(),
        None => "unknown".into(),
    }
}

fn epoch(n: &NodeInfo) -> u64 {
    n.tags
        .get(TAG_LEASE_EPOCH)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0)
}

/// Pure: the status from the cluster's nodes (instances only, not volumes) and the instance
/// the cluster launched as its source. A node the agent reports as source wins; of two (a
/// report not yet corrected after fencing) the higher lease epoch wins; with no report, the
/// launched source.
pub fn status_from_nodes(nodes: &[NodeInfo], launched_source: &str) -> ClusterStatus {
    let mut st = ClusterStatus::default();
    for n in nodes {
        let running = n.state == "running";
        let role = n
            .tags
            .get(TAG_CURRENT_ROLE)
            .cloned()
            .unwrap_or_else(|| launch_role(n));
        st.roles.insert(n.instance_id.clone(), role);
        let health = if running {
            n.tags
                .get(TAG_NODE_STATE)
                .cloned()
                .unwrap_or_else(|| "unknown".into())
        } else {
            n.state.clone()
        };
        st.health.insert(n.instance_id.clone(), health);
    }
    let reported = nodes
        .iter()
        .filter(|n| n.state == "running")
        .filter(|n| n.tags.get(TAG_CURRENT_ROLE).map(String::as_str) == Some("source"))
        .max_by(|a, b| {
            epoch(a)
                .cmp(&epoch(b))
                .then(b.instance_id.cmp(&a.instance_id))
        });
    let current = reported.or_else(|| nodes.iter().find(|n| n.instance_id == launched_source));
    st.current_source = Some(
        current
            .map(|n| n.instance_id.clone())
            .unwrap_or_else(|| launched_source.to_string()),
    );
    st.current_source_ip = current.and_then(|n| n.private_ip.clone());
    st.last_failover = nodes
        .iter()
        .filter_map(|n| {
            let at = n.tags.get(TAG_LAST_FAILOVER_AT)?;
            let ms = strata_topology::failover::parse_tag_time(at).unwrap_or(0);
            Some((ms, at.clone(), n))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, at, n)| {
            let mut m = BTreeMap::from([
                ("at".to_string(), at),
                ("node_id".to_string(), n.instance_id.clone()),
            ]);
            if let Some(r) = n.tags.get(TAG_LAST_FAILOVER_REASON) {
                m.insert("reason".into(), r.clone());
            }
            if let Some(d) = n.tags.get(TAG_LAST_FAILOVER_DURATION_MS) {
                m.insert("duration_ms".into(), d.clone());
            }
            m
        });
    st
}

/// The home nodes of `cluster` (source and replicas) and their status.
pub async fn cluster_status(
    rc: &RegionClients,
    cluster: &str,
    launched_source: &str,
) -> Result<ClusterStatus, AwsError> {
    let nodes = node::find_cluster_nodes(rc, cluster, &["source", "replica"]).await?;
    Ok(status_from_nodes(&nodes, launched_source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: &str, tags: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            instance_id: id.into(),
            region: "us-east-1".into(),
            state: state.into(),
            private_ip: Some(format!("10.0.1.{}", id.len())),
            private_dns: None,
            subnet_id: None,
            vpc_id: None,
            availability_zone: None,
            instance_type: "t3.micro".into(),
            ami: None,
            security_group_ids: vec![],
            instance_profile_arn: None,
            http_tokens_required: true,
            root_volume_id: None,
            devices: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn before_any_report_the_launched_source_is_source() {
        let n = [
            node("i-a", "running", &[("strata:role", "source")]),
            node("i-b", "running", &[("strata:role", "replica")]),
        ];
        let s = status_from_nodes(&n, "i-a");
        assert_eq!(s.current_source.as_deref(), Some("i-a"));
        assert_eq!(s.roles["i-a"], "source");
        assert_eq!(s.roles["i-b"], "replica");
        assert_eq!(s.health["i-b"], "unknown");
        assert_eq!(s.last_failover, None);
    }

    #[test]
    fn after_a_failover_the_reported_source_and_its_record() {
        let n = [
            node(
                "i-a",
                "stopped",
                &[
                    ("strata:role", "source"),
                    ("strata:current-role", "source"),
                    ("strata:lease-epoch", "1"),
                ],
            ),
            node(
                "i-bb",
                "running",
                &[
                    ("strata:role", "replica"),
                    ("strata:current-role", "source"),
                    ("strata:lease-epoch", "2"),
                    ("strata:node-state", "ready"),
                    ("strata:last-failover-at", "2026-11-29T20:00:00Z"),
                    ("strata:last-failover-reason", "source-lost: lease expired"),
                    ("strata:last-failover-duration-ms", "6200"),
                ],
            ),
        ];
        let s = status_from_nodes(&n, "i-a");
        assert_eq!(s.current_source.as_deref(), Some("i-bb"));
        assert_eq!(s.current_source_ip.as_deref(), Some("10.0.1.4"));
        assert_eq!(s.health["i-a"], "stopped");
        assert_eq!(s.health["i-bb"], "ready");
        let f = s.last_failover.unwrap();
        assert_eq!(f["at"], "2026-11-29T20:00:00Z");
        assert_eq!(f["node_id"], "i-bb");
        assert_eq!(f["duration_ms"], "6200");
        assert_eq!(f["reason"], "source-lost: lease expired");
    }

    #[test]
    fn two_reported_sources_the_higher_epoch_wins() {
        let n = [
            node(
                "i-a",
                "running",
                &[
                    ("strata:current-role", "source"),
                    ("strata:lease-epoch", "3"),
                ],
            ),
            node(
                "i-b",
                "running",
                &[
                    ("strata:current-role", "source"),
                    ("strata:lease-epoch", "4"),
                ],
            ),
        ];
        assert_eq!(
            status_from_nodes(&n, "i-a").current_source.as_deref(),
            Some("i-b")
        );
    }
}
