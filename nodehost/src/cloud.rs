//! What the node host asks LocalStack: the tagged instances, their subnets, user-data and role.
use crate::{CLUSTER_TAG, Error, Result};
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::Filter;
use base64::Engine;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// An instance as DescribeInstances shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub region: String,
    pub cluster: String,
    /// pending, running, stopping, stopped, shutting-down, terminated
    pub state: String,
    pub private_ip: Option<Ipv4Addr>,
    pub private_dns_name: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub availability_zone: Option<String>,
    pub instance_profile_arn: Option<String>,
    pub instance_type: Option<String>,
    pub image_id: Option<String>,
}

pub struct Cloud {
    ec2: BTreeMap<String, aws_sdk_ec2::Client>,
    iam: aws_sdk_iam::Client,
}

fn aws_err<E: std::error::Error>(op: &str, e: E) -> Error {
    Error::Aws {
        op: op.to_string(),
        message: DisplayErrorContext(e).to_string(),
    }
}

impl Cloud {
    pub fn new(endpoint: &str, regions: &[String]) -> Self {
        let creds = Credentials::new("test", "test", None, None, "strata-nodehost");
        // A hung LocalStack call must not stall the poll loop for long.
        let timeouts = aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(15))
            .operation_timeout(Duration::from_secs(30))
            .build();
        let ec2 = regions
            .iter()
            .map(|r| {
                let conf = aws_sdk_ec2::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(r.clone()))
                    .endpoint_url(endpoint)
                    .credentials_provider(creds.clone())
                    .timeout_config(timeouts.clone())
                    .build();
                (r.clone(), aws_sdk_ec2::Client::from_conf(conf))
            })
            .collect();
        let iam_conf = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(creds)
            .timeout_config(timeouts)
            .build();
        Cloud {
            ec2,
            iam: aws_sdk_iam::Client::from_conf(iam_conf),
        }
    }

    fn ec2(&self, region: &str) -> Result<&aws_sdk_ec2::Client> {
        self.ec2
            .get(region)
            .ok_or_else(|| Error::Invalid(format!("region {region} is not one this host polls")))
    }

    /// Every instance in `region` tagged with one of `clusters`.
    pub async fn describe(&self, region: &str, clusters: &[String]) -> Result<Vec<Instance>> {
        let client = self.ec2(region)?;
        let filter = Filter::builder()
            .name(format!("tag:{CLUSTER_TAG}"))
            .set_values(Some(clusters.to_vec()))
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = client
                .describe_instances()
                .filters(filter.clone())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| aws_err("DescribeInstances", e))?;
            for res in resp.reservations() {
                for i in res.instances() {
                    let Some(id) = i.instance_id() else { continue };
                    let cluster = i
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(CLUSTER_TAG))
                        .and_then(|t| t.value())
                        .unwrap_or_default()
                        .to_string();
                    // The filter already did this; a backend that ignores it must not make us
                    // boot another test's instances.
                    if !clusters.contains(&cluster) {
                        continue;
                    }
                    out.push(Instance {
                        id: id.to_string(),
                        region: region.to_string(),
                        cluster,
                        state: i
                            .state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                        private_ip: i.private_ip_address().and_then(|s| s.parse().ok()),
                        private_dns_name: i
                            .private_dns_name()
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                        subnet_id: i.subnet_id().map(str::to_string),
                        vpc_id: i.vpc_id().map(str::to_string),
                        availability_zone: i
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .map(str::to_string),
                        instance_profile_arn: i
                            .iam_instance_profile()
                            .and_then(|p| p.arn())
                            .map(str::to_string),
                        instance_type: i.instance_type().map(|t| t.as_str().to_string()),
                        image_id: i.image_id().map(str::to_string),
                    });
                }
            }
            token = resp
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn subnet_cidr(&self, region: &str, subnet_id: &str) -> Result<String> {
        let resp = self
            .ec2(region)?
            .describe_subnets()
            .subnet_ids(subnet_id)
            .send()
            .await
            .map_err(|e| aws_err("DescribeSubnets", e))?;
        resp.subnets()
            .first()
            .and_then(|s| s.cidr_block())
            .map(str::to_string)
            .ok_or_else(|| Error::Invalid(format!("subnet {subnet_id} has no CIDR block")))
    }

    /// The instance's user-data, decoded to the exact bytes that were written.
    pub async fn user_data(&self, region: &str, instance_id: &str) -> Result<Option<Vec<u8>>> {
        let resp = self
            .ec2(region)?
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| aws_err("DescribeInstanceAttribute(userData)", e))?;
        let Some(b64) = resp
            .user_data()
            .and_then(|u| u.value())
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| Error::Invalid(format!("user-data of {instance_id} is not base64: {e}")))
    }

    /// The role behind an instance profile ARN; the profile's name when IAM cannot tell.
    pub async fn role_name(&self, profile_arn: &str) -> String {
        let profile = profile_arn
            .rsplit('/')
            .next()
            .unwrap_or(profile_arn)
            .to_string();
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(&profile)
            .send()
            .await
        {
            Ok(resp) => resp
                .instance_profile()
                .and_then(|p| p.roles().first())
                .map(|r| r.role_name().to_string())
                .unwrap_or(profile),
            Err(e) => {
                tracing::warn!(profile, error = %DisplayErrorContext(e), "GetInstanceProfile failed; using the profile name as role");
                profile
            }
        }
    }
}

/// The account id in an ARN (arn:aws:iam::<account>:...), else LocalStack's default.
pub fn account_of(arn: Option<&str>) -> String {
    arn.and_then(|a| a.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or("000000000000")
        .to_string()
}
