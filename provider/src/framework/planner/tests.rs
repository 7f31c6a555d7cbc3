use super::*;
use crate::cty::Type;
use crate::cty::Value;
use crate::framework::schema::{Attr, Block, NestedBlock};

fn block() -> Block {
    Block::new()
        .attribute(Attr::string("name").required().requires_replace())
        .attribute(Attr::number("size").optional())
        .attribute(Attr::set("labels", Type::String).optional())
        .attribute(Attr::string("mode").default(Value::string("standard")))
        .attribute(Attr::string("id").computed_only().use_state_for_unknown())
        .attribute(Attr::number("revision").computed_only())
        .block(NestedBlock::list(
            "rule",
            Block::new()
                .attribute(Attr::number("port").required())
                .attribute(Attr::string("rid").computed_only()),
        ))
}

fn obj(name: &str, size: i64, id: Value, rev: Value, mode: Value, rules: Value) -> Value {
    Value::object([
        ("name", Value::string(name)),
        ("size", Value::number_i64(size)),
        (
            "labels",
            Value::set([Value::string("a"), Value::string("b")]),
        ),
        ("mode", mode),
        ("id", id),
        ("revision", rev),
        ("rule", rules),
    ])
}

fn rule(port: i64, rid: Value) -> Value {
    Value::object([("port", Value::number_i64(port)), ("rid", rid)])
}

#[test]
fn create_marks_computed_unknown_and_applies_defaults() {
    let config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([rule(80, Value::Null)]),
    );
    let p = plan(&block(), &Value::Null, &config, &config);
    assert_eq!(p.planned.get_attr("id"), Some(&Value::unknown()));
    assert_eq!(p.planned.get_attr("revision"), Some(&Value::unknown()));
    assert_eq!(p.planned.get_attr("mode"), Some(&Value::string("standard")));
    assert_eq!(
        p.planned.get_attr("rule").unwrap().as_elements().unwrap()[0].get_attr("rid"),
        Some(&Value::unknown())
    );
    assert!(p.requires_replace.is_empty());
    assert!(check_plan_valid(&block(), &Value::Null, &config, &p.planned).is_empty());
}

#[test]
fn no_change_keeps_prior_exactly() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([rule(80, Value::string("r"))]),
    );
    let config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([rule(80, Value::Null)]),
    );
    // Terraform's proposed new state: config, with prior values for null computed attributes.
    let proposed = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([rule(80, Value::string("r"))]),
    );
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(p.planned, prior);
    assert!(p.requires_replace.is_empty());
}

#[test]
fn update_in_place_keeps_use_state_for_unknown_and_unknowns_the_rest() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let config = obj(
        "a",
        2,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    let proposed = obj(
        "a",
        2,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(p.planned.get_attr("id"), Some(&Value::string("x")));
    assert_eq!(p.planned.get_attr("revision"), Some(&Value::unknown()));
    assert_eq!(p.planned.get_attr("size"), Some(&Value::number_i64(2)));
    assert!(p.requires_replace.is_empty());
    assert!(check_plan_valid(&block(), &prior, &config, &p.planned).is_empty());
}

#[test]
fn changing_a_requires_replace_attribute_asks_for_replacement() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let config = obj(
        "b",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    let proposed = obj(
        "b",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(p.requires_replace, vec![AttributePath::attr("name")]);
}

#[test]
fn unknown_config_value_stays_unknown_and_forces_replace() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let mut config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    *config.get_attr_mut("name").unwrap() = Value::unknown();
    let mut proposed = prior.clone();
    *proposed.get_attr_mut("name").unwrap() = Value::unknown();
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(p.planned.get_attr("name"), Some(&Value::unknown()));
    assert_eq!(p.requires_replace, vec![AttributePath::attr("name")]);
}

#[test]
fn removing_a_defaulted_value_plans_the_default() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("fast"),
        Value::list([]),
    );
    let config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    let proposed = prior.clone();
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(p.planned.get_attr("mode"), Some(&Value::string("standard")));
    assert_eq!(p.planned.get_attr("revision"), Some(&Value::unknown()));
}

#[test]
fn set_change_is_an_update() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let mut config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    *config.get_attr_mut("labels").unwrap() = Value::set([Value::string("c")]);
    let mut proposed = prior.clone();
    *proposed.get_attr_mut("labels").unwrap() = Value::set([Value::string("c")]);
    let p = plan(&block(), &prior, &config, &proposed);
    assert_eq!(
        p.planned.get_attr("labels"),
        Some(&Value::set([Value::string("c")]))
    );
    assert_eq!(p.planned.get_attr("revision"), Some(&Value::unknown()));
    assert!(p.requires_replace.is_empty());
}

#[test]
fn set_nested_blocks_keep_unchanged_elements_and_unknown_new_ones() {
    let b = Block::new().block(NestedBlock::set(
        "rule",
        Block::new()
            .attribute(Attr::number("port").required())
            .attribute(Attr::string("rid").computed_only()),
    ));
    let prior = Value::object([("rule", Value::set([rule(80, Value::string("r1"))]))]);
    let config = Value::object([(
        "rule",
        Value::set([rule(80, Value::Null), rule(443, Value::Null)]),
    )]);
    let proposed = Value::object([(
        "rule",
        Value::set([rule(80, Value::string("r1")), rule(443, Value::Null)]),
    )]);
    let p = plan(&b, &prior, &config, &proposed);
    let elems = p
        .planned
        .get_attr("rule")
        .unwrap()
        .as_elements()
        .unwrap()
        .to_vec();
    assert!(elems.contains(&rule(80, Value::string("r1"))), "{elems:?}");
    assert!(elems.contains(&rule(443, Value::unknown())), "{elems:?}");
}

#[test]
fn destroy_passes_through() {
    let prior = obj(
        "a",
        1,
        Value::string("x"),
        Value::number_i64(3),
        Value::string("standard"),
        Value::list([]),
    );
    let p = plan(&block(), &prior, &Value::Null, &Value::Null);
    assert_eq!(p.planned, Value::Null);
}

#[test]
fn validity_check_catches_changed_user_values() {
    let config = obj(
        "a",
        1,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::list([]),
    );
    let mut planned = config.clone();
    *planned.get_attr_mut("size").unwrap() = Value::number_i64(9);
    let errs = check_plan_valid(&block(), &Value::Null, &config, &planned);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("size"));
}
