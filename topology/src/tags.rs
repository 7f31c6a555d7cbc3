//! The names and value formats Strata writes on AWS objects, which the provider, the agent and
//! the node host read back. Each name is declared here once; each structured value has one
//! render and one parse function, so a writer in one crate and a reader in another cannot drift
//! apart. The node-state and failover tags live beside their types ([`crate::TAG_NODE_STATE`],
//! [`crate::TAG_CURRENT_ROLE`], ...), also in this crate.

use std::fmt;

/// Every key Strata writes starts with this; user tags may not (they would shadow ours).
pub const TAG_PREFIX: &str = "strata:";
/// The cluster an object belongs to: what makes an instance one of ours, and nothing orphaned.
pub const TAG_CLUSTER: &str = "strata:cluster";
/// Terraform-address-like name of the resource that made the object (`strata_cluster.orders`).
pub const TAG_RESOURCE: &str = "strata:resource";
/// What the object is within its cluster: one of the `ROLE_*` values.
pub const TAG_ROLE: &str = "strata:role";
/// The token that makes a create safe to retry (find before create).
pub const TAG_CREATION_TOKEN: &str = "strata:creation-token";
/// Which resource instance owns an object set (an owner id from that instance's private state).
pub const TAG_OWNER: &str = "strata:owner";
/// Digest of the working directory and workspace a resource was created from.
pub const TAG_ORIGIN: &str = "strata:origin";
/// On the cluster's security group: the engine port (read needs it back).
pub const TAG_PORT: &str = "strata:port";
/// On an instance: its index among its resource's nodes.
pub const TAG_INDEX: &str = "strata:index";
/// On the cluster's security group: the cluster's private DNS zone id.
pub const TAG_DNS_ZONE: &str = "strata:dns-zone";
/// On the cluster's security group: the zone's domain name.
pub const TAG_DNS_NAME: &str = "strata:dns-name";
/// `true` when Strata made the zone (and deletes it); `false` for a zone the user named.
pub const TAG_DNS_ZONE_OWNED: &str = "strata:dns-zone-owned";

/// On a storage segment: the autoscaling bounds, as [`AutoscaleTag`] renders them. Written by
/// the provider, read by the agent (and by the provider for import and drift).
pub const TAG_AUTOSCALE: &str = "strata:autoscale";
/// On a segment the agent added: the volume id it grew from.
pub const TAG_AUTOSCALED_FROM: &str = "strata:autoscaled-from";
/// On a segment: when the agent last grew it.
pub const TAG_LAST_GROW: &str = "strata:last-grow";
/// On a segment: when the agent last added a segment beside it.
pub const TAG_LAST_ADD_SEGMENT: &str = "strata:last-add-segment";
/// On a segment: set while the node's storage is at `max_size_gib`.
pub const TAG_AT_MAXIMUM: &str = "strata:at-maximum";
/// On an instance the agents launched in place of a lost one: the lost instance's id
/// ([`crate::replace`]).
pub const TAG_REPLACES: &str = "strata:replaces";
/// Set by the provider on an instance just before it terminates it on purpose: the agents
/// never relaunch such an instance ([`crate::replace`]).
pub const TAG_RETIRING: &str = "strata:retiring";
/// The tags the agent writes on segments: its record, never Terraform's drift.
pub const AGENT_SEGMENT_TAGS: [&str; 4] = [
    TAG_LAST_GROW,
    TAG_AUTOSCALED_FROM,
    TAG_LAST_ADD_SEGMENT,
    TAG_AT_MAXIMUM,
];

/// [`TAG_ROLE`] of the volumes `strata_storage_segment` manages (the agent finds them by it).
pub const ROLE_SEGMENT: &str = "segment";
/// [`TAG_ROLE`] of the volumes the agent adds itself.
pub const ROLE_DATA_SEGMENT: &str = "data-segment";

/// The largest gp3 (and gp2, io2 non-Block-Express) volume: 16 TiB. The provider validates
/// `max_size_gib` against it; the agent never grows a volume past it.
pub const EBS_MAX_VOLUME_GIB: u64 = 16 * 1024;
/// The smallest gp3 volume EBS creates.
pub const EBS_MIN_VOLUME_GIB: u64 = 1;

/// The value of [`TAG_AUTOSCALE`]: `max=2000,at=80,by=20,step=10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoscaleTag {
    /// `max`: the node's storage never grows beyond this, all segments together.
    pub max_size_gib: u64,
    /// `at`: grow when the filesystem is this full.
    pub grow_at_percent: u64,
    /// `by`: each growth adds this percentage of the current size...
    pub grow_by_percent: u64,
    /// `step`: ...but never less than this.
    pub min_step_gib: u64,
}

/// A [`TAG_AUTOSCALE`] value that is not exactly the four `key=N` pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {TAG_AUTOSCALE}={0:?} is not max=N,at=N,by=N,step=N")]
pub struct AutoscaleTagError(pub String);

impl AutoscaleTag {
    pub fn render(&self) -> String {
        self.to_string()
    }

    /// The inverse of [`AutoscaleTag::render`]. Every key is required, once; nothing else may
    /// stand in the value (whitespace around keys and numbers is tolerated).
    pub fn parse(value: &str) -> Result<AutoscaleTag, AutoscaleTagError> {
        let bad = || AutoscaleTagError(value.to_string());
        let (mut max, mut at, mut by, mut step) = (None, None, None, None);
        for kv in value.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(bad)?;
            let n: u64 = v.trim().parse().map_err(|_| bad())?;
            let slot = match k.trim() {
                "max" => &mut max,
                "at" => &mut at,
                "by" => &mut by,
                "step" => &mut step,
                _ => return Err(bad()),
            };
            *slot = Some(n);
        }
        match (max, at, by, step) {
            (
                Some(max_size_gib),
                Some(grow_at_percent),
                Some(grow_by_percent),
                Some(min_step_gib),
            ) => Ok(AutoscaleTag {
                max_size_gib,
                grow_at_percent,
                grow_by_percent,
                min_step_gib,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for AutoscaleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max={},at={},by={},step={}",
            self.max_size_gib, self.grow_at_percent, self.grow_by_percent, self.min_step_gib
        )
    }
}

/// Ingress rule descriptions on the cluster's security group. The region rules carry the
/// owning `strata_region`'s address and region, which the members data source reads back.
pub const RULE_CLUSTER_MEMBERS: &str = "strata: cluster members";
pub const RULE_ALLOWED_CLIENTS: &str = "strata: allowed clients";
pub const RULE_REGION_MEMBERS: &str = "strata: region members";
pub const RULE_HOME_SOURCE: &str = "strata: home source";
/// Rules whose description starts with this belong to a `strata_region`, not to the cluster's
/// own rule set.
pub const REGION_RULE_PREFIX: &str = "strata:region ";

/// The description of the rule a `strata_region` adds to the home cluster's group.
pub fn region_rule_description(resource: &str, region: &str) -> String {
    format!("{REGION_RULE_PREFIX}{resource} {region}")
}

/// The inverse of [`region_rule_description`]: `(resource, region)`, or None for a rule that
/// is not a region's. The region is the last word (the resource is empty when only one word
/// follows the prefix).
pub fn parse_region_rule_description(description: &str) -> Option<(&str, &str)> {
    let rest = description.strip_prefix(REGION_RULE_PREFIX)?.trim_end();
    match rest.rsplit_once(char::is_whitespace) {
        Some((resource, region)) => Some((resource.trim_end(), region)),
        None if !rest.is_empty() => Some(("", rest)),
        None => None,
    }
}

/// The IAM condition key matching an existing object's [`TAG_CLUSTER`].
pub fn resource_tag_condition_key() -> String {
    format!("aws:ResourceTag/{TAG_CLUSTER}")
}

/// The IAM condition key matching the [`TAG_CLUSTER`] a request sets.
pub fn request_tag_condition_key() -> String {
    format!("aws:RequestTag/{TAG_CLUSTER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscale_tag_round_trips() {
        let t = AutoscaleTag {
            max_size_gib: 2000,
            grow_at_percent: 80,
            grow_by_percent: 25,
            min_step_gib: 10,
        };
        assert_eq!(t.render(), "max=2000,at=80,by=25,step=10");
        assert_eq!(AutoscaleTag::parse(&t.render()), Ok(t));
        assert_eq!(
            AutoscaleTag::parse(" step = 1, by=2 ,at=3,max=4"),
            Ok(AutoscaleTag {
                max_size_gib: 4,
                grow_at_percent: 3,
                grow_by_percent: 2,
                min_step_gib: 1
            })
        );
    }

    #[test]
    fn autoscale_tag_refuses_incomplete_or_garbled_values() {
        for bad in [
            "",
            "max=2000",
            "max=2000,at=80,by=20",
            "max=x,at=80,by=20,step=10",
            "max=-1,at=80,by=20,step=10",
            "max=1,at=80,by=20,step=10,zz=1",
            "max=1;at=80",
        ] {
            assert!(AutoscaleTag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn region_rule_descriptions_round_trip() {
        let d = region_rule_description("strata_region.orders.eu-west-1", "eu-west-1");
        assert_eq!(d, "strata:region strata_region.orders.eu-west-1 eu-west-1");
        assert_eq!(
            parse_region_rule_description(&d),
            Some(("strata_region.orders.eu-west-1", "eu-west-1"))
        );
        assert_eq!(parse_region_rule_description(RULE_ALLOWED_CLIENTS), None);
    }

    #[test]
    fn every_name_is_in_the_strata_namespace() {
        for t in [
            TAG_CLUSTER,
            TAG_RESOURCE,
            TAG_ROLE,
            TAG_CREATION_TOKEN,
            TAG_OWNER,
            TAG_ORIGIN,
            TAG_PORT,
            TAG_INDEX,
            TAG_DNS_ZONE,
            TAG_DNS_NAME,
            TAG_DNS_ZONE_OWNED,
            TAG_AUTOSCALE,
            TAG_AUTOSCALED_FROM,
            TAG_LAST_GROW,
            TAG_LAST_ADD_SEGMENT,
            TAG_AT_MAXIMUM,
        ] {
            assert!(t.starts_with(TAG_PREFIX), "{t}");
        }
        assert_eq!(
            resource_tag_condition_key(),
            "aws:ResourceTag/strata:cluster"
        );
        assert_eq!(request_tag_condition_key(), "aws:RequestTag/strata:cluster");
    }
}
