//! IAM documents for the node role: the trust policy and the agent's least-privilege inline
//! policy. Pure functions, so the exact grants are unit-tested.

use serde_json::{Value, json};

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
///   only to this cluster's instances.
pub fn node_policy(home_region: &str, cluster: &str, agent_bucket: Option<&str>) -> String {
    node_policy_value(home_region, cluster, agent_bucket).to_string()
}

pub fn node_policy_value(home_region: &str, cluster: &str, agent_bucket: Option<&str>) -> Value {
    let part = partition(home_region);
    let tag_cond = json!({ "StringEquals": { "aws:ResourceTag/strata:cluster": cluster } });
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
    }
    statements.push(json!({
        "Sid": "ReportNodeState",
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": format!("arn:{part}:ec2:*:*:instance/*"),
        "Condition": {
            "StringEquals": { "aws:ResourceTag/strata:cluster": cluster },
            "ForAllValues:StringEquals": {
                "aws:TagKeys": [strata_topology::TAG_NODE_STATE, strata_topology::TAG_NODE_ERROR]
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
                    "ec2:DescribeInstances"
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
                "Condition": { "StringEquals": { "aws:RequestTag/strata:cluster": cluster } }
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
    fn policy_grants_only_the_cluster_parameters_and_tagged_volumes() {
        let p = node_policy_value("us-east-1", "orders", Some("strata-orders-1-us-east-1"));
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
            json!(["strata:node-state", "strata:node-error"])
        );
        assert!(!p.to_string().contains("s3:PutObject"));
        assert!(!p.to_string().contains("s3:*"));
        let baked = node_policy_value("us-east-1", "orders", None);
        assert!(!baked.to_string().contains("s3:"), "{baked}");
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
            if mutating {
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
