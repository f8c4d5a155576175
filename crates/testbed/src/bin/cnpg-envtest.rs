//! Drives two clusters' managers against a real kube-apiserver (run by
//! `hack/envtest.sh`, which starts the server and installs the chart first):
//!
//! - `forkpg`: the CloudNativePG fork's mode — the `resize` block in the Cluster;
//! - `uppg`: an `AutoResizePolicy` governs it (upstream CloudNativePG's mode).
//!
//! For each it creates what CloudNativePG would (the instance pods, Running with
//! a loopback address, their Bound PVCs of an expandable StorageClass, the
//! cluster's ServiceAccount) and starts one `cnpg-autoresize run` per instance
//! with that ServiceAccount's token — so the chart's Role and admission policies
//! decide what the managers may do, on a real server. Then it fills the
//! primary's data volume past its trigger and waits for: the PVC request grown
//! with its record annotation, the `AutoResizeSuccess` Event, and the record in
//! the owner's status (the Cluster's, or the policy's). Volumes are the test
//! bed's (tmpfs as root, simulated directories otherwise); the test bed's volume
//! simulator plays the CSI driver and kubelet for the PVCs.
//!
//! `cnpg-envtest --kubeconfig ADMIN --manager BINARY --namespace NS`; exit 0
//! when both clusters were resized and recorded, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cnpg_testbed::{next_loopback_ip, FilesystemKind, SimulatorConfig, Volume, VolumeSimulator};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{json, Value};

const STORAGE_CLASS: &str = "envtest-expandable";
const DATA_BYTES: u64 = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(120);

struct Args {
    kubeconfig: PathBuf,
    manager: PathBuf,
    namespace: String,
}

fn args() -> Result<Args> {
    let mut kubeconfig = None;
    let mut manager = None;
    let mut namespace = "envtest".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--manager" => manager = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = value()?,
            other => bail!("unknown argument {other:?}; usage: cnpg-envtest --kubeconfig ADMIN --manager BINARY [--namespace NS]"),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        manager: manager.context("--manager is required")?,
        namespace,
    })
}

fn clusters_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "clusters"),
    )
}

fn policies_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("autoresize.cnpg.io", "v1alpha1", "AutoResizePolicy");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "autoresizepolicies"),
    )
}

/// One instance of a cluster: its pod's address, its data volume, its manager.
struct Instance {
    pod: String,
    volume: Arc<Volume>,
    manager: Option<Child>,
}

struct ClusterRun {
    name: String,
    policy: bool,
    instances: Vec<Instance>,
}

impl Drop for ClusterRun {
    fn drop(&mut self) {
        for i in &mut self.instances {
            if let Some(mut m) = i.manager.take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(m.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = m.wait();
            }
        }
    }
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(()) => println!("cnpg-envtest: PASS"),
        Err(e) => {
            eprintln!("cnpg-envtest: FAIL: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<()> {
    let args = args()?;
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .context("the admin kubeconfig")?;
    let client = Client::try_from(config).context("an admin client")?;
    let ns = args.namespace.as_str();
    let dir = tempfile::Builder::new()
        .prefix("cnpg-envtest-")
        .tempdir()
        .context("a work directory")?;

    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": "testbed.cnpg.io",
        "allowVolumeExpansion": true,
    }))?;
    classes
        .create(&PostParams::default(), &class)
        .await
        .context("creating the StorageClass")?;
    let simulator = VolumeSimulator::start(client.clone(), ns, SimulatorConfig::default()).await?;

    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 80},
        "expansion": {"step": "50%", "minStep": "16Mi"},
        "strategy": {"maxActionsPerDay": 3, "walSafetyPolicy": {"acknowledgeWALRisk": true}}});
    let mut runs = Vec::new();
    for (name, policy) in [("forkpg", false), ("uppg", true)] {
        let spec = if policy {
            json!({"instances": 2, "storage": {"size": "64Mi", "storageClass": STORAGE_CLASS}})
        } else {
            json!({"instances": 2, "storage": {"size": "64Mi", "storageClass": STORAGE_CLASS, "resize": resize}})
        };
        let cluster: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}))?;
        clusters_api(&client, ns)
            .create(&PostParams::default(), &cluster)
            .await
            .with_context(|| format!("creating Cluster {name}"))?;
        if policy {
            let p: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"cluster": name, "storage": {"resize": resize}}}))?;
            policies_api(&client, ns)
                .create(&PostParams::default(), &p)
                .await
                .with_context(|| format!("creating AutoResizePolicy {name}"))?;
        }
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}}))?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        if let Err(e) = sas.create(&PostParams::default(), &sa).await {
            // The chart may have created it already.
            if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                return Err(e).with_context(|| format!("creating ServiceAccount {name}"));
            }
        }
        let token = sas
            .create_token_request(
                name,
                &PostParams::default(),
                &serde_json::from_value::<TokenRequest>(
                    json!({"spec": {"expirationSeconds": 3600}}),
                )?,
            )
            .await
            .with_context(|| format!("a token of ServiceAccount {name}"))?
            .status
            .context("the token request has no status")?
            .token;
        let manager_kubeconfig = dir.path().join(format!("{name}.kubeconfig"));
        write_token_kubeconfig(&kubeconfig, &token, ns, &manager_kubeconfig)?;

        let mut instances = Vec::new();
        let port = 19188;
        for n in 1..=2 {
            let pod = format!("{name}-{n}");
            let ip = next_loopback_ip()?;
            let volume = Arc::new(Volume::create_with(
                &dir.path().join(&pod),
                DATA_BYTES,
                FilesystemKind::Ext4,
            )?);
            simulator.register(&pod, volume.clone());
            create_pvc(&client, ns, name, &pod).await?;
            create_pod(&client, ns, name, &pod, ip, n == 1).await?;
            let mut cmd = Command::new(&args.manager);
            cmd.arg("run")
                .arg("--kubeconfig")
                .arg(&manager_kubeconfig)
                .args(["--namespace", ns, "--cluster", name, "--pod-name", &pod])
                .arg("--http-addr")
                .arg(format!("{ip}:{port}"))
                .arg("--data-path")
                .arg(volume.path())
                .args(["--log-format", "text"])
                .arg("--pg-dsn")
                .arg(format!(
                    "host={ip} port=1 user=nobody dbname=postgres connect_timeout=1"
                ));
            if !cnpg_testbed::is_root() {
                cmd.arg("--simulated-volumes");
            }
            let log = std::fs::File::create(dir.path().join(format!("{pod}.log")))?;
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", args.manager.display()))?;
            instances.push(Instance {
                pod,
                volume,
                manager: Some(child),
            });
        }
        runs.push(ClusterRun {
            name: name.to_string(),
            policy,
            instances,
        });
    }

    let mut failures = Vec::new();
    for run in &runs {
        match check_resize(&client, ns, run).await {
            Ok(size) => println!(
                "cnpg-envtest: {} ({}) resized {}-1's data PVC to {size}, recorded and announced",
                run.name,
                if run.policy {
                    "AutoResizePolicy"
                } else {
                    "fork mode"
                },
                run.name
            ),
            Err(e) => failures.push(format!("{}: {e:#}", run.name)),
        }
    }
    if !failures.is_empty() {
        for run in &runs {
            for i in &run.instances {
                let log = std::fs::read_to_string(dir.path().join(format!("{}.log", i.pod)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- last lines of {}'s manager:", i.pod);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        bail!("{}", failures.join("; "));
    }
    drop(runs);
    drop(simulator);
    Ok(())
}

/// Fills the primary's data volume past 80 % and waits for the whole resize.
async fn check_resize(client: &Client, ns: &str, run: &ClusterRun) -> Result<String> {
    let primary = &run.instances[0];
    primary.volume.fill_to_percent(90.0)?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let grown = loop {
        let pvc = pvcs.get(&primary.pod).await?;
        let request = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        let record = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("autoresize.cnpg.io/events"))
            .cloned();
        if request != "64Mi" {
            let record = record.context("the PVC grew without its record annotation")?;
            if !record.contains("\"success\"") {
                bail!("the record annotation has no success: {record}");
            }
            break request;
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "the data PVC {} was not resized within {TIMEOUT:?}",
                primary.pod
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let owner = if run.policy {
        policies_api(client, ns)
    } else {
        clusters_api(client, ns)
    };
    loop {
        let announced = events
            .list(&Default::default())
            .await?
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("AutoResizeSuccess")
                    && e.involved_object.name.as_deref() == Some(run.name.as_str())
            });
        let status = owner.get(&run.name).await?.data["status"].clone();
        let recorded = status["autoResizeEvents"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["pvcName"] == json!(primary.pod) && r["result"] == "success");
        if announced && recorded {
            return Ok(grown);
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "resized, but within {TIMEOUT:?}: AutoResizeSuccess event {}, record in the {} status {}",
                if announced { "seen" } else { "missing" },
                if run.policy { "policy's" } else { "Cluster's" },
                if recorded { "seen" } else { "missing" }
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn create_pvc(client: &Client, ns: &str, cluster: &str, pod: &str) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": pod, "namespace": ns,
            "labels": {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": pod, "cnpg.io/pvcRole": "PG_DATA"},
            "annotations": {"cnpg.io/pvcStatus": "ready"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "64Mi"}}},
    }))?;
    pvcs.create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating PVC {pod}"))?;
    let start = Instant::now();
    loop {
        let phase = pvcs
            .get(pod)
            .await?
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase == "Bound" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("PVC {pod} not bound by the volume simulator");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_pod(
    client: &Client,
    ns: &str,
    cluster: &str,
    pod: &str,
    ip: std::net::Ipv4Addr,
    primary: bool,
) -> Result<()> {
    let role = if primary { "primary" } else { "replica" };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let object: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "namespace": ns,
            "labels": {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": pod,
                "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role}},
        "spec": {"serviceAccountName": cluster,
            "containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17",
                "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data"}]}],
            "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": pod}}]},
    }))?;
    pods.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating pod {pod}"))?;
    let status = json!({"status": {"phase": "Running", "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}], "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("setting the status of pod {pod}"))?;
    Ok(())
}

/// A kubeconfig for the manager: the admin's server and CA, the ServiceAccount's token.
fn write_token_kubeconfig(admin: &Kubeconfig, token: &str, ns: &str, out: &Path) -> Result<()> {
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("the admin kubeconfig has no cluster")?;
    let kubeconfig: Value = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "manager",
        "clusters": [{"name": "envtest", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data}}],
        "users": [{"name": "manager", "user": {"token": token}}],
        "contexts": [{"name": "manager", "context": {"cluster": "envtest", "user": "manager", "namespace": ns}}],
    });
    std::fs::write(out, serde_json::to_string_pretty(&kubeconfig)?)
        .with_context(|| format!("writing {}", out.display()))
}
