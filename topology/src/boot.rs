//! First boot: what a node installs (engine packages, the agent from the cluster's S3 bucket)
//! and how it reports how far it got (tags on its own instance, read by the provider).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Instance tag a node writes about itself: one of [`NodeState`]'s values. The provider waits
/// for `ready` after launching a node and fails the apply on `failed`.
pub const TAG_NODE_STATE: &str = "strata:node-state";
/// Instance tag with the reason when [`TAG_NODE_STATE`] is `failed` (at most 255 characters).
pub const TAG_NODE_ERROR: &str = "strata:node-error";

/// How far a node got, as written to [`TAG_NODE_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// User-data is installing the engine or the agent.
    Installing,
    /// The agent runs and bootstrapped the node's role at least once.
    Ready,
    /// Installation or bootstrap failed for a reason a retry will not fix; see [`TAG_NODE_ERROR`].
    Failed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Installing => "installing",
            NodeState::Ready => "ready",
            NodeState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        match s {
            "installing" => Some(NodeState::Installing),
            "ready" => Some(NodeState::Ready),
            "failed" => Some(NodeState::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CPU architecture of an instance, as the agent artifacts are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What first boot installs. The default installs the engine when the image lacks it and
/// expects the agent already at [`crate::AGENT_BINARY_PATH`] (an image with it baked in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// Install the engine from the OS's package manager when it is missing. False for images
    /// the user built with everything inside (`ami_id`): then nothing is installed.
    #[serde(default = "default_true")]
    pub engine_packages: bool,
    /// Where the agent binary comes from; None: the image has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentArtifact>,
}

impl Default for Install {
    fn default() -> Self {
        Install {
            engine_packages: true,
            agent: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The agent binary in the cluster's own S3 bucket, fetched at boot with the instance role and
/// checked against `sha256` before it is made executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentArtifact {
    pub bucket: String,
    pub key: String,
    /// Region of the bucket (the home region, also for region replicas).
    pub region: String,
    /// Lower-case hex SHA-256 of the object.
    pub sha256: String,
}

/// The cluster's private bucket for agent artifacts. S3 names are global, so the account id
/// and region make it unique; at most 63 characters (long cluster names are cut, then the
/// account and region keep it unique per cluster within an account).
pub fn agent_bucket_name(cluster: &str, account_id: &str, region: &str) -> String {
    let suffix = format!("-{account_id}-{region}");
    let prefix = "strata-";
    let room = 63usize.saturating_sub(prefix.len() + suffix.len());
    let mut name: String = cluster
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(room)
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    format!("{prefix}{name}{suffix}")
}

/// File name of the agent build for `arch` as the provider release carries it, next to the
/// provider's own executable (`strata-agent_linux_x86_64`).
pub fn agent_file_name(arch: Arch) -> String {
    format!("strata-agent_linux_{arch}")
}

/// Object key of one agent build: content-addressed, so a new build never overwrites what
/// running nodes were told to fetch.
pub fn agent_object_key(version: &str, arch: Arch, sha256: &str) -> String {
    format!("agent/{version}/{arch}/{sha256}/strata-agent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_fit_s3_rules() {
        assert_eq!(
            agent_bucket_name("orders", "000000000000", "us-east-1"),
            "strata-orders-000000000000-us-east-1"
        );
        let long = agent_bucket_name(&"a".repeat(80), "123456789012", "ap-southeast-2");
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-123456789012-ap-southeast-2"));
        let odd = agent_bucket_name("Orders_EU", "000000000000", "eu-west-1");
        assert_eq!(odd, "strata-orders-eu-000000000000-eu-west-1");
    }

    #[test]
    fn node_states_round_trip() {
        for s in [NodeState::Installing, NodeState::Ready, NodeState::Failed] {
            assert_eq!(NodeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(NodeState::parse("booting"), None);
    }

    #[test]
    fn agent_file_names_carry_the_arch() {
        assert_eq!(agent_file_name(Arch::X86_64), "strata-agent_linux_x86_64");
        assert_eq!(agent_file_name(Arch::Aarch64), "strata-agent_linux_aarch64");
    }

    #[test]
    fn object_keys_are_content_addressed() {
        assert_eq!(
            agent_object_key("0.1.0", Arch::Aarch64, "ab12"),
            "agent/0.1.0/aarch64/ab12/strata-agent"
        );
    }
}
