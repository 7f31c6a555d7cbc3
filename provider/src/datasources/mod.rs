//! The data source types the provider serves, one file each. They read what the resources
//! manage with the resources' own read code (see `framework::datasource`), so a cluster
//! applied in one state can be consumed from another.

pub mod cluster;
pub mod members;
pub mod nodes;

use std::sync::Arc;

use crate::framework::DataSource;

/// Every data source type, in the order they are documented.
pub fn all() -> Vec<Arc<dyn DataSource>> {
    vec![
        Arc::new(cluster::ClusterDataSource),
        Arc::new(nodes::NodesDataSource),
    ]
}
