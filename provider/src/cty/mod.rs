//! The value model Terraform speaks: cty types and values, null and unknown (with refinements),
//! the msgpack and JSON encodings of `DynamicValue` and raw state, and attribute paths.
//!
//! Pure data and codecs: no protocol types, no I/O. Decoders never panic on bad input; they
//! return a `DecodeError` that says where in the value the problem is.

mod value;

pub use value::{Number, Refinement, Type, Value};
