//! The hook's decisions on hand-made pods; the gRPC layer, CloudNativePG's
//! real pod shapes and the admission policy's output are in
//! tests/core/plugin.rs.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn template() -> SidecarTemplate {
    SidecarTemplate::builtin().expect("the built-in template parses")
}

fn cluster(params: Value) -> Value {
    json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"instances": 3, "plugins": [
            {"name": "barman-cloud.cloudnative-pg.io", "parameters": {"barmanObjectName": "s3"}},
            {"name": PLUGIN_NAME, "parameters": params}]}})
}

fn mount(name: &str, path: &str) -> Value {
    json!({"name": name, "mountPath": path})
}

/// An instance pod as CloudNativePG builds it (the parts the hook reads).
fn pod(mounts: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pg-1", "namespace": "db",
            "labels": {"cnpg.io/cluster": "pg", "cnpg.io/podRole": "instance", "cnpg.io/instanceName": "pg-1"}},
        "spec": {
            "initContainers": [{"name": "bootstrap-controller", "image": "cnpg"}],
            "containers": [{"name": "postgres", "image": "pg", "volumeMounts": mounts}]}})
}

fn full_mounts() -> Vec<Value> {
    vec![
        mount("pgdata", "/var/lib/postgresql/data"),
        mount("scratch-data", "/run"),
        mount("scratch-data", "/controller"),
        mount("shm", "/dev/shm"),
        mount("pg-wal", "/var/lib/postgresql/wal"),
        mount("tbs-events", "/var/lib/postgresql/tablespaces/events"),
        mount("tbs-1scratch", "/var/lib/postgresql/tablespaces/_scratch"),
        mount("deep", "/var/lib/postgresql/tablespaces/a/b"),
        mount("kube-api-access", TOKEN_PATH),
    ]
}

fn patch_of(outcome: Outcome) -> Vec<Value> {
    match outcome {
        Outcome::Patch(ops) => ops,
        other => panic!("expected a patch, got {other:?}"),
    }
}

fn injected(params: Value, pod: &Value) -> Value {
    let ops = patch_of(lifecycle_hook(
        &template(),
        &MountPaths::default(),
        &cluster(params),
        pod,
    ));
    let mut patched = pod.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    let init = patched["spec"]["initContainers"].as_array().unwrap();
    init.last().unwrap().clone()
}

fn errors_of(params: Value) -> Vec<String> {
    match lifecycle_hook(
        &template(),
        &MountPaths::default(),
        &cluster(params),
        &pod(full_mounts()),
    ) {
        Outcome::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected refused parameters, got {other:?}"),
    }
}

#[test]
fn the_container_gets_the_pods_volumes_by_mount_path_in_the_policys_order() {
    let c = injected(json!({}), &pod(full_mounts()));
    assert_eq!(c["name"], "cnpg-autoresize");
    assert_eq!(c["restartPolicy"], "Always");
    assert_eq!(
        c["volumeMounts"],
        json!([
            {"name": "pgdata", "mountPath": "/var/lib/postgresql/data", "readOnly": true},
            {"name": "pg-wal", "mountPath": "/var/lib/postgresql/wal", "readOnly": true},
            {"name": "tbs-events", "mountPath": "/var/lib/postgresql/tablespaces/events", "readOnly": true},
            {"name": "tbs-1scratch", "mountPath": "/var/lib/postgresql/tablespaces/_scratch", "readOnly": true},
            {"name": "scratch-data", "mountPath": "/controller", "readOnly": true},
            {"name": "kube-api-access", "mountPath": TOKEN_PATH, "readOnly": true},
        ])
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..5],
        [
            "run",
            "--data-path=/var/lib/postgresql/data",
            "--wal-path=/var/lib/postgresql/wal",
            "--tablespace=events=/var/lib/postgresql/tablespaces/events",
            "--tablespace=_scratch=/var/lib/postgresql/tablespaces/_scratch",
        ]
    );
    assert!(args.contains(&"--http-addr=0.0.0.0:9188"), "{args:?}");
    assert!(c.get("readinessProbe").is_none() && c.get("startupProbe").is_none());
}

#[test]
fn a_pod_with_only_a_data_volume_gets_only_that_and_no_token_it_lacks() {
    let c = injected(
        json!({}),
        &pod(vec![mount("pgdata", "/var/lib/postgresql/data")]),
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "pgdata", "mountPath": "/var/lib/postgresql/data", "readOnly": true}])
    );
    assert!(!c["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("--wal-path")));
}

#[test]
fn the_socket_directory_is_mounted_for_peer_authentication_only() {
    let c = injected(
        json!({"postgresAuth": "password", "postgresSecret": "pg-monitor"}),
        &pod(full_mounts()),
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        !mounts.iter().any(|m| m["mountPath"] == CONTROLLER_DIR),
        "{mounts:?}"
    );
    let env = c["env"].as_array().unwrap();
    let password = env.iter().find(|e| e["name"] == "PGPASSWORD").unwrap();
    assert_eq!(password["valueFrom"]["secretKeyRef"]["name"], "pg-monitor");
    assert_eq!(password["valueFrom"]["secretKeyRef"]["key"], "password");
    assert_eq!(password["valueFrom"]["secretKeyRef"]["optional"], true);
    assert!(env
        .iter()
        .any(|e| e["name"] == "PGHOST" && e["value"] == "localhost"));
}

#[test]
fn password_mode_defaults_to_the_clusters_own_secret_as_the_policy_does() {
    let c = injected(
        json!({"postgresAuth": "password", "postgresSecretKey": "pw"}),
        &pod(full_mounts()),
    );
    let env = c["env"].as_array().unwrap();
    let password = env.iter().find(|e| e["name"] == "PGPASSWORD").unwrap();
    assert_eq!(
        password["valueFrom"]["secretKeyRef"]["name"],
        "pg-autoresize"
    );
    assert_eq!(password["valueFrom"]["secretKeyRef"]["key"], "pw");
}

#[test]
fn parameters_set_the_sidecars_settings_keeping_requests_equal_to_limits() {
    let c = injected(
        json!({"image": "registry.example.com:5000/ops/cnpg-autoresize:0.2.0", "probeInterval": "2s",
            "cpu": "100m", "memory": "128Mi", "httpPort": "9300"}),
        &pod(full_mounts()),
    );
    assert_eq!(
        c["image"],
        "registry.example.com:5000/ops/cnpg-autoresize:0.2.0"
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "100m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    let args = c["args"].as_array().unwrap();
    assert!(args.contains(&json!("--probe-interval=2s")), "{args:?}");
    assert!(
        args.contains(&json!("--http-addr=0.0.0.0:9300")),
        "{args:?}"
    );
    assert!(!args.contains(&json!("--probe-interval=1s")));
    assert_eq!(c["ports"][0]["containerPort"], 9300);
    assert_eq!(c["ports"][0]["name"], "autoresize");
}

#[test]
fn every_refused_parameter_names_its_field_and_value() {
    assert!(errors_of(json!({"cpu": "lots"}))[0]
        .starts_with(r#"spec.plugins[1].parameters.cpu="lots": not a Kubernetes quantity"#));
    let cases = [
        (json!({"probeIntervall": "2s"}), "spec.plugins[1].parameters.probeIntervall=\"2s\": unknown parameter"),
        (json!({"image": "Not An Image"}), "spec.plugins[1].parameters.image=\"Not An Image\": not an image reference"),
        (json!({"image": ""}), "spec.plugins[1].parameters.image=\"\": not an image reference"),
        (json!({"probeInterval": "fast"}), "spec.plugins[1].parameters.probeInterval=\"fast\": invalid duration"),
        (json!({"probeInterval": "10s"}), "spec.plugins[1].parameters.probeInterval=\"10s\": a report is trusted for 3 probe intervals"),
        (json!({"probeInterval": "0s"}), "spec.plugins[1].parameters.probeInterval=\"0s\": duration \"0s\" must be positive"),
        (json!({"memory": "16Mi"}), "spec.plugins[1].parameters.memory=\"16Mi\": must be at least 32Mi"),
        (json!({"cpu": "1m"}), "spec.plugins[1].parameters.cpu=\"1m\": must be at least 10m"),
        (json!({"postgresAuth": "trust"}), "spec.plugins[1].parameters.postgresAuth=\"trust\": expected peer or password"),
        (json!({"postgresSecret": "pg-monitor"}), "spec.plugins[1].parameters.postgresSecret=\"pg-monitor\": used only with postgresAuth=password"),
        (json!({"postgresAuth": "password", "postgresSecret": "Bad_Name"}), "spec.plugins[1].parameters.postgresSecret=\"Bad_Name\": not a Secret name"),
        (json!({"postgresAuth": "password", "postgresSecretKey": "a/b"}), "spec.plugins[1].parameters.postgresSecretKey=\"a/b\": not a Secret key"),
        (json!({"httpPort": "8000"}), "spec.plugins[1].parameters.httpPort=\"8000\": CloudNativePG uses this port"),
        (json!({"httpPort": "70000"}), "spec.plugins[1].parameters.httpPort=\"70000\": expected a port number"),
        (json!({"httpPort": 9300}), "spec.plugins[1].parameters.httpPort=\"9300\": expected a string"),
    ];
    for (params, want) in cases {
        let errors = errors_of(params.clone());
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{params}: {errors:?} has no error starting with {want:?}"
        );
    }
    // All of them at once, not just the first.
    assert_eq!(
        errors_of(json!({"cpu": "x", "memory": "y", "bogus": "z"})).len(),
        3
    );
}

#[test]
fn good_image_references_pass() {
    for image in [
        "cnpg-autoresize",
        "ghcr.io/cnpg-autoresize/cnpg-autoresize:0.1.0",
        "localhost:5000/a/b_c__d-e:v1.2_3",
        "registry.example.com/ops/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "registry.example.com/ops/x:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(check_image(image), Ok(()), "{image}");
    }
    for image in [
        "UPPER/case",
        "a//b",
        "a:",
        "a@sha256:xyz",
        "-a",
        "a b",
        "a:tag:more",
    ] {
        assert!(check_image(image).is_err(), "{image} accepted");
    }
}

#[test]
fn nothing_for_job_pods_other_clusters_and_clusters_without_the_plugin() {
    let t = template();
    let paths = MountPaths::default();
    let instance = pod(full_mounts());
    let mut job = instance.clone();
    job["metadata"]["labels"]["cnpg.io/jobRole"] = json!("initdb");
    let mut other = instance.clone();
    other["metadata"]["labels"]["cnpg.io/cluster"] = json!("other");
    let mut not_instance = instance.clone();
    not_instance["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("cnpg.io/podRole");
    let mut not_a_pod = instance.clone();
    not_a_pod["kind"] = json!("Job");
    let mut no_data = instance.clone();
    no_data["spec"]["containers"][0]["volumeMounts"] = json!([mount("shm", "/dev/shm")]);
    let mut has_regular = instance.clone();
    has_regular["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cnpg-autoresize", "image": "x"}));
    for (what, object) in [
        ("a Job pod", &job),
        ("another Cluster's pod", &other),
        ("a pod without podRole", &not_instance),
        ("not a pod", &not_a_pod),
        ("no data mount", &no_data),
        ("a regular container of that name", &has_regular),
    ] {
        assert!(
            matches!(
                lifecycle_hook(&t, &paths, &cluster(json!({})), object),
                Outcome::Skip(_)
            ),
            "{what}"
        );
    }
    let mut without = cluster(json!({}));
    without["spec"]["plugins"].as_array_mut().unwrap().pop();
    assert!(matches!(
        lifecycle_hook(&t, &paths, &without, &instance),
        Outcome::Skip(_)
    ));
    let mut disabled = cluster(json!({}));
    disabled["spec"]["plugins"][1]["enabled"] = json!(false);
    assert!(matches!(
        lifecycle_hook(&t, &paths, &disabled, &instance),
        Outcome::Skip(_)
    ));
    // Invalid parameters do not make a foreign pod ours.
    assert!(matches!(
        lifecycle_hook(&t, &paths, &cluster(json!({"cpu": "x"})), &job),
        Outcome::Skip(_)
    ));
}

#[test]
fn the_hook_is_idempotent_and_replaces_an_outdated_container_in_place() {
    let t = template();
    let paths = MountPaths::default();
    let c = cluster(json!({}));
    let mut pod = pod(full_mounts());
    for _ in 0..2 {
        let ops = patch_of(lifecycle_hook(&t, &paths, &c, &pod));
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut pod, &patch).unwrap();
    }
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2, "{init:?}");
    assert!(patch_of(lifecycle_hook(&t, &paths, &c, &pod)).is_empty());
    // A changed parameter replaces the container where it is, by name.
    let ops = patch_of(lifecycle_hook(
        &t,
        &paths,
        &cluster(json!({"cpu": "80m"})),
        &pod,
    ));
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/initContainers/1");
}

#[test]
fn a_pod_without_init_containers_gets_the_list() {
    let mut p = pod(full_mounts());
    p["spec"].as_object_mut().unwrap().remove("initContainers");
    let ops = patch_of(lifecycle_hook(
        &template(),
        &MountPaths::default(),
        &cluster(json!({})),
        &p,
    ));
    assert_eq!(ops[0]["path"], "/spec/initContainers");
    assert_eq!(ops[0]["value"].as_array().unwrap().len(), 1);
}

#[test]
fn a_plugin_listed_twice_or_unreadable_is_refused() {
    let mut twice = cluster(json!({}));
    twice["spec"]["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": PLUGIN_NAME}));
    let errors = match plugin_entry(&twice) {
        Err(errors) => errors,
        other => panic!("{other:?}"),
    };
    assert_eq!(errors[0].field(), "spec.plugins[2].name");
    let mut bad = cluster(json!({}));
    bad["spec"]["plugins"][1]["parameters"] = json!(["cpu"]);
    assert_eq!(
        plugin_entry(&bad).unwrap_err()[0].field(),
        "spec.plugins[1].parameters"
    );
}

#[test]
fn a_template_without_the_other_auth_mode_refuses_it_by_name() {
    let only_peer = BUILTIN_TEMPLATE.split("\n---").next().unwrap();
    let t = SidecarTemplate::parse(only_peer).unwrap();
    let outcome = lifecycle_hook(
        &t,
        &MountPaths::default(),
        &cluster(json!({"postgresAuth": "password"})),
        &pod(full_mounts()),
    );
    let Outcome::Invalid(errors) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(errors[0]
        .to_string()
        .starts_with("spec.plugins[1].parameters.postgresAuth=\"password\": the plugin's sidecar template has no container"));
}

#[test]
fn templates_that_cannot_be_the_container_are_refused() {
    for (text, want) in [
        ("", "no container"),
        ("- a\n- b\n", "expected a container"),
        ("image: x\n", "has no name"),
        ("name: x\nargs: [serve]\n", "does not run"),
        (
            "name: x\nargs: [run]\n---\nname: x\nargs: [run]\n",
            "a second container",
        ),
    ] {
        let err = SidecarTemplate::parse(text).unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("Pod".to_string()),
            Just("v1".to_string()),
            Just("instance".to_string()),
            Just("pg".to_string()),
            Just(PLUGIN_NAME.to_string()),
            Just("/var/lib/postgresql/data".to_string()),
            Just("/var/lib/postgresql/tablespaces/".to_string()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("kind".to_string()),
                        Just("apiVersion".to_string()),
                        Just("metadata".to_string()),
                        Just("labels".to_string()),
                        Just("cnpg.io/podRole".to_string()),
                        Just("cnpg.io/cluster".to_string()),
                        Just("name".to_string()),
                        Just("spec".to_string()),
                        Just("plugins".to_string()),
                        Just("parameters".to_string()),
                        Just("containers".to_string()),
                        Just("initContainers".to_string()),
                        Just("volumeMounts".to_string()),
                        Just("mountPath".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever CloudNativePG (or anyone) sends, the hook answers: no panic.
    #[test]
    fn the_hook_never_panics(cluster_json in arbitrary_json(), pod_json in arbitrary_json(), params in arbitrary_json()) {
        let t = template();
        let paths = MountPaths::default();
        let _ = lifecycle_hook(&t, &paths, &cluster_json, &pod_json);
        let mut c = cluster(params);
        let _ = lifecycle_hook(&t, &paths, &c, &pod_json);
        c["spec"]["plugins"][1]["parameters"] = pod_json.clone();
        let _ = lifecycle_hook(&t, &paths, &c, &pod(full_mounts()));
        let _ = validate_cluster(&t, &cluster_json);
    }

    /// Patches for real-looking pods always apply, and applying twice adds nothing.
    #[test]
    fn patches_apply_and_are_idempotent(
        extra in prop::collection::vec(("[a-z_]{1,8}", prop_oneof![Just("/var/lib/postgresql/tablespaces/"), Just("/var/lib/postgresql/"), Just("/")]), 0..5),
    ) {
        let mut mounts = full_mounts();
        for (name, dir) in &extra {
            mounts.push(mount(name, &format!("{dir}{name}")));
        }
        let t = template();
        let paths = MountPaths::default();
        let c = cluster(json!({}));
        let mut p = pod(mounts);
        let ops = patch_of(lifecycle_hook(&t, &paths, &c, &p));
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut p, &patch).unwrap();
        prop_assert!(patch_of(lifecycle_hook(&t, &paths, &c, &p)).is_empty());
    }
}
