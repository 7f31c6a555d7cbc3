//! The resource types the provider serves, one file each. Resources see only the framework
//! (`crate::framework`): typed values, never protobuf.

pub mod checks;
pub mod cluster;
pub mod common;
pub mod nodes;
pub mod owned;
pub mod region;
pub mod replica;
pub mod segment;
pub mod test_widget;

use std::sync::Arc;

use crate::framework::Resource;

/// Every resource type the provider serves, in the order they are documented. The test-only
/// `strata_test_widget` joins them when `STRATA_TEST_RESOURCES=1`.
pub fn all() -> Vec<Arc<dyn Resource>> {
    let mut list: Vec<Arc<dyn Resource>> = vec![
        Arc::new(cluster::ClusterResource),
        Arc::new(replica::ReplicaResource),
        Arc::new(region::RegionResource),
        Arc::new(segment::SegmentResource),
    ];
    if test_widget::enabled() {
        list.push(Arc::new(test_widget::TestWidget));
    }
    list
}
