//! Kubernetes quantities (PVC sizes, `limit`, `step`, `minAvailable`):
//! never a panic; a whole number of bytes reads back as itself (above
//! 2^63-1, written with a binary suffix, as Kubernetes' cap of 2^63-1).
#![no_main]

use k8s_quantity::{format_bytes, Quantity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(q) = Quantity::parse(&text) else {
        return;
    };
    let _ = (q.is_negative(), q.is_zero(), q.format());
    if let Ok(bytes) = q.to_bytes() {
        let written = format_bytes(bytes);
        let again = Quantity::parse(&written).and_then(|q| q.to_bytes());
        // Kubernetes caps a binary-suffixed quantity at 2^63-1 (k8s issue
        // #140674); the property test `format_bytes_above_i64_is_exact_unless_capped`
        // holds the same rule.
        let expected = if bytes > i64::MAX as u64 && written.ends_with('i') {
            i64::MAX as u64
        } else {
            bytes
        };
        assert_eq!(again.ok(), Some(expected), "{text} -> {bytes} -> {written}");
    }
});
