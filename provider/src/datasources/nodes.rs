//! `data "strata_nodes"`: every node of a cluster, home and read-only regions, with its role,
//! placement, address, boot state and storage segments. Instances are read with the code the
//! resources use (`aws::node`), segments with `strata_storage_segment`'s read
//! (`aws::read_segment`), so both show what the resources show.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use futures::future::try_join_all;
use strata_topology::TAG_NODE_STATE;

use crate::aws::segment::ROLE_SEGMENT;
use crate::aws::tags::{TAG_CLUSTER, TAG_ROLE};
use crate::aws::{AwsError, Clients, NodeInfo, SegmentInfo, read_segment};
use crate::cty::{AttributePath, Type, Value};
use crate::framework::{
    Attr, Context, DataSource, Diagnostic, Diagnostics, Nesting, Schema, async_trait,
};
use crate::resources::common::{aws_diag, clients, opt_string, required_str};

use super::members::{Members, members};

pub const TYPE_NAME: &str = "strata_nodes";

pub struct NodesDataSource;

pub fn schema() -> Schema {
    let ro = |a: Attr, what: &str| a.computed_only().description(what);
    let node = vec![
        ro(
            Attr::string("node_id"),
            "The node's EC2 instance id (what `strata_storage_segment.node_id` takes).",
        ),
        ro(
            Attr::string("role"),
            "`source`, `replica` (home region) or `region-replica` (a read-only region).",
        ),
        ro(Attr::string("region"), "AWS region of the node."),
        ro(
            Attr::string("availability_zone"),
            "Availability zone of the node.",
        ),
        ro(
            Attr::string("private_ip"),
            "Private IP of the node; the engine listens on the cluster's port there.",
        ),
        ro(Attr::string("instance_type"), "EC2 instance type."),
        ro(
            Attr::string("instance_state"),
            "EC2 state: `pending`, `running`, `stopping` or `stopped`.",
        ),
        ro(
            Attr::string("node_state"),
            "How far the node's first boot got, from its `strata:node-state` tag (`ready` once the engine and agent run and replication is set up); null before the agent reports.",
        ),
        ro(
            Attr::list("segment_ids", Type::String),
            "EBS volume ids of the node's storage segments, by volume id.",
        ),
        ro(
            Attr::list("segment_sizes_gib", Type::Number),
            "Current size of each segment in `segment_ids` (same order), in GiB: grows when the agent grows it.",
        ),
    ];
    Schema::builder(0)
        .description(
            "Lists the nodes of a Strata cluster: the source, the home replicas and every \
             read-only region's replicas, each with its role, availability zone, region, \
             private IP, boot state and storage segments. Reads AWS directly, so it shows nodes \
             however they were made (by this configuration or another).",
        )
        .attribute(
            Attr::string("cluster_id")
                .required()
                .description("The cluster's id (its name, as in `strata_cluster.name`)."),
        )
        .attribute(
            Attr::string("id")
                .computed_only()
                .description("The cluster's id."),
        )
        .attribute(
            Attr::list("node_ids", Type::String)
                .computed_only()
                .description("Instance ids of every node, in the order of `nodes`."),
        )
        .attribute(
            Attr::nested("nodes", Nesting::List, node)
                .computed_only()
                .description("Every node: the source first, then the home replicas (by instance id), then each read-only region's replicas (regions by name, replicas by index)."),
        )
        .attribute(
            Attr::of("total_storage_gib", Type::Number)
                .computed_only()
                .description("The sum of every segment's current size, in GiB."),
        )
        .build()
}

fn not_found(cluster: &str, region: &str) -> Diagnostics {
    Diagnostic::error(
        format!("No Strata cluster named {cluster:?}"),
        format!(
            "data \"strata_nodes\": no live cluster {cluster:?} in {region} (no source instance \
             and security group tagged strata:cluster={cluster}). Check `cluster_id` (the \
             cluster's name), and that this provider's region is the cluster's home region."
        ),
    )
    .at(AttributePath::attr("cluster_id"))
    .into()
}

/// Segment volume ids of cluster `name` in `region`, then each read as `strata_storage_segment`
/// reads it, grouped by the instance it is attached to.
async fn segments(
    c: &Clients,
    name: &str,
    region: &str,
) -> Result<BTreeMap<String, Vec<SegmentInfo>>, AwsError> {
    let rc = c.region(Some(region)).await?;
    let filter = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let mut ids = Vec::new();
    let mut pages = rc
        .ec2
        .describe_volumes()
        .filters(filter(TAG_CLUSTER, name))
        .filters(filter(TAG_ROLE, ROLE_SEGMENT))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            AwsError::from_sdk(e, "ec2:DescribeVolumes", &format!("segments of {name}"))
        })?;
        ids.extend(
            page.volumes()
                .iter()
                .filter_map(|v| v.volume_id().map(str::to_string)),
        );
    }
    let read = try_join_all(ids.iter().map(|id| async {
        match read_segment(c, Some(region), id).await {
            Ok(s) => Ok(Some(s)),
            // Deleted between the listing and the read.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }))
    .await?;
    let mut by_node: BTreeMap<String, Vec<SegmentInfo>> = BTreeMap::new();
    for s in read.into_iter().flatten() {
        if let Some(node) = s.attached_instance_id.clone() {
            by_node.entry(node).or_default().push(s);
        }
    }
    for v in by_node.values_mut() {
        v.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    }
    Ok(by_node)
}

fn node_value(n: &NodeInfo, segs: &[SegmentInfo]) -> Value {
    Value::object([
        ("node_id", Value::string(n.instance_id.clone())),
        ("role", opt_string(n.tags.get(TAG_ROLE).map(String::as_str))),
        ("region", Value::string(n.region.clone())),
        (
            "availability_zone",
            opt_string(n.availability_zone.as_deref()),
        ),
        ("private_ip", opt_string(n.private_ip.as_deref())),
        ("instance_type", Value::string(n.instance_type.clone())),
        ("instance_state", Value::string(n.state.clone())),
        (
            "node_state",
            opt_string(n.tags.get(TAG_NODE_STATE).map(String::as_str)),
        ),
        (
            "segment_ids",
            Value::list(segs.iter().map(|s| Value::string(s.volume_id.clone()))),
        ),
        (
            "segment_sizes_gib",
            Value::list(
                segs.iter()
                    .map(|s| Value::number_i64(i64::from(s.size_gib))),
            ),
        ),
    ])
}

/// The data source's value for cluster `name`, its members and their segments.
pub fn value(name: &str, m: &Members, segs: &BTreeMap<String, Vec<SegmentInfo>>) -> Value {
    let none = Vec::new();
    let nodes: Vec<Value> = m
        .all()
        .map(|n| node_value(n, segs.get(&n.instance_id).unwrap_or(&none)))
        .collect();
    let total: i64 = m
        .all()
        .flat_map(|n| segs.get(&n.instance_id).unwrap_or(&none))
        .map(|s| i64::from(s.size_gib))
        .sum();
    Value::object([
        ("cluster_id", Value::string(name)),
        ("id", Value::string(name)),
        (
            "node_ids",
            Value::list(m.all().map(|n| Value::string(n.instance_id.clone()))),
        ),
        ("nodes", Value::list(nodes)),
        ("total_storage_gib", Value::number_i64(total)),
    ])
}

#[async_trait]
impl DataSource for NodesDataSource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, ctx: Context, config: Value) -> Result<Value, Diagnostics> {
        let name = required_str(&config, "cluster_id")?;
        let c = clients(&ctx)?;
        let home = c.default_region().to_string();
        let what = format!("data.{TYPE_NAME}.{name}");
        let info = match crate::aws::read_cluster(c, None, &name).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Err(not_found(&name, &home)),
            Err(e) => return Err(aws_diag(&what, "read the cluster", &e)),
        };
        let m = members(c, &name, &info.region, &info.security_group_id)
            .await
            .map_err(|e| aws_diag(&what, "read its nodes", &e))?;
        let mut regions = vec![info.region.clone()];
        regions.extend(m.regions.keys().cloned());
        let mut segs = BTreeMap::new();
        for per_region in try_join_all(regions.iter().map(|r| segments(c, &name, r)))
            .await
            .map_err(|e| aws_diag(&what, "read its segments", &e))?
        {
            segs.extend(per_region);
        }
        Ok(value(&name, &m, &segs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, role: &str, region: &str) -> NodeInfo {
        NodeInfo {
            instance_id: id.into(),
            region: region.into(),
            state: "running".into(),
            private_ip: Some("10.0.0.5".into()),
            private_dns: None,
            subnet_id: None,
            vpc_id: None,
            availability_zone: Some(format!("{region}a")),
            instance_type: "t3.medium".into(),
            ami: None,
            security_group_ids: vec![],
            instance_profile_arn: None,
            http_tokens_required: true,
            root_volume_id: None,
            devices: vec![],
            tags: BTreeMap::from([
                (TAG_ROLE.to_string(), role.to_string()),
                (TAG_NODE_STATE.to_string(), "ready".to_string()),
            ]),
        }
    }

    fn seg(id: &str, node: &str, size: i32) -> SegmentInfo {
        SegmentInfo {
            volume_id: id.into(),
            region: "us-east-1".into(),
            size_gib: size,
            volume_type: "gp3".into(),
            iops: None,
            throughput: None,
            encrypted: true,
            kms_key_id: None,
            availability_zone: "us-east-1a".into(),
            state: "in-use".into(),
            attached_instance_id: Some(node.into()),
            device_name: Some("/dev/sdf".into()),
            attachment_state: Some("attached".into()),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn value_orders_nodes_and_sums_segments_and_fits_the_schema() {
        let m = Members {
            source: vec![node("i-s", "source", "us-east-1")],
            replicas: vec![node("i-r", "replica", "us-east-1")],
            regions: BTreeMap::from([(
                "eu-west-1".to_string(),
                vec![node("i-e", "region-replica", "eu-west-1")],
            )]),
        };
        let segs = BTreeMap::from([
            (
                "i-s".to_string(),
                vec![seg("vol-1", "i-s", 20), seg("vol-2", "i-s", 30)],
            ),
            ("i-r".to_string(), vec![seg("vol-3", "i-r", 25)]),
        ]);
        let v = value("orders", &m, &segs);
        crate::cty::msgpack::encode(&v, &schema().implied_type()).expect("fits the schema");
        assert_eq!(
            v.get_attr("node_ids"),
            Some(&Value::list(["i-s", "i-r", "i-e"].map(Value::string)))
        );
        assert_eq!(
            v.get_attr("total_storage_gib"),
            Some(&Value::number_i64(75))
        );
        let nodes = v.get_attr("nodes").and_then(Value::as_elements).unwrap();
        assert_eq!(nodes[0].get_attr("role"), Some(&Value::string("source")));
        assert_eq!(
            nodes[0].get_attr("segment_sizes_gib"),
            Some(&Value::list([Value::number_i64(20), Value::number_i64(30)]))
        );
        assert_eq!(
            nodes[2].get_attr("region"),
            Some(&Value::string("eu-west-1"))
        );
        assert_eq!(nodes[2].get_attr("segment_ids"), Some(&Value::list([])));
        assert_eq!(
            nodes[1].get_attr("node_state"),
            Some(&Value::string("ready"))
        );
    }

    #[test]
    fn a_missing_cluster_is_an_error_on_cluster_id() {
        let d = not_found("orders", "us-east-1");
        let first = d.iter().next().unwrap();
        assert!(first.is_error() && first.summary.contains("\"orders\""));
        assert_eq!(first.attribute, Some(AttributePath::attr("cluster_id")));
    }
}
