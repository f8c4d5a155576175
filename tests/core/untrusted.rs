//! Parsers of everything read from outside never panic, and what they
//! accept is within range (docs/reference/operations.md#untrusted-input):
//! query strings, peers' answers, PVC record annotations, quantities,
//! durations and `plan` snapshots. Properties run in CI; the fuzz targets
//! of `fuzz/` search the same parsers for hours (docs/fuzzing.md).

use cnpg_autoresize::actors::planner::peers::{read_answer, Received, Verdict};
use cnpg_autoresize::api::duration::parse_go_duration;
use cnpg_autoresize::api::quantity::{format_bytes, Quantity};
use cnpg_autoresize::api::report::limits;
use cnpg_autoresize::engine::journal::parse_annotation;
use cnpg_autoresize::manager::http::{parse_long_poll, MAX_WAIT};
use cnpg_autoresize::manager::plan::plan_text;
use cnpg_autoresize::manager::run::parse_duration;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn now() -> jiff::Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

/// Numbers as a hostile client writes them.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        Just("NaN".to_string()),
        Just("-inf".to_string()),
        Just("1e20".to_string()),
        "[-+0-9.eE]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn query_strings_never_panic_and_waits_are_bounded(query in ".{0,80}") {
        if let Ok(poll) = parse_long_poll(&query) {
            prop_assert!(poll.wait <= MAX_WAIT);
        }
    }

    #[test]
    fn a_wait_is_accepted_exactly_when_it_is_a_finite_number_of_zero_or_more(
        wait in number_text(), after in number_text()
    ) {
        // `+` is a space in a query string: sent encoded, as a client would.
        let query = format!("wait={}&after={}", wait.replace('+', "%2B"), after.replace('+', "%2B"));
        let parsed_wait: Option<f64> = wait.parse().ok();
        let wait_ok = parsed_wait.is_some_and(|w| w.is_finite() && w >= 0.0);
        let after_ok = after.parse::<u64>().is_ok();
        match parse_long_poll(&query) {
            Ok(poll) => {
                prop_assert!(wait_ok && after_ok, "{query} accepted");
                let w = parsed_wait.unwrap().min(MAX_WAIT.as_secs_f64());
                prop_assert!((poll.wait.as_secs_f64() - w).abs() < 1e-6, "{query}: {:?}", poll.wait);
                prop_assert_eq!(poll.after, after.parse::<u64>().ok());
            }
            Err(e) => {
                prop_assert!(!(wait_ok && after_ok), "{query} refused: {e}");
                let named = if wait_ok { "after" } else { "wait" };
                prop_assert!(e.starts_with(named), "{query}: {e}");
            }
        }
    }

    #[test]
    fn peer_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_answer("pg-1", &body);
    }

    #[test]
    fn a_peer_report_is_used_only_within_range(
        age in any::<f64>(),
        used in any::<u64>(),
        available in any::<u64>(),
        total in any::<u64>(),
        growth in any::<f64>(),
    ) {
        // JSON has no NaN or infinity: those cannot arrive.
        let number = |f: f64| if f.is_finite() { json!(f) } else { json!(null) };
        let body = json!({"instance": "pg-1", "version": 1, "probed": true, "report": {
            "data": {"totalBytes": total, "usedBytes": used, "availableBytes": available,
                     "growthBytesPerSecond": number(growth)},
            "ageSeconds": number(age)}});
        match read_answer("pg-1", body.to_string().as_bytes()) {
            Ok(Verdict::Report(status)) => {
                let report = &status.report;
                let a = report.age_seconds.unwrap_or(0.0);
                prop_assert!((0.0..=limits::MAX_AGE_SECONDS).contains(&a));
                let data = report.data.unwrap();
                prop_assert!(data.total_bytes == 0 || (data.used_bytes <= data.total_bytes
                    && data.available_bytes <= data.total_bytes));
                prop_assert!(data.growth_bytes_per_second.is_none_or(|g| g.is_finite() && g >= 0.0));
                // What the planner does with it does not panic either.
                let received = Received { report: report.clone(), at: Instant::now() };
                let _ = received.sampled_at();
                prop_assert!(received.aged().age_seconds.unwrap().is_finite());
            }
            Ok(Verdict::Nonsense(e)) => prop_assert!(!e.is_empty()),
            Ok(Verdict::Impostor(other)) => prop_assert!(false, "{other}"),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn record_annotations_never_panic(text in ".{0,200}") {
        let _ = parse_annotation(&text);
    }

    #[test]
    fn record_annotations_with_hostile_fields_never_panic(
        timestamp in prop_oneof![Just(json!(null)), any::<i64>().prop_map(|i| json!(i)),
            ".{0,30}".prop_map(|s| json!(s)), Just(json!("2026-11-26T11:00:00Z"))],
        size in prop_oneof![".{0,12}".prop_map(|s| json!(s)), any::<f64>().prop_map(|f| json!(f.to_string())),
            Just(json!("9999999999999999999999Ei")), Just(json!("-1Gi"))],
        result in prop_oneof![Just(json!("success")), Just(json!("failure")), ".{0,8}".prop_map(|s| json!(s))],
    ) {
        let annotation = json!([{"timestamp": timestamp, "instanceName": "pg-1", "pvcName": "pg-1",
            "volumeType": "data", "previousSize": size.clone(), "newSize": size, "result": result}]);
        let _ = parse_annotation(&annotation.to_string());
        // And planning on a PVC that carries it.
        let _ = plan_text("annotation", &snapshot_with_annotation(&annotation.to_string()).to_string(), now());
    }

    #[test]
    fn quantities_never_panic_and_whole_byte_counts_round_trip(text in ".{0,24}", bytes in any::<u64>()) {
        if let Ok(q) = Quantity::parse(&text) {
            let _ = q.to_bytes();
            let _ = q.is_negative();
        }
        let written = format_bytes(bytes);
        prop_assert_eq!(Quantity::parse(&written).unwrap().to_bytes().unwrap(), bytes, "{}", written);
    }

    #[test]
    fn durations_never_panic_and_accepted_ones_are_positive(text in ".{0,24}") {
        let _ = parse_go_duration(&text);
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d > Duration::ZERO);
        }
    }

    #[test]
    fn go_durations_read_what_they_write(h in 0u64..10_000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
        prop_assert_eq!(parse_go_duration(&text).unwrap(), expected);
    }

    #[test]
    fn snapshots_never_panic(text in ".{0,200}") {
        let _ = plan_text("fuzz", &text, now());
    }

    #[test]
    fn snapshots_with_hostile_reports_never_panic(
        age in prop_oneof![Just(".nan".to_string()), Just(".inf".to_string()), Just("-.inf".to_string()),
            Just("1e300".to_string()), Just("-5".to_string()), number_text()],
        used in number_text(),
        growth in prop_oneof![Just(".nan".to_string()), Just("-.inf".to_string()), number_text()],
    ) {
        let yaml = format!("{BASE_SNAPSHOT}\ninstances:\n  pg-1:\n    ageSeconds: {age}\n    data: {{totalBytes: 100, usedBytes: {used}, availableBytes: 10, growthBytesPerSecond: {growth}}}\n");
        if let Ok((output, _)) = plan_text("hostile", &yaml, now()) {
            for d in output.decisions {
                // A resize comes only from a fresh report within range.
                if d.action == cnpg_autoresize::engine::Action::Resize {
                    let fresh = age.parse::<f64>().is_ok_and(|a| (0.0..=3.0).contains(&a));
                    let within = used.parse::<u64>().is_ok_and(|u| u <= 100);
                    prop_assert!(fresh && within, "{yaml}");
                }
            }
        }
    }
}

const BASE_SNAPSHOT: &str = r#"cluster:
  apiVersion: postgresql.cnpg.io/v1
  kind: Cluster
  metadata: {name: pg, namespace: default}
  spec:
    instances: 1
    storage:
      size: 1Gi
      resize: {enabled: true, strategy: {walSafetyPolicy: {acknowledgeWALRisk: true}}}
pvcs:
  - apiVersion: v1
    kind: PersistentVolumeClaim
    metadata:
      name: pg-1
      labels: {cnpg.io/cluster: pg, cnpg.io/instanceName: pg-1, cnpg.io/pvcRole: PG_DATA}
    spec: {resources: {requests: {storage: 1Gi}}}
    status: {phase: Bound, capacity: {storage: 1Gi}}"#;

fn snapshot_with_annotation(annotation: &str) -> Value {
    let mut snapshot: Value = serde_norway::from_str(BASE_SNAPSHOT).unwrap();
    snapshot["pvcs"][0]["metadata"]["annotations"] =
        json!({"autoresize.cnpg.io/events": annotation});
    snapshot["instances"] = json!({"pg-1": {"ageSeconds": 0, "data": {
        "totalBytes": 1000, "usedBytes": 900, "availableBytes": 100}}});
    snapshot
}

/// The examples parse to decisions, and the hostile values above are the
/// ones `plan` leaves out with a note.
#[test]
fn a_snapshot_report_out_of_range_is_left_out_with_a_note() {
    // YAML's .nan and .inf have no JSON form: the snapshot is refused,
    // naming where (converted, they would silently become null: absent).
    for age in [".nan", ".inf", "-.inf"] {
        let yaml = format!("{BASE_SNAPSHOT}\ninstances:\n  pg-1:\n    ageSeconds: {age}\n");
        let error = plan_text("hostile", &yaml, now()).unwrap_err().to_string();
        assert!(
            error.contains("instances.pg-1.ageSeconds") && error.contains("not a finite number"),
            "{error}"
        );
    }
    for (age, field) in [("1e300", "ageSeconds"), ("-5", "ageSeconds")] {
        let yaml = format!("{BASE_SNAPSHOT}\ninstances:\n  pg-1:\n    ageSeconds: {age}\n    data: {{totalBytes: 100, usedBytes: 99, availableBytes: 1}}\n");
        let (output, notes) = plan_text("hostile", &yaml, now()).unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("instances.pg-1 left out") && n.contains(field)),
            "{notes:?}"
        );
        assert_eq!(
            output.decisions[0].reason,
            Some(cnpg_autoresize::engine::Reason::NoStatus),
            "{age}"
        );
    }
}
