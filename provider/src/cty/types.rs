//! cty's JSON encoding of types (what a schema's `type` bytes and a dynamic value's type
//! carry), both ways, and friendly type names for messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value as Json;

use super::value::Type;

/// Why bytes are not a cty type description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("type description is not JSON: {0}")]
    Syntax(String),
    #[error("invalid type description: {0}")]
    Invalid(String),
}

impl Type {
    /// Parses cty's JSON type encoding: `"string"`, `["list","number"]`,
    /// `["object",{"a":"bool"},["a"]]`, `["tuple",["string"]]`, ...
    pub fn from_json(bytes: &[u8]) -> Result<Type, TypeError> {
        // serde_json bounds nesting (128 levels), so the walk below cannot overflow the stack.
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| TypeError::Syntax(e.to_string()))?;
        Type::from_json_value(&json)
    }

    /// As `from_json`, from an already parsed JSON value.
    pub fn from_json_value(json: &Json) -> Result<Type, TypeError> {
        let invalid = |m: String| Err(TypeError::Invalid(m));
        match json {
            Json::String(name) => match name.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => invalid(format!("unknown primitive type {other:?}")),
            },
            Json::Array(items) => {
                let Some(Json::String(kind)) = items.first() else {
                    return invalid("a complex type must start with its kind name".into());
                };
                let arity = |want: &[usize]| {
                    if want.contains(&items.len()) {
                        Ok(())
                    } else {
                        Err(TypeError::Invalid(format!(
                            "{kind:?} type has {} parts",
                            items.len()
                        )))
                    }
                };
                match kind.as_str() {
                    "list" | "set" | "map" => {
                        arity(&[2])?;
                        let elem = Box::new(Type::from_json_value(&items[1])?);
                        Ok(match kind.as_str() {
                            "list" => Type::List(elem),
                            "set" => Type::Set(elem),
                            _ => Type::Map(elem),
                        })
                    }
                    "object" => {
                        arity(&[2, 3])?;
                        let Json::Object(fields) = &items[1] else {
                            return invalid("object attribute types must be a JSON object".into());
                        };
                        let mut attrs = BTreeMap::new();
                        for (name, ty) in fields {
                            attrs.insert(name.clone(), Type::from_json_value(ty)?);
                        }
                        let mut optional = BTreeSet::new();
                        if let Some(opt) = items.get(2) {
                            let Json::Array(names) = opt else {
                                return invalid("optional attributes must be a list".into());
                            };
                            for name in names {
                                let Json::String(name) = name else {
                                    return invalid(
                                        "optional attribute name is not a string".into(),
                                    );
                                };
                                if !attrs.contains_key(name) {
                                    return invalid(format!(
                                        "optional attribute {name:?} is not an attribute"
                                    ));
                                }
                                optional.insert(name.clone());
                            }
                        }
                        Ok(Type::Object { attrs, optional })
                    }
                    "tuple" => {
                        arity(&[2])?;
                        let Json::Array(elems) = &items[1] else {
                            return invalid("tuple element types must be a list".into());
                        };
                        elems
                            .iter()
                            .map(Type::from_json_value)
                            .collect::<Result<Vec<_>, _>>()
                            .map(Type::Tuple)
                    }
                    other => invalid(format!("unknown complex type kind {other:?}")),
                }
            }
            _ => invalid("a type is a string or a list".into()),
        }
    }

    /// cty's JSON encoding of this type, byte for byte as go-cty writes it (attributes and
    /// optional names sorted, no whitespace).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::new();
        self.write_json(&mut out);
        out.into_bytes()
    }

    /// `to_json` as a `String`.
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        match self {
            Type::Bool => out.push_str("\"bool\""),
            Type::Number => out.push_str("\"number\""),
            Type::String => out.push_str("\"string\""),
            Type::Dynamic => out.push_str("\"dynamic\""),
            Type::List(e) | Type::Set(e) | Type::Map(e) => {
                out.push_str(match self {
                    Type::List(_) => "[\"list\",",
                    Type::Set(_) => "[\"set\",",
                    _ => "[\"map\",",
                });
                e.write_json(out);
                out.push(']');
            }
            Type::Object { attrs, optional } => {
                out.push_str("[\"object\",{");
                for (i, (name, ty)) in attrs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(name, out);
                    out.push(':');
                    ty.write_json(out);
                }
                out.push('}');
                // Only names that are attributes: an encoder must not write what the decoder
                // rejects.
                let names: Vec<&String> =
                    optional.iter().filter(|n| attrs.contains_key(*n)).collect();
                if !names.is_empty() {
                    out.push_str(",[");
                    for (i, name) in names.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_json_string(name, out);
                    }
                    out.push(']');
                }
                out.push(']');
            }
            Type::Tuple(elems) => {
                out.push_str("[\"tuple\",[");
                for (i, ty) in elems.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ty.write_json(out);
                }
                out.push_str("]]");
            }
        }
    }

    /// An object type without optional attributes.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Type)>) -> Type {
        Type::Object {
            attrs: attrs.into_iter().map(|(k, t)| (k.into(), t)).collect(),
            optional: BTreeSet::new(),
        }
    }

    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }

    pub fn set(elem: Type) -> Type {
        Type::Set(Box::new(elem))
    }

    pub fn map(elem: Type) -> Type {
        Type::Map(Box::new(elem))
    }

    /// List, set or map: the types cty calls collections (length refinements apply to them).
    pub fn is_collection(&self) -> bool {
        matches!(self, Type::List(_) | Type::Set(_) | Type::Map(_))
    }

    /// The element type of a list, set or map.
    pub fn element_type(&self) -> Option<&Type> {
        match self {
            Type::List(e) | Type::Set(e) | Type::Map(e) => Some(e),
            _ => None,
        }
    }

    /// The type of an object's attribute.
    pub fn attribute_type(&self, name: &str) -> Option<&Type> {
        match self {
            Type::Object { attrs, .. } => attrs.get(name),
            _ => None,
        }
    }
}

pub(crate) fn write_json_string(s: &str, out: &mut String) {
    // Serialising a str to a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// cty's friendly names: `string`, `list of number`, `object`, `tuple`.
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Number => f.write_str("number"),
            Type::String => f.write_str("string"),
            Type::Dynamic => f.write_str("dynamic"),
            Type::List(e) => write!(f, "list of {e}"),
            Type::Set(e) => write!(f, "set of {e}"),
            Type::Map(e) => write!(f, "map of {e}"),
            Type::Object { .. } => f.write_str("object"),
            Type::Tuple(_) => f.write_str("tuple"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go_cty() {
        let ty = Type::Object {
            attrs: [
                ("tags".to_string(), Type::map(Type::String)),
                ("id".to_string(), Type::String),
                ("ports".to_string(), Type::set(Type::Number)),
                (
                    "pair".to_string(),
                    Type::Tuple(vec![Type::Bool, Type::Dynamic]),
                ),
                ("names".to_string(), Type::list(Type::String)),
            ]
            .into_iter()
            .collect(),
            optional: ["tags".to_string(), "id".to_string()].into_iter().collect(),
        };
        let want = r#"["object",{"id":"string","names":["list","string"],"pair":["tuple",["bool","dynamic"]],"ports":["set","number"],"tags":["map","string"]},["id","tags"]]"#;
        assert_eq!(String::from_utf8(ty.to_json()).unwrap(), want);
        assert_eq!(Type::from_json(want.as_bytes()).unwrap(), ty);
        assert_eq!(
            Type::object([("a", Type::Bool)]).to_json_string(),
            r#"["object",{"a":"bool"}]"#
        );
        assert_eq!(Type::Tuple(vec![]).to_json_string(), r#"["tuple",[]]"#);
    }

    #[test]
    fn accepts_whitespace_and_rejects_bad_descriptions() {
        assert_eq!(
            Type::from_json(b" [ \"list\" , \"string\" ] ").unwrap(),
            Type::list(Type::String)
        );
        for bad in [
            &b"\"strin\""[..],
            b"[\"list\"]",
            b"[\"list\",\"string\",\"string\"]",
            b"[\"object\",[]]",
            b"[\"object\",{\"a\":\"bool\"},[\"b\"]]",
            b"[\"object\",{\"a\":\"bool\"},[1]]",
            b"[\"tuple\",\"string\"]",
            b"[\"vector\",\"string\"]",
            b"[]",
            b"3",
            b"\"string\" x",
            b"",
        ] {
            assert!(
                Type::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{}\"string\"{}", "[\"list\",".repeat(200), "]".repeat(200));
        assert!(Type::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn friendly_names() {
        assert_eq!(
            Type::list(Type::set(Type::Number)).to_string(),
            "list of set of number"
        );
    }
}
