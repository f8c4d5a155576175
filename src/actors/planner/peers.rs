//! The leader's view of its peers: one long-poll per instance pod on its
//! `/v1/status`. A report's age is measured on the clock of the instance
//! that took it (the answer says how old it is) plus the time since it
//! arrived here — never by when the leader happened to receive it, so a
//! frozen endpoint cannot pass for fresh. An answer naming another pod (a
//! reused IP) is ignored; answers are size-bounded and range-checked
//! (`InstanceReport::check`): nonsense is ignored, never used.

use super::Planner;
use crate::actors::status::StatusResponse;
use crate::api::report::InstanceReport;
use crate::http_client::{get_json, Backoff};
use actix::Addr;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Largest `/v1/status` answer accepted from a peer.
const MAX_STATUS_BYTES: usize = 1 << 20;

/// A peer's answer.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct PeerReport {
    pub pod: String,
    pub report: InstanceReport,
    pub received: Instant,
    /// The peer's version moved: something material changed.
    pub changed: bool,
}

/// A report and when it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub report: InstanceReport,
    pub at: Instant,
}

impl Received {
    /// When the instance took the sample, on this pod's clock (an age that
    /// is no duration counts as none; checked answers have none such).
    pub fn sampled_at(&self) -> Instant {
        let age = Duration::try_from_secs_f64(self.report.age_seconds.unwrap_or(0.0))
            .unwrap_or(Duration::ZERO);
        self.at.checked_sub(age).unwrap_or(self.at)
    }

    /// The report with its age now: its age when served plus the time since.
    pub fn aged(&self) -> InstanceReport {
        let mut report = self.report.clone();
        let since = self.at.elapsed().as_secs_f64();
        report.age_seconds = Some(report.age_seconds.unwrap_or(0.0) + since);
        report
    }
}

#[derive(Default)]
pub struct Peers {
    pollers: HashMap<String, (String, JoinHandle<()>)>,
    pub reports: HashMap<String, Received>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        for (_, task) in self.pollers.values() {
            task.abort();
        }
    }
}

impl Peers {
    /// Keeps one long-poller per instance pod with an IP (this pod excepted).
    pub fn sync(
        &mut self,
        pods: &[std::sync::Arc<Pod>],
        me: &str,
        port: u16,
        wait: Duration,
        addr: &Addr<Planner>,
    ) {
        let wanted: HashMap<String, String> = pods
            .iter()
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                (name != me).then_some((name, ip))
            })
            .collect();
        self.pollers.retain(|pod, (ip, task)| {
            let keep = wanted.get(pod) == Some(ip);
            if !keep {
                task.abort();
            }
            keep
        });
        self.reports.retain(|pod, _| wanted.contains_key(pod));
        for (pod, ip) in wanted {
            if self.pollers.contains_key(&pod) {
                continue;
            }
            let url = format!("http://{ip}:{port}/v1/status");
            let task = tokio::spawn(poll_peer(addr.clone(), pod.clone(), url, wait));
            self.pollers.insert(pod, (ip, task));
        }
    }
}

/// What to do with a peer's answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Use it.
    Report(Box<StatusResponse>),
    /// Another pod answered at this pod's IP.
    Impostor(String),
    /// Out of range: ignored, with why.
    Nonsense(String),
}

/// Judges the answer `pod` gave.
pub fn judge(pod: &str, status: StatusResponse) -> Verdict {
    if status.instance != pod {
        return Verdict::Impostor(status.instance);
    }
    match status.report.check() {
        Ok(()) => Verdict::Report(Box::new(status)),
        Err(e) => Verdict::Nonsense(e),
    }
}

/// Reads a peer's answer from its body, as the poller does.
pub fn read_answer(pod: &str, body: &[u8]) -> Result<Verdict, String> {
    let status: StatusResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    Ok(judge(pod, status))
}

async fn poll_peer(addr: Addr<Planner>, pod: String, url: String, wait: Duration) {
    let http = reqwest::Client::new();
    let mut after = 0u64;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut impostor_logged = false;
    let mut nonsense_logged: Option<String> = None;
    let wait_text = format!("{:.3}", wait.as_secs_f64());
    loop {
        let after_text = after.to_string();
        let query = [("wait", wait_text.as_str()), ("after", after_text.as_str())];
        let answer: Result<StatusResponse, String> = get_json(
            &http,
            &url,
            &query,
            wait + Duration::from_secs(2),
            MAX_STATUS_BYTES,
        )
        .await;
        match answer.map(|status| judge(&pod, status)) {
            Ok(Verdict::Impostor(answered)) => {
                if !impostor_logged {
                    tracing::warn!(%pod, %answered, %url, "another pod answers at this pod's IP; ignored");
                    impostor_logged = true;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Ok(Verdict::Nonsense(error)) => {
                if nonsense_logged.as_ref() != Some(&error) {
                    tracing::warn!(%pod, %url, %error, "the peer's report is out of range; ignored");
                    nonsense_logged = Some(error);
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Ok(Verdict::Report(status)) => {
                backoff.reset();
                impostor_logged = false;
                nonsense_logged = None;
                let changed = status.version != after;
                after = status.version;
                if status.probed {
                    addr.do_send(PeerReport {
                        pod: pod.clone(),
                        report: status.report,
                        received: Instant::now(),
                        changed,
                    });
                }
            }
            Err(error) => {
                tracing::debug!(%pod, %error, "peer did not answer");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
