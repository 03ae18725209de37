//! A fake Kubernetes API server for the backend's tests: axum on a free loopback port,
//! serving the real paths and JSON the backend uses (StatefulSet and its `scale`
//! subresource, pods list/watch/patch, Leases, events.k8s.io Events) with resourceVersion
//! preconditions (409 Status on a stale write), and recording every request (method, path,
//! query, body) so tests assert exactly what was sent. Tests inject faults: a 403 for one
//! method and path, or another writer's change just before the next StatefulSet patch.
//! Each recorded request can be read as RBAC sees it, and checked against `API_CALLS` and
//! against the Roles in `deploy/`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use redis_autopilot::cluster::kubernetes::{API_CALLS, ApiCall};
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

#[derive(Default)]
struct State {
    version: u64,
    sets: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    /// Every pod change: (resourceVersion, namespace, type, object), for watches.
    pod_log: Vec<(u64, String, &'static str, Value)>,
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

    fn log_pod(&mut self, namespace: &str, kind: &'static str, mut pod: Value) -> Value {
        let version = self.bump();
        pod["metadata"]["resourceVersion"] = json!(version);
        self.pod_log.push((self.version, namespace.to_owned(), kind, pod.clone()));
        pod
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

    /// Requests other than the pod watcher's list and watch (which run on their own).
    pub fn actions(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| !r.path.ends_with("/pods")).collect()
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
    pub namespace: String,
    /// The object's name, when the path names one (not for list, watch or create).
    pub name: Option<String>,
}

impl RbacRequest {
    /// Reads a namespaced request's path and method; panics on anything else.
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

/// Every request the fake saw is allowed by a rule of a Role in the YAML files directly in
/// `dir` (say `deploy/base`): same namespace, API group, resource, verb and, where the rule
/// names objects, the object's name (a request naming none, a list or a create, needs a rule
/// naming none, as RBAC has it). Returns the distinct kinds of request (verb, group,
/// resource), so a test can say which were made.
pub fn assert_granted_by_roles(fake: &KubeFake, dir: &Path) -> Vec<(String, String, String)> {
    let mut rules: Vec<(String, Value)> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a manifest");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        for role in documents.iter().filter(|d| d["kind"] == "Role") {
            let namespace = role["metadata"]["namespace"].as_str().expect("a Role's namespace");
            for rule in role["rules"].as_array().into_iter().flatten() {
                rules.push((namespace.to_owned(), rule.clone()));
            }
        }
    }
    assert!(!rules.is_empty(), "no Role rules in {}", dir.display());
    let lists = |rule: &Value, field: &str, wanted: &str| {
        rule[field].as_array().into_iter().flatten().any(|v| v == wanted || v == "*")
    };
    let mut kinds = std::collections::BTreeSet::new();
    for request in fake.requests() {
        let rbac = RbacRequest::of(&request);
        let granted = rules.iter().any(|(namespace, rule)| {
            let names = rule["resourceNames"].as_array().filter(|n| !n.is_empty());
            *namespace == rbac.namespace
                && lists(rule, "apiGroups", &rbac.group)
                && lists(rule, "resources", &rbac.rbac_resource())
                && lists(rule, "verbs", rbac.verb)
                && names.is_none_or(|names| {
                    rbac.name.as_deref().is_some_and(|name| names.iter().any(|n| n == name))
                })
        });
        assert!(
            granted,
            "{} {} ({rbac:?}) is not granted by the Roles in {}",
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
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
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
            let selector = query_param(&query, "labelSelector");
            if query_param(&query, "watch").as_deref() == Some("true") {
                let from = query_param(&query, "resourceVersion").and_then(|v| v.parse().ok());
                drop(guard);
                return watch_pods(
                    state.clone(),
                    changed.subscribe(),
                    (*ns).to_owned(),
                    selector,
                    from.unwrap_or(0),
                );
            }
            let items: Vec<Value> = guard
                .pods
                .iter()
                .filter(|((n, _), pod)| n == ns && matches_selector(pod, selector.as_deref()))
                .map(|(_, pod)| pod.clone())
                .collect();
            ok(json!({"apiVersion": "v1", "kind": "PodList",
                      "metadata": {"resourceVersion": guard.version.to_string()}, "items": items}))
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

/// A watch: every pod change after `from` in `namespace` matching `selector`, one JSON
/// event per line, as it happens, until the client hangs up.
fn watch_pods(
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    namespace: String,
    selector: Option<String>,
    from: u64,
) -> Response {
    let stream = futures::stream::unfold((from, changed), move |(mut cursor, mut changed)| {
        let state = state.clone();
        let namespace = namespace.clone();
        let selector = selector.clone();
        async move {
            loop {
                let lines: String = {
                    let state = state.lock().expect("fake state");
                    if state.outage {
                        return None;
                    }
                    let mut lines = String::new();
                    for (version, ns, kind, pod) in &state.pod_log {
                        if *version > cursor
                            && *ns == namespace
                            && matches_selector(pod, selector.as_deref())
                        {
                            lines.push_str(&json!({"type": kind, "object": pod}).to_string());
                            lines.push('\n');
                        }
                    }
                    cursor = state.version.max(cursor);
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
