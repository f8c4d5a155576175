//! Before a manager competes for the Lease it asks the API server what the
//! leader will ask: the Lease, the Cluster, the cluster's PVCs and instance
//! pods, the policies — the same requests as the planner's watches, one
//! object each. A refusal (401, 403) is a problem that keeps the manager
//! inert (docs/reference/operations.md#when-the-manager-is-inert); while
//! there is one, the questions are asked again every minute, and the
//! manager starts working once every answer is allowed. It writes nothing.

use super::planner::session::Selectors;
use super::problems::{Problem, Problems, Source, REPEAT_EVERY};
use crate::api::cluster::Cluster;
use crate::api::policy::AutoResizePolicy;
use crate::http_client::Backoff;
use crate::kube_api::{observed, status_code};
use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Preflight {
    pub client: Client,
    pub namespace: String,
    pub cluster: String,
    pub lease_name: String,
    pub metrics: Arc<Metrics>,
}

/// What one round of questions found: the refusals, and whether a
/// question went unanswered (the API server down, a 5xx).
#[derive(Debug, PartialEq)]
pub struct Finding {
    pub refused: Vec<Problem>,
    pub unanswered: Option<String>,
}

/// Rounds asked at start while a question goes unanswered, before the
/// manager goes on with what it knows: a resource that keeps failing (an
/// aggregated API down) must not keep the manager from working.
const ROUNDS: usize = 5;

/// One question's answer: allowed (whatever the object's state), refused,
/// or not answered.
fn judge<T>(
    verb: &str,
    resource: &str,
    result: kube::Result<T>,
) -> Result<Option<Problem>, String> {
    let Err(error) = result else {
        return Ok(None);
    };
    match status_code(&error) {
        401 | 403 => Ok(Some(Problem::new(
            format!("{verb} {resource}"),
            status_code(&error).to_string(),
            format!(
                "the API server refuses to {verb} {resource}: {error} (the manager needs the chart's Role, bound to this pod's service account)"
            ),
        ))),
        // Not found or not served (no policy CRD): allowed to ask, nothing there.
        404 => Ok(None),
        _ => Err(format!("{verb} {resource}: {error}")),
    }
}

impl Preflight {
    /// Asks every question once.
    pub async fn check(&self) -> Finding {
        let ns = self.namespace.as_str();
        let selectors = Selectors::of(&self.cluster);
        let one = |selector: Option<(&str, &str)>| {
            let params = ListParams::default().limit(1);
            match selector {
                Some(("fields", s)) => params.fields(s),
                Some((_, s)) => params.labels(s),
                None => params,
            }
        };
        let m = &self.metrics;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let clusters: Api<Cluster> = Api::namespaced(self.client.clone(), ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let policies: Api<AutoResizePolicy> = Api::namespaced(self.client.clone(), ns);
        let answers = [
            judge(
                "get",
                "leases",
                observed(m, "get", "leases", leases.get_opt(&self.lease_name)).await,
            ),
            judge(
                "list",
                "clusters",
                observed(
                    m,
                    "list",
                    "clusters",
                    clusters.list(&one(Some(("fields", &selectors.cluster_fields)))),
                )
                .await,
            ),
            judge(
                "list",
                "persistentvolumeclaims",
                observed(
                    m,
                    "list",
                    "persistentvolumeclaims",
                    pvcs.list(&one(Some(("labels", &selectors.pvc_labels)))),
                )
                .await,
            ),
            judge(
                "list",
                "pods",
                observed(
                    m,
                    "list",
                    "pods",
                    pods.list(&one(Some(("labels", &selectors.pod_labels)))),
                )
                .await,
            ),
            judge(
                "list",
                "autoresizepolicies",
                observed(m, "list", "autoresizepolicies", policies.list(&one(None))).await,
            ),
        ];
        let mut finding = Finding {
            refused: Vec::new(),
            unanswered: None,
        };
        for answer in answers {
            match answer {
                Ok(problem) => finding.refused.extend(problem),
                Err(unanswered) => finding.unanswered = Some(unanswered),
            }
        }
        finding
    }

    /// Asks until the API server answers every question (a few rounds at
    /// most), then records what it refused; returns whether nothing was.
    pub async fn settle(&self, problems: &Problems) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut finding = self.check().await;
        for _ in 1..ROUNDS {
            let Some(why) = &finding.unanswered else {
                break;
            };
            tracing::debug!(%why, "the API server did not answer the preflight");
            tokio::time::sleep(backoff.next_delay()).await;
            finding = self.check().await;
        }
        if let Some(why) = &finding.unanswered {
            tracing::warn!(%why, "the API server does not answer one of the preflight's questions; going on with the others' answers");
        }
        let allowed = finding.refused.is_empty();
        problems.set(Source::Permissions, finding.refused);
        allowed
    }

    /// While a permission is refused (found here or by a watch), asks again
    /// every minute.
    pub async fn keep_checking(self, problems: Problems) {
        loop {
            tokio::time::sleep(REPEAT_EVERY).await;
            if problems.has(Source::Permissions) {
                let finding = self.check().await;
                // Unanswered, nothing is known: the refusals stand.
                if finding.unanswered.is_none() {
                    problems.set(Source::Permissions, finding.refused);
                }
            }
        }
    }
}
