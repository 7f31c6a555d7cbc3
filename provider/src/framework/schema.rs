//! The schema model resources declare (our own types, no protobuf), its fluent builder, the
//! cty type a block implies, and the conversion to the protocol's `Schema`.

use std::collections::{BTreeMap, BTreeSet};

use crate::cty::{Type, Value};

use super::modifiers::{PlanModifier, ReplaceCheck};
use super::validators::Validator;

/// A resource's, data source's or provider's schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Bumped whenever stored state changes shape; older state goes through
    /// `Resource::upgrade_state`.
    pub version: i64,
    pub block: Block,
}

impl Schema {
    /// Starts a schema of `version`; the methods below fill its top-level block.
    pub fn builder(version: i64) -> Schema {
        Schema {
            version,
            block: Block::new(),
        }
    }

    /// Markdown description of the resource.
    #[must_use]
    pub fn description(mut self, markdown: impl Into<String>) -> Self {
        self.block.description = markdown.into();
        self
    }

    #[must_use]
    pub fn deprecated(mut self) -> Self {
        self.block.deprecated = true;
        self
    }

    #[must_use]
    pub fn attribute(mut self, attr: Attribute) -> Self {
        self.block.attributes.push(attr);
        self
    }

    #[must_use]
    pub fn block(mut self, block: NestedBlock) -> Self {
        self.block.blocks.push(block);
        self
    }

    /// Ends the builder (the schema is already complete; this reads well at the end).
    pub fn build(self) -> Schema {
        self
    }

    /// The cty type of values of this schema.
    pub fn implied_type(&self) -> Type {
        self.block.implied_type()
    }

    /// An object of this schema's type with every attribute and block null except `set`: the
    /// state `import` returns before Terraform reads the object. Built from the schema, so a
    /// new attribute can never be forgotten here.
    pub fn null_object_with<'a>(&self, set: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        let mut attrs: BTreeMap<String, Value> = self
            .block
            .attributes
            .iter()
            .map(|a| (a.name.clone(), Value::null()))
            .chain(
                self.block
                    .blocks
                    .iter()
                    .map(|b| (b.name.clone(), Value::null())),
            )
            .collect();
        for (k, v) in set {
            attrs.insert(k.to_string(), v);
        }
        Value::object(attrs)
    }
}

/// A block: attributes and nested blocks.
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    /// Markdown.
    pub description: String,
    pub deprecated: bool,
}

impl Block {
    pub fn new() -> Block {
        Block::default()
    }

    /// The default the schema gives attribute `name`, if any: the one place a default lives.
    pub fn default_of(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.default.as_ref())
    }

    #[must_use]
    pub fn description(mut self, markdown: impl Into<String>) -> Self {
        self.description = markdown.into();
        self
    }

    #[must_use]
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    #[must_use]
    pub fn attribute(mut self, attr: Attribute) -> Self {
        self.attributes.push(attr);
        self
    }

    #[must_use]
    pub fn block(mut self, block: NestedBlock) -> Self {
        self.blocks.push(block);
        self
    }

    pub fn attribute_named(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn block_named(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// An object type with one attribute per attribute and nested block; attributes that
    /// are not required are optional in it.
    pub fn implied_type(&self) -> Type {
        let mut attrs = BTreeMap::new();
        let mut optional = BTreeSet::new();
        for a in &self.attributes {
            attrs.insert(a.name.clone(), a.value_type());
            if !a.required {
                optional.insert(a.name.clone());
            }
        }
        for b in &self.blocks {
            attrs.insert(b.name.clone(), b.value_type());
        }
        Type::Object { attrs, optional }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
    Map,
    /// Blocks only: a single block that is always present (its attributes may be null).
    Group,
}

/// What an attribute holds: a plain cty type, or nested attributes (`attr = { ... }`).
#[derive(Debug, Clone)]
pub enum AttrType {
    Type(Type),
    Nested {
        nesting: Nesting,
        attributes: Vec<Attribute>,
        min_items: i64,
        max_items: i64,
    },
}

/// One attribute. Build with the constructors (`Attribute::string("name")`, also spelled
/// `Attr::string`) and the chained setters.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub ty: AttrType,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Markdown.
    pub description: String,
    /// `Some(message)` when deprecated.
    pub deprecation: Option<String>,
    /// Planned when the configuration leaves the attribute null (makes it computed).
    pub default: Option<Value>,
    pub plan_modifiers: Vec<PlanModifier>,
    pub validators: Vec<Validator>,
}

/// Short name for attribute builders in resource files.
pub type Attr = Attribute;

impl Attribute {
    /// An attribute of any cty type; optional until said otherwise.
    pub fn of(name: impl Into<String>, ty: Type) -> Attribute {
        Attribute {
            name: name.into(),
            ty: AttrType::Type(ty),
            required: false,
            optional: true,
            computed: false,
            sensitive: false,
            description: String::new(),
            deprecation: None,
            default: None,
            plan_modifiers: Vec::new(),
            validators: Vec::new(),
        }
    }

    pub fn string(name: impl Into<String>) -> Attribute {
        Attribute::of(name, Type::String)
    }

    pub fn number(name: impl Into<String>) -> Attribute {
        Attribute::of(name, Type::Number)
    }

    pub fn bool(name: impl Into<String>) -> Attribute {
        Attribute::of(name, Type::Bool)
    }

    pub fn list(name: impl Into<String>, elem: Type) -> Attribute {
        Attribute::of(name, Type::List(Box::new(elem)))
    }

    pub fn set(name: impl Into<String>, elem: Type) -> Attribute {
        Attribute::of(name, Type::Set(Box::new(elem)))
    }

    pub fn map(name: impl Into<String>, elem: Type) -> Attribute {
        Attribute::of(name, Type::Map(Box::new(elem)))
    }

    /// Nested attributes (`name = { ... }` or a list/set/map of such objects). `Group` is
    /// for blocks only and is treated as `Single` here.
    pub fn nested(name: impl Into<String>, nesting: Nesting, attributes: Vec<Attribute>) -> Self {
        let nesting = if nesting == Nesting::Group {
            Nesting::Single
        } else {
            nesting
        };
        Attribute {
            ty: AttrType::Nested {
                nesting,
                attributes,
                min_items: 0,
                max_items: 0,
            },
            ..Attribute::of(name, Type::Dynamic)
        }
    }

    /// For nested attributes: bounds on the number of elements (0 = none).
    #[must_use]
    pub fn items(mut self, min: i64, max: i64) -> Self {
        if let AttrType::Nested {
            min_items,
            max_items,
            ..
        } = &mut self.ty
        {
            *min_items = min;
            *max_items = max;
        }
        self
    }

    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self.optional = false;
        self.computed = false;
        self
    }

    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = false;
        self.optional = true;
        self
    }

    /// Set by the provider. Alone it means "computed only"; after `optional()` it means the
    /// user may set it and the provider fills it otherwise.
    #[must_use]
    pub fn computed(mut self) -> Self {
        self.required = false;
        self.computed = true;
        self
    }

    /// Computed only: the user may not set it.
    #[must_use]
    pub fn computed_only(mut self) -> Self {
        self.required = false;
        self.optional = false;
        self.computed = true;
        self
    }

    #[must_use]
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    #[must_use]
    pub fn description(mut self, markdown: impl Into<String>) -> Self {
        self.description = markdown.into();
        self
    }

    #[must_use]
    pub fn deprecated(mut self, message: impl Into<String>) -> Self {
        self.deprecation = Some(message.into());
        self
    }

    /// The value planned when the configuration leaves this attribute null. Makes the
    /// attribute optional and computed, as Terraform requires of a provider-chosen value.
    #[must_use]
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self.required = false;
        self.optional = true;
        self.computed = true;
        self
    }

    #[must_use]
    pub fn requires_replace(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::RequiresReplace);
        self
    }

    /// Replace when `check(prior, planned)` is true for a changed value.
    #[must_use]
    pub fn requires_replace_if(
        mut self,
        description: impl Into<String>,
        check: impl Fn(&Value, &Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        let check: ReplaceCheck = std::sync::Arc::new(check);
        self.plan_modifiers.push(PlanModifier::RequiresReplaceIf {
            description: description.into(),
            check,
        });
        self
    }

    #[must_use]
    pub fn use_state_for_unknown(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::UseStateForUnknown);
        self
    }

    #[must_use]
    pub fn plan_modifier(mut self, m: PlanModifier) -> Self {
        self.plan_modifiers.push(m);
        self
    }

    #[must_use]
    pub fn validate(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }

    pub fn requires_replace_any(&self) -> bool {
        self.plan_modifiers.iter().any(|m| {
            matches!(
                m,
                PlanModifier::RequiresReplace | PlanModifier::RequiresReplaceIf { .. }
            )
        })
    }

    pub fn has_use_state_for_unknown(&self) -> bool {
        self.plan_modifiers
            .iter()
            .any(|m| matches!(m, PlanModifier::UseStateForUnknown))
    }

    /// The nested attributes as a block (for walking values), when this attribute is nested.
    pub fn nested_block(&self) -> Option<(Nesting, Block)> {
        match &self.ty {
            AttrType::Type(_) => None,
            AttrType::Nested {
                nesting,
                attributes,
                ..
            } => Some((
                *nesting,
                Block {
                    attributes: attributes.clone(),
                    ..Block::default()
                },
            )),
        }
    }

    /// The cty type of this attribute's values.
    pub fn value_type(&self) -> Type {
        match &self.ty {
            AttrType::Type(t) => t.clone(),
            AttrType::Nested {
                nesting,
                attributes,
                ..
            } => {
                let obj = Block {
                    attributes: attributes.clone(),
                    ..Block::default()
                }
                .implied_type();
                wrap(*nesting, obj)
            }
        }
    }
}

fn wrap(nesting: Nesting, obj: Type) -> Type {
    match nesting {
        Nesting::Single | Nesting::Group => obj,
        Nesting::List => Type::List(Box::new(obj)),
        Nesting::Set => Type::Set(Box::new(obj)),
        Nesting::Map => Type::Map(Box::new(obj)),
    }
}

/// A nested block type (`name { ... }` in configuration).
#[derive(Debug, Clone)]
pub struct NestedBlock {
    pub name: String,
    pub nesting: Nesting,
    pub min_items: i64,
    pub max_items: i64,
    pub block: Block,
}

impl NestedBlock {
    pub fn new(name: impl Into<String>, nesting: Nesting, block: Block) -> NestedBlock {
        NestedBlock {
            name: name.into(),
            nesting,
            min_items: 0,
            max_items: 0,
            block,
        }
    }

    pub fn single(name: impl Into<String>, block: Block) -> NestedBlock {
        NestedBlock::new(name, Nesting::Single, block)
    }

    pub fn list(name: impl Into<String>, block: Block) -> NestedBlock {
        NestedBlock::new(name, Nesting::List, block)
    }

    pub fn set(name: impl Into<String>, block: Block) -> NestedBlock {
        NestedBlock::new(name, Nesting::Set, block)
    }

    pub fn map(name: impl Into<String>, block: Block) -> NestedBlock {
        NestedBlock::new(name, Nesting::Map, block)
    }

    pub fn group(name: impl Into<String>, block: Block) -> NestedBlock {
        NestedBlock::new(name, Nesting::Group, block)
    }

    #[must_use]
    pub fn min_items(mut self, n: i64) -> Self {
        self.min_items = n;
        self
    }

    #[must_use]
    pub fn max_items(mut self, n: i64) -> Self {
        self.max_items = n;
        self
    }

    pub fn value_type(&self) -> Type {
        wrap(self.nesting, self.block.implied_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::server::ToProto;
    use crate::framework::validators;
    use crate::tfplugin::proto::tfplugin6 as pb;

    fn sample() -> Schema {
        Schema::builder(2)
            .description("A **widget**.")
            .attribute(
                Attr::string("name")
                    .required()
                    .requires_replace()
                    .description("Name.")
                    .validate(validators::length(1, 63)),
            )
            .attribute(Attr::number("size").default(Value::number_i64(1)))
            .attribute(Attr::string("id").computed_only().use_state_for_unknown())
            .attribute(Attr::nested(
                "opts",
                Nesting::List,
                vec![Attr::bool("on").required()],
            ))
            .block(
                NestedBlock::set(
                    "rule",
                    Block::new().attribute(Attr::string("port").required()),
                )
                .max_items(3),
            )
            .build()
    }

    #[test]
    fn implied_type_marks_non_required_optional() {
        let Type::Object { attrs, optional } = sample().implied_type() else {
            panic!("not an object");
        };
        assert_eq!(attrs["name"], Type::String);
        assert!(!optional.contains("name"));
        assert!(optional.contains("size"));
        assert!(optional.contains("id"));
        assert!(matches!(attrs["opts"], Type::List(_)));
        assert!(matches!(attrs["rule"], Type::Set(_)));
        assert!(!optional.contains("rule"));
    }

    #[test]
    fn proto_carries_flags_descriptions_and_nesting() {
        let p = sample().to_proto();
        assert_eq!(p.version, 2);
        let b = p.block.unwrap();
        assert_eq!(b.description, "A **widget**.");
        assert_eq!(b.description_kind, pb::StringKind::Markdown as i32);
        let name = b.attributes.iter().find(|a| a.name == "name").unwrap();
        assert!(name.required && !name.optional && !name.computed);
        assert_eq!(name.r#type, b"\"string\"");
        let size = b.attributes.iter().find(|a| a.name == "size").unwrap();
        assert!(size.optional && size.computed);
        let id = b.attributes.iter().find(|a| a.name == "id").unwrap();
        assert!(!id.optional && id.computed);
        let opts = b.attributes.iter().find(|a| a.name == "opts").unwrap();
        assert!(opts.r#type.is_empty());
        assert_eq!(
            opts.nested_type.as_ref().unwrap().nesting,
            pb::schema::object::NestingMode::List as i32
        );
        let rule = &b.block_types[0];
        assert_eq!(rule.type_name, "rule");
        assert_eq!(
            rule.nesting,
            pb::schema::nested_block::NestingMode::Set as i32
        );
        assert_eq!(rule.max_items, 3);
    }
}
