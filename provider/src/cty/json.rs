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
