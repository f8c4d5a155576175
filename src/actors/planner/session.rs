//! What the planner keeps current while this pod leads: watches of the
//! Cluster, the namespace's AutoResizePolicies, the cluster's PVCs and its
//! instance pods, each into a reflector store. A watch that keeps failing
//! (RBAC, a missing CRD) is an error in the log (once per change of state)
//! and `cnpg_autoresize_watch_up{resource} 0`, not a silent empty store.

use super::peers::Peers;
use super::Planner;
use crate::actors::problems::{Problem, Problems, Source};
use crate::api::cluster::Cluster;
use crate::api::policy::AutoResizePolicy;
use crate::engine::{LABEL_CLUSTER, LABEL_POD_ROLE};
use crate::metrics::Metrics;
use actix::Addr;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

/// Asks the planner to plan again (something it watches changed).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Replan;

/// The state of one watch, as the planner needs it.
#[derive(Default)]
pub struct WatchHealth {
    /// The initial list has been delivered at least once.
    synced: AtomicBool,
    /// The error the watch keeps failing with, and since when.
    failing: Mutex<Option<(Instant, String)>>,
    /// The API server answered 404: the resource is not served (no CRD).
    not_served: AtomicBool,
}

impl WatchHealth {
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The resource is not served at all (its CRD is not installed).
    pub fn not_served(&self) -> bool {
        self.not_served.load(Ordering::SeqCst)
    }
}

/// A reflector store kept by a watch.
pub struct Watched<K: kube::Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub health: Arc<WatchHealth>,
    task: JoinHandle<()>,
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches and peer pollers that live while this pod leads.
pub struct Session {
    pub cluster: Watched<Cluster>,
    pub policies: Watched<AutoResizePolicy>,
    pub pvcs: Watched<PersistentVolumeClaim>,
    pub pods: Watched<Pod>,
    pub peers: Peers,
    pub started: Instant,
}

/// What the planner watches of a cluster: the Cluster by name, the PVCs
/// and the instance pods by label (the preflight asks the same).
pub struct Selectors {
    /// Field selector of the Cluster.
    pub cluster_fields: String,
    /// Label selector of the cluster's PVCs.
    pub pvc_labels: String,
    /// Label selector of its instance pods.
    pub pod_labels: String,
}

impl Selectors {
    pub fn of(cluster: &str) -> Selectors {
        let cluster_selector = format!("{LABEL_CLUSTER}={cluster}");
        Selectors {
            cluster_fields: format!("metadata.name={cluster}"),
            // Instance pods only: CNPG's initdb and join Job pods carry the
            // cluster label too, and have nothing to poll.
            pod_labels: format!("{cluster_selector},{LABEL_POD_ROLE}=instance"),
            pvc_labels: cluster_selector,
        }
    }
}

impl Session {
    pub fn start(
        client: &Client,
        namespace: &str,
        cluster: &str,
        addr: Addr<Planner>,
        metrics: &Arc<Metrics>,
        problems: &Problems,
    ) -> Session {
        let selectors = Selectors::of(cluster);
        let watch = |resource| Watching {
            resource,
            addr: addr.clone(),
            metrics: metrics.clone(),
            problems: problems.clone(),
        };
        Session {
            cluster: watch_into_store(
                Api::namespaced(client.clone(), namespace),
                watcher::Config::default().fields(&selectors.cluster_fields),
                watch("clusters"),
            ),
            // Custom resources cannot be selected by a spec field: the
            // namespace's policies are watched and filtered by `spec.cluster`.
            policies: watch_into_store(
                Api::namespaced(client.clone(), namespace),
                watcher::Config::default(),
                watch("autoresizepolicies"),
            ),
            pvcs: watch_into_store(
                Api::namespaced(client.clone(), namespace),
                watcher::Config::default().labels(&selectors.pvc_labels),
                watch("persistentvolumeclaims"),
            ),
            pods: watch_into_store(
                Api::namespaced(client.clone(), namespace),
                watcher::Config::default().labels(&selectors.pod_labels),
                watch("pods"),
            ),
            peers: Peers::default(),
            started: Instant::now(),
        }
    }
}

/// What one watch reports to.
struct Watching {
    resource: &'static str,
    addr: Addr<Planner>,
    metrics: Arc<Metrics>,
    problems: Problems,
}

fn watch_into_store<K>(api: Api<K>, config: watcher::Config, watching: Watching) -> Watched<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let health = Arc::new(WatchHealth::default());
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let state = health.clone();
    let Watching {
        resource,
        addr,
        metrics,
        problems,
    } = watching;
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // A (re)list starting says nothing yet about whether it works.
                Ok(watcher::Event::Init) => {}
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        state.synced.store(true, Ordering::SeqCst);
                    }
                    state.not_served.store(false, Ordering::SeqCst);
                    let recovered = state
                        .failing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    if recovered.is_some() {
                        tracing::info!(resource, "watch works again");
                    }
                    metrics.watch_up.with_label_values(&[resource]).set(1);
                    addr.do_send(Replan);
                }
                Err(error) => {
                    let text = error.to_string();
                    let code = match &error {
                        watcher::Error::InitialListFailed(kube::Error::Api(s))
                        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code,
                        watcher::Error::WatchError(s) => s.code,
                        _ => 0,
                    };
                    metrics.count_api("watch", resource, code);
                    state.not_served.store(code == 404, Ordering::SeqCst);
                    // The Role no longer allows it: the manager goes inert
                    // (the leader steps down) until the preflight finds the
                    // permission back.
                    if matches!(code, 401 | 403) {
                        problems.add(
                            Source::Permissions,
                            Problem::new(
                                format!("watch {resource}"),
                                code.to_string(),
                                format!("the API server refuses to watch {resource}: {text}"),
                            ),
                        );
                    }
                    metrics.watch_up.with_label_values(&[resource]).set(0);
                    let mut failing = state.failing.lock().unwrap_or_else(|p| p.into_inner());
                    let new_state = failing.as_ref().is_none_or(|(_, last)| *last != text);
                    if new_state {
                        tracing::error!(resource, error = %text, "watch failing: the planner cannot see this resource (check the Role and that the CRD is installed)");
                        let since = failing
                            .as_ref()
                            .map(|(s, _)| *s)
                            .unwrap_or_else(Instant::now);
                        *failing = Some((since, text));
                    }
                }
            }
        }
    });
    Watched {
        store: reader,
        health,
        task,
    }
}
