//! Where backups live: objects under the cluster's backup prefix (its generation) in the
//! account-and-region backup bucket (`topology::backup` names every key and tag). Each chunk is stored with its SHA-256 in the
//! manifest, and every read checks it, so a changed or missing chunk is an error here, before
//! any byte of it reaches a restore.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use sha2::{Digest, Sha256};
use std::time::Duration;
use strata_topology::backup::{
    BackupConfig, BackupTags, Manifest, backup_prefix, manifest_key, parse_backup_tags,
    parse_manifest, parse_manifest_key, render_backup_tags, render_manifest,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("backup store {op} {key}: {reason}")]
    Unavailable {
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error("backup object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The object (or the whole bucket) does not exist.
    #[error("backup object {0} does not exist")]
    NotFound(String),
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Clone)]
pub struct BackupStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl BackupStore {
    /// `endpoint` overrides AWS_ENDPOINT_URL (which the SDK honours by itself).
    pub async fn connect(cfg: &BackupConfig, endpoint: Option<&str>) -> Self {
        let timeout = Duration::from_secs(120);
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(cfg.region.clone()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_timeout(timeout)
                    .build(),
            );
        let s3 = crate::s3::client(loader, endpoint).await;
        BackupStore {
            s3,
            bucket: cfg.bucket.clone(),
            prefix: cfg.key_prefix.clone(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable("put", key, e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("get", key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| unavailable("read", key, e))?;
        Ok(body.into_bytes().to_vec())
    }

    /// A chunk whose bytes must hash to `sha256`; anything else is [`StoreError::Corrupt`].
    pub async fn get_verified(&self, key: &str, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let bytes = self.get(key).await?;
        let found = sha256_hex(&bytes);
        if found != sha256 {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: format!("sha256 is {found}, the manifest says {sha256}"),
            });
        }
        Ok(bytes)
    }

    /// Writes the manifest, then its tags: a manifest is only ever found with its state.
    pub async fn put_manifest(&self, m: &Manifest, tags: &BackupTags) -> Result<(), StoreError> {
        let key = manifest_key(&self.prefix, &m.backup_id);
        self.put(&key, render_manifest(m).into_bytes()).await?;
        self.set_tags(&m.backup_id, tags).await
    }

    pub async fn set_tags(&self, backup_id: &str, tags: &BackupTags) -> Result<(), StoreError> {
        let key = manifest_key(&self.prefix, backup_id);
        let mut set = Vec::new();
        for (k, v) in render_backup_tags(tags) {
            let tag = Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| unavailable("tag", &key, e))?;
            set.push(tag);
        }
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| unavailable("tag", &key, e))?;
        self.s3
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(&key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| unavailable("tag", &key, e))?;
        Ok(())
    }

    pub async fn tags(&self, backup_id: &str) -> Result<BackupTags, StoreError> {
        let key = manifest_key(&self.prefix, backup_id);
        let out = self
            .s3
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| unavailable("get tags of", &key, e))?;
        parse_backup_tags(out.tag_set().iter().map(|t| (t.key(), t.value()))).map_err(|e| {
            StoreError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            }
        })
    }

    pub async fn manifest(&self, backup_id: &str) -> Result<Manifest, StoreError> {
        let key = manifest_key(&self.prefix, backup_id);
        let bytes = self.get(&key).await?;
        parse_manifest(&bytes, &self.prefix).map_err(|e| StoreError::Corrupt {
            key,
            reason: e.to_string(),
        })
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| unavailable("list", prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(keys)
    }

    /// Every backup with a manifest, with its tags, oldest first. A backup whose tags cannot
    /// be read is left out (and so never restored nor counted as validated).
    /// When the newest validated backup was taken (ms since the epoch), if there is one: what
    /// the policy's schedule counts from.
    pub async fn last_validated_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .list()
            .await?
            .iter()
            .rev()
            .find(|(_, t)| t.validation.is_validated())
            .map(|(_, t)| t.time_ms))
    }

    pub async fn list(&self) -> Result<Vec<(String, BackupTags)>, StoreError> {
        let root = format!("{}/", self.prefix.trim_end_matches('/'));
        let mut ids: Vec<String> = self
            .keys(&root)
            .await?
            .iter()
            .filter_map(|k| parse_manifest_key(&self.prefix, k))
            .collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            match self.tags(&id).await {
                Ok(t) => out.push((id, t)),
                Err(e) => tracing::warn!(backup = %id, error = %e, "backup without readable tags"),
            }
        }
        Ok(out)
    }

    /// Deletes every object of a backup (chunks first, the manifest last, so a half-deleted
    /// backup has no manifest and is never listed).
    pub async fn delete(&self, backup_id: &str) -> Result<(), StoreError> {
        let manifest = manifest_key(&self.prefix, backup_id);
        let mut keys = self.keys(&backup_prefix(&self.prefix, backup_id)).await?;
        keys.retain(|k| *k != manifest);
        keys.push(manifest);
        for k in keys {
            self.s3
                .delete_object()
                .bucket(&self.bucket)
                .key(&k)
                .send()
                .await
                .map_err(|e| unavailable("delete", &k, e))?;
        }
        Ok(())
    }
}

fn unavailable(op: &'static str, key: &str, e: impl std::fmt::Debug) -> StoreError {
    // The SDK's Display is often just "service error": the Debug form names the code.
    let reason = format!("{e:?}");
    if ["NoSuchKey", "NoSuchBucket", "NotFound"]
        .iter()
        .any(|c| reason.contains(c))
    {
        return StoreError::NotFound(key.to_string());
    }
    StoreError::Unavailable {
        op,
        key: key.to_string(),
        reason: reason.chars().take(600).collect(),
    }
}
