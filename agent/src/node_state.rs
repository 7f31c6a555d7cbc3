//! How far this node got, told to the provider through tags on its own instance:
//! `strata:node-state=ready` after the first successful bootstrap, `failed` with
//! `strata:node-error` for an error no retry can fix. Which errors those are is decided by
//! [`classify`]; tagging itself never stops the agent (failures are the caller's to log).

use crate::error::AgentError;
use aws_sdk_ec2::types::Tag;
use strata_topology::{NodeState, TAG_NODE_ERROR, TAG_NODE_STATE};

/// Whether waiting can make an error go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Retry soon: something is not up yet (the source, SSM, the local server).
    Transient,
    /// Only a change of config, image or cluster fixes it: report `failed`.
    Permanent,
}

/// The longest value AWS accepts for a tag.
pub const MAX_TAG_VALUE: usize = 255;

/// Sorts an error into transient or permanent. Errors about something that may simply not
/// be there yet are transient: at boot a replica routinely comes up before its source
/// answers, or before the source created the replication user (so a refused login is
/// transient too), SSM may not be reachable yet, the local server may still be starting.
pub fn classify(e: &AgentError) -> Fault {
    use AgentError::*;
    match e {
        // The node config itself is wrong or unreadable.
        Config(_) | ReadConfig { .. } => Fault::Permanent,
        // The image runs another engine than the config names.
        EngineMismatch { .. } => Fault::Permanent,
        // Two nodes claim one server_id: the cluster's config must change.
        DuplicateServerId { .. } => Fault::Permanent,
        // The server was not restarted with its config (no --restart-command), or still
        // differs after the restart: waiting changes neither.
        StaticSettings { .. } => Fault::Permanent,
        // Certificate generation and writing our own files fail the same way each time
        // (permissions, a read-only or full file system).
        Tls(_) | Io { .. } => Fault::Permanent,
        // A replica's SQL thread stopped on an error (seconds 0): replaying the same
        // transaction fails again. A timeout waiting for threads may resolve itself.
        ReplicaNotRunning { seconds: 0, .. } => Fault::Permanent,
        ReplicaNotRunning { .. } => Fault::Transient,
        Credential { .. }
        | LocalConnect { .. }
        | SourceUnreachable { .. }
        | SourceAuth { .. }
        | Sql { .. }
        | Restart(_)
        | Seed { .. } => Fault::Transient,
    }
}

/// `reason` cut to what a tag value holds, on a character boundary.
pub fn tag_value(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars() {
        if out.len() + c.len_utf8() > MAX_TAG_VALUE {
            break;
        }
        out.push(c);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error("instance metadata (IMDSv2): {0}")]
    Imds(String),
    #[error("ec2:{op} on {instance}: {message}")]
    Ec2 {
        op: &'static str,
        instance: String,
        message: String,
    },
}

/// An EC2 client for `region`; `endpoint` overrides the SDK's (which honours
/// AWS_ENDPOINT_URL by itself).
pub async fn ec2_client(region: &str, endpoint: Option<&str>) -> aws_sdk_ec2::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_ec2::Client::new(&loader.load().await)
}

/// This instance's region, from IMDSv2: for tagging when the node config cannot be read.
pub async fn own_region() -> Result<String, TagError> {
    let imds = aws_config::imds::Client::builder().build();
    imds.get("/latest/meta-data/placement/region")
        .await
        .map(|s| s.as_ref().to_string())
        .map_err(|e| TagError::Imds(e.to_string()))
}

/// Writes `state` on `instance_id`. `failed` carries `error` as TAG_NODE_ERROR; `ready` and
/// `installing` remove a stale TAG_NODE_ERROR.
pub async fn tag_node_state(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    state: NodeState,
    error: Option<&str>,
) -> Result<(), TagError> {
    let fail = |op: &'static str, e: String| TagError::Ec2 {
        op,
        instance: instance_id.to_string(),
        message: e,
    };
    let mut req = ec2.create_tags().resources(instance_id).tags(
        Tag::builder()
            .key(TAG_NODE_STATE)
            .value(state.as_str())
            .build(),
    );
    if state == NodeState::Failed {
        req = req.tags(
            Tag::builder()
                .key(TAG_NODE_ERROR)
                .value(tag_value(error.unwrap_or("unknown error")))
                .build(),
        );
    }
    req.send().await.map_err(|e| {
        fail(
            "CreateTags",
            aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
        )
    })?;
    if state != NodeState::Failed {
        ec2.delete_tags()
            .resources(instance_id)
            .tags(Tag::builder().key(TAG_NODE_ERROR).build())
            .send()
            .await
            .map_err(|e| {
                fail(
                    "DeleteTags",
                    aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_topology::{ConfigError, Engine};

    fn sql_err() -> AgentError {
        AgentError::Sql {
            what: "x".into(),
            reason: "y".into(),
        }
    }

    #[test]
    fn errors_no_retry_fixes_are_permanent() {
        let permanent = [
            AgentError::EngineMismatch {
                configured: Engine::Mariadb,
                found: "8.4.0".into(),
            },
            AgentError::DuplicateServerId {
                server_id: 2,
                holder: "the source".into(),
            },
            AgentError::StaticSettings {
                path: "/etc/x.cnf".into(),
                mismatches: "server_id".into(),
            },
            AgentError::ReadConfig {
                path: "/etc/strata/node.json".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            AgentError::ReplicaNotRunning {
                seconds: 0,
                reason: "SQL thread: duplicate key".into(),
            },
            AgentError::Tls("bad".into()),
        ];
        for e in &permanent {
            assert_eq!(classify(e), Fault::Permanent, "{e}");
        }
        let cfg_err = strata_topology::NodeConfig::from_json("{}").unwrap_err();
        let cfg_err: ConfigError = cfg_err;
        assert_eq!(classify(&AgentError::Config(cfg_err)), Fault::Permanent);
    }

    #[test]
    fn errors_that_clear_by_waiting_are_transient() {
        let transient = [
            AgentError::SourceUnreachable {
                host: "10.0.0.5".into(),
                port: 3306,
                reason: "connection refused".into(),
            },
            // The source may not have created the replication user yet.
            AgentError::SourceAuth {
                host: "10.0.0.5".into(),
                port: 3306,
                user: "strata_repl".into(),
                reason: "1045".into(),
            },
            AgentError::Credential {
                what: "replication credential".into(),
                reason: "SSM unreachable".into(),
            },
            AgentError::LocalConnect {
                engine: Engine::Mariadb,
                target: "socket".into(),
                reason: "starting".into(),
            },
            AgentError::ReplicaNotRunning {
                seconds: 30,
                reason: "IO thread Connecting".into(),
            },
            AgentError::Seed {
                from: "10.0.0.5:3306".into(),
                reason: "dump exited with 2".into(),
            },
            sql_err(),
        ];
        for e in &transient {
            assert_eq!(classify(e), Fault::Transient, "{e}");
        }
    }

    #[test]
    fn tag_values_are_cut_on_a_char_boundary() {
        assert_eq!(tag_value("short"), "short");
        let long = "é".repeat(200);
        let cut = tag_value(&long);
        assert!(cut.len() <= MAX_TAG_VALUE);
        assert_eq!(cut.chars().count(), 127);
    }
}
