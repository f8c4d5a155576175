//! The end-to-end harness: a scenario (sandbox, volumes, PostgreSQL) and one
//! real `cnpg-autoresize run` process per instance, with the chart's Role
//! enforced for the managers' identity.

use cnpg_testbed::scenario::{ManagerOptions, ManagerProcess, Scenario, ScenarioBuilder};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// The Role the Helm chart renders for the manager (kept in sync by hack/check-chart.sh).
pub const MANAGER_ROLE: &str = include_str!("../packaging/manager-role.yaml");

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cnpg-autoresize"))
}

pub struct Env {
    pub scenario: Scenario,
    pub port: u16,
    pub options: ManagerOptions,
    pub managers: Vec<Option<ManagerProcess>>,
}

impl Env {
    pub async fn start(builder: ScenarioBuilder) -> Env {
        Self::start_with(builder, ManagerOptions::default()).await
    }

    pub async fn start_with(builder: ScenarioBuilder, options: ManagerOptions) -> Env {
        let scenario = builder
            .enforce_role(MANAGER_ROLE)
            .start()
            .await
            .expect("scenario starts");
        let port = scenario.common_port().expect("a common port");
        let mut env = Env {
            scenario,
            port,
            options,
            managers: Vec::new(),
        };
        for n in 0..env.scenario.instances.len() {
            let m = env.spawn(n);
            env.managers.push(Some(m));
        }
        env
    }

    fn spawn(&self, n: usize) -> ManagerProcess {
        self.scenario
            .spawn_manager(binary(), n, self.port, &self.options)
            .expect("manager starts")
    }

    pub fn pod(&self, n: usize) -> &str {
        &self.scenario.instances[n].pod
    }

    /// The index of instance `pod`.
    pub fn index_of(&self, pod: &str) -> usize {
        self.scenario
            .instances
            .iter()
            .position(|i| i.pod == pod)
            .expect("a scenario pod")
    }

    pub fn manager(&self, n: usize) -> &ManagerProcess {
        self.managers[n].as_ref().expect("manager running")
    }

    /// Stops instance `n`'s manager with `signal` and waits for it to exit.
    pub fn stop(
        &mut self,
        n: usize,
        signal: nix::sys::signal::Signal,
    ) -> Option<std::process::ExitStatus> {
        let mut m = self.managers[n].take().expect("manager running");
        m.signal(signal).expect("signal");
        let status = m.wait_exit(Duration::from_secs(10)).expect("wait");
        self.managers[n] = None;
        status
    }

    pub fn restart(&mut self, n: usize) {
        if self.managers[n].is_some() {
            self.stop(n, nix::sys::signal::Signal::SIGKILL);
        }
        self.managers[n] = Some(self.spawn(n));
    }

    pub async fn metrics(&self, n: usize) -> String {
        get_text(&self.manager(n).url("/metrics"))
            .await
            .unwrap_or_default()
    }

    pub async fn requested(&self, pvc: &str) -> u64 {
        self.scenario
            .requested_bytes(pvc)
            .await
            .expect("PVC readable")
    }

    /// Waits until the PVC requests `bytes`.
    pub async fn wait_request(&self, pvc: &str, bytes: u64, timeout: Duration) {
        wait_until(
            &format!("PVC {pvc} requests {bytes} bytes"),
            timeout,
            || async {
                let now = self.requested(pvc).await;
                (now == bytes)
                    .then_some(())
                    .ok_or(format!("requests {now}"))
            },
        )
        .await;
    }

    /// The PVC keeps requesting `bytes` for `period`.
    pub async fn hold_request(&self, pvc: &str, bytes: u64, period: Duration) {
        let end = Instant::now() + period;
        while Instant::now() < end {
            assert_eq!(
                self.requested(pvc).await,
                bytes,
                "PVC {pvc} changed\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn status(&self) -> Value {
        self.scenario
            .cluster_status()
            .await
            .expect("cluster readable")
    }

    pub async fn resize_events(&self) -> Vec<Value> {
        self.status().await["autoResizeEvents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Kubernetes Events recorded on the Cluster: (reason, type, note).
    pub async fn kube_events(&self) -> Vec<(String, String, String)> {
        let api: Api<Event> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        api.list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|e| {
                        (
                            e.reason.unwrap_or_default(),
                            e.type_.unwrap_or_default(),
                            e.note.unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn wait_kube_event(
        &self,
        reason: &str,
        timeout: Duration,
    ) -> (String, String, String) {
        wait_until(&format!("event {reason}"), timeout, || async {
            let events = self.kube_events().await;
            events
                .iter()
                .find(|e| e.0 == reason)
                .cloned()
                .ok_or(format!("{events:?}"))
        })
        .await
    }

    /// The pod holding the lease.
    pub async fn leader(&self) -> Option<String> {
        let api: Api<Lease> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        let lease = api
            .get_opt(&format!("cnpg-autoresize-{}", self.scenario.cluster))
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    pub async fn wait_leader(&self, timeout: Duration) -> String {
        wait_until("a leader", timeout, || async {
            self.leader().await.ok_or("none".to_string())
        })
        .await
    }

    /// Waits for `metric{labels}` on instance `n` to equal `value`.
    pub async fn wait_metric(
        &self,
        n: usize,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        timeout: Duration,
    ) {
        wait_until(
            &format!("{name}{labels:?} = {value} on {}", self.pod(n)),
            timeout,
            || async {
                let text = self.metrics(n).await;
                let got = metric(&text, name, labels);
                (got == Some(value)).then_some(()).ok_or(format!("{got:?}"))
            },
        )
        .await;
    }

    /// Waits until a pod other than `old` holds the lease.
    pub async fn wait_new_leader(&self, old: &str, timeout: Duration) -> String {
        wait_until("a new leader", timeout, || async {
            match self.leader().await {
                Some(l) if l != old => Ok(l),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Waits until instance `n` reports its `volume_type` volume blocked for `reason`.
    pub async fn wait_blocked(&self, n: usize, volume_type: &str, reason: &str, timeout: Duration) {
        let labels = [("volume_type", volume_type), ("reason", reason)];
        self.wait_metric(n, "cnpg_disk_resize_blocked", &labels, 1.0, timeout)
            .await;
    }

    pub fn logs(&self) -> String {
        self.managers
            .iter()
            .flatten()
            .map(|m| format!("--- {} ---\n{}", m.pod, tail(&m.logs(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("manager logs:\n{}", self.logs());
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub async fn get_text(url: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

pub async fn get_json(url: &str) -> Option<Value> {
    serde_json::from_str(&get_text(url).await?).ok()
}

/// Polls `check` until it returns Ok, or panics with the last answer.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The value of the sample `name{labels}` (labels must all match).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            all.then(|| value.parse().ok()).flatten()
        })
}

/// Waits until the simulator has grown `volume`'s filesystem to `bytes`.
pub async fn wait_grown(volume: &cnpg_testbed::Volume, bytes: u64) {
    wait_until(
        &format!("the filesystem grown to {bytes}"),
        secs(10),
        || async {
            let total = volume.stats().map_err(|e| e.to_string())?.total_bytes;
            (total >= bytes).then_some(()).ok_or(total.to_string())
        },
    )
    .await;
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
