//! Just enough of Kubernetes `resource.Quantity` for storage sizes.
//!
//! The simulator compares `spec.resources.requests.storage` with
//! `status.capacity.storage`; both are quantities such as `64Mi`, `1Gi`,
//! `500M`, `1.5Gi` or plain bytes. Fractional byte results are rounded up, as
//! the API server does for storage.

use anyhow::{bail, Context, Result};

/// Parse a storage quantity into bytes.
pub fn parse_bytes(q: &str) -> Result<u64> {
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        bail!("quantity {q:?} has no number");
    }
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..]
                .parse()
                .with_context(|| format!("bad exponent in quantity {q:?}"))?;
            10f64.powi(exp)
        }
        other => bail!("unknown suffix {other:?} in quantity {q:?}"),
    };
    // Integers are handled exactly; only fractions go through f64.
    if let Ok(n) = num.parse::<u64>() {
        if multiplier >= 1.0 && multiplier.fract() == 0.0 {
            return n
                .checked_mul(multiplier as u64)
                .with_context(|| format!("quantity {q:?} overflows u64 bytes"));
        }
    }
    let value: f64 = num
        .parse()
        .with_context(|| format!("bad number in quantity {q:?}"))?;
    if value < 0.0 {
        bail!("negative quantity {q:?}");
    }
    Ok((value * multiplier).ceil() as u64)
}

/// Format bytes as the most compact exact binary-suffixed quantity
/// (`64Mi`, `1Gi`, or plain bytes).
pub fn format_bytes(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = "";
    for s in SUFFIXES {
        if value == 0 || !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = s;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("500M").unwrap(), 500_000_000);
        assert_eq!(parse_bytes("12345").unwrap(), 12345);
        assert_eq!(parse_bytes("1e3").unwrap(), 1000);
        assert!(parse_bytes("2XGi").is_err());
        assert!(parse_bytes("Gi").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_bytes(64 << 20), "64Mi");
        assert_eq!(format_bytes(3 << 29), "1536Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
    }
}
