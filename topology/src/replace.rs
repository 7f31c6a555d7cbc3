//! Replacing a lost home node without a person (issue 10, item 3): the objects and tags the
//! agents and the provider share.
//!
//! Each node's agent publishes its own launch parameters at start ([`LaunchSpec`], under
//! [`launch_spec_key`]): what it was launched with, read from EC2 and the instance metadata,
//! user-data included. When the source's agent sees a home replica stop heartbeating and EC2
//! says its instance is terminated (and the provider did not retire it, [`TAG_RETIRING`]), it
//! claims the replacement with a conditional create of [`replacement_key`] (exactly one
//! launcher, whatever the number of attempts), launches an instance from the spec tagged
//! [`TAG_REPLACES`] = the lost instance, and records the new instance id in the claim. The new
//! node boots with the same NodeConfig (same node id), seeds from the source and replicates.
//! The provider's read of a replica whose instance is gone follows [`TAG_REPLACES`] to the
//! replacement, so `plan` reports the new instance id and proposes nothing.

use crate::Role;
use crate::failover::Member;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the objects below; a reader refuses others.
pub const REPLACE_OBJECT_VERSION: u32 = 1;

pub use crate::tags::{TAG_REPLACES, TAG_RETIRING};

/// `<prefix>/launch/<node_id>.json`.
pub fn launch_spec_key(prefix: &str, node_id: &str) -> String {
    format!("{}/launch/{node_id}.json", prefix.trim_end_matches('/'))
}

/// `<prefix>/replacements/<lost_instance_id>.json`.
pub fn replacement_key(prefix: &str, lost_instance_id: &str) -> String {
    format!(
        "{}/replacements/{lost_instance_id}.json",
        prefix.trim_end_matches('/')
    )
}

/// What a node was launched with, enough to launch its twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSpec {
    pub version: u32,
    pub node_id: String,
    /// The instance that published it.
    pub instance_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    /// Instance profile ARN (None: launched without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// The exact user-data, base64 as EC2 takes it.
    pub user_data_base64: String,
    /// The instance's tags except `aws:*` ones and those set per instance by agents.
    pub tags: BTreeMap<String, String>,
    pub published_at_ms: u64,
}

/// The claim on replacing one lost instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    pub version: u32,
    pub node_id: String,
    pub lost_instance_id: String,
    /// The node whose agent claimed it.
    pub claimed_by: String,
    pub claimed_at_ms: u64,
    /// Set once the replacement instance was launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_instance_id: Option<String>,
}

/// A replacement object that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceObjectError {
    #[error("invalid replacement object JSON: {0}")]
    Json(String),
    #[error("replacement object version {found} is not supported (expected {expected})")]
    Version { found: u32, expected: u32 },
}

fn parse_versioned<T: for<'de> Deserialize<'de>>(
    text: &[u8],
    version: impl Fn(&T) -> u32,
) -> Result<T, ReplaceObjectError> {
    let v: T = serde_json::from_slice(text).map_err(|e| ReplaceObjectError::Json(e.to_string()))?;
    let found = version(&v);
    if found != REPLACE_OBJECT_VERSION {
        return Err(ReplaceObjectError::Version {
            found,
            expected: REPLACE_OBJECT_VERSION,
        });
    }
    Ok(v)
}

// Serializing plain structs with string keys cannot fail.
pub fn render_launch_spec(s: &LaunchSpec) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
pub fn parse_launch_spec(text: &[u8]) -> Result<LaunchSpec, ReplaceObjectError> {
    parse_versioned(text, |s: &LaunchSpec| s.version)
}
pub fn render_replacement(r: &Replacement) -> String {
    serde_json::to_string(r).unwrap_or_default()
}
pub fn parse_replacement(text: &[u8]) -> Result<Replacement, ReplaceObjectError> {
    parse_versioned(text, |r: &Replacement| r.version)
}

/// Whether a tag is copied from a lost instance to its replacement: not AWS's own, not the
/// per-instance state agents write (role, epoch, failover facts, readiness), not a retiring
/// mark or a previous replacement's link.
pub fn copied_tag(key: &str) -> bool {
    !key.starts_with("aws:")
        && key != TAG_REPLACES
        && key != TAG_RETIRING
        && key != crate::TAG_NODE_STATE
        && key != crate::TAG_NODE_ERROR
        && key != crate::TAG_CURRENT_ROLE
        && key != crate::TAG_LEASE_EPOCH
        && key != crate::TAG_LAST_FAILOVER_AT
        && key != crate::TAG_LAST_FAILOVER_REASON
        && key != crate::TAG_LAST_FAILOVER_DURATION_MS
}

/// Home nodes (launched as source or replica, never region replicas) in `region` that stopped
/// heartbeating more than `silent_ms` ago and name their instance: the ones whose instance the
/// source asks EC2 about. (Whether one is lost is EC2's answer: only a terminated instance is
/// replaced, never a stopped or unreachable one.) The source's own member is never silent: it
/// is the one asking.
pub fn silent_home_nodes<'a>(
    members: &'a [Member],
    region: &str,
    now_ms: u64,
    silent_ms: u64,
) -> Vec<&'a Member> {
    members
        .iter()
        .filter(|m| m.launch_role != Role::RegionReplica && m.region == region)
        .filter(|m| m.instance_id.as_deref().is_some_and(|i| !i.is_empty()))
        .filter(|m| now_ms.saturating_sub(m.updated_at_ms) > silent_ms)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{CurrentRole, FAILOVER_OBJECT_VERSION};

    fn member(id: &str, role: Role, region: &str, inst: Option<&str>, at: u64) -> Member {
        Member {
            version: FAILOVER_OBJECT_VERSION,
            node_id: id.into(),
            instance_id: inst.map(str::to_string),
            launch_role: role,
            current_role: CurrentRole::Replica,
            region: region.into(),
            host: "10.0.0.1".into(),
            port: 3306,
            reader_name: None,
            gtid_executed: String::new(),
            healthy: true,
            lag_seconds: Some(0),
            epoch_seen: 1,
            final_for_epoch: None,
            config_generation: None,
            config_error: None,
            config_failed_generation: None,
            replicated: Some(true),
            updated_at_ms: at,
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            launch_spec_key("failover/orders/", "orders-replica-1"),
            "failover/orders/launch/orders-replica-1.json"
        );
        assert_eq!(
            replacement_key("failover/orders", "i-0abc"),
            "failover/orders/replacements/i-0abc.json"
        );
    }

    #[test]
    fn objects_round_trip_and_refuse_other_versions() {
        let s = LaunchSpec {
            version: REPLACE_OBJECT_VERSION,
            node_id: "n2".into(),
            instance_id: "i-1".into(),
            image_id: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: "subnet-1".into(),
            security_group_ids: vec!["sg-1".into()],
            instance_profile_arn: Some("arn:aws:iam::1:instance-profile/p".into()),
            user_data_base64: "IyEvYmluL3NoCg==".into(),
            tags: BTreeMap::from([("strata:cluster".into(), "orders".into())]),
            published_at_ms: 7,
        };
        assert_eq!(
            parse_launch_spec(render_launch_spec(&s).as_bytes()).unwrap(),
            s
        );
        let r = Replacement {
            version: REPLACE_OBJECT_VERSION,
            node_id: "n2".into(),
            lost_instance_id: "i-1".into(),
            claimed_by: "n1".into(),
            claimed_at_ms: 9,
            new_instance_id: Some("i-2".into()),
        };
        assert_eq!(
            parse_replacement(render_replacement(&r).as_bytes()).unwrap(),
            r
        );
        let v2 = render_replacement(&r).replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            parse_replacement(v2.as_bytes()),
            Err(ReplaceObjectError::Version { found: 2, .. })
        ));
        assert!(parse_launch_spec(b"{}").is_err());
    }

    #[test]
    fn agent_state_tags_are_not_copied() {
        assert!(copied_tag("strata:cluster"));
        assert!(copied_tag("Name"));
        assert!(!copied_tag("aws:cloudformation:stack-id"));
        assert!(!copied_tag(TAG_REPLACES));
        assert!(!copied_tag(TAG_RETIRING));
        assert!(!copied_tag(crate::TAG_NODE_STATE));
        assert!(!copied_tag(crate::TAG_CURRENT_ROLE));
    }

    #[test]
    fn only_silent_home_nodes_with_an_instance() {
        let ms = vec![
            member("src", Role::Source, "us-east-1", Some("i-s"), 0),
            member("r1", Role::Replica, "us-east-1", Some("i-1"), 0),
            member("r2", Role::Replica, "us-east-1", Some("i-2"), 9_500),
            member("r3", Role::Replica, "us-east-1", None, 0),
            member("r4", Role::Replica, "eu-west-1", Some("i-4"), 0),
            member("rr", Role::RegionReplica, "us-east-1", Some("i-5"), 0),
        ];
        let ids: Vec<&str> = silent_home_nodes(&ms, "us-east-1", 10_000, 5_000)
            .iter()
            .map(|m| m.node_id.as_str())
            .collect();
        assert_eq!(ids, vec!["src", "r1"]);
    }
}
