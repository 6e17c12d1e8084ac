//! The watch loop: kube-runtime watchers on the Rollout or Canary, its AnalysisRuns, the Events
//! and the Ingresses of the scenario's namespace, merged into one stream that feeds the
//! [`Observer`]. Nothing here sleeps or polls: each watcher holds a watch request open and, when
//! the connection is lost, resumes from the last resourceVersion it saw (or relists after a
//! `410 Gone`), with kube's default back-off after errors. Every error is written to the
//! timeline (`harness`/`watch-error`) and the watch goes on.

use std::sync::{Arc, Mutex};

use ::kube::Client;
use ::kube::api::{Api, DynamicObject};
use ::kube::runtime::watcher::{self, Event as WatchEvent};
use ::kube::runtime::{WatchStreamExt, watcher as watch_stream};
use futures::stream::{BoxStream, StreamExt, select_all};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use super::observe::{Judgement, Observed, Observer};
use super::render::Workload;
use super::resources::known;
use crate::spec::ControllerKind;
use crate::timeline::{Source, Timeline};

/// What the watch knows now; published on every change.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    pub judgement: Judgement,
    /// The release was applied (verdicts count from then on).
    pub armed: bool,
    pub baseline_ready: bool,
    /// Phase and message, for people.
    pub line: String,
    /// Phase, step, canary weight.
    pub live: (String, Option<String>, Option<u32>),
    /// Watch errors so far (each one was followed by a reconnect).
    pub watch_errors: u32,
}

impl ClusterStatus {
    pub(crate) fn of(o: &Observer, watch_errors: u32) -> ClusterStatus {
        ClusterStatus {
            judgement: o.judgement(),
            armed: o.is_armed(),
            baseline_ready: o.baseline_ready(),
            line: o.status_line(),
            live: o.live(),
            watch_errors,
        }
    }
}

/// Shared between the watch task and the cluster handle.
pub(crate) struct Shared {
    pub observer: Mutex<Observer>,
    pub status: watch::Sender<ClusterStatus>,
    pub errors: Mutex<u32>,
}

impl Shared {
    pub(crate) fn new(observer: Observer) -> Arc<Shared> {
        let status = ClusterStatus::of(&observer, 0);
        Arc::new(Shared {
            observer: Mutex::new(observer),
            status: watch::Sender::new(status),
            errors: Mutex::new(0),
        })
    }

    /// Runs `f` on the observer and publishes the new status.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Observer) -> T) -> T {
        let mut o = self.observer.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut o);
        let errors = *self.errors.lock().unwrap_or_else(|p| p.into_inner());
        self.status.send_replace(ClusterStatus::of(&o, errors));
        out
    }
}

type Item = Result<Option<Observed>, (&'static str, watcher::Error)>;

fn stream<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    wrap: fn(serde_json::Value) -> Observed,
) -> BoxStream<'static, Item>
where
    K: ::kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
{
    watch_stream(api, config)
        .default_backoff()
        .map(move |r| match r {
            Ok(WatchEvent::Apply(o) | WatchEvent::InitApply(o)) => {
                Ok(serde_json::to_value(&o).ok().map(wrap))
            }
            Ok(_) => Ok(None),
            Err(e) => Err((what, e)),
        })
        .boxed()
}

/// Watches until the task is aborted.
pub(crate) async fn run(
    client: Client,
    namespace: String,
    workload: Workload,
    shared: Arc<Shared>,
    timeline: Timeline,
) {
    let mut streams = Vec::new();
    let w = &workload.watched;
    if let Some(ar) = known(&w.api_version, &w.kind) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", w.name));
        streams.push(stream(api, config, "the Rollout/Canary", Observed::Target));
    }
    if workload.controller == ControllerKind::Argo
        && let Some(ar) = known("argoproj.io/v1alpha1", "AnalysisRun")
    {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        streams.push(stream(
            api,
            watcher::Config::default(),
            "AnalysisRuns",
            Observed::AnalysisRun,
        ));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    streams.push(stream(
        events,
        watcher::Config::default(),
        "Events",
        Observed::Event,
    ));
    let ingresses: Api<Ingress> = Api::namespaced(client, &namespace);
    streams.push(stream(
        ingresses,
        watcher::Config::default(),
        "Ingresses",
        Observed::Ingress,
    ));

    let mut merged = select_all(streams);
    while let Some(item) = merged.next().await {
        match item {
            Ok(Some(observed)) => {
                let emitted = shared.update(|o| o.observe(&observed));
                for e in emitted {
                    timeline.emit(e.source, e.kind, e.message, e.data);
                }
            }
            Ok(None) => {}
            Err((what, e)) => {
                *shared.errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                timeline.emit(
                    Source::Harness,
                    "watch-error",
                    format!("the watch of {what} failed and is resumed: {e}"),
                    json!({"watch": what}),
                );
                shared.update(|_| ());
            }
        }
    }
}
