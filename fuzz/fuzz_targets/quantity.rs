//! Kubernetes quantities (PVC sizes, `limit`, `step`, `minAvailable`):
//! never a panic; a whole number of bytes reads back as itself.
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
        assert_eq!(again.ok(), Some(bytes), "{text} -> {bytes} -> {written}");
    }
});
