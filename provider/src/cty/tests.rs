//! Property tests over generated types and values: both codecs give back what they were
//! given, encoding is deterministic, and random or mutated input never panics a decoder.

use std::collections::BTreeSet;

use bigdecimal::BigDecimal;
use num_bigint::BigInt;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;

use super::{Number, Refinement, Type, Value, json, msgpack};

fn arb_type_depth(depth: u32) -> BoxedStrategy<Type> {
    let leaf = prop_oneof![
        Just(Type::Bool),
        Just(Type::Number),
        Just(Type::String),
        Just(Type::Dynamic),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            (
                prop::collection::btree_map("[a-z_]{1,6}", inner.clone(), 0..4),
                any::<u8>()
            )
                .prop_map(|(attrs, mask)| {
                    let optional: BTreeSet<String> = attrs
                        .keys()
                        .enumerate()
                        .filter(|(i, _)| mask >> (i % 8) & 1 == 1)
                        .map(|(_, k)| k.clone())
                        .collect();
                    Type::Object { attrs, optional }
                }),
            prop::collection::vec(inner, 0..3).prop_map(Type::Tuple),
        ]
    })
    .boxed()
}

pub(super) fn arb_type() -> BoxedStrategy<Type> {
    arb_type_depth(3)
}

pub(super) fn arb_number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (any::<i128>(), -40i64..40)
            .prop_map(|(i, scale)| Number(BigDecimal::new(BigInt::from(i), scale))),
        "-?[1-9][0-9]{18,60}(\\.[0-9]{1,30})?".prop_map(|s| Number::parse(&s).unwrap()),
    ]
    .boxed()
}

/// Refinements go-cty can carry for `ty` (others are not encoded, so would not round-trip).
fn arb_refinement(ty: &Type) -> BoxedStrategy<Refinement> {
    let nullable = prop::option::of(Just(false));
    match ty {
        Type::Dynamic => Just(Refinement::default()).boxed(),
        Type::String => (nullable, prop::option::of(".{1,8}"))
            .prop_map(|(nullable, string_prefix)| Refinement {
                nullable,
                string_prefix,
                ..Refinement::default()
            })
            .boxed(),
        Type::Number => (
            nullable,
            prop::option::of((arb_number(), any::<bool>())),
            prop::option::of((arb_number(), any::<bool>())),
        )
            .prop_map(|(nullable, number_lower, number_upper)| Refinement {
                nullable,
                number_lower,
                number_upper,
                ..Refinement::default()
            })
            .boxed(),
        _ if ty.is_collection() => (
            nullable,
            prop::option::of(1u64..1000),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(nullable, length_lower, length_upper)| Refinement {
                nullable,
                length_lower,
                length_upper,
                ..Refinement::default()
            })
            .boxed(),
        _ => nullable
            .prop_map(|nullable| Refinement {
                nullable,
                ..Refinement::default()
            })
            .boxed(),
    }
}

/// A value of type `ty`: null, unknown (when allowed) or known, with `dyn_depth` more levels
/// of dynamic values allowed.
pub(super) fn arb_value(ty: &Type, unknowns: bool, dyn_depth: u32) -> BoxedStrategy<Value> {
    let mut choices = vec![
        (1, Just(Value::Null).boxed()),
        (6, arb_known(ty, unknowns, dyn_depth)),
    ];
    if unknowns {
        choices.push((1, arb_refinement(ty).prop_map(Value::Unknown).boxed()));
    }
    Union::new_weighted(choices).boxed()
}

fn arb_known(ty: &Type, unknowns: bool, dyn_depth: u32) -> BoxedStrategy<Value> {
    match ty {
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::String => any::<String>().prop_map(Value::String).boxed(),
        Type::List(e) => prop::collection::vec(arb_value(e, unknowns, dyn_depth), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Set(e) => prop::collection::vec(arb_value(e, unknowns, dyn_depth), 0..4)
            .prop_map(Value::set)
            .boxed(),
        Type::Map(e) => {
            prop::collection::btree_map(".{0,6}", arb_value(e, unknowns, dyn_depth), 0..4)
                .prop_map(Value::Map)
                .boxed()
        }
        Type::Object { attrs, .. } => {
            let names: Vec<String> = attrs.keys().cloned().collect();
            let values: Vec<_> = attrs
                .values()
                .map(|t| arb_value(t, unknowns, dyn_depth))
                .collect();
            values
                .prop_map(move |vals| Value::object(names.clone().into_iter().zip(vals)))
                .boxed()
        }
        Type::Tuple(etys) => {
            let values: Vec<_> = etys
                .iter()
                .map(|t| arb_value(t, unknowns, dyn_depth))
                .collect();
            values.prop_map(Value::Tuple).boxed()
        }
        Type::Dynamic => {
            let inner_ty = if dyn_depth == 0 {
                prop_oneof![Just(Type::Bool), Just(Type::Number), Just(Type::String)].boxed()
            } else {
                arb_type_depth(2)
            };
            let next = dyn_depth.saturating_sub(1);
            inner_ty
                .prop_flat_map(move |t| {
                    arb_value(&t, unknowns, next).prop_map(move |v| Value::dynamic(t.clone(), v))
                })
                .boxed()
        }
    }
}

fn typed_value(unknowns: bool) -> BoxedStrategy<(Type, Value)> {
    arb_type()
        .prop_flat_map(move |t| {
            let v = arb_value(&t, unknowns, 2);
            (Just(t), v)
        })
        .boxed()
}

/// Ways to damage a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that change a msgpack item's kind or length are the interesting ones to set.
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            0xc0u8, 0xc1, 0xc4, 0xc7, 0xc9, 0xcb, 0xcf, 0xd4, 0xd8, 0xdb, 0xdd, 0xdf, 0xff, 0x00,
            0x7f, 0x0c, b'"', b'[', b'{', b'}', b']', b',', b':', b'e', b'-', b'9',
        ]),
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), interesting.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Insert(_, b) = m {
            bytes.push(*b);
        }
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] ^= b | 1;
        }
        Mutation::Set(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        Mutation::Remove(i) => {
            let i = i.index(bytes.len());
            bytes.remove(i);
        }
        Mutation::Truncate(i) => {
            let i = i.index(bytes.len());
            bytes.truncate(i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn type_json_roundtrips(ty in arb_type()) {
        let bytes = ty.to_json();
        prop_assert_eq!(Type::from_json(&bytes).unwrap(), ty);
    }

    #[test]
    fn number_text_roundtrips(n in arb_number()) {
        let text = n.to_string();
        prop_assert_eq!(Number::parse(&text).unwrap(), n.clone());
        if let Some(i) = n.to_i64() {
            prop_assert_eq!(Number::from(i), n.clone());
        }
        if let Some(f) = n.to_f64_exact() {
            prop_assert_eq!(Number::from_f64(f).unwrap(), n);
        }
    }

    #[test]
    fn msgpack_roundtrips((ty, v) in typed_value(true)) {
        let bytes = msgpack::encode(&v, &ty).unwrap();
        let back = msgpack::decode(&bytes, &ty);
        prop_assert_eq!(back.as_ref(), Ok(&v), "bytes {:02x?}", bytes);
        // Encoding is canonical: decoding and encoding again gives the same bytes.
        prop_assert_eq!(msgpack::encode(&back.unwrap(), &ty).unwrap(), bytes);
    }

    #[test]
    fn json_roundtrips((ty, v) in typed_value(false)) {
        let text = json::encode_string(&v, &ty).unwrap();
        let back = json::decode(text.as_bytes(), &ty);
        prop_assert_eq!(back.as_ref(), Ok(&v), "json {}", text);
        prop_assert_eq!(json::decode_state(text.as_bytes(), &ty).unwrap(), v);
        prop_assert_eq!(json::encode_string(&back.unwrap(), &ty).unwrap(), text);
    }

    #[test]
    fn json_refuses_unknowns_that_msgpack_carries((ty, v) in typed_value(true)) {
        let json_result = json::encode(&v, &ty);
        prop_assert_eq!(json_result.is_ok(), v.is_wholly_known());
    }
}

proptest! {
    // The fuzz part run by `cargo test`; examples/cty_fuzz.rs runs the long version.
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(ty in arb_type(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = msgpack::decode(&bytes, &ty);
        let _ = json::decode(&bytes, &ty);
        let _ = json::decode_state(&bytes, &ty);
        let _ = Type::from_json(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        (ty, v) in typed_value(true),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut packed = msgpack::encode(&v, &ty).unwrap();
        let mut text = json::encode(&v, &ty).unwrap_or_else(|_| b"null".to_vec());
        for m in &mutations {
            mutate(&mut packed, m);
            mutate(&mut text, m);
        }
        // Decoded values must still encode: a decoder never builds what the encoder refuses.
        if let Ok(d) = msgpack::decode(&packed, &ty) {
            prop_assert!(msgpack::encode(&d, &ty).is_ok());
        }
        if let Ok(d) = json::decode(&text, &ty) {
            prop_assert!(json::encode(&d, &ty).is_ok());
        }
        let _ = json::decode_state(&text, &ty);
        let _ = msgpack::decode(&text, &ty);
        let _ = json::decode(&packed, &ty);
    }
}
