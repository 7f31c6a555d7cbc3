//! Subnets and security groups: subnet facts, find-or-create of a group by creation token,
//! ingress rules as a set (diffed, never rebuilt), and deletion that waits out dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};

use super::error::{AwsError, ErrorKind};
use super::tags::{self, TAG_TOKEN};
use super::wait::{Backoff, retry_while};

/// What Strata needs to know about a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub cidr_block: String,
}

/// [`subnet_info`], asked once per subnet and process (what it returns never changes).
pub async fn subnet(
    rc: &super::config::RegionClients,
    subnet_id: &str,
) -> Result<SubnetInfo, AwsError> {
    rc.shared
        .subnets
        .get_or_try(&subnet_id.to_string(), || subnet_info(&rc.ec2, subnet_id))
        .await
}

pub async fn subnet_info(
    ec2: &aws_sdk_ec2::Client,
    subnet_id: &str,
) -> Result<SubnetInfo, AwsError> {
    let what = format!("subnet {subnet_id}");
    let out = ec2
        .describe_subnets()
        .subnet_ids(subnet_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeSubnets", &what))?;
    let s = out.subnets().first().ok_or_else(|| {
        AwsError::api(
            "ec2:DescribeSubnets",
            &what,
            "InvalidSubnetID.NotFound",
            "the subnet does not exist",
        )
    })?;
    let get = |v: Option<&str>, f: &str| {
        v.map(str::to_string)
            .ok_or_else(|| AwsError::missing("ec2:DescribeSubnets", &what, f))
    };
    Ok(SubnetInfo {
        subnet_id: subnet_id.to_string(),
        vpc_id: get(s.vpc_id(), "VpcId")?,
        availability_zone: get(s.availability_zone(), "AvailabilityZone")?,
        cidr_block: get(s.cidr_block(), "CidrBlock")?,
    })
}

/// Where an ingress rule lets traffic in from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleSource {
    Cidr(String),
    Group(String),
}

/// One ingress rule (one source, one port range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    pub source: RuleSource,
    pub description: Option<String>,
}

impl Rule {
    pub fn tcp(port: u16, source: RuleSource, description: &str) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from_port: port.into(),
            to_port: port.into(),
            source,
            description: Some(description.to_string()),
        }
    }

    fn key(&self) -> (String, i32, i32, RuleSource) {
        (
            self.protocol.clone(),
            self.from_port,
            self.to_port,
            self.source.clone(),
        )
    }

    fn to_permission(&self) -> IpPermission {
        let mut p = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(self.from_port)
            .to_port(self.to_port);
        match &self.source {
            RuleSource::Cidr(c) => {
                p = p.ip_ranges(
                    IpRange::builder()
                        .cidr_ip(c)
                        .set_description(self.description.clone())
                        .build(),
                )
            }
            RuleSource::Group(g) => {
                p = p.user_id_group_pairs(
                    UserIdGroupPair::builder()
                        .group_id(g)
                        .set_description(self.description.clone())
                        .build(),
                )
            }
        }
        p.build()
    }
}

/// Rules to add and to remove to go from `current` to `wanted`. Current rules for which
/// `keep` is true belong to someone else (a region's rule on the home group) and are never
/// removed.
pub fn rule_diff(
    current: &[Rule],
    wanted: &[Rule],
    keep: impl Fn(&Rule) -> bool,
) -> (Vec<Rule>, Vec<Rule>) {
    let cur: BTreeSet<_> = current.iter().map(Rule::key).collect();
    let want: BTreeSet<_> = wanted.iter().map(Rule::key).collect();
    let mut seen = BTreeSet::new();
    let add = wanted
        .iter()
        .filter(|r| !cur.contains(&r.key()) && seen.insert(r.key()))
        .cloned()
        .collect();
    let remove = current
        .iter()
        .filter(|r| !want.contains(&r.key()) && !keep(r))
        .cloned()
        .collect();
    (add, remove)
}

fn flatten(perms: &[IpPermission]) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in perms {
        let rule = |source: RuleSource, description: Option<&str>| Rule {
            protocol: p.ip_protocol().unwrap_or("-1").to_string(),
            from_port: p.from_port().unwrap_or(-1),
            to_port: p.to_port().unwrap_or(-1),
            source,
            description: description.map(str::to_string),
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                out.push(rule(RuleSource::Cidr(c.to_string()), r.description()));
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                out.push(rule(RuleSource::Cidr(c.to_string()), r.description()));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                out.push(rule(RuleSource::Group(id.to_string()), g.description()));
            }
        }
    }
    out
}

/// A security group as Strata sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group_id: String,
    pub group_name: String,
    pub vpc_id: String,
    pub ingress: Vec<Rule>,
    pub tags: BTreeMap<String, String>,
}

fn group_info(g: &aws_sdk_ec2::types::SecurityGroup) -> GroupInfo {
    GroupInfo {
        group_id: g.group_id().unwrap_or_default().to_string(),
        group_name: g.group_name().unwrap_or_default().to_string(),
        vpc_id: g.vpc_id().unwrap_or_default().to_string(),
        ingress: flatten(g.ip_permissions()),
        tags: tags::from_ec2(g.tags()),
    }
}

pub async fn describe_group(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
) -> Result<GroupInfo, AwsError> {
    let what = format!("security group {group_id}");
    let out = ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeSecurityGroups", &what))?;
    out.security_groups()
        .first()
        .map(group_info)
        .ok_or_else(|| {
            AwsError::api(
                "ec2:DescribeSecurityGroups",
                &what,
                "InvalidGroup.NotFound",
                "gone",
            )
        })
}

/// Security groups matching all `filters` (`(name, value)`; `tag:k` works).
pub async fn find_groups(
    ec2: &aws_sdk_ec2::Client,
    filters: &[(&str, &str)],
) -> Result<Vec<GroupInfo>, AwsError> {
    let mut req = ec2.describe_security_groups();
    for (k, v) in filters {
        req = req.filters(Filter::builder().name(*k).values(*v).build());
    }
    let out = req
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeSecurityGroups", "security groups"))?;
    Ok(out.security_groups().iter().map(group_info).collect())
}

/// Finds the group made with `tags[strata:creation-token]` in `vpc_id`, or creates it; true
/// when it created it now. The group's name is unique in its VPC and fixed by the token's
/// resource (callers name it from the cluster, or from the token itself), so it creates
/// first: only a name already taken needs the lookup, which then takes the group when it
/// carries this token and refuses it otherwise, as a lookup before the create would.
pub async fn ensure_group(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    name: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(GroupInfo, bool), AwsError> {
    let token = tags.get(TAG_TOKEN).map(String::as_str).unwrap_or_default();
    let what = format!("security group {name}");
    let created = ec2
        .create_security_group()
        .group_name(name)
        .description(description)
        .vpc_id(vpc_id)
        .tag_specifications(tags::ec2_tag_spec(ResourceType::SecurityGroup, tags))
        .send()
        .await;
    match created {
        Ok(out) => {
            let id = out
                .group_id()
                .ok_or_else(|| AwsError::missing("ec2:CreateSecurityGroup", &what, "GroupId"))?;
            tracing::info!(group_id = %id, name, vpc_id, "security group created");
            // What CreateSecurityGroup made is known: no ingress yet, these tags.
            Ok((
                GroupInfo {
                    group_id: id.to_string(),
                    group_name: name.to_string(),
                    vpc_id: vpc_id.to_string(),
                    ingress: Vec::new(),
                    tags: tags.clone(),
                },
                true,
            ))
        }
        Err(e) => {
            let err = AwsError::from_sdk(e, "ec2:CreateSecurityGroup", &what);
            if err.is_kind(ErrorKind::AlreadyExists) {
                let by_name = find_groups(ec2, &[("vpc-id", vpc_id), ("group-name", name)]).await?;
                if let Some(g) = by_name.into_iter().next()
                    && g.tags.get(TAG_TOKEN).map(String::as_str) == Some(token)
                {
                    return Ok((g, false));
                }
            }
            Err(err)
        }
    }
}

pub async fn authorize(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    rules: &[Rule],
) -> Result<(), AwsError> {
    let what = format!("security group {group_id}");
    if rules.len() > 1 {
        // All rules in one call; when one of them exists already (a retried apply), AWS
        // refuses the whole call, and the rules go again one per call below.
        let res = ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(rules.iter().map(Rule::to_permission).collect()))
            .send()
            .await;
        match res {
            Ok(_) => return Ok(()),
            Err(e) => {
                let err = AwsError::from_sdk(e, "ec2:AuthorizeSecurityGroupIngress", &what);
                if !err.is_kind(ErrorKind::AlreadyExists) {
                    return Err(err);
                }
            }
        }
    }
    for r in rules {
        // One call per rule: a duplicate then fails alone and is ignored.
        let res = ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .ip_permissions(r.to_permission())
            .send()
            .await;
        if let Err(e) = res {
            let err = AwsError::from_sdk(e, "ec2:AuthorizeSecurityGroupIngress", &what);
            if !err.is_kind(ErrorKind::AlreadyExists) {
                return Err(err);
            }
        }
    }
    Ok(())
}

pub async fn revoke(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    rules: &[Rule],
) -> Result<(), AwsError> {
    let what = format!("security group {group_id}");
    for r in rules {
        let res = ec2
            .revoke_security_group_ingress()
            .group_id(group_id)
            .ip_permissions(r.to_permission())
            .send()
            .await;
        if let Err(e) = res {
            let err = AwsError::from_sdk(e, "ec2:RevokeSecurityGroupIngress", &what);
            // Already gone is what we wanted.
            if !(err.is_not_found() || err.code() == Some("InvalidPermission.NotFound")) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Makes the group's ingress exactly `wanted`, leaving rules `keep` says are someone else's.
pub async fn sync_ingress(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    wanted: &[Rule],
    keep: impl Fn(&Rule) -> bool,
) -> Result<GroupInfo, AwsError> {
    let current = describe_group(ec2, group_id).await?;
    let (add, remove) = rule_diff(&current.ingress, wanted, keep);
    revoke(ec2, group_id, &remove).await?;
    authorize(ec2, group_id, &add).await?;
    if add.is_empty() && remove.is_empty() {
        return Ok(current);
    }
    describe_group(ec2, group_id).await
}

/// [`sync_ingress`] from a group the caller just read or made: the group as it is after (its
/// rules less the revoked plus the authorized), without reading it again.
pub async fn apply_ingress(
    ec2: &aws_sdk_ec2::Client,
    current: &GroupInfo,
    wanted: &[Rule],
    keep: impl Fn(&Rule) -> bool,
) -> Result<GroupInfo, AwsError> {
    let (add, remove) = rule_diff(&current.ingress, wanted, keep);
    revoke(ec2, &current.group_id, &remove).await?;
    authorize(ec2, &current.group_id, &add).await?;
    let mut after = current.clone();
    after.ingress.retain(|r| !remove.contains(r));
    after.ingress.extend(add);
    Ok(after)
}

/// Deletes a group, retrying while instances that used it are still shutting down.
pub async fn delete_group(
    ec2: &aws_sdk_ec2::Client,
    group_id: &str,
    timeout: Duration,
) -> Result<(), AwsError> {
    let what = format!("security group {group_id}");
    let r = retry_while(
        timeout,
        Backoff::default(),
        |e| e.is_kind(ErrorKind::DependencyViolation),
        || async {
            ec2.delete_security_group()
                .group_id(group_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk(e, "ec2:DeleteSecurityGroup", &what))
        },
    )
    .await;
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Sets and removes tags so the object's tags are exactly `wanted` (plus `aws:*` ones).
pub async fn sync_tags(
    ec2: &aws_sdk_ec2::Client,
    resource_id: &str,
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let (set, remove) = tags::tag_diff(current, wanted);
    if !set.is_empty() {
        ec2.create_tags()
            .resources(resource_id)
            .set_tags(Some(tags::ec2_tags(&set)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:CreateTags", resource_id))?;
    }
    if !remove.is_empty() {
        let keys = remove
            .iter()
            .map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build())
            .collect();
        ec2.delete_tags()
            .resources(resource_id)
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:DeleteTags", resource_id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(c: &str) -> Rule {
        Rule::tcp(3306, RuleSource::Cidr(c.into()), "clients")
    }

    #[test]
    fn diff_adds_missing_removes_extra_and_keeps_foreign() {
        let region_rule = Rule::tcp(
            3306,
            RuleSource::Cidr("10.9.0.0/24".into()),
            "strata:region eu",
        );
        let current = vec![
            cidr("10.0.0.0/16"),
            cidr("0.0.0.0/0"),
            region_rule.clone(),
            Rule {
                protocol: "tcp".into(),
                from_port: 22,
                to_port: 22,
                source: RuleSource::Cidr("0.0.0.0/0".into()),
                description: None,
            },
        ];
        let wanted = vec![
            cidr("10.0.0.0/16"),
            Rule::tcp(3306, RuleSource::Group("sg-1".into()), "members"),
            Rule::tcp(3306, RuleSource::Group("sg-1".into()), "members"),
        ];
        let (add, remove) = rule_diff(&current, &wanted, |r| {
            r.description
                .as_deref()
                .is_some_and(|d| d.starts_with("strata:region"))
        });
        assert_eq!(add, vec![wanted[1].clone()], "duplicates collapse");
        let removed: Vec<_> = remove
            .iter()
            .map(|r| (r.from_port, r.source.clone()))
            .collect();
        assert_eq!(
            removed,
            vec![
                (3306, RuleSource::Cidr("0.0.0.0/0".into())),
                (22, RuleSource::Cidr("0.0.0.0/0".into()))
            ]
        );
    }

    #[test]
    fn description_does_not_make_a_rule_different() {
        let mut a = cidr("10.0.0.0/8");
        a.description = Some("old words".into());
        let (add, remove) = rule_diff(&[a], &[cidr("10.0.0.0/8")], |_| false);
        assert!(add.is_empty() && remove.is_empty());
    }
}
