//! Watches: event types, resumption, 410 Gone, bookmarks, selectors, timeouts, kube-runtime watchers.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::common::*;

const STEP: Duration = Duration::from_secs(5);

async fn next<S>(stream: &mut S) -> WatchEvent<PersistentVolumeClaim>
where
    S: futures::Stream<Item = Result<WatchEvent<PersistentVolumeClaim>, kube::Error>> + Unpin,
{
    tokio::time::timeout(STEP, stream.next())
        .await
        .expect("watch event within timeout")
        .expect("stream open")
        .expect("event decodes")
}

/// Next event that is not a bookmark.
async fn next_change<S>(stream: &mut S) -> WatchEvent<PersistentVolumeClaim>
where
    S: futures::Stream<Item = Result<WatchEvent<PersistentVolumeClaim>, kube::Error>> + Unpin,
{
    loop {
        match next(stream).await {
            WatchEvent::Bookmark(_) => continue,
            other => return other,
        }
    }
}

fn label(v: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"metadata": {"labels": {"app": v}}}))
}

#[tokio::test]
async fn added_modified_deleted() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("pre", "1Gi", "x"))
        .await
        .unwrap();
    let mut w = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next_change(&mut w).await, WatchEvent::Added(p) if p.name_any() == "pre"),
        "synthetic ADDED"
    );
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    assert!(matches!(next_change(&mut w).await, WatchEvent::Added(p) if p.name_any() == "a"));
    let m = api
        .patch("a", &PatchParams::default(), &label("x"))
        .await
        .unwrap();
    match next_change(&mut w).await {
        WatchEvent::Modified(p) => assert_eq!(p.resource_version(), m.resource_version()),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    api.delete("a", &DeleteParams::default()).await.unwrap();
    match next_change(&mut w).await {
        WatchEvent::Deleted(p) => assert!(rv_of(&p) > rv_of(&m)),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn resume_from_resource_version_replays_history() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let a = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    api.patch("a", &PatchParams::default(), &label("v2"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pvc("b", "1Gi", "x"))
        .await
        .unwrap();
    let mut w = api
        .watch(&WatchParams::default(), &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next_change(&mut w).await, WatchEvent::Modified(p) if p.labels()["app"] == "v2")
    );
    assert!(matches!(next_change(&mut w).await, WatchEvent::Added(p) if p.name_any() == "b"));
}

#[tokio::test]
async fn expired_resource_version_gets_410_error_event() {
    let sb = sandbox_with(kube_sandbox::SandboxConfig {
        watch_history: 3,
        ..Default::default()
    })
    .await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let first = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    for i in 0..5 {
        api.patch("a", &PatchParams::default(), &label(&format!("v{i}")))
            .await
            .unwrap();
    }
    let mut w = api
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next(&mut w).await {
        WatchEvent::Error(s) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
            assert!(
                s.message.starts_with("too old resource version"),
                "{}",
                s.message
            );
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(STEP, w.next())
            .await
            .unwrap()
            .is_none(),
        "stream ends after 410"
    );
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let list = api.list(&ListParams::default()).await.unwrap();
    let mut w = api
        .watch(
            &WatchParams::default(),
            &list.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    // A write elsewhere moves the global RV; the bookmark reports it.
    let other: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "elsewhere");
    let p = other
        .create(&PostParams::default(), &pvc("z", "1Gi", "x"))
        .await
        .unwrap();
    loop {
        if let WatchEvent::Bookmark(b) = next(&mut w).await {
            assert_eq!(b.types.kind, "PersistentVolumeClaim");
            if b.metadata.resource_version.parse::<u64>().unwrap() >= rv_of(&p) {
                break;
            }
        }
    }
}

#[tokio::test]
async fn selectors_on_list_and_watch() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    for (n, app) in [("a", "pg"), ("b", "web"), ("c", "pg")] {
        let mut p = pvc(n, "1Gi", "x");
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        api.create(&PostParams::default(), &p).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<PersistentVolumeClaim>| {
        l.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=pg"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app!=pg"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (web,db)"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app notin (web)"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!app"))
                .await
                .unwrap()
        )
        .len(),
        0
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app"))
                .await
                .unwrap()
        )
        .len(),
        3
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name!=b,metadata.namespace=ns"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_status(
        &api_error(api.list(&ListParams::default().fields("spec.x=1")).await),
        400,
        "BadRequest",
    );

    // A label change moves an object in or out of a selector watch: ADDED / DELETED.
    let mut w = api
        .watch(&WatchParams::default().labels("app=pg"), "0")
        .await
        .unwrap()
        .boxed();
    for _ in 0..2 {
        assert!(matches!(next_change(&mut w).await, WatchEvent::Added(_)));
    }
    api.patch("b", &PatchParams::default(), &label("pg"))
        .await
        .unwrap();
    assert!(matches!(next_change(&mut w).await, WatchEvent::Added(p) if p.name_any() == "b"));
    api.patch("a", &PatchParams::default(), &label("web"))
        .await
        .unwrap();
    assert!(matches!(next_change(&mut w).await, WatchEvent::Deleted(p) if p.name_any() == "a"));
    let mut fw = api
        .watch(&WatchParams::default().fields("metadata.name=c"), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_change(&mut fw).await, WatchEvent::Added(p) if p.name_any() == "c"));
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let mut w = pvcs(&c)
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(STEP, async {
        while let Some(ev) = w.next().await {
            ev.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "stream closed after timeoutSeconds");
}

#[tokio::test]
async fn runtime_watcher_list_watch_and_streaming_list() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut events = watcher(api.clone(), config).boxed();
        let mut seen_init = false;
        loop {
            let ev = tokio::time::timeout(STEP, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            match ev {
                watcher::Event::InitApply(p) => {
                    assert_eq!(p.name_any(), "a");
                    seen_init = true;
                }
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert!(seen_init);
    }
}
