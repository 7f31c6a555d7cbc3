//! The resource types the provider serves, one file each. Resources see only the framework
//! (`crate::framework`): typed values, never protobuf.

pub mod checks;
pub mod cluster;
pub mod cluster_backup;
pub mod cluster_roll;
pub mod common;
pub mod nodes;
pub mod owned;
pub mod region;
pub mod replica;
pub mod segment;
#[cfg(feature = "test-resources")]
pub mod test_widget;

use std::sync::Arc;

use crate::framework::Resource;

/// The test-only resource's type name. It exists only in builds with the `test-resources`
/// feature (this crate's tests), and joins [`all`] there when `STRATA_TEST_RESOURCES=1`.
pub const TEST_WIDGET_TYPE: &str = "strata_test_widget";

/// Every resource type the provider serves, in the order they are documented. The test-only
/// `strata_test_widget` joins them when `STRATA_TEST_RESOURCES=1` in a build with the
/// `test-resources` feature.
pub fn all() -> Vec<Arc<dyn Resource>> {
    #[cfg_attr(not(feature = "test-resources"), allow(unused_mut))]
    let mut list: Vec<Arc<dyn Resource>> = vec![
        Arc::new(cluster::ClusterResource),
        Arc::new(replica::ReplicaResource),
        Arc::new(region::RegionResource),
        Arc::new(segment::SegmentResource),
    ];
    #[cfg(feature = "test-resources")]
    if test_widget::enabled() {
        list.push(Arc::new(test_widget::TestWidget));
    }
    list
}
