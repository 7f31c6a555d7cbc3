//! Drift a read must report and an update must repair, for objects no attribute of the
//! configuration names: every home-region member of a cluster in the cluster's security group,
//! and the credential parameters the nodes read.

use aws_sdk_ec2::types::Filter;

use super::config::RegionClients;
use super::error::AwsError;
use super::node::{self, NodeInfo};

/// Home-region roles whose instances belong in the cluster's security group.
const MEMBER_ROLES: [&str; 2] = ["source", "replica"];

async fn members(rc: &RegionClients, cluster: &str) -> Result<Vec<NodeInfo>, AwsError> {
    node::find_cluster_nodes(rc, cluster, &MEMBER_ROLES).await
}

/// Live members of `cluster` that are not in `group_id`.
pub async fn members_outside(
    rc: &RegionClients,
    cluster: &str,
    group_id: &str,
) -> Result<Vec<NodeInfo>, AwsError> {
    Ok(members(rc, cluster)
        .await?
        .into_iter()
        .filter(|n| !n.security_group_ids.iter().any(|g| g == group_id))
        .collect())
}

/// Puts every live member of `cluster` into `group_id`, keeping its other groups that still
/// exist (a deleted and re-made cluster group leaves members in a group that is gone).
/// Returns the members as listed before (what a status needs: their ids, states and tags).
pub async fn ensure_members(
    rc: &RegionClients,
    cluster: &str,
    group_id: &str,
) -> Result<Vec<NodeInfo>, AwsError> {
    let all = members(rc, cluster).await?;
    ensure_listed_members(rc, group_id, all).await
}

/// Live home members of `cluster` as [`ensure_members`] lists them (source first, then
/// replicas, each by instance id).
pub async fn list_members(rc: &RegionClients, cluster: &str) -> Result<Vec<NodeInfo>, AwsError> {
    members(rc, cluster).await
}

/// [`ensure_members`] for members the caller listed (with [`list_members`], plus any it
/// launched since in `group_id`).
pub async fn ensure_listed_members(
    rc: &RegionClients,
    group_id: &str,
    all: Vec<NodeInfo>,
) -> Result<Vec<NodeInfo>, AwsError> {
    let outside: Vec<&NodeInfo> = all
        .iter()
        .filter(|n| !n.security_group_ids.iter().any(|g| g == group_id))
        .collect();
    for n in outside {
        let mut groups = vec![group_id.to_string()];
        if !n.security_group_ids.is_empty() {
            let out = rc
                .ec2
                .describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-id")
                        .set_values(Some(n.security_group_ids.clone()))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeSecurityGroups", &n.instance_id))?;
            groups.extend(
                out.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .filter(|g| g != group_id),
            );
        }
        tracing::info!(instance_id = %n.instance_id, ?groups, "repairing security group membership");
        rc.ec2
            .modify_instance_attribute()
            .instance_id(&n.instance_id)
            .set_groups(Some(groups))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "ec2:ModifyInstanceAttribute", &n.instance_id))?;
    }
    Ok(all)
}

/// Which of `names` (SSM parameters) do not exist.
pub async fn missing_parameters(
    rc: &RegionClients,
    names: &[String],
) -> Result<Vec<String>, AwsError> {
    let mut missing = Vec::new();
    for name in names {
        if let Err(e) = rc.ssm.get_parameter().name(name).send().await {
            let e = AwsError::from_sdk(e, "ssm:GetParameter", name);
            if e.is_not_found() {
                missing.push(name.clone());
            } else {
                return Err(e);
            }
        }
    }
    Ok(missing)
}
