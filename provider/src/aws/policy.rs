//! IAM documents for the node role: the trust policy and the agent's least-privilege inline
//! policy. Pure functions, so the exact grants are unit-tested.

use serde_json::{Value, json};
use strata_topology::tags::{request_tag_condition_key, resource_tag_condition_key};

/// The partition of a region (`aws`, `aws-cn`, `aws-us-gov`), for ARNs.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The ARN of an SSM parameter. The account is left as a wildcard so no STS call is needed;
/// the path (cluster name) is what narrows it.
pub fn parameter_arn(region: &str, parameter_name: &str) -> String {
    format!(
        "arn:{}:ssm:{}:*:parameter/{}",
        partition(region),
        region,
        parameter_name.trim_start_matches('/')
    )
}

/// EC2 may assume the node role.
pub fn trust_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "ec2.amazonaws.com" },
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// The ARN of the objects under `agent/` in the cluster's agent bucket.
pub fn agent_objects_arn(home_region: &str, bucket: &str) -> String {
    format!("arn:{}:s3:::{bucket}/agent/*", partition(home_region))
}

/// What the node agent may do, and nothing more:
/// - read the cluster's two SSM parameters (replication and admin credentials) and decrypt
///   them, only through SSM;
/// - fetch the agent build from the cluster's own bucket (`agent_bucket`; `None` when the
///   image has the agent baked in);
/// - see volumes and instances (Describe* cannot be narrowed by resource);
/// - tag this cluster's instances with their node state (those two tag keys only);
/// - create, attach, grow and tag volumes only when they carry this cluster's tag, and attach
///   only to this cluster's instances;
/// - failover (when the cluster has its bucket): read and write the lease, member and
///   switchover objects under `failover/<cluster>/` of that bucket (and list only that prefix);
///   move the records of the cluster's zone (`zone_id`); stop (fence) only this cluster's
///   instances; tag its own instance with its current role and the last failover; relaunch a
///   lost home replica (RunInstances only as a cluster-tagged instance, passing only the
///   cluster's own node role).
pub fn node_policy(
    home_region: &str,
    cluster: &str,
    agent_bucket: Option<&str>,
    zone_id: Option<&str>,
) -> String {
    node_policy_value(home_region, cluster, agent_bucket, zone_id).to_string()
}

/// A cluster made from a backup (`restore_from`): its nodes may read that backup's objects
/// and tags in the other cluster's bucket, nothing else there.
pub fn allow_restore_read(doc: &mut Value, home_region: &str, bucket: &str, prefix: &str) {
    let part = partition(home_region);
    let prefix = prefix.trim_end_matches('/');
    if let Some(statements) = doc.get_mut("Statement").and_then(Value::as_array_mut) {
        statements.push(json!({
            "Sid": "RestoreFromBackup",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectTagging"],
            "Resource": format!("arn:{part}:s3:::{bucket}/{prefix}/*")
        }));
    }
}

/// A cluster with `backup_policy`: its nodes may write, read, tag and delete backup objects
/// under the cluster's own prefix (its generation) in the backup bucket, and list that prefix;
/// nothing else there (not the backups of other clusters, nor of earlier clusters of its name).
pub fn allow_backup_store(doc: &mut Value, home_region: &str, bucket: &str, prefix: &str) {
    let part = partition(home_region);
    let prefix = prefix.trim_end_matches('/');
    if let Some(statements) = doc.get_mut("Statement").and_then(Value::as_array_mut) {
        statements.push(json!({
            "Sid": "BackupObjects",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:GetObjectTagging",
                "s3:PutObjectTagging"
            ],
            "Resource": format!("arn:{part}:s3:::{bucket}/{prefix}/*")
        }));
        statements.push(json!({
            "Sid": "BackupList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": format!("arn:{part}:s3:::{bucket}"),
            "Condition": { "StringLike": { "s3:prefix": [format!("{prefix}/*")] } }
        }));
    }
}

/// The tag keys an agent writes on its own instance (node state, and the failover facts).
pub fn agent_tag_keys() -> Vec<&'static str> {
    vec![
        strata_topology::TAG_NODE_STATE,
        strata_topology::TAG_NODE_ERROR,
        strata_topology::TAG_CURRENT_ROLE,
        strata_topology::TAG_LEASE_EPOCH,
        strata_topology::TAG_LAST_FAILOVER_AT,
        strata_topology::TAG_LAST_FAILOVER_REASON,
        strata_topology::TAG_LAST_FAILOVER_DURATION_MS,
    ]
}

/// The ARN of a Route 53 hosted zone (global: no region, no account).
pub fn zone_arn(home_region: &str, zone_id: &str) -> String {
    format!(
        "arn:{}:route53:::hostedzone/{}",
        partition(home_region),
        super::dns::short_zone_id(zone_id)
    )
}

pub fn node_policy_value(
    home_region: &str,
    cluster: &str,
    agent_bucket: Option<&str>,
    zone_id: Option<&str>,
) -> Value {
    let part = partition(home_region);
    let tag_cond = json!({ "StringEquals": { resource_tag_condition_key(): cluster } });
    let mut statements = vec![json!({
        "Sid": "ReadClusterParameters",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter", "ssm:GetParameters"],
        "Resource": [
            parameter_arn(home_region, &super::cluster::replication_parameter_name(cluster)),
            parameter_arn(home_region, &super::cluster::admin_parameter_name(cluster)),
        ]
    })];
    if let Some(bucket) = agent_bucket {
        statements.push(json!({
            "Sid": "FetchAgentBuild",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": agent_objects_arn(home_region, bucket)
        }));
        let prefix = strata_topology::failover::default_key_prefix(cluster);
        statements.push(json!({
            "Sid": "FailoverLeaseObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": format!("arn:{part}:s3:::{bucket}/{prefix}/*")
        }));
        statements.push(json!({
            "Sid": "FailoverListMembers",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": format!("arn:{part}:s3:::{bucket}"),
            "Condition": { "StringLike": { "s3:prefix": [format!("{prefix}/*")] } }
        }));
        // Replacing a lost home replica (strata_topology::replace): launch its twin from the
        // parameters it published, as the cluster's own instance (tagged on create), with the
        // cluster's own role.
        statements.push(json!({
            "Sid": "ReplaceLostReplicaInstance",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": format!("arn:{part}:ec2:*:*:instance/*"),
            "Condition": { "StringEquals": { "aws:RequestTag/strata:cluster": cluster } }
        }));
        statements.push(json!({
            "Sid": "ReplaceLostReplicaLaunchResources",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [
                format!("arn:{part}:ec2:*::image/*"),
                format!("arn:{part}:ec2:*:*:subnet/*"),
                format!("arn:{part}:ec2:*:*:security-group/*"),
                format!("arn:{part}:ec2:*:*:network-interface/*"),
                format!("arn:{part}:ec2:*:*:volume/*")
            ]
        }));
        statements.push(json!({
            "Sid": "TagReplacementOnLaunch",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": format!("arn:{part}:ec2:*:*:instance/*"),
            "Condition": { "StringEquals": { "ec2:CreateAction": "RunInstances" } }
        }));
        statements.push(json!({
            "Sid": "PassNodeRoleToReplacement",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": format!(
                "arn:{part}:iam::*:role/strata/{}",
                super::cluster::managed_profile_name(cluster, home_region)
            ),
            "Condition": { "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } }
        }));
        statements.push(json!({
            "Sid": "FenceClusterInstances",
            "Effect": "Allow",
            "Action": "ec2:StopInstances",
            "Resource": format!("arn:{part}:ec2:*:*:instance/*"),
            "Condition": tag_cond.clone()
        }));
    }
    if let Some(zone) = zone_id {
        statements.push(json!({
            "Sid": "MoveClusterEndpoints",
            "Effect": "Allow",
            "Action": [
                "route53:ChangeResourceRecordSets",
                "route53:ListResourceRecordSets",
                "route53:GetHostedZone"
            ],
            "Resource": zone_arn(home_region, zone)
        }));
        statements.push(json!({
            "Sid": "WaitForRecordChanges",
            "Effect": "Allow",
            "Action": "route53:GetChange",
            "Resource": format!("arn:{part}:route53:::change/*")
        }));
    }
    statements.push(json!({
        "Sid": "ReportNodeState",
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": format!("arn:{part}:ec2:*:*:instance/*"),
        "Condition": {
            "StringEquals": { resource_tag_condition_key(): cluster },
            "ForAllValues:StringEquals": {
                "aws:TagKeys": agent_tag_keys()
            }
        }
    }));
    let rest = json!([
            {
                "Sid": "DecryptViaSsm",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": { "StringEquals": {
                    "kms:ViaService": format!("ssm.{home_region}.amazonaws.com")
                } }
            },
            {
                "Sid": "DescribeStorage",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeVolumes",
                    "ec2:DescribeVolumesModifications",
                    "ec2:DescribeVolumeStatus",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceAttribute"
                ],
                "Resource": "*"
            },
            {
                "Sid": "GrowAndAttachClusterVolumes",
                "Effect": "Allow",
                "Action": ["ec2:ModifyVolume", "ec2:AttachVolume"],
                "Resource": [
                    format!("arn:{part}:ec2:*:*:volume/*"),
                    format!("arn:{part}:ec2:*:*:instance/*")
                ],
                "Condition": tag_cond
            },
            {
                "Sid": "CreateClusterVolumes",
                "Effect": "Allow",
                "Action": "ec2:CreateVolume",
                "Resource": format!("arn:{part}:ec2:*:*:volume/*"),
                "Condition": { "StringEquals": { request_tag_condition_key(): cluster } }
            },
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": format!("arn:{part}:ec2:*:*:volume/*"),
                "Condition": { "StringEquals": { "ec2:CreateAction": "CreateVolume" } }
            },
            {
                "Sid": "TagClusterVolumes",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": format!("arn:{part}:ec2:*:*:volume/*"),
                "Condition": tag_cond
            }
    ]);
    if let Value::Array(r) = rest {
        statements.extend(r);
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_granted_under_the_clusters_generation_only() {
        let mut p = node_policy_value(
            "us-east-1",
            "orders",
            Some("strata-orders-1-us-east-1"),
            None,
        );
        let (bucket, prefix) = (
            "strata-1-us-east-1-backups",
            "backups/orders/20261130T000000000Z",
        );
        allow_backup_store(&mut p, "us-east-1", bucket, prefix);
        let st = p["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| st.iter().find(|s| s["Sid"] == sid).unwrap();
        assert_eq!(
            by_sid("BackupObjects")["Resource"],
            format!("arn:aws:s3:::{bucket}/{prefix}/*")
        );
        assert_eq!(
            by_sid("BackupList")["Condition"]["StringLike"]["s3:prefix"],
            json!([format!("{prefix}/*")])
        );
        // Not the name's other generations, nor the bucket as a whole.
        assert!(!p.to_string().contains("backups/orders/*"));
        assert!(!p.to_string().contains(&format!("{bucket}/*")));
    }

    #[test]
    fn policy_grants_only_the_cluster_parameters_and_tagged_volumes() {
        let p = node_policy_value(
            "us-east-1",
            "orders",
            Some("strata-orders-1-us-east-1"),
            Some("/hostedzone/Z0ORDERS"),
        );
        let st = p["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| {
            st.iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("no {sid} in {p}"))
        };
        let ssm = by_sid("ReadClusterParameters");
        assert_eq!(
            ssm["Resource"],
            json!([
                "arn:aws:ssm:us-east-1:*:parameter/strata/orders/replication",
                "arn:aws:ssm:us-east-1:*:parameter/strata/orders/admin-password"
            ])
        );
        let s3 = by_sid("FetchAgentBuild");
        assert_eq!(s3["Action"], "s3:GetObject");
        assert_eq!(
            s3["Resource"],
            "arn:aws:s3:::strata-orders-1-us-east-1/agent/*"
        );
        let tag = by_sid("ReportNodeState");
        assert_eq!(tag["Resource"], "arn:aws:ec2:*:*:instance/*");
        assert_eq!(
            tag["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
            json!([
                "strata:node-state",
                "strata:node-error",
                "strata:current-role",
                "strata:lease-epoch",
                "strata:last-failover-at",
                "strata:last-failover-reason",
                "strata:last-failover-duration-ms"
            ])
        );
        assert!(!p.to_string().contains("s3:*"));
        // Writes to the bucket only under the cluster's failover prefix.
        let lease = by_sid("FailoverLeaseObjects");
        assert_eq!(
            lease["Action"],
            json!(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        );
        assert_eq!(
            lease["Resource"],
            "arn:aws:s3:::strata-orders-1-us-east-1/failover/orders/*"
        );
        for s in st {
            if s.to_string().contains("s3:PutObject") {
                assert!(
                    s["Sid"] == "FailoverLeaseObjects" || s["Sid"] == "BackupObjects",
                    "{s}"
                );
            }
        }
        // Backups: none without a backup policy.
        assert!(st.iter().all(|s| s["Sid"] != "BackupObjects"), "{p}");
        let list = by_sid("FailoverListMembers");
        assert_eq!(list["Resource"], "arn:aws:s3:::strata-orders-1-us-east-1");
        assert_eq!(
            list["Condition"]["StringLike"]["s3:prefix"],
            json!(["failover/orders/*"])
        );
        // Route 53: only the cluster's zone.
        let dns = by_sid("MoveClusterEndpoints");
        assert_eq!(dns["Resource"], "arn:aws:route53:::hostedzone/Z0ORDERS");
        assert!(
            dns["Action"]
                .as_array()
                .unwrap()
                .contains(&json!("route53:ChangeResourceRecordSets"))
        );
        assert!(!p.to_string().contains("route53:*"));
        assert!(!p.to_string().contains("hostedzone/*"));
        // Fencing stops only the cluster's own instances; nothing terminates.
        let fence = by_sid("FenceClusterInstances");
        assert_eq!(fence["Action"], "ec2:StopInstances");
        assert_eq!(
            fence["Condition"]["StringEquals"]["aws:ResourceTag/strata:cluster"],
            "orders"
        );
        let baked = node_policy_value("us-east-1", "orders", None, None);
        assert!(!baked.to_string().contains("s3:"), "{baked}");
        assert!(!baked.to_string().contains("route53:"), "{baked}");
        let kms = by_sid("DecryptViaSsm");
        assert_eq!(
            kms["Condition"]["StringEquals"]["kms:ViaService"],
            "ssm.us-east-1.amazonaws.com"
        );
        // Every mutating EC2 statement is conditioned on the cluster tag or on tag-on-create.
        for s in st {
            let actions = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                _ => panic!(),
            };
            let mutating = actions
                .iter()
                .any(|a| a.starts_with("ec2:") && !a.starts_with("ec2:Describe"));
            // The launch resources a replacement uses (subnet, image, ...) cannot carry the
            // cluster's tag; the instance statement, which every launch also needs, does.
            if mutating && s["Sid"] != "ReplaceLostReplicaLaunchResources" {
                let c = s["Condition"]["StringEquals"].as_object().unwrap();
                assert!(
                    c.get("aws:ResourceTag/strata:cluster")
                        .map(|v| v == "orders")
                        .unwrap_or(false)
                        || c.get("aws:RequestTag/strata:cluster")
                            .map(|v| v == "orders")
                            .unwrap_or(false)
                        || c.get("ec2:CreateAction").is_some(),
                    "unconditioned: {s}"
                );
            }
            assert!(
                !actions
                    .iter()
                    .any(|a| a.contains('*') && !a.starts_with("ec2:Describe"))
            );
        }
        assert!(!p.to_string().contains("TerminateInstances"));
    }

    #[test]
    fn partitions_and_arns() {
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(
            parameter_arn("cn-north-1", "/strata/x/replication"),
            "arn:aws-cn:ssm:cn-north-1:*:parameter/strata/x/replication"
        );
        let t: Value = serde_json::from_str(&trust_policy()).unwrap();
        assert_eq!(
            t["Statement"][0]["Principal"]["Service"],
            "ec2.amazonaws.com"
        );
    }
}
