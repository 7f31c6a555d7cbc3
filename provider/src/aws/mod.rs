//! The AWS layer: clients per region (built once, shared), endpoint overrides, retries,
//! waiters, tagging, find-or-create, and the operations behind the four resource types
//! (cluster, replica, region, storage segment).
//!
//! Plain Rust in and out: specs in, infos out, `AwsError` on failure. It knows nothing of
//! Terraform values or protobuf, and nothing of what runs on a node (user-data arrives already
//! rendered). Every create looks up its creation-token tag before creating, so a retried apply
//! finds what a failed one made; no lock is held across an await.

pub mod artifact;
pub mod backups;
pub mod cluster;
pub mod coalesce;
pub mod config;
pub mod credential;
pub mod dns;
pub mod drift;
pub mod error;
pub mod failover;
pub mod iam;
pub mod memo;
pub mod network;
pub mod node;
pub mod ownership;
pub mod policy;
pub mod region;
pub mod retry;
pub mod roll;
pub mod rules;
pub mod segment;
pub mod tags;
pub mod wait;

pub use cluster::{
    ClusterCreated, ClusterInfo, ClusterSpec, DEFAULT_ENGINE_PORT, create_cluster, delete_cluster,
    read_cluster, update_cluster,
};
pub use config::{AssumeRole, AwsConfig, CallerIdentity, Clients, Endpoints, RegionClients};
pub use credential::{ADMIN_USER, SecretString, admin_parameter_name, replication_parameter_name};
pub use error::{AwsError, ErrorKind};
pub use node::{
    NodeInfo, ReplicaInfo, ReplicaSpec, arch_of, create_replica, default_ami, delete_replica,
    read_replica, update_replica, wait_nodes_ready,
};
pub use region::{
    RegionInfo, RegionSpec, create_region, delete_region, discover_region, read_region,
    set_region_replica_count, update_region,
};
pub use segment::{
    SegmentInfo, SegmentSpec, create_segment, delete_segment, grow_segment, modify_segment,
    move_segment, read_segment, update_segment,
};
pub use tags::{ObjectTags, build_tags, creation_token};
pub use wait::Backoff;
