//! Exact Kubernetes quantity comparison ("1Gi" == "1073741824").
//!
//! Values are parsed to `num / 10^scale` with 128-bit integers, so no
//! floating point rounding can make two different sizes compare equal.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    num: i128,
    scale: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(text.to_string());
        let s = text.trim();
        let (neg, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let split = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(split);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(err());
        }
        let mut num: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            let d = i128::from(c.to_digit(10).ok_or_else(err)?);
            num = num
                .checked_mul(10)
                .and_then(|n| n.checked_add(d))
                .ok_or_else(err)?;
        }
        let mut scale = u32::try_from(frac_part.len()).map_err(|_| err())?;
        // (power of ten, power of two) the suffix multiplies by.
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            other if other.starts_with(['e', 'E']) => {
                let e: i32 = other[1..].parse().map_err(|_| err())?;
                if e.abs() > 36 {
                    return Err(err());
                }
                (e, 0)
            }
            _ => return Err(err()),
        };
        num = num.checked_mul(1i128 << exp2).ok_or_else(err)?;
        if exp10 >= 0 {
            num = num
                .checked_mul(10i128.checked_pow(exp10.unsigned_abs()).ok_or_else(err)?)
                .ok_or_else(err)?;
        } else {
            scale += exp10.unsigned_abs();
        }
        if neg {
            num = -num;
        }
        Ok(Self { num, scale })
    }

    /// Exact comparison; `None` only if the common scale overflows 128 bits.
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        let scale = self.scale.max(other.scale);
        let a = self
            .num
            .checked_mul(10i128.checked_pow(scale - self.scale)?)?;
        let b = other
            .num
            .checked_mul(10i128.checked_pow(scale - other.scale)?)?;
        Some(a.cmp(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn equal_across_notations() {
        assert_eq!(q("1Gi").compare(&q("1073741824")), Some(Ordering::Equal));
        assert_eq!(q("1G").compare(&q("1e9")), Some(Ordering::Equal));
        assert_eq!(q("0.5Gi").compare(&q("512Mi")), Some(Ordering::Equal));
        assert_eq!(q("1500m").compare(&q("1.5")), Some(Ordering::Equal));
        assert_eq!(q("1Ei").compare(&q("1024Pi")), Some(Ordering::Equal));
    }

    #[test]
    fn ordering_is_exact() {
        assert_eq!(q("1Gi").compare(&q("1073741825")), Some(Ordering::Less));
        assert_eq!(q("1Gi").compare(&q("1G")), Some(Ordering::Greater));
        assert_eq!(q("-1").compare(&q("0")), Some(Ordering::Less));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "1GB", "1..2", "abc", "1e", "1x"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
