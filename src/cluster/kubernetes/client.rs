//! The Kubernetes client: in-cluster (the daemon's service account) or from a kubeconfig
//! (`--kubeconfig`, `--context`; `plan` from a laptop). Built once, on first use, and shared:
//! a daemon whose policies target no StatefulSet never loads a Kubernetes configuration.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use super::api::KubeError;

/// Where the client configuration comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// A kubeconfig file; `None`: `$KUBECONFIG` or `~/.kube/config`, then the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None`: its current context.
    pub context: Option<String>,
}

/// A lazily built client.
pub struct KubeClient {
    options: ClientOptions,
    client: OnceCell<kube::Client>,
}

impl KubeClient {
    pub fn new(options: ClientOptions) -> Self {
        Self { options, client: OnceCell::new() }
    }

    /// A client for an already built configuration (tests point one at a fake API server).
    pub fn from_config(config: kube::Config) -> Result<Self, KubeError> {
        let client = build(config)?;
        Ok(Self { options: ClientOptions::default(), client: OnceCell::new_with(Some(client)) })
    }

    /// The client, built on first call. A failure is not cached: the next call tries again.
    pub async fn get(&self) -> Result<kube::Client, KubeError> {
        self.client.get_or_try_init(|| connect(&self.options)).await.cloned()
    }
}

async fn connect(options: &ClientOptions) -> Result<kube::Client, KubeError> {
    let config_error = |e: kube::config::KubeconfigError| KubeError::Config(Box::new(e));
    let kube_options =
        KubeConfigOptions { context: options.context.clone(), ..KubeConfigOptions::default() };
    let config = match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(config_error)?;
            kube::Config::from_custom_kubeconfig(file, &kube_options).await.map_err(config_error)?
        }
        (None, Some(_)) => {
            kube::Config::from_kubeconfig(&kube_options).await.map_err(config_error)?
        }
        (None, None) => kube::Config::infer().await.map_err(|e| KubeError::Config(Box::new(e)))?,
    };
    build(config)
}

/// The client, without kube's own retry of 429, 503 and 504 (up to 15 tries over minutes).
/// The daemon retries by design: every round, the pod watch's backoff, the elector's retry
/// period. Retried inside the client, an API server answering 503 would keep the pod watch
/// from reporting itself broken for minutes while the cache served the view from before.
fn build(mut config: kube::Config) -> Result<kube::Client, KubeError> {
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| KubeError::Client(Box::new(e)))
}
