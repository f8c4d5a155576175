//! The trace benchmark's figures, held exactly (docs/benchmarks.md#trace):
//! every workload under every configuration on storage that expands in
//! 30 s. The run is deterministic (simulated time, the pure engine), so a
//! change to the decision, the forecast or the probe's cadence that moves
//! a figure fails here. The full sweep, with more storages and the plot,
//! is `cargo bench --bench trace`.

#[path = "../../benches/trace/sim.rs"]
mod sim;

/// From `cargo bench --bench trace` (the 30s rows); update both together.
const EXPECTED: &str = "\
";

#[test]
fn the_trace_table_on_30s_storage_holds_its_figures() {
    let rows = sim::sweep(&sim::Sweep {
        storages: &[sim::STORAGES[1]],
        workloads: None,
        configurations: &sim::configurations(),
        days: None,
    });
    let table = sim::table(&rows);
    assert!(
        table == EXPECTED,
        "the trace figures moved; if that is intended, update EXPECTED and docs/benchmarks.md:\n{table}"
    );
}
