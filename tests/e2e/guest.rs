//! A guest in the database's pod does no harm (docs/guest.md): WAL health
//! through CloudNativePG's own socket without a password, and a full disk
//! with PostgreSQL down is when the sidecar still works.

use crate::common::*;
use cnpg_testbed::operator::{PHASE_DISK_FULL, PHASE_HEALTHY};
use cnpg_testbed::postgres::{
    InstanceManagerStart, METRICS_EXPORTER_ROLE, MISSING_WAL_DISK_SPACE_EXIT_CODE,
};
use cnpg_testbed::scenario::{ManagerOptions, PostgresAuth, Scenario};
use cnpg_testbed::volume::ReadOnlyBind;
use cnpg_testbed::{is_root, ExpansionMode};
use serde_json::json;

/// The real uid of process `pid` (`/proc/<pid>/status`).
fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The chart's default WAL health connection: CloudNativePG's socket
/// directory mounted read-only, `cnpg_metrics_exporter` with peer
/// authentication as CloudNativePG >= 1.30 configures it, no password, the
/// sidecar running as PostgreSQL's OS user. The WAL checks work through it
/// (archiving failures block WAL growth), and nobody else gets in that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_health_through_cloudnativepgs_socket_with_peer_authentication() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let builder = Scenario::builder("pg")
        .data(128 * MIB, json!({"enabled": false}))
        .wal(128 * MIB, wal);
    let mut env = Env::prepare(
        builder,
        ManagerOptions::default(),
        fork_cluster_crd(),
        MANAGER_ROLE,
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    // As root the socket directory is seen through a read-only bind mount,
    // as the chart mounts /controller; otherwise in place.
    let bind = is_root().then(|| {
        let target = env.scenario.dir().join("controller-run");
        ReadOnlyBind::new(&server.socket_dir(), &target).unwrap()
    });
    let socket_dir = bind
        .as_ref()
        .map_or_else(|| server.socket_dir(), |b| b.path().to_path_buf());
    if bind.is_some() {
        let err = std::fs::write(socket_dir.join("probe"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
        // Peer authentication holds: root is not PostgreSQL's OS user.
        let dsn = server.metrics_exporter_dsn(&socket_dir);
        let err = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .map(|_| ())
            .unwrap_err();
        let text = err
            .as_db_error()
            .map_or_else(|| format!("{err}"), |e| e.message().to_string());
        assert!(
            text.contains("Peer authentication failed"),
            "{METRICS_EXPORTER_ROLE} from root: {text}"
        );
    }
    env.options.postgres_auth = PostgresAuth::Peer {
        socket_dir: Some(socket_dir),
    };
    env.start_all_pods();
    let manager = env.manager(0);
    let pid = manager.wait_running(secs(30)).await.unwrap();
    assert_eq!(process_uid(pid), server.run_as().uid.as_raw());
    // Configured as the chart configures it: no DSN, no password.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("--pg-dsn"));
    assert!(!String::from_utf8_lossy(&environ).contains("PGPASSWORD"));

    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 1.0, secs(10))
        .await;
    // Real answers through the socket: failing archiving blocks WAL growth.
    server.set_archive_failing(true).unwrap();
    wait_archiver(server, true).await;
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 0.0, secs(30))
        .await;
    let wal_volume = env.scenario.instances[0]
        .volume(&cnpg_testbed::cluster::VolumeRole::Wal)
        .unwrap()
        .volume
        .clone();
    wal_volume.fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "archive_unhealthy", secs(30))
        .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
    drop(bind);
}

/// The data volume 100 % full: PostgreSQL could not write and stopped, and
/// CloudNativePG's instance manager refuses to start it again (exit code 4;
/// the operator reports "Not enough disk space"). The sidecar still reports,
/// leads, and grows the volume — with warning `wal_health_unavailable`,
/// since no WAL check can run — after which PostgreSQL starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_volume_with_postgres_down_still_grows() {
    let data = json!({"enabled": true, "expansion": {"step": "64Mi"},
        "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}});
    let env = Env::start(Scenario::builder("pg").data(128 * MIB, data)).await;
    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
    // Storage slower than the fill: the expansion waits until we say so.
    assert!(env
        .scenario
        .set_expansion_mode("pg-1", ExpansionMode::Stall));
    let server = env.scenario.server("pg-1").unwrap();
    let volume = env.scenario.instances[0].data().volume.clone();
    // PostgreSQL's PANIC on a failed WAL write: every process gone at once.
    server.kill().await.unwrap();
    env.wait_metric(0, "cnpg_wal_health_up", &[], 0.0, secs(30))
        .await;
    volume.fill_completely().unwrap();
    assert_eq!(volume.stats().unwrap().available_bytes, 0);
    assert_eq!(
        server.start_as_instance_manager().await.unwrap(),
        InstanceManagerStart::NoWalSpace
    );
    env.scenario
        .set_postgres_container("pg-1", Some(MISSING_WAL_DISK_SPACE_EXIT_CODE))
        .await
        .unwrap();
    wait_until("the cluster phase", secs(30), || async {
        let phase = env.status().await["phase"].clone();
        (phase == PHASE_DISK_FULL)
            .then_some(())
            .ok_or(format!("{phase}"))
    })
    .await;

    // The sidecar sees the full volume, leads, and asks for more.
    env.wait_metric(
        0,
        "cnpg_disk_percent_used",
        &[("volume_type", "data")],
        100.0,
        secs(30),
    )
    .await;
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    assert_eq!(env.leader().await.as_deref(), Some("pg-1"));
    let (_, kind, note) = env
        .wait_kube_event("AutoResizeWALHealthUnavailable", secs(10))
        .await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("pg-1"), "{note}");

    // The storage catches up; the kubelet's next restart of postgres finds
    // room and CloudNativePG starts PostgreSQL.
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Expand);
    wait_grown(&volume, 192 * MIB).await;
    assert_eq!(
        server.start_as_instance_manager().await.unwrap(),
        InstanceManagerStart::Started
    );
    env.scenario
        .set_postgres_container("pg-1", None)
        .await
        .unwrap();
    wait_until("the cluster phase", secs(30), || async {
        let phase = env.status().await["phase"].clone();
        (phase == PHASE_HEALTHY)
            .then_some(())
            .ok_or(format!("{phase}"))
    })
    .await;
    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
}

/// What a real kube-apiserver answered to cluster A's token, per case
/// (tests/packaging/real-server-answers.json, recorded by hack/envtest.sh).
const REAL_SERVER_ANSWERS: &str = include_str!("../packaging/real-server-answers.json");

/// Cluster A's ServiceAccount token — which A's PostgreSQL superuser can read
/// (`COPY … TO PROGRAM`) — against cluster B's objects and A's own, with the
/// chart's Roles and ValidatingAdmissionPolicy enforced by the sandbox:
/// every case is answered as a real kube-apiserver answered it (code and
/// message), while A's managers, under the same rules, work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clusters_token_reaches_no_other_cluster_and_only_grows_its_own_pvcs() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let data = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, data)).await;
    let (cluster, other, ns) = ("pg", "other", env.scenario.namespace.clone());
    let admin = env.scenario.client.clone();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);

    // Cluster B, as CloudNativePG and B's own sidecar leave it.
    let clusters = cnpg_testbed::scenario::cluster_api(&admin, &ns);
    let b: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": other, "namespace": ns},
        "spec": {"instances": 1, "storage": {"size": "1Gi"}},
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &b).await.unwrap();
    env.create_policy(other, json!({"cluster": other})).await;
    // A Bound claim of cluster `owner`, and its status.
    let bound_claim = |name: &str, owner: &str, request: &str, capacity: &str| {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                "labels": {"cnpg.io/cluster": owner, "cnpg.io/instanceName": format!("{owner}-1"),
                    "cnpg.io/pvcRole": "PG_DATA"}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "storageClassName": cnpg_testbed::scenario::STORAGE_CLASS,
                "resources": {"requests": {"storage": request}}},
        }))
        .unwrap();
        let status = json!({"status": {"phase": "Bound",
            "accessModes": ["ReadWriteOnce"], "capacity": {"storage": capacity}}});
        (claim, status)
    };
    for (name, owner, request, capacity) in [
        (format!("{other}-1"), other, "1Gi", "1Gi"),
        (format!("{cluster}-guard"), cluster, "128Mi", "64Mi"),
    ] {
        let (claim, status) = bound_claim(&name, owner, request, capacity);
        pvcs.create(&PostParams::default(), &claim).await.unwrap();
        pvcs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    let b_lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": format!("cnpg-autoresize-{other}"), "namespace": ns},
        "spec": {"holderIdentity": format!("{other}-1"), "leaseDurationSeconds": 15},
    }))
    .unwrap();
    leases
        .create(&PostParams::default(), &b_lease)
        .await
        .unwrap();

    // Cluster A's token.
    let a = env
        .scenario
        .sandbox
        .client_as(&env.scenario.identity)
        .await
        .unwrap();
    let a_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(a.clone(), &ns);
    let a_leases: Api<Lease> = Api::namespaced(a.clone(), &ns);
    let a_clusters = cnpg_testbed::scenario::cluster_api(&a, &ns);
    let a_policies: Api<kube::api::DynamicObject> = {
        let gvk =
            kube::api::GroupVersionKind::gvk("autoresize.cnpg.io", "v1alpha1", "AutoResizePolicy");
        Api::namespaced_with(
            a.clone(),
            &ns,
            &kube::api::ApiResource::from_gvk_with_plural(&gvk, "autoresizepolicies"),
        )
    };
    let record = "autoresize.cnpg.io/events";
    let merge = |v: serde_json::Value| Patch::Merge(v);
    let pp = PatchParams::default();
    let answers: serde_json::Value = serde_json::from_str(REAL_SERVER_ANSWERS).unwrap();
    let cases = answers["answers"].as_array().unwrap();
    assert!(cases.len() >= 9, "{cases:?}");
    for case in cases {
        let name = case["case"].as_str().unwrap();
        let result: Result<(), kube::Error> = if name.starts_with("grow uppg's data PVC") {
            let p = json!({"metadata": {"annotations": {record: "[]"}},
                "spec": {"resources": {"requests": {"storage": "2Gi"}}}});
            a_pvcs
                .patch(&format!("{other}-1"), &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("patch uppg's Cluster status") {
            let p = json!({"status": {"targetPrimary": format!("{other}-2")}});
            a_clusters
                .patch_status(other, &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("take uppg's Lease") {
            let mut lease = leases
                .get(&format!("cnpg-autoresize-{other}"))
                .await
                .unwrap();
            lease.spec.as_mut().unwrap().holder_identity = Some(format!("{cluster}-1"));
            a_leases
                .replace(
                    &format!("cnpg-autoresize-{other}"),
                    &PostParams::default(),
                    &lease,
                )
                .await
                .map(drop)
        } else if name.starts_with("create Lease") {
            let mut lease = b_lease.clone();
            lease.spec.as_mut().unwrap().holder_identity = Some(format!("{cluster}-1"));
            a_leases
                .create(&PostParams::default(), &lease)
                .await
                .map(drop)
        } else if name.starts_with("patch the status of uppg's AutoResizePolicy") {
            let p = json!({"status": {"conditions": []}});
            a_policies
                .patch_status(other, &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("shrink its own PVC") {
            let p = json!({"spec": {"resources": {"requests": {"storage": "96Mi"}}}});
            a_pvcs
                .patch(&format!("{cluster}-guard"), &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("relabel its own PVC") {
            let p = json!({"metadata": {"labels": {"cnpg.io/cluster": other}}});
            a_pvcs
                .patch(&format!("{cluster}-guard"), &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("set another annotation") {
            let p = json!({"metadata": {"annotations": {"example.com/x": "y"}}});
            a_pvcs
                .patch(&format!("{cluster}-guard"), &pp, &merge(p))
                .await
                .map(drop)
        } else if name.starts_with("grow its own PVC") {
            let p = json!({"metadata": {"annotations": {record: "[]"}},
                "spec": {"resources": {"requests": {"storage": "160Mi"}}}});
            a_pvcs
                .patch(&format!("{cluster}-guard"), &pp, &merge(p))
                .await
                .map(drop)
        } else {
            panic!("a recorded case this test does not play: {name}");
        };
        match (case["allowed"].as_bool().unwrap(), result) {
            (true, Ok(())) => {}
            (false, Err(kube::Error::Api(status))) => {
                let expected = case["template"]
                    .as_str()
                    .unwrap()
                    .replace("<namespace>", &ns)
                    .replace("<cluster>", cluster)
                    .replace("<other>", other);
                assert_eq!(status.code, case["code"].as_u64().unwrap() as u16, "{name}");
                assert_eq!(status.message, expected, "{name}");
            }
            (allowed, result) => {
                panic!("{name}: a real server allowed = {allowed}, here {result:?}")
            }
        }
    }

    // A's managers work under the same rules.
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
}

/// CloudNativePG instance pods as each supported version creates them.
const POD_FIXTURES: &[(&str, &str)] = &[
    (
        "cnpg-1.25-guaranteed",
        include_str!("../packaging/pods/cnpg-1.25-guaranteed.yaml"),
    ),
    (
        "cnpg-1.25-burstable",
        include_str!("../packaging/pods/cnpg-1.25-burstable.yaml"),
    ),
    (
        "cnpg-1.27.0-guaranteed",
        include_str!("../packaging/pods/cnpg-1.27.0-guaranteed.yaml"),
    ),
    (
        "cnpg-1.27.0-burstable",
        include_str!("../packaging/pods/cnpg-1.27.0-burstable.yaml"),
    ),
    (
        "cnpg-1.28.2-guaranteed",
        include_str!("../packaging/pods/cnpg-1.28.2-guaranteed.yaml"),
    ),
    (
        "cnpg-1.28.2-burstable",
        include_str!("../packaging/pods/cnpg-1.28.2-burstable.yaml"),
    ),
    (
        "cnpg-1.30-guaranteed",
        include_str!("../packaging/pods/cnpg-1.30-guaranteed.yaml"),
    ),
    (
        "cnpg-1.30-burstable",
        include_str!("../packaging/pods/cnpg-1.30-burstable.yaml"),
    ),
    (
        "cnpg-main-guaranteed",
        include_str!("../packaging/pods/cnpg-main-guaranteed.yaml"),
    ),
    (
        "cnpg-main-burstable",
        include_str!("../packaging/pods/cnpg-main-burstable.yaml"),
    ),
];

/// A fixture pod as instance `pod` of `cluster` in `namespace`.
fn fixture_pod(text: &str, cluster: &str, pod: &str, namespace: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_norway::from_str(text).unwrap();
    let fixture_cluster = v["metadata"]["labels"]["cnpg.io/cluster"]
        .as_str()
        .unwrap()
        .to_string();
    let fixture_pod = v["metadata"]["name"].as_str().unwrap().to_string();
    let text = serde_json::to_string(&v)
        .unwrap()
        .replace(&format!("\"{fixture_pod}\""), &format!("\"{pod}\""))
        .replace(&format!("\"{fixture_cluster}\""), &format!("\"{cluster}\""));
    v = serde_json::from_str(&text).unwrap();
    v["metadata"]["namespace"] = json!(namespace);
    v["metadata"]["labels"]["cnpg.io/instanceRole"] = json!("primary");
    v["metadata"]["labels"]["role"] = json!("primary");
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    v
}

/// The injected container of a stored pod, run on this machine as the
/// kubelet would run it: the real binary with the rendered arguments and
/// environment (field references resolved), CloudNativePG's paths mapped
/// to the scenario's volumes and socket, ports to the ones this machine
/// gives the pod, `runAsUser` to PostgreSQL's OS user, and the kubeconfig of
/// the pod's ServiceAccount in place of its token mount.
fn injected_launch(
    env: &Env,
    stored: &serde_json::Value,
    paths: &[(&str, std::path::PathBuf)],
) -> cnpg_testbed::ContainerLaunch {
    let container = stored["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cnpg-autoresize")
        .unwrap()
        .clone();
    let pod = stored["metadata"]["name"].as_str().unwrap();
    let instance = env.scenario.instance(pod).unwrap();
    let map_path = |value: &str| -> String {
        let mut out = value.to_string();
        for (from, to) in paths {
            out = out.replace(from, &to.to_string_lossy());
        }
        out
    };
    let mut command = cnpg_testbed::ContainerCommand::new(binary());
    for arg in container["args"].as_array().unwrap() {
        let arg = arg.as_str().unwrap();
        let arg = match arg.strip_prefix("--http-addr=") {
            Some(_) => format!("--http-addr={}:{}", instance.ip, env.port),
            None => map_path(arg),
        };
        command = command.arg(arg);
    }
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = match (
            &e["value"],
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (serde_json::Value::String(v), _) => map_path(v),
            (_, Some("metadata.name")) => pod.to_string(),
            (_, Some("metadata.namespace")) => env.scenario.namespace.clone(),
            (_, Some("metadata.labels['cnpg.io/cluster']")) => env.scenario.cluster.clone(),
            other => panic!("an environment variable this test cannot resolve: {other:?}"),
        };
        command.env.push((name.into(), Some(value.into())));
    }
    let kubeconfig = env
        .scenario
        .dir()
        .join(format!("{pod}-injected.kubeconfig"));
    env.scenario
        .sandbox
        .write_kubeconfig(&kubeconfig, &env.scenario.identity, &env.scenario.namespace)
        .unwrap();
    command
        .env
        .push(("KUBECONFIG".into(), Some(kubeconfig.clone().into())));
    // On one machine every server has its own port; in the pod it is 5432.
    let server = env.scenario.server(pod).unwrap();
    command
        .env
        .push(("PGPORT".into(), Some(server.port().to_string().into())));
    if !is_root() {
        command = command.arg("--simulated-volumes");
    }
    assert_eq!(container["securityContext"]["runAsUser"], 26);
    if server.run_as().switch {
        server.run_as().chown(&kubeconfig).unwrap();
        command.user = Some((server.run_as().uid.as_raw(), server.run_as().gid.as_raw()));
    }
    let spec = cnpg_testbed::ContainerSpec::from_yaml(&serde_json::to_string(&container).unwrap())
        .unwrap();
    let port_map = spec
        .ports
        .iter()
        .map(|p| (p.container_port, env.port))
        .collect();
    cnpg_testbed::ContainerLaunch {
        name: "cnpg-autoresize".into(),
        command,
        spec,
        ip: instance.ip.into(),
        port_map,
        log: env.scenario.dir().join(format!("{pod}-injected.log")),
    }
}

/// Cluster pg (data, WAL, tablespace analytics; resize off) without manager
/// pods, the chart's MutatingAdmissionPolicy injecting into its pods.
async fn env_with_the_injection() -> Env {
    let builder = Scenario::builder("pg")
        .data(128 * MIB, json!({"enabled": false}))
        .wal(128 * MIB, json!({"enabled": false}))
        .tablespace("analytics", 64 * MIB, json!({"enabled": false}));
    let env = Env::prepare(
        builder,
        ManagerOptions::default(),
        fork_cluster_crd(),
        MANAGER_ROLE,
    )
    .await;
    install_admission(
        &env.scenario.client,
        &admission_policies(
            &env.scenario.cluster,
            &["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"],
        ),
    )
    .await;
    env
}

/// Instance pg-1's pod deleted and created anew as CloudNativePG 1.30 makes
/// a Guaranteed one (through the admission policies the scenario has), with
/// the volumes of the scenario's cluster (tablespace analytics only:
/// CloudNativePG labels a PVC with the raw tablespace name, which a real
/// API server refuses for `_scratch`), its status as the kubelet reports a
/// running pod. Returns the stored pod and CloudNativePG's paths mapped to
/// this machine's.
async fn recreate_as_cnpg_1_30_pod(
    env: &Env,
) -> (serde_json::Value, Vec<(&'static str, std::path::PathBuf)>) {
    use cnpg_testbed::cluster::VolumeRole;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    let pods: Api<Pod> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    pods.delete("pg-1", &DeleteParams::default()).await.unwrap();
    let mut object = fixture_pod(
        include_str!("../packaging/pods/cnpg-1.30-guaranteed.yaml"),
        "pg",
        "pg-1",
        &env.scenario.namespace,
    );
    let spec = &mut object["spec"];
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "tbs-1scratch");
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().unwrap() {
            if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                mounts.retain(|m| m["name"] != "tbs-1scratch");
            }
        }
    }
    let object: Pod = serde_json::from_value(object).unwrap();
    let stored = pods.create(&PostParams::default(), &object).await.unwrap();
    let stored = serde_json::to_value(&stored).unwrap();
    assert_eq!(stored["status"]["qosClass"], "Guaranteed");
    let instance = env.scenario.instance("pg-1").unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": instance.ip.to_string(),
        "podIPs": [{"ip": instance.ip.to_string()}], "qosClass": "Guaranteed",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("pg-1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let server = env.scenario.server("pg-1").unwrap();
    let volume_path =
        |role: VolumeRole| instance.volume(&role).unwrap().volume.path().to_path_buf();
    let paths = vec![
        ("/var/lib/postgresql/data", volume_path(VolumeRole::Data)),
        ("/var/lib/postgresql/wal", volume_path(VolumeRole::Wal)),
        (
            "/var/lib/postgresql/tablespaces/analytics",
            volume_path(VolumeRole::Tablespace("analytics".into())),
        ),
        ("/controller/run", server.socket_dir()),
    ];
    (stored, paths)
}

/// pg-1's pod under the kubelet stand-in: CloudNativePG's
/// bootstrap-controller, `sidecar`, then `postgres` (a stand-in for the
/// instance manager; PostgreSQL itself is the scenario's server). Returns
/// once `postgres` has started and the pod is Ready.
async fn run_pg_1_pod(env: &Env, sidecar: cnpg_testbed::ContainerLaunch) -> cnpg_testbed::Pod {
    use cnpg_testbed::{InitContainer, KubeletConfig, Pod as KubeletPod, PodSpec};
    let pod = KubeletPod::start(
        PodSpec {
            name: "pg-1".into(),
            init_containers: vec![
                InitContainer::RunToCompletion(stand_in(env, "bootstrap-controller", "exit 0")),
                InitContainer::Sidecar(sidecar),
            ],
            containers: vec![stand_in(env, "postgres", "exec sleep 3600")],
        },
        KubeletConfig::default(),
    )
    .unwrap();
    pod.wait_main_started(secs(30)).await.unwrap();
    pod.wait_ready(true, secs(30)).await.unwrap();
    pod
}

/// A container of pg-1's pod played by a shell script.
fn stand_in(env: &Env, name: &str, script: &str) -> cnpg_testbed::ContainerLaunch {
    let instance = env.scenario.instance("pg-1").unwrap();
    cnpg_testbed::ContainerLaunch {
        name: name.into(),
        command: cnpg_testbed::ContainerCommand::new("/bin/sh")
            .arg("-c")
            .arg(script),
        spec: cnpg_testbed::ContainerSpec::from_yaml(&format!("name: {name}\n")).unwrap(),
        ip: instance.ip.into(),
        port_map: Default::default(),
        log: env.scenario.dir().join(format!("pg-1-{name}.log")),
    }
}

/// The chart's MutatingAdmissionPolicy on CloudNativePG instance pods of
/// every supported version, Guaranteed and Burstable: the API sandbox
/// computes `status.qosClass` after admission as a real API server does, and
/// it is the pod's own; the sidecar is the last init container. Then one of
/// them runs as the kubelet runs it: CloudNativePG's bootstrap-controller,
/// the injected sidecar exactly as rendered (the real manager, peer
/// authentication over CloudNativePG's socket), then `postgres` — which
/// starts, the pod Ready, while the sidecar leads, reports and sees WAL health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_sidecar_keeps_the_pods_qos_class_and_runs_as_rendered() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};

    let env = env_with_the_injection().await;
    let admin = env.scenario.client.clone();
    let ns = env.scenario.namespace.clone();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);

    for (n, (name, text)) in POD_FIXTURES.iter().enumerate() {
        let pod = format!("pg-{}", 11 + n);
        let object: Pod = serde_json::from_value(fixture_pod(text, "pg", &pod, &ns)).unwrap();
        let expected = if name.ends_with("guaranteed") {
            "Guaranteed"
        } else {
            "Burstable"
        };
        let stored = pods.create(&PostParams::default(), &object).await.unwrap();
        let stored = serde_json::to_value(&stored).unwrap();
        assert_eq!(stored["status"]["qosClass"], expected, "{name}");
        let last = stored["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(last["name"], "cnpg-autoresize", "{name}");
        assert_eq!(last["restartPolicy"], "Always", "{name}");
        assert_eq!(
            last["resources"]["requests"], last["resources"]["limits"],
            "{name}"
        );
        pods.delete(&pod, &DeleteParams::default()).await.unwrap();
    }

    let (stored, paths) = recreate_as_cnpg_1_30_pod(&env).await;
    let sidecar = injected_launch(&env, &stored, &paths);
    let instance = env.scenario.instance("pg-1").unwrap();
    let pod = run_pg_1_pod(&env, sidecar).await;

    let metrics = |addr: String| async move { get_text(&format!("http://{addr}/metrics")).await };
    let addr = format!("{}:{}", instance.ip, env.port);
    wait_until("the injected sidecar's WAL health", secs(30), || {
        let addr = addr.clone();
        async move {
            let text = metrics(addr).await.ok_or("no answer".to_string())?;
            let up = metric(&text, "cnpg_wal_health_up", &[]);
            let tbs = metric(
                &text,
                "cnpg_disk_total_bytes",
                &[("volume_type", "tablespace"), ("tablespace", "analytics")],
            );
            (up == Some(1.0) && tbs.is_some())
                .then_some(())
                .ok_or(format!("wal health {up:?}, analytics {tbs:?}"))
        }
    })
    .await;
    assert_eq!(env.wait_leader(secs(30)).await, "pg-1");
    let sidecar = pod.container("cnpg-autoresize").unwrap();
    assert_eq!(sidecar.restart_count(), 0, "{}", sidecar.logs());
    pod.stop().await.unwrap();
}

/// Scenario 32 at the pod level: the sidecar CloudNativePG 1.30's pod gets
/// from the chart, given lease timings that cannot work (`--lease-duration
/// 10s` with the default 5 s renew: what `extraArgs` could do before the
/// chart refused it), runs under the kubelet's ordering. It stays up inert
/// instead of exiting, so `postgres` starts after it and the pod is Ready;
/// the sidecar serves its disk figures, says it is inert, never restarts,
/// and no lease is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inert_sidecar_lets_postgresql_start_and_the_pod_be_ready() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::Api;

    let env = env_with_the_injection().await;
    let (stored, paths) = recreate_as_cnpg_1_30_pod(&env).await;
    let mut sidecar = injected_launch(&env, &stored, &paths);
    let lease = sidecar
        .command
        .args
        .iter_mut()
        .find(|a| a.to_string_lossy().starts_with("--lease-duration"))
        .expect("the chart renders --lease-duration");
    *lease = "--lease-duration=10s".into();
    let pod = run_pg_1_pod(&env, sidecar).await;

    let instance = env.scenario.instance("pg-1").unwrap();
    let base = format!("http://{}:{}", instance.ip, env.port);
    wait_until("the inert sidecar's figures", secs(30), || async {
        let text = get_text(&format!("{base}/metrics"))
            .await
            .ok_or("no answer".to_string())?;
        let valid = metric(&text, "cnpg_autoresize_config_valid", &[]);
        let data = metric(&text, "cnpg_disk_total_bytes", &[("volume_type", "data")]);
        (valid == Some(0.0) && data.is_some())
            .then_some(())
            .ok_or(format!("config_valid {valid:?}, data {data:?}"))
    })
    .await;
    let status = get_json(&format!("{base}/v1/status")).await.unwrap();
    assert_eq!(status["configValid"], json!(false), "{status}");
    let said = status["problems"].to_string();
    assert!(
        said.contains("--renew-interval") && said.contains("10s"),
        "{status}"
    );
    // Still Ready and never restarted, after the sidecar has done all it will.
    pod.wait_ready(true, secs(5)).await.unwrap();
    let sidecar = pod.container("cnpg-autoresize").unwrap();
    assert_eq!(sidecar.restart_count(), 0, "{}", sidecar.logs());
    let leases: Api<Lease> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    assert!(
        leases
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "an inert manager takes no lease"
    );
    pod.stop().await.unwrap();
}
