//! Keeps the router in line with a cluster, as ingress-nginx's store and sync loop do: watches of
//! Ingresses, Services and EndpointSlices in all namespaces feed reflector stores; once all
//! three have listed, every change (bursts coalesced for [`COALESCE`]) recomputes the routes
//! with [`translate`] and applies them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ::kube::runtime::reflector::{self, store::Writer};
use ::kube::runtime::watcher::{self, Event};
use ::kube::runtime::{WatchStreamExt, watcher as watch_stream};
use ::kube::{Api, Client, Resource};
use futures::stream::{BoxStream, StreamExt, select_all};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ClassOptions, Warning, translate};
use crate::cluster::InfraError;
use crate::cluster::local::router::{Router, RouterState, announce};
use crate::timeline::{Source, Timeline};

/// How long a burst of changes (a rollout step touches an Ingress, then slices) is gathered
/// before the routes are recomputed; ingress-nginx's sync queue batches the same way.
pub const COALESCE: Duration = Duration::from_millis(50);

/// What one watch reported.
enum Seen {
    /// The store changed.
    Changed,
    /// The store holds a complete list (the first one, or after a relist).
    Listed,
    /// Nothing the routes depend on.
    Nothing,
}

type Item = (&'static str, Result<Seen, watcher::Error>);

fn watch<K>(api: Api<K>, writer: Writer<K>, what: &'static str) -> BoxStream<'static, Item>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    reflector::reflector(
        writer,
        watch_stream(api, watcher::Config::default()).default_backoff(),
    )
    .map(move |r| {
        let seen = r.map(|e| match e {
            Event::Apply(_) | Event::Delete(_) => Seen::Changed,
            Event::InitDone => Seen::Listed,
            Event::Init | Event::InitApply(_) => Seen::Nothing,
        });
        (what, seen)
    })
    .boxed()
}

/// Follows the cluster until the task is aborted. Watch errors are written to the timeline
/// (`harness`/`watch-error`) and the watch resumes; a router that fails to apply routes ends
/// the loop with its error (and a `router-failed` event). New translation warnings are written
/// as `router`/`ingress-warning`; route changes as `canary-route` and `endpoints`.
pub async fn follow(
    client: Client,
    router: Arc<tokio::sync::Mutex<Router>>,
    timeline: Timeline,
    options: ClassOptions,
) -> Result<(), InfraError> {
    let (ingresses, w_ing) = reflector::store::<Ingress>();
    let (services, w_svc) = reflector::store::<Service>();
    let (slices, w_eps) = reflector::store::<EndpointSlice>();
    let mut events = select_all([
        watch(Api::<Ingress>::all(client.clone()), w_ing, "Ingresses"),
        watch(Api::<Service>::all(client.clone()), w_svc, "Services"),
        watch(Api::<EndpointSlice>::all(client), w_eps, "EndpointSlices"),
    ]);
    let mut listed: BTreeSet<&'static str> = BTreeSet::new();
    let mut due: Option<tokio::time::Instant> = None;
    let mut warned: BTreeSet<Warning> = BTreeSet::new();
    loop {
        let item = match due {
            Some(at) => tokio::select! {
                item = events.next() => Some(item),
                _ = tokio::time::sleep_until(at) => None,
            },
            None => Some(events.next().await),
        };
        let (what, seen) = match item {
            // Every watch ended: only when the client is gone.
            Some(None) => return Ok(()),
            Some(Some(i)) => i,
            None => {
                due = None;
                let ing = ingresses.state();
                let svc = services.state();
                let eps = slices.state();
                let t = translate(
                    ing.iter().map(|a| a.as_ref()),
                    svc.iter().map(|a| a.as_ref()),
                    eps.iter().map(|a| a.as_ref()),
                    &options,
                );
                report(&timeline, &mut warned, t.warnings);
                apply(&router, &timeline, RouterState { routes: t.routes }).await?;
                continue;
            }
        };
        match seen {
            Ok(Seen::Nothing) => continue,
            Ok(Seen::Listed) => {
                listed.insert(what);
            }
            Ok(Seen::Changed) => {}
            Err(e) => {
                timeline.emit(
                    Source::Harness,
                    "watch-error",
                    format!("the router's watch of {what} failed and is resumed: {e}"),
                    json!({"watch": what}),
                );
                continue;
            }
        }
        // Routes from a partial list would flap (a Service seen before its slices answers 503).
        if listed.len() == 3 && due.is_none() {
            due = Some(tokio::time::Instant::now() + COALESCE);
        }
    }
}

async fn apply(
    router: &tokio::sync::Mutex<Router>,
    timeline: &Timeline,
    state: RouterState,
) -> Result<(), InfraError> {
    let mut r = router.lock().await;
    let before = r.state().clone();
    if let Err(e) = r.apply(state).await {
        timeline.emit(
            Source::Router,
            "router-failed",
            format!("router failed: {e}"),
            serde_json::Value::Null,
        );
        tracing::error!("router failed: {e}");
        return Err(e);
    }
    announce(timeline, &before, r.state());
    Ok(())
}

/// Writes the warnings not written before; one that went away and comes back is written again.
fn report(timeline: &Timeline, warned: &mut BTreeSet<Warning>, now: Vec<Warning>) {
    let now: BTreeSet<Warning> = now.into_iter().collect();
    for w in now.difference(warned) {
        // Often passing (a canary Ingress applied before its controller creates the Service it
        // names); the timeline keeps every one, the terminal shows them with GAUNTLET_LOG=info.
        tracing::info!("{w}");
        timeline.emit(
            Source::Router,
            "ingress-warning",
            w.to_string(),
            json!({"object": w.object, "message": w.message}),
        );
    }
    *warned = now;
}
