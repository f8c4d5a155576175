//! The real kubectl (`--validate=false`) against the sandbox: CRUD on every
//! resource, watches, and the same error lines a real API server produces.
//!
//! kubectl is required: when it is missing these tests fail (CI installs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube_sandbox::Sandbox;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::*;

fn kubectl_bin() -> PathBuf {
    let candidates = std::iter::once(PathBuf::from("/usr/bin/kubectl")).chain(
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("kubectl"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!("kubectl is required for the kubectl conformance tests (CI installs it): not found at /usr/bin/kubectl or in PATH");
}

/// One kubectl identity with its own kubeconfig and discovery cache.
struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sb: &Sandbox, identity: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sb.write_kubeconfig(&dir.path().join("kubeconfig"), identity, NS)
            .unwrap();
        Self {
            bin: kubectl_bin(),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.ok, "kubectl {args:?} failed: {}", out.stderr);
        out.stdout
    }

    async fn fails(&self, args: &[&str], expected: &str) {
        let out = self.run(args).await;
        assert!(
            !out.ok,
            "kubectl {args:?} unexpectedly succeeded: {}",
            out.stdout
        );
        assert!(
            out.stderr.contains(expected),
            "kubectl {args:?}: expected {expected:?} in stderr, got: {}",
            out.stderr
        );
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).expect("kubectl -o json prints JSON")
    }

    fn file(&self, name: &str, content: &Value) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(content).unwrap()).unwrap();
        path_str(&path)
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// (kubectl type, manifest) for every served resource.
fn manifests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "persistentvolumeclaim",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "k1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "k1"},
            "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}),
        ),
        (
            "event",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "k1"},
            "involvedObject": {"kind": "Pod", "name": "k1"}, "reason": "Test", "message": "m"}),
        ),
        (
            "events.v1.events.k8s.io",
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "k1"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "c", "reportingInstance": "i", "action": "A", "reason": "R", "type": "Normal"}),
        ),
        (
            "lease",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "k1"}, "spec": {"holderIdentity": "a"}}),
        ),
        (
            "storageclass",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "k1"}, "provisioner": "p"}),
        ),
        (
            "cluster",
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "k1"}, "spec": {"instances": 1}}),
        ),
    ]
}

#[tokio::test]
async fn kubectl_crud_on_every_resource() {
    let sb = sandbox().await;
    let k = Kubectl::new(&sb, "admin");
    for (ty, manifest) in manifests() {
        let file = k.file(&format!("{ty}.json"), &manifest);
        let created = k.ok(&["create", "-f", &file, "--validate=false"]).await;
        assert!(created.contains("created"), "{ty}: {created}");
        let table = k.ok(&["get", ty, "k1"]).await;
        assert!(
            table.starts_with("NAME") && table.contains("k1"),
            "{ty}: {table}"
        );
        let list = k.json(&["get", ty]).await;
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(1),
            "{ty}: {list}"
        );

        k.ok(&[
            "patch",
            ty,
            "k1",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"m":"1"}}}"#,
        ])
        .await;
        k.ok(&["patch", ty, "k1", "--type", "json", "-p", r#"[{"op":"test","path":"/metadata/labels/m","value":"1"},{"op":"add","path":"/metadata/labels/j","value":"2"}]"#]).await;
        let mut obj = k.json(&["get", ty, "k1"]).await;
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"m": "1", "j": "2"}),
            "{ty}"
        );
        obj["metadata"]["annotations"] = json!({"replaced": "yes"});
        let file = k.file(&format!("{ty}-replace.json"), &obj);
        k.ok(&["replace", "-f", &file, "--validate=false"]).await;
        assert_eq!(
            k.json(&["get", ty, "k1"]).await["metadata"]["annotations"]["replaced"],
            "yes"
        );

        let deleted = k.ok(&["delete", ty, "k1"]).await;
        assert!(deleted.contains("deleted"), "{ty}: {deleted}");
        k.fails(&["get", ty, "k1"], "Error from server (NotFound)")
            .await;
    }
}

#[tokio::test]
async fn kubectl_sees_real_server_errors() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fixed", Some(false)).await;
    bound_pvc(&c, "fixed-pvc", "1Gi", "fixed").await;
    let k = Kubectl::new(&sb, "admin");

    k.fails(
        &["get", "pvc", "missing"],
        "Error from server (NotFound): persistentvolumeclaims \"missing\" not found",
    )
    .await;
    let file = k.file("dup.json", &manifests()[0].1);
    k.ok(&["create", "-f", &file, "--validate=false"]).await;
    k.fails(
        &["create", "-f", &file, "--validate=false"],
        "Error from server (AlreadyExists)",
    )
    .await;
    k.fails(
        &["patch", "pvc", "k1", "--type", "merge", "-p", r#"{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}"#],
        "Error from server (Conflict): Operation cannot be fulfilled on persistentvolumeclaims \"k1\"",
    )
    .await;
    let grow = r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#;
    k.fails(
        &["patch", "pvc", "fixed-pvc", "--type", "merge", "-p", grow],
        "Error from server (Forbidden): persistentvolumeclaims \"fixed-pvc\" is forbidden: only dynamically provisioned pvc can be resized",
    )
    .await;
    let shrink = r#"{"spec":{"resources":{"requests":{"storage":"500Mi"}}}}"#;
    // kubectl words 422 answers as "The <Kind> "<name>" is invalid".
    k.fails(
        &["patch", "pvc", "fixed-pvc", "--type", "merge", "-p", shrink],
        "The PersistentVolumeClaim \"fixed-pvc\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity",
    )
    .await;
    k.fails(
        &[
            "patch",
            "pvc",
            "k1",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/metadata/name","value":"other"}]"#,
        ],
        "The request is invalid",
    )
    .await;

    sb.enforce_role("limited", "kind: Role\nmetadata: {namespace: ns}\nrules: [{apiGroups: [\"\"], resources: [persistentvolumeclaims], verbs: [get, list]}]\n")
        .unwrap();
    let limited = Kubectl::new(&sb, "limited");
    limited.ok(&["get", "pvc", "k1"]).await;
    limited
        .fails(
            &["delete", "pvc", "k1"],
            "Error from server (Forbidden): persistentvolumeclaims \"k1\" is forbidden: User \"limited\" cannot delete resource \"persistentvolumeclaims\" in API group \"\" in the namespace \"ns\"",
        )
        .await;
}

#[tokio::test]
async fn kubectl_watch_sees_a_change() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let k = Kubectl::new(&sb, "admin");
    let file = k.file("w.json", &manifests()[0].1);
    k.ok(&["create", "-f", &file, "--validate=false"]).await;
    let mut child = k
        .command(&["get", "pvc", "-w", "-o", "json", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl -w starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        let mut patched = false;
        let mut buf = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            // `-o json` pretty-prints each event over several lines; parse once complete.
            buf.push_str(&line);
            let Ok(ev) = serde_json::from_str::<Value>(&buf) else {
                continue;
            };
            buf.clear();
            match ev["type"].as_str() {
                Some("ADDED") if !patched => {
                    patched = true;
                    pvcs(&c)
                        .patch(
                            "k1",
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"w": "1"}}})),
                        )
                        .await
                        .unwrap();
                }
                Some("MODIFIED") if ev["object"]["metadata"]["labels"]["w"] == "1" => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(seen, Ok(true), "kubectl get -w printed the MODIFIED event");
}

fn grow_patch(size: &str) -> String {
    json!({"spec": {"resources": {"requests": {"storage": size}}}}).to_string()
}

#[tokio::test]
async fn kubectl_sees_the_pvc_resize_rules() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "bound", "1Gi", "fast").await;
    let k = Kubectl::new(&sb, "admin");
    let file = k.file(
        "pending.json",
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pending"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    k.ok(&["create", "-f", &file, "--validate=false"]).await;
    k.fails(
        &["patch", "pvc", "pending", "--type", "merge", "-p", &grow_patch("2Gi")],
        "The PersistentVolumeClaim \"pending\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
    )
    .await;
    k.ok(&[
        "patch",
        "pvc",
        "bound",
        "--type",
        "merge",
        "-p",
        &grow_patch("4Gi"),
    ])
    .await;
    // Back to a value still above status.capacity (1Gi): accepted.
    k.ok(&[
        "patch",
        "pvc",
        "bound",
        "--type",
        "merge",
        "-p",
        &grow_patch("2Gi"),
    ])
    .await;
    let got = k.json(&["get", "pvc", "bound"]).await;
    assert_eq!(got["spec"]["resources"]["requests"]["storage"], "2Gi");
    k.fails(
        &["patch", "pvc", "bound", "--type", "merge", "-p", &grow_patch("1Gi")],
        "The PersistentVolumeClaim \"bound\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity",
    )
    .await;
}

#[tokio::test]
async fn kubectl_with_the_fork_cluster_crd() {
    let sb = fork_sandbox().await;
    let k = Kubectl::new(&sb, "admin");
    let mut manifest = fork_cluster("pg");
    manifest["spec"]["madeUp"] = json!(true);
    let file = k.file("pg.json", &manifest);
    // `--validate=false` is fieldValidation=Ignore for kubectl >= 1.25 (no warning then) and
    // no parameter (Warn) for older ones: only the pruning is the same for both.
    k.ok(&["create", "-f", &file, "--validate=false"]).await;
    let got = k.json(&["get", "cluster", "pg"]).await;
    assert!(got["spec"].get("madeUp").is_none(), "{got}");
    // kubectl patch sends no fieldValidation: the server warns, kubectl prints each Warning header.
    let out = k
        .run(&[
            "patch",
            "cluster",
            "pg",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"madeUp":true},"status":{"notInCrd":1}}"#,
        ])
        .await;
    assert!(out.ok, "kubectl patch failed: {}", out.stderr);
    for field in ["spec.madeUp", "status.notInCrd"] {
        let line = format!("Warning: unknown field \"{field}\"");
        assert!(
            out.stderr.contains(&line),
            "expected {line:?} in: {}",
            out.stderr
        );
    }
    let got = k.json(&["get", "cluster", "pg"]).await;
    assert!(got["spec"].get("madeUp").is_none(), "{got}");
    assert_eq!(
        got["spec"]["replicationSlots"]["highAvailability"]["slotPrefix"],
        "_cnpg_"
    );
    k.fails(
        &["patch", "cluster", "pg", "--type", "merge", "-p", r#"{"spec":{"storage":{"resize":{"strategy":{"mode":"Recommend"}}}}}"#],
        r#"spec.storage.resize.strategy.mode: Unsupported value: "Recommend": supported values: "Standard""#,
    )
    .await;
    k.fails(
        &["patch", "cluster", "pg", "--type", "merge", "-p", r#"{"spec":{"instances":"three"}}"#],
        r#"The Cluster "pg" is invalid: spec.instances: Invalid value: "string": spec.instances in body must be of type integer: "string""#,
    )
    .await;
    k.ok(&[
        "patch",
        "cluster",
        "pg",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"storage":{"resize":{}}}}"#,
    ])
    .await;
    let got = k.json(&["get", "cluster", "pg"]).await;
    assert_eq!(got["spec"]["storage"]["resize"]["enabled"], false);
}

#[tokio::test]
async fn kubectl_apply_registers_a_crd_then_creates_its_objects() {
    let sb = sandbox().await;
    let k = Kubectl::new(&sb, "admin");
    let crd = k.file("crd.json", &crate::crd_schema::widget_crd());
    let out = k.ok(&["apply", "-f", &crd, "--validate=false"]).await;
    assert!(out.contains("created"), "{out}");
    let crds = k.ok(&["get", "crd"]).await;
    assert!(crds.contains("widgets.example.com"), "{crds}");
    let widget = k.file(
        "widget.json",
        &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"color": "blue", "extra": 1}}),
    );
    k.ok(&["create", "-f", &widget, "--validate=false"]).await;
    let out = k
        .run(&[
            "patch",
            "widget",
            "w",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"extra":2}}"#,
        ])
        .await;
    assert!(out.ok, "kubectl patch widget failed: {}", out.stderr);
    assert!(
        out.stderr
            .contains(r#"Warning: unknown field "spec.extra""#),
        "{}",
        out.stderr
    );
    let got = k.json(&["get", "widget", "w"]).await;
    assert_eq!(got["spec"], json!({"color": "blue", "size": 3}));
    k.fails(
        &[
            "patch",
            "widget",
            "w",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"color":"green"}}"#,
        ],
        r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#,
    )
    .await;
    k.ok(&["delete", "crd", "widgets.example.com"]).await;
    let list = raw_http(
        &sb,
        "GET",
        "/apis/example.com/v1/namespaces/ns/widgets",
        &[("Authorization", "Bearer admin")],
        "",
    )
    .await;
    assert_eq!(list.code, 404, "{}", list.body);
}
