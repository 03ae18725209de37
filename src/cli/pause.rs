//! `redis-autopilot pause NAME` and `resume NAME`: stop (or let again) the daemon acting on
//! one RedisPolicy, through the `redis-autopilot.io/paused` annotation. The daemon sees the
//! change through its watch, goes on sampling and deciding, and says `Paused` in the status.
//! An annotation, not `spec.paused`: a GitOps tool that owns the spec does not undo it, and
//! the object's generation (the spec's version) stays as it is.

use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::policy_arg::fetch;
use super::{KubeArgs, emit};
use crate::cluster::kubernetes::KubeClient;
use crate::cluster::kubernetes::api::{PATCH_POLICY, bounded};
use crate::cluster::kubernetes::policies;
use crate::policy::validate::PAUSED_ANNOTATION;

/// Pauses (or resumes) one RedisPolicy object.
///
/// Example: kubectl autopilot pause session-cache -n cache
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The RedisPolicy object's name.
    #[arg(value_name = "NAME")]
    name: String,
    /// Its namespace [default: the kubeconfig context's].
    #[arg(short = 'n', long, value_name = "NS")]
    namespace: Option<String>,
    #[command(flatten)]
    kube: KubeArgs,
}

pub fn run(args: Args, paused: bool) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let object = runtime.block_on(fetch(&args.kube, args.namespace.as_deref(), &args.name))?;
    let value = if paused { json!("true") } else { serde_json::Value::Null };
    let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
    let key = object.key();
    runtime.block_on(async {
        let client = KubeClient::new(args.kube.clone().options()).get().await?;
        let api = policies::api(client, Some(&object.namespace));
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        bounded(&PATCH_POLICY, &key, api.patch(&object.name, &params, &patch)).await.map(drop)
    })?;
    let verb = if paused {
        "paused: the daemon samples and decides, and acts on nothing"
    } else {
        "resumed"
    };
    emit(format!("{key} {verb}"))?;
    if !paused && object.spec_paused() {
        emit("note: its spec.paused is still true, which keeps it paused")?;
    }
    Ok(ExitCode::SUCCESS)
}
