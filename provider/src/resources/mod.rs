//! The resource types the provider serves, one file each, and the provider-level schema and
//! configuration that hands them their shared data.
//!
//! Resources see only the framework (`crate::framework`): typed values, never protobuf.

use std::sync::Arc;

use crate::framework::{
    Attr, Diagnostics, Provider, ProviderData, Resource, Schema, Value, async_trait,
};

pub mod test_widget;

/// The resource types, in the order they are documented.
pub fn all() -> Vec<Arc<dyn Resource>> {
    #[allow(unused_mut)]
    let mut list: Vec<Arc<dyn Resource>> = vec![
        // The four Strata resources go here: strata_cluster, strata_replica, strata_region,
        // strata_storage_segment.
    ];
    if test_widget::enabled() {
        list.push(Arc::new(test_widget::TestWidget));
    }
    list
}

/// What `configure` hands every resource. Until the AWS clients land, only the settings.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    pub region: Option<String>,
}

/// The `strata` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct StrataProvider;

#[async_trait]
impl Provider for StrataProvider {
    fn schema(&self) -> Schema {
        Schema::builder(0)
            .description(
                "Deploys replicated MySQL-compatible database clusters into your own AWS account.",
            )
            .attribute(
                Attr::string("region")
                    .optional()
                    .description("The AWS region of the clusters (default: the AWS SDK's)."),
            )
            .build()
    }

    async fn configure(
        &self,
        config: Value,
        _terraform_version: String,
    ) -> Result<ProviderData, Diagnostics> {
        let region = config
            .get_attr("region")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Arc::new(ProviderConfig { region }))
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        all()
    }
}
