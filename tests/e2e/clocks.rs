//! Clocks (docs/reference/metrics.md#process-metrics): records and budgets
//! are dated by the leader's clock, so the leader compares it with the API
//! server's (the `Date` of its answers), exports the difference, and a
//! difference above a minute is one Warning Event, not one per pass.

use crate::common::*;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_clock_is_off_the_api_servers_says_so_once() {
    let resize = json!({"enabled": true, "expansion": {"step": "32Mi"}});
    let env = Env::start(data_volume_cluster(64 * MIB, resize)).await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let skew = |text: &str| metric(text, "cnpg_autoresize_clock_skew_seconds", &[]);
    // One machine, one clock: in step (the header has whole seconds).
    wait_until("the skew in step", secs(20), || async {
        let s = skew(&env.metrics(n).await);
        s.filter(|s| s.abs() <= 1.5)
            .map(|_| ())
            .ok_or(format!("{s:?}"))
    })
    .await;
    assert!(
        !env.kube_events()
            .await
            .iter()
            .any(|e| e.0 == "AutoResizeClockSkew"),
        "no Event while in step"
    );

    // The API server's clock runs five minutes ahead: this pod is behind.
    env.scenario
        .sandbox
        .faults()
        .set_clock_offset(jiff::SignedDuration::from_secs(300));
    wait_until("the skew to show", secs(20), || async {
        let s = skew(&env.metrics(n).await);
        s.filter(|s| (s + 300.0).abs() <= 1.5)
            .map(|_| ())
            .ok_or(format!("{s:?}"))
    })
    .await;
    let (_, kind, note) = env.wait_kube_event("AutoResizeClockSkew", secs(30)).await;
    assert_eq!(kind, "Warning");
    assert!(
        note.contains("300s behind") && note.contains(&leader),
        "{note}"
    );
    // Passes go on — a resize is several — and the condition is not
    // announced again (it would be at the next pass).
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(90.0)
        .unwrap();
    env.wait_request("pg-1", 96 * MIB, secs(30)).await;
    env.wait_kube_event("AutoResizeSuccess", secs(30)).await;
    // A repeat within six minutes would update the Event's series.
    let events: Api<Event> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let skew_events: Vec<Event> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("AutoResizeClockSkew"))
        .collect();
    assert_eq!(skew_events.len(), 1, "{skew_events:?}");
    assert_eq!(skew_events[0].series, None, "{skew_events:?}");
}
