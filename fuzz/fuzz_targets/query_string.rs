//! `/v1/status` and `/v1/decisions` query strings: never a panic, and what
//! is accepted is within range.
#![no_main]

use cnpg_autoresize::manager::http::{parse_long_poll, MAX_WAIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    if let Ok(poll) = parse_long_poll(&query) {
        assert!(poll.wait <= MAX_WAIT, "{query}: {:?}", poll.wait);
        if let Some(instance) = &poll.instance {
            assert!(!instance.is_empty() && instance.len() <= 253, "{query}");
        }
    }
});
