//! The fake API server's RedisPolicy custom resource (`support::kube_fake`), driven through
//! kube-rs itself as the daemon drives it: lists in one namespace and across all, watchers
//! seeing create, modify and delete in order (and ending with an outage), the split between
//! the object and its `status` subresource (what moves `metadata.generation`, what a write
//! to either leaves alone), resourceVersion preconditions (409), absence (404), finalizers,
//! and how RBAC reads the requests.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::WatchEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::watcher;
use redis_autopilot::cluster::kubernetes::KubeClient;
use redis_autopilot::resource::{GROUP, KIND, PLURAL, VERSION};
use serde_json::{Value, json};
use support::kube_fake::{KubeFake, RbacRequest, assert_granted_by_roles};

const NS: &str = "cache";
const PATH: &str = "/apis/autopilot.redis.io/v1alpha1/namespaces/cache/redispolicies";
/// Generous, for a loaded machine: the waits end on the event, not on this.
const DEADLINE: Duration = Duration::from_secs(30);

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// A client as the daemon builds one (`KubeClient`: kube's own retry of a 503 off, so an
/// outage shows at once).
async fn client(fake: &KubeFake) -> kube::Client {
    KubeClient::from_config(fake.config()).expect("client").get().await.expect("client")
}

async fn namespaced(fake: &KubeFake, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client(fake).await, namespace, &resource())
}

async fn everywhere(fake: &KubeFake) -> Api<DynamicObject> {
    Api::all_with(client(fake).await, &resource())
}

fn new_policy(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "autopilot.redis.io/v1alpha1", "kind": "RedisPolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a policy")
}

fn spec(statefulset: &str) -> Value {
    json!({"target": {"kubernetes": {"namespace": NS, "statefulSet": statefulset}}})
}

fn generation(object: &DynamicObject) -> Option<i64> {
    object.metadata.generation
}

fn version(object: &DynamicObject) -> u64 {
    object
        .metadata
        .resource_version
        .as_deref()
        .expect("a resourceVersion")
        .parse()
        .expect("a number")
}

/// The API server's answer to a refused request: (code, reason, message).
fn refusal<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.to_string(), status.message.to_string())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names(list: &[DynamicObject]) -> Vec<(String, String)> {
    list.iter()
        .map(|o| {
            (
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().expect("a name"),
            )
        })
        .collect()
}

/// The next watcher event that is not part of a (re)list's start, as `(type, namespace/name,
/// generation)`; `Err` for a watcher error.
async fn next_change(
    events: &mut (impl Stream<Item = watcher::Result<watcher::Event<DynamicObject>>> + Unpin),
) -> Result<(&'static str, String, Option<i64>), String> {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("a watcher event within the deadline")
            .expect("the watcher goes on");
        let id = |o: &DynamicObject| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or(""),
                o.metadata.name.as_deref().expect("a name")
            )
        };
        match event {
            Ok(watcher::Event::Apply(o)) => return Ok(("apply", id(&o), generation(&o))),
            Ok(watcher::Event::Delete(o)) => return Ok(("delete", id(&o), generation(&o))),
            Ok(watcher::Event::InitApply(o)) => return Ok(("initApply", id(&o), generation(&o))),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Waits until a watcher's first list is done.
async fn listed(
    events: &mut (impl Stream<Item = watcher::Result<watcher::Event<DynamicObject>>> + Unpin),
) {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("the first list within the deadline")
            .expect("the watcher goes on")
            .expect("the first list");
        if matches!(event, watcher::Event::InitDone) {
            return;
        }
    }
}

#[tokio::test]
async fn lists_policies_in_one_namespace_and_in_all() {
    let fake = KubeFake::start().await;
    fake.put_policy(NS, "orders", spec("redis-orders"));
    fake.put_policy(NS, "carts", spec("redis-carts"));
    fake.put_policy("other", "sessions", spec("redis-sessions"));

    let here = namespaced(&fake, NS).await.list(&ListParams::default()).await.expect("list");
    assert_eq!(names(&here.items), [(NS.into(), "carts".into()), (NS.into(), "orders".into())]);
    let all = everywhere(&fake).await.list(&ListParams::default()).await.expect("list all");
    assert_eq!(
        names(&all.items),
        [
            (NS.into(), "carts".into()),
            (NS.into(), "orders".into()),
            ("other".into(), "sessions".into())
        ]
    );
    for item in &all.items {
        let types = item.types.as_ref().expect("each item names its type");
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("autopilot.redis.io/v1alpha1", "RedisPolicy")
        );
        assert_eq!(generation(item), Some(1));
        assert!(item.metadata.uid.is_some() && item.metadata.creation_timestamp.is_some());
    }
    // A list is as of the fake's one counter: the newest of the three writes.
    assert_eq!(all.metadata.resource_version.as_deref(), Some("3"));
    let raw = fake.requests();
    let lists: Vec<_> = raw.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(lists[0].path, PATH);
    assert_eq!(lists[1].path, "/apis/autopilot.redis.io/v1alpha1/redispolicies");

    // A label selector narrows a list.
    fake.patch_policy(NS, "orders", json!({"metadata": {"labels": {"tier": "gold"}}}));
    let gold = namespaced(&fake, NS)
        .await
        .list(&ListParams::default().labels("tier=gold"))
        .await
        .expect("list by label");
    assert_eq!(names(&gold.items), [(NS.into(), "orders".into())]);
}

#[tokio::test]
async fn a_watcher_sees_create_modify_and_delete_in_order() {
    let fake = KubeFake::start().await;
    fake.put_policy(NS, "carts", spec("redis-carts"));
    let api = namespaced(&fake, NS).await;
    let mut here = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut all = watcher(everywhere(&fake).await, watcher::Config::default()).boxed();
    // The first list brings what is there.
    assert_eq!(next_change(&mut here).await, Ok(("initApply", "cache/carts".into(), Some(1))));
    listed(&mut here).await;
    listed(&mut all).await;

    // Through kube-rs: create, a spec patch, a status patch, a delete.
    api.create(&PostParams::default(), &new_policy("orders", spec("redis-orders")))
        .await
        .expect("create");
    // In another namespace, through a helper: the namespaced watcher does not see it, so
    // its next event is the next change here.
    fake.put_policy("other", "sessions", spec("redis-sessions"));
    api.patch("orders", &PatchParams::default(), &Patch::Merge(json!({"spec": spec("redis-x")})))
        .await
        .expect("patch the spec");
    api.patch_status(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
    )
    .await
    .expect("patch the status");
    // A helper's change is seen too.
    fake.set_policy_annotations(NS, "orders", json!({"autopilot.redis.io/paused": "true"}));
    api.delete("orders", &DeleteParams::default()).await.expect("delete");

    let expected = [
        ("apply", "cache/orders", Some(1)),
        ("apply", "cache/orders", Some(2)),
        ("apply", "cache/orders", Some(2)),
        ("apply", "cache/orders", Some(2)),
        ("delete", "cache/orders", Some(2)),
    ];
    for (kind, id, generation) in expected {
        assert_eq!(next_change(&mut here).await, Ok((kind, id.to_owned(), generation)));
    }
    assert_eq!(next_change(&mut all).await, Ok(("apply", "cache/orders".into(), Some(1))));
    assert_eq!(next_change(&mut all).await, Ok(("apply", "other/sessions".into(), Some(1))));
    assert_eq!(next_change(&mut all).await, Ok(("apply", "cache/orders".into(), Some(2))));

    // The watches went out with the list's resourceVersion, in the namespace and across all.
    let watches: Vec<_> =
        fake.requests().into_iter().filter(|r| r.query.contains("watch=true")).collect();
    assert!(watches.iter().any(|r| r.path == PATH && r.query.contains("resourceVersion=1")));
    assert!(watches.iter().any(|r| r.path == "/apis/autopilot.redis.io/v1alpha1/redispolicies"
        && r.query.contains("resourceVersion=1")));

    // An outage ends the watch; the watcher reports it.
    fake.outage(true);
    assert!(next_change(&mut here).await.is_err(), "the outage ends the watch");
    // A change during the outage is seen once the API server is back.
    fake.put_policy(NS, "late", spec("redis-late"));
    fake.outage(false);
    let after = loop {
        if let Ok(change) = next_change(&mut here).await {
            break change;
        }
    };
    assert_eq!(after, ("apply", "cache/late".into(), Some(1)));
}

/// A watch from resourceVersion "0" (or none) starts with the objects there now, each
/// ADDED, not with their history, then goes on with every change.
#[tokio::test]
async fn a_watch_from_version_zero_starts_with_the_objects_there() {
    let fake = KubeFake::start().await;
    fake.put_policy(NS, "orders", spec("redis-orders"));
    fake.put_policy(NS, "gone", spec("redis-gone"));
    fake.delete_policy(NS, "gone");
    fake.put_policy(NS, "orders", spec("redis-orders-2"));
    let api = namespaced(&fake, NS).await;
    let mut events =
        api.watch(&kube::api::WatchParams::default(), "0").await.expect("watch").boxed();
    let mut next = async || {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event within the deadline")
            .expect("the watch goes on")
            .expect("an event");
        let (kind, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        (kind, object.metadata.name.clone().expect("a name"), generation(&object))
    };
    assert_eq!(next().await, ("ADDED", "orders".into(), Some(2)));
    fake.put_policy(NS, "carts", spec("redis-carts"));
    assert_eq!(next().await, ("ADDED", "carts".into(), Some(1)));
}

#[tokio::test]
async fn status_writes_keep_the_generation_and_spec_writes_keep_the_status() {
    let fake = KubeFake::start().await;
    let api = namespaced(&fake, NS).await;
    let mut body = new_policy("orders", spec("redis-orders"));
    body.data["status"] = json!({"phase": "Healthy"});
    let created = api.create(&PostParams::default(), &body).await.expect("create");
    assert_eq!(generation(&created), Some(1));
    assert!(created.data.get("status").is_none(), "a create cannot set the status");

    // A status write changes the status only: spec and labels in its body are ignored, the
    // generation stays, the resourceVersion moves.
    let status = api
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy", "master": "redis-orders-0"},
                                 "spec": spec("ignored"),
                                 "metadata": {"labels": {"ignored": "yes"}}})),
        )
        .await
        .expect("patch the status");
    assert_eq!(generation(&status), Some(1));
    assert_eq!(status.data["spec"], spec("redis-orders"));
    assert_eq!(status.data["status"], json!({"phase": "Healthy", "master": "redis-orders-0"}));
    assert_eq!(status.metadata.labels, None);
    assert!(version(&status) > version(&created));
    // A PUT of the status: the same rules.
    let mut replaced = status.clone();
    replaced.data["spec"] = spec("ignored too");
    replaced.data["status"] = json!({"phase": "Degraded"});
    let replaced = api
        .replace_status("orders", &PostParams::default(), &replaced)
        .await
        .expect("replace the status");
    assert_eq!(generation(&replaced), Some(1));
    assert_eq!(replaced.data["spec"], spec("redis-orders"));
    assert_eq!(replaced.data["status"], json!({"phase": "Degraded"}));

    // A spec write moves the generation and ignores the status in its body.
    let written = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec("redis-new"), "status": {"phase": "Invalid"}})),
        )
        .await
        .expect("patch the spec");
    assert_eq!(generation(&written), Some(2));
    assert_eq!(written.data["status"], json!({"phase": "Degraded"}));
    assert_eq!(written.data["spec"], spec("redis-new"));
    // A PUT of the object: the same.
    let mut put = written.clone();
    put.data["spec"] = spec("redis-put");
    put.data["status"] = json!({"phase": "Invalid"});
    let put = api.replace("orders", &PostParams::default(), &put).await.expect("replace");
    assert_eq!(generation(&put), Some(3));
    assert_eq!(put.data["status"], json!({"phase": "Degraded"}));

    // Labels and annotations are metadata: the resourceVersion moves, the generation not.
    let labelled = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
        )
        .await
        .expect("label");
    assert_eq!(generation(&labelled), Some(3));
    assert!(version(&labelled) > version(&put));
    let annotated = fake.set_policy_annotations(NS, "orders", json!({"note": "x"}));
    assert_eq!(annotated["metadata"]["generation"], 3);

    // A write that changes nothing is no write: same resourceVersion.
    let before = fake.policy(NS, "orders").expect("stored");
    let same = api
        .patch("orders", &PatchParams::default(), &Patch::Merge(json!({"spec": spec("redis-put")})))
        .await
        .expect("a no-op patch");
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        before["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(fake.policy(NS, "orders"), Some(before));

    // The helpers follow the same rules.
    assert_eq!(fake.put_policy(NS, "orders", spec("redis-put"))["metadata"]["generation"], 3);
    assert_eq!(fake.put_policy(NS, "orders", spec("redis-helper"))["metadata"]["generation"], 4);
    let helper_status = fake.put_policy_status(NS, "orders", json!({"phase": "Paused"}));
    assert_eq!(helper_status["metadata"]["generation"], 4);
    assert_eq!(helper_status["spec"], spec("redis-helper"));
    assert_eq!(fake.policy(NS, "orders").expect("stored")["status"], json!({"phase": "Paused"}));
}

#[tokio::test]
async fn stale_resource_versions_conflict() {
    let fake = KubeFake::start().await;
    let api = namespaced(&fake, NS).await;
    api.create(&PostParams::default(), &new_policy("orders", spec("redis-orders")))
        .await
        .expect("create");
    let read = api.get("orders").await.expect("get");
    let stale = read.metadata.resource_version.clone().expect("a resourceVersion");
    // Another writer moves it on.
    fake.put_policy_status(NS, "orders", json!({"phase": "Healthy"}));

    let mut put = read.clone();
    put.data["spec"] = spec("redis-put");
    let (code, reason, message) =
        refusal(api.replace("orders", &PostParams::default(), &put).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains(r#"redispolicies.autopilot.redis.io "orders""#), "{message}");
    let (code, reason, _) =
        refusal(api.replace_status("orders", &PostParams::default(), &put).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let preconditioned = json!({"metadata": {"resourceVersion": stale},
                                "status": {"phase": "Degraded"}});
    let (code, reason, _) = refusal(
        api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&preconditioned)).await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let (code, _, _) =
        refusal(api.patch("orders", &PatchParams::default(), &Patch::Merge(&preconditioned)).await);
    assert_eq!(code, 409);
    assert_eq!(fake.policy(NS, "orders").expect("stored")["status"], json!({"phase": "Healthy"}));

    // An update must name the version it replaces.
    put.metadata.resource_version = None;
    let (code, reason, message) =
        refusal(api.replace("orders", &PostParams::default(), &put).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{message}");

    // With the current version, or a patch naming none, the write goes through.
    let current = api.get("orders").await.expect("get");
    let mut put = current.clone();
    put.data["spec"] = spec("redis-put");
    api.replace("orders", &PostParams::default(), &put).await.expect("a current PUT");
    let unconditional = api
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Degraded"}})),
        )
        .await
        .expect("an unconditional patch");
    assert_eq!(unconditional.data["status"], json!({"phase": "Degraded"}));
    assert_eq!(generation(&unconditional), Some(2));
}

#[tokio::test]
async fn absent_policies_are_not_found_and_present_ones_are_not_created_again() {
    let fake = KubeFake::start().await;
    let api = namespaced(&fake, NS).await;
    let (code, reason, message) = refusal(api.get("nope").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, r#"redispolicies.autopilot.redis.io "nope" not found"#);
    let (code, _, _) = refusal(api.get_status("nope").await);
    assert_eq!(code, 404);
    let (code, _, _) = refusal(
        api.patch_status(
            "nope",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy"}})),
        )
        .await,
    );
    assert_eq!(code, 404);
    let (code, _, _) = refusal(api.delete("nope", &DeleteParams::default()).await);
    assert_eq!(code, 404);
    assert_eq!(fake.policy(NS, "nope"), None);

    api.create(&PostParams::default(), &new_policy("orders", spec("redis-orders")))
        .await
        .expect("create");
    let (code, reason, message) = refusal(
        api.create(&PostParams::default(), &new_policy("orders", spec("redis-orders"))).await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(message, r#"redispolicies.autopilot.redis.io "orders" already exists"#);
    // Only a merge patch is served; anything else is refused, not misread.
    let (code, _, _) = refusal(
        api.patch("orders", &PatchParams::default(), &Patch::Strategic(json!({"spec": {}}))).await,
    );
    assert_eq!(code, 415);

    // Deleted, it is gone; the uid of a new one differs.
    let uid = fake.policy(NS, "orders").expect("stored")["metadata"]["uid"].clone();
    let deleted = api.delete("orders", &DeleteParams::default()).await.expect("delete");
    assert!(deleted.is_right(), "a delete without finalizers answers a Status");
    assert_eq!(fake.policy(NS, "orders"), None);
    fake.put_policy(NS, "orders", spec("redis-orders"));
    assert_ne!(fake.policy(NS, "orders").expect("stored")["metadata"]["uid"], uid);
}

#[tokio::test]
async fn a_delete_waits_for_the_finalizers() {
    let fake = KubeFake::start().await;
    let api = namespaced(&fake, NS).await;
    fake.put_policy(NS, "orders", spec("redis-orders"));
    fake.patch_policy(
        NS,
        "orders",
        json!({"metadata": {"finalizers": ["autopilot.redis.io/lease"]}}),
    );
    let marked = api.delete("orders", &DeleteParams::default()).await.expect("delete");
    let marked = marked.left().expect("the object, still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(fake.policy(NS, "orders").is_some());
    // A stale precondition on the delete conflicts.
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    let (code, _, _) = refusal(api.delete("orders", &stale).await);
    assert_eq!(code, 409);
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    assert_eq!(fake.policy(NS, "orders"), None);
}

#[tokio::test]
async fn rbac_reads_requests_across_all_namespaces_and_cluster_roles_grant_them() {
    let fake = KubeFake::start().await;
    fake.put_policy(NS, "orders", spec("redis-orders"));
    everywhere(&fake).await.list(&ListParams::default()).await.expect("list all");
    namespaced(&fake, NS).await.get("orders").await.expect("get");
    let requests = fake.requests();
    let all = RbacRequest::of(&requests[0]);
    assert_eq!(
        (all.verb, all.group.as_str(), all.resource.as_str(), all.namespace.as_str(), all.name),
        ("list", GROUP, PLURAL, "", None)
    );
    let one = RbacRequest::of(&requests[1]);
    assert_eq!(
        (one.verb, one.namespace.as_str(), one.name.as_deref()),
        ("get", NS, Some("orders"))
    );

    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
                metadata: {name: policies}\n\
                rules: [{apiGroups: [autopilot.redis.io], resources: [redispolicies], verbs: [get, list, watch]}]\n";
    let cluster_binding = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
                           metadata: {name: policies}\n\
                           roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: policies}\n\
                           subjects: [{kind: ServiceAccount, name: redis-autopilot, namespace: redis-autopilot}]\n";
    let namespace_binding = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
                             metadata: {name: policies, namespace: cache}\n\
                             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: policies}\n\
                             subjects: [{kind: ServiceAccount, name: redis-autopilot, namespace: redis-autopilot}]\n";
    let dir = tempfile::tempdir().expect("a directory");
    // Bound in one namespace: the get there is granted, the list across all is not.
    std::fs::write(dir.path().join("rbac.yaml"), format!("{role}{namespace_binding}")).unwrap();
    let refused = catch_unwind(AssertUnwindSafe(|| assert_granted_by_roles(&fake, dir.path())));
    let message = *refused
        .expect_err("a RoleBinding does not grant across namespaces")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("/apis/autopilot.redis.io/v1alpha1/redispolicies "), "{message}");
    // Bound cluster-wide: both are.
    std::fs::write(dir.path().join("rbac.yaml"), format!("{role}{cluster_binding}")).unwrap();
    let kinds = assert_granted_by_roles(&fake, dir.path());
    assert_eq!(
        kinds,
        [
            ("get".to_owned(), GROUP.to_owned(), PLURAL.to_owned()),
            ("list".to_owned(), GROUP.to_owned(), PLURAL.to_owned())
        ]
    );
    // Unbound, a ClusterRole grants nothing.
    std::fs::write(dir.path().join("rbac.yaml"), role).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| assert_granted_by_roles(&fake, dir.path()))).is_err());
}
