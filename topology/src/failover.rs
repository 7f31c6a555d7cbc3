//! Failover: the part of the contract that lets the agents of one cluster agree on who the
//! source is, without a consensus protocol of their own and without a peer list in user-data.
//!
//! - **The lease** (one S3 object, [`lease_key`]) names the current source and its epoch. It is
//!   only ever written with a conditional PUT (`If-None-Match: *` to create it, `If-Match:
//!   <etag>` to change it), so of two agents racing to write it exactly one wins. The epoch
//!   grows by one with every change of holder and is the fencing token: whatever acts for the
//!   source (DNS records, a returning node) compares epochs and the lower one loses.
//! - **Membership** (one S3 object per node, [`member_key`]): each agent's heartbeat with its
//!   address, role, executed GTID and health. Adding a node only adds an object: no other
//!   node's user-data changes.
//! - **Tags** the agent writes on its own instance ([`TAG_CURRENT_ROLE`] and the
//!   `strata:last-failover-*` tags) so the provider can report roles and failovers from
//!   DescribeInstances alone; the lease object carries the same facts authoritatively.
//!
//! Every object here is rendered and parsed by exactly one function pair in this module, with a
//! round-trip test, so the provider and the agent cannot drift apart.

use crate::SourceEndpoint;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the lease and member objects' JSON. Readers reject other versions.
pub const FAILOVER_OBJECT_VERSION: u32 = 1;

/// Instance tag: the node's role right now, as its agent sees it (one of [`CurrentRole`]).
/// Differs from `strata:role` (the role it was launched with) after a failover.
pub const TAG_CURRENT_ROLE: &str = "strata:current-role";
/// Instance tag: the lease epoch the node last saw (decimal).
pub const TAG_LEASE_EPOCH: &str = "strata:lease-epoch";
/// Instance tags written by the node that won a failover or switchover, on its own instance.
pub const TAG_LAST_FAILOVER_AT: &str = "strata:last-failover-at";
/// Short reason: `source-lost: <detail>` or `switchover: <detail>` (≤255 characters).
pub const TAG_LAST_FAILOVER_REASON: &str = "strata:last-failover-reason";
/// Milliseconds from the source being declared lost to the new source taking writes.
pub const TAG_LAST_FAILOVER_DURATION_MS: &str = "strata:last-failover-duration-ms";

/// Where the lease and the member heartbeats live: the cluster's private bucket
/// ([`crate::agent_bucket_name`]) in the home region, for every node including region replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    pub bucket: String,
    /// Prefix of every failover object, without a trailing slash; see [`default_key_prefix`].
    pub key_prefix: String,
    /// Region of the bucket (the home region).
    pub region: String,
}

/// Route 53 records the agents move. The zone is private, attached to the cluster's VPCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecords {
    /// Hosted zone id, e.g. `Z0123456789ABCDEFGHIJ` (with or without `/hostedzone/`).
    pub zone_id: String,
    /// Fully qualified writer name, e.g. `writer.orders.strata.internal`.
    pub writer_name: String,
    /// The reader name of this node's region, e.g. `reader.orders.strata.internal` in the home
    /// region, `reader-eu-west-1.orders.strata.internal` elsewhere. The source's agent keeps
    /// every region's reader record equal to the healthy replicas that publish that name.
    pub reader_name: String,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

/// Timings. Production defaults aim at a new writer within 10 s of losing the source; tests
/// shorten them through the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverTiming {
    /// How often agents write their member object and the source renews its lease.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// How long a renewal keeps the lease. Nobody may take the lease before
    /// `expires_at + clock_margin`; the source fences itself `clock_margin` before expiry.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Allowance for clock differences between nodes (EC2 clocks are NTP/PTP-synced to well
    /// under this).
    #[serde(default = "default_clock_margin_ms")]
    pub clock_margin_ms: u64,
    /// Consecutive failed direct probes (SQL ping, replication IO state) before a replica
    /// suspects the source, in addition to the lease expiring.
    #[serde(default = "default_detect_misses")]
    pub detect_misses: u32,
}

impl Default for FailoverTiming {
    fn default() -> Self {
        FailoverTiming {
            heartbeat_ms: default_heartbeat_ms(),
            lease_ms: default_lease_ms(),
            clock_margin_ms: default_clock_margin_ms(),
            detect_misses: default_detect_misses(),
        }
    }
}

/// The failover part of a [`crate::NodeConfig`]. With it, `source` in the NodeConfig is only the
/// first hint of where the source is (the provider puts the writer DNS name there): the lease
/// holder is the authoritative source, for home and region replicas alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    pub lease: LeaseRef,
    /// Records to move; None: no DNS (clients follow the lease, e.g. tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsRecords>,
    #[serde(default)]
    pub timing: FailoverTiming,
    /// The address peers and clients reach this node's engine at; None: the instance's private
    /// IPv4 (IMDS `local-ipv4`) and `local.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SourceEndpoint>,
    /// Stop the old source's instance through EC2 before promoting (when its instance id is
    /// known). The lease alone already fences it; this also frees a frozen node's resources.
    #[serde(default = "default_true")]
    pub stop_old_source: bool,
    /// False (default): semi-sync never falls back to async on a home source (the ack timeout
    /// is effectively infinite), so no commit is acknowledged that no replica holds. True
    /// keeps the configured timeout: writes survive losing every replica, but a failover may
    /// then lose commits acknowledged in async mode.
    #[serde(default)]
    pub allow_async_fallback: bool,
}

fn default_ttl() -> u32 {
    5
}
fn default_heartbeat_ms() -> u64 {
    1_000
}
fn default_lease_ms() -> u64 {
    4_000
}
fn default_clock_margin_ms() -> u64 {
    1_000
}
fn default_detect_misses() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

/// The key prefix the provider uses for a cluster: `failover/<cluster_id>`.
pub fn default_key_prefix(cluster_id: &str) -> String {
    format!("failover/{cluster_id}")
}

/// `<prefix>/lease.json`.
pub fn lease_key(prefix: &str) -> String {
    format!("{}/lease.json", prefix.trim_end_matches('/'))
}

/// `<prefix>/members/` (list this to read every member).
pub fn members_prefix(prefix: &str) -> String {
    format!("{}/members/", prefix.trim_end_matches('/'))
}

/// `<prefix>/members/<node_id>.json`.
pub fn member_key(prefix: &str, node_id: &str) -> String {
    format!("{}{node_id}.json", members_prefix(prefix))
}

/// The node id of a key under [`members_prefix`], None for any other key.
pub fn parse_member_key(prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(&members_prefix(prefix))?;
    let id = rest.strip_suffix(".json")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
}

/// `<prefix>/switchover.json`: a planned switchover request, executed by the source's agent.
pub fn switchover_key(prefix: &str) -> String {
    format!("{}/switchover.json", prefix.trim_end_matches('/'))
}

/// The node a lease names as source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseHolder {
    pub node_id: String,
    /// Where replicas and the writer record point: the holder's advertised address.
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// One change of source, kept in the lease (newest last, at most [`PROMOTIONS_KEPT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub epoch: u64,
    pub node_id: String,
    /// The new source's executed GTID position when it took the lease, before its first own
    /// write. A node that was source before this epoch may rejoin as a replica only when its
    /// own position does not go beyond this one; otherwise it holds transactions the new
    /// source lacks and is rebuilt.
    pub gtid_at_promotion: String,
}

/// How many promotions a lease remembers.
pub const PROMOTIONS_KEPT: usize = 16;

/// Why the source last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverRecord {
    pub epoch: u64,
    /// Unix milliseconds when the failover began: the source declared lost, or the
    /// switchover request picked up.
    pub at_ms: u64,
    /// `source-lost: ...` or `switchover: ...`.
    pub reason: String,
    /// From `at_ms` to the new source taking writes; 0 while the promotion is under way.
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,
    pub to_node: String,
}

/// The lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub version: u32,
    /// Fencing token: +1 on every change of holder; never reused.
    pub epoch: u64,
    pub holder: LeaseHolder,
    /// Unix milliseconds after which the holder no longer owns the lease unless it renewed.
    pub expires_at_ms: u64,
    /// Unix milliseconds of the holder's last renewal.
    pub renewed_at_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

impl Lease {
    /// Expired for a reader at `now_ms` who allows `margin_ms` of clock difference.
    pub fn expired(&self, now_ms: u64, margin_ms: u64) -> bool {
        now_ms > self.expires_at_ms.saturating_add(margin_ms)
    }

    /// Appends a promotion, keeping the newest [`PROMOTIONS_KEPT`].
    pub fn push_promotion(&mut self, p: Promotion) {
        self.promotions.push(p);
        let extra = self.promotions.len().saturating_sub(PROMOTIONS_KEPT);
        self.promotions.drain(..extra);
    }

    /// The first promotion after `epoch` (the one that replaced a source of that epoch).
    pub fn promotion_after(&self, epoch: u64) -> Option<&Promotion> {
        self.promotions.iter().find(|p| p.epoch > epoch)
    }
}

/// The role an agent reports, in its member object and [`TAG_CURRENT_ROLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurrentRole {
    /// Holds the lease and takes writes.
    Source,
    /// A home replica following the lease holder.
    Replica,
    /// A replica in another region following the lease holder.
    RegionReplica,
    /// Lost (or gave up) the lease: read-only, waiting to rejoin as a replica.
    Fenced,
    /// Holds transactions the current source lacks: must be rebuilt, never serves.
    Diverged,
    /// Starting, or no lease exists yet.
    Unknown,
}

impl CurrentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CurrentRole::Source => "source",
            CurrentRole::Replica => "replica",
            CurrentRole::RegionReplica => "region_replica",
            CurrentRole::Fenced => "fenced",
            CurrentRole::Diverged => "diverged",
            CurrentRole::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<CurrentRole> {
        [
            CurrentRole::Source,
            CurrentRole::Replica,
            CurrentRole::RegionReplica,
            CurrentRole::Fenced,
            CurrentRole::Diverged,
            CurrentRole::Unknown,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for CurrentRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub version: u32,
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The role from the NodeConfig (what the node was launched as).
    pub launch_role: crate::Role,
    pub current_role: CurrentRole,
    pub region: String,
    pub host: String,
    pub port: u16,
    /// This node's region reader name, when DNS is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_name: Option<String>,
    /// Executed GTID position (`gtid_current_pos` / `gtid_executed`).
    pub gtid_executed: String,
    /// Server reachable, and for replicas both threads running.
    pub healthy: bool,
    /// Replication lag in seconds, replicas only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    /// The lease epoch whose source the node last followed or was (0: none yet). A node
    /// rejoining after a change of source compares its GTIDs with the promotion after it.
    pub epoch_seen: u64,
    /// Set during an election: the node stopped fetching from the source of this epoch and
    /// applied everything it had received, so `gtid_executed` is final for that epoch. A
    /// promoter waits for every live candidate's final position before choosing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_for_epoch: Option<u64>,
    /// The desired-config generation ([`crate::roll::DesiredConfig`]) the node's server runs
    /// with (None: none applied since launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_generation: Option<u64>,
    /// Why the newest desired config could not be applied (the server did not start with it;
    /// the agent restored the previous settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// The generation `config_error` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_failed_generation: Option<u64>,
    /// Whether this node's replication link has run at least once since its data was copied
    /// (its IO thread ran, which only happens after a seed completed), or it became source.
    /// A freshly launched or rebuilt node still copying its data is not a candidate in an
    /// election (its position may look complete while the copy is not) and is not waited for;
    /// it cannot have acknowledged anything either, since only a running IO thread acks. A
    /// node that replicated once stays a candidate however far it lags: it may hold a write
    /// only it acknowledged. None: written by an agent that predates the field (a candidate,
    /// as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated: Option<bool>,
    /// Unix milliseconds of this heartbeat.
    pub updated_at_ms: u64,
}

/// A planned switchover request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    pub version: u32,
    /// Node to promote.
    pub to_node: String,
    /// The epoch the request was made against: a source of another epoch ignores it.
    pub epoch: u64,
    pub requested_at_ms: u64,
}

/// A failover object that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverObjectError {
    #[error("invalid failover object JSON: {0}")]
    Json(String),
    #[error("failover object version {found} is not supported (expected {expected})")]
    Version { found: u32, expected: u32 },
}

fn parse_versioned<T: for<'de> Deserialize<'de>>(
    text: &[u8],
    version: impl Fn(&T) -> u32,
) -> Result<T, FailoverObjectError> {
    let v: T =
        serde_json::from_slice(text).map_err(|e| FailoverObjectError::Json(e.to_string()))?;
    let found = version(&v);
    if found != FAILOVER_OBJECT_VERSION {
        return Err(FailoverObjectError::Version {
            found,
            expected: FAILOVER_OBJECT_VERSION,
        });
    }
    Ok(v)
}

// Serializing plain structs with string keys cannot fail.
pub fn render_lease(l: &Lease) -> String {
    serde_json::to_string(l).unwrap_or_default()
}
pub fn parse_lease(text: &[u8]) -> Result<Lease, FailoverObjectError> {
    parse_versioned(text, |l: &Lease| l.version)
}
pub fn render_member(m: &Member) -> String {
    serde_json::to_string(m).unwrap_or_default()
}
pub fn parse_member(text: &[u8]) -> Result<Member, FailoverObjectError> {
    parse_versioned(text, |m: &Member| m.version)
}
pub fn render_switchover(r: &SwitchoverRequest) -> String {
    serde_json::to_string(r).unwrap_or_default()
}
pub fn parse_switchover(text: &[u8]) -> Result<SwitchoverRequest, FailoverObjectError> {
    parse_versioned(text, |r: &SwitchoverRequest| r.version)
}

/// Value of the TXT record `_epoch.<writer_name>` next to the writer record: `"epoch=<n>
/// node=<id>"`. A promoter changes the writer only in a change batch that DELETEs exactly the
/// TXT value it read (a lower epoch) and CREATEs its own, so Route 53 itself refuses a stale
/// promoter's batch: the epoch fences DNS too.
pub fn render_writer_epoch_txt(epoch: u64, node_id: &str) -> String {
    format!("\"epoch={epoch} node={node_id}\"")
}

/// Inverse of [`render_writer_epoch_txt`] (quotes optional).
pub fn parse_writer_epoch_txt(v: &str) -> Option<(u64, String)> {
    let v = v.trim().trim_matches('"');
    let mut epoch = None;
    let mut node = None;
    for part in v.split_whitespace() {
        if let Some(e) = part.strip_prefix("epoch=") {
            epoch = e.parse().ok();
        } else if let Some(n) = part.strip_prefix("node=") {
            node = Some(n.to_string());
        }
    }
    Some((epoch?, node?))
}

/// Name of the TXT record that carries the writer's epoch.
pub fn writer_epoch_record_name(writer_name: &str) -> String {
    format!("_epoch.{}", writer_name.trim_end_matches('.'))
}

/// Value of [`TAG_LAST_FAILOVER_AT`]: RFC 3339 UTC, second precision.
pub fn render_tag_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Inverse of [`render_tag_time`] (to the second).
pub fn parse_tag_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn lease() -> Lease {
        Lease {
            version: FAILOVER_OBJECT_VERSION,
            epoch: 7,
            holder: LeaseHolder {
                node_id: "orders-replica-1".into(),
                host: "10.0.1.11".into(),
                port: 3306,
                instance_id: Some("i-0abc".into()),
            },
            expires_at_ms: 1_800_000_004_000,
            renewed_at_ms: 1_800_000_000_000,
            promotions: vec![Promotion {
                epoch: 7,
                node_id: "orders-replica-1".into(),
                gtid_at_promotion: "0-1-1042".into(),
            }],
            last_failover: Some(FailoverRecord {
                epoch: 7,
                at_ms: 1_800_000_000_000,
                reason: "source-lost: lease expired, SQL ping failed".into(),
                duration_ms: 6_200,
                from_node: Some("orders-source".into()),
                to_node: "orders-replica-1".into(),
            }),
        }
    }

    const LEASE_GOLDEN: &str = r#"{"version":1,"epoch":7,"holder":{"node_id":"orders-replica-1","host":"10.0.1.11","port":3306,"instance_id":"i-0abc"},"expires_at_ms":1800000004000,"renewed_at_ms":1800000000000,"promotions":[{"epoch":7,"node_id":"orders-replica-1","gtid_at_promotion":"0-1-1042"}],"last_failover":{"epoch":7,"at_ms":1800000000000,"reason":"source-lost: lease expired, SQL ping failed","duration_ms":6200,"from_node":"orders-source","to_node":"orders-replica-1"}}"#;

    #[test]
    fn lease_json_is_pinned_and_round_trips() {
        assert_eq!(render_lease(&lease()), LEASE_GOLDEN);
        assert_eq!(parse_lease(LEASE_GOLDEN.as_bytes()).unwrap(), lease());
        let v2 = LEASE_GOLDEN.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            parse_lease(v2.as_bytes()),
            Err(FailoverObjectError::Version { found: 2, .. })
        ));
        assert!(parse_lease(b"{}").is_err());
    }

    #[test]
    fn member_round_trips() {
        let m = Member {
            version: FAILOVER_OBJECT_VERSION,
            node_id: "n2".into(),
            instance_id: None,
            launch_role: Role::Replica,
            current_role: CurrentRole::Source,
            region: "us-east-1".into(),
            host: "10.0.1.12".into(),
            port: 3306,
            reader_name: Some("reader.orders.strata.internal".into()),
            gtid_executed: "0-1-5,1-2-3".into(),
            healthy: true,
            lag_seconds: Some(0),
            epoch_seen: 3,
            final_for_epoch: Some(3),
            config_generation: Some(2),
            config_error: None,
            config_failed_generation: None,
            replicated: Some(true),
            updated_at_ms: 5,
        };
        let text = render_member(&m);
        assert!(text.contains("\"current_role\":\"source\""), "{text}");
        assert_eq!(parse_member(text.as_bytes()).unwrap(), m);
        let r = SwitchoverRequest {
            version: FAILOVER_OBJECT_VERSION,
            to_node: "n2".into(),
            epoch: 3,
            requested_at_ms: 9,
        };
        assert_eq!(
            parse_switchover(render_switchover(&r).as_bytes()).unwrap(),
            r
        );
    }

    #[test]
    fn keys_round_trip() {
        let p = default_key_prefix("orders");
        assert_eq!(lease_key(&p), "failover/orders/lease.json");
        assert_eq!(member_key(&p, "n-1"), "failover/orders/members/n-1.json");
        assert_eq!(
            parse_member_key(&p, &member_key(&p, "n-1")).as_deref(),
            Some("n-1")
        );
        assert_eq!(parse_member_key(&p, "failover/orders/lease.json"), None);
        assert_eq!(
            parse_member_key(&p, "failover/orders/members/a/b.json"),
            None
        );
        assert_eq!(switchover_key("x/"), "x/switchover.json");
    }

    #[test]
    fn expiry_allows_the_clock_margin() {
        let l = lease();
        assert!(!l.expired(l.expires_at_ms, 1000));
        assert!(!l.expired(l.expires_at_ms + 1000, 1000));
        assert!(l.expired(l.expires_at_ms + 1001, 1000));
    }

    #[test]
    fn promotions_are_bounded_and_found_by_epoch() {
        let mut l = lease();
        for e in 8..40 {
            l.push_promotion(Promotion {
                epoch: e,
                node_id: format!("n{e}"),
                gtid_at_promotion: format!("0-1-{e}"),
            });
        }
        assert_eq!(l.promotions.len(), PROMOTIONS_KEPT);
        assert_eq!(l.promotion_after(30).unwrap().epoch, 31);
        assert_eq!(l.promotion_after(39), None);
    }

    #[test]
    fn writer_epoch_txt_round_trips() {
        let v = render_writer_epoch_txt(12, "orders-replica-2");
        assert_eq!(v, "\"epoch=12 node=orders-replica-2\"");
        assert_eq!(
            parse_writer_epoch_txt(&v),
            Some((12, "orders-replica-2".into()))
        );
        assert_eq!(parse_writer_epoch_txt("\"epoch=x node=a\""), None);
        assert_eq!(
            writer_epoch_record_name("writer.orders.strata.internal."),
            "_epoch.writer.orders.strata.internal"
        );
    }

    #[test]
    fn roles_and_times_round_trip() {
        for r in [
            CurrentRole::Source,
            CurrentRole::Replica,
            CurrentRole::RegionReplica,
            CurrentRole::Fenced,
            CurrentRole::Diverged,
            CurrentRole::Unknown,
        ] {
            assert_eq!(CurrentRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(render_tag_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(render_tag_time(1_800_000_000_123), "2027-01-15T08:00:00Z");
        for ms in [0u64, 951_782_400_000, 1_800_000_000_000, 4_102_444_799_000] {
            assert_eq!(parse_tag_time(&render_tag_time(ms)), Some(ms));
        }
        assert_eq!(parse_tag_time("2027-13-01T00:00:00Z"), None);
    }

    #[test]
    fn failover_config_defaults() {
        let f: Failover = serde_json::from_str(
            r#"{"lease":{"bucket":"b","key_prefix":"failover/orders","region":"us-east-1"}}"#,
        )
        .unwrap();
        assert_eq!(f.timing, FailoverTiming::default());
        assert!(f.stop_old_source);
        assert!(!f.allow_async_fallback);
        assert_eq!(f.dns, None);
    }
}
