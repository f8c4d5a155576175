//! Fault injection: latency, error rates, outages and dropped watches (in-process and over HTTP).

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn latency_delays_requests() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    sb.faults().set_latency(Duration::from_millis(300));
    let t = Instant::now();
    pvcs(&c).list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    sb.faults().clear();
    let t = Instant::now();
    pvcs(&c).list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn error_rate_one_fails_only_the_matching_calls() {
    let sb = sandbox().await;
    let c = admin_no_retry(&sb).await;
    pvcs(&c)
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    sb.faults()
        .set_error_rate("patch", "persistentvolumeclaims", 1.0, 500);
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert_status(&s, 500, "InternalError");
    pvcs(&c).get("a").await.unwrap();
    sb.faults().set_error_rate("*", "clusters/status", 1.0, 429);
    clusters(&c)
        .create(&PostParams::default(), &cluster_obj("pg"))
        .await
        .unwrap();
    let s = api_error(
        clusters(&c)
            .patch_status(
                "pg",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}})),
            )
            .await,
    );
    assert_status(&s, 429, "TooManyRequests");
    sb.faults().set_error_rate("*", "*", 1.0, 503);
    assert_status(
        &api_error(pvcs(&c).get("a").await),
        503,
        "ServiceUnavailable",
    );
    sb.faults().clear();
    pvcs(&c).get("a").await.unwrap();
}

#[tokio::test]
async fn outage_window_then_recovery() {
    let sb = sandbox().await;
    let c = admin_no_retry(&sb).await;
    sb.faults().outage_for(Duration::from_millis(400));
    assert_status(
        &api_error(pvcs(&c).list(&ListParams::default()).await),
        503,
        "ServiceUnavailable",
    );
    wait_until(Duration::from_secs(5), "outage to end", || async {
        pvcs(&c).list(&ListParams::default()).await.is_ok()
    })
    .await;
    // kube's default client retries 503 with backoff: a short outage looks like latency to it.
    sb.faults().outage_for(Duration::from_millis(300));
    let t = Instant::now();
    pvcs(&admin(&sb).await)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}

type Events = futures::stream::BoxStream<
    'static,
    Result<watcher::Event<k8s_openapi::api::core::v1::PersistentVolumeClaim>, watcher::Error>,
>;

async fn next(
    events: &mut Events,
) -> Option<Result<watcher::Event<k8s_openapi::api::core::v1::PersistentVolumeClaim>, watcher::Error>>
{
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("watcher event in time")
}

#[tokio::test]
async fn dropped_watches_are_recovered_by_the_runtime_watcher() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let mut events: Events = watcher(api.clone(), watcher::Config::default()).boxed();
    loop {
        if let Some(Ok(watcher::Event::InitDone)) = next(&mut events).await {
            break;
        }
    }
    for round in 0..2 {
        if round == 0 {
            sb.faults().drop_watches();
        } else {
            sb.faults().outage_for(Duration::from_millis(300));
        }
        let name = format!("after-{round}");
        let api2 = api.clone();
        let n2 = name.clone();
        // Keep creating until it succeeds (the outage may still be running).
        wait_until(Duration::from_secs(5), "create after fault", || {
            let (api2, n2) = (api2.clone(), n2.clone());
            async move {
                api2.create(&PostParams::default(), &pvc(&n2, "1Gi", "x"))
                    .await
                    .is_ok()
            }
        })
        .await;
        loop {
            match next(&mut events).await {
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)))
                    if p.name_any() == name =>
                {
                    break
                }
                Some(_) => {}
                None => panic!("watcher stream ended"),
            }
        }
    }
}

#[tokio::test]
async fn faults_over_http() {
    let sb = sandbox().await;
    let c = admin_no_retry(&sb).await;
    let body = json!({"errorRates": [{"verb": "list", "resource": "persistentvolumeclaims", "rate": 1.0, "code": 504}], "latencyMs": 1});
    let view = raw(
        &c,
        "POST",
        "/sandbox/v1/faults",
        "application/json",
        &body.to_string(),
    )
    .await
    .unwrap();
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["errorRates"][0]["code"], 504);
    assert_status(
        &api_error(pvcs(&c).list(&ListParams::default()).await),
        504,
        "Timeout",
    );
    raw(
        &c,
        "POST",
        "/sandbox/v1/faults",
        "application/json",
        r#"{"clear": true}"#,
    )
    .await
    .unwrap();
    pvcs(&c).list(&ListParams::default()).await.unwrap();
    let bad = raw(
        &c,
        "POST",
        "/sandbox/v1/faults",
        "application/json",
        r#"{"nope": 1}"#,
    )
    .await;
    assert_status(&api_error(bad), 400, "BadRequest");
}

#[tokio::test]
async fn latency_per_verb_and_resource_delays_only_matching_requests() {
    use k8s_openapi::api::coordination::v1::Lease;
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(c.clone(), NS);
    let lease: Lease =
        from_json(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}));
    leases.create(&PostParams::default(), &lease).await.unwrap();
    sb.faults()
        .set_latency_for("update", "leases", Duration::from_millis(1500));
    let current = leases.get("l").await.unwrap();
    let started = Instant::now();
    let slow = tokio::spawn({
        let leases = leases.clone();
        async move { leases.replace("l", &PostParams::default(), &current).await }
    });
    // Requests that do not match are not delayed: they finish while the update waits.
    leases.get("l").await.unwrap();
    pvcs(&c).list(&ListParams::default()).await.unwrap();
    assert!(
        !slow.is_finished(),
        "the update is held by its latency rule"
    );
    slow.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // The same over HTTP; 0 ms removes a rule and the view shows the rules.
    let body =
        json!({"latencies": [{"verb": "get", "resource": "persistentvolumeclaims", "ms": 250}]});
    let view = raw(
        &c,
        "POST",
        "/sandbox/v1/faults",
        "application/json",
        &body.to_string(),
    )
    .await
    .unwrap();
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(
        view["latencies"],
        json!([{"verb": "update", "resource": "leases", "ms": 1500}, {"verb": "get", "resource": "persistentvolumeclaims", "ms": 250}])
    );
    let body = json!({"latencies": [{"verb": "update", "resource": "leases", "ms": 0}]});
    let view = raw(
        &c,
        "POST",
        "/sandbox/v1/faults",
        "application/json",
        &body.to_string(),
    )
    .await
    .unwrap();
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(
        view["latencies"],
        json!([{"verb": "get", "resource": "persistentvolumeclaims", "ms": 250}])
    );
    sb.faults().clear();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(
            &raw(&c, "GET", "/sandbox/v1/faults", "", "").await.unwrap()
        )
        .unwrap()["latencies"],
        json!([])
    );
}

/// The one `Date` header of an answer, as a timestamp.
fn date_of(answer: &RawResponse) -> jiff::Timestamp {
    let dates = answer.header_values("date");
    assert_eq!(dates.len(), 1, "one Date header: {:?}", answer.headers);
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(dates[0])
        .unwrap_or_else(|e| panic!("an HTTP date: {:?}: {e}", dates[0]))
}

/// Every answer carries the server's clock in `Date`, as a real API
/// server's do; a clock offset shifts it (in process and over HTTP), and
/// `clear` puts it back.
#[tokio::test]
async fn a_clock_offset_shifts_the_date_of_every_answer() {
    let sb = sandbox().await;
    let auth = [("Authorization", "Bearer admin")];
    let path = "/api/v1/namespaces/ns/persistentvolumeclaims";
    let off_by = |answer: &RawResponse, expected: i64| {
        let skew = date_of(answer)
            .duration_since(jiff::Timestamp::now())
            .as_secs_f64();
        // One second of resolution, and the time the exchange took.
        assert!(
            (skew - expected as f64).abs() <= 2.0,
            "Date off by {skew}s, expected {expected}s"
        );
    };
    let plain = raw_http(&sb, "GET", path, &auth, "").await;
    assert_eq!(plain.code, 200, "{}", plain.body);
    off_by(&plain, 0);
    sb.faults()
        .set_clock_offset(jiff::SignedDuration::from_secs(-300));
    off_by(&raw_http(&sb, "GET", path, &auth, "").await, -300);
    // Errors too (401 without a token), and over HTTP.
    off_by(&raw_http(&sb, "GET", path, &[], "").await, -300);
    let set = raw_http(
        &sb,
        "POST",
        "/sandbox/v1/faults",
        &[("Content-Type", "application/json")],
        &json!({"clockOffsetSeconds": 7200}).to_string(),
    )
    .await;
    assert_eq!(
        set.json()["clockOffsetSeconds"],
        json!(7200),
        "{}",
        set.body
    );
    off_by(&raw_http(&sb, "GET", path, &auth, "").await, 7200);
    sb.faults().clear();
    off_by(&raw_http(&sb, "GET", path, &auth, "").await, 0);
}
