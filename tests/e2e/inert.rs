//! `run` never exits because it cannot work (docs/reference/operations.md#when-the-manager-is-inert):
//! without a terminal, flags that cannot work together, an unknown flag, an
//! unreadable kubeconfig or token, or a Role that lacks a permission leave
//! the manager up and inert — /healthz 200, /readyz after its first probe,
//! disk metrics served, `cnpg_autoresize_config_valid 0`, the problem in
//! the log (every minute) and on /v1/status, no lease, nothing written.
//! On a terminal the same flags are one error line and exit 2.

use crate::common::*;
use cnpg_testbed::scenario::ManagerOptions;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde::Deserialize;
use serde_json::{json, Value};

/// The chart's Roles without the rules that grant any of `resources`.
fn role_without(resources: &[&str]) -> String {
    let mut removed = 0;
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(MANAGER_ROLE) {
        let mut role = Value::deserialize(document).expect("the Role parses");
        if role.is_null() {
            continue;
        }
        if let Some(rules) = role.get_mut("rules").and_then(Value::as_array_mut) {
            let before = rules.len();
            rules.retain(|rule| {
                !rule["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| resources.contains(&r.as_str().unwrap_or("")))
            });
            removed += before - rules.len();
        }
        documents.push(serde_norway::to_string(&role).expect("serializes"));
    }
    assert!(removed > 0, "the Roles grant {resources:?}");
    documents.join("---\n")
}

/// Writes by the managers' identity that the API server accepted.
fn accepted_writes(env: &Env) -> Vec<String> {
    env.scenario
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.identity == env.scenario.identity)
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .filter(|r| (200..300).contains(&r.code))
        .map(|r| format!("{} {} {}", r.verb, r.resource, r.code))
        .collect()
}

/// Instance `n` stays up and inert, and says why: `problem` (a flag, a
/// resource) and `value` are named in its log, on /v1/status; nothing was
/// written and no lease exists.
async fn assert_inert(env: &Env, n: usize, problem: &str, value: &str) {
    let m = env.manager(n);
    // Today's manager exits at once; the kubelet would restart it.
    wait_until("the inert manager's first probe", secs(30), || async {
        let text = env.metrics(n).await;
        let valid = metric(&text, "cnpg_autoresize_config_valid", &[]);
        let data = metric(&text, "cnpg_disk_total_bytes", &[("volume_type", "data")]);
        let ready = get_status(&m.url("/readyz")).await;
        (valid == Some(0.0) && data.is_some() && ready == Some(200))
            .then_some(())
            .ok_or(format!("valid {valid:?}, data {data:?}, readyz {ready:?}"))
    })
    .await;
    assert_eq!(get_status(&m.url("/healthz")).await, Some(200));
    assert_eq!(m.restart_count(), 0, "{}", env.logs());
    let status = get_json(&m.url("/v1/status")).await.expect("/v1/status");
    assert_eq!(status["configValid"], json!(false), "{status}");
    let said = status["problems"].to_string();
    assert!(said.contains(problem) && said.contains(value), "{status}");
    let logs = m.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"level\":\"error\"") && l.contains(problem) && l.contains(value)),
        "no error line naming {problem} and {value}:\n{logs}"
    );
    let leases: Api<Lease> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let lease = leases
        .get_opt(&format!("cnpg-autoresize-{}", env.scenario.cluster))
        .await
        .expect("leases readable");
    assert!(lease.is_none(), "a lease was taken: {lease:?}");
    assert_eq!(accepted_writes(env), Vec::<String>::new());
    assert_eq!(
        metric(&env.metrics(n).await, "cnpg_autoresize_is_leader", &[]),
        Some(0.0)
    );
}

fn one_instance() -> cnpg_testbed::scenario::ScenarioBuilder {
    data_volume_cluster(64 * MIB, json!({"enabled": true}))
}

/// A lease of 10 s with the default 5 s renewal: the problem is logged again
/// every minute while it lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_timings_leave_the_manager_up_and_inert_and_say_so_every_minute() {
    let options = ManagerOptions {
        lease_duration: "10s".into(),
        renew_interval: "5s".into(),
        ..ManagerOptions::default()
    };
    let env = Env::start_with(one_instance(), options).await;
    assert_inert(&env, 0, "--renew-interval", "5s").await;
    let m = env.manager(0);
    let said = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("\"level\":\"error\"") && l.contains("--renew-interval"))
            .count()
    };
    wait_until("the problem logged a second time", secs(90), || async {
        let n = said(&m.logs());
        (n >= 2).then_some(()).ok_or(format!("{n} times"))
    })
    .await;
    assert_eq!(m.restart_count(), 0);
    assert_eq!(accepted_writes(&env), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_under_three_seconds_leaves_the_manager_inert() {
    let options = ManagerOptions {
        lease_duration: "2s".into(),
        renew_interval: "500ms".into(),
        ..ManagerOptions::default()
    };
    let env = Env::start_with(one_instance(), options).await;
    assert_inert(&env, 0, "--lease-duration", "2s").await;
}

/// An unknown flag (a typo in `sidecar.extraArgs`): the flags around it still
/// count, so the manager serves on its port and measures its volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_flag_leaves_the_manager_inert_on_its_port() {
    let options = ManagerOptions {
        extra_args: vec!["--stuck-resize-afterr=30m".into()],
        ..ManagerOptions::default()
    };
    let env = Env::start_with(one_instance(), options).await;
    assert_inert(&env, 0, "--stuck-resize-afterr", "30m").await;
}

/// A kubeconfig whose token file cannot be read, and one that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_token_or_kubeconfig_leaves_the_manager_inert() {
    let scenario = one_instance()
        .instances(2)
        .cluster_crd(fork_cluster_crd())
        .enforce_role(MANAGER_ROLE)
        .start()
        .await
        .expect("scenario starts");
    let port = scenario.common_port().expect("a port");
    // pg-1: its token file is missing; pg-2: its kubeconfig is a directory.
    let kubeconfig = scenario.dir().join("pg-1.kubeconfig");
    let yaml = scenario
        .sandbox
        .kubeconfig_yaml(&scenario.identity, &scenario.namespace);
    let token_line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .expect("a token line")
        .to_string();
    let missing_token = scenario.dir().join("no-such-token");
    let without_token = yaml.replace(
        &token_line,
        &format!("    tokenFile: {}", missing_token.display()),
    );
    std::fs::write(&kubeconfig, without_token).expect("kubeconfig written");
    std::fs::create_dir(scenario.dir().join("pg-2.kubeconfig")).expect("a directory");
    let env = Env::adopt(scenario, port, ManagerOptions::default()).await;
    assert_inert(&env, 0, "--kubeconfig", "no-such-token").await;
    assert_inert(&env, 1, "--kubeconfig", "pg-2.kubeconfig").await;
}

/// The Role lacks the Lease, or the Cluster: no lease is taken, nothing is
/// written, and the manager says which permission is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_leaves_the_manager_inert() {
    for (resources, problem) in [(&["leases"][..], "leases"), (&["clusters"][..], "clusters")] {
        let env = Env::start_custom(
            one_instance(),
            ManagerOptions::default(),
            fork_cluster_crd(),
            &role_without(resources),
        )
        .await;
        assert_inert(&env, 0, problem, "403").await;
    }
}
