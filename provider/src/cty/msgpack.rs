//! go-cty's msgpack encoding of values (`DynamicValue.msgpack`): nil is null, extension values
//! are unknowns (code 0x0c with a map of refinements, or any one-byte extension for a plain
//! unknown), values in dynamic positions are `[type JSON bytes, value]`, objects are maps keyed
//! by attribute name, and numbers are the shortest exact form: int, then float64 for
//! non-integers, then a decimal string.
//!
//! The decoder reads straight from the slice: every length prefix is checked against the bytes
//! that remain before anything is allocated, and nesting is bounded by `MAX_DEPTH`.

use std::collections::BTreeMap;

use super::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, MAX_DEPTH};
use super::path::{AttributePath, PathStep};
use super::value::{Number, Refinement, Type, Value, canonicalize_set};

/// Extension type go-cty uses for an unknown with refinements.
const REFINED_UNKNOWN_EXT: i8 = 0x0c;
/// go-cty refuses refinement payloads larger than this.
const MAX_REFINEMENT_LEN: usize = 1024;
/// go-cty cuts string prefix refinements to below this many bytes.
const MAX_PREFIX_LEN: usize = 256;

const KEY_NULLNESS: i128 = 1;
const KEY_STRING_PREFIX: i128 = 2;
const KEY_NUMBER_MIN: i128 = 3;
const KEY_NUMBER_MAX: i128 = 4;
const KEY_LENGTH_MIN: i128 = 5;
const KEY_LENGTH_MAX: i128 = 6;

/// Decodes msgpack `bytes` as a value of type `ty`. The whole input must be one value.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, DecodeError> {
    let mut d = Decoder {
        buf: bytes,
        pos: 0,
        base: 0,
        path: AttributePath::root(),
    };
    let v = d.value(ty, 0)?;
    if d.pos < bytes.len() {
        return Err(d.err(DecodeErrorKind::TrailingBytes(bytes.len() - d.pos)));
    }
    Ok(v)
}

/// Encodes `v` as a value of type `ty`, byte for byte as go-cty's `msgpack.Marshal` would.
/// Object attributes missing from `v` are written as null.
pub fn encode(v: &Value, ty: &Type) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder {
        out: Vec::new(),
        path: AttributePath::root(),
    };
    e.value(v, ty, 0)?;
    Ok(e.out)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole input (refinement payloads are decoded from a sub-slice).
    base: usize,
    path: AttributePath,
}

fn is_ext(marker: u8) -> bool {
    matches!(marker, 0xc7..=0xc9 | 0xd4..=0xd8)
}

/// The msgpack kind a marker starts, for "X is required, found Y" messages.
fn kind_of(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "integer",
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "array",
        0xa0..=0xbf | 0xd9..=0xdb => "string",
        0xc0 => "nil",
        0xc1 => "reserved byte 0xc1",
        0xc2 | 0xc3 => "bool",
        0xc4..=0xc6 => "binary",
        0xc7..=0xc9 | 0xd4..=0xd8 => "extension",
        0xca | 0xcb => "float",
    }
}

impl<'a> Decoder<'a> {
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            path: self.path.clone(),
            offset: Some(self.base + self.pos),
            kind,
        }
    }

    fn wrong(&self, expected: impl Into<String>, marker: u8) -> DecodeError {
        self.err(DecodeErrorKind::WrongType {
            expected: expected.into(),
            found: kind_of(marker),
        })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(DecodeErrorKind::Truncated))
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(DecodeErrorKind::Truncated));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len_u8(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(self.byte()?))
    }

    fn len_u16(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len_u32(&mut self) -> Result<usize, DecodeError> {
        let n = u32::from_be_bytes(self.be()?);
        usize::try_from(n).map_err(|_| self.err(DecodeErrorKind::Truncated))
    }

    /// Capacity to reserve for `n` items of at least one byte each.
    fn capacity(&self, n: usize) -> usize {
        n.min(self.remaining())
    }

    fn array_len(&mut self, expected: &str) -> Result<usize, DecodeError> {
        let m = self.peek()?;
        let n = match m {
            0x90..=0x9f => {
                self.pos += 1;
                usize::from(m & 0x0f)
            }
            0xdc => {
                self.pos += 1;
                self.len_u16()?
            }
            0xdd => {
                self.pos += 1;
                self.len_u32()?
            }
            _ => return Err(self.wrong(expected, m)),
        };
        Ok(n)
    }

    fn map_len(&mut self, expected: &str) -> Result<usize, DecodeError> {
        let m = self.peek()?;
        let n = match m {
            0x80..=0x8f => {
                self.pos += 1;
                usize::from(m & 0x0f)
            }
            0xde => {
                self.pos += 1;
                self.len_u16()?
            }
            0xdf => {
                self.pos += 1;
                self.len_u32()?
            }
            _ => return Err(self.wrong(expected, m)),
        };
        Ok(n)
    }

    /// A str or bin item's raw bytes (go-cty's decoder takes either for strings and bytes).
    fn raw_str(&mut self, expected: &str) -> Result<&'a [u8], DecodeError> {
        let m = self.peek()?;
        let n = match m {
            0xa0..=0xbf => {
                self.pos += 1;
                usize::from(m & 0x1f)
            }
            0xd9 | 0xc4 => {
                self.pos += 1;
                self.len_u8()?
            }
            0xda | 0xc5 => {
                self.pos += 1;
                self.len_u16()?
            }
            0xdb | 0xc6 => {
                self.pos += 1;
                self.len_u32()?
            }
            _ => return Err(self.wrong(expected, m)),
        };
        self.take(n)
    }

    fn str(&mut self, expected: &str) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let raw = self.raw_str(expected)?;
        std::str::from_utf8(raw).map_err(|_| {
            let mut e = self.err(DecodeErrorKind::Malformed(
                "string is not valid UTF-8".into(),
            ));
            e.offset = Some(self.base + start);
            e
        })
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.peek()? {
            0xc2 => {
                self.pos += 1;
                Ok(false)
            }
            0xc3 => {
                self.pos += 1;
                Ok(true)
            }
            m => Err(self.wrong("bool", m)),
        }
    }

    /// Any msgpack integer, widened so that every encoding fits.
    fn integer(&mut self, expected: &str) -> Result<i128, DecodeError> {
        let m = self.peek()?;
        let v = match m {
            0x00..=0x7f => i128::from(m),
            0xe0..=0xff => i128::from(m as i8),
            0xcc..=0xd3 => {
                self.pos += 1;
                let v = match m {
                    0xcc => i128::from(self.byte()?),
                    0xcd => i128::from(u16::from_be_bytes(self.be()?)),
                    0xce => i128::from(u32::from_be_bytes(self.be()?)),
                    0xcf => i128::from(u64::from_be_bytes(self.be()?)),
                    0xd0 => i128::from(self.byte()? as i8),
                    0xd1 => i128::from(i16::from_be_bytes(self.be()?)),
                    0xd2 => i128::from(i32::from_be_bytes(self.be()?)),
                    _ => i128::from(i64::from_be_bytes(self.be()?)),
                };
                return Ok(v);
            }
            _ => return Err(self.wrong(expected, m)),
        };
        self.pos += 1;
        Ok(v)
    }

    /// A number in any form go-cty accepts: int, uint, float32/64 or a decimal string.
    fn number(&mut self) -> Result<Number, DecodeError> {
        let start = self.pos;
        let m = self.peek()?;
        let at_start = |d: &Self, kind| {
            let mut e = d.err(kind);
            e.offset = Some(d.base + start);
            e
        };
        match m {
            0xca | 0xcb => {
                self.pos += 1;
                let f = if m == 0xca {
                    f64::from(f32::from_be_bytes(self.be()?))
                } else {
                    f64::from_be_bytes(self.be()?)
                };
                Number::from_f64(f).ok_or_else(|| {
                    at_start(
                        self,
                        DecodeErrorKind::BadNumber(super::number::NumberError::NotFinite),
                    )
                })
            }
            0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
                let s = self.str("number")?;
                Number::parse(s).map_err(|e| at_start(self, e.into()))
            }
            _ => {
                let i = self.integer("number")?;
                // i128 holds every msgpack integer; i64/u64 cover its range.
                Ok(match i64::try_from(i) {
                    Ok(v) => Number::from(v),
                    Err(_) => Number::from(u64::try_from(i).unwrap_or(u64::MAX)),
                })
            }
        }
    }

    /// Skips one item of any kind (refinement values we do not know).
    fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        let m = self.byte()?;
        let (items, bytes) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (2 * usize::from(m & 0x0f), 0),
            0x90..=0x9f => (usize::from(m & 0x0f), 0),
            0xa0..=0xbf => (0, usize::from(m & 0x1f)),
            0xc1 => {
                self.pos -= 1;
                return Err(self.err(DecodeErrorKind::Malformed("reserved byte 0xc1".into())));
            }
            0xc4 | 0xd9 => (0, self.len_u8()?),
            0xc5 | 0xda => (0, self.len_u16()?),
            0xc6 | 0xdb => (0, self.len_u32()?),
            0xc7 => (0, self.len_u8()? + 1),
            0xc8 => (0, self.len_u16()? + 1),
            0xc9 => (0, self.len_u32()?.saturating_add(1)),
            0xca => (0, 4),
            0xcb => (0, 8),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xce | 0xd2 => (0, 4),
            0xcf | 0xd3 => (0, 8),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xdc => (self.len_u16()?, 0),
            0xdd => (self.len_u32()?, 0),
            0xde => (2 * self.len_u16()?, 0),
            0xdf => (self.len_u32()?.saturating_mul(2), 0),
        };
        self.take(bytes)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, ty: &Type, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        let m = self.peek()?;
        if is_ext(m) {
            return self.unknown(ty);
        }
        if *ty == Type::Dynamic {
            return self.dynamic(depth);
        }
        if m == 0xc0 {
            self.pos += 1;
            return Ok(Value::Null);
        }
        match ty {
            Type::Bool => self.bool().map(Value::Bool),
            Type::Number => self.number().map(Value::Number),
            Type::String => Ok(Value::String(self.str("string")?.to_owned())),
            Type::List(elem) => self.sequence(elem, false, depth),
            Type::Set(elem) => self.sequence(elem, true, depth),
            Type::Map(elem) => self.map(elem, depth),
            Type::Object { attrs, .. } => self.object(attrs, depth),
            Type::Tuple(elems) => self.tuple(elems, depth),
            Type::Dynamic => self.dynamic(depth),
        }
    }

    // The container readers are separate functions so that the recursive `value` keeps a small
    // stack frame: nesting depth is bounded, but threads' stacks are too.
    #[inline(never)]
    fn sequence(&mut self, elem: &Type, set: bool, depth: usize) -> Result<Value, DecodeError> {
        let n = self.array_len(if set { "set" } else { "list" })?;
        let mut elems = Vec::with_capacity(self.capacity(n));
        for i in 0..n {
            self.path.push(PathStep::ElementKeyInt(i as i64));
            elems.push(self.value(elem, depth + 1)?);
            self.path.pop();
        }
        if set {
            canonicalize_set(&mut elems);
            Ok(Value::Set(elems))
        } else {
            Ok(Value::List(elems))
        }
    }

    #[inline(never)]
    fn map(&mut self, elem: &Type, depth: usize) -> Result<Value, DecodeError> {
        let n = self.map_len("map")?;
        let mut elems = BTreeMap::new();
        for _ in 0..n {
            let key = self.str("map key string")?.to_owned();
            self.path.push(PathStep::ElementKeyString(key));
            let v = self.value(elem, depth + 1)?;
            if let Some(PathStep::ElementKeyString(key)) = self.path.pop() {
                elems.insert(key, v);
            }
        }
        Ok(Value::Map(elems))
    }

    #[inline(never)]
    fn object(
        &mut self,
        attrs: &BTreeMap<String, Type>,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        let n = self.map_len("object")?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let start = self.pos;
            let key = self.str("attribute name string")?;
            let Some(aty) = attrs.get(key) else {
                let mut e = self.err(DecodeErrorKind::UnsupportedAttribute(key.to_owned()));
                e.offset = Some(self.base + start);
                return Err(e);
            };
            self.path.push(PathStep::Attribute(key.to_owned()));
            let v = self.value(aty, depth + 1)?;
            if let Some(PathStep::Attribute(key)) = self.path.pop() {
                out.insert(key, v);
            }
        }
        for name in attrs.keys() {
            if !out.contains_key(name) {
                out.insert(name.clone(), Value::Null);
            }
        }
        Ok(Value::Object(out))
    }

    #[inline(never)]
    fn tuple(&mut self, elems: &[Type], depth: usize) -> Result<Value, DecodeError> {
        let start = self.pos;
        let n = self.array_len("tuple")?;
        if n != elems.len() {
            let mut e = self.err(DecodeErrorKind::TupleLength {
                expected: elems.len(),
                found: n,
            });
            e.offset = Some(self.base + start);
            return Err(e);
        }
        let mut out = Vec::with_capacity(n);
        for (i, ety) in elems.iter().enumerate() {
            self.path.push(PathStep::ElementKeyInt(i as i64));
            out.push(self.value(ety, depth + 1)?);
            self.path.pop();
        }
        Ok(Value::Tuple(out))
    }

    #[inline(never)]
    fn dynamic(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            return Ok(Value::Null);
        }
        let start = self.pos;
        let n = self.array_len("dynamic value ([type, value] array)")?;
        if n != 2 {
            let mut e = self.err(DecodeErrorKind::BadDynamic(format!(
                "array has {n} elements, 2 are required"
            )));
            e.offset = Some(self.base + start);
            return Err(e);
        }
        let type_start = self.pos;
        let type_json = self.raw_str("type description bytes")?;
        let ty = Type::from_json(type_json).map_err(|te| {
            let mut e = self.err(te.into());
            e.offset = Some(self.base + type_start);
            e
        })?;
        let v = self.value(&ty, depth + 1)?;
        Ok(Value::Dynamic(Box::new(ty), Box::new(v)))
    }

    fn unknown(&mut self, ty: &Type) -> Result<Value, DecodeError> {
        let start = self.pos;
        let at_start = |d: &Self, msg: String| {
            let mut e = d.err(DecodeErrorKind::BadExtension(msg));
            e.offset = Some(d.base + start);
            e
        };
        let m = self.byte()?;
        let (code, len) = match m {
            0xd4..=0xd8 => {
                let code = self.byte()? as i8;
                (code, 1usize << (m - 0xd4))
            }
            0xc7 => {
                let len = self.len_u8()?;
                (self.byte()? as i8, len)
            }
            0xc8 => {
                let len = self.len_u16()?;
                (self.byte()? as i8, len)
            }
            _ => {
                let len = self.len_u32()?;
                (self.byte()? as i8, len)
            }
        };
        if len <= 1 {
            // go-cty writes a plain unknown as a one-byte extension and reads any extension of
            // at most one byte as one, whatever its type code.
            self.take(len)?;
            return Ok(Value::unknown());
        }
        if code != REFINED_UNKNOWN_EXT {
            return Err(at_start(
                self,
                format!("unsupported extension type {code} with length {len}"),
            ));
        }
        if len > MAX_REFINEMENT_LEN {
            return Err(at_start(
                self,
                format!("refinements of {len} bytes exceed the {MAX_REFINEMENT_LEN}-byte limit"),
            ));
        }
        let body_offset = self.base + self.pos;
        let body = self.take(len)?;
        if *ty == Type::Dynamic {
            // go-cty ignores refinements of a dynamic unknown; so do we.
            return Ok(Value::unknown());
        }
        let mut sub = Decoder {
            buf: body,
            pos: 0,
            base: body_offset,
            path: self.path.clone(),
        };
        sub.refinements(ty).map_err(|e| DecodeError {
            kind: DecodeErrorKind::BadExtension(format!("refinements: {}", e.kind)),
            ..e
        })
    }

    fn refinements(&mut self, ty: &Type) -> Result<Value, DecodeError> {
        let n = self.map_len("refinement map")?;
        let mut r = Refinement::default();
        let mut null = false;
        for _ in 0..n {
            let key = self.integer("integer refinement key")?;
            match key {
                KEY_NULLNESS => {
                    // `true` means "definitely null", which go-cty turns into a known null.
                    if self.bool()? {
                        null = true;
                    } else {
                        r.nullable = Some(false);
                    }
                }
                KEY_STRING_PREFIX if *ty == Type::String => {
                    let prefix = self.str("string prefix")?;
                    if !prefix.is_empty() {
                        r.string_prefix = Some(prefix.to_owned());
                    }
                }
                KEY_NUMBER_MIN | KEY_NUMBER_MAX if *ty == Type::Number => {
                    let bound_ty = Type::Tuple(vec![Type::Number, Type::Bool]);
                    let bound = match self.value(&bound_ty, 0)? {
                        Value::Tuple(t) => match t.as_slice() {
                            [Value::Number(n), Value::Bool(inc)] => (n.clone(), *inc),
                            _ => {
                                return Err(self.err(DecodeErrorKind::Malformed(
                                    "number bound must be a known [number, bool]".into(),
                                )));
                            }
                        },
                        _ => {
                            return Err(self.err(DecodeErrorKind::Malformed(
                                "number bound must be a known [number, bool]".into(),
                            )));
                        }
                    };
                    if key == KEY_NUMBER_MIN {
                        r.number_lower = Some(bound);
                    } else {
                        r.number_upper = Some(bound);
                    }
                }
                KEY_LENGTH_MIN | KEY_LENGTH_MAX if ty.is_collection() => {
                    let n = self.integer("integer length bound")?;
                    // A negative bound says nothing a length does not already say.
                    if let Ok(n) = u64::try_from(n) {
                        if key == KEY_LENGTH_MIN {
                            r.length_lower = (n > 0).then_some(n);
                        } else {
                            r.length_upper = Some(n);
                        }
                    }
                }
                // Keys we do not know, or that do not apply to this type: a newer Terraform
                // may send them, and they only ever narrow an unknown.
                _ => self.skip(0)?,
            }
        }
        // Bytes after the map are reserved by go-cty for future use and ignored.
        if null {
            Ok(Value::Null)
        } else {
            Ok(Value::Unknown(r))
        }
    }
}

struct Encoder {
    out: Vec<u8>,
    path: AttributePath,
}

impl Encoder {
    fn err(&self, kind: EncodeErrorKind) -> EncodeError {
        EncodeError {
            path: self.path.clone(),
            kind,
        }
    }

    fn mismatch(&self, ty: &Type, v: &Value) -> EncodeError {
        self.err(EncodeErrorKind::Mismatch {
            expected: ty.to_string(),
            found: v.kind_name(),
        })
    }

    fn value(&mut self, v: &Value, ty: &Type, depth: usize) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(EncodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        if *ty == Type::Dynamic {
            return match v {
                Value::Null => {
                    self.out.push(0xc0);
                    Ok(())
                }
                Value::Unknown(_) => {
                    write_plain_unknown(&mut self.out);
                    Ok(())
                }
                Value::Dynamic(inner_ty, inner) => {
                    write_array_len(&mut self.out, 2);
                    write_bin(&mut self.out, &inner_ty.to_json());
                    self.value(inner, inner_ty, depth + 1)
                }
                _ => Err(self.err(EncodeErrorKind::DynamicWithoutType)),
            };
        }
        match (ty, v) {
            (_, Value::Null) => self.out.push(0xc0),
            (_, Value::Unknown(r)) => write_unknown(&mut self.out, r, ty),
            (_, Value::Dynamic(inner_ty, inner)) if **inner_ty == *ty => {
                return self.value(inner, ty, depth + 1);
            }
            (Type::Bool, Value::Bool(b)) => self.out.push(if *b { 0xc3 } else { 0xc2 }),
            (Type::Number, Value::Number(n)) => write_number(&mut self.out, n),
            (Type::String, Value::String(s)) => write_str(&mut self.out, s),
            (Type::List(elem), Value::List(elems)) | (Type::Set(elem), Value::Set(elems)) => {
                write_array_len(&mut self.out, elems.len());
                for (i, e) in elems.iter().enumerate() {
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    self.value(e, elem, depth + 1)?;
                    self.path.pop();
                }
            }
            (Type::Map(elem), Value::Map(elems)) => {
                write_map_len(&mut self.out, elems.len());
                for (k, e) in elems {
                    write_str(&mut self.out, k);
                    self.path.push(PathStep::ElementKeyString(k.clone()));
                    self.value(e, elem, depth + 1)?;
                    self.path.pop();
                }
            }
            (Type::Object { attrs, .. }, Value::Object(vals)) => {
                if let Some(extra) = vals.keys().find(|k| !attrs.contains_key(*k)) {
                    return Err(self.err(EncodeErrorKind::UnsupportedAttribute(extra.clone())));
                }
                write_map_len(&mut self.out, attrs.len());
                for (name, aty) in attrs {
                    write_str(&mut self.out, name);
                    self.path.push(PathStep::Attribute(name.clone()));
                    self.value(vals.get(name).unwrap_or(&Value::Null), aty, depth + 1)?;
                    self.path.pop();
                }
            }
            (Type::Tuple(etys), Value::Tuple(elems)) => {
                if etys.len() != elems.len() {
                    return Err(self.err(EncodeErrorKind::TupleLength {
                        expected: etys.len(),
                        found: elems.len(),
                    }));
                }
                write_array_len(&mut self.out, elems.len());
                for (i, (e, ety)) in elems.iter().zip(etys).enumerate() {
                    self.path.push(PathStep::ElementKeyInt(i as i64));
                    self.value(e, ety, depth + 1)?;
                    self.path.pop();
                }
            }
            _ => return Err(self.mismatch(ty, v)),
        }
        Ok(())
    }
}

fn write_plain_unknown(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xd4, 0, 0]);
}

/// The refinements go-cty writes for `ty` (its `marshalUnknownValue`): nullness first, then
/// number bounds, string prefix or length bounds, whichever apply to the type.
fn write_unknown(out: &mut Vec<u8>, r: &Refinement, ty: &Type) {
    let mut body = Vec::new();
    let mut entries = 0;
    if r.is_not_null() {
        entries += 1;
        write_int(&mut body, KEY_NULLNESS as i64);
        body.push(0xc2);
    }
    match ty {
        Type::Number => {
            for (key, bound) in [
                (KEY_NUMBER_MIN, &r.number_lower),
                (KEY_NUMBER_MAX, &r.number_upper),
            ] {
                if let Some((n, inclusive)) = bound {
                    entries += 1;
                    write_int(&mut body, key as i64);
                    write_array_len(&mut body, 2);
                    write_number(&mut body, n);
                    body.push(if *inclusive { 0xc3 } else { 0xc2 });
                }
            }
        }
        Type::String => {
            if let Some(prefix) = r.string_prefix.as_deref().filter(|p| !p.is_empty()) {
                let mut end = prefix.len().min(MAX_PREFIX_LEN - 1);
                while !prefix.is_char_boundary(end) {
                    end -= 1;
                }
                entries += 1;
                write_int(&mut body, KEY_STRING_PREFIX as i64);
                write_str(&mut body, &prefix[..end]);
            }
        }
        _ if ty.is_collection() => {
            if let Some(n) = r.length_lower.filter(|n| *n > 0) {
                entries += 1;
                write_int(&mut body, KEY_LENGTH_MIN as i64);
                write_uint(&mut body, n);
            }
            if let Some(n) = r.length_upper {
                entries += 1;
                write_int(&mut body, KEY_LENGTH_MAX as i64);
                write_uint(&mut body, n);
            }
        }
        _ => {}
    }
    if entries == 0 {
        write_plain_unknown(out);
        return;
    }
    let mut payload = Vec::with_capacity(body.len() + 1);
    write_map_len(&mut payload, entries);
    payload.extend_from_slice(&body);
    write_ext_header(out, REFINED_UNKNOWN_EXT, payload.len());
    out.extend_from_slice(&payload);
}

/// go-cty's rule: an int64 if exact, else a float64 if exact and not an integer, else the
/// decimal text.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.to_i64() {
        write_int(out, i);
    } else if let Some(f) = (!n.is_integer()).then(|| n.to_f64_exact()).flatten() {
        out.push(0xcb);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        write_str(out, &n.to_string());
    }
}

/// The compact int encoding of go-cty's encoder: non-negative values as the smallest
/// fixint/uint, negative ones as the smallest negative fixint/int.
fn write_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        write_uint(out, n as u64);
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.push(0xd0);
        out.push(n as i8 as u8);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n <= 0x7f {
        out.push(n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.push(0xcc);
        out.push(n as u8);
    } else if n <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= usize::from(u8::MAX) {
        out.push(0xd9);
        out.push(n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n <= usize::from(u8::MAX) {
        out.push(0xc4);
        out.push(n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn write_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_ext_header(out: &mut Vec<u8>, code: i8, len: usize) {
    match len {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ if len <= usize::from(u8::MAX) => {
            out.push(0xc7);
            out.push(len as u8);
        }
        _ if len <= usize::from(u16::MAX) => {
            out.push(0xc8);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc9);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.push(code as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::error::DecodeErrorKind as K;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap()
    }

    /// Encodes `v` and checks the bytes, then decodes them back to `v`.
    fn both_ways(v: &Value, ty: &Type, bytes: &[u8]) {
        assert_eq!(encode(v, ty).unwrap(), bytes, "encoding {v:?}");
        assert_eq!(&decode(bytes, ty).unwrap(), v, "decoding {bytes:02x?}");
    }

    #[test]
    fn refined_unknown_string_with_prefix_and_not_null() {
        // go-cty: ext8, length 9, type 0x0c; payload {1: false, 2: "ami-"}.
        let bytes = [
            0xc7, 0x09, 0x0c, 0x82, 0x01, 0xc2, 0x02, 0xa4, b'a', b'm', b'i', b'-',
        ];
        let v = Value::Unknown(Refinement::not_null().with_string_prefix("ami-"));
        both_ways(&v, &Type::String, &bytes);
        assert!(!v.is_known());
    }

    #[test]
    fn plain_unknown_and_its_variants() {
        both_ways(&Value::unknown(), &Type::String, &[0xd4, 0, 0]);
        // Refinements that do not apply to the type are not written.
        let r = Refinement::default().with_string_prefix("x");
        assert_eq!(
            encode(&Value::Unknown(r), &Type::Number).unwrap(),
            [0xd4, 0, 0]
        );
        // A dynamic unknown never carries refinements.
        assert_eq!(
            encode(&Value::unknown_not_null(), &Type::Dynamic).unwrap(),
            [0xd4, 0, 0]
        );
        // Any extension of at most one byte is a plain unknown, whatever its code.
        for bytes in [
            &[0xd4, 0x05, 0xff][..],
            &[0xc7, 0x00, 0x00],
            &[0xc7, 0x01, 0x09, 0x00],
        ] {
            assert_eq!(
                decode(bytes, &Type::Bool).unwrap(),
                Value::unknown(),
                "{bytes:02x?}"
            );
        }
        // Refinements on a dynamic unknown are read and dropped.
        let bytes = [0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2];
        assert_eq!(decode(&bytes, &Type::Dynamic).unwrap(), Value::unknown());
    }

    #[test]
    fn number_and_length_refinements() {
        let r = Refinement::not_null()
            .with_number_lower(n("0"), true)
            .with_number_upper(n("10.5"), false);
        let mut bytes = vec![
            0xc7, 0x13, 0x0c, 0x83, 0x01, 0xc2, 0x03, 0x92, 0x00, 0xc3, 0x04,
        ];
        bytes.extend_from_slice(&[0x92, 0xcb]);
        bytes.extend_from_slice(&10.5f64.to_be_bytes());
        bytes.push(0xc2);
        both_ways(&Value::Unknown(r), &Type::Number, &bytes);

        let r = Refinement::default().with_length_bounds(Some(1), Some(300));
        let bytes = [0xc7, 0x07, 0x0c, 0x82, 0x05, 0x01, 0x06, 0xcd, 0x01, 0x2c];
        both_ways(&Value::Unknown(r), &Type::list(Type::String), &bytes);
        // A zero lower bound says nothing and is not written.
        let r = Refinement::default().with_length_bounds(Some(0), None);
        assert_eq!(
            encode(&Value::Unknown(r), &Type::set(Type::Bool)).unwrap(),
            [0xd4, 0, 0]
        );
    }

    #[test]
    fn unknown_and_inapplicable_refinement_keys_are_skipped() {
        // {7: [nil, {1: 2}], 2: "x", 1: false} for a number: key 7 is unknown, key 2 is for
        // strings; both are skipped.
        let bytes = [
            0xc7, 0x0b, 0x0c, 0x83, 0x07, 0x92, 0xc0, 0x81, 0x01, 0x02, 0x02, 0xa1, b'x', 0x01,
            0xc2,
        ];
        // Length of the payload above is 12, not 11: keep the header honest.
        let mut fixed = bytes.to_vec();
        fixed[1] = (fixed.len() - 3) as u8;
        assert_eq!(
            decode(&fixed, &Type::Number).unwrap(),
            Value::unknown_not_null()
        );
        // Nullness true collapses to a known null, as in go-cty.
        assert_eq!(
            decode(&[0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc3], &Type::String).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn numbers_use_go_ctys_forms() {
        let big = "123456789012345678901234567890";
        let mut bytes = vec![0xa0 | big.len() as u8];
        bytes.extend_from_slice(big.as_bytes());
        both_ways(&Value::Number(n(big)), &Type::Number, &bytes);
        // 0.1 has no exact float64: a string.
        both_ways(
            &Value::Number(n("0.1")),
            &Type::Number,
            &[0xa3, b'0', b'.', b'1'],
        );
        let mut half = vec![0xcb];
        half.extend_from_slice(&0.5f64.to_be_bytes());
        both_ways(&Value::Number(n("0.5")), &Type::Number, &half);
        // Integers beyond int64 are strings even when a float64 holds them exactly.
        let two_70 = "1180591620717411303424";
        let mut bytes = vec![0xa0 | two_70.len() as u8];
        bytes.extend_from_slice(two_70.as_bytes());
        both_ways(&Value::Number(n(two_70)), &Type::Number, &bytes);
        let ints: [(i64, &[u8]); 9] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-200, &[0xd1, 0xff, 0x38]),
            (65536, &[0xce, 0x00, 0x01, 0x00, 0x00]),
            (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (i, bytes) in ints {
            both_ways(&Value::number_i64(i), &Type::Number, bytes);
        }
        // Every form decodes: uint64 beyond int64, float32, a string with an exponent.
        let mut u = vec![0xcf];
        u.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode(&u, &Type::Number).unwrap().as_u64(), Some(u64::MAX));
        let mut f = vec![0xca];
        f.extend_from_slice(&1.25f32.to_be_bytes());
        assert_eq!(decode(&f, &Type::Number).unwrap(), Value::Number(n("1.25")));
        assert_eq!(
            decode(&[0xa4, b'1', b'e', b'3', b'0'], &Type::Number).unwrap(),
            Value::Number(n("1000000000000000000000000000000"))
        );
        let mut nan = vec![0xcb];
        nan.extend_from_slice(&f64::NAN.to_be_bytes());
        assert!(matches!(
            decode(&nan, &Type::Number).unwrap_err().kind,
            K::BadNumber(_)
        ));
    }

    #[test]
    fn objects_maps_sets_tuples_and_dynamic() {
        let ty = Type::object([("id", Type::String), ("n", Type::Number)]);
        let v = Value::object([("id", Value::string("x")), ("n", Value::Null)]);
        both_ways(
            &v,
            &ty,
            &[0x82, 0xa2, b'i', b'd', 0xa1, b'x', 0xa1, b'n', 0xc0],
        );
        // Missing attributes decode as null; encoding writes them as null.
        assert_eq!(
            decode(&[0x81, 0xa2, b'i', b'd', 0xa1, b'x'], &ty).unwrap(),
            v
        );
        assert_eq!(
            encode(&Value::object([("id", Value::string("x"))]), &ty).unwrap(),
            encode(&v, &ty).unwrap()
        );

        let set = Type::set(Type::String);
        let got = decode(&[0x93, 0xa1, b'b', 0xa1, b'a', 0xa1, b'b'], &set).unwrap();
        assert_eq!(
            got,
            Value::Set(vec![Value::string("a"), Value::string("b")])
        );

        let map = Type::map(Type::Bool);
        both_ways(
            &Value::map([("k", Value::bool(true))]),
            &map,
            &[0x81, 0xa1, b'k', 0xc3],
        );

        let tuple = Type::Tuple(vec![Type::String, Type::Bool]);
        both_ways(
            &Value::tuple([Value::string("a"), Value::bool(false)]),
            &tuple,
            &[0x92, 0xa1, b'a', 0xc2],
        );

        let mut dynamic = vec![0x92, 0xc4, 0x08];
        dynamic.extend_from_slice(b"\"string\"");
        dynamic.extend_from_slice(&[0xa2, b'h', b'i']);
        both_ways(
            &Value::dynamic(Type::String, Value::string("hi")),
            &Type::Dynamic,
            &dynamic,
        );
        both_ways(&Value::Null, &Type::Dynamic, &[0xc0]);
        // A typed null in a dynamic position keeps its type.
        let mut typed_null = vec![0x92, 0xc4, 0x08];
        typed_null.extend_from_slice(b"\"number\"");
        typed_null.push(0xc0);
        both_ways(
            &Value::dynamic(Type::Number, Value::Null),
            &Type::Dynamic,
            &typed_null,
        );
        // go-cty also accepts the type as a msgpack str.
        let mut as_str = vec![0x92, 0xa6];
        as_str.extend_from_slice(b"\"bool\"");
        as_str.push(0xc3);
        assert_eq!(
            decode(&as_str, &Type::Dynamic).unwrap(),
            Value::dynamic(Type::Bool, Value::bool(true))
        );
    }

    fn err(bytes: &[u8], ty: &Type) -> DecodeError {
        decode(bytes, ty).expect_err("decoding should fail")
    }

    #[test]
    fn errors_say_what_and_where() {
        let ty = Type::object([("subnet_ids", Type::list(Type::String))]);
        let mut bytes = vec![0x81, 0xaa];
        bytes.extend_from_slice(b"subnet_ids");
        bytes.extend_from_slice(&[0x92, 0xa1, b'a', 0xc3]);
        let e = err(&bytes, &ty);
        assert_eq!(e.path.to_string(), "subnet_ids[1]");
        assert_eq!(
            e.kind,
            K::WrongType {
                expected: "string".into(),
                found: "bool"
            }
        );
        assert_eq!(e.offset, Some(bytes.len() - 1));
        assert_eq!(
            e.to_string(),
            "at subnet_ids[1] (byte 15): string is required, found bool"
        );

        let truncated = &bytes[..bytes.len() - 1];
        let e = err(truncated, &ty);
        assert_eq!(
            (e.path.to_string(), e.kind),
            ("subnet_ids[1]".into(), K::Truncated)
        );

        assert_eq!(err(&[0x01, 0x02], &Type::Number).kind, K::TrailingBytes(1));
        assert_eq!(err(&[], &Type::Number).kind, K::Truncated);
        assert_eq!(
            err(&[0x81, 0xa1, b'z', 0xc0], &ty).kind,
            K::UnsupportedAttribute("z".into())
        );
        assert_eq!(
            err(&[0x91, 0xc0], &Type::Tuple(vec![Type::Bool, Type::Bool])).kind,
            K::TupleLength {
                expected: 2,
                found: 1
            }
        );
        assert!(matches!(
            err(&[0xd5, 0x05, 0, 0], &Type::Bool).kind,
            K::BadExtension(_)
        ));
        assert!(matches!(
            err(&[0xc7, 0x02, 0x0c, 0x81, 0x01], &Type::Bool).kind,
            K::BadExtension(_)
        ));
        let mut oversize = vec![0xc8, 0x04, 0x01, 0x0c];
        oversize.resize(4 + 1025, 0);
        assert!(matches!(
            err(&oversize, &Type::String).kind,
            K::BadExtension(_)
        ));
        assert!(matches!(
            err(&[0xa2, 0xff, 0xfe], &Type::String).kind,
            K::Malformed(_)
        ));
        assert!(matches!(
            err(&[0x92, 0xc4, 0x03, b'"', b'x', b'"', 0xc0], &Type::Dynamic).kind,
            K::BadType(_)
        ));
        assert!(matches!(
            err(&[0x91, 0xc0], &Type::Dynamic).kind,
            K::BadDynamic(_)
        ));
        assert!(matches!(
            err(&[0xc1], &Type::Bool).kind,
            K::WrongType {
                found: "reserved byte 0xc1",
                ..
            }
        ));
    }

    #[test]
    fn huge_length_prefixes_fail_without_allocating() {
        let list = Type::list(Type::String);
        assert_eq!(
            err(&[0xdd, 0xff, 0xff, 0xff, 0xff], &list).kind,
            K::Truncated
        );
        assert_eq!(
            err(&[0xdb, 0xff, 0xff, 0xff, 0xff], &Type::String).kind,
            K::Truncated
        );
        assert_eq!(
            err(&[0xdf, 0xff, 0xff, 0xff, 0xff], &Type::map(Type::Bool)).kind,
            K::Truncated
        );
        // An extension's length is checked before its body is read.
        assert!(matches!(
            err(&[0xc9, 0xff, 0xff, 0xff, 0xff, 0x0c], &Type::Bool).kind,
            K::BadExtension(_)
        ));
        assert_eq!(
            err(&[0xc9, 0x00, 0x00, 0x03, 0x00, 0x0c, 0x81], &Type::Bool).kind,
            K::Truncated
        );
    }

    #[test]
    fn deep_dynamic_nesting_is_refused() {
        let mut bytes = Vec::new();
        for _ in 0..(MAX_DEPTH + 10) {
            bytes.extend_from_slice(&[0x92, 0xc4, 0x09]);
            bytes.extend_from_slice(b"\"dynamic\"");
        }
        bytes.push(0xc0);
        assert_eq!(err(&bytes, &Type::Dynamic).kind, K::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn encode_checks_the_value_against_the_type() {
        let ty = Type::object([("a", Type::Bool)]);
        let e = encode(&Value::object([("a", Value::string("x"))]), &ty).unwrap_err();
        assert_eq!(e.to_string(), "at a: bool is required, found string");
        let e = encode(&Value::object([("b", Value::Null)]), &ty).unwrap_err();
        assert_eq!(e.kind, EncodeErrorKind::UnsupportedAttribute("b".into()));
        let e = encode(&Value::string("x"), &Type::Dynamic).unwrap_err();
        assert_eq!(e.kind, EncodeErrorKind::DynamicWithoutType);
        // A dynamic wrapper whose type is the position's type is looked through.
        assert_eq!(
            encode(&Value::dynamic(Type::Bool, Value::bool(true)), &Type::Bool).unwrap(),
            [0xc3]
        );
    }
}

#[cfg(test)]
mod stack_tests {
    use super::*;

    /// Decoding past the depth limit fits in a 1 MiB stack even in a debug build (threads get
    /// 2 MiB by default, tokio's workers too), so hostile nesting cannot overflow the stack.
    #[test]
    fn max_depth_fits_a_small_stack() {
        let mut bytes = Vec::new();
        for _ in 0..MAX_DEPTH + 10 {
            bytes.extend_from_slice(&[0x92, 0xc4, 0x09]);
            bytes.extend_from_slice(b"\"dynamic\"");
        }
        bytes.push(0xc0);
        let ty = Type::Dynamic;
        let handle = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || decode(&bytes, &ty).map(|_| ()))
            .unwrap();
        let result = handle.join().unwrap();
        assert_eq!(
            result.unwrap_err().kind,
            DecodeErrorKind::TooDeep(MAX_DEPTH)
        );
    }
}
