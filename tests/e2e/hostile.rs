//! Untrusted input never crashes a manager (docs/reference/operations.md#untrusted-input):
//! hostile query strings, bodies, a flood of long-polls and a peer that
//! answers nonsense get 4xx answers or are ignored; no panic, no restart,
//! memory bounded.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The container limit the chart gives the manager today: the bound the
/// flood must stay under (the figures themselves are in docs/benchmarks.md).
const CONTAINER_LIMIT_KIB: u64 = 128 * 1024;

/// VmHWM (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The answer's status code and body, or what went wrong.
async fn answer(request: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let code = response.status().as_u16();
    Ok((code, response.text().await.unwrap_or_default()))
}

/// No actor restarted, the process that started is the one answering, and
/// /healthz is green.
async fn still_the_same_healthy_process(env: &Env, n: usize, pid: Option<u32>) {
    let m = env.manager(n);
    assert_eq!(m.pid(), pid, "the manager process changed\n{}", env.logs());
    assert_eq!(m.restart_count(), 0, "the kubelet restarted it");
    assert_eq!(get_status(&m.url("/healthz")).await, Some(200));
    let text = env.metrics(n).await;
    let restarts: f64 = text
        .lines()
        .filter(|l| l.starts_with("cnpg_autoresize_actor_restarts_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(restarts, 0.0, "an actor restarted\n{text}\n{}", env.logs());
    assert!(
        !m.logs().contains("panicked"),
        "a task panicked\n{}",
        env.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_bodies_and_a_long_poll_flood_get_4xx_not_a_crash() {
    let env = Env::start(data_volume_cluster(64 * MIB, json!({"enabled": true}))).await;
    let m = env.manager(0);
    wait_until("the endpoint ready", secs(30), || async {
        match get_status(&m.url("/readyz")).await {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let pid = m.pid();
    let http = reqwest::Client::new();
    let status = m.url("/v1/status");
    let decisions = m.url("/v1/decisions");

    // Out-of-range or unreadable query values: 400 naming the parameter.
    for (url, query, parameter) in [
        (&status, "wait=1e20&after=0", ""),
        (&status, "wait=NaN&after=0", "wait"),
        (&status, "wait=inf&after=0", "wait"),
        (&status, "wait=-1&after=0", "wait"),
        (&status, "after=-1", "after"),
        (&status, "after=1e3", "after"),
        (&decisions, "wait=NaN&after=0", "wait"),
        (&decisions, "after=-1", "after"),
    ] {
        let (code, body) = answer(http.get(format!("{url}?{query}")))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}\n{}", env.logs()));
        if parameter.is_empty() {
            // A huge wait is capped (60 s), and `after=0` is already passed.
            assert_eq!(code, 200, "{query}: {body}");
        } else {
            assert_eq!(code, 400, "{query}: {body}");
            assert!(body.contains(parameter), "{query}: {body}");
        }
    }

    // A 10 MiB body on endpoints that take none: refused, not read.
    let big = vec![b'x'; 10 << 20];
    for url in [&status, &m.url("/metrics")] {
        let (code, body) = answer(http.get(url.as_str()).body(big.clone()))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(code, 413, "{url}: {body}");
    }

    // 1 000 concurrent long-polls: a bounded number wait, the rest are told
    // at once to come back later (429), none is dropped.
    let version = get_json(&status).await.expect("status")["version"]
        .as_u64()
        .expect("a version");
    let flood_url = format!("{status}?wait=3&after={}", version + 1_000_000);
    let flood: Vec<_> = (0..1000)
        .map(|_| {
            let request = reqwest::Client::new().get(&flood_url);
            tokio::spawn(answer(request))
        })
        .collect();
    // While it lasts, the endpoint still answers the kubelet.
    let health = answer(http.get(m.url("/healthz")))
        .await
        .expect("/healthz answers during the flood");
    assert_eq!(health.0, 200);
    let mut codes = std::collections::BTreeMap::new();
    for task in flood {
        let (code, _) = task.await.expect("joined").expect("every request answered");
        *codes.entry(code).or_insert(0u32) += 1;
    }
    let waited = codes.get(&200).copied().unwrap_or(0);
    let refused = codes.get(&429).copied().unwrap_or(0);
    assert_eq!(waited + refused, 1000, "{codes:?}");
    assert!(waited > 0 && refused > 0, "{codes:?}");
    let peak = peak_rss_kib(pid.expect("a pid"));
    assert!(
        peak > 0 && peak < CONTAINER_LIMIT_KIB,
        "peak RSS {peak} KiB"
    );
    still_the_same_healthy_process(&env, 0, pid).await;
}

/// A peer answering an absurd age, negative or huge figures, is ignored by
/// the leader; its planner does not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_nonsense_is_ignored_and_the_leader_keeps_planning() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let mut env = Env::start(data_volume_cluster(128 * MIB, resize).instances(2)).await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let peer = 1 - n;
    let peer_pod = env.pod(peer).to_string();
    let pid = env.manager(n).pid();
    let addr = env.manager(peer).addr;
    env.delete_pod(peer).await;
    let report = |age: Value| {
        json!({"instance": peer_pod, "version": 3, "probed": true, "report": {
            "data": {"totalBytes": 100, "usedBytes": 99, "availableBytes": 1},
            "walHealth": {"archiveHealthy": true}, "ageSeconds": age}})
    };
    for age in [json!(1e300), json!(-5.0)] {
        let fake = tokio::spawn(serve_forever(addr, report(age.clone())));
        let leader_url = env.manager(n).url("/v1/decisions");
        // The leader asks, and ignores what it hears: the volume has no status.
        wait_until("the nonsense to be ignored", secs(20), || async {
            let logs = env.manager(n).logs();
            let ignored = logs.contains("ignored") && logs.contains("ageSeconds");
            let feed = get_json(&leader_url).await.ok_or("no answer")?;
            let reason = feed["instances"][&peer_pod]["volumes"][0]["reason"].clone();
            (ignored && reason == "no_status")
                .then_some(())
                .ok_or(format!("{reason} {}", tail(&logs)))
        })
        .await;
        env.hold_request(&peer_pod, 128 * MIB, 3).await;
        fake.abort();
        let _ = fake.await;
        still_the_same_healthy_process(&env, n, pid).await;
    }
}

fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Answers every request with `body` as JSON.
async fn serve_forever(addr: std::net::SocketAddr, body: Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = loop {
        // The deleted pod's port may take a moment to be free again.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let body = body.to_string();
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        });
    }
}
