//! strata-agent: runs on every Strata instance. It turns a bare server into its node's part of
//! the replication topology (bootstrap), reports what the node is doing (status), and grows
//! the data volume (storage). All engine SQL lives in `engine::{mariadb, mysql}`; this crate
//! must not talk to AWS except to read the replication credential (and, in `storage`, volumes).

pub mod bootstrap;
pub mod credential;
pub mod engine;
pub mod error;
pub mod files;
pub mod sql;
pub mod status;

pub use bootstrap::{Options as BootstrapOptions, Report as BootstrapReport, bootstrap};
pub use error::AgentError;
pub use files::{prepare_server_files, render_server_config};
pub use status::{NodeStatus, status};
