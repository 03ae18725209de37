//! One RedisPolicy object as the API server returns it, and the policy text the daemon reads
//! it as. A resource goes through the very loader a file goes through
//! ([`crate::policy::load_policy_str_checked`]): the same validation, the same
//! `field.path: message` problems, the same unknown-field errors. Only what a file could say
//! is passed on (name, namespace, our own annotations, `spec`): the API server's bookkeeping
//! (`managedFields`, `kubectl.kubernetes.io/last-applied-configuration`, which holds the whole
//! object again) is neither policy nor bounded by the policy's size limit.

use serde_json::{Value, json};

use super::status::PolicyStatus;
use super::{GROUP, KIND, VERSION};
use crate::policy::Diagnostic;

/// The prefix of the annotations a policy reads (`redis-autopilot.io/paused`).
const OUR_ANNOTATIONS: &str = "redis-autopilot.io/";

/// A RedisPolicy as read from the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyObject {
    pub namespace: String,
    pub name: String,
    /// `metadata.generation`: bumped by the API server on every change of `spec`.
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    /// `metadata.uid`, for the Events about it.
    pub uid: Option<String>,
    /// Our annotations only.
    annotations: serde_json::Map<String, Value>,
    spec: Value,
    /// What the object's status says now (`None` when it has none, or one we cannot read:
    /// it is rewritten either way).
    pub status: Option<PolicyStatus>,
}

impl PolicyObject {
    /// Reads an object of a list or a watch; `None` for one without a namespace or a name,
    /// which the API server never sends.
    pub fn from_json(object: &Value) -> Option<Self> {
        let metadata = &object["metadata"];
        let annotations = metadata["annotations"]
            .as_object()
            .map(|all| {
                all.iter()
                    .filter(|(key, _)| key.starts_with(OUR_ANNOTATIONS))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            namespace: metadata["namespace"].as_str()?.to_owned(),
            name: metadata["name"].as_str()?.to_owned(),
            generation: metadata["generation"].as_i64(),
            resource_version: metadata["resourceVersion"].as_str().map(str::to_owned),
            uid: metadata["uid"].as_str().map(str::to_owned),
            annotations,
            spec: object.get("spec").cloned().unwrap_or(Value::Null),
            status: object.get("status").and_then(|s| serde_json::from_value(s.clone()).ok()),
        })
    }

    /// Whether its `spec.paused` is true.
    pub fn spec_paused(&self) -> bool {
        self.spec["paused"] == Value::Bool(true)
    }

    /// How diagnostics, logs and the policy set name this object: `redispolicy NS/NAME`.
    pub fn key(&self) -> String {
        key(&self.namespace, &self.name)
    }

    /// The policy text of this object: what a file with the same content would hold. JSON,
    /// which is YAML: exact for every value the API server can hold.
    pub fn document(&self) -> String {
        let mut metadata = json!({"name": self.name, "namespace": self.namespace});
        if !self.annotations.is_empty() {
            metadata["annotations"] = Value::Object(self.annotations.clone());
        }
        let mut document = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": metadata,
        });
        if !self.spec.is_null() {
            document["spec"] = self.spec.clone();
        }
        serde_json::to_string_pretty(&document).unwrap_or_default()
    }
}

/// `redispolicy NS/NAME`: the key of a resource, in the policy set and in diagnostics.
pub fn key(namespace: &str, name: &str) -> String {
    format!("redispolicy {namespace}/{name}")
}

/// A resource's problems have no line to point at (the text is ours, not the author's):
/// each says its field path only, `redispolicy NS/NAME: spec.scaling.maxReplicas: ...`.
pub fn unpositioned(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    for diagnostic in &mut diagnostics {
        diagnostic.line = 0;
        diagnostic.column = 0;
    }
    diagnostics
}

/// The problems as `status.conditions` says them: `field.path: message`, one per line.
pub fn problems_text(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{}: {}", d.path, d.message)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_policy_str_checked;

    fn object(spec: Value) -> Value {
        json!({
            "apiVersion": "autopilot.redis.io/v1alpha1", "kind": "RedisPolicy",
            "metadata": {"name": "cache", "namespace": "prod", "generation": 3,
                         "resourceVersion": "41", "uid": "u-1",
                         "annotations": {
                             "redis-autopilot.io/paused": "true",
                             "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": 1}"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": spec,
            "status": {"phase": "Healthy", "epoch": 2},
        })
    }

    #[test]
    fn a_resource_reads_as_the_policy_a_file_with_its_content_would_be() {
        let spec = json!({"target": {"endpoints": ["10.0.0.1:6379"]},
                          "scaling": {"minReplicas": 1, "maxReplicas": 3,
                                      "metrics": [{"redis": "instantaneous_ops_per_sec", "target": 1000}]}});
        let object = PolicyObject::from_json(&object(spec)).expect("an object");
        assert_eq!(object.key(), "redispolicy prod/cache");
        assert_eq!(object.generation, Some(3));
        assert_eq!(object.status.as_ref().and_then(|s| s.epoch), Some(2));
        let text = object.document();
        assert!(!text.contains("last-applied") && !text.contains("managedFields"), "{text}");
        let loaded = load_policy_str_checked(&object.key(), &text).expect("valid");
        assert_eq!(loaded.policy.name, "cache");
        assert!(loaded.policy.paused, "our annotation is passed on");
        assert_eq!(loaded.policy.scaling.unwrap().max_replicas, 3);
    }

    #[test]
    fn a_resource_problem_names_its_field_and_no_line() {
        let spec = json!({"target": {"endpoints": ["10.0.0.1:6379"]},
                          "scaling": {"minReplicas": 1, "maxReplicas": 0, "stabilisation": "1m",
                                      "metrics": [{"redis": "instantaneous_ops_per_sec", "target": 1000}]}});
        let object = PolicyObject::from_json(&object(spec)).expect("an object");
        let problems = load_policy_str_checked(&object.key(), &object.document()).unwrap_err();
        let problems = unpositioned(problems);
        let text = problems_text(&problems);
        assert!(text.contains("spec.scaling.maxReplicas: "), "{text}");
        assert!(text.contains("spec.scaling.stabilisation: "), "an unknown field is named: {text}");
        let line = problems[0].to_string();
        assert!(line.starts_with("redispolicy prod/cache: spec."), "{line}");
    }
}
