//! A container's resource limits as the kubelet enforces them: a CPU limit
//! becomes a CFS quota (`limit × 100 ms` of CPU time per 100 ms period), a
//! memory limit a hard cgroup limit (over it, the kernel's OOM killer).
//!
//! cgroup v2 (`cpu.max`, `memory.max`) or v1 (`cpu.cfs_quota_us`,
//! `memory.limit_in_bytes`), whichever the machine mounts at
//! `/sys/fs/cgroup`. Needs root; the group is removed on drop (its
//! processes moved back to the root group first).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// The kubelet's CFS period.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Throttling counters of a CPU-limited group (`cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuThrottling {
    /// Enforcement periods in which the group ran.
    pub periods: u64,
    /// Periods in which it hit its quota.
    pub throttled_periods: u64,
    /// Time spent throttled.
    pub throttled_usec: u64,
}

impl CpuThrottling {
    /// Counters since `earlier`.
    pub fn since(&self, earlier: &CpuThrottling) -> CpuThrottling {
        CpuThrottling {
            periods: self.periods.saturating_sub(earlier.periods),
            throttled_periods: self
                .throttled_periods
                .saturating_sub(earlier.throttled_periods),
            throttled_usec: self.throttled_usec.saturating_sub(earlier.throttled_usec),
        }
    }
}

#[derive(Debug)]
enum Layout {
    V2 { dir: PathBuf },
    V1 { cpu: PathBuf, memory: PathBuf },
}

/// One container's cgroup with its limits.
#[derive(Debug)]
pub struct ContainerCgroup {
    layout: Layout,
}

impl ContainerCgroup {
    /// A new group `name` (unique per test run) with a CPU limit in
    /// millicores and a memory limit in bytes (`None`: unlimited).
    pub fn create(
        name: &str,
        cpu_millis: Option<u64>,
        memory_bytes: Option<u64>,
    ) -> Result<ContainerCgroup> {
        if !crate::is_root() {
            bail!("cgroup limits need root");
        }
        let root = Path::new(ROOT);
        let layout = if root.join("cgroup.controllers").is_file() {
            let dir = root.join(name);
            // The controllers must be enabled for children of the root.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu +memory");
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Layout::V2 { dir }
        } else if root.join("cpu/cpu.cfs_quota_us").is_file() {
            // Below our own groups, so limits set on us still apply.
            let cpu = own_v1_group("cpu")?.join(name);
            let memory = own_v1_group("memory")?.join(name);
            std::fs::create_dir(&cpu).with_context(|| format!("creating {}", cpu.display()))?;
            std::fs::create_dir(&memory)
                .with_context(|| format!("creating {}", memory.display()))?;
            Layout::V1 { cpu, memory }
        } else {
            bail!("no cgroup v2 and no cgroup v1 cpu controller under {ROOT}");
        };
        let group = ContainerCgroup { layout };
        if let Some(millis) = cpu_millis {
            // The kubelet's conversion, with its 1 ms minimum quota.
            let quota = (millis * CFS_PERIOD_US / 1000).max(1000);
            match &group.layout {
                Layout::V2 { dir } => {
                    write(&dir.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?
                }
                Layout::V1 { cpu, .. } => {
                    write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        if let Some(bytes) = memory_bytes {
            match &group.layout {
                Layout::V2 { dir } => write(&dir.join("memory.max"), &bytes.to_string())?,
                Layout::V1 { memory, .. } => {
                    write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?
                }
            }
        }
        Ok(group)
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> Result<()> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The CPU throttling counters so far.
    pub fn throttling(&self) -> Result<CpuThrottling> {
        let (file, periods, throttled, usec_key, scale) = match &self.layout {
            Layout::V2 { dir } => (
                dir.join("cpu.stat"),
                "nr_periods",
                "nr_throttled",
                "throttled_usec",
                1,
            ),
            // v1 reports nanoseconds.
            Layout::V1 { cpu, .. } => (
                cpu.join("cpu.stat"),
                "nr_periods",
                "nr_throttled",
                "throttled_time",
                1000,
            ),
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let value = |key: &str| -> u64 {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(CpuThrottling {
            periods: value(periods),
            throttled_periods: value(throttled),
            throttled_usec: value(usec_key) / scale,
        })
    }

    /// The group's peak memory use (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`), page cache included as the kubelet counts it.
    pub fn memory_peak_bytes(&self) -> Result<u64> {
        let file = match &self.layout {
            Layout::V2 { dir } => dir.join("memory.peak"),
            Layout::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: {text:?}", file.display()))
    }

    fn dirs(&self) -> Vec<&Path> {
        match &self.layout {
            Layout::V2 { dir } => vec![dir],
            Layout::V1 { cpu, memory } => vec![cpu, memory],
        }
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        for dir in self.dirs() {
            // Processes still inside go back to the parent, then the group goes.
            let parent = dir.parent().unwrap_or(Path::new(ROOT));
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(parent.join("cgroup.procs"), pid);
                }
            }
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a cgroup");
            }
        }
    }
}

/// This process's group of cgroup v1 `controller` (`/proc/self/cgroup`).
fn own_v1_group(controller: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    // Lines are `<id>:<controllers>:<path>`.
    let path = text
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            rest.split_once(':')
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
        .map(|(_, path)| path.trim_start_matches('/').to_string())
        .with_context(|| format!("no cgroup v1 {controller} controller in /proc/self/cgroup"))?;
    Ok(Path::new(ROOT).join(controller).join(path))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}
