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

impl Refinement {
    /// An unknown known not to be null.
    pub fn not_null() -> Self {
        Refinement {
            nullable: Some(false),
            ..Refinement::default()
        }
    }

    /// Whether the value is known not to be null.
    pub fn is_not_null(&self) -> bool {
        self.nullable == Some(false)
    }

    /// Whether nothing is known (an unrefined unknown).
    pub fn is_empty(&self) -> bool {
        // `nullable: Some(true)` says no more than `None`: the value may be null.
        !self.is_not_null()
            && self.string_prefix.as_deref().is_none_or(str::is_empty)
            && self.number_lower.is_none()
            && self.number_upper.is_none()
            && self.length_lower.is_none_or(|n| n == 0)
            && self.length_upper.is_none()
    }

    #[must_use]
    pub fn with_string_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.string_prefix = Some(prefix.into());
        self
    }

    #[must_use]
    pub fn with_number_lower(mut self, bound: Number, inclusive: bool) -> Self {
        self.number_lower = Some((bound, inclusive));
        self
    }

    #[must_use]
    pub fn with_number_upper(mut self, bound: Number, inclusive: bool) -> Self {
        self.number_upper = Some((bound, inclusive));
        self
    }

    #[must_use]
    pub fn with_length_bounds(mut self, lower: Option<u64>, upper: Option<u64>) -> Self {
        self.length_lower = lower;
        self.length_upper = upper;
        self
    }
}

impl Value {
    /// Null. Nulls carry no type here: the schema position gives it.
    pub fn null() -> Value {
        Value::Null
    }

    /// Null for a position of type `ty`. The same as `null()` (nulls are untyped in this
    /// model); it exists so call sites can say which type they mean.
    pub fn null_of(_ty: &Type) -> Value {
        Value::Null
    }

    /// An unknown with no refinements.
    pub fn unknown() -> Value {
        Value::Unknown(Refinement::default())
    }

    /// An unknown known not to be null.
    pub fn unknown_not_null() -> Value {
        Value::Unknown(Refinement::not_null())
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn bool(b: bool) -> Value {
        Value::Bool(b)
    }

    pub fn number(n: impl Into<Number>) -> Value {
        Value::Number(n.into())
    }

    pub fn number_i64(n: i64) -> Value {
        Value::Number(Number::from(n))
    }

    pub fn list(elems: impl IntoIterator<Item = Value>) -> Value {
        Value::List(elems.into_iter().collect())
    }

    pub fn tuple(elems: impl IntoIterator<Item = Value>) -> Value {
        Value::Tuple(elems.into_iter().collect())
    }

    /// A set in canonical order: sorted by `Value`'s `Ord`, duplicates removed.
    pub fn set(elems: impl IntoIterator<Item = Value>) -> Value {
        let mut elems: Vec<Value> = elems.into_iter().collect();
        canonicalize_set(&mut elems);
        Value::Set(elems)
    }

    pub fn map<K: Into<String>>(elems: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(elems.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A known value of concrete type `ty` in a position typed `Dynamic`.
    pub fn dynamic(ty: Type, v: Value) -> Value {
        Value::Dynamic(Box::new(ty), Box::new(v))
    }

    /// The value inside any `Dynamic` wrappers.
    pub fn unwrap_dynamic(&self) -> &Value {
        let mut v = self;
        while let Value::Dynamic(_, inner) = v {
            v = inner;
        }
        v
    }

    pub fn is_null(&self) -> bool {
        matches!(self.unwrap_dynamic(), Value::Null)
    }

    /// Whether this value itself is known (its elements may still be unknown).
    pub fn is_known(&self) -> bool {
        !matches!(self.unwrap_dynamic(), Value::Unknown(_))
    }

    /// Whether this value and everything inside it is known.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown(_) => false,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, v) => v.is_wholly_known(),
        }
    }

    /// The refinement of an unknown value.
    pub fn refinement(&self) -> Option<&Refinement> {
        match self.unwrap_dynamic() {
            Value::Unknown(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.unwrap_dynamic() {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.unwrap_dynamic() {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self.unwrap_dynamic() {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// A number that is an integer within i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number()?.to_i64()
    }

    /// A number that is a non-negative integer within u64.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number()?.to_u64()
    }

    /// The elements of a list, set or tuple.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self.unwrap_dynamic() {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a map.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self.unwrap_dynamic() {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The attributes of an object.
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self.unwrap_dynamic() {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// An object's attribute. `None` for a missing attribute or a non-object (null, unknown).
    pub fn get_attr(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }

    /// Mutable access to an object's attribute.
    pub fn get_attr_mut(&mut self, name: &str) -> Option<&mut Value> {
        let mut v = self;
        while let Value::Dynamic(_, inner) = v {
            v = inner;
        }
        match v {
            Value::Object(m) => m.get_mut(name),
            _ => None,
        }
    }

    /// Checks that the value fits `ty` (what the msgpack encoder would accept), naming the
    /// first place it does not.
    pub fn check_type(&self, ty: &Type) -> Result<(), super::EncodeError> {
        super::msgpack::encode(self, ty).map(|_| ())
    }

    /// Short name of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown(_) => "unknown",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Tuple(_) => "tuple",
            Value::Dynamic(..) => "dynamic",
        }
    }
}

/// Puts set elements in canonical order: `Value`'s `Ord`, then without duplicates.
pub fn canonicalize_set(elems: &mut Vec<Value>) {
    elems.sort();
    elems.dedup();
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::number_i64(n)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        Value::Number(n)
    }
}

/// HCL-like text for messages: `"a"`, `3`, `["x", "y"]`, `{ name = "a", tags = { "k" = "v" } }`,
/// `null`, `(unknown)`.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quote = |s: &str| serde_json::to_string(s).map_err(|_| std::fmt::Error);
        match self {
            Value::Null => f.write_str("null"),
            Value::Unknown(_) => f.write_str("(unknown)"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(&quote(s)?),
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                f.write_str("[")?;
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) | Value::Object(m) => {
                if m.is_empty() {
                    return f.write_str("{}");
                }
                f.write_str("{ ")?;
                for (i, (k, e)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if matches!(self, Value::Map(_)) {
                        write!(f, "{} = {e}", quote(k)?)?;
                    } else {
                        write!(f, "{k} = {e}")?;
                    }
                }
                f.write_str(" }")
            }
            Value::Dynamic(_, v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_look_through_dynamic_wrappers() {
        let v = Value::dynamic(
            Type::object([("n", Type::Number)]),
            Value::object([("n", Value::number_i64(7))]),
        );
        assert_eq!(v.get_attr("n").and_then(Value::as_i64), Some(7));
        assert!(v.is_known() && v.is_wholly_known() && !v.is_null());
        assert!(Value::dynamic(Type::String, Value::Null).is_null());
        let partly = Value::list([Value::string("a"), Value::unknown()]);
        assert!(partly.is_known());
        assert!(!partly.is_wholly_known());
        assert_eq!(Value::string("x").as_str(), Some("x"));
        assert_eq!(Value::bool(true).as_bool(), Some(true));
        assert_eq!(Value::string("x").as_bool(), None);
        assert_eq!(Value::null_of(&Type::String), Value::Null);
        assert!(
            Value::unknown_not_null()
                .refinement()
                .unwrap()
                .is_not_null()
        );
    }

    #[test]
    fn check_type_names_the_misfit() {
        let ty = Type::object([("ids", Type::list(Type::String))]);
        assert!(
            Value::object([("ids", Value::list([Value::string("a")]))])
                .check_type(&ty)
                .is_ok()
        );
        let e = Value::object([("ids", Value::list([Value::bool(true)]))])
            .check_type(&ty)
            .unwrap_err();
        assert_eq!(e.path.to_string(), "ids[0]");
    }

    #[test]
    fn sets_are_canonical() {
        let a = Value::set([Value::string("b"), Value::string("a"), Value::string("b")]);
        let b = Value::set([Value::string("a"), Value::string("b")]);
        assert_eq!(a, b);
        assert_eq!(a.as_elements().map(<[Value]>::len), Some(2));
        let nums = Value::set([
            Value::Number("1.0".parse().unwrap()),
            Value::number_i64(1),
            Value::number_i64(-2),
        ]);
        assert_eq!(
            nums,
            Value::Set(vec![Value::number_i64(-2), Value::number_i64(1)])
        );
    }

    #[test]
    fn displays_hcl_like() {
        let v = Value::object([
            ("name", Value::string("a")),
            ("tags", Value::map([("k", Value::string("v"))])),
            ("ids", Value::list([Value::number_i64(1), Value::unknown()])),
            ("gone", Value::Null),
        ]);
        assert_eq!(
            v.to_string(),
            r#"{ gone = null, ids = [1, (unknown)], name = "a", tags = { "k" = "v" } }"#
        );
    }
}
