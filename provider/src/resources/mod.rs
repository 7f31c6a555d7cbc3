//! The resource types: one file each. `all()` is what the provider serves.

pub mod cluster;
pub mod common;
pub mod nodes;
pub mod region;
pub mod replica;
pub mod segment;

use std::sync::Arc;

use crate::framework::Resource;

/// Every resource type the provider serves.
pub fn all() -> Vec<Arc<dyn Resource>> {
    vec![
        Arc::new(cluster::ClusterResource),
        Arc::new(replica::ReplicaResource),
        Arc::new(region::RegionResource),
        Arc::new(segment::SegmentResource),
    ]
}
