//! The sandbox held to a real kube-apiserver: every CRD and admission policy of
//! `real_server/` was created
//! (dry run) on a real server by `hack/record-real-verdicts.sh`, which recorded its
//! answer in `real_server/verdicts.json`; here each is created on the sandbox and must
//! get the same answer — the same HTTP code, the same Status causes (field, reason and
//! message, in any order) and the same warnings.
//!
//! Two parts of a real answer are not reproducible and are compared loosely: which of
//! equally expensive rules the server names as "contributed to estimated rule cost
//! total" (Go's unstable sort picks them; only their number is compared), and the
//! token list of an ANTLR syntax error after "Syntax error:" (the text before it, the
//! location and the caret line are compared).

use serde_json::Value;

use crate::common::*;

const TABLE: &str = "tests/conformance/real_server/verdicts.json";
const CONTRIBUTED: &str =
    "Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema";

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A cause as compared: `field | reason | message`, the message cut after a syntax
/// error's "Syntax error:" on its first line (the caret lines are kept).
fn cause_key(c: &Value) -> String {
    let message = c["message"].as_str().unwrap_or("");
    let message = match message.split_once("Syntax error:") {
        Some((before, after)) => {
            let rest = after.split_once('\n').map_or("", |(_, r)| r);
            format!("{before}Syntax error: …\n{rest}")
        }
        None => message.to_string(),
    };
    if message == CONTRIBUTED {
        return format!(
            "<a rule> | {} | {message}",
            c["reason"].as_str().unwrap_or("")
        );
    }
    format!(
        "{} | {} | {message}",
        c["field"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or("")
    )
}

fn keys(causes: &Value) -> Vec<String> {
    let mut k: Vec<String> = causes
        .as_array()
        .into_iter()
        .flatten()
        .map(cause_key)
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn the_sandbox_answers_every_object_of_the_table_as_a_real_api_server_did() {
    let table: Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE))
            .expect("the verdict table"),
    )
    .expect("JSON");
    let verdicts = table["verdicts"].as_array().expect("verdicts");
    assert!(verdicts.len() >= 20, "the table has its cases");
    let sb = sandbox().await;
    let mut differences = Vec::new();
    for v in verdicts {
        let case = v["case"].as_str().expect("case");
        let text = std::fs::read_to_string(workspace().join(case))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let crd: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
        let path = match crd["kind"].as_str() {
            Some("CustomResourceDefinition") => {
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            }
            Some("ValidatingAdmissionPolicy") => {
                "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
            }
            Some("MutatingAdmissionPolicy") => {
                "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies"
            }
            other => panic!("{case}: no path for kind {other:?}"),
        };
        let answer = raw_http(
            &sb,
            "POST",
            &format!("{path}?dryRun=All"),
            &[
                ("Authorization", "Bearer admin"),
                ("Content-Type", "application/json"),
            ],
            &crd.to_string(),
        )
        .await;
        let want_code = v["code"].as_u64().expect("code") as u16;
        let got = answer.json();
        let got_causes = keys(
            &got.pointer("/details/causes")
                .cloned()
                .unwrap_or(Value::Null),
        );
        let want_causes = keys(&v["causes"]);
        let got_warnings: Vec<String> = answer
            .header_values("Warning")
            .iter()
            .map(|w| {
                let quoted = w.strip_prefix("299 - ").unwrap_or(w);
                let text = quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or(quoted);
                text.replace("\\\"", "\"").replace("\\\\", "\\")
            })
            .collect();
        let want_warnings: Vec<String> = v["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect();
        if answer.code != want_code || got_causes != want_causes || got_warnings != want_warnings {
            differences.push(format!(
                "{case}:\n  real server: {want_code} {want_causes:#?} warnings {want_warnings:?}\n  sandbox:     {} {got_causes:#?} warnings {got_warnings:?}",
                answer.code
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the sandbox disagrees with the real API server ({}):\n{}",
        table["recordedWith"],
        differences.join("\n")
    );
}
