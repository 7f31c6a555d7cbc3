//! Who belongs to a cluster, as AWS shows it now: the source and home replicas (by their
//! `strata:cluster`/`strata:role` tags in the home region), the read-only regions (each
//! `strata_region` leaves one described ingress rule on the home security group, which is the
//! one record in the home region naming the other regions) and each region's replicas.
//! Nodes are read with the same `aws::node` code the resources use.
//! Shared by both data sources.

use std::collections::BTreeMap;

use crate::aws::cluster::ROLE_SOURCE;
use crate::aws::network::{self, GroupInfo};
use crate::aws::node::{self, TAG_INDEX, role_filters};
use crate::aws::region::ROLE_REGION_REPLICA;
use crate::aws::{AwsError, Clients, NodeInfo, RegionClients};
use strata_topology::tags::parse_region_rule_description;

/// The role tag of a home replica (what `strata_replica` launches).
pub const ROLE_REPLICA: &str = "replica";

#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The live source (one, unless a failover is half done).
    pub source: Vec<NodeInfo>,
    /// Home replicas, by instance id.
    pub replicas: Vec<NodeInfo>,
    /// Read-only regions and their replicas, by region name, replicas by index.
    pub regions: BTreeMap<String, Vec<NodeInfo>>,
}

impl Members {
    /// Every node: the source, home replicas, then each region's replicas.
    pub fn all(&self) -> impl Iterator<Item = &NodeInfo> {
        self.source
            .iter()
            .chain(&self.replicas)
            .chain(self.regions.values().flatten())
    }

    /// Home replicas per availability zone.
    pub fn replicas_per_az(&self) -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for r in &self.replicas {
            if let Some(az) = &r.availability_zone {
                *m.entry(az.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

/// The regions named by the home group's region rules (`strata:region <address> <region>`).
pub fn region_names(home_group: &GroupInfo) -> Vec<String> {
    let mut v: Vec<String> = home_group
        .ingress
        .iter()
        .filter_map(|r| parse_region_rule_description(r.description.as_deref()?))
        .map(|(_, region)| region.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn index_of(n: &NodeInfo) -> u32 {
    n.tags
        .get(TAG_INDEX)
        .and_then(|i| i.parse().ok())
        .unwrap_or(u32::MAX)
}

async fn find_role(
    rc: &RegionClients,
    cluster: &str,
    role: &str,
) -> Result<Vec<NodeInfo>, AwsError> {
    let [(k1, v1), (k2, v2)] = role_filters(cluster, role);
    node::find_nodes(rc, &[(&k1, v1), (&k2, v2)]).await
}

/// The members of cluster `name`, whose home is `home_region` and security group
/// `security_group_id` (as the cluster's state shows them).
pub async fn members(
    c: &Clients,
    name: &str,
    home_region: &str,
    security_group_id: &str,
) -> Result<Members, AwsError> {
    let home = c.region(Some(home_region)).await?;
    let source = find_role(&home, name, ROLE_SOURCE).await?;
    let replicas = find_role(&home, name, ROLE_REPLICA).await?;
    let group = network::describe_group(&home.ec2, security_group_id).await?;
    let mut regions = BTreeMap::new();
    for region in region_names(&group) {
        let rc = c.region(Some(&region)).await?;
        let mut nodes = find_role(&rc, name, ROLE_REGION_REPLICA).await?;
        nodes.sort_by_key(index_of);
        regions.insert(region, nodes);
    }
    Ok(Members {
        source,
        replicas,
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::network::{Rule, RuleSource};

    fn rule(description: Option<&str>) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from_port: 3306,
            to_port: 3306,
            source: RuleSource::Cidr("10.1.0.0/24".into()),
            description: description.map(str::to_string),
        }
    }

    #[test]
    fn regions_come_from_described_region_rules_only() {
        let g = GroupInfo {
            group_id: "sg-1".into(),
            group_name: "g".into(),
            vpc_id: "vpc-1".into(),
            ingress: vec![
                rule(Some(
                    "strata:region strata_region.orders.eu-west-1 eu-west-1",
                )),
                rule(Some(
                    "strata:region strata_region.orders.ap-south-1 ap-south-1",
                )),
                rule(Some(
                    "strata:region strata_region.orders.eu-west-1 eu-west-1",
                )),
                rule(Some("strata: allowed clients")),
                rule(None),
            ],
            tags: BTreeMap::new(),
        };
        assert_eq!(region_names(&g), vec!["ap-south-1", "eu-west-1"]);
    }

    #[test]
    fn replicas_are_counted_per_az() {
        let node = |id: &str, az: &str| NodeInfo {
            instance_id: id.into(),
            region: "us-east-1".into(),
            state: "running".into(),
            private_ip: None,
            private_dns: None,
            subnet_id: None,
            vpc_id: None,
            availability_zone: Some(az.into()),
            instance_type: "t3.medium".into(),
            ami: None,
            security_group_ids: vec![],
            instance_profile_arn: None,
            http_tokens_required: true,
            root_volume_id: None,
            devices: vec![],
            tags: BTreeMap::new(),
        };
        let m = Members {
            source: vec![node("i-s", "us-east-1a")],
            replicas: vec![
                node("i-1", "us-east-1a"),
                node("i-2", "us-east-1b"),
                node("i-3", "us-east-1b"),
            ],
            regions: BTreeMap::from([("eu-west-1".to_string(), vec![node("i-4", "eu-west-1a")])]),
        };
        assert_eq!(
            m.replicas_per_az(),
            BTreeMap::from([("us-east-1a".into(), 1), ("us-east-1b".into(), 2)])
        );
        assert_eq!(m.all().count(), 5);
    }
}
