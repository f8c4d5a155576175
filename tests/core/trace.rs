//! The trace benchmark's figures, held exactly (docs/benchmarks.md#trace):
//! the first two days of every workload under this project's two
//! configurations on storage that expands in 30 s. The run is deterministic
//! (simulated time, the pure engine), so a change to the decision, the
//! forecast or the probe's cadence that moves a figure fails here. The full
//! sweep (a week, four storages, the fork's and topolvm's detection, the
//! plot) is `cargo bench --bench trace`; `TRACE_STORAGES=30s TRACE_DAYS=2
//! TRACE_CONFIGS=defaults,ttf+horizon` prints this table.

#[path = "../../benches/trace/sim.rs"]
mod sim;

/// What the bench prints for the same sweep; update with docs/benchmarks.md.
const EXPECTED: &str = "\
";

#[test]
fn the_trace_table_on_30s_storage_holds_its_figures() {
    let configurations: Vec<_> = sim::configurations().into_iter().take(2).collect();
    let rows = sim::sweep(&sim::Sweep {
        storages: &[sim::STORAGES[1]],
        workloads: None,
        configurations: &configurations,
        days: Some(2.0),
    });
    let table = sim::table(&rows);
    assert!(
        table == EXPECTED,
        "the trace figures moved; if that is intended, update EXPECTED and docs/benchmarks.md:\n{table}"
    );
}
