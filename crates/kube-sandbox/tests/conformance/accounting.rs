//! Request accounting: every API request counted by identity, User-Agent, verb, resource
//! (with subresource) and code; watch events counted on the watch's row.

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_sandbox::RequestCount;
use serde_json::json;

use crate::common::*;

fn row<'a>(
    rows: &'a [RequestCount],
    identity: &str,
    verb: &str,
    resource: &str,
    code: u16,
) -> Option<&'a RequestCount> {
    rows.iter().find(|r| {
        r.identity == identity && r.verb == verb && r.resource == resource && r.code == code
    })
}

#[tokio::test]
async fn requests_are_counted_by_identity_verb_resource_and_code() {
    let sb = sandbox().await;
    let c = sb.client_as("bench").await.unwrap();
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    for _ in 0..3 {
        api.list(&ListParams::default()).await.unwrap();
    }
    api.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    assert_status(&api_error(api.get("missing").await), 404, "NotFound");
    let rows = sb.requests();
    let count = |verb, resource, code| row(&rows, "bench", verb, resource, code).map(|r| r.count);
    assert_eq!(count("create", "persistentvolumeclaims", 201), Some(1));
    assert_eq!(count("list", "persistentvolumeclaims", 200), Some(3));
    assert_eq!(
        count("patch", "persistentvolumeclaims/status", 200),
        Some(1)
    );
    assert_eq!(count("get", "persistentvolumeclaims", 404), Some(1));

    // Over HTTP, with an explicit User-Agent; unauthenticated requests count with no identity.
    let r = raw_http(
        &sb,
        "GET",
        "/api/v1/namespaces/ns/pods",
        &[
            ("Authorization", "Bearer admin"),
            ("User-Agent", "bench-agent/1"),
        ],
        "",
    )
    .await;
    assert_eq!(r.code, 200);
    let r = raw_http(
        &sb,
        "GET",
        "/api/v1/namespaces/ns/pods",
        &[("User-Agent", "anon/1")],
        "",
    )
    .await;
    assert_eq!(r.code, 401);
    let view = raw_http(&sb, "GET", "/sandbox/v1/requests", &[], "")
        .await
        .json();
    let rows: Vec<RequestCount> = view["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| RequestCount {
            identity: v["identity"].as_str().unwrap().into(),
            user_agent: v["userAgent"].as_str().unwrap().into(),
            verb: v["verb"].as_str().unwrap().into(),
            resource: v["resource"].as_str().unwrap().into(),
            code: u16::try_from(v["code"].as_u64().unwrap()).unwrap(),
            count: v["count"].as_u64().unwrap(),
            watch_events: v["watchEvents"].as_u64().unwrap(),
            watch_bookmarks: v["watchBookmarks"].as_u64().unwrap(),
        })
        .collect();
    let admin_list = row(&rows, "admin", "list", "pods", 200).unwrap();
    assert_eq!(
        (admin_list.user_agent.as_str(), admin_list.count),
        ("bench-agent/1", 1)
    );
    assert_eq!(
        row(&rows, "", "list", "pods", 401).map(|r| r.count),
        Some(1)
    );
    assert_eq!(rows, sb.requests(), "HTTP and Rust views agree");

    sb.reset_requests();
    assert!(sb.requests().is_empty());
    api.list(&ListParams::default()).await.unwrap();
    let rows = sb.requests();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = raw_http(&sb, "DELETE", "/sandbox/v1/requests", &[], "").await;
    assert_eq!(r.json()["requests"], json!([]));
}

#[tokio::test]
async fn a_watch_counts_once_and_counts_its_events() {
    let sb = sandbox().await;
    let c = sb.client_as("watcher").await.unwrap();
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Added(_))));
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(second, Some(WatchEvent::Modified(_))));
    let rows = sb.requests();
    let w = row(&rows, "watcher", "watch", "persistentvolumeclaims", 200).expect("watch row");
    assert_eq!((w.count, w.watch_events), (1, 2));
    assert_eq!(
        row(&rows, "watcher", "patch", "persistentvolumeclaims", 200).map(|r| r.watch_events),
        Some(0)
    );
}
