//! User-data: the cloud-init shell script that carries a [`NodeConfig`] onto an instance.
//!
//! The script writes the JSON to [`AGENT_CONFIG_PATH`] (mode 0600) and enables a systemd unit
//! that runs `strata-agent run --config /etc/strata/node.json`. The JSON sits in a quoted
//! heredoc, so the shell expands nothing in it and the text is readable in the console.
//! The script contains no secret: the config only names the SSM parameter.

use crate::{ConfigError, NodeConfig};
use base64::Engine as _;

/// Where the node config lands on the instance.
pub const AGENT_CONFIG_PATH: &str = "/etc/strata/node.json";
/// Name of the systemd unit that runs the agent.
pub const AGENT_UNIT_NAME: &str = "strata-agent.service";
/// Where the image puts the agent binary.
pub const AGENT_BINARY_PATH: &str = "/usr/local/bin/strata-agent";

const MARKER: &str = "# strata-node-config";
const JSON_DELIMITER: &str = "STRATA_NODE_JSON";
const UNIT_DELIMITER: &str = "STRATA_AGENT_UNIT";

#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    #[error("user-data is not a Strata node script (no `{MARKER}` line)")]
    NotStrata,
    #[error("user-data has no complete node config block")]
    NoConfigBlock,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Renders the cloud-init script for one node. Pure: same config, same bytes.
pub fn render_user_data(cfg: &NodeConfig) -> String {
    let json = cfg.to_json();
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!("{MARKER} v{}\n", cfg.version));
    s.push_str("# Written by the Strata provider. Holds no secret: the replication credential is read from SSM.\n");
    s.push_str("set -euo pipefail\n");
    s.push_str("umask 077\n");
    s.push_str("install -d -m 0700 /etc/strata\n");
    s.push_str(&format!("cat > {AGENT_CONFIG_PATH} <<'{JSON_DELIMITER}'\n"));
    s.push_str(&json);
    s.push('\n');
    s.push_str(JSON_DELIMITER);
    s.push('\n');
    s.push_str(&format!("chmod 0600 {AGENT_CONFIG_PATH}\n"));
    s.push_str(&format!(
        "cat > /etc/systemd/system/{AGENT_UNIT_NAME} <<'{UNIT_DELIMITER}'\n"
    ));
    s.push_str("[Unit]\n");
    s.push_str("Description=Strata node agent\n");
    s.push_str("Wants=network-online.target\n");
    s.push_str("After=network-online.target local-fs.target\n");
    s.push_str("\n[Service]\n");
    s.push_str(&format!(
        "ExecStart={AGENT_BINARY_PATH} run --config {AGENT_CONFIG_PATH}\n"
    ));
    s.push_str("Restart=always\n");
    s.push_str("RestartSec=5\n");
    s.push_str("\n[Install]\n");
    s.push_str("WantedBy=multi-user.target\n");
    s.push_str(UNIT_DELIMITER);
    s.push('\n');
    s.push_str("systemctl daemon-reload\n");
    s.push_str(&format!("systemctl enable --now {AGENT_UNIT_NAME}\n"));
    s
}

/// Reads the NodeConfig back out of user-data, validated. Accepts the script itself or its
/// base64 form (what EC2's DescribeInstanceAttribute returns).
pub fn parse_user_data(user_data: &str) -> Result<NodeConfig, UserDataError> {
    let trimmed = user_data.trim();
    let decoded;
    let script = if trimmed.starts_with("#!") {
        trimmed
    } else {
        let compact: String = trimmed.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| UserDataError::NotStrata)?;
        decoded = String::from_utf8(bytes).map_err(|_| UserDataError::NotStrata)?;
        decoded.as_str()
    };
    if !script.lines().any(|l| l.starts_with(MARKER)) {
        return Err(UserDataError::NotStrata);
    }
    let open = format!("<<'{JSON_DELIMITER}'");
    let mut lines = script.lines();
    lines
        .by_ref()
        .find(|l| l.ends_with(&open))
        .ok_or(UserDataError::NoConfigBlock)?;
    let mut json = String::new();
    let mut closed = false;
    for line in lines {
        if line == JSON_DELIMITER {
            closed = true;
            break;
        }
        json.push_str(line);
        json.push('\n');
    }
    if !closed {
        return Err(UserDataError::NoConfigBlock);
    }
    Ok(NodeConfig::from_json(&json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sample_replica;

    #[test]
    fn round_trips_plain_and_base64() {
        let cfg = sample_replica();
        let ud = render_user_data(&cfg);
        assert!(ud.starts_with("#!/bin/bash\n# strata-node-config v2\n"));
        assert!(
            ud.contains("ExecStart=/usr/local/bin/strata-agent run --config /etc/strata/node.json")
        );
        assert!(ud.contains("chmod 0600 /etc/strata/node.json"));
        assert_eq!(parse_user_data(&ud).unwrap(), cfg);
        let b64 = base64::engine::general_purpose::STANDARD.encode(ud.as_bytes());
        assert_eq!(parse_user_data(&b64).unwrap(), cfg);
    }

    #[test]
    fn json_cannot_close_the_heredoc_early() {
        let mut cfg = sample_replica();
        cfg.tags
            .insert("note".into(), "line\nSTRATA_NODE_JSON\n$(reboot)".into());
        let ud = render_user_data(&cfg);
        assert_eq!(ud.lines().filter(|l| *l == JSON_DELIMITER).count(), 1);
        assert_eq!(parse_user_data(&ud).unwrap(), cfg);
    }

    #[test]
    fn rejects_foreign_or_truncated_scripts() {
        assert!(matches!(
            parse_user_data("#!/bin/bash\necho hi\n"),
            Err(UserDataError::NotStrata)
        ));
        let ud = render_user_data(&sample_replica());
        let cut = &ud[..ud.find("\"storage\"").unwrap()];
        assert!(matches!(
            parse_user_data(cut),
            Err(UserDataError::NoConfigBlock)
        ));
    }
}
