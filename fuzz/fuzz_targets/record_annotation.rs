//! The PVC annotation `autoresize.cnpg.io/events` (resize records anyone
//! with PVC patch rights can edit): never a panic, alone or when the engine
//! plans with it.
#![no_main]

#[path = "common.rs"]
mod common;

use cnpg_autoresize::engine::journal::parse_annotation;
use cnpg_autoresize::manager::plan::plan_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_annotation(&text);
    let mut snapshot = common::snapshot();
    snapshot["pvcs"][0]["metadata"]["annotations"] =
        serde_json::json!({"autoresize.cnpg.io/events": text});
    let planned = plan_text("annotation", &snapshot.to_string(), common::now());
    // A snapshot with a readable annotation always plans.
    if parsed.is_ok() {
        assert!(planned.is_ok(), "{text}: {planned:?}");
    }
});
