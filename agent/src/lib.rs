//! strata-agent: runs on every Strata instance. It turns a bare server into its node's part of
//! the replication topology (bootstrap, seeding a new replica from a copy of its source),
//! reports what the node is doing (status), and grows the data volume (storage). All engine
//! SQL lives in `engine::{mariadb, mysql}`; this crate talks to AWS only to read its
//! credentials, to tag its own instance with its state (`node_state`), in `storage` for
//! volumes, and in `failover` for the lease (S3), the writer and reader records (Route 53) and
//! stopping a lost source (EC2), and in `backup` for the validated backup cycle (S3).

pub mod backup;
pub mod bootstrap;
pub mod credential;
pub mod engine;
pub mod error;
pub mod failover;
pub mod files;
pub mod node_state;
pub mod s3;
pub mod seed;
pub mod sql;
pub mod status;
pub mod storage;

pub use bootstrap::{Options as BootstrapOptions, Report as BootstrapReport, bootstrap};
pub use error::AgentError;
pub use files::{prepare_server_files, render_server_config};
pub use status::{NodeStatus, status};
