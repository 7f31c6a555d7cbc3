//! The value model Terraform speaks: cty types and values, null and unknown (with refinements),
//! the msgpack and JSON encodings of `DynamicValue` and raw state, and attribute paths.
//!
//! Pure data and codecs: no protocol types, no I/O. Decoders never panic on bad input; they
//! return a `DecodeError` that says where in the value the problem is.

mod error;
pub mod json;
pub mod msgpack;
mod number;
pub mod path;
mod types;
mod value;

#[cfg(test)]
mod tests;

pub use error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, MAX_DEPTH};
pub use number::{MAX_DIGITS, MAX_EXPONENT, NumberError};
pub use path::{AttributePath, PathStep};
pub use types::TypeError;
pub use value::{Number, Refinement, Type, Value, canonicalize_set};
