//! The `plan` and `validate` contracts of docs/reference/commands.md, run as
//! a user runs them.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cnpg-autoresize"))
}

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = binary()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn plan(file: &str) -> Vec<Value> {
    let out = run(&["plan", example(file).to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["decisions"].as_array().unwrap().clone()
}

/// (pvc, action, reason, newSize) of a decision.
type Outcome = (String, String, Value, Value);

fn summary(decisions: &[Value]) -> Vec<Outcome> {
    decisions
        .iter()
        .map(|d| {
            (
                d["pvc"].as_str().unwrap().to_string(),
                d["action"].as_str().unwrap().to_string(),
                d["reason"].clone(),
                d["newSize"].clone(),
            )
        })
        .collect()
}

fn s(pvc: &str, action: &str, reason: Value, new: Value) -> Outcome {
    (pvc.to_string(), action.to_string(), reason, new)
}

#[test]
fn plan_examples_decide_as_documented() {
    use serde_json::json;
    let null = Value::Null;
    let cases: Vec<(&str, Vec<Outcome>)> = vec![
        (
            "plan/single-volume.yaml",
            vec![s("pg-single-1", "resize", null.clone(), json!("25Gi"))],
        ),
        (
            "plan/data-and-wal.yaml",
            vec![
                s("pg-main-1", "resize", null.clone(), json!("12Gi")),
                s("pg-main-1-wal", "resize", null.clone(), json!("6Gi")),
                s("pg-main-2", "none", json!("not_triggered"), null.clone()),
                s(
                    "pg-main-2-wal",
                    "none",
                    json!("not_triggered"),
                    null.clone(),
                ),
            ],
        ),
        (
            "plan/archive-failing.yaml",
            vec![
                s("pg-main-1", "resize", null.clone(), json!("12Gi")),
                s(
                    "pg-main-1-wal",
                    "blocked",
                    json!("archive_unhealthy"),
                    null.clone(),
                ),
            ],
        ),
        (
            "plan/slot-retention.yaml",
            vec![
                s("pg-main-1", "resize", null.clone(), json!("12Gi")),
                s(
                    "pg-main-1-wal",
                    "blocked",
                    json!("slot_retention_exceeded"),
                    null.clone(),
                ),
            ],
        ),
        (
            "plan/budget-exhausted.yaml",
            vec![s("pg-main-1", "blocked", json!("rate_limit"), null.clone())],
        ),
        (
            "plan/tablespaces.yaml",
            vec![
                s(
                    "pg-analytics-1-tbs-events",
                    "resize",
                    null.clone(),
                    json!("55Gi"),
                ),
                s(
                    "pg-analytics-2-tbs-events",
                    "none",
                    json!("not_triggered"),
                    null.clone(),
                ),
            ],
        ),
        (
            "plan/wal-health-unavailable.yaml",
            vec![
                s("pg-main-1", "resize", null.clone(), json!("12Gi")),
                s("pg-main-1-wal", "resize", null.clone(), json!("6Gi")),
            ],
        ),
    ];
    for (file, want) in cases {
        assert_eq!(summary(&plan(file)), want, "{file}");
    }
}

/// (pvc, action, reason, newSize, trigger, warnings) of a decision.
fn detailed(decisions: &[Value]) -> Vec<Value> {
    decisions
        .iter()
        .map(|d| {
            serde_json::json!([
                d["pvc"],
                d["action"],
                d["reason"],
                d["newSize"],
                d["trigger"],
                d["warnings"],
                d["budgetRemaining"]
            ])
        })
        .collect()
}

#[test]
fn plan_examples_of_parity_refusal_forecast_cooldown_recommend_and_slots() {
    use serde_json::json;
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "plan/size-parity.yaml",
            vec![
                json!(["pg-main-1", "none", "not_triggered", null, null, [], 3]),
                json!(["pg-main-2", "none", "not_triggered", null, null, [], 3]),
                json!([
                    "pg-main-3",
                    "resize",
                    null,
                    "14Gi",
                    "parity",
                    ["size_parity"],
                    3
                ]),
            ],
        ),
        (
            "plan/expansion-failed.yaml",
            vec![json!([
                "pg-main-1",
                "blocked",
                "expansion_failed",
                null,
                null,
                [],
                3
            ])],
        ),
        (
            "plan/forecast.yaml",
            vec![
                json!(["pg-main-1", "resize", null, "150Gi", "forecast", [], 3]),
                json!(["pg-main-2", "resize", null, "128320Mi", "usage", [], 3]),
            ],
        ),
        (
            "plan/horizon-after-burst.yaml",
            vec![
                json!(["pg-main-1", "resize", null, "159621Mi", "usage", [], 3]),
                json!(["pg-main-2", "resize", null, "188800Mi", "usage", [], 3]),
            ],
        ),
        (
            "plan/cooldown.yaml",
            vec![json!([
                "pg-main-1",
                "blocked",
                "cooldown",
                null,
                null,
                [],
                2
            ])],
        ),
        (
            "plan/recommend.yaml",
            vec![json!([
                "pg-reporting-1",
                "resize",
                null,
                "60Gi",
                "usage",
                [],
                3
            ])],
        ),
        (
            "plan/ha-slots.yaml",
            vec![
                json!(["pg-main-1-wal", "resize", null, "6Gi", "usage", [], 3]),
                json!([
                    "pg-main-2-wal",
                    "blocked",
                    "slot_retention_exceeded",
                    null,
                    null,
                    [],
                    3
                ]),
            ],
        ),
        (
            "plan/foreign-entries.yaml",
            vec![json!(["pg-main-1", "resize", null, "14Gi", "usage", [], 2])],
        ),
        (
            // Parity copies the delivered 11Gi, never the refused 12Gi request.
            "plan/parity-refused-sibling.yaml",
            vec![
                json!([
                    "pg-main-1",
                    "blocked",
                    "expansion_failed",
                    null,
                    null,
                    [],
                    3
                ]),
                json!(["pg-main-2", "none", "not_triggered", null, null, [], 3]),
                json!([
                    "pg-main-3",
                    "resize",
                    null,
                    "11Gi",
                    "parity",
                    ["size_parity"],
                    3
                ]),
            ],
        ),
        (
            "plan/orphaned-ha-slot.yaml",
            vec![
                json!([
                    "pg-main-1-wal",
                    "blocked",
                    "slot_retention_exceeded",
                    null,
                    null,
                    [],
                    3
                ]),
                json!(["pg-main-2-wal", "resize", null, "6Gi", "usage", [], 3]),
            ],
        ),
    ];
    for (file, want) in cases {
        assert_eq!(detailed(&plan(file)), want, "{file}");
    }
    // A resize sized by the horizon says which history bounded it.
    let history: Vec<Value> = plan("plan/horizon-after-burst.yaml")
        .iter()
        .map(|d| d["historySeconds"].clone())
        .collect();
    assert_eq!(history, [json!(300), json!(86400)]);
    let out = run(
        &[
            "plan",
            example("plan/foreign-entries.yaml").to_str().unwrap(),
        ],
        None,
    );
    let notes = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        notes.matches("counts toward no budget").count(),
        2,
        "{notes}"
    );
    assert!(notes.contains("missing field `timestamp`"), "{notes}");
    assert!(notes.contains("`pending`"), "{notes}");
}

#[test]
fn every_plan_example_is_checked_and_says_how_to_try_it() {
    let source = include_str!("cli.rs");
    let dir = example("plan");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            source.contains(&format!("\"plan/{name}\"")),
            "examples/plan/{name} is decided by no test"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("# Try: cnpg-autoresize plan examples/plan/{name}")),
            "examples/plan/{name} does not say how to try it"
        );
    }
}

#[test]
fn plan_output_has_exactly_the_contract_fields() {
    let decisions = plan("plan/wal-health-unavailable.yaml");
    let wal = &decisions[1];
    let mut keys: Vec<_> = wal.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "action",
            "budgetRemaining",
            "currentSize",
            "instance",
            "newSize",
            "pvc",
            "reason",
            "tablespace",
            "trigger",
            "volumeType",
            "warnings"
        ]
    );
    assert_eq!(
        wal["warnings"],
        serde_json::json!(["wal_health_unavailable"])
    );
    assert_eq!(wal["tablespace"], Value::Null);
    assert_eq!(wal["volumeType"], "wal");
    assert_eq!(wal["currentSize"], "4Gi");
    assert_eq!(wal["budgetRemaining"], 2);
    let tbs = &plan("plan/tablespaces.yaml")[0];
    assert_eq!(
        (tbs["volumeType"].as_str(), tbs["tablespace"].as_str()),
        (Some("tablespace"), Some("events"))
    );
}

#[test]
fn plan_reads_json_from_stdin_and_defaults_now() {
    let yaml = std::fs::read_to_string(example("plan/budget-exhausted.yaml")).unwrap();
    let mut snapshot: Value = serde_norway::from_str(&yaml).unwrap();
    // Without `now`, the current time applies: events from 2020 no longer count.
    snapshot.as_object_mut().unwrap().remove("now");
    for event in snapshot["cluster"]["status"]["autoResizeEvents"]
        .as_array_mut()
        .unwrap()
    {
        let ts = event["timestamp"]
            .as_str()
            .unwrap()
            .replacen("2026", "2020", 1);
        event["timestamp"] = Value::String(ts);
    }
    let out = run(&["plan", "-"], Some(&snapshot.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decisions"][0]["action"], "resize");
    assert_eq!(json["decisions"][0]["budgetRemaining"], 3);
}

#[test]
fn plan_rejects_unusable_snapshots_with_exit_2() {
    let cases = [
        ("", "empty"),
        ("{not yaml", "not valid YAML or JSON"),
        ("cluster: {apiVersion: v1, kind: Pod}", "not a CloudNativePG Cluster"),
        ("cluster: {apiVersion: postgresql.cnpg.io/v1, kind: Cluster}\nnow: yesterday", "now"),
        ("cluster: {apiVersion: postgresql.cnpg.io/v1, kind: Cluster}\npolicy: {apiVersion: v1, kind: Pod}", "not a AutoResizePolicy"),
        ("cluster: {apiVersion: postgresql.cnpg.io/v1, kind: Cluster}\npvcs: {}", "pvcs"),
    ];
    for (input, message) in cases {
        let out = run(&["plan"], Some(input));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{input:?}: {stderr}");
        assert!(stderr.contains(message), "{input:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let missing = run(&["plan", "/nonexistent/snapshot.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/snapshot.yaml"));
}

/// Entries that do not read are left out, as the running system reads the
/// API: only input that is not a snapshot at all is refused.
#[test]
fn plan_reads_unreadable_entries_leniently() {
    let snapshot = r#"
now: "2026-11-26T12:00:00Z"
cluster:
  apiVersion: postgresql.cnpg.io/v1
  kind: Cluster
  metadata: {name: pg}
  spec:
    storage: {size: 10Gi, resize: {enabled: true, strategy: {maxActionsPerDay: 1}}}
    walStorage: {size: 2Gi, resize: {enabled: true, triggers: {usageThreshold: eighty}}}
  status:
    autoResizeEvents:
    - {instanceName: pg-1, pvcName: pg-1, volumeType: data, previousSize: 8Gi, newSize: 10Gi, result: success}
pvcs:
- metadata: {name: pg-1, labels: {cnpg.io/cluster: pg, cnpg.io/pvcRole: PG_DATA}}
  spec: {resources: {requests: {storage: 10Gi}}}
  status: {phase: Bound, capacity: {storage: 10Gi}}
- metadata: {name: pg-1-wal, labels: {cnpg.io/cluster: pg, cnpg.io/pvcRole: PG_WAL}}
  spec: {resources: {requests: {storage: 2Gi}}}
  status: {phase: Bound, capacity: {storage: 2Gi}}
- metadata: {name: 42}
instances:
  pg-1:
    data: {totalBytes: 10737418240, usedBytes: 9663676416, availableBytes: 1073741824}
    wal: {totalBytes: 2147483648, usedBytes: 1932735283, availableBytes: 214748365}
    walHealth: {archiveHealthy: true}
  pg-2: {data: {usedBytes: -5}}
"#;
    let out = run(&["plan", "-"], Some(snapshot));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for note in [
        "pvcs[2] left out",
        "instances.pg-2 left out",
        "counts toward no budget",
    ] {
        assert!(stderr.contains(note), "{note:?} in {stderr}");
    }
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &json["decisions"];
    assert_eq!(
        d[0]["action"], "resize",
        "the entry without a timestamp uses no budget"
    );
    assert_eq!(d[0]["trigger"], "usage");
    assert_eq!(
        d[1]["reason"], "invalid_config",
        "the WAL block alone is unreadable"
    );
}

#[test]
fn validate_exit_codes_and_json() {
    let ok = run(
        &[
            "validate",
            example("clusters/data-and-wal.yaml").to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    );
    assert_eq!(ok.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json, serde_json::json!({"errors": [], "warnings": []}));

    let bad = run(
        &[
            "validate",
            example("clusters/invalid.yaml").to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&bad.stdout).unwrap();
    let fields: Vec<_> = json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"spec.storage.resize.expansion.minStep"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"spec.walStorage.resize.expansion.step"),
        "{fields:?}"
    );
    assert!(json["errors"][0]["message"].is_string());

    let no_ack = run(
        &[
            "validate",
            example("clusters/single-volume-no-ack.yaml")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert_eq!(no_ack.status.code(), Some(1));
    let human = String::from_utf8_lossy(&no_ack.stdout);
    assert!(
        human.contains("error: spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk"),
        "{human}"
    );
    assert!(
        human.contains("warning: spec.storage.resize.expansion.limit"),
        "{human}"
    );
}

#[test]
fn validate_rejects_what_is_not_a_cluster_with_exit_2() {
    for input in [
        "apiVersion: v1\nkind: ConfigMap\n",
        "just text",
        "a: 1\n---\nb: 2\n",
        "",
    ] {
        let out = run(&["validate", "-"], Some(input));
        assert_eq!(out.status.code(), Some(2), "{input:?}");
        assert!(!out.stderr.is_empty());
    }
    // A Cluster from stdin works.
    let manifest = std::fs::read_to_string(example("clusters/tablespaces.yaml")).unwrap();
    assert_eq!(run(&["validate"], Some(&manifest)).status.code(), Some(0));
}

#[test]
fn every_command_has_help() {
    for command in ["plan", "validate", "status", "run", "demo", "sandbox"] {
        let out = run(&[command, "--help"], None);
        assert!(out.status.success(), "{command}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage"), "{command}: {help}");
        assert!(help.contains("Example"), "{command} --help has no example");
        // Every example file the help names exists.
        for word in help
            .split_whitespace()
            .filter(|w| w.starts_with("examples/"))
        {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(word);
            assert!(
                path.is_file(),
                "{command} --help names {word}, which does not exist"
            );
        }
    }
    let out = run(&["--help"], None);
    assert!(out.status.success());
    // No command at all: the overview, starting with the demo.
    let out = run(&[], None);
    let overview = String::from_utf8_lossy(&out.stdout);
    let first = overview
        .lines()
        .find(|l| l.starts_with("  cnpg-autoresize "))
        .unwrap_or_default();
    assert!(first.contains("cnpg-autoresize demo"), "{overview}");
}

#[test]
fn the_image_builds_the_in_pod_binary_without_the_test_bed() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the Dockerfile builds with cargo");
    assert!(build.contains("--no-default-features"), "{build}");
    assert!(build.contains("--bin cnpg-autoresize"), "{build}");
    // And the feature it leaves out is the one that carries the test bed.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("default = [\"testbed\"]")
            && manifest.contains("testbed = [\"dep:kube-sandbox\", \"dep:cnpg-testbed\"]"),
        "Cargo.toml features changed: update the Dockerfile and hack/check-lean.sh"
    );
}
