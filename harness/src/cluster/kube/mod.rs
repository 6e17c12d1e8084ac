//! The `kube` backend: a scenario on a real cluster (an existing one from kubeconfig, or the
//! kind cluster of `gauntlet up --backend kind`), with the real Argo Rollouts or Flagger
//! deciding.
//!
//! One [`KubeCluster`] per scenario: its own namespace; the target's manifests applied
//! server-side ([`render`] moves them into the namespace); the baseline waited for; a release is
//! a server-side apply of the workload with the release's pod template; the Rollout or Canary,
//! its AnalysisRuns, the Events and the Ingresses are **watched** ([`watch`]) and translated
//! into timeline events and the verdict ([`observe`]); promote / abort / retry are the plugin's
//! status patches ([`actions`]); Flagger's gates are the loadtester's endpoints, reached through
//! the API server's service proxy ([`gates`]).
//!
//! What is verified without a cluster (`tests/kube_api.rs`): every request body and URL against
//! a mocked API server, the translation of recorded objects, a watch that drops and resumes;
//! and (`tests/cluster_runner.rs`) whole scenario runs against that fake with a scripted
//! controller and a fake ingress.
//! What needs a real cluster: that Argo Rollouts v1.9.1 / Flagger v1.44.0 actually write the
//! recorded shapes for our fixtures, timings, and the port-forwards.

pub mod actions;
pub mod gates;
pub mod leftovers;
pub mod observe;
pub mod portforward;
pub mod preflight;
pub mod render;
pub mod resources;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use self::actions::Action;
use self::actions::{PatchTarget, argo_patches, flagger_retry_patch};
pub use self::gates::{Gate, GateCall};
pub use self::observe::{Judgement, Observed, Observer};
pub use self::render::{Prepared, Release, RenderOptions};
use self::resources::Resolver;
pub use self::watch::ClusterStatus;
use self::watch::Shared;
use crate::cluster::InfraError;
use crate::controller::Decision;
use crate::spec::{ControllerKind, Manifests};
use crate::timeline::{Source, Timeline};

/// Connects to the cluster of a kubeconfig context (the current one when `None`; in a pod, the
/// in-cluster config).
///
/// # Errors
/// No kubeconfig, no such context, or an unusable one (exit 3).
pub async fn connect(context: Option<&str>) -> Result<Client, InfraError> {
    let config = match context {
        Some(c) => {
            let opts = KubeConfigOptions {
                context: Some(c.to_string()),
                ..Default::default()
            };
            Config::from_kubeconfig(&opts).await.map_err(|e| {
                let known = Kubeconfig::read()
                    .map(|k| {
                        k.contexts
                            .iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                InfraError::Other(format!(
                    "kubeconfig context `{c}` is not usable: {e} (contexts: {known})"
                ))
            })?
        }
        None => Config::infer().await.map_err(|e| {
            InfraError::Other(format!(
                "no Kubernetes cluster configured: {e}; pass --context or set KUBECONFIG"
            ))
        })?,
    };
    Client::try_from(config).map_err(|e| InfraError::Other(format!("Kubernetes client: {e}")))
}

/// See [`KubeCluster::reaction_time`].
const ARGO_REACTION: Duration = Duration::from_secs(5);
/// Flagger's default `analysis.interval`.
const FLAGGER_DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Beyond Flagger's interval: its webhooks' time and the watch.
const FLAGGER_REACTION_MARGIN: Duration = Duration::from_secs(10);
/// How long an action waits for the watch to show the object it patched.
const SEEN_WITHIN: Duration = Duration::from_secs(10);

/// How a scenario is placed on the cluster.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The scenario's name (annotated on its namespace).
    pub scenario: String,
    /// See [`render::scenario_namespace`].
    pub namespace: String,
    /// The host of the scenario's Ingress rules; `None` leaves host-less rules as written.
    pub ingress_host: Option<String>,
    /// Replaces the workload's image (see [`RenderOptions::image`]).
    pub image: Option<String>,
    /// Leave the namespace in place on teardown (to look at it afterwards).
    pub keep_namespace: bool,
}

impl KubeOptions {
    /// A fresh namespace for `scenario` with its own ingress host.
    pub fn for_scenario(scenario: &str, salt: u64) -> KubeOptions {
        let namespace = render::scenario_namespace(scenario, salt);
        KubeOptions {
            scenario: scenario.to_string(),
            ingress_host: Some(render::ingress_host(&namespace)),
            namespace,
            image: None,
            keep_namespace: false,
        }
    }
}

/// One scenario on a cluster.
pub struct KubeCluster {
    client: Client,
    resolver: Resolver,
    opts: KubeOptions,
    prepared: Prepared,
    timeline: Timeline,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    started: SystemTime,
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl KubeCluster {
    /// Prepares the target for the cluster; nothing is sent yet.
    ///
    /// # Errors
    /// A target the backend cannot run (see [`render::prepare`]); that is bad input (exit 2).
    pub fn new(
        client: Client,
        manifests: &Manifests,
        opts: KubeOptions,
        timeline: Timeline,
    ) -> Result<KubeCluster, String> {
        let prepared = render::prepare(
            manifests,
            &RenderOptions {
                namespace: opts.namespace.clone(),
                ingress_host: opts.ingress_host.clone(),
                image: opts.image.clone(),
            },
        )?;
        let observer = Observer::new(
            prepared.workload.controller,
            prepared.workload.watched.name.clone(),
        );
        Ok(KubeCluster {
            resolver: Resolver::new(client.clone()),
            client,
            opts,
            prepared,
            timeline,
            shared: Shared::new(observer),
            task: None,
            started: SystemTime::now(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.opts.namespace
    }

    /// The `Host:` the load must send through the ingress, when rules were given one.
    pub fn ingress_host(&self) -> Option<&str> {
        self.opts.ingress_host.as_deref()
    }

    pub fn controller(&self) -> ControllerKind {
        self.prepared.workload.controller
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// What the watch knows now.
    pub fn status(&self) -> ClusterStatus {
        self.shared.status.borrow().clone()
    }

    /// Every change of [`KubeCluster::status`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<ClusterStatus> {
        self.shared.status.subscribe()
    }

    /// Creates the namespace, starts the watches, applies the target with `baseline_env` on
    /// its pod template, and waits (at most `within`) until the controller reports the
    /// baseline in place.
    ///
    /// # Errors
    /// Any request the API server refuses, or a baseline not ready in time (exit 3).
    pub async fn provision(
        &mut self,
        baseline_env: &[(String, String)],
        within: Duration,
    ) -> Result<(), InfraError> {
        let ns = render::namespace_manifest(&self.opts.namespace, &self.opts.scenario);
        self.resolver.apply(&ns).await?;
        self.timeline.emit(
            Source::Harness,
            "namespace",
            format!("namespace {} applied", self.opts.namespace),
            serde_json::json!({"namespace": self.opts.namespace}),
        );
        self.start_watch();
        for o in self.prepared.baseline(baseline_env) {
            self.resolver.apply(&o).await?;
        }
        self.timeline.emit(
            Source::Harness,
            "applied",
            format!(
                "{} object(s) of the target applied server-side",
                self.prepared.objects.len()
            ),
            Value::Null,
        );
        let mut rx = self.subscribe();
        let ready = tokio::time::timeout(within, rx.wait_for(|s| s.baseline_ready)).await;
        match ready {
            Ok(Ok(_)) => Ok(()),
            _ => Err(InfraError::NotReady {
                what: format!(
                    "the baseline of {} {}",
                    self.prepared.workload.watched.kind, self.prepared.workload.watched.name
                ),
                within,
                detail: self.status().line,
            }),
        }
    }

    fn start_watch(&mut self) {
        if self.task.is_none() {
            self.task = Some(tokio::spawn(watch::run(
                self.client.clone(),
                self.opts.namespace.clone(),
                self.prepared.workload.clone(),
                self.shared.clone(),
                self.timeline.clone(),
            )));
        }
    }

    /// Releases: applies the workload with `env` on its pod template (server-side, field
    /// manager `gauntlet`). Verdicts count from the generation the server answers with.
    ///
    /// # Errors
    /// The API server refused the apply (exit 3).
    pub async fn release(&mut self, env: &[(String, String)]) -> Result<(), InfraError> {
        self.start_watch();
        let flagger = self.controller() == ControllerKind::Flagger;
        if flagger {
            // Flagger's verdict counts once the Canary's lastAppliedSpec differs from the one
            // before the release: taken before the patch is sent, so that a controller (and a
            // watch) quicker than the patch's answer is not missed.
            self.shared.update(|o| o.arm(None));
        }
        let generation = match self.prepared.release(env) {
            Release::Apply(body) => {
                let answer = self
                    .resolver
                    .apply(&body)
                    .await
                    .map_err(|e| InfraError::Other(format!("release: {e}")))?;
                answer
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
            }
            Release::Strategic(body) => {
                let o = self.prepared.workload.template_owner.clone();
                let api = self
                    .resolver
                    .api_for(&o.api_version, &o.kind, Some(&self.opts.namespace))
                    .await?;
                let params = PatchParams {
                    field_manager: Some(render::FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                api.patch(&o.name, &params, &Patch::Strategic(body))
                    .await
                    .map_err(|e| {
                        InfraError::Other(format!("release: patching {} {}: {e}", o.kind, o.name))
                    })?
                    .metadata
                    .generation
            }
        };
        if !flagger {
            self.shared.update(|o| o.arm(generation));
        }
        self.timeline.emit(
            Source::Harness,
            "released",
            format!(
                "{} {} applied with the release's pod template",
                self.prepared.workload.template_owner.kind,
                self.prepared.workload.template_owner.name
            ),
            serde_json::json!({"generation": generation}),
        );
        Ok(())
    }

    /// Waits (at most `within`) for the controller's verdict on the release.
    ///
    /// # Errors
    /// The controller refused the object (Argo `InvalidSpec`), or the watch ended.
    pub async fn wait_decision(&self, within: Duration) -> Result<Option<Decision>, InfraError> {
        self.wait_decision_where(within, |_| true).await
    }

    /// Waits (at most `within`) for a verdict on the release that `accept` takes (e.g. not
    /// [`Decision::Paused`] while the scenario still acts on the rollout). `None` when none came.
    ///
    /// # Errors
    /// The controller refused the object (Argo `InvalidSpec`), or the watch ended.
    pub async fn wait_decision_where(
        &self,
        within: Duration,
        accept: impl Fn(Decision) -> bool,
    ) -> Result<Option<Decision>, InfraError> {
        let mut rx = self.subscribe();
        let reached = tokio::time::timeout(
            within,
            rx.wait_for(|s| {
                s.armed
                    && match &s.judgement {
                        Judgement::Pending => false,
                        Judgement::Decided(d) => accept(*d),
                        Judgement::Invalid(_) => true,
                    }
            }),
        )
        .await;
        match reached {
            Err(_) => Ok(None),
            Ok(Err(_)) => Err(InfraError::Other("the watch of the cluster ended".into())),
            Ok(Ok(s)) => match &s.judgement {
                Judgement::Decided(d) => Ok(Some(*d)),
                Judgement::Invalid(m) => Err(InfraError::Other(format!(
                    "the controller refused {}: {m}",
                    self.prepared.workload.watched.name
                ))),
                Judgement::Pending => Ok(None),
            },
        }
    }

    /// How long after an action the controller may still show the state from before it: a
    /// verdict of [`Decision::Paused`] counts only after this. Argo reconciles a patched
    /// Rollout at once (a few seconds of margin); Flagger reads its gates at the next tick of
    /// the Canary's `analysis.interval`.
    pub fn reaction_time(&self) -> Duration {
        match self.controller() {
            ControllerKind::Argo => ARGO_REACTION,
            ControllerKind::Flagger => {
                let interval = self
                    .canary()
                    .and_then(|c| c.pointer("/spec/analysis/interval"))
                    .and_then(Value::as_str)
                    .and_then(|i| humantime::parse_duration(i).ok())
                    .unwrap_or(FLAGGER_DEFAULT_INTERVAL);
                interval + FLAGGER_REACTION_MARGIN
            }
        }
    }

    /// The Canary as prepared for the cluster (Flagger targets).
    fn canary(&self) -> Option<&Value> {
        let w = &self.prepared.workload.watched;
        (w.kind == "Canary").then_some(())?;
        self.prepared.objects.iter().find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("Canary")
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(w.name.as_str())
        })
    }

    /// The request that works `gate` (see [`gates::gate_call`]); nothing is sent.
    ///
    /// # Errors
    /// Not a Flagger target, or its Canary has no webhook for this gate (bad input).
    pub fn gate_call(&self, gate: Gate) -> Result<GateCall, String> {
        let Some(canary) = self.canary() else {
            return Err(format!(
                "`{gate}` works a Flagger loadtester gate; {} {} has none (Argo Rollouts is \
                 operated with promote / abort / retry)",
                self.prepared.workload.watched.kind, self.prepared.workload.watched.name
            ));
        };
        gates::gate_call(canary, &self.opts.namespace, gate)
    }

    /// Opens or closes one of the loadtester's gates for this Canary: `POST` through the API
    /// server's service proxy to the Service of the Canary's own webhook. Flagger reads it at
    /// its next tick (see [`KubeCluster::reaction_time`]).
    ///
    /// # Errors
    /// No such webhook (see [`KubeCluster::gate_call`]), or the API server or the loadtester
    /// refused the request (no such Service, no endpoints, an error status).
    pub async fn gate(&mut self, gate: Gate) -> Result<GateCall, InfraError> {
        let call = self.gate_call(gate).map_err(InfraError::Other)?;
        let request = axum::http::Request::builder()
            .method(axum::http::Method::POST)
            .uri(&call.path)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(call.body.to_string().into_bytes())
            .map_err(|e| InfraError::Other(format!("{gate}: {e}")))?;
        let answer = self.client.request_text(request).await.map_err(|e| {
            InfraError::Other(format!(
                "{gate}: POST {} to Service {}/{} port {} (webhook `{}`): {e}",
                gate.path(),
                call.service.namespace,
                call.service.name,
                call.service.port,
                call.hook
            ))
        })?;
        self.timeline.emit(
            Source::Harness,
            "gate",
            format!(
                "{gate}: {} on {}/{}:{} answered {:?}",
                gate.path(),
                call.service.namespace,
                call.service.name,
                call.service.port,
                answer.trim()
            ),
            serde_json::json!({"gate": gate.to_string(), "path": call.path, "body": call.body,
                               "webhook": call.hook}),
        );
        Ok(call)
    }

    /// Promote / abort / retry, with the plugin's patches (Argo: merge patches on the Rollout's
    /// `status` subresource, falling back to the main resource on 404).
    ///
    /// # Errors
    /// The patch was refused, or the action has no API for this controller (Flagger's promote
    /// and abort are webhook gates).
    pub async fn act(&mut self, action: Action) -> Result<(), InfraError> {
        let w = self.prepared.workload.clone();
        let ns = self.opts.namespace.clone();
        let sent;
        match w.controller {
            ControllerKind::Argo => {
                let api = self
                    .resolver
                    .api_for(&w.watched.api_version, &w.watched.kind, Some(&ns))
                    .await?;
                let current = api.get(&w.watched.name).await.map_err(|e| {
                    InfraError::Other(format!("{action}: reading the Rollout: {e}"))
                })?;
                let current =
                    serde_json::to_value(current).map_err(|e| InfraError::Other(e.to_string()))?;
                let mut answered = None;
                let patches = argo_patches(&current, action);
                sent = format!(
                    "{} merge patch(es) on Rollout {}",
                    patches.len(),
                    w.watched.name
                );
                for p in patches {
                    answered = send_merge(&api, &w.watched.name, p.target, &p.body)
                        .await
                        .map_err(|e| InfraError::Other(format!("{action}: {e}")))?;
                }
                // Until the watch has the patched Rollout, it still shows the state the action
                // changes (e.g. a pause): no verdict may be read from that. (Without a watch
                // running, as before `provision`, there is nothing to wait for.)
                if let Some(rv) = answered
                    && self.task.is_some()
                    && !self.wait_seen(&rv, SEEN_WITHIN).await
                {
                    tracing::warn!(
                        "{action}: the watch has not shown the patched Rollout (resourceVersion \
                         {rv}) within {SEEN_WITHIN:?}"
                    );
                }
            }
            ControllerKind::Flagger => {
                if action != Action::Retry {
                    return Err(InfraError::Other(format!(
                        "Flagger has no `{action}` API: its gates are webhooks \
                         (confirm-promotion, rollback); open them instead"
                    )));
                }
                let o = &w.template_owner;
                let api = self
                    .resolver
                    .api_for(&o.api_version, &o.kind, Some(&ns))
                    .await?;
                let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                let body = flagger_retry_patch(&stamp);
                api.patch(&o.name, &PatchParams::default(), &Patch::Strategic(body))
                    .await
                    .map_err(|e| InfraError::Other(format!("retry: {e}")))?;
                sent = format!("a strategic merge patch on {} {}", o.kind, o.name);
            }
        }
        // The scenario's `action` event is the runner's; this one says what went out.
        self.timeline.emit(
            Source::Harness,
            "patched",
            format!("{action}: {sent}"),
            serde_json::json!({"action": action.to_string()}),
        );
        Ok(())
    }

    /// Waits (at most `within`) until the watch has delivered the Rollout or Canary at
    /// resourceVersion `rv` or later; false when it has not.
    async fn wait_seen(&self, rv: &str, within: Duration) -> bool {
        let mut rx = self.subscribe();
        let seen = || {
            let o = self
                .shared
                .observer
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            o.target()
                .and_then(|t| t.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .is_some_and(|have| seen_version(have, rv))
        };
        let waited = tokio::time::timeout(within, async {
            loop {
                // Marked seen before looking, so a change after the look wakes the wait. The
                // observer is not locked while the channel is borrowed (the watch task locks
                // them the other way round).
                rx.borrow_and_update();
                if seen() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return seen();
                }
            }
        })
        .await;
        waited.unwrap_or(false)
    }

    /// Writes what there is to read after a run into `dir`: the namespace's objects and Events
    /// as YAML, every pod's log, the controller's log since the scenario started. Returns each
    /// file written, or why it could not be.
    pub async fn collect_artifacts(&mut self, dir: &Path) -> Vec<(PathBuf, Result<(), String>)> {
        let mut out = Vec::new();
        let ns = self.opts.namespace.clone();
        let _ = tokio::fs::create_dir_all(dir.join("logs")).await;
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        let mut kinds = vec![
            (
                self.prepared.workload.watched.api_version.clone(),
                self.prepared.workload.watched.kind.clone(),
            ),
            ("apps/v1".into(), "Deployment".into()),
            ("apps/v1".into(), "ReplicaSet".into()),
            ("v1".into(), "Pod".into()),
            ("v1".into(), "Service".into()),
            ("networking.k8s.io/v1".into(), "Ingress".into()),
        ];
        if self.controller() == ControllerKind::Argo {
            kinds.insert(1, ("argoproj.io/v1alpha1".into(), "AnalysisRun".into()));
        }
        for (v, k) in kinds {
            match self.resolver.api_for(&v, &k, Some(&ns)).await {
                Ok(api) => match api.list(&ListParams::default()).await {
                    Ok(list) => objects.extend(
                        list.items
                            .into_iter()
                            .filter_map(|o| serde_json::to_value(o).ok()),
                    ),
                    Err(e) => errors.push(format!("{k}: {e}")),
                },
                Err(e) => errors.push(format!("{k}: {e}")),
            }
        }
        out.push(write_yaml(&dir.join("objects.yaml"), &objects, &errors).await);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let listed = events
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|e| serde_json::to_value(e).ok())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
        out.push(match listed {
            Ok(ev) => write_yaml(&dir.join("events.yaml"), &ev, &[]).await,
            Err(e) => (dir.join("events.yaml"), Err(e)),
        });
        let since = self
            .started
            .elapsed()
            .map_or(3600, |d| d.as_secs() as i64 + 5);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                out.push(
                    write_log(&pods, &name, None, &dir.join(format!("logs/{name}.log"))).await,
                );
            }
        }
        let (cns, selector) = match self.controller() {
            ControllerKind::Argo => ("argo-rollouts", "app.kubernetes.io/name=argo-rollouts"),
            ControllerKind::Flagger => ("flagger-system", "app=flagger"),
        };
        let cpods: Api<Pod> = Api::namespaced(self.client.clone(), cns);
        match cpods.list(&ListParams::default().labels(selector)).await {
            Ok(list) => {
                for p in list.items {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    out.push(
                        write_log(
                            &cpods,
                            &name,
                            Some(since),
                            &dir.join(format!("controller-{name}.log")),
                        )
                        .await,
                    );
                }
            }
            Err(e) => out.push((dir.join("controller.log"), Err(e.to_string()))),
        }
        out
    }

    /// Stops the watches and deletes the namespace (unless `keep_namespace`); does not wait for
    /// the namespace to be gone.
    ///
    /// # Errors
    /// The delete was refused.
    pub async fn teardown(mut self) -> Result<(), InfraError> {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if self.opts.keep_namespace {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .delete(&self.opts.namespace, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(InfraError::Other(format!(
                "deleting namespace {}: {e}",
                self.opts.namespace
            ))),
        }
    }
}

/// A JSON merge patch on the status subresource, or on the main resource when the CRD has no
/// status subresource (404), as the plugin falls back.
/// Returns the resourceVersion the server answered with.
async fn send_merge(
    api: &Api<DynamicObject>,
    name: &str,
    target: PatchTarget,
    body: &actions::Body,
) -> Result<Option<String>, ::kube::Error> {
    let pp = PatchParams::default();
    let patch = Patch::Merge(body);
    let answer = match target {
        PatchTarget::Spec => api.patch(name, &pp, &patch).await?,
        PatchTarget::Status => match api.patch_status(name, &pp, &patch).await {
            Err(::kube::Error::Api(s)) if s.code == 404 => api.patch(name, &pp, &patch).await?,
            other => other?,
        },
    };
    Ok(answer.metadata.resource_version)
}

/// Whether an object at resourceVersion `have` is at least as new as `want`. resourceVersions
/// are opaque, but every API server hands out increasing integers; anything else only compares
/// equal.
fn seen_version(have: &str, want: &str) -> bool {
    match (have.parse::<u64>(), want.parse::<u64>()) {
        (Ok(h), Ok(w)) => h >= w,
        _ => have == want,
    }
}

async fn write_yaml(
    path: &Path,
    objects: &[Value],
    errors: &[String],
) -> (PathBuf, Result<(), String>) {
    let result = match serde_saphyr::to_string_multiple(objects) {
        Ok(mut text) => {
            for e in errors {
                text.push_str(&format!("# not listed: {e}\n"));
            }
            tokio::fs::write(path, text)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    (path.to_path_buf(), result)
}

async fn write_log(
    pods: &Api<Pod>,
    name: &str,
    since: Option<i64>,
    path: &Path,
) -> (PathBuf, Result<(), String>) {
    let lp = LogParams {
        since_seconds: since,
        ..LogParams::default()
    };
    let result = match pods.logs(name, &lp).await {
        Ok(text) => tokio::fs::write(path, text)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    (path.to_path_buf(), result)
}
