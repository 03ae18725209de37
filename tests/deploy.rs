//! Every manifest under `deploy/` is a Kubernetes object of the kind it declares, with no field
//! the API would silently drop, and the pieces agree with each other and with the daemon: the
//! Deployment runs flags `run` has, the policy it mounts passes `check`, RBAC is exactly the
//! table below, each Kustomization lists its directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One permission the daemon holds: a Role rule, flattened. The Kubernetes backend's tests
/// link each row to the API calls that need it; a row nobody needs is a permission to drop.
struct Rule {
    namespace: &'static str,
    group: &'static str,
    resource: &'static str,
    /// Empty: any object of the resource.
    names: &'static [&'static str],
    verbs: &'static [&'static str],
}

/// Exactly the permissions in deploy/base (rbac-redis.yaml, rbac-leader-election.yaml,
/// rbac-verifier.yaml).
const EXPECTED_RULES: &[Rule] = &[
    // `run --resources`: watch the RedisPolicy objects of the daemon's namespace...
    Rule {
        namespace: "redis-autopilot",
        group: "autopilot.redis.io",
        resource: "redispolicies",
        names: &[],
        verbs: &["list", "watch"],
    },
    // ...write their status...
    Rule {
        namespace: "redis-autopilot",
        group: "autopilot.redis.io",
        resource: "redispolicies/status",
        names: &[],
        verbs: &["patch"],
    },
    // ...and say why one cannot run.
    Rule {
        namespace: "redis-autopilot",
        group: "events.k8s.io",
        resource: "events",
        names: &[],
        verbs: &["create"],
    },
    // Restore tests of a StatefulSet: scale the verifier 0 -> 1 -> 0 (a look at its replicas
    // first)...
    Rule {
        namespace: "redis-autopilot",
        group: "apps",
        resource: "statefulsets/scale",
        names: &["redis-autopilot-verifier"],
        verbs: &["get", "patch"],
    },
    // ...and find its pod's IP, and see it gone.
    Rule {
        namespace: "redis-autopilot",
        group: "",
        resource: "pods",
        names: &[],
        verbs: &["list"],
    },
    // Find the target StatefulSet, its selector and annotations (master record), and write
    // the master record: annotations redis-autopilot.io/master, .../epoch and .../claim. Only
    // that StatefulSet, by name.
    Rule {
        namespace: "cache",
        group: "apps",
        resource: "statefulsets",
        names: &["redis-session"],
        verbs: &["get", "patch"],
    },
    // Read and set replicas through the scale subresource (the patch under a resourceVersion).
    Rule {
        namespace: "cache",
        group: "apps",
        resource: "statefulsets/scale",
        names: &["redis-session"],
        verbs: &["get", "patch"],
    },
    // Instances: list by selector, watch for failover evidence, patch the role label.
    Rule {
        namespace: "cache",
        group: "",
        resource: "pods",
        names: &[],
        verbs: &["list", "watch", "patch"],
    },
    // One Event per action on the StatefulSet (repeats are held back, never patched).
    Rule {
        namespace: "cache",
        group: "events.k8s.io",
        resource: "events",
        names: &[],
        verbs: &["create"],
    },
    // Leader election: create the Lease once (create cannot be narrowed by name)...
    Rule {
        namespace: "redis-autopilot",
        group: "coordination.k8s.io",
        resource: "leases",
        names: &[],
        verbs: &["create"],
    },
    // ...then read, renew or take over each policy's Lease (`redis-autopilot-POLICY`).
    Rule {
        namespace: "redis-autopilot",
        group: "coordination.k8s.io",
        resource: "leases",
        names: &[],
        verbs: &["get", "update"],
    },
];

/// The Prometheus Operator kinds, whose CRDs k8s-openapi does not have: checked structurally.
const MONITORING_KINDS: &[(&str, &str)] = &[
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"),
];

/// One YAML document of one file under deploy/.
struct Manifest {
    file: PathBuf,
    index: usize,
    value: Value,
}

impl Manifest {
    fn field(&self, name: &str) -> &str {
        self.value.get(name).and_then(Value::as_str).unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
    }

    fn namespace(&self) -> Option<&str> {
        self.value.pointer("/metadata/namespace").and_then(Value::as_str)
    }

    fn at(&self) -> String {
        format!("{} document {}", self.file.display(), self.index + 1)
    }

    /// Deserializes into `T` and fails on any field `T` does not have. k8s-openapi types
    /// ignore unknown fields (as the API server does, silently), so a typo like
    /// `readOnlyRootFileSystem` would parse; serializing back and comparing keys finds it.
    fn typed<T: DeserializeOwned + Serialize>(&self) -> T {
        let typed: T = serde_json::from_value(self.value.clone()).unwrap_or_else(|e| {
            panic!("{}: not a valid {} {}: {e}", self.at(), self.field("apiVersion"), self.kind())
        });
        let back = serde_json::to_value(&typed).expect("serialize");
        let mut dropped = Vec::new();
        dropped_keys(&self.value, &back, "", &mut dropped);
        assert!(
            dropped.is_empty(),
            "{}: fields a {} does not have (misspelled or misplaced?): {dropped:?}",
            self.at(),
            self.kind()
        );
        typed
    }

    fn kind(&self) -> &str {
        self.field("kind")
    }
}

/// Paths of keys in `original` that `back` lacks.
fn dropped_keys(original: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(original), Value::Object(back)) => {
            for (key, value) in original {
                let here = format!("{path}.{key}");
                match back.get(key) {
                    Some(kept) => dropped_keys(value, kept, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(original), Value::Array(back)) => {
            for (i, value) in original.iter().enumerate() {
                let here = format!("{path}[{i}]");
                match back.get(i) {
                    Some(kept) => dropped_keys(value, kept, &here, out),
                    None => out.push(here),
                }
            }
        }
        _ => {}
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
}

/// Every document of every YAML file under deploy/.
fn manifests() -> Vec<Manifest> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    assert!(files.len() >= 15, "deploy/ has its manifests: {files:?}");
    let mut manifests = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        assert!(!documents.is_empty(), "{}: no document", file.display());
        for (index, value) in documents.into_iter().enumerate() {
            assert!(value.is_object(), "{} document {}: not a mapping", file.display(), index + 1);
            manifests.push(Manifest { file: file.clone(), index, value });
        }
    }
    manifests
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    let found: Vec<_> = manifests.iter().filter(|m| m.kind() == kind && m.name() == name).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

#[test]
fn every_manifest_is_an_object_of_its_declared_kind() {
    let mut kinds = BTreeSet::new();
    for manifest in manifests() {
        let api_version = manifest.field("apiVersion");
        match (api_version, manifest.kind()) {
            ("v1", "Namespace") => drop(manifest.typed::<Namespace>()),
            ("v1", "ServiceAccount") => drop(manifest.typed::<ServiceAccount>()),
            ("v1", "ConfigMap") => drop(manifest.typed::<ConfigMap>()),
            ("v1", "Service") => drop(manifest.typed::<Service>()),
            ("apps/v1", "Deployment") => drop(manifest.typed::<Deployment>()),
            ("apps/v1", "StatefulSet") => drop(manifest.typed::<StatefulSet>()),
            ("policy/v1", "PodDisruptionBudget") => drop(manifest.typed::<PodDisruptionBudget>()),
            ("networking.k8s.io/v1", "NetworkPolicy") => drop(manifest.typed::<NetworkPolicy>()),
            ("rbac.authorization.k8s.io/v1", "Role") => drop(manifest.typed::<Role>()),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                drop(manifest.typed::<RoleBinding>())
            }
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                drop(manifest.typed::<CustomResourceDefinition>())
            }
            ("kustomize.config.k8s.io/v1beta1", "Kustomization") => {
                check_kustomization(&manifest);
            }
            (api_version, kind) if MONITORING_KINDS.contains(&(api_version, kind)) => {
                check_monitoring(&manifest);
            }
            (api_version, kind) => {
                panic!("{}: unexpected {api_version} {kind}: add it here", manifest.at())
            }
        }
        // Kustomizations are build files, not objects: every object names its namespace,
        // since the base spans two and sets none by transformer.
        let cluster_scoped = ["Kustomization", "Namespace", "CustomResourceDefinition"];
        if !cluster_scoped.contains(&manifest.kind()) {
            assert!(manifest.namespace().is_some(), "{}: no metadata.namespace", manifest.at());
        }
        kinds.insert(manifest.kind().to_owned());
    }
    for expected in [
        "CustomResourceDefinition",
        "Deployment",
        "StatefulSet",
        "Role",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(expected), "no {expected} under deploy/: {kinds:?}");
    }
}

#[test]
fn every_namespace_used_is_created_by_a_manifest() {
    let manifests = manifests();
    let created: BTreeSet<&str> =
        manifests.iter().filter(|m| m.kind() == "Namespace").map(Manifest::name).collect();
    let used: BTreeSet<&str> = manifests.iter().filter_map(Manifest::namespace).collect();
    assert_eq!(created, BTreeSet::from(["cache", "redis-autopilot"]));
    assert!(used.is_subset(&created), "used {used:?}, created {created:?}");
}

/// `resources:` lists exactly the other YAML files of its directory; only keys used here.
fn check_kustomization(manifest: &Manifest) {
    assert_eq!(
        manifest.file.file_name().and_then(|n| n.to_str()),
        Some("kustomization.yaml"),
        "{}",
        manifest.at()
    );
    let keys: BTreeSet<&str> =
        manifest.value.as_object().expect("mapping").keys().map(String::as_str).collect();
    let allowed = BTreeSet::from(["apiVersion", "kind", "resources", "images"]);
    assert!(keys.is_subset(&allowed), "{}: keys {keys:?}", manifest.at());
    let listed: Vec<&str> = manifest.value["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no resources list", manifest.at()))
        .iter()
        .map(|r| r.as_str().expect("a resource is a path"))
        .collect();
    let dir = manifest.file.parent().expect("a directory");
    for resource in &listed {
        assert!(dir.join(resource).is_file(), "{}: lists missing {resource}", manifest.at());
    }
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| is_yaml(p) && !p.ends_with("kustomization.yaml"))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut listed_sorted: Vec<String> = listed.iter().map(|r| (*r).to_owned()).collect();
    listed_sorted.sort();
    assert_eq!(listed_sorted, present, "{}: resources vs files in its directory", manifest.at());
    if let Some(images) = manifest.value.get("images") {
        for image in images.as_array().expect("images list") {
            assert!(image["name"].is_string(), "{}: image without name", manifest.at());
        }
    }
}

/// The fields the daemon's setup relies on, and no unknown keys at the levels written here.
fn check_monitoring(manifest: &Manifest) {
    let at = manifest.at();
    let spec = manifest.value.get("spec").unwrap_or_else(|| panic!("{at}: no spec"));
    assert!(manifest.name() != "", "{at}: no metadata.name");
    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap_or_else(|| panic!("{at}: not a mapping")).keys().cloned().collect()
    };
    let only = |value: &Value, allowed: &[&str], what: &str| {
        let unknown: Vec<String> =
            keys(value).into_iter().filter(|k| !allowed.contains(&k.as_str())).collect();
        assert!(unknown.is_empty(), "{at}: unknown {what} fields {unknown:?}");
    };
    match manifest.kind() {
        "ServiceMonitor" => {
            only(spec, &["selector", "endpoints", "namespaceSelector", "jobLabel"], "spec");
            assert!(spec["selector"]["matchLabels"].is_object(), "{at}: selector.matchLabels");
            let endpoints = spec["endpoints"].as_array().expect("endpoints");
            assert!(!endpoints.is_empty(), "{at}: no endpoints");
            for endpoint in endpoints {
                only(
                    endpoint,
                    &["port", "path", "interval", "scheme", "scrapeTimeout"],
                    "endpoint",
                );
                assert_eq!(endpoint["port"], "http-metrics", "{at}: scrapes the named port");
            }
        }
        "PrometheusRule" => {
            only(spec, &["groups"], "spec");
            let groups = spec["groups"].as_array().expect("groups");
            assert!(!groups.is_empty(), "{at}: no groups");
            for group in groups {
                only(group, &["name", "interval", "rules"], "group");
                assert!(group["name"].is_string(), "{at}: group without name");
                let rules = group["rules"].as_array().expect("rules");
                assert!(!rules.is_empty(), "{at}: empty group");
                for rule in rules {
                    only(
                        rule,
                        &["alert", "record", "expr", "for", "labels", "annotations"],
                        "rule",
                    );
                    assert!(rule["alert"].is_string() != rule["record"].is_string(), "{at}");
                    assert!(rule["expr"].is_string(), "{at}: rule without expr");
                }
            }
        }
        "AlertmanagerConfig" => {
            only(spec, &["route", "receivers", "inhibitRules"], "spec");
            let receivers = spec["receivers"].as_array().expect("receivers");
            let names: Vec<&Value> = receivers.iter().map(|r| &r["name"]).collect();
            assert!(names.contains(&&spec["route"]["receiver"]), "{at}: route to a receiver");
            for receiver in receivers {
                for webhook in receiver["webhookConfigs"].as_array().expect("webhookConfigs") {
                    only(webhook, &["url", "sendResolved", "httpConfig", "maxAlerts"], "webhook");
                    let url = webhook["url"].as_str().expect("url");
                    assert!(url.ends_with("/v1/alerts"), "{at}: the daemon's webhook: {url}");
                    let auth = &webhook["httpConfig"]["authorization"];
                    assert_eq!(auth["type"], "Bearer", "{at}: bearer token");
                    assert!(auth["credentials"]["name"].is_string(), "{at}: token Secret");
                }
            }
        }
        other => panic!("{at}: no structural check for {other}"),
    }
}

fn daemon_container(deployment: &Deployment) -> Container {
    let pod = deployment.spec.as_ref().and_then(|s| s.template.spec.clone()).expect("pod spec");
    assert_eq!(pod.containers.len(), 1, "one container");
    pod.containers[0].clone()
}

#[test]
fn the_deployment_runs_two_hardened_probed_daemons() {
    let manifests = manifests();
    let deployment: Deployment = find(&manifests, "Deployment", "redis-autopilot").typed();
    let spec = deployment.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2), "a leader and a standby");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("redis-autopilot"));

    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let seccomp = pod_security.seccomp_profile.as_ref().expect("seccomp");
    assert_eq!(seccomp.type_, "RuntimeDefault");

    let container = daemon_container(&deployment);
    let security = container.security_context.as_ref().expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let dropped = security.capabilities.as_ref().and_then(|c| c.drop.clone());
    assert_eq!(dropped, Some(vec!["ALL".to_owned()]));

    let probe_path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        let get = probe.and_then(|p| p.http_get.as_ref()).expect("an httpGet probe");
        get.path.clone().expect("a path")
    };
    assert_eq!(probe_path(container.liveness_probe.as_ref()), "/healthz");
    assert_eq!(probe_path(container.readiness_probe.as_ref()), "/readyz");

    let resources = container.resources.as_ref().expect("resources");
    for (what, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let list = list.as_ref().unwrap_or_else(|| panic!("no {what}"));
        assert!(list.contains_key("cpu") && list.contains_key("memory"), "{what}: {list:?}");
    }

    // Leader identity from the downward API.
    let env: BTreeMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let field = e.value_from.as_ref()?.field_ref.as_ref()?;
            Some((e.name.clone(), field.field_path.clone()))
        })
        .collect();
    assert_eq!(env.get("POD_NAME").map(String::as_str), Some("metadata.name"));
    assert_eq!(env.get("POD_NAMESPACE").map(String::as_str), Some("metadata.namespace"));
    // The advertised URL and the one-shot master's address.
    assert_eq!(env.get("POD_IP").map(String::as_str), Some("status.podIP"));
    // Each variable once: the API server warns of a duplicate, and a client-side apply that
    // merges the list by name can drop both.
    let names: Vec<&str> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), distinct.len(), "a variable set twice: {names:?}");
}

/// `--flag=value` arguments of the container, by flag.
fn flags(container: &Container) -> BTreeMap<String, String> {
    container
        .args
        .iter()
        .flatten()
        .filter_map(|arg| arg.split_once('='))
        .map(|(flag, value)| (flag.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_deployment_passes_flags_run_accepts_and_mounts_what_they_name() {
    let manifests = manifests();
    let deployment: Deployment = find(&manifests, "Deployment", "redis-autopilot").typed();
    let container = daemon_container(&deployment);
    let args = container.args.clone().expect("args");
    assert!(args.contains(&"run".to_owned()), "{args:?}");

    let help = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["run", "--help"])
        .output()
        .expect("run redis-autopilot");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    let flags = flags(&container);
    for flag in flags.keys() {
        assert!(help.contains(&format!("{flag} ")), "`run` has no {flag}:\n{help}");
    }

    // Each file or directory a flag names is under a mount of the right volume.
    let mounts: BTreeMap<String, String> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), m.name.clone()))
        .collect();
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod spec");
    let volume = |name: &str| {
        pod.volumes.iter().flatten().find(|v| v.name == name).cloned().expect("mounted volume")
    };
    let policies = &flags["--policies"];
    let policies_volume = volume(&mounts[policies]);
    let config_map = policies_volume.config_map.expect("policies come from a ConfigMap");
    assert_eq!(config_map.name, "redis-autopilot-policies");

    let token = Path::new(&flags["--alerts-token-file"]);
    let token_dir = token.parent().expect("dir").to_str().expect("UTF-8");
    let secret = volume(&mounts[token_dir]).secret.expect("the token comes from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("redis-autopilot-alerts-token"));
    let items = secret.items.expect("items");
    assert_eq!(items[0].path, token.file_name().expect("name").to_string_lossy());

    let listen = &flags["--listen"];
    let port: i32 = listen.rsplit_once(':').expect("host:port").1.parse().expect("port");
    let ports = container.ports.expect("ports");
    assert_eq!((ports[0].name.as_deref(), ports[0].container_port), (Some("http"), port));
}

/// Issue 14: every verb a Role grants is one the code calls (`API_CALLS`, the list the
/// backend's requests are checked against), and every call is granted: no permission the
/// daemon never uses, whatever the comments say.
#[test]
fn the_roles_grant_exactly_the_calls_the_code_makes() {
    use redis_autopilot::cluster::kubernetes::API_CALLS;
    let mut granted = BTreeSet::new();
    for manifest in manifests().iter().filter(|m| m.kind() == "Role") {
        let role: Role = manifest.typed();
        for rule in role.rules.iter().flatten() {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        granted.insert((verb.clone(), group.clone(), resource.clone()));
                    }
                }
            }
        }
    }
    let called: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .map(|call| (call.verb.to_owned(), call.group.to_owned(), call.rbac_resource()))
        .collect();
    let unused: Vec<_> = granted.difference(&called).collect();
    let ungranted: Vec<_> = called.difference(&granted).collect();
    assert!(unused.is_empty(), "granted and never called: {unused:?}");
    assert!(ungranted.is_empty(), "called and not granted: {ungranted:?}");
}

#[test]
fn the_roles_grant_exactly_the_expected_permissions_to_the_daemon() {
    let manifests = manifests();
    let mut granted = BTreeSet::new();
    for manifest in manifests.iter().filter(|m| m.kind() == "Role") {
        let role: Role = manifest.typed();
        let namespace = role.metadata.namespace.clone().expect("namespace");
        for rule in role.rules.iter().flatten() {
            let mut names = rule.resource_names.clone().unwrap_or_default();
            names.sort();
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        granted.insert((
                            namespace.clone(),
                            group.clone(),
                            resource.clone(),
                            names.clone(),
                            verb.clone(),
                        ));
                    }
                }
            }
        }
    }
    let mut expected = BTreeSet::new();
    for rule in EXPECTED_RULES {
        let mut names: Vec<String> = rule.names.iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        for verb in rule.verbs {
            expected.insert((
                rule.namespace.to_owned(),
                rule.group.to_owned(),
                rule.resource.to_owned(),
                names.clone(),
                (*verb).to_owned(),
            ));
        }
    }
    let extra: Vec<_> = granted.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&granted).collect();
    assert!(extra.is_empty() && missing.is_empty(), "extra {extra:?}\nmissing {missing:?}");

    // Each Role is bound, in its own namespace, to the Deployment's ServiceAccount only.
    let roles: BTreeSet<(String, String)> = manifests
        .iter()
        .filter(|m| m.kind() == "Role")
        .map(|m| (m.namespace().expect("ns").to_owned(), m.name().to_owned()))
        .collect();
    let mut bound = BTreeSet::new();
    for manifest in manifests.iter().filter(|m| m.kind() == "RoleBinding") {
        let binding: RoleBinding = manifest.typed();
        assert_eq!(binding.role_ref.kind, "Role", "{}", manifest.at());
        let subjects = binding.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1, "{}", manifest.at());
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].name.as_str(),
                subjects[0].namespace.as_deref()
            ),
            ("ServiceAccount", "redis-autopilot", Some("redis-autopilot")),
            "{}",
            manifest.at()
        );
        bound.insert((manifest.namespace().expect("ns").to_owned(), binding.role_ref.name));
    }
    assert_eq!(bound, roles, "every Role bound, every binding to a Role here");
}

/// The policy files of the policies ConfigMap.
fn example_policies(manifests: &[Manifest]) -> BTreeMap<String, String> {
    let config_map: ConfigMap = find(manifests, "ConfigMap", "redis-autopilot-policies").typed();
    let data = config_map.data.expect("data");
    assert!(!data.is_empty(), "at least one policy");
    data.into_iter().collect()
}

/// Issue 14: the example's write guard and its smallest fleet agree with docs/failover.md.
/// `min-replicas-to-write N` counts replicas, and every failover leaves the new master without
/// the old pod until it restarts and fully resyncs: with only N replicas the master refuses
/// every write meanwhile, and for good if that node is lost. So the policy keeps at least
/// N + 1 replicas, N + 2 instances.
#[test]
fn the_example_write_guard_leaves_a_replica_to_spare() {
    let manifests = manifests();
    let config: ConfigMap = find(&manifests, "ConfigMap", "redis-session-config").typed();
    let conf = config.data.expect("data").remove("redis.conf").expect("redis.conf");
    let guard: u16 = conf
        .lines()
        .find_map(|line| line.trim().strip_prefix("min-replicas-to-write "))
        .map_or(0, |n| n.trim().parse().expect("a count"));
    for (name, text) in example_policies(&manifests) {
        let policy = redis_autopilot::policy::load_policy_str(&name, &text).expect("valid");
        let Some(scaling) = policy.scaling else { continue };
        assert!(
            scaling.min_replicas >= guard + 2,
            "{name}: minReplicas {} with min-replicas-to-write {guard}: every failover leaves the \
             master refusing writes until the old pod resyncs",
            scaling.min_replicas
        );
    }
}

#[test]
fn the_mounted_policies_pass_check() {
    let policies = example_policies(&manifests());
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in &policies {
        assert!(is_yaml(Path::new(name)), "{name}: the daemon reads *.yaml and *.yml only");
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("run redis-autopilot check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let summary = stdout.trim_end();
    assert!(summary.starts_with(&format!("{} ", policies.len())), "{summary}");
    assert!(summary.ends_with(" checked, 0 with problems, 0 problems"), "{summary}");
}

#[test]
fn the_example_policy_targets_the_example_statefulset_through_mounted_files() {
    let manifests = manifests();
    let deployment: Deployment = find(&manifests, "Deployment", "redis-autopilot").typed();
    let mounts: Vec<String> = daemon_container(&deployment)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| format!("{}/", m.mount_path))
        .collect();
    for (name, text) in example_policies(&manifests) {
        let policy: Value = serde_saphyr::from_str(&text).expect("policy YAML");
        let target = &policy["spec"]["target"]["kubernetes"];
        let (namespace, name_of) = (target["namespace"].as_str(), target["statefulSet"].as_str());
        let statefulset = find(&manifests, "StatefulSet", name_of.expect("statefulSet"));
        assert_eq!(statefulset.namespace(), namespace, "{name}");
        let statefulset: StatefulSet = statefulset.typed();
        let pod = statefulset.spec.and_then(|s| s.template.spec).expect("pod spec");
        let redis_port =
            pod.containers[0].ports.iter().flatten().find(|p| p.name.as_deref() == Some("redis"));
        assert_eq!(
            target["port"].as_i64(),
            redis_port.map(|p| i64::from(p.container_port)),
            "{name}"
        );
        // The daemon's Role lives where the policy's StatefulSet does.
        assert!(
            EXPECTED_RULES.iter().any(|r| Some(r.namespace) == namespace
                && r.resource == "statefulsets/scale"
                && r.names.contains(&name_of.expect("name"))),
            "{name}: no scale permission for {namespace:?}/{name_of:?}"
        );
        let password = policy["spec"]["auth"]["passwordFile"].as_str().expect("passwordFile");
        assert!(
            mounts.iter().any(|m| password.starts_with(m.as_str())),
            "{name}: {password} is under none of {mounts:?}"
        );
    }
}

#[test]
fn the_alerts_the_policy_maps_exist_and_are_routed_to_the_webhook() {
    let manifests = manifests();
    let mut alerts = BTreeMap::new();
    for rule in manifests.iter().filter(|m| m.kind() == "PrometheusRule") {
        for group in rule.value["spec"]["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                if let Some(alert) = rule["alert"].as_str() {
                    alerts.insert(alert.to_owned(), rule["labels"]["policy"].clone());
                }
            }
        }
    }
    let route = &find(&manifests, "AlertmanagerConfig", "redis-autopilot").value["spec"]["route"];
    let matcher = &route["matchers"][0];
    assert_eq!((&matcher["name"], &matcher["matchType"]), (&"policy".into(), &"=".into()));
    for (name, text) in example_policies(&manifests) {
        let policy: Value = serde_saphyr::from_str(&text).expect("policy YAML");
        let policy_name = &policy["metadata"]["name"];
        for mapped in policy["spec"]["alerts"].as_array().expect("alerts") {
            let alert = mapped["alertname"].as_str().expect("alertname");
            assert_eq!(alerts.get(alert), Some(policy_name), "{name}: rule for {alert}");
            assert_eq!(&matcher["value"], policy_name, "{name}: {alert} routed");
        }
    }
}

#[test]
fn the_example_redis_boots_every_pod_as_a_replica_and_leaves_scale_to_the_daemon() {
    let manifests = manifests();
    let statefulset: StatefulSet = find(&manifests, "StatefulSet", "redis-session").typed();
    let spec = statefulset.spec.expect("spec");
    assert_eq!(spec.replicas, None, "kubectl apply must not reset the daemon's replica count");
    let annotations = statefulset.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.keys().any(|k| k.starts_with("redis-autopilot.io/")),
        "the master record is the daemon's to write"
    );
    let selector = spec.selector.match_labels.expect("matchLabels");
    assert!(!selector.contains_key("redis-autopilot.io/role"), "roles change on live pods");
    let template_labels = spec.template.metadata.and_then(|m| m.labels).expect("labels");
    assert_eq!(template_labels["redis-autopilot.io/role"], "replica");

    // Services by role, and the boot script's lookup is a headless one by the master label.
    let role_of = |name: &str| {
        let service: Service = find(&manifests, "Service", name).typed();
        let spec = service.spec.expect("spec");
        let service_selector = spec.selector.expect("selector");
        for (key, value) in &selector {
            assert_eq!(service_selector.get(key), Some(value), "{name}: only this StatefulSet");
        }
        (spec.cluster_ip, service_selector.get("redis-autopilot.io/role").cloned())
    };
    assert_eq!(role_of("redis-session-master"), (None, Some("master".into())));
    assert_eq!(role_of("redis-session-replicas"), (None, Some("replica".into())));
    let pod = spec.template.spec.expect("pod spec");
    let redis = pod.containers.iter().find(|c| c.name == "redis").expect("redis container");
    let env =
        |name: &str| redis.env.iter().flatten().find(|e| e.name == name).map(|e| e.value.clone());
    let lookup = env("MASTER_SERVICE").flatten().expect("MASTER_SERVICE");
    assert_eq!(role_of(&lookup), (Some("None".into()), Some("master".into())));
    assert!(pod.containers.iter().any(|c| c.name == "exporter"), "exporter sidecar");
    assert_eq!(pod.automount_service_account_token, Some(false), "no API access for Redis");

    let config: ConfigMap = find(&manifests, "ConfigMap", "redis-session-config").typed();
    let data = config.data.expect("data");
    let conf: BTreeSet<&str> = data["redis.conf"].lines().map(str::trim).collect();
    for directive in [
        "min-replicas-to-write 1",
        "min-replicas-max-lag 10",
        "repl-diskless-sync yes",
        "repl-ping-replica-period 1",
        "replica-read-only yes",
    ] {
        assert!(conf.contains(directive), "redis.conf lacks `{directive}`");
    }
    for script in ["start.sh", "ready.sh", "alive.sh"] {
        assert!(data[script].contains("\nset -eu\n"), "{script}: set -eu");
        let syntax = Command::new("sh").args(["-n", "-c", &data[script]]).status().expect("sh");
        assert!(syntax.success(), "{script}: sh -n");
    }
}

/// Runs the example's start.sh against stand-ins for DNS (`getent`), `redis-cli` and
/// `redis-server`, and returns the `replicaof` line of the config it starts Redis with.
fn boot(ready_masters: &[&str], their_role: &str) -> String {
    let config: ConfigMap = find(&manifests(), "ConfigMap", "redis-session-config").typed();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_str().expect("UTF-8 path");
    let script = config.data.expect("data")["start.sh"]
        .replace("/etc/redis/auth/", &format!("{root}/"))
        .replace("/run/redis/", &format!("{root}/"));
    std::fs::write(dir.path().join("password"), "s3cret\n").expect("password");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let stubs = [
        // getent fails (exit 2) when the name has no address, as it does for a Service
        // without ready endpoints; otherwise one line per address and socket type.
        (
            "getent",
            "[ -n \"$ADDRESSES\" ] || exit 2\nfor a in $ADDRESSES; do echo \"$a STREAM x\"; echo \"$a DGRAM\"; done",
        ),
        ("redis-cli", "echo \"$ROLE\"; echo 0"),
        ("redis-server", "grep '^replicaof ' \"$1\""),
    ];
    for (name, body) in stubs {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("stub");
        let mut permissions = std::fs::metadata(&path).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).expect("chmod");
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").expect("PATH"));
    let output = Command::new("sh")
        .args(["-c", &script])
        .env("PATH", path)
        .env("POD_IP", "10.0.0.5")
        .env("MASTER_SERVICE", "redis-session-master-pods")
        .env("ADDRESSES", ready_masters.join(" "))
        .env("ROLE", their_role)
        .output()
        .expect("run start.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim_end().to_owned()
}

#[test]
fn a_pod_replicates_the_labelled_master_only_when_redis_confirms_it_and_else_nothing() {
    // This pod is 10.0.0.5: "replicaof 10.0.0.5" is a replica of nothing.
    assert_eq!(boot(&["10.0.0.7"], "master"), "replicaof 10.0.0.7 6379");
    assert_eq!(boot(&[], "master"), "replicaof 10.0.0.5 6379", "no master labelled and ready");
    assert_eq!(boot(&["10.0.0.7"], "slave"), "replicaof 10.0.0.5 6379", "label is stale");
    assert_eq!(boot(&["10.0.0.5"], "master"), "replicaof 10.0.0.5 6379", "this pod's old label");
    assert_eq!(boot(&["10.0.0.7", "10.0.0.8"], "master"), "replicaof 10.0.0.5 6379", "ambiguous");
}

/// The Roles (checked above to grant exactly [`EXPECTED_RULES`]) cover every API call the
/// Kubernetes backend makes: a call added to the code without its permission fails here, not
/// with a 403 in someone's cluster.
#[test]
fn the_roles_grant_every_api_call_the_backend_makes() {
    for call in redis_autopilot::cluster::kubernetes::API_CALLS {
        let resource = match call.subresource {
            Some(sub) => format!("{}/{sub}", call.resource),
            None => call.resource.to_owned(),
        };
        let granted = EXPECTED_RULES.iter().any(|r| {
            r.group == call.group && r.resource == resource && r.verbs.contains(&call.verb)
        });
        assert!(granted, "{call:?} is not granted by deploy/base's Roles");
    }
}

/// The final stage of the Dockerfile: its `USER`, `ENTRYPOINT`, and every `COPY` source of
/// the build stage.
struct Dockerfile {
    user: String,
    entrypoint: Vec<String>,
    build_sources: Vec<String>,
    rust_image: String,
}

fn dockerfile() -> Dockerfile {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).expect("read Dockerfile");
    // Comments, the build stage, the final stage.
    let stages: Vec<&str> = text.split("\nFROM ").collect();
    assert_eq!(stages.len(), 3, "a build stage and the final one");
    let build = stages[1];
    let rust_image = build.lines().next().expect("FROM line").to_owned();
    let build_sources = build
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .flat_map(|copy| {
            let words: Vec<&str> = copy.split_whitespace().collect();
            words[..words.len() - 1].iter().map(|w| (*w).to_owned()).collect::<Vec<_>>()
        })
        .collect();
    let last = |keyword: &str| {
        stages[2]
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(keyword))
            .unwrap_or_else(|| panic!("no {keyword}in the final stage"))
            .trim()
            .to_owned()
    };
    let entrypoint = serde_json::from_str(&last("ENTRYPOINT ")).expect("ENTRYPOINT in exec form");
    Dockerfile { user: last("USER "), entrypoint, build_sources, rust_image }
}

/// The image the Deployment runs (no Docker here to build it) agrees with the Deployment:
/// the user its securityContext names, an entrypoint that is the binary (the Deployment
/// passes only args), a toolchain at least `rust-version`, and build inputs that exist and
/// that `.dockerignore` does not drop.
#[test]
fn the_dockerfile_builds_what_the_deployment_runs() {
    let manifests = manifests();
    let deployment: Deployment = find(&manifests, "Deployment", "redis-autopilot").typed();
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod spec");
    let security = pod.security_context.expect("pod securityContext");
    let image = dockerfile();
    let expected_user = format!(
        "{}:{}",
        security.run_as_user.expect("runAsUser"),
        security.run_as_group.expect("runAsGroup")
    );
    assert_eq!(image.user, expected_user);
    assert_eq!(image.entrypoint, ["/usr/local/bin/redis-autopilot"]);
    assert!(
        daemon_container(&find(&manifests, "Deployment", "redis-autopilot").typed())
            .command
            .is_none()
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).expect("read .dockerignore");
    let ignored: BTreeSet<&str> = ignored.lines().map(str::trim).collect();
    for source in &image.build_sources {
        assert!(root.join(source).exists(), "COPY {source}: no such path");
        assert!(!ignored.contains(source.as_str()), "COPY {source}: dropped by .dockerignore");
    }
    // Every target Cargo.toml declares is copied, or cargo refuses the manifest.
    for declared in ["Cargo.toml", "Cargo.lock", "src", "benches"] {
        assert!(image.build_sources.iter().any(|s| s == declared), "{declared} not copied");
    }

    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let minimum = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let version = |text: &str| -> (u32, u32) {
        let mut parts = text.split('.').map(|p| p.parse::<u32>().expect("a number"));
        (parts.next().expect("major"), parts.next().expect("minor"))
    };
    let toolchain = image
        .rust_image
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .expect("a rust:X.Y image");
    assert!(version(toolchain) >= version(minimum), "rust {toolchain} < rust-version {minimum}");
}

/// The example NetworkPolicy selects the daemon's pods, admits only Prometheus, Alertmanager
/// and the daemon's other replicas (alerts forwarded to a policy's leader) and only on the port
/// the Deployment serves, and the Redis pods only on the port a one-shot master listens on
/// while a snapshot is loaded into one (or into the verifier); and lets the daemon reach DNS,
/// the Redis port and the verifier's, its other replicas on the port they serve, and the
/// verifier's pod reach only that port of the daemon's.
#[test]
fn the_network_policy_admits_only_scrapes_and_alerts_on_the_daemons_port() {
    let manifests = manifests();
    let policy: NetworkPolicy = find(&manifests, "NetworkPolicy", "redis-autopilot").typed();
    let deployment: Deployment = find(&manifests, "Deployment", "redis-autopilot").typed();
    let spec = policy.spec.expect("spec");
    let container_ports = deployment_ports(&deployment);
    let pod_labels = deployment.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels);
    assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), pod_labels);
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned(), "Egress".to_owned()]));
    let rules: Vec<(Vec<String>, Vec<String>)> =
        spec.ingress
            .expect("ingress rules")
            .iter()
            .map(|rule| {
                let peers = rule.from.iter().flatten().map(|peer| {
                    let pods = peer.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref());
                    pods.and_then(|l| l.get("app.kubernetes.io/name")).cloned().unwrap_or_default()
                });
                let ports = rule.ports.iter().flatten().filter_map(|p| {
                    p.port.as_ref().map(|p| serde_json::to_string(p).expect("port"))
                });
                (peers.collect(), ports.collect())
            })
            .collect();
    let seed = redis_autopilot::snapshot::SEED_PORT.to_string();
    let expected = [
        (vec!["redis".to_owned(), "redis-autopilot-verifier".to_owned()], vec![seed.clone()]),
        (
            vec!["prometheus".to_owned(), "alertmanager".to_owned(), "redis-autopilot".to_owned()],
            vec!["9187".to_owned()],
        ),
    ];
    assert_eq!(rules, expected);
    assert!(container_ports.contains(&"9187".to_owned()), "{container_ports:?}");
    assert!(container_ports.contains(&seed), "{container_ports:?}");
    let egress_ports: BTreeSet<String> = spec
        .egress
        .iter()
        .flatten()
        .flat_map(|rule| rule.ports.iter().flatten())
        .filter_map(|p| p.port.as_ref().map(|p| serde_json::to_string(p).expect("port")))
        .collect();
    for needed in ["53", "6379", "443"] {
        assert!(egress_ports.contains(needed), "egress to {needed}: {egress_ports:?}");
    }
    // The daemon reaches the verifier's Redis, and the verifier reaches only the daemon's seed.
    let verifier_egress: Vec<(Vec<String>, Vec<String>)> = spec
        .egress
        .iter()
        .flatten()
        .map(|rule| (names(rule.to.iter().flatten().map(|p| &p.pod_selector)), ports(&rule.ports)))
        .filter(|(peers, _)| peers.contains(&"redis-autopilot-verifier".to_owned()))
        .collect();
    assert_eq!(
        verifier_egress,
        [(vec!["redis-autopilot-verifier".to_owned()], vec!["6379".to_owned()])]
    );
    // A standby forwards alerts to the leader of their policy on the port it serves.
    let to_replicas: Vec<Vec<String>> = spec
        .egress
        .iter()
        .flatten()
        .filter(|rule| {
            names(rule.to.iter().flatten().map(|p| &p.pod_selector)) == ["redis-autopilot"]
        })
        .map(|rule| ports(&rule.ports))
        .collect();
    assert_eq!(to_replicas, [vec!["9187".to_owned()]]);
    let verifier: NetworkPolicy =
        find(&manifests, "NetworkPolicy", "redis-autopilot-verifier").typed();
    let spec = verifier.spec.expect("spec");
    let selected = spec.pod_selector.and_then(|s| s.match_labels).unwrap_or_default();
    assert_eq!(
        selected.get("app.kubernetes.io/name").map(String::as_str),
        Some("redis-autopilot-verifier")
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned(), "Egress".to_owned()]));
    let ingress: Vec<_> = spec
        .ingress
        .iter()
        .flatten()
        .map(|rule| {
            (names(rule.from.iter().flatten().map(|p| &p.pod_selector)), ports(&rule.ports))
        })
        .collect();
    assert_eq!(ingress, [(vec!["redis-autopilot".to_owned()], vec!["6379".to_owned()])]);
    let egress: Vec<_> = spec
        .egress
        .iter()
        .flatten()
        .map(|rule| (names(rule.to.iter().flatten().map(|p| &p.pod_selector)), ports(&rule.ports)))
        .collect();
    assert_eq!(egress, [(vec!["redis-autopilot".to_owned()], vec![seed])]);
}

/// The `app.kubernetes.io/name` each peer's pod selector names.
fn names<'a>(
    selectors: impl Iterator<
        Item = &'a Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    >,
) -> Vec<String> {
    selectors
        .map(|s| {
            let labels = s.as_ref().and_then(|s| s.match_labels.as_ref());
            labels.and_then(|l| l.get("app.kubernetes.io/name")).cloned().unwrap_or_default()
        })
        .collect()
}

/// A rule's ports, as text.
fn ports(ports: &Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>) -> Vec<String> {
    ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.as_ref().map(|p| serde_json::to_string(p).expect("port")))
        .collect()
}

/// The daemon container's `containerPort`s.
fn deployment_ports(deployment: &Deployment) -> Vec<String> {
    let spec = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let container =
        spec.containers.iter().find(|c| c.name == "redis-autopilot").expect("container");
    container.ports.iter().flatten().map(|p| p.container_port.to_string()).collect()
}

/// The verifier restore tests of a StatefulSet load into: in the daemon's namespace under the
/// name a policy's `verify.verifier` defaults to (the one the Role's scale rule names), shipped
/// at 0 replicas, one Redis container without persistence on an emptyDir with memory limits,
/// and targeted by no policy.
#[test]
fn the_verifier_is_a_statefulset_at_zero_without_persistence_targeted_by_no_policy() {
    let manifests = manifests();
    let name = redis_autopilot::policy::Verifier::DEFAULT_NAME;
    let manifest = find(&manifests, "StatefulSet", name);
    assert_eq!(manifest.namespace(), Some("redis-autopilot"));
    let set: StatefulSet = manifest.typed();
    let spec = set.spec.expect("spec");
    assert_eq!(spec.replicas, Some(0), "shipped at 0: a restore test scales it");
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    let redis = &pod.containers[0];
    let command = redis.command.clone().unwrap_or_default().join(" ");
    assert!(command.contains("--save ''") && command.contains("--appendonly no"), "{command}");
    let memory =
        redis.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|l| l.get("memory"));
    assert!(memory.is_some(), "a memory limit");
    let volumes = pod.volumes.unwrap_or_default();
    let data = volumes.iter().find(|v| v.name == "data").expect("a data volume");
    assert!(data.empty_dir.is_some(), "an emptyDir, no persistent volume");
    assert!(spec.volume_claim_templates.is_none());
    for (file, text) in example_policies(&manifests) {
        assert!(!text.contains(&format!("statefulSet: {name}")), "{file} targets the verifier");
    }
}

/// The shipped CRD is exactly what the code generates from the policy types, and what
/// `redis-autopilot crd` prints: a field added to the policy cannot be missing from it.
#[test]
fn the_shipped_crd_is_the_one_the_code_generates() {
    let shipped = std::fs::read_to_string(deploy_dir().join("base/crd.yaml")).expect("crd.yaml");
    let generated = redis_autopilot::resource::crd::yaml().expect("the CRD as YAML");
    assert!(
        shipped == generated,
        "deploy/base/crd.yaml is stale: run `cargo run -- crd > deploy/base/crd.yaml`"
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .arg("crd")
        .output()
        .expect("run crd");
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout), generated);
}

/// What the API server demands of a CRD's schema (structural: a type on every node, no
/// references, no `oneOf`/`allOf`, `additionalProperties` never beside `properties`), and the
/// promise that a file and a resource are one language: the properties of every object under
/// `spec` are exactly the fields the policy loader accepts there.
#[test]
fn the_crd_schema_is_structural_and_has_exactly_the_policy_fields() {
    let crd = redis_autopilot::resource::crd::definition();
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema)
        .expect("schema as JSON");
    let mut problems = Vec::new();
    structural(&schema, "", &mut problems);
    let spec = &schema["properties"]["spec"];
    let mut path = vec![redis_autopilot::policy::source_map::Segment::Key("spec".into())];
    same_fields(spec, &mut path, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let columns: Vec<&str> =
        version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Master", "Epoch", "Replicas", "Phase", "Last Snapshot", "Age"]);
}

fn structural(node: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else { return };
    let exempt = ["x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"]
        .iter()
        .any(|flag| object.get(*flag) == Some(&Value::Bool(true)));
    if !object.contains_key("type") && !exempt {
        problems.push(format!("{at}: no type"));
    }
    for forbidden in ["$ref", "oneOf", "allOf", "definitions", "$defs"] {
        if object.contains_key(forbidden) {
            problems.push(format!("{at}: {forbidden}"));
        }
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        problems.push(format!("{at}: additionalProperties beside properties"));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural(child, &format!("{at}.{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        structural(items, &format!("{at}[]"), problems);
    }
}

fn same_fields(
    node: &Value,
    path: &mut Vec<redis_autopilot::policy::source_map::Segment>,
    problems: &mut Vec<String>,
) {
    use redis_autopilot::policy::source_map::Segment;
    if let Some(items) = node.get("items") {
        path.push(Segment::Index(0));
        same_fields(items, path, problems);
        path.pop();
        return;
    }
    let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
    let in_schema: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    match redis_autopilot::policy::spec::fields_at(path) {
        Some(fields) => {
            let in_loader: BTreeSet<&str> = fields.iter().copied().collect();
            if in_schema != in_loader {
                problems.push(format!(
                    "{path:?}: the CRD has {in_schema:?}, the loader accepts {in_loader:?}"
                ));
            }
        }
        None => problems.push(format!("{path:?}: the loader has no field list here")),
    }
    for (name, child) in properties {
        path.push(Segment::Key(name.clone()));
        same_fields(child, path, problems);
        path.pop();
    }
}
