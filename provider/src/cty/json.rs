//! go-cty's JSON encoding of values: what raw state (`RawState.json`) and `DynamicValue.json`
//! carry. Unknown values cannot be written; a value in a dynamic position is
//! `{"value": ..., "type": ...}`; numbers keep every digit (serde_json's
//! `arbitrary_precision` hands us their text, never an f64).
//!
//! Decoding follows go-cty's leniencies: a string may stand for a number or a bool, a number or
//! bool for a string, and missing object attributes are null. `decode` rejects attributes the
//! type does not have; `decode_state` drops them, as upgrading stored state needs.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, MAX_DEPTH};
use super::number::NumberError;
use super::path::{AttributePath, PathStep};
use super::types::write_json_string;
use super::value::{Number, Type, Value, canonicalize_set};

/// Decodes JSON `bytes` as a value of type `ty`; an attribute the type lacks is an error.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, DecodeError> {
    decode_with(bytes, ty, false)
}

/// Decodes stored state: like `decode`, but attributes (at any depth) that the type does not
/// have are dropped, since state written by an older schema may still hold them.
pub fn decode_state(bytes: &[u8], ty: &Type) -> Result<Value, DecodeError> {
    decode_with(bytes, ty, true)
}

/// Decodes an already parsed JSON value (`drop_unknown_attrs` as in `decode_state`).
pub fn decode_value(
    json: &Json,
    ty: &Type,
    drop_unknown_attrs: bool,
) -> Result<Value, DecodeError> {
    let mut d = Decoder {
        path: AttributePath::root(),
        drop_unknown_attrs,
    };
    d.value(json, ty, 0)
}

fn decode_with(bytes: &[u8], ty: &Type, drop_unknown_attrs: bool) -> Result<Value, DecodeError> {
    // serde_json bounds nesting at 128 levels, so the walk cannot overflow the stack.
    let json: Json = serde_json::from_slice(bytes).map_err(|e| DecodeError {
        path: AttributePath::root(),
        offset: None,
        kind: DecodeErrorKind::Malformed(format!("invalid JSON: {e}")),
    })?;
    decode_value(&json, ty, drop_unknown_attrs)
}

/// Encodes `v` as JSON of type `ty`, as go-cty's `ctyjson.Marshal` would (attributes in
/// name order, numbers in plain decimal). Unknown values are an error.
pub fn encode(v: &Value, ty: &Type) -> Result<Vec<u8>, EncodeError> {
    encode_string(v, ty).map(String::into_bytes)
}

/// `encode` as a `String`.
pub fn encode_string(v: &Value, ty: &Type) -> Result<String, EncodeError> {
    let mut e = Encoder {
        out: String::new(),
        path: AttributePath::root(),
    };
    e.value(v, ty, 0)?;
    Ok(e.out)
}

fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

struct Decoder {
    path: AttributePath,
    drop_unknown_attrs: bool,
}

impl Decoder {
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            path: self.path.clone(),
            offset: None,
            kind,
        }
    }

    fn wrong(&self, expected: impl Into<String>, j: &Json) -> DecodeError {
        self.err(DecodeErrorKind::WrongType {
            expected: expected.into(),
            found: json_kind(j),
        })
    }

    fn number(&self, text: &str) -> Result<Number, DecodeError> {
        Number::parse(text).map_err(|e: NumberError| self.err(e.into()))
    }

    fn value(&mut self, j: &Json, ty: &Type, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        if j.is_null() {
            return Ok(Value::Null);
        }
        match ty {
            Type::Dynamic => self.dynamic(j, depth),
            Type::Bool => match j {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                Json::String(s) if s == "true" => Ok(Value::Bool(true)),
                Json::String(s) if s == "false" => Ok(Value::Bool(false)),
                _ => Err(self.wrong("bool", j)),
            },
            Type::Number => match j {
                Json::Number(n) => self.number(&n.to_string()).map(Value::Number),
                Json::String(s) => self.number(s).map(Value::Number),
                _ => Err(self.wrong("number", j)),
            },
            Type::String => match j {
                Json::String(s) => Ok(Value::String(s.clone())),
                Json::Number(n) => Ok(Value::String(n.to_string())),
                Json::Bool(b) => Ok(Value::String(b.to_string())),
                _ => Err(self.wrong("string", j)),
            },
            Type::List(elem) | Type::Set(elem) => {
                let is_list = matches!(ty, Type::List(_));
                let Json::Array(items) = j else {
                    return Err(self.wrong(if is_list { "list" } else { "set" }, j));
                };
                let mut elems = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    elems.push(self.value(item, elem, depth + 1)?);
                    self.path.pop();
                }
                if is_list {
                    Ok(Value::List(elems))
                } else {
                    canonicalize_set(&mut elems);
                    Ok(Value::Set(elems))
                }
            }
            Type::Map(elem) => {
                let Json::Object(items) = j else {
                    return Err(self.wrong("map", j));
                };
                let mut elems = BTreeMap::new();
                for (k, item) in items {
                    self.path.push(PathStep::ElementKeyString(k.clone()));
                    elems.insert(k.clone(), self.value(item, elem, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Map(elems))
            }
            Type::Object { attrs, .. } => {
                let Json::Object(items) = j else {
                    return Err(self.wrong("object", j));
                };
                let mut out = BTreeMap::new();
                for (k, item) in items {
                    let Some(aty) = attrs.get(k) else {
                        if self.drop_unknown_attrs {
                            continue;
                        }
                        return Err(self.err(DecodeErrorKind::UnsupportedAttribute(k.clone())));
                    };
                    self.path.push(PathStep::Attribute(k.clone()));
                    out.insert(k.clone(), self.value(item, aty, depth + 1)?);
                    self.path.pop();
                }
                for name in attrs.keys() {
                    if !out.contains_key(name) {
                        out.insert(name.clone(), Value::Null);
                    }
                }
                Ok(Value::Object(out))
            }
            Type::Tuple(etys) => {
                let Json::Array(items) = j else {
                    return Err(self.wrong("tuple", j));
                };
                if items.len() != etys.len() {
                    return Err(self.err(DecodeErrorKind::TupleLength {
                        expected: etys.len(),
                        found: items.len(),
                    }));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, (item, ety)) in items.iter().zip(etys).enumerate() {
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    out.push(self.value(item, ety, depth + 1)?);
                    self.path.pop();
                }
                Ok(Value::Tuple(out))
            }
        }
    }

    fn dynamic(&mut self, j: &Json, depth: usize) -> Result<Value, DecodeError> {
        let Json::Object(fields) = j else {
            return Err(self.wrong("dynamic value ({\"value\": ..., \"type\": ...})", j));
        };
        let mut ty = None;
        let mut value = None;
        for (k, v) in fields {
            match k.as_str() {
                "type" => ty = Some(Type::from_json_value(v).map_err(|e| self.err(e.into()))?),
                "value" => value = Some(v),
                other => {
                    return Err(self.err(DecodeErrorKind::BadDynamic(format!(
                        "invalid key {other:?} in dynamically-typed value"
                    ))));
                }
            }
        }
        let Some(ty) = ty else {
            return Err(self.err(DecodeErrorKind::BadDynamic("missing \"type\"".into())));
        };
        let Some(value) = value else {
            return Err(self.err(DecodeErrorKind::BadDynamic("missing \"value\"".into())));
        };
        let v = self.value(value, &ty, depth + 1)?;
        Ok(Value::Dynamic(Box::new(ty), Box::new(v)))
    }
}

struct Encoder {
    out: String,
    path: AttributePath,
}

impl Encoder {
    fn err(&self, kind: EncodeErrorKind) -> EncodeError {
        EncodeError {
            path: self.path.clone(),
            kind,
        }
    }

    fn value(&mut self, v: &Value, ty: &Type, depth: usize) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(EncodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        if let Value::Unknown(_) = v {
            return Err(self.err(EncodeErrorKind::UnknownInJson));
        }
        if *ty == Type::Dynamic {
            return match v {
                Value::Null => {
                    self.out.push_str("null");
                    Ok(())
                }
                Value::Dynamic(inner_ty, inner) => {
                    self.out.push_str("{\"value\":");
                    self.value(inner, inner_ty, depth + 1)?;
                    self.out.push_str(",\"type\":");
                    inner_ty.write_json(&mut self.out);
                    self.out.push('}');
                    Ok(())
                }
                _ => Err(self.err(EncodeErrorKind::DynamicWithoutType)),
            };
        }
        match (ty, v) {
            (_, Value::Null) => self.out.push_str("null"),
            (_, Value::Dynamic(inner_ty, inner)) if **inner_ty == *ty => {
                return self.value(inner, ty, depth + 1);
            }
            (Type::Bool, Value::Bool(b)) => self.out.push_str(if *b { "true" } else { "false" }),
            (Type::Number, Value::Number(n)) => self.out.push_str(&n.to_string()),
            (Type::String, Value::String(s)) => write_json_string(s, &mut self.out),
            (Type::List(elem), Value::List(elems)) | (Type::Set(elem), Value::Set(elems)) => {
                self.out.push('[');
                for (i, e) in elems.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    self.value(e, elem, depth + 1)?;
                    self.path.pop();
                }
                self.out.push(']');
            }
            (Type::Map(elem), Value::Map(elems)) => {
                self.out.push('{');
                for (i, (k, e)) in elems.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    write_json_string(k, &mut self.out);
                    self.out.push(':');
                    self.path.push(PathStep::ElementKeyString(k.clone()));
                    self.value(e, elem, depth + 1)?;
                    self.path.pop();
                }
                self.out.push('}');
            }
            (Type::Object { attrs, .. }, Value::Object(vals)) => {
                if let Some(extra) = vals.keys().find(|k| !attrs.contains_key(*k)) {
                    return Err(self.err(EncodeErrorKind::UnsupportedAttribute(extra.clone())));
                }
                self.out.push('{');
                for (i, (name, aty)) in attrs.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    write_json_string(name, &mut self.out);
                    self.out.push(':');
                    self.path.push(PathStep::Attribute(name.clone()));
                    self.value(vals.get(name).unwrap_or(&Value::Null), aty, depth + 1)?;
                    self.path.pop();
                }
                self.out.push('}');
            }
            (Type::Tuple(etys), Value::Tuple(elems)) => {
                if etys.len() != elems.len() {
                    return Err(self.err(EncodeErrorKind::TupleLength {
                        expected: etys.len(),
                        found: elems.len(),
                    }));
                }
                self.out.push('[');
                for (i, (e, ety)) in elems.iter().zip(etys).enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    self.value(e, ety, depth + 1)?;
                    self.path.pop();
                }
                self.out.push(']');
            }
            _ => {
                return Err(self.err(EncodeErrorKind::Mismatch {
                    expected: ty.to_string(),
                    found: v.kind_name(),
                }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::error::DecodeErrorKind as K;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap()
    }

    fn cluster_type() -> Type {
        Type::object([
            ("id", Type::String),
            ("size", Type::Number),
            ("tags", Type::map(Type::String)),
            ("subnet_ids", Type::list(Type::String)),
            ("ports", Type::set(Type::Number)),
            ("extra", Type::Dynamic),
        ])
    }

    #[test]
    fn encodes_like_go_cty_and_back() {
        let ty = cluster_type();
        let v = Value::object([
            ("id", Value::string("c-1")),
            (
                "size",
                Value::Number(n("123456789012345678901234567890.000000000000000001")),
            ),
            ("tags", Value::map([("env", Value::string("prod"))])),
            (
                "subnet_ids",
                Value::list([Value::string("a"), Value::string("b")]),
            ),
            (
                "ports",
                Value::set([Value::number_i64(3306), Value::Number(n("0.1"))]),
            ),
            (
                "extra",
                Value::dynamic(Type::list(Type::Bool), Value::list([Value::bool(true)])),
            ),
        ]);
        let want = r#"{"extra":{"value":[true],"type":["list","bool"]},"id":"c-1","ports":[0.1,3306],"size":123456789012345678901234567890.000000000000000001,"subnet_ids":["a","b"],"tags":{"env":"prod"}}"#;
        assert_eq!(encode_string(&v, &ty).unwrap(), want);
        assert_eq!(decode(want.as_bytes(), &ty).unwrap(), v);
    }

    #[test]
    fn numbers_keep_every_digit() {
        for text in [
            "123456789012345678901234567890",
            "0.1",
            "-1e-30",
            "9007199254740993",
        ] {
            let v = decode(text.as_bytes(), &Type::Number).unwrap();
            assert_eq!(v, Value::Number(n(text)), "{text}");
        }
        assert_eq!(
            encode_string(&Value::Number(n("9007199254740993")), &Type::Number).unwrap(),
            "9007199254740993"
        );
        assert_eq!(
            encode_string(&Value::Number(n("1e3")), &Type::Number).unwrap(),
            "1000"
        );
    }

    #[test]
    fn go_ctys_leniencies() {
        assert_eq!(
            decode(br#""12.5""#, &Type::Number).unwrap(),
            Value::Number(n("12.5"))
        );
        assert_eq!(
            decode(b"12.50", &Type::String).unwrap(),
            Value::string("12.50")
        );
        assert_eq!(
            decode(b"true", &Type::String).unwrap(),
            Value::string("true")
        );
        assert_eq!(
            decode(br#""false""#, &Type::Bool).unwrap(),
            Value::bool(false)
        );
        let ty = Type::object([("a", Type::String), ("b", Type::Bool)]);
        assert_eq!(
            decode(br#"{"a":"x"}"#, &ty).unwrap(),
            Value::object([("a", Value::string("x")), ("b", Value::Null)])
        );
        assert_eq!(decode(b"null", &Type::Dynamic).unwrap(), Value::Null);
        assert_eq!(
            decode(br#"{"type":"number","value":null}"#, &Type::Dynamic).unwrap(),
            Value::dynamic(Type::Number, Value::Null)
        );
    }

    #[test]
    fn state_decoding_drops_removed_attributes_at_any_depth() {
        let ty = Type::object([("a", Type::list(Type::object([("b", Type::Bool)])))]);
        let raw = br#"{"a":[{"b":true,"old":1}],"gone":"x"}"#;
        let want = Value::object([(
            "a",
            Value::list([Value::object([("b", Value::bool(true))])]),
        )]);
        assert_eq!(decode_state(raw, &ty).unwrap(), want);
        let e = decode(raw, &ty).unwrap_err();
        assert_eq!(e.path.to_string(), "a[0]");
        assert_eq!(e.kind, K::UnsupportedAttribute("old".into()));
    }

    #[test]
    fn errors_say_what_and_where() {
        let ty = Type::object([("a", Type::object([("b", Type::list(Type::Number))]))]);
        let e = decode(br#"{"a":{"b":[1,"x"]}}"#, &ty).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"at a.b[1]: invalid number: "x" is not a decimal number"#
        );
        let e = decode(br#"{"a":{"b":{}}}"#, &ty).unwrap_err();
        assert_eq!(e.to_string(), "at a.b: list is required, found object");
        let e = decode(br#"{"a":"#, &ty).unwrap_err();
        assert!(matches!(e.kind, K::Malformed(_)), "{e}");
        let e = decode(b"1 2", &Type::Number).unwrap_err();
        assert!(matches!(e.kind, K::Malformed(_)), "{e}");
        let e = decode(b"[1]", &Type::Tuple(vec![Type::Number, Type::Number])).unwrap_err();
        assert_eq!(
            e.kind,
            K::TupleLength {
                expected: 2,
                found: 1
            }
        );
        for bad in [
            &br#"{"value":1}"#[..],
            br#"{"type":"number"}"#,
            br#"{"type":"number","value":1,"x":2}"#,
            br#"{"type":"nope","value":1}"#,
            b"1",
        ] {
            assert!(
                decode(bad, &Type::Dynamic).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = decode(b"1e99999", &Type::Number).unwrap_err();
        assert!(matches!(
            e.kind,
            K::BadNumber(NumberError::ExponentTooLarge)
        ));
    }

    #[test]
    fn unknown_values_cannot_be_written() {
        let ty = Type::object([("ids", Type::list(Type::String))]);
        let v = Value::object([("ids", Value::list([Value::string("a"), Value::unknown()]))]);
        let e = encode(&v, &ty).unwrap_err();
        assert_eq!(
            e.to_string(),
            "at ids[1]: value is not known; JSON cannot carry unknown values"
        );
    }
}
