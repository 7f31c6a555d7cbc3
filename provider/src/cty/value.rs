use std::collections::{BTreeMap, BTreeSet};

/// A cty type. `Dynamic` is cty's DynamicPseudoType: "any type, decided at run time".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Bool,
    Number,
    String,
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    /// Object type; `optional` names attributes that may be omitted in configuration.
    Object {
        attrs: BTreeMap<String, Type>,
        optional: BTreeSet<String>,
    },
    Tuple(Vec<Type>),
}

/// An arbitrary-precision decimal number, as cty's big.Float: no f64 rounding of large
/// integers or long decimals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(pub bigdecimal::BigDecimal);

/// What Terraform already knows about an unknown value (cty refinements). Everything optional:
/// an unrefined unknown is `Refinement::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Refinement {
    /// `Some(false)`: the value is known not to be null.
    pub nullable: Option<bool>,
    /// For strings: a known prefix.
    pub string_prefix: Option<String>,
    /// For numbers: bounds, each with whether it is inclusive.
    pub number_lower: Option<(Number, bool)>,
    pub number_upper: Option<(Number, bool)>,
    /// For collections: bounds on the length.
    pub length_lower: Option<u64>,
    pub length_upper: Option<u64>,
}

/// A cty value. Values are interpreted against a `Type` (the schema's), which the codecs take
/// as an argument; a value of `Type::Dynamic` carries its concrete type in `Value::Dynamic`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Null,
    Unknown(Refinement),
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Elements in a canonical order, without duplicates.
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A known value in a position typed `Dynamic`, with the concrete type it was sent with.
    Dynamic(Box<Type>, Box<Value>),
}
