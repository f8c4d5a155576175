//! What the status summary reads from the API server, read-only: every
//! AutoResizePolicy (one watch, kept in memory, since CloudNativePG may ask
//! every 5 s per Cluster) and the leader's Lease (one get, remembered for a
//! few seconds).

use crate::api::policy::{self, AutoResizePolicy};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a Lease holder read is reused.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// (namespace, Lease name) -> when read, and its holder.
type LeaseCache = HashMap<(String, String), (Instant, Option<String>)>;

pub struct KubeView {
    client: Client,
    policies: Store<AutoResizePolicy>,
    /// Why the policy watch fails, while it does.
    failing: Arc<Mutex<Option<String>>>,
    leases: Mutex<LeaseCache>,
}

impl KubeView {
    /// Starts the policy watch on the current Tokio runtime.
    pub fn start(client: Client) -> KubeView {
        let (policies, writer) = reflector::store();
        let failing = Arc::new(Mutex::new(Some("not listed yet".to_string())));
        let api: Api<AutoResizePolicy> = Api::all(client.clone());
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let state = failing.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut failing = state.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(watcher::Event::Init) => {}
                    Ok(_) => {
                        if failing.take().is_some() {
                            tracing::info!("watching AutoResizePolicies");
                        }
                    }
                    Err(e) => {
                        let text = format!("AutoResizePolicies cannot be read: {e}");
                        if failing.as_deref() != Some(text.as_str()) {
                            tracing::warn!(error = %e, "AutoResizePolicies cannot be read");
                        }
                        *failing = Some(text);
                    }
                }
            }
        });
        KubeView {
            client,
            policies,
            failing,
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// The policy governing `cluster` in `namespace` (the oldest, as the
    /// managers decide).
    pub fn policy_for(&self, namespace: &str, cluster: &str) -> Option<AutoResizePolicy> {
        let in_namespace: Vec<AutoResizePolicy> = self
            .policies
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .map(|p| (**p).clone())
            .collect();
        policy::targeting(&in_namespace, cluster).into_iter().next()
    }

    /// Why policies cannot be read, while they cannot.
    pub fn unavailable(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The holder of Lease `cnpg-autoresize-<cluster>`.
    pub async fn leader(&self, namespace: &str, cluster: &str) -> Result<Option<String>, String> {
        let name = format!("cnpg-autoresize-{cluster}");
        let key = (namespace.to_string(), name.clone());
        if let Some((at, holder)) = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < LEASE_TTL {
                return Ok(holder.clone());
            }
        }
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let lease = tokio::time::timeout(crate::kube_api::CALL_TIMEOUT, api.get_opt(&name))
            .await
            .map_err(|_| format!("reading Lease {namespace}/{name}: timed out"))?
            .map_err(|e| format!("reading Lease {namespace}/{name}: {e}"))?;
        let holder = lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty());
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: entries of Clusters that are gone age out.
        leases.retain(|_, (at, _)| at.elapsed() < LEASE_TTL);
        leases.insert(key, (Instant::now(), holder.clone()));
        Ok(holder)
    }
}
