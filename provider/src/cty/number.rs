//! Arithmetic-free parts of `Number`: parsing cty's decimal syntax, exact conversions to and
//! from machine numbers, and printing the way cty prints (`big.Float.Text('f', -1)`).
//!
//! Parsing bounds digit count and exponent so that hostile input (`1e999999999`) cannot make a
//! later `Display`, `Hash` or comparison allocate without bound.

use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use num_bigint::{BigInt, Sign};

use super::value::Number;

/// Most significant digits a parsed number may have. cty keeps 512 bits (about 155 digits);
/// this leaves room for the exact expansion of any f64 (at most 767 digits).
pub const MAX_DIGITS: usize = 4096;
/// Largest magnitude of the decimal exponent a parsed number may have (an f64 needs 1074).
pub const MAX_EXPONENT: i64 = 4096;

/// Why a string is not a number cty would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} is not a decimal number")]
    Syntax(String),
    #[error("number has more than {MAX_DIGITS} digits")]
    TooManyDigits,
    #[error("number's exponent is beyond ±{MAX_EXPONENT}")]
    ExponentTooLarge,
    #[error("number is not finite")]
    NotFinite,
}

impl Number {
    /// Parses cty's decimal syntax: optional sign, digits with an optional fraction, optional
    /// exponent (`-12.5e+3`, `.5`, `5.`, `1E10`).
    pub fn parse(s: &str) -> Result<Number, NumberError> {
        let syntax = || NumberError::Syntax(truncate_for_message(s));
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut digits = String::new();
        let mut frac_len: i64 = 0;
        let mut seen_digit = false;
        let mut seen_point = false;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'0'..=b'9' => {
                    seen_digit = true;
                    // Leading zeros carry no information and would count against MAX_DIGITS.
                    if !(digits.is_empty() && b == b'0') {
                        digits.push(b as char);
                        if digits.len() > MAX_DIGITS {
                            return Err(NumberError::TooManyDigits);
                        }
                    }
                    if seen_point {
                        frac_len += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return Err(syntax()),
            }
            i += 1;
        }
        if !seen_digit {
            return Err(syntax());
        }
        let mut exponent: i64 = 0;
        if i < bytes.len() {
            // bytes[i] is the exponent marker.
            i += 1;
            let exp_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            if i >= bytes.len() {
                return Err(syntax());
            }
            for &b in &bytes[i..] {
                if !b.is_ascii_digit() {
                    return Err(syntax());
                }
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(i64::from(b - b'0'));
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if digits.is_empty() {
            return Ok(Number(BigDecimal::from(0)));
        }
        // Fraction digits lower the exponent; a value's magnitude is what we bound.
        let scale = frac_len.saturating_sub(exponent);
        let trailing_zeros = digits.bytes().rev().take_while(|&b| b == b'0').count();
        let significant = &digits[..digits.len() - trailing_zeros];
        let scale = scale.saturating_sub(trailing_zeros as i64);
        if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&scale) {
            return Err(NumberError::ExponentTooLarge);
        }
        let magnitude = BigInt::parse_bytes(significant.as_bytes(), 10).ok_or_else(syntax)?;
        let int = if negative { -magnitude } else { magnitude };
        Ok(Number(BigDecimal::new(int, scale)))
    }

    /// The exact value of a finite f64 (its full binary expansion, as go-cty's
    /// `NumberFloatVal` keeps it); `None` for NaN and infinities.
    pub fn from_f64(f: f64) -> Option<Number> {
        if !f.is_finite() {
            return None;
        }
        if f == 0.0 {
            return Some(Number(BigDecimal::from(0)));
        }
        let bits = f.to_bits();
        let negative = bits >> 63 == 1;
        let biased_exp = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mantissa, exp2) = if biased_exp == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased_exp - 1075)
        };
        let mut int = BigInt::from(mantissa);
        let scale = if exp2 >= 0 {
            int <<= exp2 as usize;
            0
        } else {
            // m * 2^-k == m * 5^k / 10^k
            let k = (-exp2) as u32;
            int *= BigInt::from(5u8).pow(k);
            i64::from(k)
        };
        if negative {
            int = -int;
        }
        Some(Number(BigDecimal::new(int, scale).normalized()))
    }

    /// The value as an i64 if it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        let (int, scale) = self.integer_parts()?;
        if scale != 0 {
            return None;
        }
        i64::try_from(int).ok()
    }

    /// The value as a u64 if it is a non-negative integer in range.
    pub fn to_u64(&self) -> Option<u64> {
        let (int, scale) = self.integer_parts()?;
        if scale != 0 {
            return None;
        }
        u64::try_from(int).ok()
    }

    /// The value as an f64 only if the f64 is exactly this number.
    pub fn to_f64_exact(&self) -> Option<f64> {
        let f = self.to_f64_lossy();
        if !f.is_finite() {
            return None;
        }
        let back = Number::from_f64(f)?;
        (back == *self).then_some(f)
    }

    /// The nearest f64 (correctly rounded); infinite when out of range.
    pub fn to_f64_lossy(&self) -> f64 {
        let (int, scale) = self.0.as_bigint_and_exponent();
        // Rust's float parser rounds correctly, and scientific form keeps the text short.
        format!("{int}e{}", scale.saturating_neg())
            .parse()
            .unwrap_or(f64::NAN)
    }

    /// Whether the number has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.0.is_integer()
    }

    /// For an integer: its digits and the count of trailing zeros left to append (as a
    /// non-negative scale of 0), computed without allocating for huge exponents.
    fn integer_parts(&self) -> Option<(BigInt, i64)> {
        let n = self.0.normalized();
        let (int, scale) = n.into_bigint_and_exponent();
        if scale > 0 {
            return None;
        }
        if scale == 0 {
            return Some((int, 0));
        }
        // A 64-bit integer has at most 20 digits.
        if int.sign() == Sign::NoSign {
            return Some((int, 0));
        }
        if scale < -20 {
            return Some((int, scale));
        }
        Some((int * BigInt::from(10u8).pow((-scale) as u32), 0))
    }
}

fn truncate_for_message(s: &str) -> String {
    if s.len() <= 40 {
        return s.to_owned();
    }
    let mut end = 40;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl FromStr for Number {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Number::parse(s)
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Number(BigDecimal::from(v))
    }
}

impl From<u64> for Number {
    fn from(v: u64) -> Self {
        Number(BigDecimal::from(v))
    }
}

impl From<i32> for Number {
    fn from(v: i32) -> Self {
        Number(BigDecimal::from(v))
    }
}

impl From<u32> for Number {
    fn from(v: u32) -> Self {
        Number(BigDecimal::from(v))
    }
}

impl From<BigInt> for Number {
    fn from(v: BigInt) -> Self {
        Number(BigDecimal::from(v))
    }
}

/// Plain decimal notation, never an exponent, integers without a fraction, no trailing zeros:
/// what cty prints (`1`, `0.1`, `123456789012345678901234567890`, `-0.00042`).
///
/// A non-integer that is exactly an f64 prints as that f64's shortest round-trip form, as cty
/// prints a float64 (`Text('f', -1)` at 53 bits): `Number::from_f64(0.1)` prints `0.1`, not
/// its 55-digit exact expansion. Its value stays exact; only the text is short.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_integer()
            && let Some(float) = self.to_f64_exact()
        {
            // Rust's float Display is the shortest round-trip text, never with an exponent.
            return write!(f, "{float}");
        }
        let n = self.0.normalized();
        let (int, scale) = n.as_bigint_and_exponent();
        if int.sign() == Sign::NoSign {
            return f.write_str("0");
        }
        let digits = int.magnitude().to_str_radix(10);
        if int.sign() == Sign::Minus {
            f.write_str("-")?;
        }
        if scale <= 0 {
            f.write_str(&digits)?;
            for _ in 0..scale.unsigned_abs() {
                f.write_str("0")?;
            }
            return Ok(());
        }
        let scale = scale as u64;
        let len = digits.len() as u64;
        if scale >= len {
            f.write_str("0.")?;
            for _ in 0..(scale - len) {
                f.write_str("0")?;
            }
            f.write_str(&digits)
        } else {
            let split = (len - scale) as usize;
            f.write_str(&digits[..split])?;
            f.write_str(".")?;
            f.write_str(&digits[split..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_like_cty() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("1", "1"),
            ("1.0", "1"),
            ("1.50", "1.5"),
            ("0.1", "0.1"),
            ("-12.5e3", "-12500"),
            ("1E+2", "100"),
            ("1e-3", "0.001"),
            (".5", "0.5"),
            ("5.", "5"),
            ("+7", "7"),
            ("000123", "123"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            (
                "12345678901234567890.123456789",
                "12345678901234567890.123456789",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(n(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_syntax_and_huge_exponents() {
        for bad in [
            "", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x10", "inf", "NaN", "1 ", "1_0",
        ] {
            assert!(Number::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Number::parse("1e999999999999999999999"),
            Err(NumberError::ExponentTooLarge)
        );
        assert_eq!(
            Number::parse(&"9".repeat(MAX_DIGITS + 1)),
            Err(NumberError::TooManyDigits)
        );
        // Zeros do not count against the limits.
        assert_eq!(n(&format!("0.{}", "0".repeat(10_000))).to_string(), "0");
        assert_eq!(n("0e99999999999").to_string(), "0");
    }

    #[test]
    fn numeric_equality_ignores_representation() {
        assert_eq!(n("1.000"), n("1"));
        assert_eq!(n("1e2"), Number::from(100i64));
        assert!(n("0.1") < n("0.2"));
        assert!(n("-1e10") < n("1e-10"));
    }

    #[test]
    fn machine_number_conversions_are_exact() {
        assert_eq!(n("9223372036854775807").to_i64(), Some(i64::MAX));
        assert_eq!(n("9223372036854775808").to_i64(), None);
        assert_eq!(n("9223372036854775808").to_u64(), Some(1 << 63));
        assert_eq!(n("-1").to_u64(), None);
        assert_eq!(n("1e3").to_i64(), Some(1000));
        assert_eq!(n("1.5").to_i64(), None);
        assert_eq!(n("1e30").to_i64(), None);
        assert_eq!(n("0.5").to_f64_exact(), Some(0.5));
        assert_eq!(n("0.1").to_f64_exact(), None);
        assert_eq!(n("123456789012345678901234567890").to_f64_exact(), None);
        assert_eq!(n("1e300").to_f64_exact(), None);
        let tenth = Number::from_f64(0.1).unwrap();
        assert_eq!(
            tenth.0.to_string(),
            "0.1000000000000000055511151231257827021181583404541015625"
        );
        // Printed as cty prints a float64; the value stays exact.
        assert_eq!(tenth.to_string(), "0.1");
        assert_ne!(tenth, n("0.1"));
        assert_eq!(Number::from_f64(0.1).unwrap().to_f64_exact(), Some(0.1));
        assert_eq!(Number::from_f64(-2.5).unwrap(), n("-2.5"));
        assert_eq!(Number::from_f64(1e20).unwrap(), n("100000000000000000000"));
        for f in [f64::MIN_POSITIVE, 5e-324, f64::MAX, -f64::MAX, 1.0 / 3.0] {
            assert_eq!(Number::from_f64(f).unwrap().to_f64_exact(), Some(f), "{f}");
        }
        assert_eq!(Number::from_f64(f64::NAN), None);
        assert_eq!(Number::from_f64(f64::INFINITY), None);
    }
}
