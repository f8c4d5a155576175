//! A peer's `/v1/status` answer: never a panic; a report the leader keeps
//! is within range, and the planner's use of it (its age, the decision)
//! does not panic either.
#![no_main]

#[path = "common.rs"]
mod common;

use cnpg_autoresize::actors::planner::peers::{read_answer, Received, Verdict};
use cnpg_autoresize::manager::plan::plan_text;
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(Verdict::Report(status)) = read_answer("pg-1", data) else {
        return;
    };
    assert!(status.report.check().is_ok());
    let received = Received {
        report: status.report.clone(),
        at: Instant::now(),
    };
    let _ = received.sampled_at();
    assert!(received.aged().age_seconds.is_some_and(f64::is_finite));
    let mut snapshot = common::snapshot();
    let Ok(report) = serde_json::to_value(&status.report) else {
        return;
    };
    snapshot["instances"]["pg-1"] = report;
    let _ = plan_text("peer", &snapshot.to_string(), common::now());
});
