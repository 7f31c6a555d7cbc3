//! `data "strata_cluster"`: a cluster managed elsewhere (another state, another team), read by
//! name. Its attributes are `strata_cluster`'s, read by `strata_cluster`'s own read, plus what
//! only a reader needs in one place: the home replicas per availability zone and the read-only
//! regions.

use crate::cty::{AttributePath, Type, Value};
use crate::framework::datasource::{project, read_only_schema, with_extra};
use crate::framework::{
    Attr, Context, DataSource, Diagnostic, Diagnostics, ReadRequest, Resource, Schema, async_trait,
};
use crate::resources::cluster::{self as cluster_resource, ClusterResource};
use crate::resources::common::{aws_diag, clients, required_str};

use super::members::members;

pub const TYPE_NAME: &str = "strata_cluster";

pub struct ClusterDataSource;

fn number_map() -> Type {
    Type::Map(Box::new(Type::Number))
}

pub fn schema() -> Schema {
    let s = read_only_schema(
        &cluster_resource::schema(),
        &["name"],
        "Reads a Strata cluster by name: its endpoints, source node, security group, SSM \
         parameter names, engine and port, its home replicas per availability zone and its \
         read-only regions. For a stack that uses a cluster another configuration (or another \
         team) manages: allow its `security_group_id`, connect to its `writer_endpoint`, read \
         the admin password from `admin_parameter_name`. The attributes are the `strata_cluster` \
         resource's, read the same way.",
    );
    let extra = [
        Attr::list("replica_node_ids", Type::String)
            .computed_only()
            .description("Instance ids of the home region's replicas (`strata_replica`)."),
        Attr::of("replicas_per_az", number_map())
            .computed_only()
            .description("Home replicas per availability zone, e.g. `{\"us-east-1b\" = 2}`."),
        Attr::list("regions", Type::String)
            .computed_only()
            .description("The cluster's read-only regions (`strata_region`), sorted."),
        Attr::of("region_replica_counts", number_map())
            .computed_only()
            .description("Live replicas per read-only region."),
    ];
    extra.into_iter().fold(s, with_extra)
}

/// The error for a name no cluster has, on `name` (the one argument that can be wrong).
fn not_found(name: &str, region: &str) -> Diagnostics {
    Diagnostic::error(
        format!("No Strata cluster named {name:?}"),
        format!(
            "data \"strata_cluster\": no live cluster named {name:?} in {region} (no running \
             source instance and security group tagged strata:cluster={name}). Check `name`, \
             and that this provider's region is the cluster's home region."
        ),
    )
    .at(AttributePath::attr("name"))
    .into()
}

#[async_trait]
impl DataSource for ClusterDataSource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, ctx: Context, config: Value) -> Result<Value, Diagnostics> {
        let name = required_str(&config, "name")?;
        let c = clients(&ctx)?;
        let home = c.default_region().to_string();
        // The resource's own read, from the state an import starts with: whatever the resource
        // shows (and however it reads it), the data source shows.
        let stub = cluster_resource::schema().null_object_with([("id", Value::string(&name))]);
        let read = ClusterResource
            .read(ReadRequest {
                ctx: ctx.clone(),
                state: stub,
                private: Vec::new(),
            })
            .await?;
        let Some(state) = read else {
            return Err(not_found(&name, &home));
        };
        let what = format!("data.{TYPE_NAME}.{name}");
        let group = required_str(&state.state, "security_group_id")?;
        let m = members(c, &name, &home, &group)
            .await
            .map_err(|e| aws_diag(&what, "read its nodes", &e))?;
        let counts = |it: &mut dyn Iterator<Item = (String, i64)>| {
            Value::map(it.map(|(k, n)| (k, Value::number_i64(n))))
        };
        let schema = schema();
        let mut v = project(
            &state.state,
            &schema,
            [
                (
                    "replica_node_ids",
                    Value::list(
                        m.replicas
                            .iter()
                            .map(|n| Value::string(n.instance_id.clone())),
                    ),
                ),
                (
                    "replicas_per_az",
                    counts(&mut m.replicas_per_az().into_iter()),
                ),
                (
                    "regions",
                    Value::list(m.regions.keys().map(|r| Value::string(r.clone()))),
                ),
                (
                    "region_replica_counts",
                    counts(
                        &mut m
                            .regions
                            .iter()
                            .map(|(r, nodes)| (r.clone(), nodes.len() as i64)),
                    ),
                ),
            ],
        );
        // The argument as configured (the resource's read fills it from AWS, and it is the same).
        crate::resources::common::set_attr(&mut v, "name", Value::string(name));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_every_resource_attribute_read_only_and_name_required() {
        let ds = schema();
        let res = cluster_resource::schema();
        for a in &res.block.attributes {
            let d = ds
                .block
                .attribute_named(&a.name)
                .unwrap_or_else(|| panic!("data source lacks {}", a.name));
            if a.name == "name" {
                assert!(d.required);
            } else {
                assert!(d.computed && !d.optional && !d.required, "{}", a.name);
            }
        }
        assert!(ds.block.blocks.is_empty());
        for extra in [
            "replica_node_ids",
            "replicas_per_az",
            "regions",
            "region_replica_counts",
        ] {
            assert!(ds.block.attribute_named(extra).is_some(), "{extra}");
        }
    }

    #[test]
    fn a_missing_cluster_is_an_error_on_name() {
        let d = not_found("orders", "us-east-1");
        let first = d.iter().next().unwrap();
        assert!(first.is_error());
        assert!(first.summary.contains("\"orders\""));
        assert_eq!(first.attribute, Some(AttributePath::attr("name")));
    }
}
