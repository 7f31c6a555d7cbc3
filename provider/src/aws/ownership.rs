//! Ownership: every AWS object set a resource creates belongs to exactly one resource instance.
//!
//! Three guards, cheapest first:
//! - **Plan** ([`plan_claim`]): within one provider process (one plan walk), a second planned
//!   create of the same identity (two `strata_cluster` blocks with one `name`) is refused.
//! - **Create** ([`ApplyClaim`] and [`check_anchor`]): a create holds an in-process claim on
//!   its identity while it runs, and looks at the identity's *anchor* object (the cluster's or
//!   region's security group; a node; a volume). An anchor tagged `strata:owner` is a finished
//!   create of some resource instance: refused, import is the way to adopt it. An anchor with
//!   no owner tag is what a create that never finished left behind (tofu killed, the machine
//!   lost): adopted and completed, so a re-apply after a forced exit finds what it made.
//! - **Read**: an anchor whose owner tag is not the one in this instance's private state is not
//!   this instance's: read reports it gone, and the create that follows is refused.
//!
//! Terraform may lose a finished create (tofu killed before it wrote the state: OpenTofu does
//! not write the state after every resource). So for named resources the anchor also records
//! its origin (`strata:origin`, the configuration's directory and workspace): a create from
//! the same origin takes the objects back. Unnamed resources (replicas, segments) are marked
//! owned by their first *read*, which proves the state holds them; until then they count as
//! unfinished, and a create of this process never takes one another create of it made.
//! Limits: two applies of different states creating one identity at the same moment can both
//! see an unfinished anchor; two workspaces of one directory need `TF_WORKSPACE` set to be
//! told apart; with `-refresh=false` a replica made by an earlier apply is not yet marked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::config::RegionClients;
use super::error::AwsError;

/// [`TAG_OWNER`]: which resource instance owns an object set (its value: an owner id kept in
/// that instance's private state). [`TAG_ORIGIN`]: where the owning resource was created from:
/// a digest of the provider's working directory (the Terraform configuration's) and workspace.
/// A create whose anchor has another origin is refused; one from the same origin is a re-apply
/// whose state was lost (tofu killed before it wrote the state) and takes the objects back.
pub use strata_topology::tags::{TAG_ORIGIN, TAG_OWNER};

/// This process's origin (see [`TAG_ORIGIN`]).
pub fn origin() -> String {
    use sha2::{Digest, Sha256};
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let ws = std::env::var("TF_WORKSPACE").unwrap_or_else(|_| "default".into());
    let h = Sha256::digest(format!("{cwd}\0{ws}").as_bytes());
    hex::encode(&h[..8])
}

static PLANNED: Mutex<BTreeMap<String, Option<u64>>> = Mutex::new(BTreeMap::new());
static APPLYING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A fresh owner id for a resource instance.
pub fn new_owner_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

fn duplicate(key_desc: &str, attribute: &str) -> AwsError {
    AwsError::Duplicate {
        what: key_desc.to_string(),
        attribute: attribute.to_string(),
    }
}

/// Records a planned create of `key` in this process; a second one is a duplicate in the
/// configuration. `key_desc` says what the identity is (`strata_cluster name "orders"`).
///
/// `config` is a fingerprint of the planned configuration when it is wholly known. The same
/// resource may be planned twice by one process (`terraform test` plans again in its apply walk
/// without configuring the provider again): equal fingerprints are that, not a duplicate. When
/// either is unknown, or two blocks are identical, plan cannot tell them apart; the create-time
/// claim and the anchor's owner tag still refuse the second at apply.
pub fn plan_claim(
    key: &str,
    key_desc: &str,
    attribute: &str,
    config: Option<u64>,
) -> Result<(), AwsError> {
    let mut set = PLANNED
        .lock()
        .map_err(|_| AwsError::Config("claims lock poisoned".into()))?;
    match set.get(key) {
        None => {
            set.insert(key.to_string(), config);
            Ok(())
        }
        Some(Some(prev)) if config.is_some_and(|c| c != *prev) => {
            Err(duplicate(key_desc, attribute))
        }
        Some(_) => Ok(()),
    }
}

/// Forgets the planned creates: called when the provider is configured, which starts a walk
/// (a process that serves several walks, as `tofu test` may, starts each one clean).
pub fn reset_plan_claims() {
    if let Ok(mut set) = PLANNED.lock() {
        set.clear();
    }
}

/// An identity being created by this process right now; released when dropped.
#[derive(Debug)]
pub struct ApplyClaim {
    key: String,
}

impl ApplyClaim {
    pub fn take(key: &str, key_desc: &str, attribute: &str) -> Result<ApplyClaim, AwsError> {
        let mut set = APPLYING
            .lock()
            .map_err(|_| AwsError::Config("claims lock poisoned".into()))?;
        if !set.insert(key.to_string()) {
            return Err(duplicate(key_desc, attribute));
        }
        Ok(ApplyClaim {
            key: key.to_string(),
        })
    }
}

impl Drop for ApplyClaim {
    fn drop(&mut self) {
        if let Ok(mut set) = APPLYING.lock() {
            set.remove(&self.key);
        }
    }
}

/// What a create may do with an existing anchor, from its `strata:owner` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// Nothing there: create.
    Absent,
    /// Left by a create that never finished: adopt it (and its siblings) and finish.
    Unfinished,
    /// Finished by `owner`: this is someone else's (or needs an import).
    Owned(String),
}

pub fn anchor_verdict(owner_tag: Option<&str>, exists: bool) -> Anchor {
    match (exists, owner_tag.filter(|o| !o.is_empty())) {
        (false, _) => Anchor::Absent,
        (true, None) => Anchor::Unfinished,
        (true, Some(o)) => Anchor::Owned(o.to_string()),
    }
}

/// Refuses a create when the anchor is owned. `object` names it (`security group sg-1 of
/// cluster "orders"`), `attribute` is the attribute that chose it (`name`).
pub fn check_anchor(verdict: &Anchor, object: &str, attribute: &str) -> Result<(), AwsError> {
    match verdict {
        Anchor::Owned(owner) => Err(AwsError::Owned {
            object: object.to_string(),
            attribute: attribute.to_string(),
            owner: owner.clone(),
        }),
        _ => Ok(()),
    }
}

/// Read's verdict: is the anchor this instance's? An instance with no owner id in its state
/// (made before ownership tags, or just imported) takes the anchor's.
pub fn is_mine(my_owner: &str, anchor_owner: Option<&str>) -> bool {
    match anchor_owner.filter(|o| !o.is_empty()) {
        None => true,
        Some(o) => my_owner.is_empty() || o == my_owner,
    }
}

/// Writes the owner tag on EC2 objects: the last step of a successful create.
pub async fn mark_owned(
    rc: &RegionClients,
    resource_ids: &[String],
    owner: &str,
    origin: Option<&str>,
) -> Result<(), AwsError> {
    if resource_ids.is_empty() {
        return Ok(());
    }
    let mut tags = vec![
        aws_sdk_ec2::types::Tag::builder()
            .key(TAG_OWNER)
            .value(owner)
            .build(),
    ];
    if let Some(o) = origin {
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key(TAG_ORIGIN)
                .value(o)
                .build(),
        );
    }
    rc.ec2
        .create_tags()
        .set_resources(Some(resource_ids.to_vec()))
        .set_tags(Some(tags))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::from_sdk(e, "ec2:CreateTags", &resource_ids.join(", ")))
}

/// Per-plan creation tokens of resources without a name (`strata_replica`,
/// `strata_storage_segment`) end with this, so an unfinished object made by this provider
/// version can be told from a finished one made before ownership tags existed (never adopted).
pub const ADOPTABLE_SUFFIX: &str = "-o";

/// Whether a creation token is one this version issues (see [`ADOPTABLE_SUFFIX`]).
pub fn is_adoptable_token(token: &str) -> bool {
    token.ends_with(ADOPTABLE_SUFFIX)
}

/// A create of an unnamed resource: the token it uses (its own, or an unfinished object's it
/// adopts) and the claim on that token, held until the owner tag is written.
#[derive(Debug)]
pub struct TokenClaim {
    pub token: String,
    pub adopted: bool,
    /// No unfinished object of the lookup carries `token`: with a fresh planned token, no
    /// object does, and the create need not look it up again.
    pub unused: bool,
}

/// Picks the creation token for a create whose planned token is `mine`: an unfinished
/// object's token among `candidates` (tokens of objects of the same kind and place with no
/// owner tag, from a create that never finished) when one is not being created by this process
/// right now, else `mine`. The result is claimed in-process so no other create takes it.
pub fn choose_token(mine: &str, candidates: &[String]) -> Result<TokenClaim, AwsError> {
    let mut sorted: Vec<&String> = candidates
        .iter()
        .filter(|t| is_adoptable_token(t) && t.as_str() != mine)
        .collect();
    sorted.sort();
    sorted.dedup();
    for t in sorted {
        if let Ok(claim) = ApplyClaim::take(&format!("token/{t}"), t, "") {
            // Held for the life of the process: this apply made (or took) it, and no later
            // create of this apply may take it again before a refresh marks it owned.
            std::mem::forget(claim);
            return Ok(TokenClaim {
                token: t.clone(),
                adopted: true,
                unused: false,
            });
        }
    }
    let claim = ApplyClaim::take(&format!("token/{mine}"), mine, "creation token")?;
    std::mem::forget(claim);
    Ok(TokenClaim {
        token: mine.to_string(),
        adopted: false,
        unused: !candidates.iter().any(|t| t == mine),
    })
}

/// The key of a shared listing: its filters, in order.
fn listing_key(filters: &[(&str, &str)]) -> String {
    filters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The filters of the listing [`unfinished_node_tokens`] makes for a cluster's replicas.
pub fn replica_listing_filters(cluster: &str) -> [(String, String); 2] {
    [
        (
            format!("tag:{}", super::tags::TAG_CLUSTER),
            cluster.to_string(),
        ),
        (
            format!("tag:{}", super::tags::TAG_ROLE),
            "replica".to_string(),
        ),
    ]
}

/// A listing of a cluster's live home members (sources and replicas: `drift::list_members`)
/// holds every live replica of the cluster: kept as the replicas' listing, so the replica
/// creates of the next wave do not list them again (the same staleness argument as
/// [`unfinished_node_tokens`]: leftovers exist before this process asks).
pub async fn note_members_listed(
    rc: &RegionClients,
    cluster: &str,
    members: &[super::node::NodeInfo],
) {
    let [(k1, v1), (k2, v2)] = replica_listing_filters(cluster);
    let key = listing_key(&[(&k1, &v1), (&k2, &v2)]);
    let replicas = members
        .iter()
        .filter(|n| n.tags.get(super::tags::TAG_ROLE).map(String::as_str) == Some(v2.as_str()))
        .cloned()
        .collect();
    rc.shared.unfinished_nodes.put(&key, replicas).await;
}

/// Unfinished instances (no owner tag, an adoptable token) matching `filters` and `keep`:
/// their tokens. The listing is shared by the creates of one wave (`Shared::unfinished_nodes`,
/// kept briefly): it looks only for what an earlier, killed apply left, which exists before
/// this process asks, and what this process launches it has claimed (`choose_token`), so an
/// answer a few seconds old finds the same leftovers a fresh one would.
pub async fn unfinished_node_tokens(
    rc: &RegionClients,
    filters: &[(&str, &str)],
    keep: impl Fn(&super::node::NodeInfo) -> bool,
) -> Result<Vec<String>, AwsError> {
    let nodes = rc
        .shared
        .unfinished_nodes
        .get_or_try(&listing_key(filters), || {
            super::node::find_nodes(rc, filters)
        })
        .await?;
    Ok(nodes
        .into_iter()
        .filter(|n| keep(n))
        .filter(|n| !n.tags.contains_key(TAG_OWNER))
        .filter_map(|n| n.tags.get(super::tags::TAG_TOKEN).cloned())
        .collect())
}

/// Unfinished volumes (no owner tag, an adoptable token, not added by the autoscaler)
/// matching `filters` in `availability_zone`: their tokens. Shared by the creates of one wave
/// as [`unfinished_node_tokens`] is (`Shared::unfinished_volumes`).
pub async fn unfinished_volume_tokens(
    rc: &RegionClients,
    filters: &[(&str, &str)],
    availability_zone: Option<&str>,
    skip_tag: &str,
) -> Result<Vec<String>, AwsError> {
    let volumes = rc
        .shared
        .unfinished_volumes
        .get_or_try(&listing_key(filters), || list_live_volumes(rc, filters))
        .await?;
    Ok(volumes
        .into_iter()
        .filter(|(az, _)| availability_zone.is_none_or(|want| az.as_deref() == Some(want)))
        .map(|(_, t)| t)
        .filter(|t| !t.contains_key(TAG_OWNER) && !t.contains_key(skip_tag))
        .filter_map(|t| t.get(super::tags::TAG_TOKEN).cloned())
        .collect())
}

/// Volumes (creating, available or in use) matching `filters`: each one's zone and tags.
async fn list_live_volumes(
    rc: &RegionClients,
    filters: &[(&str, &str)],
) -> Result<Vec<(Option<String>, std::collections::BTreeMap<String, String>)>, AwsError> {
    use aws_sdk_ec2::types::Filter;
    let mut req = rc.ec2.describe_volumes().filters(
        Filter::builder()
            .name("status")
            .values("creating")
            .values("available")
            .values("in-use")
            .build(),
    );
    for (k, v) in filters {
        req = req.filters(Filter::builder().name(*k).values(*v).build());
    }
    let out = req
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, "ec2:DescribeVolumes", "unfinished segments"))?;
    Ok(out
        .volumes()
        .iter()
        .map(|v| {
            (
                v.availability_zone().map(str::to_string),
                super::tags::from_ec2(v.tags()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_claims_refuse_the_second_of_one_identity() {
        let k = format!("test/{}", new_owner_id());
        plan_claim(&k, "strata_cluster name \"x\"", "name", Some(1)).unwrap();
        // The same block planned again (terraform test's apply walk): not a duplicate.
        plan_claim(&k, "strata_cluster name \"x\"", "name", Some(1)).unwrap();
        // Another block with the same name: refused, naming the attribute.
        let e = plan_claim(&k, "strata_cluster name \"x\"", "name", Some(2)).unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
    }

    #[test]
    fn apply_claims_are_released_on_drop() {
        let k = format!("test/{}", new_owner_id());
        let a = ApplyClaim::take(&k, "d", "name").unwrap();
        assert!(ApplyClaim::take(&k, "d", "name").is_err());
        drop(a);
        assert!(ApplyClaim::take(&k, "d", "name").is_ok());
    }

    #[test]
    fn unfinished_objects_are_adopted_once_and_old_ones_never() {
        let mine = format!("{}-o", new_owner_id());
        let orphan = format!("{}-o", new_owner_id());
        let legacy = new_owner_id();
        let a = choose_token(&mine, &[legacy.clone(), orphan.clone()]).unwrap();
        assert_eq!((a.token.as_str(), a.adopted), (orphan.as_str(), true));
        // A second create in this process does not take the same orphan, nor the legacy one.
        let mine2 = format!("{}-o", new_owner_id());
        let b = choose_token(&mine2, &[legacy, orphan.clone()]).unwrap();
        assert_eq!((b.token.as_str(), b.adopted), (mine2.as_str(), false));
        // Nor a token another create is using right now.
        let c = choose_token(
            &format!("{}-o", new_owner_id()),
            std::slice::from_ref(&mine2),
        )
        .unwrap();
        assert!(!c.adopted);
    }

    #[test]
    fn verdicts() {
        assert_eq!(anchor_verdict(None, false), Anchor::Absent);
        assert_eq!(anchor_verdict(None, true), Anchor::Unfinished);
        assert_eq!(anchor_verdict(Some(""), true), Anchor::Unfinished);
        assert_eq!(anchor_verdict(Some("ab"), true), Anchor::Owned("ab".into()));
        let e = check_anchor(&Anchor::Owned("ab".into()), "security group sg-1", "name")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("import") && e.contains("name") && e.contains("sg-1"),
            "{e}"
        );
        assert!(check_anchor(&Anchor::Unfinished, "x", "name").is_ok());
        assert!(is_mine("a", Some("a")));
        assert!(!is_mine("a", Some("b")));
        assert!(is_mine("", Some("b")));
        assert!(is_mine("a", None));
    }
}
