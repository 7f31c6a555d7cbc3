//! Schema validators built from `aws::rules`, so `validate` and the AWS layer apply the same
//! rule to the same fact.

use crate::aws::rules;
use crate::framework::validators::{self, Validator};

fn string_rule(
    description: &str,
    rule: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
) -> Validator {
    validators::custom(description, move |v| match v.as_str() {
        Some(s) => rule(s),
        None => Ok(()),
    })
}

/// Every known element of a set or list must pass `rule`.
fn each_rule(
    description: &str,
    rule: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
) -> Validator {
    validators::custom(description, move |v| {
        for e in v.as_elements().unwrap_or_default() {
            if let Some(s) = e.as_str() {
                rule(s)?;
            }
        }
        Ok(())
    })
}

pub fn cluster_name() -> Validator {
    string_rule(
        "1 to 40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen",
        rules::cluster_name,
    )
}

pub fn dns_domain() -> Validator {
    string_rule("a DNS domain such as strata.internal", rules::dns_domain)
}

pub fn hosted_zone_id() -> Validator {
    string_rule("a Route 53 hosted zone id", rules::hosted_zone_id)
}

pub fn region() -> Validator {
    string_rule("an AWS region name such as eu-west-1", rules::region)
}

pub fn subnet_id() -> Validator {
    string_rule("a subnet id (subnet-...)", |s| {
        rules::aws_id("subnet", "a subnet", s)
    })
}

pub fn ami_id() -> Validator {
    string_rule("an image id (ami-...)", |s| {
        rules::aws_id("ami", "an AMI", s)
    })
}

pub fn node_id() -> Validator {
    string_rule("an instance id (i-...)", |s| {
        rules::aws_id("i", "an instance", s)
    })
}

pub fn instance_type() -> Validator {
    string_rule(
        "an EC2 instance type such as r7i.large",
        rules::instance_type,
    )
}

pub fn iam_name() -> Validator {
    string_rule("an IAM name", rules::iam_name)
}

pub fn kms_key() -> Validator {
    string_rule("a KMS key id, alias or ARN", rules::kms_key)
}

pub fn device_name() -> Validator {
    string_rule(
        "a device name from /dev/sdf to /dev/sdp",
        rules::device_name,
    )
}

pub fn cidr_blocks() -> Validator {
    each_rule("IPv4 CIDR blocks such as 10.0.0.0/16", rules::ipv4_cidr)
}

pub fn security_group_ids() -> Validator {
    each_rule("security group ids (sg-...)", |s| {
        rules::aws_id("sg", "a security group", s)
    })
}

/// `engine_settings`: plain variable names Strata does not set itself, one-line values.
pub fn engine_settings() -> Validator {
    validators::custom(
        "server variables (lowercase names, not one Strata sets) with one-line values",
        |v| {
            for (k, val) in v.as_map().into_iter().flatten() {
                if let Some(s) = val.as_str() {
                    rules::engine_setting(k, s)?;
                }
            }
            Ok(())
        },
    )
}

/// `tags`: no reserved key prefixes (they would be dropped, then show as a diff forever).
pub fn tags() -> Validator {
    validators::custom("tags whose keys do not start with strata: or aws:", |v| {
        for (k, val) in v.as_map().into_iter().flatten() {
            rules::tag_key(k)?;
            if let Some(s) = val.as_str() {
                rules::tag_value(k, s)?;
            }
        }
        Ok(())
    })
}

pub fn replica_count() -> Validator {
    validators::int_range(rules::REGION_REPLICAS_MIN, rules::REGION_REPLICAS_MAX)
}

/// A `strata_region` is another region: the provider's own region is the cluster's home.
pub fn not_home_region(home: &str, region: &str) -> Result<(), crate::framework::Diagnostics> {
    if home == region {
        return Err(crate::framework::Diagnostic::error(
            "A strata_region cannot be in the home region",
            format!(
                "region = {region:?} is the provider's own region, where the strata_cluster \
                 and its strata_replica resources live. Use strata_replica for more replicas \
                 there, or set region to another AWS region."
            ),
        )
        .at(crate::cty::AttributePath::attr("region"))
        .into());
    }
    Ok(())
}

/// At plan, before anything is created: the subnet exists in `region` (`None`: the
/// provider's), and in `vpc` when given. A lookup that fails for another reason (throttling,
/// permissions) is left to apply, which reports it as what it is.
pub async fn plan_subnet(
    c: &crate::aws::Clients,
    region: Option<&str>,
    subnet: &str,
    vpc: Option<&str>,
) -> Result<(), crate::framework::Diagnostics> {
    use crate::cty::AttributePath;
    use crate::framework::Diagnostic;
    let Ok(rc) = c.region(region).await else {
        return Ok(());
    };
    match crate::aws::network::subnet(&rc, subnet).await {
        Ok(info) => {
            if let Some(v) = vpc
                && info.vpc_id != v
            {
                return Err(Diagnostic::error(
                    "Subnet in another VPC",
                    format!(
                        "subnet {subnet} is in {}, but the cluster is in {v}: choose a subnet of \
                         the cluster's VPC",
                        info.vpc_id
                    ),
                )
                .at(AttributePath::attr("subnet_id"))
                .into());
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => Err(Diagnostic::error(
            "Subnet not found",
            format!(
                "subnet {subnet} does not exist in {}: check subnet_id (it must be a subnet of \
                 that region in this account)",
                rc.region
            ),
        )
        .at(AttributePath::attr("subnet_id"))
        .into()),
        Err(_) => Ok(()),
    }
}
