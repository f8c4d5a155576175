//! The project's generated AutoResizePolicy CRD (read from the chart, as Helm installs
//! it) served by the sandbox, whose default rule evaluator (kube-cel) enforces its CEL
//! `x-kubernetes-validations` like a real API server: a valid policy is created, invalid
//! ones are 422 `Invalid` with every rule's error, through the kube client and through
//! `kubectl --validate=false`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::Api;
use kube_sandbox::Sandbox;
use serde_json::{json, Value};

use crate::common::*;

/// The chart's CRD, by path from this crate (crates/kube-sandbox → the workspace).
fn policy_crd_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with `cargo run --bin crdgen`)",
            path.display()
        )
    })
}

async fn policy_sandbox() -> Sandbox {
    let sb = sandbox().await;
    sb.register_crd(&policy_crd_text())
        .expect("the chart's AutoResizePolicy CRD registers");
    sb
}

fn policies(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoresize.cnpg.io", "v1alpha1", "AutoResizePolicy"),
        "autoresizepolicies",
    );
    Api::namespaced_with(client.clone(), NS, &resource)
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "autoresize.cnpg.io/v1alpha1",
        "kind": "AutoResizePolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Data and WAL, with every policy-only field: valid.
fn valid_spec() -> Value {
    json!({
        "cluster": "pg-main",
        "storage": {"resize": {"enabled": true,
            "triggers": {"usageThreshold": 80, "minAvailable": "1Gi", "inodeUsageThreshold": 90, "timeToFull": "6h"},
            "expansion": {"step": "20%", "minStep": "2Gi", "maxStep": "50Gi", "limit": "1Ti", "horizon": "24h"},
            "strategy": {"mode": "Recommend", "maxActionsPerDay": 3, "cooldown": "1h30m",
                "walSafetyPolicy": {"maxPendingWALFiles": 100, "maxSlotRetentionBytes": 1073741824}}}},
        "walStorage": {"resize": {"enabled": true, "expansion": {"step": "5Gi", "limit": "100Gi"}}},
        "tablespaces": [{"name": "events", "resize": {"enabled": true, "expansion": {"limit": "10Gi"}}}],
    })
}

/// The causes of a 422 as `field: message` lines, with the Status message.
fn invalid(r: Result<DynamicObject, kube::Error>) -> (Vec<String>, String) {
    let status = api_error(r);
    assert_status(&status, 422, "Invalid");
    let causes = status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        })
        .unwrap_or_default();
    (causes, status.message)
}

#[tokio::test]
async fn the_generated_policy_crd_enforces_its_cel_rules() {
    let sb = policy_sandbox().await;
    let c = admin(&sb).await;
    let api = policies(&c);

    let created = api
        .create(
            &PostParams::default(),
            &from_json(policy("good", valid_spec())),
        )
        .await
        .expect("a valid policy is created");
    assert_eq!(created.data["spec"], valid_spec(), "stored as sent");

    // One invalid value per kind of rule: each its own error, all in one 422.
    let mut spec = valid_spec();
    let data = &mut spec["storage"]["resize"];
    data["triggers"]["usageThreshold"] = json!(0);
    data["triggers"]["timeToFull"] = json!("1d");
    data["expansion"]["step"] = json!(20);
    data["expansion"]["limit"] = json!("1Tb");
    data["strategy"]["mode"] = json!("Aggressive");
    spec["walStorage"]["resize"]["expansion"] = json!({"minStep": "10Gi", "maxStep": "5Gi"});
    spec["tablespaces"] = json!([{"name": "a"}, {"name": "a"}, {"name": ""}]);
    let (causes, message) = invalid(
        api.create(&PostParams::default(), &from_json(policy("bad", spec)))
            .await,
    );
    assert!(
        message.starts_with("AutoResizePolicy.autoresize.cnpg.io \"bad\" is invalid: ["),
        "{message}"
    );
    let want = [
        "spec.storage.resize.triggers.usageThreshold: Invalid value: \"integer\": must be between 1 and 99 (percent used)",
        "spec.storage.resize.triggers.timeToFull: Invalid value: \"string\": invalid duration \"1d\": use a Go duration like \"90s\", \"30m\", \"6h\" or \"1h30m\"",
        "spec.storage.resize.expansion.limit: Invalid value: \"\": must be a non-negative quantity like '10Gi' or a whole number of bytes (an empty string means unset)",
        "spec.storage.resize.strategy.mode: Invalid value: \"string\": unsupported mode \"Aggressive\"; use \"Standard\" or \"Recommend\"",
        "spec.walStorage.resize.expansion.minStep: Invalid value: \"object\": minStep must not be greater than maxStep (their defaults: minStep 2Gi, maxStep 500Gi)",
        "spec.tablespaces: Invalid value: \"array\": a tablespace is configured twice: each tablespace name may appear once",
        "spec.tablespaces[2].name: Required value: a tablespace needs its name",
    ];
    for w in want {
        assert!(
            causes.iter().any(|c| c == w),
            "missing {w:?} in {causes:#?}"
        );
    }
    let step = causes
        .iter()
        .find(|c| c.starts_with("spec.storage.resize.expansion.step: Invalid value: \"\": "))
        .unwrap_or_else(|| panic!("no step error in {causes:#?}"));
    assert!(
        step.ends_with("for rule: integer step values are ambiguous; use a percentage string like '20%' or a quantity like '5Gi'"),
        "{step}"
    );
    assert_eq!(causes.len(), want.len() + 1, "{causes:#?}");
    assert!(
        api.get_opt("bad").await.unwrap().is_none(),
        "nothing stored"
    );

    // The single-volume rule as a policy alone implies it: no walStorage.
    let (causes, _) = invalid(
        api.create(
            &PostParams::default(),
            &from_json(policy(
                "single",
                json!({"cluster": "pg", "storage": {"resize": {"enabled": true}}}),
            )),
        )
        .await,
    );
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert!(
        causes[0].starts_with("spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk: Required value: the policy has no walStorage"),
        "{causes:?}"
    );
    api.create(
        &PostParams::default(),
        &from_json(policy(
            "single",
            json!({"cluster": "pg", "storage": {"resize": {"enabled": true,
                "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}}}),
        )),
    )
    .await
    .expect("acknowledged: accepted");

    // Updates are checked too; the stored object is unchanged by a rejected patch.
    let patch = json!({"spec": {"storage": {"resize": {"expansion": {"step": "0%"}}}}});
    let (causes, _) = invalid(
        api.patch("good", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!(
        causes,
        ["spec.storage.resize.expansion.step: Invalid value: \"\": step must be a positive quantity or percentage, not 0"]
    );
    let stored = api.get("good").await.unwrap();
    assert_eq!(
        stored.data["spec"]["storage"]["resize"]["expansion"]["step"],
        "20%"
    );

    // A status write of a policy whose spec the rules accept.
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "Valid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status("good", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status written");
}

// --- kubectl --validate=false --------------------------------------------------------------

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

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new(kubectl_bin());
    cmd.arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--request-timeout=20s")
        .args(args)
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("kubectl runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn kubectl_applies_the_chart_crd_and_gets_cel_errors_for_invalid_policies() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    sb.write_kubeconfig(&dir.path().join("kubeconfig"), "admin", NS)
        .unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    // The chart's file as it is, YAML with its header comment.
    let crd = file("crd.yaml", policy_crd_text());
    let out = kubectl(dir.path(), &["apply", "-f", &crd, "--validate=false"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("autoresizepolicies.autoresize.cnpg.io created"),
        "{}",
        out.stdout
    );

    let good = file("good.json", policy("good", valid_spec()).to_string());
    let out = kubectl(dir.path(), &["create", "-f", &good, "--validate=false"]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl(dir.path(), &["get", "arp", "good", "-o", "json"]).await;
    assert!(out.ok, "{}", out.stderr);
    let got: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(got["spec"]["cluster"], "pg-main");

    let cases = [
        (
            "threshold",
            json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"triggers": {"usageThreshold": 100}}}}),
            "spec.storage.resize.triggers.usageThreshold: Invalid value: \"integer\": must be between 1 and 99 (percent used)",
        ),
        (
            "negative",
            json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"triggers": {"minAvailable": "-1Gi"}}}}),
            "spec.storage.resize.triggers.minAvailable: Invalid value: \"\": must be a non-negative quantity",
        ),
        (
            "cooldown",
            json!({"cluster": "pg", "walStorage": {"resize": {"strategy": {"cooldown": "0s"}}}}),
            "spec.walStorage.resize.strategy.cooldown: Invalid value: \"string\": must be a positive duration, got \"0s\"",
        ),
        (
            "single-volume",
            json!({"cluster": "pg", "storage": {"resize": {"enabled": true}}}),
            "spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk: Required value: the policy has no walStorage",
        ),
        (
            "nameless",
            json!({"cluster": " "}),
            "spec.cluster: Required value: names no cluster",
        ),
    ];
    for (name, spec, expected) in cases {
        let path = file(&format!("{name}.json"), policy(name, spec).to_string());
        let out = kubectl(dir.path(), &["create", "-f", &path, "--validate=false"]).await;
        assert!(!out.ok, "{name}: accepted: {}", out.stdout);
        assert!(
            out.stderr.contains(&format!(
                "The AutoResizePolicy \"{name}\" is invalid: {expected}"
            )),
            "{name}: {}",
            out.stderr
        );
    }
    let out = kubectl(dir.path(), &["get", "autoresizepolicies", "-o", "name"]).await;
    assert_eq!(
        out.stdout.trim(),
        "autoresizepolicy.autoresize.cnpg.io/good",
        "{}",
        out.stderr
    );
}
