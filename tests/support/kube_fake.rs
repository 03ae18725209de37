//! A fake Kubernetes API server for the backend's tests: axum on a free loopback port,
//! serving the real paths and JSON the backend uses (StatefulSet and its `scale`
//! subresource, pods list/watch/patch, Leases, events.k8s.io Events, and the RedisPolicy
//! custom resource: list and watch in a namespace and across all, get, create, update,
//! merge patch and delete, and its `status` subresource) with resourceVersion
//! preconditions (409 Status on a stale write), and recording every request (method, path,
//! query, body) so tests assert exactly what was sent. RedisPolicy follows the API server's
//! rules for a custom resource with the status subresource: `metadata.generation` is 1 at
//! create and grows only when something outside `metadata` changes, writes to the object
//! ignore `status` and writes to `status` change nothing else, an update needs a
//! resourceVersion, a write that changes nothing is no write (same resourceVersion, no watch
//! event), and a delete waits for `metadata.finalizers`. Watches of pods and policies share
//! one change log. Tests inject faults: a 403 for one method and path, an outage, or
//! another writer's change just before the next StatefulSet patch. Each recorded request can
//! be read as RBAC sees it, and checked against `API_CALLS` and against the Roles and
//! ClusterRoles in `deploy/`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use redis_autopilot::cluster::kubernetes::{API_CALLS, ApiCall};
use redis_autopilot::resource::{GROUP, KIND, PLURAL, VERSION};
use serde_json::{Value, json};
use tokio::sync::watch;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

/// The resource names the change log keys watches by.
const PODS: &str = "pods";
const POLICIES: &str = PLURAL;

/// One change to a watched object, as a watch reports it.
struct Change {
    /// The resourceVersion the change made.
    version: u64,
    /// `pods` or `redispolicies`.
    resource: &'static str,
    namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    version: u64,
    sets: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    policies: BTreeMap<(String, String), Value>,
    /// Every change to a pod or a policy, for watches.
    log: Vec<Change>,
    leases: BTreeMap<(String, String), Value>,
    events: Vec<Value>,
    requests: Vec<Recorded>,
    forbidden: Vec<(Method, String)>,
    /// Merge patches another writer applies to a StatefulSet just before our next patch.
    interleaved: Vec<Value>,
    /// Every request is answered 503 and open watches end, as when the API server is down.
    outage: bool,
}

impl State {
    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// Gives `object` the next resourceVersion and logs the change for watches.
    fn record(
        &mut self,
        resource: &'static str,
        namespace: &str,
        kind: &'static str,
        mut object: Value,
    ) -> Value {
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version);
        self.log.push(Change {
            version: self.version,
            resource,
            namespace: namespace.to_owned(),
            kind,
            object: object.clone(),
        });
        object
    }

    fn log_pod(&mut self, namespace: &str, kind: &'static str, pod: Value) -> Value {
        self.record(PODS, namespace, kind, pod)
    }

    /// The stored objects of a watched resource.
    fn objects(&self, resource: &str) -> &BTreeMap<(String, String), Value> {
        if resource == PODS { &self.pods } else { &self.policies }
    }
}

pub struct KubeFake {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Shared = (Arc<Mutex<State>>, watch::Sender<u64>);

impl KubeFake {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, _) = watch::channel(0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().expect("fake addr");
        let shared: Shared = (state.clone(), changed.clone());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve the fake");
        });
        Self { addr, state, changed, server }
    }

    /// A client configuration pointing at the fake over plain HTTP.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().expect("uri"));
        config.default_namespace = "cache".into();
        config
    }

    /// Writes a kubeconfig at `path` whose current context (`fake`) points at the fake over
    /// plain HTTP, with no credentials and `namespace` as its default namespace: what a
    /// process (`--kubeconfig FILE`) needs to reach the fake.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let server = format!("http://{}", self.addr);
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: nobody, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: nobody, namespace: {namespace}}}}}]\n\
             current-context: fake\n"
        );
        std::fs::write(path, text).expect("write the kubeconfig");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    fn notify(&self) {
        let version = self.lock().version;
        self.changed.send_replace(version);
    }

    /// A StatefulSet `name` in `namespace` selecting `app=NAME`, with `replicas` and
    /// `annotations`.
    pub fn add_statefulset(&self, namespace: &str, name: &str, replicas: u32, annotations: Value) {
        let mut state = self.lock();
        let version = state.bump();
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                         "resourceVersion": version, "annotations": annotations},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "redis", "image": "redis"}]}}},
        });
        state.sets.insert((namespace.into(), name.into()), set);
    }

    pub fn statefulset(&self, namespace: &str, name: &str) -> Value {
        self.lock().sets[&(namespace.to_owned(), name.to_owned())].clone()
    }

    /// Adds or replaces a running pod `SET-ORDINAL` of StatefulSet `set` at `ip`.
    pub fn add_pod(&self, namespace: &str, set: &str, ordinal: u16, ip: &str) {
        self.put_pod(namespace, running_pod(namespace, set, ordinal, ip));
    }

    /// Adds or replaces a pod (a watch sees MODIFIED or ADDED).
    pub fn put_pod(&self, namespace: &str, pod: Value) {
        {
            let mut state = self.lock();
            let name = pod["metadata"]["name"].as_str().expect("pod name").to_owned();
            let key = (namespace.to_owned(), name);
            let kind = if state.pods.contains_key(&key) { "MODIFIED" } else { "ADDED" };
            let pod = state.log_pod(namespace, kind, pod);
            state.pods.insert(key, pod);
        }
        self.notify();
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Value {
        self.lock().pods[&(namespace.to_owned(), name.to_owned())].clone()
    }

    /// Removes a pod (a watch sees DELETED).
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        {
            let mut state = self.lock();
            let pod =
                state.pods.remove(&(namespace.to_owned(), name.to_owned())).expect("pod exists");
            state.log_pod(namespace, "DELETED", pod);
        }
        self.notify();
    }

    /// Creates RedisPolicy `name` with `spec`, or replaces the spec of the one there, as
    /// `kubectl apply` would: `metadata.generation` grows only when the spec changed, and
    /// an unchanged spec is no write at all. Returns the object as stored.
    pub fn put_policy(&self, namespace: &str, name: &str, spec: Value) -> Value {
        let stored = {
            let mut state = self.lock();
            let key = (namespace.to_owned(), name.to_owned());
            match state.policies.get(&key).cloned() {
                None => {
                    let body = json!({"apiVersion": api_version(), "kind": KIND,
                                      "metadata": {"name": name}, "spec": spec});
                    create_policy(&mut state, namespace, body)
                }
                Some(old) => {
                    let mut new = old.clone();
                    new["spec"] = spec;
                    update_policy(&mut state, &key, &old, new, Part::Object)
                }
            }
        };
        self.notify();
        stored.unwrap_or_else(|refusal| panic!("put_policy {namespace}/{name}: {refusal:?}"))
    }

    /// Merges `annotations` into the policy's (a `null` value removes that key), as
    /// `kubectl annotate` does: the resourceVersion moves, the generation does not.
    pub fn set_policy_annotations(&self, namespace: &str, name: &str, annotations: Value) -> Value {
        self.patch_policy(namespace, name, json!({"metadata": {"annotations": annotations}}))
    }

    /// Merge-patches the policy's `metadata` and `spec` as a client writing the object
    /// would (any `status` in `patch` is ignored).
    pub fn patch_policy(&self, namespace: &str, name: &str, patch: Value) -> Value {
        self.write_policy(namespace, name, Part::Object, |policy| merge(policy, &patch))
    }

    /// Replaces the policy's `status` through the status subresource, as another writer of
    /// it would.
    pub fn put_policy_status(&self, namespace: &str, name: &str, status: Value) -> Value {
        self.write_policy(namespace, name, Part::Status, |policy| policy["status"] = status)
    }

    fn write_policy(
        &self,
        namespace: &str,
        name: &str,
        part: Part,
        edit: impl FnOnce(&mut Value),
    ) -> Value {
        let stored = {
            let mut state = self.lock();
            let key = (namespace.to_owned(), name.to_owned());
            let old = state.policies.get(&key).cloned().expect("policy exists");
            let mut new = old.clone();
            edit(&mut new);
            update_policy(&mut state, &key, &old, new, part)
        };
        self.notify();
        stored.unwrap_or_else(|refusal| panic!("write to {namespace}/{name}: {refusal:?}"))
    }

    /// The whole RedisPolicy as stored, status included.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<Value> {
        self.lock().policies.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Deletes the policy as `kubectl delete` does: gone at once (a watch sees DELETED), or,
    /// while `metadata.finalizers` holds any, only marked with a `deletionTimestamp`.
    pub fn delete_policy(&self, namespace: &str, name: &str) {
        let deleted = {
            let mut state = self.lock();
            delete_policy(&mut state, &(namespace.to_owned(), name.to_owned()), &json!({}))
        };
        self.notify();
        if let Err(refusal) = deleted {
            panic!("delete_policy {namespace}/{name}: {refusal:?}");
        }
    }

    /// Answers 403 to every `method` request whose path contains `path`.
    pub fn forbid(&self, method: Method, path: &str) {
        self.lock().forbidden.push((method, path.to_owned()));
    }

    /// Starts (`true`) or ends an outage: while it lasts every request is answered 503 and
    /// the open watches end, as when the API server restarts.
    pub fn outage(&self, down: bool) {
        let version = {
            let mut state = self.lock();
            state.outage = down;
            state.version
        };
        // Wakes the watches, so they see it.
        self.changed.send_replace(version);
    }

    /// Lifts what [`KubeFake::forbid`] forbade, as a fixed Role would.
    pub fn allow(&self, method: Method, path: &str) {
        self.lock().forbidden.retain(|(m, p)| !(*m == method && p == path));
    }

    /// Another writer merge-patches the StatefulSet just before our next patch of it or of
    /// its scale.
    pub fn interleave_statefulset_write(&self, patch: Value) {
        self.lock().interleaved.push(patch);
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.lock().leases.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests other than the pod and policy watchers' lists and watches (which run on
    /// their own).
    pub fn actions(&self) -> Vec<Recorded> {
        let watcher = |r: &Recorded| {
            r.path.ends_with("/pods")
                || (r.method == "GET" && r.path.ends_with(&format!("/{POLICIES}")))
        };
        self.requests().into_iter().filter(|r| !watcher(r)).collect()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

/// A request as RBAC authorizes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RbacRequest {
    pub verb: &'static str,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    /// `""` for a request across all namespaces (or for a cluster-scoped object).
    pub namespace: String,
    /// The object's name, when the path names one (not for list, watch or create).
    pub name: Option<String>,
}

impl RbacRequest {
    /// Reads a request's path and method: namespaced (`.../namespaces/NS/RESOURCE...`), or
    /// across all namespaces (`.../RESOURCE`, namespace `""`), or a cluster-scoped object
    /// (`.../RESOURCE/NAME`); panics on anything else.
    pub fn of(request: &Recorded) -> Self {
        let watch = request.query.contains("watch=true");
        let parts: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => panic!("unexpected path {}", request.path),
        };
        let (namespace, resource, name, subresource) = match rest {
            ["namespaces", ns, resource] => (*ns, *resource, None, None),
            ["namespaces", ns, resource, name] => (*ns, *resource, Some(*name), None),
            ["namespaces", ns, resource, name, sub] => (*ns, *resource, Some(*name), Some(*sub)),
            [resource] => ("", *resource, None, None),
            [resource, name] => ("", *resource, Some(*name), None),
            _ => panic!("unexpected path {}", request.path),
        };
        let verb = match (request.method.as_str(), name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            (method, _) => panic!("unexpected method {method}"),
        };
        Self {
            verb,
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.map(str::to_owned),
            namespace: namespace.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    /// `statefulsets/scale`, as an RBAC rule names it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// The API call (RBAC verb and resource) a request is; panics if `API_CALLS` lacks it.
pub fn call_of(request: &Recorded) -> ApiCall {
    let rbac = RbacRequest::of(request);
    API_CALLS
        .iter()
        .copied()
        .find(|c| {
            c.verb == rbac.verb
                && c.group == rbac.group
                && c.resource == rbac.resource
                && c.subresource == rbac.subresource.as_deref()
        })
        .unwrap_or_else(|| panic!("{} {} is not in API_CALLS", request.method, request.path))
}

/// Every request the fake saw is a call `API_CALLS` lists (so the Role built from it covers
/// what the code does).
pub fn assert_listed(fake: &KubeFake) {
    for request in fake.requests() {
        call_of(&request);
    }
}

/// Where an RBAC rule grants.
#[derive(Debug, Clone, PartialEq)]
enum Grant {
    /// A Role's rule, or a ClusterRole's bound by a RoleBinding: in that namespace only.
    Namespace(String),
    /// A ClusterRole's rule bound by a ClusterRoleBinding: in every namespace, and across
    /// all of them (a list or watch with no namespace needs this).
    Everywhere,
}

/// Every request the fake saw is allowed by a rule of a Role or ClusterRole in the YAML
/// files directly in `dir` (say `deploy/base`): a Role's rule in its namespace; a
/// ClusterRole's where a binding in `dir` puts it (a ClusterRoleBinding: every namespace and
/// requests across all namespaces; a RoleBinding: that binding's namespace), as RBAC has
/// it, so a request across all namespaces needs a ClusterRole bound cluster-wide. The rule
/// must list the API group, resource and verb and, where it names objects, the object's
/// name (a request naming none, a list or a create, needs a rule naming none). Returns the
/// distinct kinds of request (verb, group, resource), so a test can say which were made.
pub fn assert_granted_by_roles(fake: &KubeFake, dir: &Path) -> Vec<(String, String, String)> {
    let mut documents: Vec<Value> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a manifest");
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        documents.extend(parsed);
    }
    let mut rules: Vec<(Grant, Value)> = Vec::new();
    for role in documents.iter().filter(|d| d["kind"] == "Role") {
        let namespace = role["metadata"]["namespace"].as_str().expect("a Role's namespace");
        for rule in role["rules"].as_array().into_iter().flatten() {
            rules.push((Grant::Namespace(namespace.to_owned()), rule.clone()));
        }
    }
    for role in documents.iter().filter(|d| d["kind"] == "ClusterRole") {
        let name = &role["metadata"]["name"];
        // A ClusterRole grants nothing until a binding puts it somewhere.
        let grants = documents.iter().filter_map(|binding| {
            let bound =
                binding["roleRef"]["kind"] == "ClusterRole" && binding["roleRef"]["name"] == *name;
            match binding["kind"].as_str() {
                Some("ClusterRoleBinding") if bound => Some(Grant::Everywhere),
                Some("RoleBinding") if bound => Some(Grant::Namespace(
                    binding["metadata"]["namespace"]
                        .as_str()
                        .expect("a RoleBinding's namespace")
                        .to_owned(),
                )),
                _ => None,
            }
        });
        for grant in grants.collect::<Vec<_>>() {
            for rule in role["rules"].as_array().into_iter().flatten() {
                rules.push((grant.clone(), rule.clone()));
            }
        }
    }
    assert!(!rules.is_empty(), "no Role or bound ClusterRole rules in {}", dir.display());
    let lists = |rule: &Value, field: &str, wanted: &str| {
        rule[field].as_array().into_iter().flatten().any(|v| v == wanted || v == "*")
    };
    let mut kinds = std::collections::BTreeSet::new();
    for request in fake.requests() {
        let rbac = RbacRequest::of(&request);
        let granted = rules.iter().any(|(grant, rule)| {
            let names = rule["resourceNames"].as_array().filter(|n| !n.is_empty());
            let place = match grant {
                Grant::Everywhere => true,
                Grant::Namespace(namespace) => *namespace == rbac.namespace,
            };
            place
                && lists(rule, "apiGroups", &rbac.group)
                && lists(rule, "resources", &rbac.rbac_resource())
                && lists(rule, "verbs", rbac.verb)
                && names.is_none_or(|names| {
                    rbac.name.as_deref().is_some_and(|name| names.iter().any(|n| n == name))
                })
        });
        assert!(
            granted,
            "{} {} ({rbac:?}) is not granted by the Roles and ClusterRoles in {}",
            request.method,
            request.path,
            dir.display()
        );
        kinds.insert((rbac.verb.to_owned(), rbac.group.clone(), rbac.rbac_resource()));
    }
    kinds.into_iter().collect()
}

/// A running pod with a `redis` container, labelled `app=SET`.
pub fn running_pod(namespace: &str, set: &str, ordinal: u16, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{set}-{ordinal}"), "namespace": namespace,
                     "labels": {"app": set}},
        "spec": {"containers": [{"name": "redis", "image": "redis"}]},
        "status": {"phase": "Running", "podIP": ip, "containerStatuses": [
            {"name": "redis", "ready": true, "restartCount": 0, "image": "redis", "imageID": "",
             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]},
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().expect("object").remove(key);
                } else {
                    merge(&mut target[key], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn matches_selector(pod: &Value, selector: Option<&str>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            pod["metadata"]["labels"][key].as_str() == Some(value)
        })
    })
}

async fn handle(
    axum::extract::State((state, changed)): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let mut guard = state.lock().expect("fake state");
    guard.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
    });
    if guard.outage {
        return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the fake is down");
    }
    if guard.forbidden.iter().any(|(m, p)| *m == method && path.contains(p.as_str())) {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("{method} {path} is forbidden"),
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segments.as_slice()) {
        (m, ["apis", "apps", "v1", "namespaces", ns, "statefulsets", name, rest @ ..]) => {
            let key = ((*ns).to_owned(), (*name).to_owned());
            statefulset(&mut guard, m, key, rest, body)
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            let scope = Scope::new(PODS, Some(*ns), &query);
            collection(guard, &state, &changed, scope, &query)
        }
        (Method::GET, ["apis", GROUP, VERSION, "namespaces", ns, POLICIES]) => {
            let scope = Scope::new(POLICIES, Some(*ns), &query);
            collection(guard, &state, &changed, scope, &query)
        }
        (Method::GET, ["apis", GROUP, VERSION, POLICIES]) => {
            let scope = Scope::new(POLICIES, None, &query);
            collection(guard, &state, &changed, scope, &query)
        }
        (m, ["apis", GROUP, VERSION, "namespaces", ns, POLICIES, rest @ ..]) => {
            let before = guard.version;
            let response = policies(&mut guard, m, ns, rest, content_type.as_deref(), body);
            if guard.version != before {
                changed.send_replace(guard.version);
            }
            response
        }
        (Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name]) => {
            let key = ((*ns).to_owned(), (*name).to_owned());
            match guard.pods.get(&key).cloned() {
                None => status(StatusCode::NOT_FOUND, "NotFound", "pod not found"),
                Some(mut pod) => {
                    merge(&mut pod, &body.unwrap_or_default());
                    let pod = guard.log_pod(ns, "MODIFIED", pod);
                    guard.pods.insert(key, pod.clone());
                    let version = guard.version;
                    changed.send_replace(version);
                    ok(pod)
                }
            }
        }
        (m, ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", rest @ ..]) => {
            lease(&mut guard, m, ns, rest, body)
        }
        (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
            let event = body.unwrap_or_default();
            guard.events.push(event.clone());
            (StatusCode::CREATED, axum::Json(event)).into_response()
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the fake does not serve {method} {path}"),
        ),
    }
}

/// Applies the writes another writer interleaved (`interleave_statefulset_write`, landing as a
/// `kubectl scale` would, between the caller's read and its write), then checks the write's
/// `metadata.resourceVersion` precondition: the StatefulSet to write to, or the 409 the API
/// server answers a stale one with.
fn precondition_holds(
    state: &mut State,
    key: &(String, String),
    mut set: Value,
    write: &Value,
) -> Result<Value, Box<Response>> {
    for other in std::mem::take(&mut state.interleaved) {
        merge(&mut set, &other);
        set["metadata"]["resourceVersion"] = json!(state.bump());
    }
    let precondition = write["metadata"]["resourceVersion"].as_str();
    if precondition.is_some_and(|rv| Some(rv) != set["metadata"]["resourceVersion"].as_str()) {
        state.sets.insert(key.clone(), set);
        return Err(Box::new(status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on statefulsets.apps \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                key.1
            ),
        )));
    }
    Ok(set)
}

fn statefulset(
    state: &mut State,
    method: Method,
    key: (String, String),
    rest: &[&str],
    body: Option<Value>,
) -> Response {
    let Some(set) = state.sets.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("statefulsets.apps \"{}\" not found", key.1),
        );
    };
    let (namespace, name) = key.clone();
    let scale = move |set: &Value| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
               "metadata": {"name": name, "namespace": namespace,
                            "resourceVersion": set["metadata"]["resourceVersion"]},
               "spec": {"replicas": set["spec"]["replicas"]},
               "status": {"replicas": set["spec"]["replicas"], "selector": format!("app={name}")}})
    };
    match (method, rest) {
        (Method::GET, []) => ok(set),
        (Method::PATCH, []) => {
            let patch = body.unwrap_or_default();
            let mut set = match precondition_holds(state, &key, set, &patch) {
                Ok(set) => set,
                Err(conflict) => return *conflict,
            };
            merge(&mut set, &patch);
            set["metadata"]["resourceVersion"] = json!(state.bump());
            state.sets.insert(key, set.clone());
            ok(set)
        }
        (Method::GET, ["scale"]) => ok(scale(&set)),
        (Method::PATCH | Method::PUT, ["scale"]) => {
            // The scale shares the StatefulSet's resourceVersion: a write to either since the
            // caller's read makes a precondition on it fail, as the API server does.
            let body = body.unwrap_or_default();
            let mut set = match precondition_holds(state, &key, set, &body) {
                Ok(set) => set,
                Err(conflict) => return *conflict,
            };
            set["spec"]["replicas"] = body["spec"]["replicas"].clone();
            set["metadata"]["resourceVersion"] = json!(state.bump());
            state.sets.insert(key, set.clone());
            ok(scale(&set))
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not served"),
    }
}

fn lease(
    state: &mut State,
    method: Method,
    ns: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Response {
    let body = body.unwrap_or_default();
    match (method, rest) {
        (Method::GET, [name]) => match state.leases.get(&(ns.to_owned(), (*name).to_owned())) {
            Some(lease) => ok(lease.clone()),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("leases.coordination.k8s.io \"{name}\" not found"),
            ),
        },
        (Method::POST, []) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let key = (ns.to_owned(), name.clone());
            if state.leases.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            let mut lease = body;
            lease["metadata"]["namespace"] = json!(ns);
            lease["metadata"]["resourceVersion"] = json!(state.bump());
            state.leases.insert(key, lease.clone());
            (StatusCode::CREATED, axum::Json(lease)).into_response()
        }
        (Method::PUT, [name]) => {
            let key = (ns.to_owned(), (*name).to_owned());
            let Some(current) = state.leases.get(&key) else {
                return status(StatusCode::NOT_FOUND, "NotFound", "lease not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(StatusCode::CONFLICT, "Conflict", "the object has been modified");
            }
            let mut lease = body;
            lease["metadata"]["resourceVersion"] = json!(state.bump());
            state.leases.insert(key, lease.clone());
            ok(lease)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not served"),
    }
}

/// Which objects a list or watch covers.
struct Scope {
    resource: &'static str,
    /// `None` across all namespaces.
    namespace: Option<String>,
    selector: Option<String>,
}

impl Scope {
    fn new(resource: &'static str, namespace: Option<&str>, query: &str) -> Self {
        Self {
            resource,
            namespace: namespace.map(str::to_owned),
            selector: query_param(query, "labelSelector"),
        }
    }

    fn covers(&self, namespace: &str, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && matches_selector(object, self.selector.as_deref())
    }
}

/// A list of the objects in `scope` at the current resourceVersion, or, with `watch=true`,
/// a watch of them.
fn collection(
    guard: std::sync::MutexGuard<'_, State>,
    state: &Arc<Mutex<State>>,
    changed: &watch::Sender<u64>,
    scope: Scope,
    query: &str,
) -> Response {
    if query_param(query, "watch").as_deref() == Some("true") {
        // "0" (any version) or none: start from the objects as they are now.
        let from = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .filter(|v: &u64| *v > 0);
        drop(guard);
        return watch(state.clone(), changed.subscribe(), scope, from);
    }
    let items: Vec<Value> = guard
        .objects(scope.resource)
        .iter()
        .filter(|((ns, _), object)| scope.covers(ns, object))
        .map(|(_, object)| object.clone())
        .collect();
    let (api_version, kind) = match scope.resource {
        PODS => ("v1".to_owned(), "PodList".to_owned()),
        _ => (api_version(), format!("{KIND}List")),
    };
    ok(json!({"apiVersion": api_version, "kind": kind,
              "metadata": {"resourceVersion": guard.version.to_string()}, "items": items}))
}

/// A watch: every change in `scope` after resourceVersion `from` (or, without one, every
/// object in it now as ADDED, then every later change), one JSON event per line, as it
/// happens, until the client hangs up or an outage begins.
fn watch(
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    scope: Scope,
    from: Option<u64>,
) -> Response {
    let scope = Arc::new(scope);
    let stream = futures::stream::unfold((from, changed), move |(mut cursor, mut changed)| {
        let state = state.clone();
        let scope = scope.clone();
        async move {
            loop {
                let lines: String = {
                    let state = state.lock().expect("fake state");
                    if state.outage {
                        return None;
                    }
                    let mut lines = String::new();
                    let mut event = |kind: &str, object: &Value| {
                        lines.push_str(&json!({"type": kind, "object": object}).to_string());
                        lines.push('\n');
                    };
                    match cursor {
                        None => {
                            for ((ns, _), object) in state.objects(scope.resource) {
                                if scope.covers(ns, object) {
                                    event("ADDED", object);
                                }
                            }
                        }
                        Some(after) => {
                            for change in state.log.iter().filter(|c| {
                                c.version > after
                                    && c.resource == scope.resource
                                    && scope.covers(&c.namespace, &c.object)
                            }) {
                                event(change.kind, &change.object);
                            }
                        }
                    }
                    cursor = Some(state.version.max(cursor.unwrap_or(0)));
                    lines
                };
                if !lines.is_empty() {
                    return Some((Ok::<Bytes, Infallible>(Bytes::from(lines)), (cursor, changed)));
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("watch response")
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// Which part of a RedisPolicy a write may change: the object (everything but `status`)
/// or its `status` subresource (`status` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Object,
    Status,
}

/// A write the API server refuses, as the Status it answers.
#[derive(Debug)]
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    name: String,
    message: String,
}

impl Refusal {
    fn new(code: StatusCode, reason: &'static str, name: &str, message: String) -> Self {
        Self { code, reason, name: name.to_owned(), message }
    }

    fn not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            name,
            format!("{POLICIES}.{GROUP} \"{name}\" not found"),
        )
    }

    fn conflict(name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            name,
            format!("Operation cannot be fulfilled on {POLICIES}.{GROUP} \"{name}\": {why}"),
        )
    }

    fn bad_request(name: &str, message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", name, message)
    }

    fn invalid(name: &str, field: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            name,
            format!("{KIND}.{GROUP} \"{name}\" is invalid: {field}"),
        )
    }

    fn response(&self) -> Response {
        let details = json!({"name": self.name, "group": GROUP, "kind": POLICIES});
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Failure", "message": self.message, "reason": self.reason,
                          "details": details, "code": self.code.as_u16()});
        (self.code, axum::Json(body)).into_response()
    }
}

const STALE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// The RedisPolicy paths under `.../namespaces/NS/redispolicies` (lists and watches aside).
fn policies(
    state: &mut State,
    method: Method,
    ns: &str,
    rest: &[&str],
    content_type: Option<&str>,
    body: Option<Value>,
) -> Response {
    let answer = |result: Result<Value, Refusal>, code: StatusCode| match result {
        Ok(object) => (code, axum::Json(object)).into_response(),
        Err(refusal) => refusal.response(),
    };
    let stored = |state: &State, name: &str| {
        state
            .policies
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| Refusal::not_found(name))
    };
    let part = |sub: &[&str]| match sub {
        [] => Some(Part::Object),
        ["status"] => Some(Part::Status),
        _ => None,
    };
    let Some(body) = body
        .filter(Value::is_object)
        .or_else(|| matches!(method, Method::GET | Method::DELETE).then(|| json!({})))
    else {
        return Refusal::bad_request("", "the request body is not a JSON object".into()).response();
    };
    match (method, rest) {
        (Method::POST, []) => answer(create_policy(state, ns, body), StatusCode::CREATED),
        (Method::GET, [name, sub @ ..]) if part(sub).is_some() => {
            answer(stored(state, name), StatusCode::OK)
        }
        (Method::PUT, [name, sub @ ..]) if part(sub).is_some() => {
            let written = stored(state, name).and_then(|old| {
                let key = (ns.to_owned(), (*name).to_owned());
                update_policy(state, &key, &old, body, part(sub).expect("a part"))
            });
            answer(written, StatusCode::OK)
        }
        (Method::PATCH, [name, sub @ ..]) if part(sub).is_some() => {
            if content_type != Some("application/merge-patch+json") {
                return Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    name,
                    format!(
                        "the fake serves only application/merge-patch+json patches of {POLICIES}, not {}",
                        content_type.unwrap_or("none")
                    ),
                )
                .response();
            }
            let written = stored(state, name).and_then(|old| {
                // The patch applies to the object as stored; a resourceVersion in it
                // becomes the update's precondition.
                let mut new = old.clone();
                merge(&mut new, &body);
                let key = (ns.to_owned(), (*name).to_owned());
                update_policy(state, &key, &old, new, part(sub).expect("a part"))
            });
            answer(written, StatusCode::OK)
        }
        (Method::DELETE, [name]) => {
            let key = (ns.to_owned(), (*name).to_owned());
            match delete_policy(state, &key, &body) {
                Ok(response) => response,
                Err(refusal) => refusal.response(),
            }
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not served"),
    }
}

/// Refuses an object of another kind than RedisPolicy in this group and version.
fn check_kind(object: &Value, name: &str) -> Result<(), Refusal> {
    let (api_version_got, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
    if api_version_got != Some(api_version().as_str()) || kind != Some(KIND) {
        return Err(Refusal::bad_request(
            name,
            format!(
                "the API version in the data ({}) and the kind ({}) do not match {}, {KIND}",
                api_version_got.unwrap_or("none"),
                kind.unwrap_or("none"),
                api_version()
            ),
        ));
    }
    Ok(())
}

/// Creates a policy in `ns` from `body` as the API server does: `status` dropped (it is
/// written through the subresource only), generation 1, a new uid and creationTimestamp.
fn create_policy(state: &mut State, ns: &str, mut body: Value) -> Result<Value, Refusal> {
    let name = match (body["metadata"]["name"].as_str(), body["metadata"]["generateName"].as_str())
    {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{:05x}", state.version + 1),
        _ => {
            return Err(Refusal::invalid(
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
    };
    check_kind(&body, &name)?;
    if body["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
        return Err(Refusal::bad_request(
            &name,
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let key = (ns.to_owned(), name.clone());
    if state.policies.contains_key(&key) {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &name,
            format!("{POLICIES}.{GROUP} \"{name}\" already exists"),
        ));
    }
    if let Some(fields) = body.as_object_mut() {
        fields.remove("status");
    }
    let metadata = &mut body["metadata"];
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.remove(field);
        }
    }
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(ns);
    metadata["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", state.version + 1));
    metadata["creationTimestamp"] = json!(now());
    metadata["generation"] = json!(1);
    let policy = state.record(POLICIES, ns, "ADDED", body);
    state.policies.insert(key, policy.clone());
    Ok(policy)
}

/// Writes `new` over the stored `old` as an update of `part` does on the API server:
/// `metadata.resourceVersion` must be given and current (422, 409); the object's write
/// keeps the stored `status` and server-set metadata and grows the generation when anything
/// outside `metadata` changed; the status write keeps everything but `status`. A write that
/// changes nothing is no write: the stored object comes back, no new resourceVersion, no
/// watch event.
fn update_policy(
    state: &mut State,
    key: &(String, String),
    old: &Value,
    mut new: Value,
    part: Part,
) -> Result<Value, Refusal> {
    let (ns, name) = key;
    check_kind(&new, name)?;
    if new["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(Refusal::bad_request(
            name,
            format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new["metadata"]["name"].as_str().unwrap_or_default()
            ),
        ));
    }
    if new["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
        return Err(Refusal::bad_request(
            name,
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    match new["metadata"]["resourceVersion"].as_str() {
        None | Some("") => {
            return Err(Refusal::invalid(
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            return Err(Refusal::conflict(name, STALE));
        }
        Some(_) => {}
    }
    let next = match part {
        Part::Status => {
            let mut next = old.clone();
            match new.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    next.as_object_mut().expect("an object").remove("status");
                }
            }
            next
        }
        Part::Object => {
            let fields = new.as_object_mut().expect("an object");
            match old.get("status") {
                Some(status) => {
                    fields.insert("status".into(), status.clone());
                }
                None => {
                    fields.remove("status");
                }
            }
            let metadata = &mut new["metadata"];
            for field in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old["metadata"].get(field) {
                    Some(value) => metadata[field] = value.clone(),
                    None => {
                        metadata.as_object_mut().expect("metadata").remove(field);
                    }
                }
            }
            metadata["namespace"] = json!(ns);
            let content = |object: &Value| {
                let mut object = object.clone();
                object.as_object_mut().expect("an object").remove("metadata");
                object
            };
            if content(&new) != content(old) {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
                new["metadata"]["generation"] = json!(generation + 1);
            }
            new
        }
    };
    if next == *old {
        return Ok(next);
    }
    // The last finalizer gone from an object being deleted: the delete completes.
    if next["metadata"].get("deletionTimestamp").is_some()
        && next["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty)
    {
        state.policies.remove(key);
        return Ok(state.record(POLICIES, ns, "DELETED", next));
    }
    let next = state.record(POLICIES, ns, "MODIFIED", next);
    state.policies.insert(key.clone(), next.clone());
    Ok(next)
}

/// Deletes a policy as the API server does: `options.preconditions` (uid, resourceVersion)
/// must hold (409); with finalizers the object is only marked (`deletionTimestamp`, one more
/// generation) and returned, else it goes (a watch sees DELETED) and a Success Status comes
/// back.
fn delete_policy(
    state: &mut State,
    key: &(String, String),
    options: &Value,
) -> Result<Response, Refusal> {
    let (ns, name) = key;
    let old = state.policies.get(key).cloned().ok_or_else(|| Refusal::not_found(name))?;
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let wanted = options["preconditions"][field].as_str();
        let stored = old["metadata"][field].as_str().unwrap_or_default();
        if wanted.is_some_and(|w| w != stored) {
            return Err(Refusal::conflict(
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {}, {label} in object meta: {stored}",
                    wanted.unwrap_or_default()
                ),
            ));
        }
    }
    if old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
        if old["metadata"].get("deletionTimestamp").is_some() {
            return Ok(ok(old));
        }
        let mut marked = old.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
        marked["metadata"]["generation"] = json!(generation + 1);
        let marked = state.record(POLICIES, ns, "MODIFIED", marked);
        state.policies.insert(key.clone(), marked.clone());
        return Ok(ok(marked));
    }
    state.policies.remove(key);
    state.record(POLICIES, ns, "DELETED", old.clone());
    Ok(ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                 "details": {"name": name, "group": GROUP, "kind": POLICIES,
                             "uid": old["metadata"]["uid"]}})))
}

/// A timestamp as the API server writes one (RFC 3339, whole seconds, UTC).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
