//! Exact Kubernetes `resource.Quantity` parsing and formatting for storage sizes,
//! shared by cnpg-autoresize, its Kubernetes API sandbox and its test bed.
//!
//! Mirrors k8s.io/apimachinery `pkg/api/resource` (quantity.go, amount.go,
//! suffix.go): values are kept exactly (never as floats) at nano precision,
//! parsing rounds finer values away from zero to the next nano, BinarySI
//! quantities are capped at 2^63-1 like `ParseQuantity`, and `Display` is
//! exactly `Quantity.String()`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Kubernetes' three quantity formats (from the suffix at parse time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki Mi Gi Ti Pi Ei` (powers of 1024).
    BinarySI,
    /// `n u m "" k M G T P E` (powers of 1000).
    DecimalSI,
    /// `e<n>` / `E<n>` (powers of 10).
    DecimalExponent,
}

/// An exact quantity; equality, ordering and hashing use the value only.
#[derive(Clone, Debug)]
pub struct Quantity {
    /// Value in units of 10^-9; Kubernetes never keeps more precision than nano.
    nanos: i128,
    format: Format,
}

/// Errors from parsing or converting a quantity; each names the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid quantity {text:?}: {reason}")]
    Invalid { text: String, reason: String },
    #[error("quantity {text:?} is too large")]
    TooLarge { text: String },
    #[error("quantity {text:?} is too large for a byte count (max 18446744073709551615)")]
    ExceedsU64 { text: String },
    #[error("quantity {text:?} is negative")]
    Negative { text: String },
}

const NANO: u128 = 1_000_000_000;
/// `ParseQuantity` silently caps BinarySI values at 2^63-1 (k8s issue #140674).
const BINARY_CAP_NANOS: u128 = (i64::MAX as u128) * NANO;
/// Our own bound: |value| * 10^9 must fit an i128 (about 1.7e29 bytes).
const MAX_NANOS: u128 = i128::MAX as u128;
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

fn invalid(text: &str, reason: String) -> QuantityError {
    QuantityError::Invalid {
        text: text.to_string(),
        reason,
    }
}

/// Maps a suffix to (format, power of ten, power of two), as suffix.go does.
fn interpret_suffix(suffix: &str) -> Option<(Format, i64, u32)> {
    let decimal = |exp| Some((Format::DecimalSI, exp, 0));
    let binary = |exp| Some((Format::BinarySI, 0, exp));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            // `e<int>`/`E<int>`; Rust's i64 parser accepts the same optional
            // sign + digits as Go's strconv.ParseInt(s, 10, 64).
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let exp = rest.parse::<i64>().ok()?;
            Some((Format::DecimalExponent, exp, 0))
        }
    }
}

/// Multiplies big-endian decimal digits by `factor` in place.
fn mul_digits(digits: &mut Vec<u8>, factor: u64) {
    let mut carry: u128 = 0;
    for d in digits.iter_mut().rev() {
        let v = u128::from(*d) * u128::from(factor) + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

fn digits_to_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u128::from(d))
    })
}

/// `ceil(digits * 10^exp10 * 10^9)` for non-empty digits with a non-zero
/// leading digit; `None` when above `MAX_NANOS`.
fn nanos_ceil(digits: &[u8], exp10: i128) -> Option<u128> {
    let shift = exp10 + 9;
    let value = if shift >= 0 {
        // Bail out before looping when the result surely has > 39 digits.
        if digits.len() as i128 + shift > 39 {
            return None;
        }
        (0..shift).try_fold(digits_to_u128(digits)?, |v, _| v.checked_mul(10))?
    } else {
        let dropped = usize::try_from(-shift).unwrap_or(usize::MAX);
        if dropped >= digits.len() {
            // A non-zero value below 1n rounds up to 1n.
            1
        } else {
            let (int, frac) = digits.split_at(digits.len() - dropped);
            let round_up = u128::from(frac.iter().any(|&d| d != 0));
            digits_to_u128(int)?.checked_add(round_up)?
        }
    };
    (value <= MAX_NANOS).then_some(value)
}

/// The magnitude in nanos of a whole number of at most 19 digits whose
/// exponent keeps it whole in nanos — every size a PVC or a configuration
/// holds — in plain u128 arithmetic. `None` sends everything else
/// (fractions, finer than a nano, overflow) to [`digits_nanos`], which
/// agrees where both apply.
fn whole_nanos(int_part: &str, frac_part: &str, exp10: i64, exp2: u32) -> Option<u128> {
    if !frac_part.is_empty() || int_part.is_empty() || int_part.len() > 19 {
        return None;
    }
    let scale = 10u128.checked_pow(u32::try_from(exp10.checked_add(9)?).ok()?)?;
    let value = u128::from(int_part.parse::<u64>().ok()?)
        .checked_mul(1u128 << exp2)?
        .checked_mul(scale)?;
    (value <= MAX_NANOS).then_some(value)
}

/// The magnitude in nanos of any number, digit by digit; `None` when above
/// `MAX_NANOS`.
fn digits_nanos(int_part: &str, frac_part: &str, exp10: i64, exp2: u32) -> Option<u128> {
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .skip_while(|&b| b == b'0')
        .map(|b| b - b'0')
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    if exp2 > 0 {
        mul_digits(&mut digits, 1u64 << exp2);
    }
    let exp = i128::from(exp10) - frac_part.len() as i128;
    nanos_ceil(&digits, exp)
}

impl Quantity {
    /// Parses `<signedNumber><suffix>` exactly like `resource.ParseQuantity`.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        if text.is_empty() {
            return Err(invalid(text, "empty string".to_string()));
        }
        let (negative, unsigned) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let int_len = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = unsigned.split_at(int_len);
        let (frac_part, suffix) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(n)
            }
            None => ("", rest),
        };
        // Kubernetes' scanner reads e.g. "Gi" or "-" as zero; its documented
        // grammar requires digits, and so do we.
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid(text, "expected a number".to_string()));
        }
        let Some((mut format, exp10, exp2)) = interpret_suffix(suffix) else {
            let reason = if suffix.starts_with(|c: char| c.is_ascii_alphabetic()) {
                format!("unknown suffix {suffix:?}")
            } else {
                format!("unexpected {suffix:?} after the number")
            };
            return Err(invalid(text, reason));
        };

        let mag = whole_nanos(int_part, frac_part, exp10, exp2)
            .or_else(|| digits_nanos(int_part, frac_part, exp10, exp2));
        let Some(mut mag) = mag else {
            return Err(QuantityError::TooLarge {
                text: text.to_string(),
            });
        };
        if format == Format::BinarySI {
            mag = mag.min(BINARY_CAP_NANOS);
            if mag > 0 && mag < NANO {
                // Kubernetes switches sub-unit binary values to DecimalSI.
                format = Format::DecimalSI;
            }
        }
        // mag <= MAX_NANOS == i128::MAX, so the cast is lossless.
        let nanos = mag as i128;
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// An exact byte count in BinarySI format, like `NewQuantity(b, BinarySI)`.
    pub fn from_bytes(bytes: u64) -> Quantity {
        Quantity {
            nanos: i128::from(bytes) * NANO as i128,
            format: Format::BinarySI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The exact value in billionths (what comparisons of CPU and memory use).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Integer bytes, rounding a fractional value up like Kubernetes' `Value()`
    /// (`100m` -> 1). Errors if negative or above `u64::MAX`.
    pub fn to_bytes(&self) -> Result<u64, QuantityError> {
        if self.nanos < 0 {
            return Err(QuantityError::Negative {
                text: self.to_string(),
            });
        }
        let bytes = self.nanos.unsigned_abs().div_ceil(NANO);
        u64::try_from(bytes).map_err(|_| QuantityError::ExceedsU64 {
            text: self.to_string(),
        })
    }
}

/// Splits a positive nano count into (mantissa, exponent) with the exponent a
/// multiple of 3 and as large as possible without losing digits (amount.go
/// `AsCanonicalBytes`).
fn canonical_decimal(mag: u128) -> (u128, i32) {
    let (mut mantissa, mut exp) = (mag, -9);
    while mantissa.is_multiple_of(10) {
        mantissa /= 10;
        exp += 1;
    }
    while exp % 3 != 0 {
        mantissa *= 10;
        exp -= 1;
    }
    (mantissa, exp)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let mag = self.nanos.unsigned_abs();
        // BinarySI is only used for whole values with |v| >= 1024; everything
        // else is printed as DecimalSI so no precision is lost.
        if self.format == Format::BinarySI && mag >= 1024 * NANO && mag.is_multiple_of(NANO) {
            let (mut value, mut power) = (mag / NANO, 0);
            while power < 6 && value.is_multiple_of(1024) {
                value /= 1024;
                power += 1;
            }
            return write!(f, "{sign}{value}{}", BINARY_SUFFIXES[power]);
        }
        let (mantissa, exp) = canonical_decimal(mag);
        let si = match exp {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (self.format, si) {
            (Format::DecimalExponent, _) if exp == 0 => write!(f, "{sign}{mantissa}"),
            (Format::DecimalExponent, _) | (_, None) => write!(f, "{sign}{mantissa}e{exp}"),
            (_, Some(suffix)) => write!(f, "{sign}{mantissa}{suffix}"),
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct QuantityVisitor;

impl serde::de::Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes quantity string or number")
    }

    // Kubernetes' UnmarshalJSON trims surrounding whitespace before parsing.
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v.trim()).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    // Rust prints the shortest digits that round-trip, never in exponent form.
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom(format!("invalid quantity {v}: not finite")));
        }
        self.visit_str(&v.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// Canonical Kubernetes string for a byte count, as
/// `resource.NewQuantity(bytes, BinarySI).String()` prints it
/// (12884901888 -> "12Gi", 1610612736 -> "1536Mi", 1536 -> "1536", 512 -> "512").
pub fn format_bytes(bytes: u64) -> String {
    Quantity::from_bytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Format::{BinarySI as Bin, DecimalExponent as Exp, DecimalSI as Dec};

    /// Builds `mantissa * 10^exp` directly, like the Go tests' `decQuantity`.
    fn dec(mantissa: i128, exp: i32, format: Format) -> Quantity {
        let shift = exp + 9;
        let nanos = if shift >= 0 {
            mantissa * 10i128.pow(shift.unsigned_abs())
        } else {
            let div = 10i128.pow(shift.unsigned_abs());
            assert_eq!(mantissa % div, 0, "test value below nano precision");
            mantissa / div
        };
        Quantity { nanos, format }
    }

    fn parse(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    // Ported from apimachinery quantity_test.go TestQuantityParse.
    #[rustfmt::skip]
    const PARSE_TABLE: &[(&str, i128, i32, Format)] = &[
        ("0", 0, 0, Dec), ("0n", 0, 0, Dec), ("0u", 0, 0, Dec), ("0m", 0, 0, Dec),
        ("0Ki", 0, 0, Bin), ("0k", 0, 0, Dec), ("0Mi", 0, 0, Bin), ("0M", 0, 0, Dec),
        ("0Gi", 0, 0, Bin), ("0G", 0, 0, Dec), ("0Ti", 0, 0, Bin), ("0T", 0, 0, Dec),
        ("1", 1, 0, Dec),
        ("1Ki", 1024, 0, Bin), ("8Ki", 8 << 10, 0, Bin), ("7Mi", 7 << 20, 0, Bin),
        ("6Gi", 6 << 30, 0, Bin), ("5Ti", 5 << 40, 0, Bin), ("4Pi", 4 << 50, 0, Bin),
        ("3Ei", 3 << 60, 0, Bin), ("10Ti", 10 << 40, 0, Bin), ("100Ti", 100 << 40, 0, Bin),
        ("5n", 5, -9, Dec), ("4u", 4, -6, Dec), ("3m", 3, -3, Dec), ("9", 9, 0, Dec),
        ("8k", 8, 3, Dec), ("50k", 5, 4, Dec), ("7M", 7, 6, Dec), ("6G", 6, 9, Dec),
        ("5T", 5, 12, Dec), ("40T", 4, 13, Dec), ("300T", 3, 14, Dec), ("2P", 2, 15, Dec),
        ("1E", 1, 18, Dec),
        ("1E-3", 1, -3, Exp), ("1e3", 1, 3, Exp), ("1E6", 1, 6, Exp), ("1e9", 1, 9, Exp),
        ("1E12", 1, 12, Exp), ("1e15", 1, 15, Exp), ("1E18", 1, 18, Exp),
        ("1e14", 1, 14, Exp), ("1e13", 1, 13, Exp), ("100.035k", 100035, 0, Dec),
        ("0.001", 1, -3, Dec), ("0.0005k", 5, -1, Dec), ("0.005", 5, -3, Dec),
        ("0.05", 5, -2, Dec), ("0.5", 5, -1, Dec), ("0.00050k", 5, -1, Dec),
        ("0.00500", 5, -3, Dec), ("0.05000", 5, -2, Dec), ("0.50000", 5, -1, Dec),
        ("0.5e0", 5, -1, Exp), ("0.5e-1", 5, -2, Exp), ("0.5e-2", 5, -3, Exp),
        ("10.035M", 10035, 3, Dec), ("1.2e3", 12, 2, Exp), ("1.3E+6", 13, 5, Exp),
        ("1.40e9", 14, 8, Exp), ("1.53E12", 153, 10, Exp), ("1.6e15", 16, 14, Exp),
        ("1.7E18", 17, 17, Exp), ("9.01", 901, -2, Dec), ("8.1k", 81, 2, Dec),
        ("7.123456M", 7123456, 0, Dec), ("6.987654321G", 6987654321, 0, Dec),
        ("5.444T", 5444, 9, Dec), ("40.1T", 401, 11, Dec), ("300.2T", 3002, 11, Dec),
        ("2.5P", 25, 14, Dec), ("1.01E", 101, 16, Dec),
        // Finer than nano rounds up; BinarySI saturates at 2^63-1.
        ("3.001n", 4, -9, Dec), ("1.1E-9", 2, -9, Exp), ("0.0000000001", 1, -9, Dec),
        ("0.0000000005", 1, -9, Dec), ("0.00000000050", 1, -9, Dec), ("0.5e-9", 1, -9, Exp),
        ("0.9n", 1, -9, Dec), ("0.00000012345", 124, -9, Dec), ("0.00000012354", 124, -9, Dec),
        ("9Ei", i64::MAX as i128, 0, Bin), ("9223372036854775807Ki", i64::MAX as i128, 0, Bin),
        ("12E", 12, 18, Dec),
        ("100.035Ki", 10243584, -2, Bin), ("0.5Mi", 1 << 19, 0, Bin),
        ("0.05Gi", 536870912, -1, Bin), ("0.025Ti", 274877906944, -1, Bin),
        ("0.000000000001Ki", 2, -9, Dec), (".001", 1, -3, Dec), (".0001k", 100, -3, Dec),
        ("1.", 1, 0, Dec), ("1.G", 1, 9, Dec),
        // Our additions.
        ("8Ei", i64::MAX as i128, 0, Bin), ("16Ei", i64::MAX as i128, 0, Bin),
        ("1.5Gi", 1610612736, 0, Bin), (".5Gi", 1 << 29, 0, Bin), ("5.Gi", 5 << 30, 0, Bin),
        ("12e+6", 12, 6, Exp), ("1e-999999", 1, -9, Exp), ("0e999999", 0, 0, Exp),
        ("000123", 123, 0, Dec), ("1e29", 1, 29, Exp),
    ];

    #[test]
    fn parse_table_with_sign_variants() {
        for &(text, mantissa, exp, format) in PARSE_TABLE {
            let want = dec(mantissa, exp, format);
            for (prefix, sign) in [("", 1), ("+", 1), ("-", -1)] {
                let input = format!("{prefix}{text}");
                let got = parse(&input);
                assert_eq!(got.nanos, sign * want.nanos, "{input}");
                assert_eq!(got.format(), format, "{input}");
                assert_eq!(got.is_negative(), sign < 0 && mantissa != 0, "{input}");
                assert_eq!(got.is_zero(), mantissa == 0, "{input}");
            }
        }
    }

    #[test]
    fn canonical_strings() {
        // TestQuantityString: (value, canonical, alternate spelling).
        let table = [
            (dec(1 << 30, 0, Bin), "1Gi", "1024Mi"),
            (dec(300 << 20, 0, Bin), "300Mi", "307200Ki"),
            (dec(6 << 10, 0, Bin), "6Ki", ""),
            (dec(1001 << 30, 0, Bin), "1001Gi", "1025024Mi"),
            (dec(1 << 40, 0, Bin), "1Ti", "1024Gi"),
            (dec(5, 0, Bin), "5", "5000m"),
            (dec(500, -3, Bin), "500m", "0.5"),
            (dec(1, 9, Dec), "1G", "1000M"),
            (dec(1000, 6, Dec), "1G", "0.001T"),
            (dec(1000000, 3, Dec), "1G", ""),
            (dec(1, -3, Dec), "1m", "1000u"),
            (dec(80, -3, Dec), "80m", ""),
            (dec(1080, -3, Dec), "1080m", "1.08"),
            (dec(108, -2, Dec), "1080m", "1080000000n"),
            (dec(300, 6, Dec), "300M", ""),
            (dec(1, 12, Dec), "1T", ""),
            (dec(1, 18, Dec), "1E", ""),
            (dec(1, 21, Dec), "1e21", "1000E"),
            (dec(5, 21, Dec), "5e21", "5000E"),
            (dec(1, 24, Dec), "1e24", "1000000E"),
            (dec(1234567, 6, Dec), "1234567M", ""),
            (dec(1234567, -3, Bin), "1234567m", ""),
            (dec(3, 3, Dec), "3k", ""),
            (dec(1025, 0, Bin), "1025", ""),
            (dec(0, 0, Dec), "0", ""),
            (dec(0, 0, Bin), "0", ""),
            (dec(1, 9, Exp), "1e9", ".001e12"),
            (dec(1, -3, Exp), "1e-3", "0.001e0"),
            (dec(1, -9, Exp), "1e-9", "1000e-12"),
            (dec(80, -3, Exp), "80e-3", ""),
            (dec(300, 6, Exp), "300e6", ""),
            (dec(3, 3, Exp), "3e3", ""),
            (dec(0, 0, Exp), "0", "00"),
            (dec(1, -9, Dec), "1n", ""),
            (dec(1080, -9, Dec), "1080n", ""),
            (dec(10800, -10, Dec), "1080n", ""),
            (dec(1, -6, Dec), "1u", ""),
            (dec(1080, -6, Dec), "1080u", ""),
        ];
        for (value, canonical, alternate) in table {
            assert_eq!(value.to_string(), canonical);
            assert_eq!(parse(canonical).to_string(), canonical);
            if !alternate.is_empty() {
                assert_eq!(parse(alternate).to_string(), canonical, "{alternate}");
            }
            if !value.is_zero() {
                let negated = Quantity {
                    nanos: -value.nanos,
                    ..value
                };
                assert_eq!(negated.to_string(), format!("-{canonical}"));
            }
        }
    }

    #[test]
    fn parse_emit_and_bytes() {
        // (input, canonical, to_bytes); TestQuantityParseEmit plus storage cases.
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<u64>)] = &[
            ("1Ki", "1Ki", Some(1024)), ("1Mi", "1Mi", Some(1 << 20)),
            ("1Gi", "1Gi", Some(1 << 30)), ("1024Mi", "1Gi", Some(1 << 30)),
            ("1000M", "1G", Some(1_000_000_000)), (".001Ki", "1024m", Some(2)),
            (".000001Ki", "1024u", Some(1)), (".000000001Ki", "1024n", Some(1)),
            (".000000000001Ki", "2n", Some(1)),
            ("0.5Gi", "512Mi", Some(1 << 29)), (".5Gi", "512Mi", Some(1 << 29)),
            ("1.5Gi", "1536Mi", Some(1610612736)), ("5.Gi", "5Gi", Some(5 << 30)),
            ("+1Gi", "1Gi", Some(1 << 30)), ("1024Ki", "1Mi", Some(1 << 20)),
            ("1e3", "1e3", Some(1000)), ("1000e0", "1e3", Some(1000)),
            ("100m", "100m", Some(1)), ("1.1", "1100m", Some(2)), ("0", "0", Some(0)),
            ("-0", "0", Some(0)), ("0.0001", "100u", Some(1)), ("1.2345", "1234500u", Some(2)),
            ("1000", "1k", Some(1000)), ("1500", "1500", Some(1500)),
            ("1.5k", "1500", Some(1500)), ("1000000", "1M", Some(1_000_000)),
            ("2048", "2048", Some(2048)), ("1E", "1E", Some(1_000_000_000_000_000_000)),
            ("1e18", "1e18", Some(1_000_000_000_000_000_000)),
            ("1e19", "10e18", Some(10_000_000_000_000_000_000)),
            ("9223372036854775807", "9223372036854775807", Some(i64::MAX as u64)),
            ("8Ei", "9223372036854775807", Some(i64::MAX as u64)),
            ("16Ei", "9223372036854775807", Some(i64::MAX as u64)),
            ("18446744073709551615", "18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", "18446744073709551616", None),
            ("19E", "19E", None), ("1e-999999", "1e-9", Some(1)),
            ("-1Gi", "-1Gi", None), ("-100m", "-100m", None),
        ];
        for &(text, canonical, bytes) in table {
            let q = parse(text);
            assert_eq!(q.to_string(), canonical, "{text}");
            match (q.to_bytes(), bytes) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{text}"),
                (Err(e), None) => assert!(e.to_string().contains(&format!("{canonical:?}"))),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(matches!(
            parse("-1Gi").to_bytes(),
            Err(QuantityError::Negative { .. })
        ));
        assert!(matches!(
            parse("19E").to_bytes(),
            Err(QuantityError::ExceedsU64 { .. })
        ));
    }

    #[test]
    fn format_bytes_examples() {
        #[rustfmt::skip]
        let table = [
            (0, "0"), (1, "1"), (512, "512"), (1000, "1k"), (1023, "1023"), (2000, "2000"),
            (1_000_000, "1000000"), (1024, "1Ki"), (1536, "1536"), (2048, "2Ki"),
            (1610612736, "1536Mi"), (12884901888, "12Gi"), (1 << 60, "1Ei"), (1 << 62, "4Ei"),
            (u64::MAX, "18446744073709551615"), (u64::MAX - 1023, "18014398509481983Ki"),
        ];
        for (bytes, want) in table {
            assert_eq!(format_bytes(bytes), want);
        }
    }

    #[test]
    fn invalid_inputs_name_the_text() {
        #[rustfmt::skip]
        let invalid = [
            // From TestQuantityParse.
            "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-",
            " 1", "1 ",
            // Kubernetes' scanner reads these as 0; we require digits.
            "Gi", "k", "+", "-", ".", "-.",
            // Others.
            "", " ", "1.2.3", "2XGi", "1K", "1ki", "--1", "1Gi ", "1Gi\n", "0x10", "1e",
            "1e3Ki", "1e999999Ei", "1e99999999999999999999", "1_000", "１", "1.5 Gi",
        ];
        for text in invalid {
            let err = Quantity::parse(text).expect_err(text);
            assert!(
                matches!(err, QuantityError::Invalid { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        let err = Quantity::parse("2XGi").expect_err("2XGi");
        assert_eq!(
            err.to_string(),
            r#"invalid quantity "2XGi": unknown suffix "XGi""#
        );
        for text in [
            "1e999999",
            "1e30",
            "-1e30",
            &"9".repeat(40),
            &"9".repeat(100_000),
        ] {
            let err = Quantity::parse(text).expect_err(text);
            assert_eq!(
                err,
                QuantityError::TooLarge {
                    text: text.to_string()
                }
            );
        }
        assert_eq!(
            parse("-1Gi").to_bytes().expect_err("negative").to_string(),
            r#"quantity "-1Gi" is negative"#
        );
    }

    #[test]
    fn equality_ordering_and_hash_ignore_format() {
        use std::collections::HashSet;
        assert_eq!(parse("1Gi"), parse("1073741824"));
        assert_eq!(parse("1e3"), parse("1k"));
        assert_eq!(Quantity::from_bytes(1 << 30), parse("1Gi"));
        assert!(parse("10000T") > parse("100Gi"));
        assert!(parse("100m") > parse("50m"));
        assert!(parse("-1Gi") < parse("0"));
        let set: HashSet<Quantity> = ["1Gi", "1024Mi", "1073741824", "1.073741824G"]
            .iter()
            .map(|t| parse(t))
            .collect();
        assert_eq!(set.len(), 1);
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Spec {
        storage: Quantity,
    }

    #[test]
    fn serde_round_trip() {
        let from_str: Spec = serde_json::from_str(r#"{"storage":"10Gi"}"#).expect("string");
        let from_num: Spec = serde_json::from_str(r#"{"storage":10737418240}"#).expect("num");
        assert_eq!(from_str.storage, from_num.storage);
        assert_eq!(from_num.storage.to_bytes(), Ok(10 << 30));
        assert_eq!(from_num.storage.format(), Dec);
        assert_eq!(
            serde_json::to_string(&from_str).expect("ser"),
            r#"{"storage":"10Gi"}"#
        );
        assert_eq!(
            serde_json::to_string(&from_num).expect("ser"),
            r#"{"storage":"10737418240"}"#
        );
        let float: Quantity = serde_json::from_str("1.5").expect("float");
        assert_eq!(float.to_string(), "1500m");
        let neg: Quantity = serde_json::from_str("-1").expect("negative");
        assert!(neg.is_negative());
        // Like UnmarshalJSON, surrounding whitespace inside the string is trimmed.
        let padded: Quantity = serde_json::from_str(r#"" 1Gi ""#).expect("padded");
        assert_eq!(padded.to_string(), "1Gi");
        let err = serde_json::from_str::<Spec>(r#"{"storage":"2XGi"}"#).expect_err("2XGi");
        assert!(err.to_string().contains(r#""2XGi""#), "{err}");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert!(serde_json::from_str::<Quantity>("1e400").is_err());
    }

    #[test]
    fn whole_numbers_take_the_short_path_and_the_rest_do_not() {
        assert_eq!(whole_nanos("100", "", 0, 30), Some((100u128 << 30) * NANO));
        assert_eq!(whole_nanos("5", "", 12, 0), Some(5 * 10u128.pow(21)));
        assert_eq!(whole_nanos("1", "5", 0, 30), None, "a fraction");
        assert_eq!(
            whole_nanos("5", "", -3, 0),
            Some(5_000_000),
            "5m is whole in nanos"
        );
        assert_eq!(whole_nanos("5", "", -12, 0), None, "finer than a nano");
        assert_eq!(
            whole_nanos("9223372036854775807", "", 0, 60),
            None,
            "overflow"
        );
        assert_eq!(whole_nanos("", "", 0, 0), None);
    }

    /// Valid quantity strings built from the grammar.
    fn quantity_text() -> impl Strategy<Value = String> {
        let number = prop_oneof!["[0-9]{1,12}", "[0-9]{1,10}\\.[0-9]{0,10}", "\\.[0-9]{1,10}",];
        let suffix = prop_oneof![
            Just(String::new()),
            "(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)",
            "[eE][+-]?[0-9]{1,2}",
        ];
        ("[+-]?", number, suffix).prop_map(|(s, n, x)| format!("{s}{n}{x}"))
    }

    proptest! {
        #[test]
        fn format_bytes_round_trips(bytes in 0..=i64::MAX as u64) {
            prop_assert_eq!(parse(&format_bytes(bytes)).to_bytes(), Ok(bytes));
        }

        #[test]
        fn format_bytes_above_i64_is_exact_unless_capped(bytes in any::<u64>()) {
            let text = format_bytes(bytes);
            let back = parse(&text).to_bytes();
            // Only a binary suffix triggers Kubernetes' 2^63-1 cap.
            if bytes > i64::MAX as u64 && text.ends_with('i') {
                prop_assert_eq!(back, Ok(i64::MAX as u64));
            } else {
                prop_assert_eq!(back, Ok(bytes));
            }
        }

        #[test]
        fn canonical_form_round_trips(text in quantity_text()) {
            let q = match Quantity::parse(&text) {
                Ok(q) => q,
                // Only a huge exponent may fail; never a syntax error.
                Err(QuantityError::TooLarge { .. }) => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let canonical = q.to_string();
            let again = parse(&canonical);
            prop_assert_eq!(&again, &q);
            prop_assert_eq!(again.to_string(), canonical);
        }

        #[test]
        fn the_whole_number_path_agrees_with_the_digit_path(
            int in "[0-9]{1,20}",
            suffix in "(|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e-?[0-9]{1,2}|E-?[0-9]{1,2})",
        ) {
            let (_, exp10, exp2) = interpret_suffix(&suffix).expect("a valid suffix");
            if let Some(fast) = whole_nanos(&int, "", exp10, exp2) {
                prop_assert_eq!(Some(fast), digits_nanos(&int, "", exp10, exp2));
            }
        }

        #[test]
        fn ordering_agrees_with_bytes(
            a in 0u64..1 << 40, sa in 0usize..4, b in 0u64..1 << 40, sb in 0usize..4,
        ) {
            const SUFFIXES: [(&str, u64); 4] = [("", 1), ("k", 1000), ("Ki", 1024), ("Mi", 1 << 20)];
            let qa = parse(&format!("{a}{}", SUFFIXES[sa].0));
            let qb = parse(&format!("{b}{}", SUFFIXES[sb].0));
            let (ba, bb) = (a * SUFFIXES[sa].1, b * SUFFIXES[sb].1);
            prop_assert_eq!(qa.to_bytes(), Ok(ba));
            prop_assert_eq!(qa.cmp(&qb), ba.cmp(&bb));
            prop_assert_eq!(qa == qb, ba == bb);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,24}|[-+.0-9eEinumkKMGTP ]{0,24}") {
            if let Ok(q) = Quantity::parse(&text) {
                prop_assert_eq!(parse(&q.to_string()), q);
            }
        }
    }
}
