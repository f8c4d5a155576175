//! Survival and waste on realistic workloads, over the pure engine: every
//! workload of `trace/sim.rs` under every configuration (this project's
//! defaults; with `timeToFull` and `horizon`; the CloudNativePG fork's and
//! topolvm pvc-autoresizer's detection on the same engine) and every
//! storage (expansion latency 5 s, 30 s, 5 min; 5 min with one
//! modification per 6 h, as EBS allows). Deterministic: simulated time, no
//! process; the same run gives the same table.
//!
//! A plain `main` (no criterion).
//!
//! ```sh
//! cargo bench --bench trace
//! TRACE_STORAGES=30s TRACE_WORKLOADS=steady,runaway cargo bench --bench trace
//! TRACE_STORAGES=30s TRACE_DAYS=1.6 TRACE_CONFIGS=defaults cargo bench --bench trace   # the CI table
//! TRACE_EXTRA='ttf1h={"enabled":true,"triggers":{"timeToFull":"1h"}}' cargo bench --bench trace
//! ```
//!
//! It prints the table (Markdown), checks the defaults against the targets
//! of docs/benchmarks.md, and draws `docs/img/trace.png` (size, used and the
//! oracle over time for two workloads; `TRACE_PLOT=` skips it). The plot's
//! text needs a TrueType font: `TRACE_FONT`, else what `fc-match sans-serif`
//! names (Debian: `fonts-dejavu-core`).

#[path = "trace/sim.rs"]
mod sim;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use sim::{Outcome, Storage, STORAGES};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> Result<()> {
    let storages: Vec<Storage> = match std::env::var("TRACE_STORAGES") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                STORAGES
                    .iter()
                    .find(|s| s.name == name.trim())
                    .copied()
                    .with_context(|| format!("TRACE_STORAGES: unknown {name:?}"))
            })
            .collect::<Result<_>>()?,
        Err(_) => STORAGES.to_vec(),
    };
    let workloads: Option<Vec<String>> = std::env::var("TRACE_WORKLOADS")
        .ok()
        .map(|l| l.split(',').map(|w| w.trim().to_string()).collect());
    let only: Option<Vec<&str>> = workloads
        .as_ref()
        .map(|w| w.iter().map(String::as_str).collect());
    // Extra configurations to compare: `name={json resize block};...`.
    let mut configurations = sim::configurations();
    if let Ok(extra) = std::env::var("TRACE_EXTRA") {
        for item in extra.split(';').filter(|i| !i.trim().is_empty()) {
            let (name, json) = item
                .split_once('=')
                .with_context(|| format!("TRACE_EXTRA: {item:?} is not name=json"))?;
            configurations.push(sim::Configuration {
                name: name.trim().to_string(),
                resize: serde_json::from_str(json)
                    .with_context(|| format!("TRACE_EXTRA: {name}"))?,
                detection: sim::Detection::Probe { interval: 1.0 },
            });
        }
    }
    if let Ok(names) = std::env::var("TRACE_CONFIGS") {
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        configurations.retain(|c| names.contains(&c.name.as_str()));
    }
    let days: Option<f64> = std::env::var("TRACE_DAYS")
        .ok()
        .and_then(|d| d.parse().ok());
    let started = Instant::now();
    let rows = sim::sweep(&sim::Sweep {
        storages: &storages,
        workloads: only.as_deref(),
        configurations: &configurations,
        days,
    });
    println!("{}", sim::table(&rows));
    println!(
        "{} runs in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    println!();
    for line in sim::targets(&rows) {
        println!("{line}");
    }
    let plot = std::env::var("TRACE_PLOT").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/img/trace.png")
            .display()
            .to_string()
    });
    if !plot.is_empty() {
        draw(&storages, Path::new(&plot))?;
        println!("plot: {plot}");
    }
    let mut command = format!(
        "TRACE_STORAGES={}",
        storages
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(",")
    );
    for knob in [
        "TRACE_WORKLOADS",
        "TRACE_CONFIGS",
        "TRACE_DAYS",
        "TRACE_EXTRA",
    ] {
        if let Ok(v) = std::env::var(knob) {
            command.push_str(&format!(" {knob}='{v}'"));
        }
    }
    println!("command: {command} cargo bench --bench trace");
    Ok(())
}

/// The font for the plot's text.
fn font() -> Result<Vec<u8>> {
    let path = match std::env::var_os("TRACE_FONT") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = std::process::Command::new("fc-match")
                .args(["-f", "%{file}", "sans-serif"])
                .output()
                .context("no TRACE_FONT and no fc-match to find a font")?;
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    std::fs::read(&path).with_context(|| format!("reading the font {}", path.display()))
}

/// Size, used and the oracle over time, for two workloads on 30 s storage
/// under the defaults.
fn draw(storages: &[Storage], path: &Path) -> Result<()> {
    let storage = storages
        .iter()
        .find(|s| s.name == "30s")
        .copied()
        .unwrap_or(STORAGES[1]);
    let font: &'static [u8] = Box::leak(font()?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the font does not load"))?;
    let defaults = &sim::configurations()[0];
    let picked = ["diurnal", "bulk-load"];
    let runs: Vec<(sim::Workload, Outcome)> = sim::workloads(&storage)
        .into_iter()
        .filter(|w| picked.contains(&w.name))
        .map(|w| {
            let oracle = sim::Oracle::of(&w, storage);
            let outcome = sim::simulate(&w, defaults, storage, &oracle);
            (w, outcome)
        })
        .collect();
    if runs.len() != picked.len() {
        bail!("the plotted workloads are missing");
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (panel, (w, o)) in panels.iter().zip(&runs) {
        let hours = o.curve.last().map_or(1.0, |c| c.0);
        let top = o
            .curve
            .iter()
            .map(|c| c.1.max(c.2).max(c.3))
            .fold(0.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{} ({} storage, defaults): {}",
                    w.name, storage.name, w.about
                ),
                ("sans-serif", 13),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..hours, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("GiB")
            .label_style(("sans-serif", 12))
            .draw()?;
        let series = [
            ("used", BLUE, 1usize),
            ("size (defaults)", RED, 2),
            ("oracle", RGBColor(0, 150, 0), 3),
        ];
        for (label, color, i) in series {
            let color = color.to_rgba();
            chart
                .draw_series(LineSeries::new(
                    o.curve.iter().map(|c| {
                        let y = match i {
                            1 => c.1,
                            2 => c.2,
                            _ => c.3,
                        };
                        (c.0, y)
                    }),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
