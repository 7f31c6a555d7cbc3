//! The agent binary on its way to the nodes: found next to the provider's own executable,
//! hashed once per provider process, and uploaded into the cluster's own private, encrypted S3
//! bucket, from which first boot fetches it with the instance role. Nodes never download the
//! agent from anywhere public.
//!
//! The bucket is the cluster's: tagged like every object Strata makes, found again by its name
//! and those tags (a bucket with that name that carries other tags is an error, never adopted),
//! emptied and deleted with the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging,
};
use strata_topology::{Arch, agent_file_name};
use tokio::sync::OnceCell;

use super::config::RegionClients;
use super::error::{AwsError, ErrorKind};
use super::tags::{TAG_CLUSTER, TAG_RESOURCE};

/// The version agent builds are filed under in the bucket: the provider's own (they ship
/// together).
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Overrides the folder the agent builds are looked up in (default: the provider's own).
pub const AGENT_DIR_ENV: &str = "STRATA_AGENT_DIR";
/// The name a plain `cargo build` gives the agent; used for the host's architecture only.
pub const DEV_AGENT_FILE: &str = "strata-agent";

/// One agent build on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBuild {
    pub arch: Arch,
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
}

/// The architecture this provider runs on, when it is one an agent can be built for.
pub fn host_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::X86_64),
        "aarch64" => Some(Arch::Aarch64),
        _ => None,
    }
}

/// The agent build a cluster's create uploads, and where to.
#[derive(Debug, Clone)]
pub struct AgentUpload {
    pub bucket: String,
    pub key: String,
    pub build: Arc<AgentBuild>,
}

/// Where agent builds are looked for: `$STRATA_AGENT_DIR`, else the provider executable's
/// folder (release archives carry the agents beside the provider binary).
pub fn agent_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(AGENT_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The files that may hold the agent for `arch`, in the order they are tried: the release name
/// (`strata-agent_linux_<arch>`), then, only when `arch` is the host's own, a development
/// build's plain `strata-agent`.
pub fn agent_candidates(dir: &Path, arch: Arch, host: Option<Arch>) -> Vec<PathBuf> {
    let mut c = vec![dir.join(agent_file_name(arch))];
    if host == Some(arch) {
        c.push(dir.join(DEV_AGENT_FILE));
    }
    c
}

/// The agent file for `arch`, without reading it (cheap enough for plan time).
pub fn find_agent(arch: Arch) -> Result<PathBuf, AwsError> {
    let dir = agent_dir();
    let candidates = dir
        .as_deref()
        .map(|d| agent_candidates(d, arch, host_arch()))
        .unwrap_or_default();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| AwsError::NoAgentBuild {
            arch: arch.to_string(),
            looked_for: candidates.iter().map(|p| p.display().to_string()).collect(),
        })
}

static X86_64_BUILD: OnceCell<Arc<AgentBuild>> = OnceCell::const_new();
static AARCH64_BUILD: OnceCell<Arc<AgentBuild>> = OnceCell::const_new();

/// The agent build for `arch` with its SHA-256, computed once per provider process (a missing
/// build is not remembered, so a retry after fixing it works).
pub async fn local_agent(arch: Arch) -> Result<Arc<AgentBuild>, AwsError> {
    let cell = match arch {
        Arch::X86_64 => &X86_64_BUILD,
        Arch::Aarch64 => &AARCH64_BUILD,
    };
    cell.get_or_try_init(|| async move {
        let path = find_agent(arch)?;
        let p = path.clone();
        // Tens of megabytes: hash it off the async threads.
        let (sha256, size) = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| AwsError::Invalid(format!("hashing the agent build failed: {e}")))?
            .map_err(|e| {
                AwsError::Invalid(format!(
                    "cannot read the agent build {}: {e}",
                    path.display()
                ))
            })?;
        tracing::debug!(path = %path.display(), %sha256, size, "agent build found");
        Ok(Arc::new(AgentBuild {
            arch,
            path,
            sha256,
            size,
        }))
    })
    .await
    .cloned()
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Whether a bucket's tags say it belongs to this cluster and resource.
pub fn bucket_is_ours(tags: &BTreeMap<String, String>, cluster: &str, resource: &str) -> bool {
    tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
        && tags.get(TAG_RESOURCE).map(String::as_str) == Some(resource)
}

/// Object tags go in a URL query string (`k=v&k=v`): everything but unreserved characters is
/// percent-encoded (`strata:cluster` becomes `strata%3Acluster`).
pub fn tagging_query(tags: &BTreeMap<String, String>) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    tags.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn s3_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// The bucket's tags; empty when it has none. Not-found when the bucket does not exist.
pub async fn bucket_tags(
    rc: &RegionClients,
    bucket: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let what = format!("S3 bucket {bucket}");
    match rc.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()),
        Err(e) => {
            let e = AwsError::from_sdk(e, "s3:GetBucketTagging", &what);
            if e.code() == Some("NoSuchTagSet") {
                Ok(BTreeMap::new())
            } else {
                Err(e)
            }
        }
    }
}

/// Whether the bucket exists (and this account may see it). A bucket of the same name in
/// another account answers 403: an error, since S3 names are global.
pub async fn bucket_exists(rc: &RegionClients, bucket: &str) -> Result<bool, AwsError> {
    let what = format!("S3 bucket {bucket}");
    match rc.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::from_sdk(e, "s3:HeadBucket", &what);
            if e.is_not_found() {
                Ok(false)
            } else if e.is_kind(ErrorKind::Unauthorized) {
                Err(AwsError::api(
                    "s3:HeadBucket",
                    &what,
                    "BucketAlreadyExists",
                    "a bucket with this name exists and this account cannot use it (S3 bucket \
                     names are global)",
                ))
            } else {
                Err(e)
            }
        }
    }
}

/// Finds the cluster's bucket by name and tags, or makes it: private (all four public-access
/// blocks), encrypted by default (SSE-S3), tagged. Returns whether it was created now.
pub async fn ensure_bucket(
    rc: &RegionClients,
    bucket: &str,
    cluster: &str,
    resource: &str,
    tags: &BTreeMap<String, String>,
) -> Result<bool, AwsError> {
    let what = format!("agent bucket {bucket} of cluster {cluster:?}");
    ensure_bucket_owned(
        rc,
        bucket,
        &what,
        &|found| bucket_is_ours(found, cluster, resource),
        &format!("{TAG_CLUSTER}={cluster} {TAG_RESOURCE}={resource}"),
        tags,
    )
    .await
}

/// [`ensure_bucket`] with the ownership test given: `is_ours` decides whether an existing
/// bucket of that name is Strata's (`ours_tags` says which tags it wants, for the error).
pub async fn ensure_bucket_owned(
    rc: &RegionClients,
    bucket: &str,
    what: &str,
    is_ours: &(dyn Fn(&BTreeMap<String, String>) -> bool + Sync),
    ours_tags: &str,
    tags: &BTreeMap<String, String>,
) -> Result<bool, AwsError> {
    let mut created = false;
    if bucket_exists(rc, bucket).await? {
        let found = bucket_tags(rc, bucket).await?;
        if !is_ours(&found) {
            return Err(AwsError::api(
                "s3:GetBucketTagging",
                what,
                "BucketAlreadyExists",
                &format!(
                    "a bucket with this name exists and is not tagged {ours_tags}; Strata does \
                     not adopt it. Delete or rename it"
                ),
            ));
        }
    } else {
        let mut req = rc.s3.create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if rc.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(rc.region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => created = true,
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:CreateBucket", what);
                // Made by a concurrent or earlier attempt of ours: the tag check below decides.
                if e.code() != Some("BucketAlreadyOwnedByYou") {
                    return Err(e);
                }
            }
        }
        rc.s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(
                Tagging::builder()
                    .set_tag_set(Some(s3_tags(tags)))
                    .build()
                    .map_err(|e| AwsError::Invalid(format!("bucket tags: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "s3:PutBucketTagging", what))?;
    }
    // A bucket CreateBucket just made is private and encrypted already: since 2023 S3 gives
    // every new bucket all four public-access blocks and SSE-S3 (AES256) default encryption,
    // exactly the settings below (LocalStack does the same). A bucket that was there before
    // (a retried or adopted create) gets them put again: that corrects one someone opened up.
    if created {
        return Ok(true);
    }
    rc.s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "s3:PutPublicAccessBlock", what))?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| AwsError::Invalid(format!("bucket encryption: {e}")))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .build(),
        )
        .build()
        .map_err(|e| AwsError::Invalid(format!("bucket encryption: {e}")))?;
    rc.s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "s3:PutBucketEncryption", what))?;
    Ok(false)
}

/// Uploads the build at `key` unless the object is there already (keys are content-addressed,
/// so an existing object is this build). Returns whether it was uploaded now. Checked once per
/// key and process. `bucket_made_now`: the bucket was created by this call's caller, so it
/// holds nothing and the check is skipped (an upload to a content-addressed key writes the
/// same bytes whatever was there).
pub async fn ensure_object(
    rc: &RegionClients,
    bucket: &str,
    key: &str,
    build: &AgentBuild,
    tags: &BTreeMap<String, String>,
    bucket_made_now: bool,
) -> Result<bool, AwsError> {
    let mut asked = false;
    let asked_now = &mut asked;
    let uploaded = rc
        .shared
        .uploaded
        .get_or_try(&format!("{bucket}/{key}"), move || async move {
            *asked_now = true;
            put_object_if_missing(rc, bucket, key, build, tags, !bucket_made_now).await
        })
        .await?;
    Ok(asked && uploaded)
}

/// Uploads the build unless (`check`) the object exists; true when it uploaded.
async fn put_object_if_missing(
    rc: &RegionClients,
    bucket: &str,
    key: &str,
    build: &AgentBuild,
    tags: &BTreeMap<String, String>,
    check: bool,
) -> Result<bool, AwsError> {
    let what = format!("s3://{bucket}/{key}");
    if check {
        match rc.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => return Ok(false),
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:HeadObject", &what);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
    }
    let body = ByteStream::from_path(&build.path).await.map_err(|e| {
        AwsError::Invalid(format!(
            "cannot read the agent build {}: {e}",
            build.path.display()
        ))
    })?;
    rc.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .content_type("application/octet-stream")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .metadata("sha256", &build.sha256)
        .tagging(tagging_query(tags))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "s3:PutObject", &what))?;
    tracing::info!(%bucket, %key, size = build.size, "agent uploaded");
    Ok(true)
}

/// Empties and deletes the cluster's bucket. A missing bucket is success; a bucket of that
/// name that is not tagged as this cluster's is left alone (Strata never made it).
pub async fn delete_bucket(
    rc: &RegionClients,
    bucket: &str,
    cluster: &str,
    resource: &str,
) -> Result<(), AwsError> {
    let what = format!("agent bucket {bucket} of cluster {cluster:?}");
    if !bucket_exists(rc, bucket).await? {
        return Ok(());
    }
    let found = bucket_tags(rc, bucket).await?;
    if !bucket_is_ours(&found, cluster, resource) {
        tracing::warn!(%bucket, "a bucket with the cluster's agent bucket name is not tagged as its own; not deleting it");
        return Ok(());
    }
    // A node that is still shutting down may write one last heartbeat after the bucket was
    // emptied (its agent runs until the instance is really off): empty it again and retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        empty_bucket(rc, bucket, &what).await?;
        if attempt > 1 {
            // Still not empty after a plain emptying: versioning (turned on outside Strata, by
            // an organisation's policy say) keeps older versions and delete markers, which only
            // a delete of each version removes.
            empty_versions(rc, bucket, &what).await?;
        }
        match rc.s3.delete_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => {
                let e = AwsError::from_sdk(e, "s3:DeleteBucket", &what);
                if e.is_not_found() {
                    return Ok(());
                }
                if attempt < 10 && e.code() == Some("BucketNotEmpty") {
                    tracing::info!(%bucket, attempt, "bucket written to while it was deleted; emptying it again");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

async fn empty_bucket(rc: &RegionClients, bucket: &str, what: &str) -> Result<(), AwsError> {
    let mut pages = rc
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, "s3:ListObjectsV2", what))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
    delete_each(rc, bucket, keys.into_iter().map(|k| (k, None))).await
}

/// Deletes each `(key, version)` (no version: the current object); one already gone is fine.
/// One call per object: a cluster holds a handful, and DeleteObject needs no checksum header.
async fn delete_each(
    rc: &RegionClients,
    bucket: &str,
    objects: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<(), AwsError> {
    for (key, version) in objects {
        let res = rc
            .s3
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .set_version_id(version)
            .send()
            .await;
        if let Err(e) = res {
            let e = AwsError::from_sdk(e, "s3:DeleteObject", &format!("s3://{bucket}/{key}"));
            if !e.is_not_found() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Deletes every object version and delete marker in the bucket.
async fn empty_versions(rc: &RegionClients, bucket: &str, what: &str) -> Result<(), AwsError> {
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = rc
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, "s3:ListObjectVersions", what))?;
        let versions = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(k, v)| Some((k?.to_string(), v.map(str::to_string))))
            .collect::<Vec<_>>();
        delete_each(rc, bucket, versions).await?;
        if page.is_truncated() != Some(true) {
            return Ok(());
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_name_first_dev_name_only_for_the_host_arch() {
        let d = Path::new("/opt/strata");
        assert_eq!(
            agent_candidates(d, Arch::X86_64, Some(Arch::X86_64)),
            vec![d.join("strata-agent_linux_x86_64"), d.join("strata-agent")]
        );
        // A plain `strata-agent` is the host's build: never offered for another arch.
        assert_eq!(
            agent_candidates(d, Arch::Aarch64, Some(Arch::X86_64)),
            vec![d.join("strata-agent_linux_aarch64")]
        );
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        let (sha, size) = sha256_file(&p).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(size, 3);
    }

    #[test]
    fn ownership_needs_both_tags() {
        let mut t = BTreeMap::new();
        t.insert(TAG_CLUSTER.to_string(), "orders".to_string());
        assert!(!bucket_is_ours(&t, "orders", "strata_cluster.orders"));
        t.insert(
            TAG_RESOURCE.to_string(),
            "strata_cluster.orders".to_string(),
        );
        assert!(bucket_is_ours(&t, "orders", "strata_cluster.orders"));
        assert!(!bucket_is_ours(&t, "billing", "strata_cluster.orders"));
        assert!(!bucket_is_ours(&t, "orders", "strata_cluster.other"));
    }

    #[test]
    fn object_tags_are_url_encoded() {
        let mut t = BTreeMap::new();
        t.insert("strata:cluster".to_string(), "orders".to_string());
        t.insert("team name".to_string(), "db&ops".to_string());
        assert_eq!(
            tagging_query(&t),
            "strata%3Acluster=orders&team%20name=db%26ops"
        );
    }
}
