//! The seam between scenarios and the places they run.
//!
//! Two levels, kept apart:
//! - [`Platform`] is what a controller acts on: create and scale a revision's pods, point the
//!   Services at revisions, set the canary weight and header/cookie routes, read pod state. These
//!   are the verbs the real controllers apply to ReplicaSets and Ingress annotations. Only the
//!   local backend has a `Platform`; on kind/kube the real controller owns those objects.
//! - `Cluster` (added with the scenario runner) is what a scenario sees; the local backend's
//!   `Cluster` is its `Platform` plus the emulated controller.

pub mod kind;
pub mod kube;
pub mod local;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A pod template hash: names a revision (a ReplicaSet), as `rollouts-pod-template-hash` does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RevisionHash(pub String);

impl fmt::Display for RevisionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a revision's pods run. The container is always the sample-app binary (no container
/// runtime exists locally); everything else the pod template says that matters is carried here.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    /// The workload's name: pods are named `<workload>-<hash>-<suffix>`.
    pub workload: String,
    pub container: String,
    /// Environment for the container, in order; `APP_VERSION` and the `FAULT_*` variables
    /// select the version and the faults.
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Pod labels; they become Prometheus target labels, as Kubernetes service discovery gives.
    pub labels: BTreeMap<String, String>,
    /// `resources.limits.memory`, in bytes.
    pub memory_limit: Option<u64>,
    pub readiness: Probe,
    /// `minReadySeconds`: a ready pod counts as available only after this long.
    pub min_ready: Duration,
}

/// An HTTP readiness probe, with Kubernetes' meaning for each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub path: String,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for Probe {
    /// The sample app's `/readyz`, probed every second. Kubernetes defaults to 10 s; locally a
    /// shorter period keeps readiness close to the app's real state (see docs/fidelity.md).
    fn default() -> Self {
        Probe {
            path: "/readyz".into(),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

/// Where each Service points: the stable Service at one revision, the canary Service at another
/// (or the same one, as after a promotion or an abort).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    pub stable: RevisionHash,
    pub canary: Option<RevisionHash>,
}

/// ingress-nginx's canary annotations, as the controller sets them on the canary Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CanaryRoute {
    /// `canary-weight`, out of `weight_total`.
    pub weight: u32,
    /// `canary-weight-total` (default 100).
    pub weight_total: u32,
    /// `canary-by-header`: requests with this header set to `always` go to the canary, `never`
    /// to the stable; any other value falls through to the cookie and then the weight.
    pub by_header: Option<String>,
    /// `canary-by-header-value`: with it, only that exact value routes to the canary.
    pub by_header_value: Option<String>,
    /// `canary-by-cookie`: the cookie's value `always` / `never`, as for the header.
    pub by_cookie: Option<String>,
}

impl CanaryRoute {
    pub fn weight(weight: u32) -> Self {
        CanaryRoute {
            weight,
            weight_total: 100,
            ..Default::default()
        }
    }

    /// The share of unpinned traffic the canary gets, in percent.
    pub fn percent(&self) -> f64 {
        if self.weight_total == 0 {
            0.0
        } else {
            (self.weight as f64 * 100.0 / self.weight_total as f64).clamp(0.0, 100.0)
        }
    }
}

/// Why a container last stopped, with Kubernetes' reason strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason")]
pub enum Termination {
    OOMKilled,
    Error { exit_code: i32 },
    Completed,
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::OOMKilled => f.write_str("OOMKilled"),
            Termination::Error { exit_code } => write!(f, "Error (exit code {exit_code})"),
            Termination::Completed => f.write_str("Completed"),
        }
    }
}

/// One pod as `kubectl get pod -o yaml` would summarize it.
#[derive(Debug, Clone, Serialize)]
pub struct PodStatus {
    pub name: String,
    pub revision: RevisionHash,
    /// The loopback port the container listens on, while it runs.
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub running: bool,
    pub ready: bool,
    /// Ready for at least the template's `minReadySeconds`.
    pub available: bool,
    pub restarts: u32,
    pub last_termination: Option<Termination>,
    /// Waiting to be restarted (`CrashLoopBackOff`).
    pub backing_off: bool,
}

/// A revision's replica counts, as a ReplicaSet's status gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaCounts {
    pub desired: u32,
    pub current: u32,
    pub ready: u32,
    pub available: u32,
}

/// Failures of the stack itself: not the release's fault, exit code 3.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error(
        "{what} is not installed: `{binary}` was not found; install the Debian package `{package}` (apt-get install -y {package})"
    )]
    MissingBinary {
        what: &'static str,
        binary: String,
        package: &'static str,
    },
    #[error(
        "the sample app binary was not found (looked in {looked}); build it with `cargo build -p sample-app` or set GAUNTLET_SAMPLE_APP"
    )]
    MissingSampleApp { looked: String },
    #[error("{what} did not start: {reason}")]
    StartFailed { what: String, reason: String },
    #[error("{what} was not ready within {within:?}: {detail}")]
    NotReady {
        what: String,
        within: Duration,
        detail: String,
    },
    #[error("{what} died: {detail}")]
    Died { what: String, detail: String },
    #[error("unknown revision {0}")]
    UnknownRevision(RevisionHash),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl InfraError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InfraError {
        let context = context.into();
        move |source| InfraError::Io { context, source }
    }
}

/// What a controller acts on; see the module doc.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// Creates a revision with no pods; scaling it starts them.
    async fn create_revision(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError>;
    /// Sets a revision's desired replica count; pods start or stop towards it in the background.
    async fn scale(&mut self, hash: &RevisionHash, replicas: u32) -> Result<(), InfraError>;
    /// Points the stable and canary Services at revisions; the router follows their ready pods.
    async fn set_services(&mut self, services: Services) -> Result<(), InfraError>;
    /// Sets the canary Ingress annotations; returns once the router serves them.
    async fn set_canary_route(&mut self, route: CanaryRoute) -> Result<(), InfraError>;
    fn replica_counts(&self, hash: &RevisionHash) -> ReplicaCounts;
    fn pods(&self) -> Vec<PodStatus>;
}
