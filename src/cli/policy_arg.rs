//! Which policy a command is about: a file (`--policy FILE`), or a RedisPolicy object by
//! name (`NAME [-n NS]`), read from the API server through the same loader a file goes
//! through. The second is what `kubectl autopilot status session-cache` says.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{KubeArgs, load_policy_or_report};
use crate::cluster::kubernetes::api::{GET_POLICY, bounded};
use crate::cluster::kubernetes::{KubeClient, policies};
use crate::policy::{Policy, load_policy_str_checked};
use crate::resource::object::{PolicyObject, unpositioned};

/// A policy file, or a RedisPolicy's name.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArg {
    /// The policy file.
    #[arg(long, value_name = "FILE", required_unless_present = "name", conflicts_with = "name")]
    policy: Option<PathBuf>,
    /// A RedisPolicy object's name, instead of --policy.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// The RedisPolicy's namespace [default: the kubeconfig context's].
    #[arg(short = 'n', long, value_name = "NS", requires = "name")]
    namespace: Option<String>,
}

/// A policy, and the object it was read from when it was.
pub struct Resolved {
    pub policy: Policy,
    pub object: Option<PolicyObject>,
}

impl PolicyArg {
    /// Loads the policy, or fails with every problem in it.
    pub async fn resolve(&self, kube: &KubeArgs) -> anyhow::Result<Resolved> {
        match (&self.policy, &self.name) {
            (Some(file), _) => Ok(Resolved { policy: load_policy_or_report(file)?, object: None }),
            (None, Some(name)) => {
                let object = fetch(kube, self.namespace.as_deref(), name).await?;
                let key = object.key();
                let policy = load_policy_str_checked(&key, &object.document()).map_err(|d| {
                    let lines: Vec<String> =
                        unpositioned(d).iter().map(ToString::to_string).collect();
                    anyhow::anyhow!("{key} is not a valid policy:\n{}", lines.join("\n"))
                })?;
                Ok(Resolved { policy: policy.policy, object: Some(object) })
            }
            (None, None) => anyhow::bail!("name a policy: --policy FILE, or a RedisPolicy NAME"),
        }
    }
}

/// Reads one RedisPolicy object.
pub async fn fetch(
    kube: &KubeArgs,
    namespace: Option<&str>,
    name: &str,
) -> anyhow::Result<PolicyObject> {
    let client = KubeClient::new(kube.clone().options()).get().await?;
    let namespace = namespace.map_or_else(|| client.default_namespace().to_owned(), str::to_owned);
    let api = policies::api(client, Some(&namespace));
    let what = format!("redispolicy {namespace}/{name}");
    let object = bounded(&GET_POLICY, &what, api.get(name)).await?;
    let value = serde_json::to_value(&object).with_context(|| format!("cannot read {what}"))?;
    PolicyObject::from_json(&value).with_context(|| format!("{what} has no namespace or name"))
}
