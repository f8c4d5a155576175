//! The trace benchmark's figures, held exactly (docs/benchmarks.md#trace):
//! the first 38 hours of every workload (the first resize of steady growth
//! included) at default settings on storage that expands in 30 s. The run is deterministic
//! (simulated time, the pure engine), so a change to the decision, the
//! forecast or the probe's cadence that moves a figure fails here. The full
//! sweep (a week, four storages, the fork's and topolvm's detection, the
//! plot) is `cargo bench --bench trace`; `TRACE_STORAGES=30s TRACE_DAYS=1.6
//! TRACE_CONFIGS=defaults` prints this table.

#[path = "../../benches/trace/sim.rs"]
mod sim;

/// What the bench prints for the same sweep; update with docs/benchmarks.md.
const EXPECTED: &str = "\
| workload | storage | configuration | fills | min full | min >95% | resizes (max/24h) | GiB·h | oracle GiB·h | waste GiB·h | ×oracle | final | oracle final |\n\
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
| steady | 30s | defaults | 0 | 0.0 | 0.0 | 1 (1) | 3929 | 3840 | 89 | 1.02 | 120Gi | 100Gi |\n\
| diurnal | 30s | defaults | 0 | 0.0 | 0.0 | 1 (1) | 3868 | 3840 | 28 | 1.01 | 120Gi | 100Gi |\n\
| bulk-load | 30s | defaults | 0 | 0.0 | 0.0 | 2 (2) | 10959 | 7680 | 3279 | 1.43 | 288Gi | 200Gi |\n\
| deleted-burst | 30s | defaults | 0 | 0.0 | 0.0 | 0 (0) | 3840 | 3840 | 0 | 1.00 | 100Gi | 100Gi |\n\
| vacuum-full | 30s | defaults | 0 | 0.0 | 0.0 | 0 (0) | 3840 | 3840 | 0 | 1.00 | 100Gi | 100Gi |\n\
| wal-sawtooth | 30s | defaults | 0 | 0.0 | 0.0 | 0 (0) | 307 | 307 | 0 | 1.00 | 8Gi | 8Gi |\n\
| runaway | 30s | defaults | 0 | 0.0 | 0.0 | 4 (3) | 425 | 376 | 50 | 1.13 | 21236Mi | 15580Mi |\n\
| noisy | 30s | defaults | 0 | 0.0 | 0.0 | 1 (1) | 3884 | 3840 | 44 | 1.01 | 120Gi | 100Gi |\n\
";

#[test]
fn the_trace_table_on_30s_storage_holds_its_figures() {
    let configurations: Vec<_> = sim::configurations().into_iter().take(1).collect();
    let rows = sim::sweep(&sim::Sweep {
        storages: &[sim::STORAGES[1]],
        workloads: None,
        configurations: &configurations,
        days: Some(1.6),
    });
    let table = sim::table(&rows);
    assert!(
        table == EXPECTED,
        "the trace figures moved; if that is intended, update EXPECTED and docs/benchmarks.md:\n{table}"
    );
}
