//! Container limits as the kubelet sets them.

use cnpg_testbed::cgroup::ContainerCgroup;
use cnpg_testbed::is_root;
use std::time::{Duration, Instant};

/// CPU time of process `pid` so far (utime + stime, clock ticks -> seconds).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    ticks / hz
}

#[test]
fn a_cpu_limit_throttles_a_busy_process_to_its_quota() {
    let name = format!("cnpg-testbed-{}-cpu", std::process::id());
    if !is_root() {
        let err = ContainerCgroup::create(&name, Some(100), None).unwrap_err();
        assert!(format!("{err:#}").contains("need root"), "{err:#}");
        return;
    }
    let group = ContainerCgroup::create(&name, Some(100), None).unwrap();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    group.add(child.id()).unwrap();
    let before = group.throttling().unwrap();
    let cpu0 = cpu_seconds(child.id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(child.id()) - cpu0;
    let wall = started.elapsed().as_secs_f64();
    let throttling = group.throttling().unwrap().since(&before);
    child.kill().unwrap();
    child.wait().unwrap();
    // 100m: at most 10 ms per 100 ms period, plus a tick of measurement error.
    assert!(used / wall < 0.15, "used {used:.3} s of CPU in {wall:.2} s");
    assert!(
        throttling.throttled_periods * 2 > throttling.periods,
        "{throttling:?}"
    );
}

#[test]
fn memory_is_counted_and_over_the_limit_the_process_is_killed() {
    use std::os::unix::process::ExitStatusExt;
    if !is_root() {
        return assert!(ContainerCgroup::create("x", None, Some(1 << 20)).is_err());
    }
    let run = |limit: u64| {
        let name = format!("cnpg-testbed-{}-mem-{limit}", std::process::id());
        let group = ContainerCgroup::create(&name, None, Some(limit)).unwrap();
        // Allocates a 32 MiB buffer once it is in the group.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 0.3; exec dd if=/dev/zero of=/dev/null bs=32M count=4 2>/dev/null",
            ])
            .spawn()
            .unwrap();
        group.add(child.id()).unwrap();
        let status = child.wait().unwrap();
        (status, group.memory_peak_bytes().unwrap())
    };
    let (status, peak) = run(256 << 20);
    assert!(status.success(), "{status:?}");
    assert!(peak >= 32 << 20, "peak {peak}");
    let (status, peak) = run(16 << 20);
    assert_eq!(status.signal(), Some(nix::libc::SIGKILL), "{status:?}");
    assert!(peak <= 16 << 20, "peak {peak}");
}
