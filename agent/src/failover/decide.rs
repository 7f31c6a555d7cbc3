//! Pure decisions of the failover controller, kept apart from I/O so they are unit-tested.

use crate::engine::EngineSql;
use strata_topology::Role;
use strata_topology::failover::{CurrentRole, Lease, Member};

/// What a replica observed about its source this heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probes {
    /// Consecutive failed SQL pings of the source.
    pub ping_failures: u32,
    /// The local replication IO thread is connected.
    pub io_running: bool,
}

/// Whether a replica should stop acknowledging the source (stop its IO thread): the lease is
/// about to run out by this node's clock (so nobody should be writing through it soon), or
/// the direct path has failed `detect_misses` times in a row (a frozen or cut-off source that
/// still holds its lease). Stopping is only a withdrawal of acks: the link restarts once the
/// source renews and answers again.
pub fn withdraw_acks(
    lease: Option<&Lease>,
    now_ms: u64,
    margin_ms: u64,
    probes: Probes,
    detect_misses: u32,
) -> Option<String> {
    let mut why = Vec::new();
    if let Some(l) = lease
        && now_ms.saturating_add(margin_ms) > l.expires_at_ms
    {
        why.push(format!(
            "lease of {} not renewed (expires {} ms from now)",
            l.holder.node_id,
            l.expires_at_ms as i64 - now_ms as i64
        ));
    }
    if probes.ping_failures >= detect_misses {
        why.push(format!(
            "SQL ping failed {} times (IO thread {})",
            probes.ping_failures,
            if probes.io_running {
                "connected"
            } else {
                "down"
            }
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// A candidate's final position for an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: String,
    pub gtid: String,
}

/// The candidate to promote: the most advanced by GTID; among equals the lowest node id, so
/// every candidate that sees the same facts picks the same node. `None` when positions
/// cannot be compared (unparsable GTIDs): better no failover than a wrong one.
pub fn choose<'a>(eng: &dyn EngineSql, cands: &'a [Candidate]) -> Option<&'a Candidate> {
    let mut best: Option<&Candidate> = None;
    for c in cands {
        best = Some(match best {
            None => c,
            Some(b) => {
                let c_has_more = eng.gtid_gap(&c.gtid, &b.gtid)? > 0;
                let b_has_more = eng.gtid_gap(&b.gtid, &c.gtid)? > 0;
                let c_wins_tie = !b_has_more && c.node_id < b.node_id;
                if (c_has_more && !b_has_more) || (!c_has_more && c_wins_tie) {
                    c
                } else {
                    b
                }
            }
        });
    }
    best
}

/// A member that takes part in an election after `lost_holder` lost the lease: a home node
/// (never a region replica), a replica now, whose replication link ran at least once.
fn is_candidate(m: &Member, lost_holder: &str) -> bool {
    m.launch_role != Role::RegionReplica
        && m.node_id != lost_holder
        && m.current_role == CurrentRole::Replica
        // A node still copying its first data is no candidate (and is not waited for); it has
        // never run an IO thread, so it cannot have acknowledged anything.
        && m.replicated != Some(false)
}

/// The peers an election for `lease`'s successor must hear from before it picks a winner:
/// candidates ([`is_candidate`]) that heartbeat within three leases of `now_ms`, or
/// that were alive within a lease of the lost holder's last renewal, that is while it could
/// still commit, so they may hold a write only they acknowledged. A live peer's heartbeat can
/// lag by more than a lease (its loop waits on S3, or on applying its relay log to make its
/// position final); leaving such a peer out could elect a node without that write.
pub fn election_peers<'a>(
    members: &'a [Member],
    lease: &Lease,
    me: &str,
    now_ms: u64,
    lease_ms: u64,
) -> Vec<&'a Member> {
    members
        .iter()
        .filter(|m| is_candidate(m, &lease.holder.node_id) && m.node_id != me)
        .filter(|m| {
            now_ms.saturating_sub(m.updated_at_ms) <= lease_ms * 3
                || m.updated_at_ms + lease_ms >= lease.renewed_at_ms
        })
        .collect()
}

/// How a node that followed (or was) the source of `epoch_seen` may follow the holder of
/// `lease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoin {
    /// Same history: point the link at the new source.
    Follow,
    /// It holds transactions the new source lacks (or that cannot be proven otherwise):
    /// rebuild from a copy.
    Rebuild(String),
}

pub fn rejoin(eng: &dyn EngineSql, lease: &Lease, epoch_seen: u64, my_gtid: &str) -> Rejoin {
    if my_gtid.trim().is_empty() || epoch_seen >= lease.epoch || epoch_seen == 0 {
        // Nothing of its own, the same epoch, or a node that never followed anyone (a new
        // node: seeded or linked by GTID, which the source refuses if it is ahead).
        return Rejoin::Follow;
    }
    let Some(p) = lease.promotion_after(epoch_seen) else {
        return Rejoin::Rebuild(format!(
            "the lease no longer remembers the promotion after epoch {epoch_seen}"
        ));
    };
    match eng.gtid_contains(&p.gtid_at_promotion, my_gtid) {
        Some(true) => Rejoin::Follow,
        Some(false) => Rejoin::Rebuild(format!(
            "holds {my_gtid}, beyond {} where {} took over at epoch {}",
            p.gtid_at_promotion, p.node_id, p.epoch
        )),
        None => Rejoin::Rebuild(format!(
            "cannot compare {my_gtid} with {}",
            p.gtid_at_promotion
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mariadb::MariaDb;
    use strata_topology::failover::{FAILOVER_OBJECT_VERSION, LeaseHolder, Promotion};

    fn c(id: &str, g: &str) -> Candidate {
        Candidate {
            node_id: id.into(),
            gtid: g.into(),
        }
    }

    #[test]
    fn most_advanced_wins_then_lowest_id() {
        let e = &MariaDb;
        let cs = [c("b", "0-1-10"), c("a", "0-1-9"), c("c", "0-1-10")];
        assert_eq!(choose(e, &cs).unwrap().node_id, "b");
        let cs = [c("c", "0-1-10"), c("b", "0-1-10")];
        assert_eq!(choose(e, &cs).unwrap().node_id, "b");
        let cs = [c("a", "0-1-3"), c("b", "0-1-3,1-2-1")];
        assert_eq!(choose(e, &cs).unwrap().node_id, "b");
        assert_eq!(choose(e, &[c("a", "junk"), c("b", "0-1-1")]), None);
        assert_eq!(choose(e, &[]), None);
    }

    /// A home replica's member object, heard from at `at`.
    fn member(id: &str, replicated: Option<bool>, at: u64) -> Member {
        Member {
            version: FAILOVER_OBJECT_VERSION,
            node_id: id.into(),
            instance_id: None,
            launch_role: Role::Replica,
            current_role: CurrentRole::Replica,
            region: "r".into(),
            host: "h".into(),
            port: 1,
            reader_name: None,
            gtid_executed: "0-1-9".into(),
            healthy: true,
            lag_seconds: Some(0),
            epoch_seen: 1,
            final_for_epoch: None,
            config_generation: None,
            config_error: None,
            config_failed_generation: None,
            replicated,
            updated_at_ms: at,
        }
    }

    #[test]
    fn a_node_still_copying_its_data_is_no_candidate() {
        let m = member;
        // Holder "b" lost the lease (renewed at 6_000, lease 1_000); the election runs at
        // 7_500. "silent" was heard from long before, and not around the last renewal.
        let l = lease(2, &[]);
        let ms = [
            m("b", Some(true), 7_000),
            m("fresh", Some(false), 7_000),
            m("legacy", None, 7_000),
            m("ok", Some(true), 7_000),
            m("silent", Some(true), 0),
        ];
        let ids: Vec<&str> = election_peers(&ms, &l, "me", 7_500, 1_000)
            .iter()
            .map(|m| m.node_id.as_str())
            .collect();
        assert_eq!(ids, vec!["legacy", "ok"]);
    }

    #[test]
    fn an_election_hears_from_every_peer_alive_while_the_holder_could_commit() {
        let m = |id: &str, at: u64| member(id, Some(true), at);
        // Holder "b" renewed at 6_000 (lease 1_000); the election runs at 20_000.
        let l = lease(2, &[]);
        let ms = [
            m("b", 19_900),
            m("me", 19_900),
            // Beat 1.8 s ago: more than a lease, still well within three.
            m("slow", 18_200),
            // Silent since before the holder's last renewal window, and for long since.
            m("gone", 4_000),
            // Last heard just after the holder's last renewal: it may have acknowledged.
            m("was-alive", 5_500),
        ];
        let ids: Vec<&str> = election_peers(&ms, &l, "me", 20_000, 1_000)
            .iter()
            .map(|m| m.node_id.as_str())
            .collect();
        // "slow" beat more than a lease ago: the rule before 2026-11-30 (fresh within one
        // lease) left it out.
        assert_eq!(ids, vec!["slow", "was-alive"]);
    }

    fn lease(epoch: u64, promos: &[(u64, &str)]) -> Lease {
        Lease {
            version: FAILOVER_OBJECT_VERSION,
            epoch,
            holder: LeaseHolder {
                node_id: "b".into(),
                host: "h".into(),
                port: 1,
                instance_id: None,
            },
            expires_at_ms: 10_000,
            renewed_at_ms: 6_000,
            promotions: promos
                .iter()
                .map(|(e, g)| Promotion {
                    epoch: *e,
                    node_id: "b".into(),
                    gtid_at_promotion: g.to_string(),
                })
                .collect(),
            last_failover: None,
        }
    }

    #[test]
    fn old_source_rejoins_only_without_extra_transactions() {
        let e = &MariaDb;
        let l = lease(2, &[(1, "0-1-1"), (2, "0-1-100")]);
        assert_eq!(rejoin(e, &l, 1, "0-1-100"), Rejoin::Follow);
        assert_eq!(rejoin(e, &l, 1, "0-1-90"), Rejoin::Follow);
        assert!(matches!(rejoin(e, &l, 1, "0-1-101"), Rejoin::Rebuild(_)));
        // Same-numbered but later history of the new source does not excuse it.
        let l3 = lease(3, &[(2, "0-1-100"), (3, "0-2-150")]);
        assert!(matches!(rejoin(e, &l3, 1, "0-1-101"), Rejoin::Rebuild(_)));
        assert_eq!(rejoin(e, &l3, 3, "0-2-180"), Rejoin::Follow);
        assert_eq!(rejoin(e, &l3, 0, "0-2-180"), Rejoin::Follow);
    }

    #[test]
    fn acks_are_withdrawn_on_either_path() {
        let l = lease(1, &[]);
        let ok = Probes {
            ping_failures: 0,
            io_running: true,
        };
        assert_eq!(withdraw_acks(Some(&l), 6_000, 1_000, ok, 3), None);
        assert!(withdraw_acks(Some(&l), 9_500, 1_000, ok, 3).is_some());
        let frozen = Probes {
            ping_failures: 3,
            io_running: true,
        };
        assert!(withdraw_acks(Some(&l), 6_000, 1_000, frozen, 3).is_some());
        assert!(withdraw_acks(None, 6_000, 1_000, frozen, 3).is_some());
    }
}
