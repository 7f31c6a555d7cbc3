//! The generic planner behind PlanResourceChange: from prior state, configuration and
//! Terraform's proposed new state it applies defaults, marks provider-chosen values unknown
//! when the resource changes (keeping prior values where the schema says they never change),
//! and finds the changes that force a replacement. `check_plan_valid` states Terraform's own
//! rules for a planned value, so a bad plan is caught here with a readable error.

use crate::cty::{AttributePath, Value, canonicalize_set};

use super::modifiers::PlanModifier;
use super::schema::{Attribute, Block, Nesting};

/// The generic plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub planned: Value,
    pub requires_replace: Vec<AttributePath>,
}

/// Plans a change. A null `proposed` (destroy) passes through.
pub fn plan(block: &Block, prior: &Value, config: &Value, proposed: &Value) -> Plan {
    if proposed.is_null() {
        return Plan {
            planned: Value::Null,
            requires_replace: Vec::new(),
        };
    }
    let mut planned = proposed.clone();
    apply_defaults(block, config, &mut planned);
    let create = prior.is_null();
    if create || &planned != prior {
        mark_unknown(
            block,
            config,
            if create { None } else { Some(prior) },
            &mut planned,
        );
    }
    let mut requires_replace = Vec::new();
    if !create {
        replacements(
            block,
            prior,
            &planned,
            config,
            &AttributePath::root(),
            &mut requires_replace,
        );
    }
    Plan {
        planned,
        requires_replace,
    }
}

fn attr_of<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get_attr(name).unwrap_or(&Value::Null)
}

/// Elements of a nested collection in `v` paired with keys: list index or map key.
fn children(nesting: Nesting, v: &Value) -> Vec<(ChildKey, Value)> {
    match (nesting, v.unwrap_dynamic()) {
        (Nesting::Single | Nesting::Group, v) if v.as_object().is_some() => {
            vec![(ChildKey::Single, v.clone())]
        }
        (Nesting::List | Nesting::Set, Value::List(e) | Value::Set(e)) => e
            .iter()
            .enumerate()
            .map(|(i, v)| (ChildKey::Index(i), v.clone()))
            .collect(),
        (Nesting::Map, Value::Map(m)) => m
            .iter()
            .map(|(k, v)| (ChildKey::Key(k.clone()), v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ChildKey {
    Single,
    Index(usize),
    Key(String),
}

fn child_of<'a>(v: &'a Value, key: &ChildKey) -> Option<&'a Value> {
    match (key, v.unwrap_dynamic()) {
        (ChildKey::Single, v) if v.as_object().is_some() => Some(v),
        (ChildKey::Index(i), Value::List(e)) => e.get(*i),
        (ChildKey::Key(k), Value::Map(m)) => m.get(k),
        _ => None,
    }
}

/// Called per nested object with its block, config and prior objects.
type NestedFn<'a> = dyn FnMut(&Block, &Value, Option<&Value>, &mut Value) + 'a;

/// Runs `f` on each nested object of a nested attribute or block, with the corresponding
/// config and prior objects. Set elements are paired with config by their user-set
/// attributes and with prior by equality (an unchanged element keeps its prior values).
fn each_nested(
    nesting: Nesting,
    block: &Block,
    config: &Value,
    prior: Option<&Value>,
    planned: &mut Value,
    f: &mut NestedFn<'_>,
) {
    if planned.is_null() || !planned.is_known() {
        return;
    }
    match nesting {
        Nesting::Set => {
            let Value::Set(elems) = planned else { return };
            let config_elems = config.as_elements().unwrap_or(&[]);
            let prior_elems = prior.and_then(Value::as_elements).unwrap_or(&[]);
            for e in elems.iter_mut() {
                if prior_elems.contains(e) {
                    continue;
                }
                let masked = mask_computed(block, e);
                let c = config_elems
                    .iter()
                    .find(|c| mask_computed(block, c) == masked)
                    .cloned()
                    .unwrap_or(Value::Null);
                f(block, &c, None, e);
            }
            canonicalize_set(elems);
        }
        _ => {
            for (key, _) in children(nesting, planned) {
                let c = child_of(config, &key).cloned().unwrap_or(Value::Null);
                let p = prior.and_then(|p| child_of(p, &key)).cloned();
                let target = match (&key, &mut *planned) {
                    (ChildKey::Single, v) => Some(v),
                    (ChildKey::Index(i), Value::List(e)) => e.get_mut(*i),
                    (ChildKey::Key(k), Value::Map(m)) => m.get_mut(k),
                    _ => None,
                };
                if let Some(t) = target {
                    f(block, &c, p.as_ref().filter(|p| !p.is_null()), t);
                }
            }
        }
    }
}

/// `v` with every computed-only attribute nulled, recursively: what the user wrote.
fn mask_computed(block: &Block, v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = obj.clone();
    for a in &block.attributes {
        if a.computed && !a.optional {
            out.insert(a.name.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

fn nested_parts(a: &Attribute) -> Option<(Nesting, Block)> {
    a.nested_block()
}

fn apply_defaults(block: &Block, config: &Value, planned: &mut Value) {
    for a in &block.attributes {
        let c = attr_of(config, &a.name).clone();
        let Some(p) = planned.get_attr_mut(&a.name) else {
            continue;
        };
        if let Some(default) = &a.default {
            if c.is_null() {
                *p = default.clone();
            }
        } else if let Some((nesting, nb)) = nested_parts(a) {
            each_nested(nesting, &nb, &c, None, p, &mut |b, c, _, t| {
                apply_defaults(b, c, t)
            });
        }
    }
    for nb in &block.blocks {
        let c = attr_of(config, &nb.name).clone();
        if let Some(p) = planned.get_attr_mut(&nb.name) {
            each_nested(nb.nesting, &nb.block, &c, None, p, &mut |b, c, _, t| {
                apply_defaults(b, c, t)
            });
        }
    }
}

fn mark_unknown(block: &Block, config: &Value, prior: Option<&Value>, planned: &mut Value) {
    for a in &block.attributes {
        let c = attr_of(config, &a.name).clone();
        let pr = prior.map(|p| attr_of(p, &a.name).clone());
        let Some(p) = planned.get_attr_mut(&a.name) else {
            continue;
        };
        if a.computed && c.is_null() && a.default.is_none() {
            let keep = a.has_use_state_for_unknown() && pr.as_ref().is_some_and(|v| !v.is_null());
            if keep {
                if let Some(pr) = pr {
                    *p = pr;
                }
            } else {
                *p = Value::unknown();
            }
        } else if let Some((nesting, nb)) = nested_parts(a) {
            each_nested(nesting, &nb, &c, pr.as_ref(), p, &mut |b, c, pr, t| {
                mark_unknown(b, c, pr, t)
            });
        }
    }
    for nb in &block.blocks {
        let c = attr_of(config, &nb.name).clone();
        let pr = prior.map(|p| attr_of(p, &nb.name).clone());
        if let Some(p) = planned.get_attr_mut(&nb.name) {
            each_nested(
                nb.nesting,
                &nb.block,
                &c,
                pr.as_ref(),
                p,
                &mut |b, c, pr, t| mark_unknown(b, c, pr, t),
            );
        }
    }
}

fn needs_replace(a: &Attribute, prior: &Value, planned: &Value, config: &Value) -> bool {
    if prior == planned {
        return false;
    }
    // A provider-chosen value going unknown is not the user's change.
    if a.computed && config.is_null() && !planned.is_known() {
        return false;
    }
    a.plan_modifiers.iter().any(|m| match m {
        PlanModifier::RequiresReplace => true,
        PlanModifier::RequiresReplaceIf { check, .. } => check(prior, planned),
        PlanModifier::UseStateForUnknown => false,
    })
}

fn replacements(
    block: &Block,
    prior: &Value,
    planned: &Value,
    config: &Value,
    path: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for a in &block.attributes {
        let (pr, pl, c) = (
            attr_of(prior, &a.name),
            attr_of(planned, &a.name),
            attr_of(config, &a.name),
        );
        let p = path.clone().attribute(&a.name);
        if needs_replace(a, pr, pl, c) {
            out.push(p);
        } else if let Some((nesting, nb)) = nested_parts(a) {
            nested_replacements(nesting, &nb, pr, pl, c, &p, out);
        }
    }
    for nb in &block.blocks {
        let (pr, pl, c) = (
            attr_of(prior, &nb.name),
            attr_of(planned, &nb.name),
            attr_of(config, &nb.name),
        );
        let p = path.clone().attribute(&nb.name);
        nested_replacements(nb.nesting, &nb.block, pr, pl, c, &p, out);
    }
}

fn nested_replacements(
    nesting: Nesting,
    block: &Block,
    prior: &Value,
    planned: &Value,
    config: &Value,
    path: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    if prior == planned {
        return;
    }
    match nesting {
        Nesting::Set => {
            // Set elements have no stable address: compare, per attribute that forces
            // replacement, the values across all elements, and point at the whole set.
            let values = |v: &Value, name: &str| -> Vec<Value> {
                let mut vs: Vec<Value> = v
                    .as_elements()
                    .unwrap_or(&[])
                    .iter()
                    .map(|e| attr_of(e, name).clone())
                    .collect();
                canonicalize_set(&mut vs);
                vs
            };
            let forced = block.attributes.iter().any(|a| {
                a.requires_replace_any() && values(prior, &a.name) != values(planned, &a.name)
            });
            if forced {
                out.push(path.clone());
            }
        }
        _ => {
            let mut keys: Vec<ChildKey> = children(nesting, prior)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            for (k, _) in children(nesting, planned) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            for k in keys {
                let pr = child_of(prior, &k).cloned().unwrap_or(Value::Null);
                let pl = child_of(planned, &k).cloned().unwrap_or(Value::Null);
                let c = child_of(config, &k).cloned().unwrap_or(Value::Null);
                let p = match &k {
                    ChildKey::Single => path.clone(),
                    ChildKey::Index(i) => path.clone().index(*i as i64),
                    ChildKey::Key(key) => path.clone().key(key.clone()),
                };
                // An element added or removed is not a change of its attributes.
                if pr.is_null() || pl.is_null() {
                    continue;
                }
                replacements(block, &pr, &pl, &c, &p, out);
            }
        }
    }
}

/// Terraform's rules for a planned value, as it checks them after PlanResourceChange: a
/// value the user set is planned as set (or as the equal prior value); only computed
/// attributes may be planned differently from configuration. Returns one message per
/// violation.
pub fn check_plan_valid(
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> Vec<String> {
    let mut errs = Vec::new();
    check_block(
        block,
        prior,
        config,
        planned,
        &AttributePath::root(),
        &mut errs,
    );
    errs
}

fn check_block(
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: &Value,
    path: &AttributePath,
    errs: &mut Vec<String>,
) {
    if planned.is_null() || !planned.is_known() {
        return;
    }
    for a in &block.attributes {
        let p = path.clone().attribute(&a.name);
        let (pr, c, pl) = (
            attr_of(prior, &a.name),
            attr_of(config, &a.name),
            attr_of(planned, &a.name),
        );
        if pl == c || (pl == pr && !pr.is_null() && !c.is_null()) {
            continue;
        }
        if a.computed && !a.optional {
            continue;
        }
        if c.is_null() && a.computed {
            continue;
        }
        if c.is_null() && !pl.is_null() {
            errs.push(format!("planned a value for {p}, which is not computed"));
            continue;
        }
        if let Some((nesting, nb)) = nested_parts(a) {
            check_nested(nesting, &nb, pr, c, pl, &p, errs);
            continue;
        }
        errs.push(format!(
            "planned {pl} for {p}, but the configuration says {c}"
        ));
    }
    for nb in &block.blocks {
        let p = path.clone().attribute(&nb.name);
        check_nested(
            nb.nesting,
            &nb.block,
            attr_of(prior, &nb.name),
            attr_of(config, &nb.name),
            attr_of(planned, &nb.name),
            &p,
            errs,
        );
    }
}

fn check_nested(
    nesting: Nesting,
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: &Value,
    path: &AttributePath,
    errs: &mut Vec<String>,
) {
    if !planned.is_known() || !config.is_known() {
        return;
    }
    match nesting {
        Nesting::Set => {
            let (np, nc) = (
                planned.as_elements().map_or(0, <[Value]>::len),
                config.as_elements().map_or(0, <[Value]>::len),
            );
            if np != nc && planned.is_wholly_known() && config.is_wholly_known() {
                errs.push(format!(
                    "planned {np} elements for {path}, configuration has {nc}"
                ));
            }
        }
        _ => {
            let pk: Vec<ChildKey> = children(nesting, planned)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let ck: Vec<ChildKey> = children(nesting, config)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if pk != ck {
                errs.push(format!(
                    "planned elements of {path} differ from configuration's"
                ));
                return;
            }
            for k in pk {
                let pl = child_of(planned, &k).cloned().unwrap_or(Value::Null);
                let c = child_of(config, &k).cloned().unwrap_or(Value::Null);
                let pr = child_of(prior, &k).cloned().unwrap_or(Value::Null);
                let p = match &k {
                    ChildKey::Single => path.clone(),
                    ChildKey::Index(i) => path.clone().index(*i as i64),
                    ChildKey::Key(key) => path.clone().key(key.clone()),
                };
                check_block(block, &pr, &c, &pl, &p, errs);
            }
        }
    }
}

#[cfg(test)]
mod tests;
