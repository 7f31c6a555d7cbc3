//! Tags: the `strata:*` tags every object carries, merged with default and user tags, and the
//! creation tokens that make creates safe to retry.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use strata_topology::tags::{
    TAG_CLUSTER, TAG_CREATION_TOKEN as TAG_TOKEN, TAG_PREFIX, TAG_RESOURCE, TAG_ROLE,
};
pub const TAG_NAME: &str = "Name";

/// What one object is, for its `strata:*` tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTags<'a> {
    pub cluster: &'a str,
    /// Terraform-address-like: `strata_cluster.orders`.
    pub resource: &'a str,
    /// `source`, `replica`, `region-replica`, `security-group`, `segment`, ...
    pub role: Option<&'a str>,
    pub creation_token: &'a str,
    /// The `Name` tag, unless the user set one.
    pub name: Option<&'a str>,
}

/// The full tag set of an object: provider default tags, then the resource's own tags, then
/// the `strata:*` tags (which nobody can override: they are how nothing gets orphaned).
/// Keys starting with `aws:` are reserved by AWS and dropped.
pub fn build_tags(
    default_tags: &BTreeMap<String, String>,
    user_tags: &BTreeMap<String, String>,
    obj: &ObjectTags<'_>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in default_tags.iter().chain(user_tags.iter()) {
        if k.starts_with("aws:") || k.starts_with(TAG_PREFIX) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    if let Some(n) = obj.name {
        out.entry(TAG_NAME.to_string())
            .or_insert_with(|| n.to_string());
    }
    out.insert(TAG_CLUSTER.into(), obj.cluster.into());
    out.insert(TAG_RESOURCE.into(), obj.resource.into());
    if let Some(r) = obj.role {
        out.insert(TAG_ROLE.into(), r.into());
    }
    out.insert(TAG_TOKEN.into(), obj.creation_token.into());
    out
}

/// The user-visible tags of an object: everything except the `strata:*` ones.
pub fn user_visible(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with(TAG_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A token for a sub-object of a create (`<token>.<part>`), so one resource's objects can be
/// found one by one on a retry.
pub fn sub_token(token: &str, part: &str) -> String {
    format!("{token}.{part}")
}

/// A deterministic creation token from parts (cluster name, resource address, ...): the same
/// inputs on a retried apply find the objects a failed one made.
pub fn creation_token(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..12])
}

/// EC2 ClientToken: at most 64 ASCII characters, derived from the tag token.
pub fn client_token(token: &str) -> String {
    let h = Sha256::digest(token.as_bytes());
    format!("strata-{}", &hex::encode(h)[..40])
}

/// The ClientToken for one create call: the tag token plus a nonce drawn once per call, so
/// the SDK's own retries of that call are idempotent, while a create after a destroy (same
/// tag token) is not answered with the terminated instance AWS remembers for the old token.
/// Retries across applies are covered by the tag lookup, not by this.
pub fn call_client_token(token: &str) -> String {
    let nonce: u64 = rand::random();
    client_token(&format!("{token}/{nonce:016x}"))
}

/// The differences between two tag sets: (to set, to remove).
pub fn tag_diff(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = current
        .keys()
        // `strata:*` keys not in the wanted set are written by others (the owner tag at the
        // end of a create, the agents' node-state): never removed by a tag update.
        .filter(|k| {
            !wanted.contains_key(*k) && !k.starts_with("aws:") && !k.starts_with(TAG_PREFIX)
        })
        .cloned()
        .collect();
    (set, remove)
}

pub(crate) fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn ec2_tag_spec(
    rtype: aws_sdk_ec2::types::ResourceType,
    tags: &BTreeMap<String, String>,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(rtype)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

pub(crate) fn from_ec2(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn strata_tags_win_and_user_tags_override_defaults() {
        let defaults = m(&[("team", "db"), ("env", "prod")]);
        let user = m(&[
            ("env", "staging"),
            ("strata:cluster", "evil"),
            ("aws:x", "y"),
        ]);
        let t = build_tags(
            &defaults,
            &user,
            &ObjectTags {
                cluster: "orders",
                resource: "strata_cluster.orders",
                role: Some("source"),
                creation_token: "tok",
                name: Some("orders-source"),
            },
        );
        assert_eq!(
            t,
            m(&[
                ("Name", "orders-source"),
                ("env", "staging"),
                ("strata:cluster", "orders"),
                ("strata:creation-token", "tok"),
                ("strata:resource", "strata_cluster.orders"),
                ("strata:role", "source"),
                ("team", "db"),
            ])
        );
        assert_eq!(user_visible(&t).len(), 3);
    }

    #[test]
    fn user_name_tag_is_kept() {
        let t = build_tags(
            &BTreeMap::new(),
            &m(&[("Name", "mine")]),
            &ObjectTags {
                cluster: "c",
                resource: "r",
                role: None,
                creation_token: "t",
                name: Some("default"),
            },
        );
        assert_eq!(t["Name"], "mine");
        assert!(!t.contains_key(TAG_ROLE));
    }

    #[test]
    fn tokens_are_deterministic_and_short() {
        let a = creation_token(&["orders", "strata_cluster.orders"]);
        assert_eq!(a, creation_token(&["orders", "strata_cluster.orders"]));
        assert_ne!(a, creation_token(&["orders", "strata_cluster.order"]));
        // Part boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(creation_token(&["ab", "c"]), creation_token(&["a", "bc"]));
        let c = client_token(&sub_token(&a, "source"));
        assert!(c.len() <= 64 && c.is_ascii());
        assert_ne!(c, client_token(&sub_token(&a, "sg")));
        let (x, y) = (call_client_token(&a), call_client_token(&a));
        assert_ne!(x, y);
        assert!(x.len() <= 64 && x.is_ascii());
    }

    #[test]
    fn diff_sets_changed_and_removes_missing() {
        let (set, rm) = tag_diff(
            &m(&[
                ("a", "1"),
                ("b", "2"),
                ("aws:cloudformation", "x"),
                ("strata:owner", "o1"),
            ]),
            &m(&[("a", "1"), ("b", "3"), ("c", "4")]),
        );
        assert_eq!(set, m(&[("b", "3"), ("c", "4")]));
        assert!(
            rm.is_empty(),
            "aws: tags and kept keys are not removed: {rm:?}"
        );
        let (_, rm) = tag_diff(&m(&[("old", "1")]), &m(&[]));
        assert_eq!(rm, vec!["old".to_string()]);
    }
}
