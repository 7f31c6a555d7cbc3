//! Where validated backups live (docs/backups.md): one bucket per account and region,
//! `strata-<account>-<region>-backups`, that no cluster owns, so destroying a cluster does not
//! delete its backups (the way RDS keeps a deleted instance's snapshots). Each cluster writes
//! under its own generation, `backups/<cluster>/<created>/`, so a later cluster of the same
//! name never lists, restores, retains or deletes what an earlier one left.
//!
//! On destroy, [`settle_on_destroy`] deletes what cannot be restored (pending and failed
//! backups, stray chunks) and keeps the validated backups, unless the cluster's
//! `backup_policy.delete_backups_on_destroy` says to delete them too.

use std::collections::{BTreeMap, BTreeSet};

use strata_topology::backup::{
    Validation, backup_bucket_name, default_key_prefix, manifest_key, parse_backup_id,
    parse_backup_tags, parse_generation_prefix,
};
use strata_topology::tags::{TAG_CLUSTER, TAG_RESOURCE, TAG_ROLE};

use super::artifact;
use super::config::{Clients, RegionClients};
use super::error::AwsError;

/// `strata:role` and `strata:resource` of the backup bucket: Strata's, and no cluster's.
pub const BUCKET_ROLE: &str = "backups";
pub const BUCKET_RESOURCE: &str = "strata-backups";

/// Whether a bucket's tags say it is Strata's backup bucket (and no cluster's own bucket).
pub fn bucket_is_backup_store(tags: &BTreeMap<String, String>) -> bool {
    tags.get(TAG_ROLE).map(String::as_str) == Some(BUCKET_ROLE)
        && tags.get(TAG_RESOURCE).map(String::as_str) == Some(BUCKET_RESOURCE)
        && !tags.contains_key(TAG_CLUSTER)
}

/// The backup bucket's tags: the provider's default tags and the two that make it Strata's.
pub fn bucket_tags(default_tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = default_tags
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:") && !k.starts_with("strata:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.insert(TAG_ROLE.into(), BUCKET_ROLE.into());
    t.insert(TAG_RESOURCE.into(), BUCKET_RESOURCE.into());
    t
}

/// The backup bucket of the provider's account in `rc`'s region.
pub async fn bucket_name(c: &Clients, rc: &RegionClients) -> Result<String, AwsError> {
    Ok(backup_bucket_name(&c.account_id().await?, &rc.region))
}

/// Finds the backup bucket by name and tags, or makes it (private, encrypted, tagged). It is
/// never deleted by Strata: it outlives every cluster that wrote to it.
pub async fn ensure_bucket(c: &Clients, rc: &RegionClients) -> Result<String, AwsError> {
    let bucket = bucket_name(c, rc).await?;
    let what = format!("backup bucket {bucket}");
    artifact::ensure_bucket_owned(
        rc,
        &bucket,
        &what,
        &bucket_is_backup_store,
        &format!("{TAG_ROLE}={BUCKET_ROLE} {TAG_RESOURCE}={BUCKET_RESOURCE}"),
        &bucket_tags(c.default_tags()),
    )
    .await?;
    Ok(bucket)
}

/// Every key under `prefix/` (paginated).
async fn list_keys(
    rc: &RegionClients,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, AwsError> {
    let what = format!("s3://{bucket}/{prefix}/");
    let mut pages = rc
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{}/", prefix.trim_end_matches('/')))
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => keys.extend(
                p.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            ),
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:ListObjectsV2", &what);
                if e.is_not_found() {
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        }
    }
    Ok(keys)
}

/// The generations of clusters named `cluster` that left backups, oldest first.
async fn generations(
    rc: &RegionClients,
    bucket: &str,
    cluster: &str,
) -> Result<Vec<String>, AwsError> {
    let prefix = format!("{}/", default_key_prefix(cluster));
    let what = format!("s3://{bucket}/{prefix}");
    let mut pages = rc
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(
                p.common_prefixes()
                    .iter()
                    .filter_map(|c| parse_generation_prefix(cluster, c.prefix()?)),
            ),
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:ListObjectsV2", &what);
                if e.is_not_found() {
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The key prefix (`backups/<cluster>/<generation>`) holding backup `backup_id` of a cluster
/// named `cluster`, existing or destroyed; None when no generation has its manifest.
pub async fn find_backup(
    rc: &RegionClients,
    bucket: &str,
    cluster: &str,
    backup_id: &str,
) -> Result<Option<String>, AwsError> {
    // Newest generation first: the likeliest to hold a backup someone restores.
    for g in generations(rc, bucket, cluster).await?.into_iter().rev() {
        let prefix = strata_topology::backup::generation_key_prefix(cluster, &g);
        let key = manifest_key(&prefix, backup_id);
        match rc.s3.head_object().bucket(bucket).key(&key).send().await {
            Ok(_) => return Ok(Some(prefix)),
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:HeadObject", &format!("s3://{bucket}/{key}"));
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
    }
    Ok(None)
}

/// What [`settle_on_destroy`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Validated backups left in place, oldest first.
    pub kept: Vec<String>,
    /// Objects deleted.
    pub deleted_objects: usize,
}

/// Which keys under `prefix` to delete on destroy: every key when `delete_all`, else every key
/// that is not part of a validated backup (pending and failed backups, and objects of no
/// backup). `validated` lists the validated backup ids.
pub fn keys_to_delete(
    prefix: &str,
    keys: &[String],
    validated: &BTreeSet<String>,
    delete_all: bool,
) -> Vec<String> {
    let base = format!("{}/", prefix.trim_end_matches('/'));
    keys.iter()
        .filter(|k| {
            if delete_all {
                return true;
            }
            let id = k
                .strip_prefix(&base)
                .and_then(|rest| rest.split_once('/'))
                .map(|(id, _)| id);
            !id.is_some_and(|id| validated.contains(id))
        })
        .cloned()
        .collect()
}

/// After the cluster's nodes are gone: deletes what of its backups cannot be restored, and the
/// validated ones too when `delete_all`. Safe to repeat.
pub async fn settle_on_destroy(
    rc: &RegionClients,
    bucket: &str,
    prefix: &str,
    delete_all: bool,
) -> Result<Settled, AwsError> {
    let keys = list_keys(rc, bucket, prefix).await?;
    let base = format!("{}/", prefix.trim_end_matches('/'));
    let mut validated = BTreeSet::new();
    if !delete_all {
        for k in &keys {
            let Some(id) = k
                .strip_prefix(&base)
                .and_then(|r| r.strip_suffix("/manifest.json"))
                .filter(|id| parse_backup_id(id).is_some())
            else {
                continue;
            };
            let what = format!("s3://{bucket}/{k}");
            let tags = match rc
                .s3
                .get_object_tagging()
                .bucket(bucket)
                .key(k)
                .send()
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    let e = AwsError::from_sdk(e, "s3:GetObjectTagging", &what);
                    if e.is_not_found() {
                        continue;
                    }
                    return Err(e);
                }
            };
            let parsed = parse_backup_tags(tags.tag_set().iter().map(|t| (t.key(), t.value())));
            if matches!(parsed, Ok(ref t) if t.validation == Validation::Validated) {
                validated.insert(id.to_string());
            }
        }
    }
    let doomed = keys_to_delete(prefix, &keys, &validated, delete_all);
    // Manifests last: a backup whose chunks are half deleted must not look restorable if the
    // destroy is cut short (a missing manifest makes the rest strays for the next attempt).
    let (manifests, rest): (Vec<_>, Vec<_>) =
        doomed.iter().partition(|k| k.ends_with("/manifest.json"));
    for k in rest.into_iter().chain(manifests) {
        match rc.s3.delete_object().bucket(bucket).key(k).send().await {
            Ok(_) => {}
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:DeleteObject", &format!("s3://{bucket}/{k}"));
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
    }
    Ok(Settled {
        kept: validated.into_iter().collect(),
        deleted_objects: doomed.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroy_keeps_validated_backups_only_unless_told() {
        let p = "backups/orders/20261130T000000000Z";
        let (v, f) = ("20261130T010000000Z", "20261130T020000000Z");
        let keys: Vec<String> = [
            format!("{p}/{v}/chunk-000000"),
            format!("{p}/{v}/manifest.json"),
            format!("{p}/{f}/chunk-000000"),
            format!("{p}/{f}/manifest.json"),
            format!("{p}/stray"),
        ]
        .into();
        let validated: BTreeSet<String> = [v.to_string()].into();
        assert_eq!(
            keys_to_delete(p, &keys, &validated, false),
            vec![
                format!("{p}/{f}/chunk-000000"),
                format!("{p}/{f}/manifest.json"),
                format!("{p}/stray"),
            ]
        );
        assert_eq!(keys_to_delete(p, &keys, &validated, true), keys);
        // Nothing validated: everything goes.
        assert_eq!(keys_to_delete(p, &keys, &BTreeSet::new(), false), keys);
    }

    #[test]
    fn the_backup_bucket_is_no_clusters() {
        let mut defaults = BTreeMap::new();
        defaults.insert("team".to_string(), "db".to_string());
        defaults.insert("strata:cluster".to_string(), "orders".to_string());
        let t = bucket_tags(&defaults);
        assert!(bucket_is_backup_store(&t));
        assert_eq!(t.get("team").map(String::as_str), Some("db"));
        assert!(!t.contains_key(TAG_CLUSTER));
        let mut agent_bucket = t.clone();
        agent_bucket.insert(TAG_CLUSTER.into(), "orders".into());
        assert!(!bucket_is_backup_store(&agent_bucket));
        assert!(!bucket_is_backup_store(&BTreeMap::new()));
    }
}
