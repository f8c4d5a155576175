//! `plan` snapshot files (YAML or JSON): never a panic, whatever the
//! Cluster, policy, PVCs and reports say.
#![no_main]

#[path = "common.rs"]
mod common;

use cnpg_autoresize::manager::plan::plan_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = plan_text("snapshot", text, common::now());
});
