//! Rolling changes: a change that needs a node restart (engine settings, instance type, an
//! engine upgrade) goes through the cluster one node at a time without write downtime:
//! replicas first, each back in replication and caught up before the next; then a planned
//! switchover to an already changed home replica; then the old source, which rejoins as a
//! replica.
//!
//! This module holds the contract and the decisions, no I/O:
//!
//! - [`DesiredConfig`] (one S3 object per node, [`config_key`]): the engine settings a node
//!   should run with and a generation number. NodeConfig is delivered in user-data at launch,
//!   so a change reaches running nodes through this object, which the agent polls with its
//!   heartbeat. A replica's agent writes the settings file, restarts its server and reports
//!   the generation it applied in its member object ([`crate::failover::Member`]); a source
//!   never restarts itself while it holds the lease.
//! - [`next_roll_action`]: what a roll driver (the provider, or `strata-agent roll`) does next,
//!   from what it observes. Calling it again after an interruption resumes the roll: nodes
//!   already changed are skipped.
//! - [`check_engine_setting`]: which server variables a user may set.
//! - [`version_change`]: whether an engine version change rolls or needs new nodes.

use crate::Engine;
use crate::failover::FAILOVER_OBJECT_VERSION;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `<prefix>/config/` (list this to read every node's desired config).
pub fn config_prefix(prefix: &str) -> String {
    format!("{}/config/", prefix.trim_end_matches('/'))
}

/// `<prefix>/config/<node_id>.json`: the desired engine settings of one node.
pub fn config_key(prefix: &str, node_id: &str) -> String {
    format!("{}{node_id}.json", config_prefix(prefix))
}

/// `<prefix>/config.json`: the settings of the last completed roll, for every node without
/// an object of its own that is at least as new (a node launched after the roll: it inherits
/// its NodeConfig from the source's launch user-data, which a roll does not change). Written
/// only when a roll is done, so it never restarts nodes that are waiting for their turn.
pub fn cluster_config_key(prefix: &str) -> String {
    format!("{}/config.json", prefix.trim_end_matches('/'))
}

/// Tag on an instance whose `instance_type` the user set on its own resource (`strata_replica`
/// or `strata_region` with `instance_type` in configuration): a change of the cluster's
/// `instance_type` rolls every other node of the cluster and leaves this one alone. Written by
/// the provider only.
pub const TAG_INSTANCE_TYPE_PINNED: &str = "strata:instance-type-pinned";

/// `<prefix>/roll-lock.json`: held while one driver stops nodes (an instance-type change), so
/// two resources of one cluster applied in parallel never stop two nodes at once. Created with
/// `If-None-Match: *`; deleted by its holder when done.
pub fn roll_lock_key(prefix: &str) -> String {
    format!("{}/roll-lock.json", prefix.trim_end_matches('/'))
}

/// The roll lock's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollLock {
    pub version: u32,
    /// Who holds it, e.g. `strata_cluster.orders` or `strata_replica i-0abc`.
    pub holder: String,
    pub acquired_at_ms: u64,
    /// After this the lock is stale (its holder died with it: a killed apply) and another
    /// driver may take it over. The holder sets it to its whole timeout.
    pub expires_at_ms: u64,
}

pub fn render_roll_lock(l: &RollLock) -> String {
    serde_json::to_string(l).unwrap_or_default()
}

pub fn parse_roll_lock(text: &[u8]) -> Option<RollLock> {
    serde_json::from_slice(text).ok()
}

/// What a driver that wants the lock does when it finds `existing` (None: unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockVerdict {
    /// Its own lock (a retried or resumed apply of the same resource): take it over.
    Mine,
    /// Held by another driver that is still within its time: wait.
    Wait(String),
    /// Expired (or unreadable): delete it and try again.
    Stale,
}

pub fn lock_verdict(existing: Option<&RollLock>, me: &str, now_ms: u64) -> LockVerdict {
    match existing {
        None => LockVerdict::Stale,
        Some(l) if l.holder == me => LockVerdict::Mine,
        Some(l) if now_ms > l.expires_at_ms => LockVerdict::Stale,
        Some(l) => LockVerdict::Wait(l.holder.clone()),
    }
}

/// A node's desired engine settings, written by the roll driver, applied by the node's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredConfig {
    pub version: u32,
    pub node_id: String,
    /// Grows by one with every change of the cluster's settings; the agent applies a
    /// generation newer than the one it last applied, and reports it as
    /// `Member::config_generation`.
    pub generation: u64,
    /// Server variables (the complete set: a name missing here is removed from the file).
    #[serde(default)]
    pub engine_settings: BTreeMap<String, String>,
    /// The engine version the node should run (`engine_version` of the cluster): the agent
    /// installs it first when the package source has it and the node runs another one. None:
    /// keep what is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// Unix milliseconds of the request.
    pub requested_at_ms: u64,
}

pub fn render_desired_config(d: &DesiredConfig) -> String {
    // Serializing plain structs with string keys cannot fail.
    serde_json::to_string(d).unwrap_or_default()
}

pub fn parse_desired_config(
    text: &[u8],
) -> Result<DesiredConfig, crate::failover::FailoverObjectError> {
    use crate::failover::FailoverObjectError;
    let d: DesiredConfig =
        serde_json::from_slice(text).map_err(|e| FailoverObjectError::Json(e.to_string()))?;
    if d.version != FAILOVER_OBJECT_VERSION {
        return Err(FailoverObjectError::Version {
            found: d.version,
            expected: FAILOVER_OBJECT_VERSION,
        });
    }
    Ok(d)
}

/// The generation a roll to `wanted` uses, given the desired-config objects that exist: the
/// newest generation when every object of that generation already asks for `wanted` (an
/// interrupted roll resumes), else one more than the newest.
/// Where a roll starts or resumes, from the desired-config objects already written: the
/// generation it rolls to, and for each node already asked for it, when it was asked (a member
/// heartbeat must be newer to count) and when this run began waiting on it (`now`, for the
/// timeout). Shared by the provider's and the agent's roll drivers.
pub fn resume_point(
    existing: &[DesiredConfig],
    wanted: &BTreeMap<String, String>,
    engine_version: Option<&str>,
    now: u64,
) -> (
    u64,
    std::collections::HashMap<String, u64>,
    std::collections::HashMap<String, u64>,
) {
    let target = target_generation(existing, wanted, engine_version);
    let asked: std::collections::HashMap<String, u64> = existing
        .iter()
        .filter(|d| d.generation >= target)
        .map(|d| (d.node_id.clone(), d.requested_at_ms))
        .collect();
    let started = asked.keys().map(|id| (id.clone(), now)).collect();
    (target, asked, started)
}

pub fn target_generation(
    existing: &[DesiredConfig],
    wanted: &BTreeMap<String, String>,
    engine_version: Option<&str>,
) -> u64 {
    let newest = existing.iter().map(|d| d.generation).max().unwrap_or(0);
    // A version roll always asks for a new generation unless the newest one already asks for
    // this version: a same-version restart (all this machine can install) must still restart.
    let resumable = newest > 0
        && existing
            .iter()
            .filter(|d| d.generation == newest)
            .all(|d| &d.engine_settings == wanted && d.engine_version.as_deref() == engine_version);
    if resumable { newest } else { newest + 1 }
}

// ------------------------------------------------------------------ engine settings

/// Server variables Strata sets itself: replication, durability and identity depend on them
/// (the zero-loss argument needs `sync_binlog = 1`, `innodb_flush_log_at_trx_commit = 1`,
/// semi-sync as the agent sets it, and `read_only` only ever lifted by the lease holder).
pub const RESERVED_ENGINE_SETTINGS: &[&str] = &[
    "server_id",
    "port",
    "socket",
    "datadir",
    "pid_file",
    "user",
    "bind_address",
    "report_host",
    "skip_name_resolve",
    "log_bin",
    "log_bin_basename",
    "binlog_format",
    "log_slave_updates",
    "log_replica_updates",
    "gtid_strict_mode",
    "gtid_mode",
    "enforce_gtid_consistency",
    "sync_binlog",
    "innodb_flush_log_at_trx_commit",
    "relay_log",
    "relay_log_recovery",
    "ssl_cert",
    "ssl_key",
    "ssl_ca",
    "read_only",
    "super_read_only",
    "skip_slave_start",
    "skip_replica_start",
    "slave_net_timeout",
    "replica_net_timeout",
];

/// Why a setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineSettingError {
    #[error(
        "{name:?} is not a server variable name: use 1 to 64 lowercase letters, digits and underscores, starting with a letter"
    )]
    BadName { name: String },
    #[error("{name:?} is set by Strata itself (replication, durability or identity depend on it)")]
    Reserved { name: String },
    #[error(
        "{name} = {value:?}: use 1 to 256 characters among letters, digits and _ . , : / + - = % @ (no spaces, quotes or newlines)"
    )]
    BadValue { name: String, value: String },
}

/// A user-set server variable: a plain name (dashes are not accepted, so one variable has one
/// spelling), not one Strata owns, and a value that cannot break out of its line in the
/// config file. Whether the server knows the variable is only learnt when it starts with it:
/// a replica that does not come back stops the roll before the source is touched.
pub fn check_engine_setting(name: &str, value: &str) -> Result<(), EngineSettingError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(EngineSettingError::BadName { name: name.into() });
    }
    if RESERVED_ENGINE_SETTINGS.contains(&name) || name.starts_with("rpl_semi_sync") {
        return Err(EngineSettingError::Reserved { name: name.into() });
    }
    let value_ok = !value.is_empty()
        && value.len() <= 256
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | ',' | ':' | '/' | '+' | '-' | '=' | '%' | '@')
        });
    if !value_ok {
        return Err(EngineSettingError::BadValue {
            name: name.into(),
            value: value.into(),
        });
    }
    Ok(())
}

/// The settings file the agent writes next to the server config (`[mariadbd]`/`[mysqld]`
/// group), with the generation in a comment so a reader can tell what it holds.
pub fn render_settings_file(
    engine: Engine,
    generation: u64,
    settings: &BTreeMap<String, String>,
) -> String {
    let group = match engine {
        Engine::Mariadb => "mariadbd",
        Engine::Mysql => "mysqld",
    };
    let mut s = String::from(
        "# Managed by strata-agent: engine_settings of strata_cluster; local edits are overwritten.\n",
    );
    s.push_str(&format!("# generation {generation}\n[{group}]\n"));
    for (k, v) in settings {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// The generation recorded by [`render_settings_file`], None when the text has none.
pub fn settings_file_generation(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("# generation "))
        .and_then(|g| g.trim().parse().ok())
}

// ------------------------------------------------------------------ version upgrades

/// What a change of `engine_version` means for a running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChange {
    Same,
    /// A patch release, or the next supported release series: replicas of the newer version
    /// replicate from a source of the older one, so the change rolls.
    Roll,
    /// New nodes are needed; the reason says why (a downgrade, a skipped series, an unknown
    /// version).
    Replace(String),
}

/// Release series in upgrade order; a roll may move one step along it (replication from an
/// older source to a newer replica is supported one series apart, not across several).
pub fn upgrade_path(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Mariadb => &["10.6", "10.11", "11.4", "11.8"],
        Engine::Mysql => &["8.0", "8.4"],
    }
}

fn split_version(v: &str) -> Option<(String, Option<u32>)> {
    let parts: Vec<&str> = v.trim().split('.').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        return None;
    }
    let series = format!("{}.{}", parts[0], parts[1]);
    let patch = parts.get(2).and_then(|p| p.parse().ok());
    Some((series, patch))
}

/// Whether going from `old` to `new` (e.g. `10.11` → `10.11.9`, `10.11` → `11.4`) rolls.
pub fn version_change(engine: Engine, old: &str, new: &str) -> VersionChange {
    if old.trim() == new.trim() {
        return VersionChange::Same;
    }
    let (Some((os, op)), Some((ns, np))) = (split_version(old), split_version(new)) else {
        return VersionChange::Replace(format!(
            "{old:?} → {new:?}: not versions of the form X.Y or X.Y.Z"
        ));
    };
    let path = upgrade_path(engine);
    let (Some(oi), Some(ni)) = (
        path.iter().position(|s| *s == os),
        path.iter().position(|s| *s == ns),
    ) else {
        return VersionChange::Replace(format!(
            "{old} → {new}: a series outside the supported upgrade path ({})",
            path.join(" → ")
        ));
    };
    match ni.cmp(&oi) {
        std::cmp::Ordering::Less => VersionChange::Replace(format!("{old} → {new} is a downgrade")),
        std::cmp::Ordering::Equal => match (op, np) {
            (Some(a), Some(b)) if b < a => {
                VersionChange::Replace(format!("{old} → {new} is a downgrade"))
            }
            _ => VersionChange::Roll,
        },
        std::cmp::Ordering::Greater if ni == oi + 1 => VersionChange::Roll,
        std::cmp::Ordering::Greater => VersionChange::Replace(format!(
            "{old} → {new} skips a release series ({}): upgrade one series at a time",
            path[oi + 1]
        )),
    }
}

/// Whether a Debian package version (`1:10.11.6-0+deb12u1`) is the engine version a roll asks
/// for (`10.11` or `10.11.6`): the upstream part, without epoch and Debian revision, equals
/// it or extends it by a further component.
pub fn package_version_matches(package_version: &str, wanted: &str) -> bool {
    let no_epoch = package_version
        .split_once(':')
        .map_or(package_version, |(_, v)| v);
    let upstream = no_epoch.split(['-', '+', '~']).next().unwrap_or("");
    let wanted = wanted.trim();
    !wanted.is_empty() && (upstream == wanted || upstream.starts_with(&format!("{wanted}.")))
}

/// The server package of an engine, as the node's package source names it.
pub fn server_package(engine: Engine) -> &'static str {
    match engine {
        Engine::Mariadb => "mariadb-server",
        Engine::Mysql => "mysql-server",
    }
}

// ------------------------------------------------------------------ roll order

/// One node as a roll driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollNode {
    pub node_id: String,
    /// A home node (source or replica); false for a region replica, which never becomes
    /// source.
    pub home: bool,
    /// The change is in place on this node and it is back: healthy, replicating (or the
    /// source), caught up.
    pub done: bool,
    /// When the driver asked for the change on this node (None: not asked yet for this roll).
    pub started_at_ms: Option<u64>,
}

/// One step of a roll, for showing the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    Change(String),
    Switchover { to: String },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollAction {
    /// Ask for the change on this node (write its desired config / modify its instance).
    Change(String),
    /// The change was asked for on this node; wait until it is back.
    Wait(String),
    /// Every other node is changed: hand the source over to this changed home replica.
    Switchover { to: String },
    /// Every node is changed.
    Done,
    /// Stop the roll: the node named did not come back in time, or no switchover target.
    Failed { node_id: String, reason: String },
}

/// Non-source nodes in roll order: home replicas by id, then region replicas by id (region
/// replicas follow the same source and never take part in an election, so their order does
/// not matter for writes; home replicas first gets a switchover target ready soonest).
fn replicas_in_order<'a>(holder: &str, nodes: &'a [RollNode]) -> Vec<&'a RollNode> {
    let mut v: Vec<&RollNode> = nodes.iter().filter(|n| n.node_id != holder).collect();
    v.sort_by(|a, b| b.home.cmp(&a.home).then(a.node_id.cmp(&b.node_id)));
    v
}

/// The whole order from the start, for `plan`: every replica, the switchover, the old source.
pub fn roll_order(holder: &str, nodes: &[RollNode]) -> Vec<RollStep> {
    let reps = replicas_in_order(holder, nodes);
    let mut out: Vec<RollStep> = reps
        .iter()
        .map(|n| RollStep::Change(n.node_id.clone()))
        .collect();
    if nodes.iter().any(|n| n.node_id == holder) {
        if let Some(t) = reps.iter().find(|n| n.home) {
            out.push(RollStep::Switchover {
                to: t.node_id.clone(),
            });
        }
        out.push(RollStep::Change(holder.to_string()));
    }
    out
}

/// `n2, n3, switchover to n2, n1` — the order as one line.
pub fn describe_order(steps: &[RollStep]) -> String {
    steps
        .iter()
        .map(|s| match s {
            RollStep::Change(n) => n.clone(),
            RollStep::Switchover { to } => format!("switchover to {to}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The next action of a roll. `holder` is the current lease holder (the source);
/// `timeout_ms` bounds how long one node may take to come back after its change was asked.
/// A roll interrupted anywhere resumes from the observed state: changed nodes are skipped, a
/// node whose change was asked is waited for, and after a switchover the old source is
/// simply a replica not yet changed.
pub fn next_roll_action(
    holder: &str,
    nodes: &[RollNode],
    now_ms: u64,
    timeout_ms: u64,
) -> RollAction {
    for n in replicas_in_order(holder, nodes) {
        if n.done {
            continue;
        }
        return match n.started_at_ms {
            None => RollAction::Change(n.node_id.clone()),
            Some(t) if now_ms.saturating_sub(t) > timeout_ms => RollAction::Failed {
                node_id: n.node_id.clone(),
                reason: format!(
                    "not back (healthy, replicating, caught up, changed) within {} s of its change; the roll stopped here and the cluster keeps serving",
                    timeout_ms / 1000
                ),
            },
            Some(_) => RollAction::Wait(n.node_id.clone()),
        };
    }
    match nodes.iter().find(|n| n.node_id == holder) {
        None => RollAction::Done,
        Some(h) if h.done => RollAction::Done,
        Some(_) => match replicas_in_order(holder, nodes)
            .into_iter()
            .find(|n| n.home && n.done)
        {
            Some(t) => RollAction::Switchover {
                to: t.node_id.clone(),
            },
            None => RollAction::Failed {
                node_id: holder.to_string(),
                reason: "no changed, healthy home replica to switch over to: a source without a replica cannot be changed without stopping writes".into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, home: bool, done: bool, started: Option<u64>) -> RollNode {
        RollNode {
            node_id: id.into(),
            home,
            done,
            started_at_ms: started,
        }
    }

    fn settings(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn desired_config_round_trips_and_rejects_other_versions() {
        let d = DesiredConfig {
            version: FAILOVER_OBJECT_VERSION,
            node_id: "n2".into(),
            generation: 3,
            engine_settings: settings(&[("max_connections", "300")]),
            engine_version: Some("10.11".into()),
            requested_at_ms: 42,
        };
        assert_eq!(
            parse_desired_config(render_desired_config(&d).as_bytes()).unwrap(),
            d
        );
        let other = render_desired_config(&DesiredConfig { version: 9, ..d });
        assert!(parse_desired_config(other.as_bytes()).is_err());
        assert_eq!(
            config_key("failover/c1/", "n2"),
            "failover/c1/config/n2.json"
        );
    }

    #[test]
    fn package_versions_match_the_series_or_the_release() {
        assert!(package_version_matches("1:10.11.6-0+deb12u1", "10.11"));
        assert!(package_version_matches("1:10.11.6-0+deb12u1", "10.11.6"));
        assert!(!package_version_matches("1:10.11.6-0+deb12u1", "10.11.9"));
        assert!(!package_version_matches("1:10.11.6-0+deb12u1", "10.1"));
        assert!(!package_version_matches("1:10.11.6-0+deb12u1", "11.4"));
        assert!(package_version_matches("8.4.3-1debian12", "8.4"));
        assert!(!package_version_matches("8.4.3-1debian12", ""));
    }

    #[test]
    fn the_roll_lock_is_taken_over_by_its_holder_and_freed_when_stale() {
        let l = RollLock {
            version: 1,
            holder: "strata_cluster.orders".into(),
            acquired_at_ms: 1_000,
            expires_at_ms: 5_000,
        };
        assert_eq!(
            parse_roll_lock(render_roll_lock(&l).as_bytes()),
            Some(l.clone())
        );
        assert_eq!(
            lock_verdict(Some(&l), "strata_cluster.orders", 2_000),
            LockVerdict::Mine
        );
        assert_eq!(
            lock_verdict(Some(&l), "strata_replica i-1", 2_000),
            LockVerdict::Wait("strata_cluster.orders".into())
        );
        assert_eq!(
            lock_verdict(Some(&l), "strata_replica i-1", 5_001),
            LockVerdict::Stale
        );
        assert_eq!(lock_verdict(None, "x", 0), LockVerdict::Stale);
        assert_eq!(roll_lock_key("failover/c1/"), "failover/c1/roll-lock.json");
    }

    #[test]
    fn target_generation_resumes_only_the_same_settings() {
        let want = settings(&[("max_connections", "300")]);
        let d = |g, s: &BTreeMap<String, String>| DesiredConfig {
            version: 1,
            node_id: "n".into(),
            generation: g,
            engine_settings: s.clone(),
            engine_version: None,
            requested_at_ms: 0,
        };
        assert_eq!(target_generation(&[], &want, None), 1);
        assert_eq!(
            target_generation(&[d(2, &want), d(1, &BTreeMap::new())], &want, None),
            2
        );
        // Back to an older value is a new generation: nodes at 2 run something else.
        let other = settings(&[("max_connections", "100")]);
        assert_eq!(
            target_generation(&[d(1, &want), d(2, &other)], &want, None),
            3
        );
        // The same settings with a version asked for: a new generation (the nodes restart),
        // and a resumed version roll keeps it.
        assert_eq!(target_generation(&[d(2, &want)], &want, Some("10.11")), 3);
        let mut v = d(3, &want);
        v.engine_version = Some("10.11".into());
        assert_eq!(
            target_generation(&[d(2, &want), v], &want, Some("10.11")),
            3
        );
    }

    #[test]
    fn settings_are_checked_and_rendered() {
        assert!(check_engine_setting("max_connections", "300").is_ok());
        assert!(check_engine_setting("sql_mode", "STRICT_TRANS_TABLES,NO_ZERO_DATE").is_ok());
        assert!(matches!(
            check_engine_setting("sync_binlog", "0"),
            Err(EngineSettingError::Reserved { .. })
        ));
        assert!(matches!(
            check_engine_setting("rpl_semi_sync_master_timeout", "10"),
            Err(EngineSettingError::Reserved { .. })
        ));
        assert!(matches!(
            check_engine_setting("max-connections", "1"),
            Err(EngineSettingError::BadName { .. })
        ));
        assert!(matches!(
            check_engine_setting("max_connections", "1\nread_only=0"),
            Err(EngineSettingError::BadValue { .. })
        ));
        assert!(check_engine_setting("max_connections", "").is_err());
        let text = render_settings_file(Engine::Mariadb, 4, &settings(&[("a_b", "1")]));
        assert!(text.contains("[mariadbd]\na_b = 1\n"));
        assert_eq!(settings_file_generation(&text), Some(4));
        assert_eq!(settings_file_generation("[mysqld]\n"), None);
    }

    #[test]
    fn version_changes() {
        use VersionChange::*;
        let m = Engine::Mariadb;
        assert_eq!(version_change(m, "10.11", "10.11"), Same);
        assert_eq!(version_change(m, "10.11", "10.11.9"), Roll);
        assert_eq!(version_change(m, "10.11.6", "10.11.9"), Roll);
        assert_eq!(version_change(m, "10.11", "11.4"), Roll);
        assert!(
            matches!(version_change(m, "10.11.9", "10.11.6"), Replace(r) if r.contains("downgrade"))
        );
        assert!(
            matches!(version_change(m, "11.4", "10.11"), Replace(r) if r.contains("downgrade"))
        );
        assert!(matches!(version_change(m, "10.6", "11.4"), Replace(r) if r.contains("skips")));
        assert!(matches!(version_change(m, "10.11", "12.0"), Replace(_)));
        assert!(matches!(version_change(m, "10.11", "latest"), Replace(_)));
        assert_eq!(version_change(Engine::Mysql, "8.0", "8.4"), Roll);
        assert!(matches!(
            version_change(Engine::Mysql, "8.4", "8.0"),
            Replace(_)
        ));
    }

    #[test]
    fn order_is_home_replicas_region_replicas_switchover_old_source() {
        let nodes = vec![
            node("src", true, false, None),
            node("eu-1", false, false, None),
            node("r-b", true, false, None),
            node("r-a", true, false, None),
        ];
        let steps = roll_order("src", &nodes);
        assert_eq!(
            describe_order(&steps),
            "r-a, r-b, eu-1, switchover to r-a, src"
        );
    }

    #[test]
    fn next_action_walks_the_roll_and_resumes() {
        let t = 60_000;
        // Fresh roll: the first home replica.
        let mut nodes = vec![
            node("src", true, false, None),
            node("r-a", true, false, None),
            node("r-b", true, false, None),
            node("eu-1", false, false, None),
        ];
        assert_eq!(
            next_roll_action("src", &nodes, 0, t),
            RollAction::Change("r-a".into())
        );
        // Asked: wait; one at a time, so r-b is not touched meanwhile.
        nodes[1].started_at_ms = Some(0);
        assert_eq!(
            next_roll_action("src", &nodes, 10, t),
            RollAction::Wait("r-a".into())
        );
        // Interrupted apply resumed: r-a already changed is skipped.
        nodes[1].done = true;
        assert_eq!(
            next_roll_action("src", &nodes, 20, t),
            RollAction::Change("r-b".into())
        );
        nodes[2].done = true;
        assert_eq!(
            next_roll_action("src", &nodes, 30, t),
            RollAction::Change("eu-1".into())
        );
        nodes[3].done = true;
        assert_eq!(
            next_roll_action("src", &nodes, 40, t),
            RollAction::Switchover { to: "r-a".into() }
        );
        // After the switchover r-a holds the lease; the old source is a replica to change.
        assert_eq!(
            next_roll_action("r-a", &nodes, 50, t),
            RollAction::Change("src".into())
        );
        nodes[0].done = true;
        assert_eq!(next_roll_action("r-a", &nodes, 60, t), RollAction::Done);
    }

    #[test]
    fn a_node_that_does_not_come_back_stops_the_roll_before_the_source() {
        let nodes = vec![
            node("src", true, false, None),
            node("r-a", true, false, Some(1_000)),
            node("r-b", true, false, None),
        ];
        match next_roll_action("src", &nodes, 1_000 + 60_001, 60_000) {
            RollAction::Failed { node_id, .. } => assert_eq!(node_id, "r-a"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn switchover_needs_a_changed_home_replica() {
        // Only a region replica besides the source: it may not become source.
        let nodes = vec![
            node("src", true, false, None),
            node("eu-1", false, true, None),
        ];
        assert!(matches!(
            next_roll_action("src", &nodes, 0, 1),
            RollAction::Failed { node_id, .. } if node_id == "src"
        ));
        // The target is the first changed home replica in order.
        let nodes = vec![
            node("src", true, false, None),
            node("r-a", true, true, None),
            node("r-b", true, true, None),
        ];
        assert_eq!(
            next_roll_action("src", &nodes, 0, 1),
            RollAction::Switchover { to: "r-a".into() }
        );
    }
}
