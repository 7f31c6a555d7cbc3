//! The agent's error type. Messages name the node, the peer and what to do; they never carry
//! a password (statements holding one are reported by a label, not their text).

use strata_topology::{ConfigError, Engine};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: String,
        source: std::io::Error,
    },
    /// A password could not be read (yet): SSM unreachable, parameter missing, empty file.
    #[error("{what}: {reason}")]
    Credential { what: String, reason: String },
    #[error("cannot connect to the local {engine} server at {target}: {reason}")]
    LocalConnect {
        engine: Engine,
        target: String,
        reason: String,
    },
    #[error("the local server is {found:?}, but the node config says engine `{configured}`")]
    EngineMismatch { configured: Engine, found: String },
    #[error("source {host}:{port} is unreachable: {reason}")]
    SourceUnreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error(
        "source {host}:{port} refused the replication credential for user `{user}` (wrong credential?): {reason}"
    )]
    SourceAuth {
        host: String,
        port: u16,
        user: String,
        reason: String,
    },
    #[error("server_id {server_id} is already used by {holder}; every node needs its own")]
    DuplicateServerId { server_id: u32, holder: String },
    #[error(
        "the running server was not started with {path}: {mismatches}. Restart it with that file (or give --restart-command)"
    )]
    StaticSettings { path: String, mismatches: String },
    #[error("{what} failed: {reason}")]
    Sql { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("TLS material: {0}")]
    Tls(String),
    #[error("replication did not start within {seconds}s: {reason}")]
    ReplicaNotRunning { seconds: u64, reason: String },
    #[error("restart command failed: {0}")]
    Restart(String),
    #[error(
        "seeding this replica from {from} failed (what it loaded was removed; the next round retries): {reason}"
    )]
    Seed { from: String, reason: String },
}

impl AgentError {
    pub(crate) fn sql(what: impl Into<String>, e: impl std::fmt::Display) -> AgentError {
        AgentError::Sql {
            what: what.into(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.into(),
            source,
        }
    }
}
