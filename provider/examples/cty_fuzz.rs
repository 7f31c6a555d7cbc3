//! Fuzz driver for the cty decoders: feeds N inputs (random bytes, and valid msgpack and JSON
//! encodings of random values with random damage) to `cty::msgpack::decode`,
//! `cty::json::decode` and `cty::json::decode_state`, and reports how many it tried.
//!
//! `cargo run -p terraform-provider-strata --example cty_fuzz -- N [SEED]`
//!
//! A panic is a failure: the input and its type are printed and the process exits 1.
//! Errors are expected; a decoded value must encode again (decoders never build what the
//! encoders refuse).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_provider::cty::{Number, Refinement, Type, Value, json, msgpack};

fn random_type(rng: &mut StdRng, depth: u32) -> Type {
    let leaf = depth == 0 || rng.random_bool(0.4);
    if leaf {
        return match rng.random_range(0..4) {
            0 => Type::Bool,
            1 => Type::Number,
            2 => Type::String,
            _ => Type::Dynamic,
        };
    }
    match rng.random_range(0..5) {
        0 => Type::list(random_type(rng, depth - 1)),
        1 => Type::set(random_type(rng, depth - 1)),
        2 => Type::map(random_type(rng, depth - 1)),
        3 => {
            let mut attrs = BTreeMap::new();
            let mut optional = BTreeSet::new();
            for i in 0..rng.random_range(0..4) {
                let name = format!("a{i}");
                if rng.random_bool(0.3) {
                    optional.insert(name.clone());
                }
                attrs.insert(name, random_type(rng, depth - 1));
            }
            Type::Object { attrs, optional }
        }
        _ => Type::Tuple(
            (0..rng.random_range(0..3))
                .map(|_| random_type(rng, depth - 1))
                .collect(),
        ),
    }
}

fn random_number(rng: &mut StdRng) -> Number {
    match rng.random_range(0..4) {
        0 => Number::from(rng.random::<i64>()),
        1 => Number::from_f64(rng.random::<f64>() * 1e6).unwrap_or_else(|| Number::from(0i64)),
        2 => Number::parse(&format!(
            "{}{}e{}",
            rng.random::<u64>(),
            rng.random::<u64>(),
            rng.random_range(-40..40)
        ))
        .unwrap_or_else(|_| Number::from(1i64)),
        _ => Number::from(rng.random::<u64>()),
    }
}

fn random_string(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..8);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => char::from_u32(rng.random_range(0x80..0x10000)).unwrap_or('x'),
            _ => char::from(rng.random_range(0x20u8..0x7f)),
        })
        .collect()
}

fn random_value(rng: &mut StdRng, ty: &Type, dyn_depth: u32) -> Value {
    match rng.random_range(0..10) {
        0 => return Value::Null,
        1 => {
            let mut r = Refinement::default();
            if rng.random_bool(0.5) {
                r.nullable = Some(false);
            }
            match ty {
                Type::String => r.string_prefix = Some(random_string(rng)),
                Type::Number => {
                    r.number_lower = Some((random_number(rng), rng.random()));
                    r.number_upper = Some((random_number(rng), rng.random()));
                }
                _ if ty.is_collection() => {
                    r.length_lower = Some(rng.random_range(0..10));
                    r.length_upper = Some(rng.random_range(0..100));
                }
                _ => {}
            }
            return Value::Unknown(r);
        }
        _ => {}
    }
    let n = rng.random_range(0..4);
    match ty {
        Type::Bool => Value::Bool(rng.random()),
        Type::Number => Value::Number(random_number(rng)),
        Type::String => Value::String(random_string(rng)),
        Type::List(e) => Value::list((0..n).map(|_| random_value(rng, e, dyn_depth))),
        Type::Set(e) => Value::set((0..n).map(|_| random_value(rng, e, dyn_depth))),
        Type::Map(e) => {
            Value::map((0..n).map(|_| (random_string(rng), random_value(rng, e, dyn_depth))))
        }
        Type::Object { attrs, .. } => Value::object(
            attrs
                .iter()
                .map(|(k, t)| (k.clone(), random_value(rng, t, dyn_depth)))
                .collect::<Vec<_>>(),
        ),
        Type::Tuple(etys) => Value::tuple(etys.iter().map(|t| random_value(rng, t, dyn_depth))),
        Type::Dynamic => {
            let t = random_type(rng, if dyn_depth == 0 { 0 } else { 2 });
            let v = random_value(rng, &t, dyn_depth.saturating_sub(1));
            Value::dynamic(t, v)
        }
    }
}

const INTERESTING: &[u8] = &[
    0xc0, 0xc1, 0xc4, 0xc7, 0xc9, 0xcb, 0xcf, 0xd4, 0xd8, 0xdb, 0xdd, 0xdf, 0xff, 0x00, 0x7f, 0x0c,
    b'"', b'[', b'{', b'}', b']', b',', b':', b'e', b'-', b'9', b'.',
];

fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    let rounds = if rng.random_bool(0.6) {
        1
    } else {
        rng.random_range(2..5)
    };
    for _ in 0..rounds {
        if bytes.is_empty() {
            bytes.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..bytes.len());
        let b = if rng.random_bool(0.5) {
            INTERESTING[rng.random_range(0..INTERESTING.len())]
        } else {
            rng.random()
        };
        match rng.random_range(0..6) {
            0 => bytes[i] ^= 1 << rng.random_range(0..8),
            1 => bytes[i] = b,
            2 => bytes.insert(i, b),
            3 => {
                bytes.remove(i);
            }
            4 => bytes.truncate(i),
            _ => {
                // Duplicate a slice: repeats items and breaks length prefixes.
                let j = rng.random_range(i..bytes.len());
                let chunk = bytes[i..=j].to_vec();
                let at = rng.random_range(0..=bytes.len());
                bytes.splice(at..at, chunk);
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    inputs: u64,
    msgpack_ok: u64,
    json_ok: u64,
}

fn try_input(bytes: &[u8], ty: &Type, counts: &mut Counts) -> Result<(), String> {
    counts.inputs += 1;
    if let Ok(v) = msgpack::decode(bytes, ty) {
        counts.msgpack_ok += 1;
        msgpack::encode(&v, ty).map_err(|e| format!("msgpack re-encode failed: {e}"))?;
    }
    if let Ok(v) = json::decode(bytes, ty) {
        counts.json_ok += 1;
        json::encode(&v, ty).map_err(|e| format!("json re-encode failed: {e}"))?;
    }
    let _ = json::decode_state(bytes, ty);
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = Counts::default();
    let start = Instant::now();

    let mut corpus: Vec<(Type, Vec<u8>, Vec<u8>)> = Vec::new();
    while counts.inputs < n {
        // Refresh part of the corpus now and then so that many shapes are seen.
        if corpus.len() < 256 || rng.random_range(0..64) == 0 {
            let ty = random_type(&mut rng, 4);
            let v = random_value(&mut rng, &ty, 2);
            let packed = match msgpack::encode(&v, &ty) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("encoder refused a generated value: {e}\n{ty:?}\n{v:?}");
                    return ExitCode::FAILURE;
                }
            };
            let text = json::encode(&v, &ty).unwrap_or_else(|_| b"null".to_vec());
            if corpus.len() < 256 {
                corpus.push((ty, packed, text));
            } else {
                let i = rng.random_range(0..corpus.len());
                corpus[i] = (ty, packed, text);
            }
        }
        let (ty, packed, text) = &corpus[rng.random_range(0..corpus.len())];
        let mut input = match rng.random_range(0..8) {
            0 => (0..rng.random_range(0..48)).map(|_| rng.random()).collect(),
            1..=4 => packed.clone(),
            _ => text.clone(),
        };
        mutate(&mut rng, &mut input);
        let ty = if rng.random_range(0..8) == 0 {
            corpus[rng.random_range(0..corpus.len())].0.clone()
        } else {
            ty.clone()
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| try_input(&input, &ty, &mut counts)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(msg)) => Some(msg),
            Err(_) => Some("panic".to_string()),
        };
        if let Some(msg) = failure {
            eprintln!(
                "FAILURE ({msg}) on input {:02x?}\ntype {}",
                input,
                ty.to_json_string()
            );
            return ExitCode::FAILURE;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cty_fuzz: tried {} inputs (each through msgpack::decode, json::decode, json::decode_state) \
         in {secs:.1} s ({:.0}/s), seed {seed}: {} decoded as msgpack, {} as JSON, no panics",
        counts.inputs,
        counts.inputs as f64 / secs,
        counts.msgpack_ok,
        counts.json_ok,
    );
    ExitCode::SUCCESS
}
