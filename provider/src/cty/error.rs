//! The errors the msgpack and JSON codecs return: what went wrong and where (the attribute
//! path, and for msgpack the byte offset).

use std::fmt;

use super::number::NumberError;
use super::path::AttributePath;
use super::types::TypeError;

/// What was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("input ends early")]
    Truncated,
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("{expected} is required, found {found}")]
    WrongType {
        expected: String,
        found: &'static str,
    },
    #[error("bad unknown value: {0}")]
    BadExtension(String),
    #[error("{0} bytes after the value")]
    TrailingBytes(usize),
    #[error("invalid number: {0}")]
    BadNumber(#[from] NumberError),
    #[error("unsupported attribute {0:?}")]
    UnsupportedAttribute(String),
    #[error("a tuple of {expected} elements is required, found {found}")]
    TupleLength { expected: usize, found: usize },
    #[error("invalid type of dynamic value: {0}")]
    BadType(#[from] TypeError),
    #[error("invalid dynamic value: {0}")]
    BadDynamic(String),
    #[error("value is nested too deeply (more than {0} levels)")]
    TooDeep(usize),
}

/// A decoding failure at `path` (the value's root when empty); `offset` is the byte offset in
/// msgpack input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub path: AttributePath,
    pub offset: Option<usize>,
    pub kind: DecodeErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str("at the root")?;
        } else {
            write!(f, "at {}", self.path)?;
        }
        if let Some(offset) = self.offset {
            write!(f, " (byte {offset})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// Why a value cannot be encoded against a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeErrorKind {
    #[error("{expected} is required, found {found}")]
    Mismatch {
        expected: String,
        found: &'static str,
    },
    #[error("a tuple of {expected} elements is required, found {found}")]
    TupleLength { expected: usize, found: usize },
    #[error("unsupported attribute {0:?}")]
    UnsupportedAttribute(String),
    #[error("a known value in a dynamic position must carry its type (Value::Dynamic)")]
    DynamicWithoutType,
    #[error("value is not known; JSON cannot carry unknown values")]
    UnknownInJson,
    #[error("value is nested too deeply (more than {0} levels)")]
    TooDeep(usize),
}

/// An encoding failure at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    pub path: AttributePath,
    pub kind: EncodeErrorKind,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            write!(f, "at the root: {}", self.kind)
        } else {
            write!(f, "at {}: {}", self.path, self.kind)
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// How deep values may nest. Schema types are shallow; only dynamic values, which carry their
/// own type, can nest further, and this keeps hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 200;
