//! `strata_region`: a read-only region. In the other region: its own security group and N
//! replica instances. In the home region: one ingress rule on the cluster's group letting the
//! region's subnet reach the engine port (replicas connect to the home source), closed again
//! on delete.
//!
//! The region's group admits, on the engine port: its own members, the home source's subnet
//! (so the home side can reach the region for checks and, after a promotion, replicate from
//! it), and the allowed client CIDRs. Egress stays open, which is what lets replicas connect
//! out to the home source.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::try_join_all;

use super::config::{Clients, RegionClients};
use super::error::AwsError;
use super::network::{self, Rule, RuleSource, SubnetInfo};
use super::node::{self, NodeInfo, NodeSpec, TAG_INDEX};
use super::tags::{self, ObjectTags, TAG_CLUSTER, TAG_RESOURCE, TAG_ROLE, sub_token};
use strata_topology::tags::{
    RULE_ALLOWED_CLIENTS, RULE_HOME_SOURCE, RULE_REGION_MEMBERS, region_rule_description,
};

pub const ROLE_REGION_REPLICA: &str = "region-replica";
pub const ROLE_REGION_GROUP: &str = "region-security-group";

/// What `strata_region` asks for.
#[derive(Debug, Clone)]
pub struct RegionSpec {
    pub cluster: String,
    /// `strata_region.<name>`-like address; with `cluster` and `region` it identifies the
    /// region's objects.
    pub resource: String,
    pub creation_token: String,
    /// The other region (`eu-west-1`).
    pub region: String,
    pub subnet_id: String,
    pub replica_count: u32,
    pub instance_type: String,
    pub ami: Option<String>,
    /// The cluster's instance profile (IAM is global).
    pub instance_profile: Option<String>,
    pub port: u16,
    /// The cluster's region (`None`: the provider's).
    pub home_region: Option<String>,
    pub home_security_group_id: String,
    /// The CIDR of the home source's subnet.
    pub home_source_cidr: String,
    pub allowed_cidrs: Vec<String>,
    /// Rendered user-data per replica index; a single entry serves every replica.
    pub user_data: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub root_volume_size_gib: i32,
    pub timeout: Duration,
}

/// A region as read back from AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub region: String,
    pub security_group_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub availability_zone: String,
    /// Ordered by index (the `strata:index` tag).
    pub replicas: Vec<NodeInfo>,
    pub home_security_group_id: String,
    /// True when the home group has this region's rule.
    pub home_rule_present: bool,
}

impl RegionInfo {
    pub fn replica_instance_ids(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|n| n.instance_id.clone())
            .collect()
    }
}

fn home_rule(spec: &RegionSpec, region_cidr: &str) -> Rule {
    Rule::tcp(
        spec.port,
        RuleSource::Cidr(region_cidr.to_string()),
        &region_rule_description(&spec.resource, &spec.region),
    )
}

/// The region group's ingress: members, the home source's subnet, the allowed clients.
pub fn region_ingress(group_id: &str, spec: &RegionSpec) -> Vec<Rule> {
    let mut r = vec![
        Rule::tcp(
            spec.port,
            RuleSource::Group(group_id.into()),
            RULE_REGION_MEMBERS,
        ),
        Rule::tcp(
            spec.port,
            RuleSource::Cidr(spec.home_source_cidr.clone()),
            RULE_HOME_SOURCE,
        ),
    ];
    r.extend(
        spec.allowed_cidrs
            .iter()
            .map(|c| Rule::tcp(spec.port, RuleSource::Cidr(c.clone()), RULE_ALLOWED_CLIENTS)),
    );
    r
}

fn group_name(spec: &RegionSpec) -> String {
    let short: String = spec.creation_token.chars().take(8).collect();
    format!("strata-{}-region-{short}", spec.cluster)
}

fn user_data_for(spec: &RegionSpec, index: u32) -> Result<String, AwsError> {
    match spec.user_data.as_slice() {
        [one] => Ok(one.clone()),
        many => many.get(index as usize).cloned().ok_or_else(|| {
            AwsError::Invalid(format!(
                "{}: no user-data for replica {index} ({} given for {} replicas)",
                spec.resource,
                many.len(),
                spec.replica_count
            ))
        }),
    }
}

fn validate(spec: &RegionSpec) -> Result<(), AwsError> {
    if spec.user_data.is_empty() && spec.replica_count > 0 {
        return Err(AwsError::Invalid(format!(
            "{}: user-data is required",
            spec.resource
        )));
    }
    if spec.home_source_cidr.is_empty() || spec.home_security_group_id.is_empty() {
        return Err(AwsError::Invalid(format!(
            "{}: the home cluster's security group and source subnet CIDR are required",
            spec.resource
        )));
    }
    for i in 0..spec.replica_count {
        user_data_for(spec, i)?;
    }
    Ok(())
}

async fn region_group(
    rc: &RegionClients,
    spec: &RegionSpec,
) -> Result<Option<network::GroupInfo>, AwsError> {
    let tc = format!("tag:{TAG_CLUSTER}");
    let tr = format!("tag:{TAG_RESOURCE}");
    let tro = format!("tag:{TAG_ROLE}");
    Ok(network::find_groups(
        &rc.ec2,
        &[
            (&tc, &spec.cluster),
            (&tr, &spec.resource),
            (&tro, ROLE_REGION_GROUP),
        ],
    )
    .await?
    .into_iter()
    .next())
}

async fn region_replicas(
    rc: &RegionClients,
    spec: &RegionSpec,
) -> Result<Vec<(u32, NodeInfo)>, AwsError> {
    let tc = format!("tag:{TAG_CLUSTER}");
    let tr = format!("tag:{TAG_RESOURCE}");
    let tro = format!("tag:{TAG_ROLE}");
    let mut nodes: Vec<(u32, NodeInfo)> = node::find_nodes(
        rc,
        &[
            (&tc, &spec.cluster),
            (&tr, &spec.resource),
            (&tro, ROLE_REGION_REPLICA),
        ],
    )
    .await?
    .into_iter()
    .map(|n| {
        (
            n.tags
                .get(TAG_INDEX)
                .and_then(|i| i.parse().ok())
                .unwrap_or(u32::MAX),
            n,
        )
    })
    .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.instance_id.cmp(&b.1.instance_id)));
    Ok(nodes)
}

fn replica_spec(spec: &RegionSpec, group_id: &str, index: u32) -> Result<NodeSpec, AwsError> {
    Ok(NodeSpec {
        cluster: spec.cluster.clone(),
        resource: spec.resource.clone(),
        creation_token: sub_token(&spec.creation_token, &format!("replica-{index}")),
        region: Some(spec.region.clone()),
        subnet_id: spec.subnet_id.clone(),
        instance_type: spec.instance_type.clone(),
        ami: spec.ami.clone(),
        security_group_ids: vec![group_id.to_string()],
        instance_profile: spec.instance_profile.clone(),
        user_data: user_data_for(spec, index)?,
        tags: spec.tags.clone(),
        role: ROLE_REGION_REPLICA.into(),
        index: Some(index),
        root_volume_size_gib: spec.root_volume_size_gib,
        root_kms_key_id: None,
        key_name: None,
        timeout: spec.timeout,
        // Only indexes no live replica of the region has are asked for (ensure_replicas).
        token_unused: true,
    })
}

/// Creates the region's group, opens the home group to the region's subnet, and runs the
/// replicas (concurrently). On failure it deletes what the region has so far.
pub async fn create_region(clients: &Clients, spec: &RegionSpec) -> Result<RegionInfo, AwsError> {
    validate(spec)?;
    match create_steps(clients, spec).await {
        Ok(i) => Ok(i),
        Err(e) => match delete_region(clients, spec).await {
            Ok(()) => Err(e),
            Err(ce) => Err(AwsError::Partial {
                source: Box::new(e),
                leftovers: vec![format!(
                    "objects tagged {}={} in {} ({ce})",
                    TAG_RESOURCE, spec.resource, spec.region
                )],
            }),
        },
    }
}

async fn create_steps(clients: &Clients, spec: &RegionSpec) -> Result<RegionInfo, AwsError> {
    let rc = clients.region(Some(&spec.region)).await?;
    let home = clients.region(spec.home_region.as_deref()).await?;
    let subnet = network::subnet(&rc, &spec.subnet_id).await?;
    let t = tags::build_tags(
        clients.default_tags(),
        &spec.tags,
        &ObjectTags {
            cluster: &spec.cluster,
            resource: &spec.resource,
            role: Some(ROLE_REGION_GROUP),
            creation_token: &sub_token(&spec.creation_token, "sg"),
            name: Some(&group_name(spec)),
        },
    );
    let (group, _) = network::ensure_group(
        &rc.ec2,
        &subnet.vpc_id,
        &group_name(spec),
        &format!(
            "Strata cluster {} read-only region {}",
            spec.cluster, spec.region
        ),
        &t,
    )
    .await?;
    let group = network::apply_ingress(
        &rc.ec2,
        &group,
        &region_ingress(&group.group_id, spec),
        |_| false,
    )
    .await?;
    network::authorize(
        &home.ec2,
        &spec.home_security_group_id,
        &[home_rule(spec, &subnet.cidr_block)],
    )
    .await?;
    let replicas = ensure_replicas(clients, &rc, spec, &group.group_id).await?;
    // Everything was just made or read above: no read-back. The home rule is there (authorize
    // succeeded, or found it there already).
    Ok(RegionInfo {
        region: rc.region.clone(),
        security_group_id: group.group_id,
        vpc_id: subnet.vpc_id,
        subnet_id: subnet.subnet_id,
        subnet_cidr: subnet.cidr_block,
        availability_zone: subnet.availability_zone,
        replicas,
        home_security_group_id: spec.home_security_group_id.clone(),
        home_rule_present: true,
    })
}

/// Adds missing replicas (concurrently) and removes those beyond `replica_count`, highest
/// index first. Returns the replicas there are now, ordered as `region_replicas` orders them.
async fn ensure_replicas(
    clients: &Clients,
    rc: &RegionClients,
    spec: &RegionSpec,
    group_id: &str,
) -> Result<Vec<NodeInfo>, AwsError> {
    let current = region_replicas(rc, spec).await?;
    let have: Vec<u32> = current.iter().map(|(i, _)| *i).collect();
    let specs = (0..spec.replica_count)
        .filter(|i| !have.contains(i))
        .map(|i| replica_spec(spec, group_id, i))
        .collect::<Result<Vec<_>, _>>()?;
    // Launched together, their waits share polls (`coalesce`): each says so before any
    // launch call returns.
    let made = try_join_all(specs.iter().map(|s| async {
        let _polls = rc.shared.instance_polls.expect();
        node::ensure_node(clients, s).await
    }))
    .await?;
    let mut now: Vec<(u32, NodeInfo)> = current
        .iter()
        .filter(|(i, _)| *i < spec.replica_count)
        .cloned()
        .chain(
            specs
                .iter()
                .zip(made)
                .map(|(s, (n, _))| (s.index.unwrap_or(u32::MAX), n)),
        )
        .collect();
    now.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.instance_id.cmp(&b.1.instance_id)));
    let mut extra: Vec<&(u32, NodeInfo)> = current
        .iter()
        .filter(|(i, _)| *i >= spec.replica_count)
        .collect();
    extra.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, n) in &extra {
        node::terminate_node(rc, &n.instance_id, Duration::ZERO).await?;
    }
    try_join_all(
        extra
            .iter()
            .map(|(_, n)| node::wait_node_state(rc, &n.instance_id, "terminated", spec.timeout)),
    )
    .await?;
    Ok(now.into_iter().map(|(_, n)| n).collect())
}

/// Sets the number of replicas in place (adds or removes, highest index first).
pub async fn set_region_replica_count(
    clients: &Clients,
    spec: &RegionSpec,
) -> Result<RegionInfo, AwsError> {
    validate(spec)?;
    let rc = clients.region(Some(&spec.region)).await?;
    let group = region_group(&rc, spec).await?.ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeSecurityGroups",
            &format!("security group of {}", spec.resource),
            "InvalidGroup.NotFound",
            "the region's security group is gone",
        )
    })?;
    ensure_replicas(clients, &rc, spec, &group.group_id).await?;
    read_region(clients, spec).await
}

/// In place: replica count, instance type (stop, modify, start, one replica at a time so the
/// region keeps serving), allowed CIDRs, tags.
pub async fn update_region(clients: &Clients, spec: &RegionSpec) -> Result<RegionInfo, AwsError> {
    validate(spec)?;
    let rc = clients.region(Some(&spec.region)).await?;
    let group = region_group(&rc, spec).await?.ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeSecurityGroups",
            &format!("security group of {}", spec.resource),
            "InvalidGroup.NotFound",
            "the region's security group is gone",
        )
    })?;
    network::sync_ingress(
        &rc.ec2,
        &group.group_id,
        &region_ingress(&group.group_id, spec),
        |_| false,
    )
    .await?;
    ensure_replicas(clients, &rc, spec, &group.group_id).await?;
    for (i, n) in region_replicas(&rc, spec).await? {
        let s = replica_spec(
            spec,
            &group.group_id,
            i.min(spec.replica_count.saturating_sub(1)),
        )?;
        node::update_node(clients, &n.instance_id, &s).await?;
    }
    read_region(clients, spec).await
}

/// Reads the region back. Not-found (`is_not_found`) when its security group is gone; a
/// region with fewer live replicas than wanted is returned as is (the caller plans the rest).
pub async fn read_region(clients: &Clients, spec: &RegionSpec) -> Result<RegionInfo, AwsError> {
    let rc = clients.region(Some(&spec.region)).await?;
    let home = clients.region(spec.home_region.as_deref()).await?;
    let group = region_group(&rc, spec).await?.ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeSecurityGroups",
            &format!("security group of {} in {}", spec.resource, spec.region),
            "InvalidGroup.NotFound",
            "the region's security group is gone",
        )
    })?;
    let subnet = match network::subnet(&rc, &spec.subnet_id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => SubnetInfo {
            subnet_id: spec.subnet_id.clone(),
            vpc_id: group.vpc_id.clone(),
            availability_zone: String::new(),
            cidr_block: String::new(),
        },
        Err(e) => return Err(e),
    };
    let replicas = region_replicas(&rc, spec)
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let home_rule_present =
        match network::describe_group(&home.ec2, &spec.home_security_group_id).await {
            Ok(g) => {
                let want = home_rule(spec, &subnet.cidr_block);
                g.ingress.iter().any(|r| {
                    r.source == want.source
                        && r.from_port == want.from_port
                        && r.to_port == want.to_port
                        && r.protocol == want.protocol
                })
            }
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };
    Ok(RegionInfo {
        region: rc.region.clone(),
        security_group_id: group.group_id,
        vpc_id: subnet.vpc_id,
        subnet_id: subnet.subnet_id,
        subnet_cidr: subnet.cidr_block,
        availability_zone: subnet.availability_zone,
        replicas,
        home_security_group_id: spec.home_security_group_id.clone(),
        home_rule_present,
    })
}

/// Rebuilds a region's spec from AWS, for import (`<cluster>/<region>/<resource address>`):
/// the subnet, count and instance type from its replicas, the home group and source CIDR from
/// the cluster, the allowed CIDRs from its group. `user_data` comes back empty (the caller
/// renders it) and `tags` are the first replica's user tags.
pub async fn discover_region(
    clients: &Clients,
    home_region: Option<&str>,
    cluster: &str,
    region: &str,
    resource: &str,
) -> Result<(RegionSpec, RegionInfo), AwsError> {
    let c = super::cluster::read_cluster(clients, home_region, cluster).await?;
    let rc = clients.region(Some(region)).await?;
    let mut spec = RegionSpec {
        cluster: cluster.into(),
        resource: resource.into(),
        creation_token: String::new(),
        region: region.into(),
        subnet_id: String::new(),
        replica_count: 0,
        instance_type: String::new(),
        ami: None,
        instance_profile: Some(c.instance_profile.clone()),
        port: c.port,
        home_region: Some(c.region.clone()),
        home_security_group_id: c.security_group_id.clone(),
        home_source_cidr: c.subnet_cidr.clone(),
        allowed_cidrs: Vec::new(),
        user_data: Vec::new(),
        tags: BTreeMap::new(),
        root_volume_size_gib: 20,
        timeout: Duration::from_secs(20 * 60),
    };
    let group = region_group(&rc, &spec).await?.ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeSecurityGroups",
            &format!("security group of {resource} of cluster {cluster:?} in {region}"),
            "InvalidGroup.NotFound",
            "no region with this cluster and address",
        )
    })?;
    spec.creation_token = group
        .tags
        .get(tags::TAG_TOKEN)
        .map(|t| t.trim_end_matches(".sg").to_string())
        .unwrap_or_default();
    let replicas = region_replicas(&rc, &spec).await?;
    spec.replica_count = replicas.len() as u32;
    if let Some((_, first)) = replicas.first() {
        spec.subnet_id = first.subnet_id.clone().unwrap_or_default();
        spec.instance_type = first.instance_type.clone();
        spec.ami = first.ami.clone();
        spec.tags = first.user_tags();
    }
    let port = i32::from(spec.port);
    spec.allowed_cidrs = group
        .ingress
        .iter()
        .filter(|r| r.from_port == port)
        .filter_map(|r| match &r.source {
            RuleSource::Cidr(x) if *x != spec.home_source_cidr => Some(x.clone()),
            _ => None,
        })
        .collect();
    let info = read_region(clients, &spec).await?;
    Ok((spec, info))
}

/// Terminates the region's replicas (waiting), closes the home rule, deletes the region's
/// group. Missing objects are skipped.
pub async fn delete_region(clients: &Clients, spec: &RegionSpec) -> Result<(), AwsError> {
    let rc = clients.region(Some(&spec.region)).await?;
    let home = clients.region(spec.home_region.as_deref()).await?;
    let replicas = region_replicas(&rc, spec).await?;
    try_join_all(
        replicas
            .iter()
            .map(|(_, n)| node::terminate_node(&rc, &n.instance_id, spec.timeout)),
    )
    .await?;
    let cidr = match network::subnet(&rc, &spec.subnet_id).await {
        Ok(s) => Some(s.cidr_block),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    match cidr {
        Some(c) => match network::revoke(
            &home.ec2,
            &spec.home_security_group_id,
            &[home_rule(spec, &c)],
        )
        .await
        {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        },
        None => {
            // The subnet is gone: find the rule by its description instead.
            let found = match network::describe_group(&home.ec2, &spec.home_security_group_id).await
            {
                Ok(g) => Some(g),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            if let Some(g) = found {
                let desc = region_rule_description(&spec.resource, &spec.region);
                let ours: Vec<Rule> = g
                    .ingress
                    .into_iter()
                    .filter(|r| r.description.as_deref() == Some(desc.as_str()))
                    .collect();
                network::revoke(&home.ec2, &spec.home_security_group_id, &ours).await?;
            }
        }
    }
    if let Some(g) = region_group(&rc, spec).await? {
        network::delete_group(&rc.ec2, &g.group_id, spec.timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RegionSpec {
        RegionSpec {
            cluster: "orders".into(),
            resource: "strata_region.eu".into(),
            creation_token: "abcdef0123".into(),
            region: "eu-west-1".into(),
            subnet_id: "subnet-1".into(),
            replica_count: 2,
            instance_type: "t3.micro".into(),
            ami: None,
            instance_profile: None,
            port: 3306,
            home_region: None,
            home_security_group_id: "sg-home".into(),
            home_source_cidr: "10.0.1.0/24".into(),
            allowed_cidrs: vec!["192.168.0.0/16".into()],
            user_data: vec!["a".into(), "b".into()],
            tags: BTreeMap::new(),
            root_volume_size_gib: 20,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn ingress_and_home_rule() {
        let s = spec();
        let r = region_ingress("sg-eu", &s);
        let src: Vec<_> = r.iter().map(|r| r.source.clone()).collect();
        assert_eq!(
            src,
            vec![
                RuleSource::Group("sg-eu".into()),
                RuleSource::Cidr("10.0.1.0/24".into()),
                RuleSource::Cidr("192.168.0.0/16".into())
            ]
        );
        let h = home_rule(&s, "10.8.0.0/24");
        assert_eq!(h.source, RuleSource::Cidr("10.8.0.0/24".into()));
        assert_eq!((h.from_port, h.to_port), (3306, 3306));
        assert!(
            h.description
                .unwrap()
                .starts_with(strata_topology::tags::REGION_RULE_PREFIX)
        );
        assert_eq!(group_name(&s), "strata-orders-region-abcdef01");
    }

    #[test]
    fn user_data_per_index() {
        let mut s = spec();
        assert_eq!(user_data_for(&s, 1).unwrap(), "b");
        s.replica_count = 3;
        assert!(validate(&s).unwrap_err().to_string().contains("replica 2"));
        s.user_data = vec!["all".into()];
        assert_eq!(user_data_for(&s, 2).unwrap(), "all");
        assert!(validate(&s).is_ok());
    }
}
