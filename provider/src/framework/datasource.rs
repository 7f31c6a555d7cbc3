//! Data sources built on managed resources: a data source that reads the object a resource
//! manages should show exactly what that resource's state shows. Its schema is derived from the
//! resource's (the lookup arguments stay settable, everything else becomes read-only) and its
//! value is the resource's state projected onto it, so an attribute added to the resource, or a
//! change to how the resource reads AWS, reaches the data source with no second copy.

use std::collections::BTreeMap;

use crate::cty::Value;

use super::modifiers::PlanModifier;
use super::schema::{AttrType, Attribute, Schema};

/// `resource`'s schema as a data source's: the attributes named in `lookup` become required
/// arguments (keeping their validators), every other attribute becomes computed-only (nested
/// attributes all the way down), nested blocks (such as `timeouts`) are dropped, and plan
/// modifiers and defaults are gone (a data source is never planned). `description` replaces the
/// resource's.
pub fn read_only_schema(resource: &Schema, lookup: &[&str], description: &str) -> Schema {
    let mut s = Schema::builder(0).description(description);
    for a in &resource.block.attributes {
        let a = if lookup.contains(&a.name.as_str()) {
            Attribute {
                plan_modifiers: Vec::new(),
                default: None,
                ..a.clone()
            }
            .required()
        } else {
            computed_only(a)
        };
        s = s.attribute(a);
    }
    s
}

fn computed_only(a: &Attribute) -> Attribute {
    let ty = match &a.ty {
        AttrType::Type(t) => AttrType::Type(t.clone()),
        AttrType::Nested {
            nesting,
            attributes,
            ..
        } => AttrType::Nested {
            nesting: *nesting,
            attributes: attributes.iter().map(computed_only).collect(),
            min_items: 0,
            max_items: 0,
        },
    };
    Attribute {
        ty,
        plan_modifiers: Vec::<PlanModifier>::new(),
        validators: Vec::new(),
        default: None,
        ..a.clone()
    }
    .computed_only()
}

/// Adds `attr` unless the schema already has an attribute of that name: a resource attribute
/// of the same name wins, so a later resource change never makes a duplicate.
pub fn with_extra(mut schema: Schema, attr: Attribute) -> Schema {
    if schema.block.attribute_named(&attr.name).is_none() {
        schema.block.attributes.push(attr);
    }
    schema
}

/// An object of `schema`'s type holding `state`'s values for the attributes both have, then
/// `extra` (for attributes only the data source has); anything else is null.
pub fn project<'a>(
    state: &Value,
    schema: &Schema,
    extra: impl IntoIterator<Item = (&'a str, Value)>,
) -> Value {
    let mut attrs: BTreeMap<String, Value> = schema
        .block
        .attributes
        .iter()
        .map(|a| {
            let v = state.get_attr(&a.name).cloned().unwrap_or_else(Value::null);
            (a.name.clone(), v)
        })
        .collect();
    for (k, v) in extra {
        if attrs.contains_key(k) && attrs[k].is_null() {
            attrs.insert(k.to_string(), v);
        }
    }
    Value::object(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Type;
    use crate::framework::schema::{Attr, Block, NestedBlock, Nesting};
    use crate::framework::validators;

    fn resource() -> Schema {
        Schema::builder(3)
            .description("A widget.")
            .attribute(
                Attr::string("name")
                    .required()
                    .requires_replace()
                    .validate(validators::length(1, 10))
                    .description("Name."),
            )
            .attribute(
                Attr::string("size")
                    .default("s")
                    .validate(validators::one_of(&["s", "m"]))
                    .description("Size."),
            )
            .attribute(
                Attr::string("id")
                    .computed_only()
                    .use_state_for_unknown()
                    .description("Id."),
            )
            .attribute(
                Attr::nested(
                    "parts",
                    Nesting::List,
                    vec![Attr::string("part").required().description("Part.")],
                )
                .optional()
                .description("Parts."),
            )
            .block(NestedBlock::single(
                "timeouts",
                Block::new().attribute(Attr::string("create").optional()),
            ))
            .build()
    }

    #[test]
    fn lookup_stays_required_and_the_rest_is_read_only() {
        let s = read_only_schema(&resource(), &["name"], "Reads a widget.");
        assert_eq!(s.version, 0);
        assert_eq!(s.block.description, "Reads a widget.");
        assert!(s.block.blocks.is_empty(), "timeouts must go");
        let name = s.block.attribute_named("name").unwrap();
        assert!(name.required && !name.computed);
        assert!(name.plan_modifiers.is_empty());
        assert_eq!(name.validators.len(), 1, "the lookup keeps its validation");
        for n in ["size", "id", "parts"] {
            let a = s.block.attribute_named(n).unwrap();
            assert!(
                a.computed && !a.optional && !a.required,
                "{n} is not computed-only"
            );
            assert!(a.default.is_none() && a.plan_modifiers.is_empty() && a.validators.is_empty());
        }
        let AttrType::Nested { attributes, .. } = &s.block.attribute_named("parts").unwrap().ty
        else {
            panic!("parts is not nested");
        };
        assert!(attributes[0].computed && !attributes[0].required);
        assert_eq!(
            s.block.attribute_named("size").unwrap().description,
            "Size."
        );
    }

    #[test]
    fn extras_never_shadow_resource_attributes() {
        let s = read_only_schema(&resource(), &["name"], "d");
        let n = s.block.attributes.len();
        let s = with_extra(s, Attr::string("id").computed_only().description("dup"));
        assert_eq!(s.block.attributes.len(), n);
        let s = with_extra(s, Attr::of("more", Type::Number).computed_only());
        assert_eq!(s.block.attributes.len(), n + 1);
    }

    #[test]
    fn projection_keeps_shared_attributes_and_fills_extras() {
        let s = with_extra(
            read_only_schema(&resource(), &["name"], "d"),
            Attr::of("count", Type::Number).computed_only(),
        );
        let state = Value::object([
            ("name", Value::string("w")),
            ("size", Value::string("m")),
            ("id", Value::string("w")),
            ("parts", Value::null()),
            ("timeouts", Value::null()),
        ]);
        let v = project(&state, &s, [("count", Value::number_i64(2))]);
        assert_eq!(v.get_attr("size"), Some(&Value::string("m")));
        assert_eq!(v.get_attr("count"), Some(&Value::number_i64(2)));
        assert_eq!(v.get_attr("timeouts"), None);
        crate::cty::msgpack::encode(&v, &s.implied_type()).expect("conforms to the schema");
    }
}
