//! Backups: the part of the contract that says how often a cluster is backed up, where the
//! backups live and what a stored backup looks like, so the provider (which writes the policy
//! into every node's config) and the agent (which runs the validated cycle) cannot drift apart.
//!
//! A backup is a set of S3 objects under `<key_prefix>/<backup_id>/`:
//! - `chunk-NNNNNN`: consecutive pieces of one `mariadb-backup --stream=mbstream` stream, each
//!   with its SHA-256 in the manifest, so a missing or altered piece is found by reading it back
//!   and never needs a restore to be noticed;
//! - `manifest.json` ([`Manifest`]): engine, version, the GTID the data is at, the time, the
//!   chunks, and `CHECKSUM TABLE` of every user table at that GTID;
//! - the manifest's object tags ([`BackupTags`]): cluster, GTID, time and whether the backup is
//!   validated (`strata:validated=true`), still pending, or failed with a reason.
//!
//! "Validated" means: restored into a scratch server that started clean, its tables matched the
//! manifest's checksums, it caught up through replication to a GTID at which a live replica was
//! held, and its tables then matched that replica's. Only a validated backup counts for
//! retention ([`retention`]): older backups are deleted only once a newer validated one exists.
//!
//! Every object here is rendered and parsed by exactly one function pair, with a round-trip test.

use crate::Engine;
use crate::failover::{parse_tag_time, render_tag_time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the manifest JSON. Readers reject other versions.
pub const MANIFEST_VERSION: u32 = 1;

/// Tags on a backup's manifest object.
pub const TAG_CLUSTER: &str = "strata:cluster";
pub const TAG_BACKUP_GTID: &str = "strata:backup-gtid";
/// RFC 3339 UTC, second precision (see [`crate::failover::render_tag_time`]).
pub const TAG_BACKUP_TIME: &str = "strata:backup-time";
/// `true` once validated; `false` while pending or after a failure (then with a reason).
pub const TAG_VALIDATED: &str = "strata:validated";
/// Why the backup failed validation (restore, catch-up or check), ≤ 256 characters.
pub const TAG_FAILED_REASON: &str = "strata:failed-reason";

/// Policy attributes as the user writes them under `backup_policy` on `strata_cluster`; errors
/// name them with this prefix.
pub const POLICY_ATTRIBUTE: &str = "backup_policy";

/// How often a cluster is backed up, how many validated backups to keep, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// Hours between cycles, 1..=720.
    pub interval_hours: u32,
    /// Validated backups to keep, 1..=1000.
    pub keep: u32,
    /// UTC time of day the cycles are anchored at, `HH:MM`.
    pub window_start: String,
}

/// Where a cluster's backups live and what policy the backup node follows. Carried in the
/// node's config (`NodeConfig.backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub policy: BackupPolicy,
    /// The backup bucket ([`backup_bucket_name`]) in the home region. (Clusters made before
    /// it existed used their agent bucket; the agent reads whatever bucket this names.)
    pub bucket: String,
    /// Prefix of every backup object, without a trailing slash; see [`generation_key_prefix`].
    pub key_prefix: String,
    pub region: String,
}

/// Attribute a restore is configured with (`strata_cluster.restore_from`); errors name it.
pub const RESTORE_ATTRIBUTE: &str = "restore_from";

/// The backup a new cluster's source loads before it first takes writes: a validated backup of
/// a cluster, existing or destroyed (`restore_from { cluster, backup_id }`), read from the
/// backup bucket. Carried in the source's NodeConfig (`NodeConfig.restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreFrom {
    /// The cluster the backup was taken of.
    pub cluster: String,
    pub backup_id: String,
    /// The backup bucket, that cluster's prefix in it ([`generation_key_prefix`]) and region.
    pub bucket: String,
    pub key_prefix: String,
    pub region: String,
}

impl RestoreFrom {
    /// The store settings of the cluster the backup comes from (the policy is not used to
    /// read a backup).
    pub fn store_config(&self) -> BackupConfig {
        BackupConfig {
            policy: BackupPolicy {
                interval_hours: 24,
                keep: 1,
                window_start: "00:00".into(),
            },
            bucket: self.bucket.clone(),
            key_prefix: self.key_prefix.clone(),
            region: self.region.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), BackupObjectError> {
        if parse_backup_id(&self.backup_id).is_none() {
            return Err(BackupObjectError::Invalid {
                field: "restore_from.backup_id",
                value: self.backup_id.clone(),
            });
        }
        for (field, v) in [
            ("restore_from.cluster", &self.cluster),
            ("restore_from.bucket", &self.bucket),
            ("restore_from.key_prefix", &self.key_prefix),
            ("restore_from.region", &self.region),
        ] {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                return Err(BackupObjectError::Invalid {
                    field,
                    value: v.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a backup policy is refused. Each variant names the attribute at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("`{attribute}` = {value} is out of range ({range})")]
    OutOfRange {
        attribute: String,
        value: u64,
        range: &'static str,
    },
    #[error("`{attribute}` = {value:?} is not a UTC time of day as \"HH:MM\" (00:00 to 23:59)")]
    BadWindow { attribute: String, value: String },
}

impl PolicyError {
    /// The attribute at fault, e.g. `backup_policy.keep`.
    pub fn attribute(&self) -> &str {
        match self {
            PolicyError::OutOfRange { attribute, .. }
            | PolicyError::BadWindow { attribute, .. } => attribute,
        }
    }
}

fn attr(name: &str) -> String {
    format!("{POLICY_ATTRIBUTE}.{name}")
}

impl BackupPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(1..=720).contains(&self.interval_hours) {
            return Err(PolicyError::OutOfRange {
                attribute: attr("interval_hours"),
                value: self.interval_hours.into(),
                range: "1..=720",
            });
        }
        if !(1..=1000).contains(&self.keep) {
            return Err(PolicyError::OutOfRange {
                attribute: attr("keep"),
                value: self.keep.into(),
                range: "1..=1000; a policy must keep at least one backup",
            });
        }
        parse_window(&self.window_start)?;
        Ok(())
    }

    /// Whether a cycle is due at `now_ms`: cycles are anchored at `window_start` (UTC) and come
    /// every `interval_hours`; one is due when no validated backup was made since the latest
    /// such slot. An invalid policy is never due.
    pub fn due(&self, last_validated_ms: Option<u64>, now_ms: u64) -> bool {
        let Ok(minutes) = parse_window(&self.window_start) else {
            return false;
        };
        if self.interval_hours == 0 {
            return false;
        }
        let anchor = u64::from(minutes) * 60_000;
        let every = u64::from(self.interval_hours) * 3_600_000;
        if now_ms < anchor {
            // Before the first slot of all time: only a cluster with no backup is due.
            return last_validated_ms.is_none();
        }
        let slot = anchor + (now_ms - anchor) / every * every;
        last_validated_ms.is_none_or(|t| t < slot)
    }
}

/// Minutes after midnight UTC of an `HH:MM` window start.
pub fn parse_window(s: &str) -> Result<u32, PolicyError> {
    let bad = || PolicyError::BadWindow {
        attribute: attr("window_start"),
        value: s.to_string(),
    };
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || !s.is_char_boundary(2) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let p = s.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())
            .flatten()
    };
    let (h, m) = (num(0..2).ok_or_else(bad)?, num(3..5).ok_or_else(bad)?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The key prefix of every backup of clusters named `cluster_id`: `backups/<cluster_id>`.
/// A cluster writes under its own generation below it ([`generation_key_prefix`]).
pub fn default_key_prefix(cluster_id: &str) -> String {
    format!("backups/{cluster_id}")
}

/// The account-and-region bucket backups live in: `strata-<account>-<region>-backups`. It is
/// no cluster's bucket, so destroying a cluster does not delete it, and its name cannot be a
/// cluster's agent bucket (`strata-<cluster>-<account>-<region>`: those end in a region).
pub fn backup_bucket_name(account_id: &str, region: &str) -> String {
    format!("strata-{account_id}-{region}-backups")
}

/// The key prefix one cluster writes its backups under: `backups/<cluster_id>/<generation>`,
/// with `generation` the cluster's creation time ([`render_backup_id`] of it). A later cluster
/// of the same name has another generation, so it never lists, restores, retains or deletes
/// the backups an earlier one left.
pub fn generation_key_prefix(cluster_id: &str, generation: &str) -> String {
    format!("{}/{generation}", default_key_prefix(cluster_id))
}

/// The generation of a `CommonPrefixes` entry of a delimited listing under
/// `backups/<cluster_id>/` (`backups/<cluster_id>/<generation>/`); None for anything else.
pub fn parse_generation_prefix(cluster_id: &str, common_prefix: &str) -> Option<String> {
    let rest = common_prefix.strip_prefix(&format!("{}/", default_key_prefix(cluster_id)))?;
    let g = rest.strip_suffix('/')?;
    parse_backup_id(g).map(|_| g.to_string())
}

/// `s3://<bucket>/<prefix>/`: where a cluster's backups are, as state and docs show it.
pub fn render_location(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{}/", prefix.trim_end_matches('/'))
}

/// Inverse of [`render_location`]: `(bucket, prefix)` without the trailing slash.
pub fn parse_location(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/')?;
    let prefix = prefix.trim_end_matches('/');
    (!bucket.is_empty() && !prefix.is_empty()).then(|| (bucket.to_string(), prefix.to_string()))
}

/// `<prefix>/<backup_id>/`: every object of one backup.
pub fn backup_prefix(prefix: &str, backup_id: &str) -> String {
    format!("{}/{backup_id}/", prefix.trim_end_matches('/'))
}

/// `<prefix>/<backup_id>/manifest.json`.
pub fn manifest_key(prefix: &str, backup_id: &str) -> String {
    format!("{}manifest.json", backup_prefix(prefix, backup_id))
}

/// `<prefix>/<backup_id>/chunk-NNNNNN` (zero-padded, so keys sort in stream order).
pub fn chunk_key(prefix: &str, backup_id: &str, index: u32) -> String {
    format!("{}chunk-{index:06}", backup_prefix(prefix, backup_id))
}

/// The backup id of a manifest key under `prefix`, None for any other key.
pub fn parse_manifest_key(prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(&format!("{}/", prefix.trim_end_matches('/')))?;
    let id = rest.strip_suffix("/manifest.json")?;
    parse_backup_id(id).map(|_| id.to_string())
}

/// A backup's id from its start time: `YYYYMMDDTHHMMSSmmmZ`, so ids sort by time.
pub fn render_backup_id(unix_ms: u64) -> String {
    // render_tag_time gives YYYY-MM-DDTHH:MM:SSZ.
    let t = render_tag_time(unix_ms);
    let compact: String = t
        .trim_end_matches('Z')
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}{:03}Z", unix_ms % 1000)
}

/// Inverse of [`render_backup_id`]: the start time in unix milliseconds.
pub fn parse_backup_id(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.len() != 19 || b[8] != b'T' || b[18] != b'Z' || !id.is_ascii() {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| {
        let p = id.get(r)?;
        p.bytes().all(|c| c.is_ascii_digit()).then_some(p)
    };
    let (date, time, ms) = (digits(0..8)?, digits(9..15)?, digits(15..18)?);
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &time[0..2],
        &time[2..4],
        &time[4..6]
    );
    Some(parse_tag_time(&rfc)? + ms.parse::<u64>().ok()?)
}

/// Whether `s` is a MariaDB GTID list (`domain-server-seq[,...]`, possibly empty). Only such a
/// string is ever put into SQL (`START SLAVE UNTIL master_gtid_pos = '...'`).
pub fn is_gtid_list(s: &str) -> bool {
    s.is_empty()
        || s.split(',').all(|g| {
            let parts: Vec<&str> = g.trim().split('-').collect();
            parts.len() == 3
                && parts.iter().all(|p| {
                    !p.is_empty() && p.len() <= 20 && p.bytes().all(|c| c.is_ascii_digit())
                })
        })
}

/// Where a backup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Stored, not (yet) validated: a cycle in progress, or one that was cut short.
    Pending,
    Validated,
    Failed {
        reason: String,
    },
}

impl Validation {
    pub fn is_validated(&self) -> bool {
        matches!(self, Validation::Validated)
    }
}

/// The facts a backup's manifest object carries as tags, readable without fetching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTags {
    pub cluster: String,
    pub gtid: String,
    /// Unix milliseconds, kept to the second in the tag.
    pub time_ms: u64,
    pub validation: Validation,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupObjectError {
    #[error("invalid backup manifest: {0}")]
    Json(String),
    #[error("backup manifest version {found} is not supported (expected {expected})")]
    Version { found: u32, expected: u32 },
    #[error("backup object: `{field}` is invalid: {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("backup object: tag `{0}` is missing")]
    MissingTag(&'static str),
}

/// S3 tag values allow letters, digits, spaces and `+ - = . _ : / @`: a reason is cut down to
/// those, and GTID lists are written with spaces instead of commas.
fn tag_safe(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let squeezed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    squeezed.chars().take(max).collect()
}

/// The manifest object's tags, in a stable order. A failed backup's reason is cut to what S3
/// tags may hold.
pub fn render_backup_tags(t: &BackupTags) -> Vec<(String, String)> {
    let mut v = vec![
        (TAG_CLUSTER.to_string(), t.cluster.clone()),
        (TAG_BACKUP_GTID.to_string(), t.gtid.replace(',', " ")),
        (TAG_BACKUP_TIME.to_string(), render_tag_time(t.time_ms)),
        (
            TAG_VALIDATED.to_string(),
            t.validation.is_validated().to_string(),
        ),
    ];
    if let Validation::Failed { reason } = &t.validation {
        let r = tag_safe(reason, 256);
        v.push((
            TAG_FAILED_REASON.to_string(),
            if r.is_empty() { "unknown".into() } else { r },
        ));
    }
    v
}

/// Inverse of [`render_backup_tags`] (other tags are ignored).
pub fn parse_backup_tags<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BackupTags, BackupObjectError> {
    let map: BTreeMap<&str, &str> = tags.into_iter().collect();
    let get = |k: &'static str| map.get(k).copied().ok_or(BackupObjectError::MissingTag(k));
    let gtid = get(TAG_BACKUP_GTID)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(",");
    if !is_gtid_list(&gtid) {
        return Err(BackupObjectError::Invalid {
            field: TAG_BACKUP_GTID,
            value: gtid,
        });
    }
    let time = get(TAG_BACKUP_TIME)?;
    let time_ms = parse_tag_time(time).ok_or_else(|| BackupObjectError::Invalid {
        field: TAG_BACKUP_TIME,
        value: time.to_string(),
    })?;
    let validation = match (get(TAG_VALIDATED)?, map.get(TAG_FAILED_REASON)) {
        ("true", _) => Validation::Validated,
        ("false", Some(r)) => Validation::Failed {
            reason: r.to_string(),
        },
        ("false", None) => Validation::Pending,
        (other, _) => {
            return Err(BackupObjectError::Invalid {
                field: TAG_VALIDATED,
                value: other.to_string(),
            });
        }
    };
    Ok(BackupTags {
        cluster: get(TAG_CLUSTER)?.to_string(),
        gtid,
        time_ms,
        validation,
    })
}

/// One piece of the backup stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    pub key: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the chunk's bytes.
    pub sha256: String,
}

/// What one backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub cluster: String,
    pub backup_id: String,
    pub engine: Engine,
    pub engine_version: String,
    /// The GTID position the data is at (`gtid_slave_pos` of the server it was taken from).
    pub gtid: String,
    /// RFC 3339 UTC, when the backup was taken.
    pub time: String,
    /// How the stream was made, e.g. `mariadb-backup/mbstream`.
    pub method: String,
    /// The node (or restored scratch server) the stream came from.
    pub taken_from: String,
    /// The validated backup this one was taken from a restore of; None for a fresh full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub chunks: Vec<Chunk>,
    /// `CHECKSUM TABLE` of every user table at `gtid`, keyed `schema.table`.
    pub table_checksums: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.size).sum()
    }
}

pub fn render_manifest(m: &Manifest) -> String {
    // Serializing plain structs with string keys cannot fail.
    serde_json::to_string_pretty(m).unwrap_or_default()
}

/// Parses and checks a manifest: version, GTID shape, chunk checksums' shape and that every
/// chunk key lies under the backup's own prefix (a manifest never makes a restore read
/// another backup's objects).
pub fn parse_manifest(text: &[u8], prefix: &str) -> Result<Manifest, BackupObjectError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<u32>,
    }
    let probe: VersionOnly =
        serde_json::from_slice(text).map_err(|e| BackupObjectError::Json(e.to_string()))?;
    let found = probe.version.unwrap_or(0);
    if found != MANIFEST_VERSION {
        return Err(BackupObjectError::Version {
            found,
            expected: MANIFEST_VERSION,
        });
    }
    let m: Manifest =
        serde_json::from_slice(text).map_err(|e| BackupObjectError::Json(e.to_string()))?;
    if parse_backup_id(&m.backup_id).is_none() {
        return Err(BackupObjectError::Invalid {
            field: "backup_id",
            value: m.backup_id,
        });
    }
    if !is_gtid_list(&m.gtid) {
        return Err(BackupObjectError::Invalid {
            field: "gtid",
            value: m.gtid,
        });
    }
    if parse_tag_time(&m.time).is_none() {
        return Err(BackupObjectError::Invalid {
            field: "time",
            value: m.time,
        });
    }
    let own = backup_prefix(prefix, &m.backup_id);
    for c in &m.chunks {
        if c.sha256.len() != 64
            || !c
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(BackupObjectError::Invalid {
                field: "chunks.sha256",
                value: c.sha256.clone(),
            });
        }
        if !c.key.starts_with(&own) {
            return Err(BackupObjectError::Invalid {
                field: "chunks.key",
                value: c.key.clone(),
            });
        }
    }
    Ok(m)
}

/// Which backups retention deletes, given every stored backup (id, state) and `keep`: a
/// backup goes only once `keep` validated backups newer than it exist. So the newest `keep`
/// validated backups stay, nothing is deleted before a newer validated one exists, and a failed
/// or pending backup stays until it is that far behind (for inspection).
pub fn retention(backups: &[(String, Validation)], keep: u32) -> Vec<String> {
    let keep = keep.max(1) as usize;
    let mut sorted: Vec<&(String, Validation)> = backups.iter().collect();
    // Ids sort by time; walk from the newest, counting validated backups seen.
    sorted.sort_by(|a, b| b.0.cmp(&a.0));
    let mut newer_validated = 0usize;
    let mut out = Vec::new();
    for (id, v) in sorted {
        if newer_validated >= keep {
            out.push(id.clone());
        }
        if v.is_validated() {
            newer_validated += 1;
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interval_hours: u32, keep: u32, window: &str) -> BackupPolicy {
        BackupPolicy {
            interval_hours,
            keep,
            window_start: window.into(),
        }
    }

    #[test]
    fn policy_validation_names_the_attribute() {
        assert!(policy(24, 7, "03:30").validate().is_ok());
        let e = policy(24, 0, "03:30").validate().unwrap_err();
        assert_eq!(e.attribute(), "backup_policy.keep");
        assert!(e.to_string().contains("backup_policy.keep"), "{e}");
        let e = policy(0, 1, "03:30").validate().unwrap_err();
        assert_eq!(e.attribute(), "backup_policy.interval_hours");
        let e = policy(721, 1, "03:30").validate().unwrap_err();
        assert_eq!(e.attribute(), "backup_policy.interval_hours");
        for bad in [
            "3:30", "24:00", "12:60", "ab:cd", "03-30", "03:30 ", "", "+3:30", "０3:30",
        ] {
            let e = policy(24, 1, bad).validate().unwrap_err();
            assert_eq!(e.attribute(), "backup_policy.window_start", "{bad:?}");
        }
        assert_eq!(parse_window("00:00").unwrap(), 0);
        assert_eq!(parse_window("23:59").unwrap(), 23 * 60 + 59);
    }

    #[test]
    fn due_follows_the_window_and_the_interval() {
        let p = policy(24, 3, "03:00");
        let day = 86_400_000u64;
        let three = 3 * 3_600_000u64;
        let now = 100 * day + three + 60_000; // 03:01 on day 100
        assert!(p.due(None, now));
        // A backup made at 03:00:30 today covers today's slot.
        assert!(!p.due(Some(100 * day + three + 30_000), now));
        // Yesterday's does not, once today's window opened...
        assert!(p.due(Some(99 * day + three + 30_000), now));
        // ...but does before it.
        assert!(!p.due(Some(99 * day + three + 30_000), 100 * day + three - 1));
        let hourly = policy(1, 3, "00:15");
        assert!(hourly.due(Some(100 * day), 100 * day + 15 * 60_000));
        assert!(!hourly.due(Some(100 * day + 15 * 60_000), 100 * day + 70 * 60_000));
    }

    #[test]
    fn keys_and_ids_round_trip() {
        let ms = 1_795_000_000_123;
        let id = render_backup_id(ms);
        assert_eq!(id.len(), 19, "{id}");
        assert_eq!(parse_backup_id(&id), Some(ms));
        assert!(render_backup_id(ms) < render_backup_id(ms + 1));
        assert!(render_backup_id(ms) < render_backup_id(ms + 86_400_000));
        let prefix = default_key_prefix("orders");
        assert_eq!(prefix, "backups/orders");
        let key = manifest_key(&prefix, &id);
        assert_eq!(key, format!("backups/orders/{id}/manifest.json"));
        assert_eq!(parse_manifest_key(&prefix, &key), Some(id.clone()));
        assert_eq!(
            parse_manifest_key(&prefix, &chunk_key(&prefix, &id, 3)),
            None
        );
        assert_eq!(parse_manifest_key("backups/other", &key), None);
        assert_eq!(
            chunk_key(&prefix, &id, 7),
            format!("backups/orders/{id}/chunk-000007")
        );
        assert_eq!(parse_backup_id("2026113OT030512123Z"), None);
        assert_eq!(parse_backup_id("20261130T030512123"), None);
    }

    #[test]
    fn gtid_lists() {
        for ok in ["", "0-1-42", "0-1-42,1-2-3", "0-1-42, 1-2-3"] {
            assert!(is_gtid_list(ok), "{ok:?}");
        }
        for bad in ["0-1", "0-1-x", "0-1-2'; DROP", "0--1", ","] {
            assert!(!is_gtid_list(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_round_trip() {
        for validation in [
            Validation::Pending,
            Validation::Validated,
            Validation::Failed {
                reason: "checksum mismatch: shop.orders".into(),
            },
        ] {
            let t = BackupTags {
                cluster: "orders".into(),
                gtid: "0-1-42,1-2-7".into(),
                time_ms: 1_795_000_000_000,
                validation,
            };
            let rendered = render_backup_tags(&t);
            for (_, v) in &rendered {
                assert!(!v.contains(','), "S3 tag values hold no comma: {v}");
            }
            let back =
                parse_backup_tags(rendered.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
            assert_eq!(back, t);
        }
        // A reason with characters S3 refuses is cut down, not rejected.
        let t = BackupTags {
            cluster: "c".into(),
            gtid: "0-1-1".into(),
            time_ms: 0,
            validation: Validation::Failed {
                reason: "sha256 of chunk #3 differs (\"abc\"); restore stopped".into(),
            },
        };
        let r = render_backup_tags(&t);
        assert_eq!(
            r.last().unwrap().1,
            "sha256 of chunk 3 differs abc restore stopped"
        );
        let missing = parse_backup_tags([(TAG_CLUSTER, "c")]).unwrap_err();
        assert!(matches!(missing, BackupObjectError::MissingTag(_)));
    }

    fn manifest() -> Manifest {
        let id = render_backup_id(1_795_000_000_000);
        let prefix = default_key_prefix("orders");
        Manifest {
            version: MANIFEST_VERSION,
            cluster: "orders".into(),
            backup_id: id.clone(),
            engine: Engine::Mariadb,
            engine_version: "10.11".into(),
            gtid: "0-1-42".into(),
            time: render_tag_time(1_795_000_000_000),
            method: "mariadb-backup/mbstream".into(),
            taken_from: "replica-1".into(),
            parent: None,
            chunks: vec![Chunk {
                key: chunk_key(&prefix, &id, 0),
                size: 10,
                sha256: "a".repeat(64),
            }],
            table_checksums: [("shop.orders".to_string(), 123u64)].into(),
        }
    }

    #[test]
    fn manifest_round_trip_and_checks() {
        let m = manifest();
        let prefix = default_key_prefix("orders");
        let text = render_manifest(&m);
        assert_eq!(parse_manifest(text.as_bytes(), &prefix).unwrap(), m);
        assert_eq!(m.total_bytes(), 10);

        let mut other = m.clone();
        other.chunks[0].key = "backups/orders/20200101T000000000Z/chunk-000000".into();
        let e = parse_manifest(render_manifest(&other).as_bytes(), &prefix).unwrap_err();
        assert!(
            matches!(
                e,
                BackupObjectError::Invalid {
                    field: "chunks.key",
                    ..
                }
            ),
            "{e}"
        );

        let mut bad = m.clone();
        bad.gtid = "0-1-1' OR 1".into();
        assert!(parse_manifest(render_manifest(&bad).as_bytes(), &prefix).is_err());

        let mut bad = m.clone();
        bad.chunks[0].sha256 = "XYZ".into();
        assert!(parse_manifest(render_manifest(&bad).as_bytes(), &prefix).is_err());

        let v2 = render_manifest(&m).replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            parse_manifest(v2.as_bytes(), &prefix),
            Err(BackupObjectError::Version { found: 2, .. })
        ));
    }

    #[test]
    fn retention_deletes_only_behind_a_newer_validated_backup() {
        use Validation::*;
        let id = |n: u64| render_backup_id(1_795_000_000_000 + n * 1000);
        let failed = || Failed { reason: "x".into() };
        // No validated backup: nothing goes, whatever `keep` says.
        assert!(retention(&[(id(1), Pending), (id(2), failed())], 1).is_empty());
        let all = vec![
            (id(1), Validated),
            (id(2), failed()),
            (id(3), Validated),
            (id(4), Validated),
            (id(5), Pending),
        ];
        assert_eq!(retention(&all, 1), vec![id(1), id(2), id(3)]);
        assert_eq!(retention(&all, 2), vec![id(1), id(2)]);
        assert!(retention(&all, 3).is_empty());
        assert!(retention(&all, 10).is_empty());
        // A failed backup stays until `keep` validated ones are newer.
        assert!(retention(&[(id(1), failed()), (id(2), Validated)], 2).is_empty());
        assert_eq!(
            retention(&[(id(1), failed()), (id(2), Validated)], 1),
            vec![id(1)]
        );
        // keep = 0 is refused by validation; here it behaves as 1.
        assert_eq!(retention(&all, 0), vec![id(1), id(2), id(3)]);
    }

    #[test]
    fn restore_from_is_checked() {
        let r = RestoreFrom {
            cluster: "orders".into(),
            backup_id: render_backup_id(1_795_000_000_000),
            bucket: "strata-orders-000000000000-us-east-1".into(),
            key_prefix: default_key_prefix("orders"),
            region: "us-east-1".into(),
        };
        assert!(r.validate().is_ok());
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RestoreFrom>(&s).unwrap(), r);
        assert_eq!(r.store_config().key_prefix, "backups/orders");
        let mut bad = r.clone();
        bad.backup_id = "latest".into();
        assert!(matches!(
            bad.validate(),
            Err(BackupObjectError::Invalid {
                field: "restore_from.backup_id",
                ..
            })
        ));
        let mut bad = r;
        bad.cluster = "a b".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn generations_keep_clusters_of_one_name_apart() {
        let g1 = render_backup_id(1_795_000_000_000);
        let g2 = render_backup_id(1_795_000_000_001);
        let (p1, p2) = (
            generation_key_prefix("orders", &g1),
            generation_key_prefix("orders", &g2),
        );
        assert_eq!(p1, format!("backups/orders/{g1}"));
        // Neither generation's backups are under the other's prefix.
        let id = render_backup_id(1_795_000_100_000);
        assert_eq!(
            parse_manifest_key(&p1, &manifest_key(&p1, &id)),
            Some(id.clone())
        );
        assert_eq!(parse_manifest_key(&p2, &manifest_key(&p1, &id)), None);
        assert!(!manifest_key(&p1, &id).starts_with(&format!("{p2}/")));
        assert_eq!(
            parse_generation_prefix("orders", &format!("{p1}/")),
            Some(g1.clone())
        );
        for bad in [
            p1.clone(),
            format!("backups/orders2/{g1}/"),
            "backups/orders/latest/".to_string(),
            format!("backups/orders/{g1}/{id}/"),
        ] {
            assert_eq!(parse_generation_prefix("orders", &bad), None, "{bad}");
        }
        let b = backup_bucket_name("000000000000", "us-east-1");
        assert_eq!(b, "strata-000000000000-us-east-1-backups");
        assert!(b.len() <= 63);
        let loc = render_location(&b, &p1);
        assert_eq!(loc, format!("s3://{b}/{p1}/"));
        assert_eq!(parse_location(&loc), Some((b.clone(), p1.clone())));
        assert_eq!(parse_location("s3://bucket/"), None);
        assert_eq!(parse_location("https://x/y"), None);
    }

    #[test]
    fn backup_config_json_round_trip() {
        let c = BackupConfig {
            policy: policy(24, 7, "03:00"),
            bucket: "strata-orders-000000000000-us-east-1".into(),
            key_prefix: default_key_prefix("orders"),
            region: "us-east-1".into(),
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BackupConfig>(&s).unwrap(), c);
    }
}
