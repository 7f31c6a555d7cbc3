//! The node role and instance profile Strata makes for a cluster: the agent's permissions
//! (`policy::node_policy`), created or found by name, removed only when tagged as the cluster's.

use std::collections::BTreeMap;

use super::cluster::ClusterSpec;
use super::config::{Clients, RegionClients};
use super::error::{AwsError, ErrorKind};
use super::policy;
use super::tags::TAG_CLUSTER;

const POLICY_NAME: &str = "strata-node-agent";

/// The IAM role and instance profile name Strata makes for a cluster (IAM is global, so the
/// region is part of it).
pub fn managed_profile_name(cluster: &str, region: &str) -> String {
    format!("strata-{cluster}-{region}")
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_iam::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

/// Makes the node role (trust: EC2; inline policy: `policy::node_policy`) and its instance
/// profile, or finds them. Returns whether anything was created now.
pub(super) async fn ensure_profile(
    clients: &Clients,
    rc: &RegionClients,
    spec: &ClusterSpec,
    name: &str,
    agent_bucket: Option<&str>,
) -> Result<bool, AwsError> {
    let what = format!("IAM role {name} of cluster {:?}", spec.name());
    let t = spec.object_tags(clients, "node-role", "iam", None);
    let mut created = false;
    // Create first: a new cluster's role does not exist, so the lookup is needed only when the
    // name is taken, and then it decides as before whether the role is this cluster's.
    let made = rc
        .iam
        .create_role()
        .role_name(name)
        .path("/strata/")
        .description(format!(
            "Strata node agent role for cluster {}",
            spec.name()
        ))
        .assume_role_policy_document(policy::trust_policy())
        .set_tags(Some(iam_tags(&t)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "iam:CreateRole", &what));
    match made {
        Ok(_) => created = true,
        Err(e) if e.is_kind(ErrorKind::AlreadyExists) => {
            let out = rc
                .iam
                .get_role()
                .role_name(name)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "iam:GetRole", &what))?;
            let owner = out
                .role()
                .map(|r| r.tags())
                .unwrap_or_default()
                .iter()
                .find(|t| t.key() == TAG_CLUSTER)
                .map(|t| t.value().to_string());
            if owner.as_deref() != Some(spec.name()) {
                return Err(AwsError::api(
                    "iam:GetRole",
                    &what,
                    "EntityAlreadyExists",
                    "a role with this name exists and is not tagged as this cluster's",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    // Put every time: it is idempotent and corrects a drifted policy.
    rc.iam
        .put_role_policy()
        .role_name(name)
        .policy_name(POLICY_NAME)
        .policy_document({
            let mut doc = policy::node_policy_value(
                &rc.region,
                spec.name(),
                agent_bucket,
                spec.zone.as_ref().map(|z| z.zone_id.as_str()),
            );
            if let Some((bucket, prefix)) = &spec.backup_store {
                policy::allow_backup_store(&mut doc, &rc.region, bucket, prefix);
            }
            if let Some((bucket, prefix)) = &spec.restore_read {
                policy::allow_restore_read(&mut doc, &rc.region, bucket, prefix);
            }
            doc.to_string()
        })
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "iam:PutRolePolicy", &what))?;

    let pwhat = format!("instance profile {name} of cluster {:?}", spec.name());
    // Create first, as for the role: a profile made now holds no role yet.
    let made = rc
        .iam
        .create_instance_profile()
        .instance_profile_name(name)
        .path("/strata/")
        .set_tags(Some(iam_tags(&t)))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "iam:CreateInstanceProfile", &pwhat));
    let roles_in_profile: Vec<String> = match made {
        Ok(_) => {
            created = true;
            Vec::new()
        }
        Err(e) if e.is_kind(ErrorKind::AlreadyExists) => rc
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "iam:GetInstanceProfile", &pwhat))?
            .instance_profile()
            .map(|p| {
                p.roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => return Err(e),
    };
    if !roles_in_profile.iter().any(|r| r == name) {
        rc.iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "iam:AddRoleToInstanceProfile", &pwhat))?;
    }
    Ok(created)
}

/// Removes a Strata-made profile and role (only if the role carries this cluster's tag).
pub(super) async fn delete_profile_and_role(
    rc: &RegionClients,
    name: &str,
    cluster: &str,
) -> Result<(), AwsError> {
    let what = format!("IAM role and instance profile {name}");
    let ignore_missing = |r: Result<(), AwsError>| match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    };
    let role_tags = match rc.iam.get_role().role_name(name).send().await {
        Ok(out) => Some(out.role().map(|r| r.tags().to_vec()).unwrap_or_default()),
        Err(e) => {
            let e = AwsError::from_sdk(e, "iam:GetRole", &what);
            if !e.is_not_found() {
                return Err(e);
            }
            None
        }
    };
    if let Some(t) = &role_tags
        && !t
            .iter()
            .any(|t| t.key() == TAG_CLUSTER && t.value() == cluster)
    {
        return Err(AwsError::Invalid(format!(
            "{what} is not tagged as cluster {cluster:?}'s; not deleting it"
        )));
    }
    ignore_missing(
        rc.iam
            .remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "iam:RemoveRoleFromInstanceProfile", &what)),
    )?;
    ignore_missing(
        rc.iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "iam:DeleteInstanceProfile", &what)),
    )?;
    if role_tags.is_none() {
        return Ok(());
    }
    ignore_missing(
        rc.iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "iam:DeleteRolePolicy", &what)),
    )?;
    ignore_missing(
        rc.iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(e, "iam:DeleteRole", &what)),
    )
}
