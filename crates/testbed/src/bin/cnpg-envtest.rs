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
//! Then two checks of what the sidecar may do to its pod and its neighbours:
//!
//! - **QoS**: every CloudNativePG instance pod fixture of
//!   `tests/packaging/pods/cnpg-*.yaml` (1.25 … main, Guaranteed and Burstable),
//!   as cluster `qospg`, is created once in a namespace without the injection
//!   and once in the chart's namespace, through the ServiceAccount admission
//!   plugin and the chart's MutatingAdmissionPolicy: the second must carry the
//!   sidecar (last init container, with the API token) and the real server's
//!   `status.qosClass` must be the first's.
//! - **Blast radius**: with `forkpg`'s ServiceAccount token, writes to `uppg`'s
//!   PVC, Cluster status, Lease and policy status, and to `forkpg`'s own PVC a
//!   shrink, a relabel and another annotation, must each be refused (RBAC or
//!   the chart's ValidatingAdmissionPolicy); growing its own PVC with the
//!   record annotation must be allowed. The chart rendered with no cluster
//!   listed (namespace `<NS>-nolist`) must refuse an instance pod's token
//!   another cluster's PVC and let an operator's pod through. Every answer is
//!   printed, and with `--record FILE` written as JSON
//!   (`tests/packaging/real-server-answers.json` holds one run) for the
//!   sandbox's tests to assert the same.
//!
//! `cnpg-envtest --kubeconfig ADMIN --manager BINARY --namespace NS [--pods DIR]
//! [--record FILE]`; exit 0 when both clusters were resized and recorded and
//! both checks held, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cnpg_testbed::{next_loopback_ip, FilesystemKind, SimulatorConfig, Volume, VolumeSimulator};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{json, Value};

const STORAGE_CLASS: &str = "envtest-expandable";
const DATA_BYTES: u64 = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(120);
/// The cluster the pod fixtures are created as (listed in the chart's values
/// by hack/envtest.sh, so the MutatingAdmissionPolicy serves it).
const QOS_CLUSTER: &str = "qospg";
/// The fixtures' own cluster and namespace (tests/packaging/pods/).
const FIXTURE_CLUSTER: &str = "pg-main";
const FIXTURE_NAMESPACE: &str = "databases";
/// The sidecar's name (the chart's sidecar.containerName).
const SIDECAR: &str = "cnpg-autoresize";
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

struct Args {
    kubeconfig: PathBuf,
    manager: PathBuf,
    namespace: String,
    pods: PathBuf,
    record: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut kubeconfig = None;
    let mut manager = None;
    let mut namespace = "envtest".to_string();
    let mut pods = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/packaging/pods");
    let mut record = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--manager" => manager = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = value()?,
            "--pods" => pods = PathBuf::from(value()?),
            "--record" => record = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?}; usage: cnpg-envtest --kubeconfig ADMIN --manager BINARY [--namespace NS] [--pods DIR] [--record FILE]"),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        manager: manager.context("--manager is required")?,
        namespace,
        pods,
        record,
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

    let mut problems = Vec::new();
    if let Err(e) = check_qos(&client, ns, &args.pods).await {
        problems.push(format!("QoS: {e:#}"));
    }
    let forkpg = token_client(&dir.path().join("forkpg.kubeconfig")).await?;
    let blast = check_blast_radius(&client, &forkpg, ns).await;
    let unlisted = check_unlisted(&client, &kubeconfig, &format!("{ns}-nolist"), dir.path()).await;
    if let Err(e) = &unlisted {
        problems.push(format!("no cluster listed: {e:#}"));
    }
    match blast {
        Ok(answers) => {
            if let Some(path) = &args.record {
                let version = client.apiserver_version().await?.git_version;
                let record = json!({
                    "_comment": "What a real kube-apiserver answered (hack/envtest.sh --record, chart \
                        release cnpg-autoresize). `answers`: cluster forkpg's ServiceAccount token, \
                        namespace envtest, clusters listed; `unlisted`: a token bound to instance pod \
                        nolistpg-1 or to an operator-like pod, namespace envtest-nolist, no cluster \
                        listed. In `template`, <namespace>, <cluster> (the caller's: forkpg, \
                        nolistpg) and <other> (uppg, otherpg) stand for the names.",
                    "server": version,
                    "answers": answers,
                    "unlisted": unlisted.as_ref().ok(),
                });
                std::fs::write(path, serde_json::to_string_pretty(&record)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("cnpg-envtest: answers written to {}", path.display());
            }
        }
        Err(e) => problems.push(format!("blast radius: {e:#}")),
    }
    drop(runs);
    drop(simulator);
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// A client from a manager's kubeconfig (its ServiceAccount's token).
async fn token_client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Client::try_from(config).context("a client with the ServiceAccount's token")
}

/// Creates a namespace and, in it, the ServiceAccount the ServiceAccount
/// admission plugin needs before it admits the cluster's pods.
async fn namespace_with_account(client: &Client, ns: &str, account: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    if let Err(e) = namespaces.create(&PostParams::default(), &object).await {
        if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
            return Err(e).with_context(|| format!("creating namespace {ns}"));
        }
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": account, "namespace": ns}}))?;
    if let Err(e) = sas.create(&PostParams::default(), &sa).await {
        if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
            return Err(e).with_context(|| format!("creating ServiceAccount {ns}/{account}"));
        }
    }
    Ok(())
}

/// A token of `account` bound to `pod` (as the kubelet mounts it: the API
/// server then knows the caller's pod, `authentication.kubernetes.io/pod-name`),
/// and a client that uses it.
async fn pod_token_client(
    admin: &Client,
    admin_kubeconfig: &Kubeconfig,
    ns: &str,
    account: &str,
    pod: &Pod,
    out: &Path,
) -> Result<Client> {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let request: TokenRequest = serde_json::from_value(json!({"spec": {
        "expirationSeconds": 3600,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name, "uid": pod.metadata.uid}}}))?;
    let token = sas
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("a token of {account} bound to its pod"))?
        .status
        .context("the token request has no status")?
        .token;
    write_token_kubeconfig(admin_kubeconfig, &token, ns, out)?;
    token_client(out).await
}

/// A Bound PVC of `cluster` at 64Mi (its status set as the admin; the volume
/// simulator does not know it).
async fn bound_claim(admin: &Client, ns: &str, name: &str, cluster: &str) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"cnpg.io/cluster": cluster}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "64Mi"}}},
    }))?;
    pvcs.create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating PVC {name}"))?;
    pvcs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Bound", "capacity": {"storage": "64Mi"},
            "accessModes": ["ReadWriteOnce"]}}),
        ),
    )
    .await
    .with_context(|| format!("binding PVC {name}"))?;
    Ok(())
}

/// Replaces the names in each answer's message by placeholders (`template`).
fn templated(answers: &mut [Value], ns: &str, caller: &str, other: &str) {
    for a in answers {
        let template = a["message"]
            .as_str()
            .unwrap_or_default()
            .replace(&format!("\"{ns}\""), "\"<namespace>\"")
            .replace(&format!(":{ns}:"), ":<namespace>:")
            .replace(&format!("-{ns}'"), "-<namespace>'")
            .replace(caller, "<cluster>")
            .replace(other, "<other>");
        a["template"] = json!(template);
    }
}

/// Whether a request went through, whatever it returned.
fn ok<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    result.map(|_| ())
}

/// The cases whose answer was not the expected one.
fn unexpected(answers: &[Value]) -> Vec<String> {
    answers
        .iter()
        .filter(|a| (a["expect"] == "allowed") != (a["allowed"] == true))
        .filter_map(|a| a["case"].as_str().map(str::to_string))
        .collect()
}

/// (b') The chart with no cluster listed (namespace `ns`, rendered so by
/// hack/envtest.sh; its shared Role bound here to both ServiceAccounts, as
/// the docs tell users to): the ValidatingAdmissionPolicy knows a cluster's
/// caller by the instance pod its token is bound to. Instance pod
/// nolistpg-1's token may grow its cluster's PVC but not another cluster's;
/// a Deployment's pod in the same namespace (an operator) is not matched.
async fn check_unlisted(
    admin: &Client,
    admin_kubeconfig: &Kubeconfig,
    ns: &str,
    dir: &Path,
) -> Result<Vec<Value>> {
    let bindings: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    let mut clients = Vec::new();
    for (account, pod_name) in [
        ("nolistpg", "nolistpg-1"),
        ("cnpg-manager", "cnpg-controller-manager-5d8f7c9b4-x2x7q"),
    ] {
        namespace_with_account(admin, ns, account).await?;
        let binding: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("bind-{account}"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                "name": "cnpg-autoresize"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]}))?;
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .with_context(|| format!("binding the shared Role to {account}"))?;
        let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": pod_name, "namespace": ns},
            "spec": {"serviceAccountName": account,
                "containers": [{"name": "main", "image": "registry.example.com/main:1"}]}}))?;
        let pod = pods
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating pod {pod_name}"))?;
        let out = dir.join(format!("{pod_name}.kubeconfig"));
        clients.push(pod_token_client(admin, admin_kubeconfig, ns, account, &pod, &out).await?);
    }
    bound_claim(admin, ns, "nolistpg-1", "nolistpg").await?;
    bound_claim(admin, ns, "otherpg-1", "otherpg").await?;
    let instance: Api<PersistentVolumeClaim> = Api::namespaced(clients[0].clone(), ns);
    let operator: Api<PersistentVolumeClaim> = Api::namespaced(clients[1].clone(), ns);
    let pp = PatchParams::default();
    let grow = |size: &str| {
        Patch::Merge(json!({
            "metadata": {"annotations": {"autoresize.cnpg.io/events": "[]"}},
            "spec": {"resources": {"requests": {"storage": size}}}}))
    };
    let mut answers = vec![
        answer(
            "no cluster listed: instance pod nolistpg-1 grows otherpg's PVC otherpg-1",
            false,
            ok(instance.patch("otherpg-1", &pp, &grow("96Mi")).await),
        ),
        answer(
            "no cluster listed: instance pod nolistpg-1 grows its own PVC nolistpg-1 with the record annotation",
            true,
            ok(instance.patch("nolistpg-1", &pp, &grow("96Mi")).await),
        ),
        answer(
            "no cluster listed: a Deployment's pod (an operator in the namespace) labels otherpg-1",
            true,
            ok(operator
                .patch(
                    "otherpg-1",
                    &pp,
                    &Patch::Merge(json!({"metadata": {"labels": {"cnpg.io/pvcRole": "PG_DATA"}}})),
                )
                .await),
        ),
    ];
    let wrong = unexpected(&answers);
    templated(&mut answers, ns, "nolistpg", "otherpg");
    if !wrong.is_empty() {
        bail!("unexpected answers: {}", wrong.join("; "));
    }
    Ok(answers)
}

/// One fixture as cluster [`QOS_CLUSTER`] in `ns`, named after its file.
fn fixture_pod(text: &str, stem: &str, ns: &str) -> Result<Pod> {
    let text = text.replace(FIXTURE_CLUSTER, QOS_CLUSTER).replace(
        &format!("namespace: {FIXTURE_NAMESPACE}"),
        &format!("namespace: {ns}"),
    );
    let mut pod: Value = serde_norway::from_str(&text).context("parsing the fixture")?;
    let name = format!("{QOS_CLUSTER}-{}", stem.replace('.', "-"));
    pod["metadata"]["name"] = json!(name);
    pod["spec"]["hostname"] = json!(name);
    serde_json::from_value(pod).context("the fixture as a Pod")
}

/// (a) Each CNPG instance pod fixture keeps its QoS class through the chart's
/// MutatingAdmissionPolicy on the real server, and gets the sidecar with its
/// API token.
async fn check_qos(client: &Client, ns: &str, dir: &Path) -> Result<()> {
    let plain_ns = format!("{ns}-plain");
    namespace_with_account(client, &plain_ns, QOS_CLUSTER).await?;
    namespace_with_account(client, ns, QOS_CLUSTER).await?;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cnpg-") && n.ends_with(".yaml"))
        })
        .collect();
    fixtures.sort();
    if fixtures.len() < 8 {
        bail!(
            "only {} cnpg-*.yaml fixtures in {}",
            fixtures.len(),
            dir.display()
        );
    }
    let mut failures = Vec::new();
    for path in &fixtures {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a fixture name")?;
        let text = std::fs::read_to_string(path)?;
        let expected = if stem.ends_with("-guaranteed") {
            "Guaranteed"
        } else {
            "Burstable"
        };
        let plain: Api<Pod> = Api::namespaced(client.clone(), &plain_ns);
        let without = plain
            .create(
                &PostParams::default(),
                &fixture_pod(&text, stem, &plain_ns)?,
            )
            .await
            .with_context(|| format!("{stem}: creating it without the injection"))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let with = match pods
            .create(&PostParams::default(), &fixture_pod(&text, stem, ns)?)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{stem}: the server refused the pod: {e}"));
                continue;
            }
        };
        let qos = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.qos_class.clone())
                .unwrap_or_default()
        };
        let spec = with.spec.as_ref().context("no spec")?;
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let sidecar = inits.last().filter(|c| c.name == SIDECAR);
        let token = sidecar.is_some_and(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == TOKEN_PATH)
        });
        let mounts = sidecar.map_or(0, |c| c.volume_mounts.as_ref().map_or(0, Vec::len));
        println!(
            "cnpg-envtest: QoS {stem}: {} without the sidecar, {} with it; sidecar {} ({mounts} read-only mounts, API token {})",
            qos(&without),
            qos(&with),
            if sidecar.is_some() {
                "injected last"
            } else {
                "MISSING"
            },
            if token { "mounted" } else { "MISSING" },
        );
        if sidecar.is_none() || !token {
            failures.push(format!(
                "{stem}: init containers {:?}, token {token}",
                inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
            ));
        }
        if qos(&without) != expected || qos(&with) != expected {
            failures.push(format!(
                "{stem}: QoS {} without the sidecar and {} with it, expected {expected}",
                qos(&without),
                qos(&with)
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// What the server answered to one attempt.
fn answer(case: &str, expect_allowed: bool, result: Result<(), kube::Error>) -> Value {
    let (allowed, code, reason, message) = match &result {
        Ok(()) => (true, 200, String::new(), String::new()),
        Err(kube::Error::Api(s)) => (false, s.code, s.reason.clone(), s.message.clone()),
        Err(e) => (false, 0, "NoAnswer".to_string(), e.to_string()),
    };
    println!(
        "cnpg-envtest: blast radius: {case}: {}{}",
        if allowed {
            "allowed".to_string()
        } else {
            format!("refused ({code} {reason}): {message}")
        },
        if allowed == expect_allowed {
            ""
        } else {
            "   <-- UNEXPECTED"
        }
    );
    json!({"case": case, "expect": if expect_allowed { "allowed" } else { "refused" },
        "allowed": allowed, "code": code, "reason": reason, "message": message})
}

/// (b) What cluster forkpg's ServiceAccount token can do to cluster uppg's
/// objects and to its own PVC, on the real server with the chart's RBAC and
/// ValidatingAdmissionPolicy.
async fn check_blast_radius(admin: &Client, forkpg: &Client, ns: &str) -> Result<Vec<Value>> {
    // A PVC of forkpg whose request is above its capacity (an expansion
    // waiting), so that lowering it is a shrink Kubernetes itself allows
    // (>= 1.34, above status.capacity): only the policy can refuse it. The
    // volume simulator leaves unregistered claims alone.
    let guard = "forkpg-guard";
    let admin_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": guard, "namespace": ns, "labels": {"cnpg.io/cluster": "forkpg"},
            "annotations": {"autoresize.cnpg.io/events": "[]"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "64Mi"}}},
    }))?;
    admin_pvcs
        .create(&PostParams::default(), &claim)
        .await
        .context("creating PVC forkpg-guard")?;
    admin_pvcs
        .patch_status(
            guard,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Bound", "capacity": {"storage": "64Mi"},
                "accessModes": ["ReadWriteOnce"]}}),
            ),
        )
        .await
        .context("binding PVC forkpg-guard")?;
    admin_pvcs
        .patch(
            guard,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "128Mi"}}}})),
        )
        .await
        .context("growing PVC forkpg-guard as the admin")?;

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(forkpg.clone(), ns);
    let leases: Api<Lease> = Api::namespaced(forkpg.clone(), ns);
    let pp = PatchParams::default();
    let mut answers = Vec::new();

    answers.push(answer(
        "grow uppg's data PVC uppg-1 with a record (PVC of another cluster)",
        false,
        ok(pvcs
            .patch(
                "uppg-1",
                &pp,
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"autoresize.cnpg.io/events": "[]"}},
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}}})),
            )
            .await),
    ));
    answers.push(answer(
        "patch uppg's Cluster status (targetPrimary)",
        false,
        ok(clusters_api(forkpg, ns)
            .patch_status(
                "uppg",
                &pp,
                &Patch::Merge(json!({"status": {"targetPrimary": "uppg-2"}})),
            )
            .await),
    ));
    let mut lease = Api::<Lease>::namespaced(admin.clone(), ns)
        .get("cnpg-autoresize-uppg")
        .await
        .context("uppg's Lease (its managers hold it)")?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("forkpg-1".to_string());
    }
    answers.push(answer(
        "take uppg's Lease cnpg-autoresize-uppg (update)",
        false,
        ok(leases
            .replace("cnpg-autoresize-uppg", &PostParams::default(), &lease)
            .await),
    ));
    let new_lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "cnpg-autoresize-uppg", "namespace": ns},
        "spec": {"holderIdentity": "forkpg-1", "leaseDurationSeconds": 15}}))?;
    answers.push(answer(
        "create Lease cnpg-autoresize-uppg",
        false,
        ok(leases.create(&PostParams::default(), &new_lease).await),
    ));
    answers.push(answer(
        "patch the status of uppg's AutoResizePolicy",
        false,
        ok(policies_api(forkpg, ns)
            .patch_status(
                "uppg",
                &pp,
                &Patch::Merge(json!({"status": {"autoResizeEvents": []}})),
            )
            .await),
    ));
    answers.push(answer(
        "shrink its own PVC forkpg-guard 128Mi -> 96Mi (above status.capacity 64Mi)",
        false,
        ok(pvcs
            .patch(
                guard,
                &pp,
                &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "96Mi"}}}})),
            )
            .await),
    ));
    answers.push(answer(
        "relabel its own PVC forkpg-guard",
        false,
        ok(pvcs
            .patch(
                guard,
                &pp,
                &Patch::Merge(json!({"metadata": {"labels": {"cnpg.io/cluster": "uppg"}}})),
            )
            .await),
    ));
    answers.push(answer(
        "set another annotation on its own PVC forkpg-guard",
        false,
        ok(pvcs
            .patch(
                guard,
                &pp,
                &Patch::Merge(json!({"metadata": {"annotations": {"cnpg.io/pvcStatus": "ready"}}})),
            )
            .await),
    ));
    answers.push(answer(
        "grow its own PVC forkpg-guard 128Mi -> 160Mi with the record annotation",
        true,
        ok(pvcs
            .patch(
                guard,
                &pp,
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"autoresize.cnpg.io/events":
                        "[{\"result\":\"success\"}]"}},
                    "spec": {"resources": {"requests": {"storage": "160Mi"}}}})),
            )
            .await),
    ));
    let wrong = unexpected(&answers);
    templated(&mut answers, ns, "forkpg", "uppg");
    if !wrong.is_empty() {
        bail!("unexpected answers: {}", wrong.join("; "));
    }
    Ok(answers)
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
