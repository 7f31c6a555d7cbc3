//! Replacing a lost home node (a replica, or the launched source once another node took over)
//! without a person (the contract: `strata_topology::replace`).
//!
//! Every node publishes its launch parameters when its agent starts ([`publish_launch_spec`]).
//! The source's agent, every few seconds, asks EC2 about home nodes that stopped
//! heartbeating ([`replace_lost`]); one whose instance is `terminated` and was not retired by
//! the provider is relaunched from its published parameters, once: the claim object is
//! created with `If-None-Match`, so two sources of successive epochs (or one source retrying)
//! never launch two twins. A stopped, unreachable or still shutting-down instance is never
//! replaced: only EC2's word that it is gone counts.

use super::store::{LeaseStore, StoreError};
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{
    IamInstanceProfileSpecification, InstanceStateName, ResourceType, Tag, TagSpecification,
};
use std::collections::BTreeMap;
use strata_topology::failover::Member;
use strata_topology::replace::{
    LaunchSpec, REPLACE_OBJECT_VERSION, Replacement, TAG_REPLACES, TAG_RETIRING, copied_tag,
    silent_home_nodes,
};

/// A claim older than this without a launched instance is taken over (its claimer died
/// between the claim and the launch).
const STALE_CLAIM_MS: u64 = 5 * 60 * 1000;

/// Reads this instance's launch parameters, user-data included, from EC2 and publishes them
/// under the node's id.
pub async fn publish_launch_spec(
    ec2: &aws_sdk_ec2::Client,
    store: &LeaseStore,
    node_id: &str,
    instance_id: &str,
    now_ms: u64,
) -> Result<(), String> {
    let out = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeInstances {instance_id}: {}",
                DisplayErrorContext(&e)
            )
        })?;
    let inst = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .ok_or_else(|| format!("DescribeInstances {instance_id}: no such instance"))?;
    // The exact user-data as EC2 holds it (base64 of the gzip the provider wrote), through
    // EC2 rather than the metadata service, which hands back the binary gzip.
    let user_data = ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeInstanceAttribute userData {instance_id}: {}",
                DisplayErrorContext(&e)
            )
        })?
        .user_data()
        .and_then(|v| v.value())
        .map(str::to_string)
        .ok_or_else(|| format!("instance {instance_id} has no user-data"))?;
    let spec = LaunchSpec {
        version: REPLACE_OBJECT_VERSION,
        node_id: node_id.to_string(),
        instance_id: instance_id.to_string(),
        image_id: inst.image_id().unwrap_or_default().to_string(),
        instance_type: inst
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        subnet_id: inst.subnet_id().unwrap_or_default().to_string(),
        security_group_ids: inst
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        instance_profile_arn: inst
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_string),
        user_data_base64: user_data,
        tags: inst
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .filter(|(k, _)| copied_tag(k))
            .collect(),
        published_at_ms: now_ms,
    };
    if spec.image_id.is_empty() || spec.subnet_id.is_empty() || spec.instance_type.is_empty() {
        return Err(format!(
            "DescribeInstances {instance_id}: image, subnet or type missing"
        ));
    }
    store
        .write_launch_spec(&spec)
        .await
        .map_err(|e| format!("writing the launch spec: {e}"))
}

/// What EC2 says of an instance: its state and whether the provider retired it.
async fn instance_fate(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<(InstanceStateName, bool)>, String> {
    match ec2.describe_instances().instance_ids(id).send().await {
        Ok(out) => Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .and_then(|i| {
                let st = i.state()?.name()?.clone();
                let retiring = i.tags().iter().any(|t| t.key() == Some(TAG_RETIRING));
                Some((st, retiring))
            })),
        Err(e) => {
            if e.as_service_error()
                .and_then(|s| s.meta().code())
                .is_some_and(|c| c == "InvalidInstanceID.NotFound")
            {
                Ok(None)
            } else {
                Err(format!(
                    "DescribeInstances {id}: {}",
                    DisplayErrorContext(&e)
                ))
            }
        }
    }
}

/// Checks the silent home nodes and relaunches those EC2 reports terminated. Returns what
/// it launched (node id, lost instance, new instance).
pub async fn replace_lost(
    ec2: &aws_sdk_ec2::Client,
    store: &LeaseStore,
    me: &str,
    members: &[Member],
    region: &str,
    now_ms: u64,
    silent_ms: u64,
) -> Vec<(String, String, String)> {
    let mut launched = Vec::new();
    for m in silent_home_nodes(members, region, now_ms, silent_ms) {
        let Some(lost) = m.instance_id.as_deref() else {
            continue;
        };
        match replace_one(ec2, store, me, &m.node_id, lost, now_ms).await {
            Ok(Some(new_id)) => launched.push((m.node_id.clone(), lost.to_string(), new_id)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(node = %m.node_id, instance = %lost, error = %e, "lost node not replaced")
            }
        }
    }
    launched
}

async fn replace_one(
    ec2: &aws_sdk_ec2::Client,
    store: &LeaseStore,
    me: &str,
    node_id: &str,
    lost: &str,
    now_ms: u64,
) -> Result<Option<String>, String> {
    // Already replaced (the member object names the lost instance until the twin's first
    // heartbeat): nothing to do.
    let claim = store
        .read_replacement(lost)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((c, _)) = &claim
        && (c.new_instance_id.is_some() || now_ms.saturating_sub(c.claimed_at_ms) < STALE_CLAIM_MS)
    {
        return Ok(None);
    }
    match instance_fate(ec2, lost).await? {
        Some((InstanceStateName::Terminated, false)) => {}
        Some((_, true)) => return Ok(None),
        // Running, stopped, stopping, shutting-down, or unknown to EC2: not lost (yet), or
        // nothing EC2 vouches for.
        _ => return Ok(None),
    }
    let Some(spec) = store
        .read_launch_spec(node_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("it never published its launch parameters".into());
    };
    let mut r = Replacement {
        version: REPLACE_OBJECT_VERSION,
        node_id: node_id.to_string(),
        lost_instance_id: lost.to_string(),
        claimed_by: me.to_string(),
        claimed_at_ms: now_ms,
        new_instance_id: None,
    };
    let etag = match store
        .write_replacement(&r, claim.as_ref().map(|(_, e)| e.as_str()))
        .await
    {
        Ok(e) => e,
        Err(StoreError::Conflict) => return Ok(None),
        Err(e) => return Err(format!("claiming the replacement: {e}")),
    };
    tracing::warn!(node = %node_id, instance = %lost, "a home node's instance is terminated: launching its replacement");
    let new_id = launch(ec2, &spec, lost).await?;
    r.new_instance_id = Some(new_id.clone());
    if let Err(e) = store.write_replacement(&r, Some(&etag)).await {
        // The instance runs and carries the tag the provider follows; only the record of it
        // is missing, and a stale claim is not relaunched while the instance exists.
        tracing::warn!(error = %e, "replacement launched but not recorded");
    }
    tracing::info!(node = %node_id, lost = %lost, new = %new_id, "replacement launched");
    Ok(Some(new_id))
}

async fn launch(
    ec2: &aws_sdk_ec2::Client,
    spec: &LaunchSpec,
    lost: &str,
) -> Result<String, String> {
    let mut tags: BTreeMap<String, String> = spec.tags.clone();
    tags.insert(TAG_REPLACES.to_string(), lost.to_string());
    let tag_spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build();
    let mut req = ec2
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(spec.instance_type.as_str().into())
        .subnet_id(&spec.subnet_id)
        .set_security_group_ids(Some(spec.security_group_ids.clone()))
        .user_data(&spec.user_data_base64)
        .min_count(1)
        .max_count(1)
        // AWS returns the first instance for a repeated token: a retried launch is one launch.
        .client_token(format!("strata-replace-{lost}"))
        .tag_specifications(tag_spec);
    if let Some(arn) = &spec.instance_profile_arn {
        req = req.iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
    }
    let out = req
        .send()
        .await
        .map_err(|e| format!("RunInstances: {}", DisplayErrorContext(&e)))?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .ok_or_else(|| "RunInstances returned no instance".to_string())
}
