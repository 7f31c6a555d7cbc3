//! What the four resource types share: reading typed fields out of configuration values,
//! `timeouts` blocks, and turning AWS errors into diagnostics that name the resource.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws::{AwsError, Clients};
use crate::cty::{AttributePath, Value};
use crate::framework::{
    ApplyFailure, Attr, Block, Context, Diagnostic, Diagnostics, NestedBlock, Type,
};

/// The configured AWS clients, or an error diagnostic when the provider is not configured.
pub fn clients(ctx: &Context) -> Result<&Clients, Diagnostics> {
    ctx.data::<Clients>()
}

pub fn str_attr(v: &Value, name: &str) -> Option<String> {
    v.get_attr(name).and_then(Value::as_str).map(str::to_string)
}

pub fn required_str(v: &Value, name: &str) -> Result<String, Diagnostics> {
    required(str_attr(v, name), name)
}

/// A typed model's required string: the error names the attribute when it is null or unknown.
pub fn required(value: Option<String>, name: &str) -> Result<String, Diagnostics> {
    value.ok_or_else(|| {
        Diagnostic::error(
            format!("Missing value for {name}"),
            format!("{name} must be set to a known string"),
        )
        .at(AttributePath::attr(name))
        .into()
    })
}

pub fn i64_attr(v: &Value, name: &str) -> Option<i64> {
    v.get_attr(name).and_then(Value::as_i64)
}

pub fn bool_attr(v: &Value, name: &str) -> Option<bool> {
    v.get_attr(name).and_then(Value::as_bool)
}

/// A `map(string)` attribute; null is empty.
pub fn string_map(v: &Value, name: &str) -> BTreeMap<String, String> {
    v.get_attr(name)
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A `set(string)` or `list(string)` attribute; null is empty.
pub fn string_list(v: &Value, name: &str) -> Vec<String> {
    v.get_attr(name)
        .and_then(Value::as_elements)
        .map(|es| {
            es.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn map_value(m: &BTreeMap<String, String>) -> Value {
    Value::map(m.iter().map(|(k, v)| (k.clone(), Value::string(v.clone()))))
}

pub fn set_value<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::set(items.into_iter().map(|s| Value::string(s.clone())))
}

pub fn opt_string(s: Option<&str>) -> Value {
    s.map(Value::string).unwrap_or_else(Value::null)
}

/// Sets attribute `name` of an object value (no-op on non-objects).
pub fn set_attr(obj: &mut Value, name: &str, v: Value) {
    if let Value::Object(attrs) = obj {
        attrs.insert(name.to_string(), v);
    }
}

/// The user's tags merged over the provider's default tags: what `tags_all` shows.
pub fn tags_all(
    clients: Option<&Clients>,
    tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    match clients {
        Some(c) => merge_tags(c.default_tags(), tags),
        None => merge_tags(&BTreeMap::new(), tags),
    }
}

/// `tags` over `default_tags`: what `tags_all` shows.
pub fn merge_tags(
    default_tags: &BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = default_tags.clone();
    all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// The tags that belong in `tags`: an object's tags without the `strata:*` ones, the `Name`
/// Strata sets itself, and the provider's default tags, unless the configuration (`prior`:
/// the planned or prior state) names them itself.
pub fn own_tags(
    clients: &Clients,
    raw: &BTreeMap<String, String>,
    prior: &Value,
) -> BTreeMap<String, String> {
    own_tags_over(clients.default_tags(), raw, prior)
}

/// [`own_tags`] with the provider's default tags given.
pub fn own_tags_over(
    default_tags: &BTreeMap<String, String>,
    raw: &BTreeMap<String, String>,
    prior: &Value,
) -> BTreeMap<String, String> {
    let configured = string_map(prior, "tags");
    raw.iter()
        .filter(|(k, _)| !k.starts_with(strata_topology::tags::TAG_PREFIX))
        .filter(|(k, v)| {
            configured.contains_key(*k)
                || !(k.as_str() == "Name" || default_tags.get(*k) == Some(*v))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Plans `tags_all` (default tags under the resource's own) once the tags are known.
pub fn plan_tags_all(plan: &mut crate::framework::PlanChange) {
    if let (Ok(c), Some(tags)) = (clients(&plan.ctx), plan.planned.get_attr("tags"))
        && tags.is_wholly_known()
    {
        let all = tags_all(Some(c), &string_map(&plan.planned, "tags"));
        set_attr(&mut plan.planned, "tags_all", map_value(&all));
    }
}

/// `tags` as state holds it: null when the configuration had none and the object has none.
pub fn tags_value(tags: &BTreeMap<String, String>, prior: &Value) -> Value {
    if prior.get_attr("tags").is_none_or(Value::is_null) && tags.is_empty() {
        Value::null()
    } else {
        map_value(tags)
    }
}

/// The `timeouts { create update delete }` block every resource has.
pub fn timeouts_block() -> NestedBlock {
    let attr = |n: &str, what: &str| {
        Attr::string(n)
            .optional()
            .description(format!(
                "How long to wait for {what}, as a Go-style duration (`30s`, `20m`, `1h`)."
            ))
            .validate(crate::framework::validators::custom(
                "a duration such as 30s, 20m or 1h",
                |v| match v.as_str() {
                    Some(s) => parse_duration(s).map(|_| ()),
                    None => Ok(()),
                },
            ))
    };
    NestedBlock::single(
        "timeouts",
        Block::new()
            .description("Per-operation timeouts.")
            .attribute(attr("create", "creation"))
            .attribute(attr("update", "an in-place update"))
            .attribute(attr("delete", "deletion")),
    )
}

/// Which operation a timeout is for.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// The timeout for `op` from the value's `timeouts` block, else `default`.
pub fn timeout(v: &Value, op: Op, default: Duration) -> Duration {
    let key = match op {
        Op::Create => "create",
        Op::Update => "update",
        Op::Delete => "delete",
    };
    v.get_attr("timeouts")
        .and_then(|t| t.get_attr(key))
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
        .unwrap_or(default)
}

/// Parses `90s`, `20m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration: use a number with a unit, such as 30s, 20m or 1h");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// An AWS error as a diagnostic naming the resource.
pub fn aws_diag(resource: &str, action: &str, e: &AwsError) -> Diagnostics {
    Diagnostic::error(format!("{resource}: {action} failed"), e.to_string()).into()
}

/// An AWS error from a create/update; objects the AWS layer could not clean up are named so
/// nothing is left without a trace.
pub fn apply_failure(resource: &str, action: &str, e: &AwsError) -> ApplyFailure {
    let mut d = aws_diag(resource, action, e);
    if !e.leftovers().is_empty() {
        d.push(Diagnostic::error(
            format!("{resource}: objects left behind"),
            format!(
                "these AWS objects were made and could not be removed: {}. They carry the \
                 strata:cluster tag; delete them, or apply again to retry",
                e.leftovers().join(", ")
            ),
        ));
    }
    d.into()
}

/// A string attribute's type, for object types built by hand.
pub fn string_type() -> Type {
    Type::String
}

/// A server id in 1..=2^32-1 derived from a stable key, so a retried create renders the same
/// user-data and two nodes of a cluster practically never collide.
pub fn server_id_for(key: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    n.max(2)
}

/// A random token for one planned create, carried in the plan's private data so every retry
/// within the apply finds what an earlier attempt made.
pub fn new_creation_token() -> String {
    let n: u128 = rand::random();
    // The suffix marks objects an unfinished create of this version may leave (and a later
    // create adopt): see `aws::ownership`.
    format!("{n:032x}{}", crate::aws::ownership::ADOPTABLE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m10").is_err());
        assert!(
            parse_duration("10d")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn server_ids_are_stable_and_never_one() {
        assert_eq!(server_id_for("a"), server_id_for("a"));
        assert_ne!(server_id_for("a"), server_id_for("b"));
        assert!(server_id_for("x") >= 2);
    }
}
