//! Durations: Go durations of the configuration (`cooldown`, `timeToFull`,
//! `horizon`) and the `run` flags: never a panic; flags are positive.
#![no_main]

use cnpg_autoresize::api::duration::parse_go_duration;
use cnpg_autoresize::manager::run::parse_duration;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_go_duration(&text);
    if let Ok(d) = parse_duration(&text) {
        assert!(d > Duration::ZERO, "{text}");
    }
});
