//! The LocalStack network the modules, examples and `scripts/strata-up` deploy into: a VPC with
//! one subnet in each of two AZs of the home region and a VPC with one subnet in the read-only
//! region. Found by tag before anything is created, so calling it again returns the same ids.
//!
//! LocalStack also has default VPCs, but their subnet ids are random per start; our own tagged
//! network gives stable, discoverable ids and does not depend on moto's defaults.

use anyhow::{Context, Result, anyhow};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde::Serialize;

/// Tag key marking objects of a Strata test network; its value is the network's name.
pub const NETWORK_TAG: &str = "strata:network";
pub const DEFAULT_NETWORK_NAME: &str = "strata-localstack";
pub const HOME_REGION: &str = "us-east-1";
pub const READ_ONLY_REGION: &str = "eu-west-1";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub home_region: String,
    pub home_vpc_id: String,
    /// One subnet per AZ, in AZ order.
    pub home_subnet_ids: Vec<String>,
    pub home_availability_zones: Vec<String>,
    pub read_only_region: String,
    pub read_only_vpc_id: String,
    pub read_only_subnet_id: String,
    pub read_only_availability_zone: String,
}

impl Network {
    /// The variables `examples/complete` and the module tests take, as a `.tfvars.json` body.
    pub fn tfvars_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subnet_ids": self.home_subnet_ids,
            "eu_subnet_id": self.read_only_subnet_id,
        })
    }
}

/// An EC2 client for one region of LocalStack (test credentials).
pub fn ec2_client(endpoint: &str, region: &str) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "strata-tests"))
        .build();
    Client::from_conf(conf)
}

/// Finds or creates the named network in LocalStack at `endpoint`.
pub async fn ensure(endpoint: &str, name: &str) -> Result<Network> {
    let home = ec2_client(endpoint, HOME_REGION);
    let (home_vpc_id, home_subnets) = ensure_region(
        &home,
        name,
        "10.42.0.0/16",
        &[
            (format!("{HOME_REGION}a"), "10.42.1.0/24"),
            (format!("{HOME_REGION}b"), "10.42.2.0/24"),
        ],
    )
    .await
    .with_context(|| format!("network {name} in {HOME_REGION}"))?;

    let ro = ec2_client(endpoint, READ_ONLY_REGION);
    let (ro_vpc_id, ro_subnets) = ensure_region(
        &ro,
        name,
        "10.43.0.0/16",
        &[(format!("{READ_ONLY_REGION}a"), "10.43.1.0/24")],
    )
    .await
    .with_context(|| format!("network {name} in {READ_ONLY_REGION}"))?;
    let (ro_az, ro_subnet) = ro_subnets
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no subnet in {READ_ONLY_REGION}"))?;

    Ok(Network {
        name: name.to_string(),
        home_region: HOME_REGION.to_string(),
        home_vpc_id,
        home_availability_zones: home_subnets.iter().map(|(az, _)| az.clone()).collect(),
        home_subnet_ids: home_subnets.into_iter().map(|(_, id)| id).collect(),
        read_only_region: READ_ONLY_REGION.to_string(),
        read_only_vpc_id: ro_vpc_id,
        read_only_subnet_id: ro_subnet,
        read_only_availability_zone: ro_az,
    })
}

/// Blocking wrapper for synchronous tests and the helper binary.
pub fn ensure_blocking(endpoint: &str, name: &str) -> Result<Network> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(ensure(endpoint, name))
}

fn tags(resource: ResourceType, name: &str, label: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key(NETWORK_TAG).value(name).build())
        .tags(Tag::builder().key("Name").value(label).build())
        .build()
}

fn tag_filter(name: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{NETWORK_TAG}"))
        .values(name)
        .build()
}

/// Returns the VPC id and `(az, subnet id)` per requested AZ.
async fn ensure_region(
    ec2: &Client,
    name: &str,
    vpc_cidr: &str,
    subnets: &[(String, &str)],
) -> Result<(String, Vec<(String, String)>)> {
    let found = ec2
        .describe_vpcs()
        .filters(tag_filter(name))
        .send()
        .await
        .context("DescribeVpcs")?;
    // Sorted so two leftovers of a race resolve to the same VPC every time.
    let mut ids: Vec<String> = found
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    ids.sort();
    let vpc_id = match ids.into_iter().next() {
        Some(id) => id,
        None => ec2
            .create_vpc()
            .cidr_block(vpc_cidr)
            .tag_specifications(tags(ResourceType::Vpc, name, name))
            .send()
            .await
            .context("CreateVpc")?
            .vpc()
            .and_then(|v| v.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("CreateVpc returned no VPC id"))?,
    };

    let existing = ec2
        .describe_subnets()
        .filters(tag_filter(name))
        .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .send()
        .await
        .context("DescribeSubnets")?;
    let mut out = Vec::new();
    for (az, cidr) in subnets {
        let mut in_az: Vec<String> = existing
            .subnets()
            .iter()
            .filter(|s| s.availability_zone() == Some(az.as_str()))
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect();
        in_az.sort();
        let id = match in_az.into_iter().next() {
            Some(id) => id,
            None => ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(*cidr)
                .availability_zone(az)
                .tag_specifications(tags(ResourceType::Subnet, name, &format!("{name}-{az}")))
                .send()
                .await
                .with_context(|| format!("CreateSubnet in {az}"))?
                .subnet()
                .and_then(|s| s.subnet_id())
                .map(str::to_string)
                .ok_or_else(|| anyhow!("CreateSubnet returned no subnet id"))?,
        };
        out.push((az.clone(), id));
    }
    Ok((vpc_id, out))
}
