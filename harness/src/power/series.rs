//! The synthetic series of one simulated rollout, written second by second as OpenMetrics
//! text: what [`super::remote`] sends to Prometheus, and what its tests check against
//! `promtool tsdb create-blocks-from openmetrics`, Prometheus' own reader of the format.
//!
//! The names and labels are the local stack's (`cluster::local::exporter` for the ingress and
//! pod series, the sample app's own `/metrics` for the app series), so the user's queries select
//! them as they select the real ones:
//! - ingress-nginx: `nginx_ingress_controller_requests` (no `_total`, as ingress-nginx names
//!   it) and the `response_duration_seconds` / `request_duration_seconds` histograms, labelled
//!   `namespace`, `ingress`, `service`, `status`, `canary` (the canary upstream when the canary
//!   served, else empty), `method`, `path` (the Ingress rule's);
//! - the app on each pod: `http_requests_total` and `http_request_duration_seconds`, with the
//!   pod's labels as Kubernetes service discovery gives them;
//! - cAdvisor and kube-state-metrics: working set, memory limit, CPU, restarts, readiness.
//!
//! As on a real exporter a request series appears at the first scrape after its first request
//! (so `rate()` never sees the first increments of a new series), and a pod's series live as
//! long as the pod. One sample per series per scrape interval (1 s, as the local stack
//! scrapes), at unix time `base + second`.
//!
//! Only the series whose names the policy's queries mention are written ([`Wanted`]): a query
//! cannot select a series by a name it does not spell, unless it matches on `__name__`, and
//! then everything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::model::{LatencyModel, Request, binomial, poisson, rng_for};
use super::platform::{Event, World};
use crate::cluster::RevisionHash;
use crate::cluster::local::prometheus::label_name;

/// ingress-nginx's default histogram buckets (as `cluster::local::exporter` uses).
pub const INGRESS_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The sample app's histogram buckets (`fixtures/sample-app/src/metrics.rs`).
pub const APP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// A steady working set for the sample app without a leak, bytes.
const WORKING_SET: f64 = 14.0 * 1024.0 * 1024.0;
/// CPU the app spends per request, seconds.
const CPU_PER_REQUEST: f64 = 0.000_2;

/// The names a simulated rollout's series carry that are not its own choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The rollout's own namespace: what keeps simulated rollouts apart in one TSDB.
    pub namespace: String,
    pub ingress: String,
    /// The Service of the Ingress' backend (the stable Service, or Flagger's apex).
    pub service: String,
    /// `<namespace>-<canary service>-<port>`: the `canary` label of what the canary served.
    pub canary_upstream: String,
    /// The Ingress rule's path.
    pub path: String,
}

/// Which series names to write; see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    all: bool,
    names: BTreeSet<String>,
}

impl Wanted {
    /// Every identifier in the queries (metric names among them).
    pub fn from_queries<'a>(queries: impl IntoIterator<Item = &'a str>) -> Wanted {
        let mut w = Wanted::default();
        for q in queries {
            if q.contains("__name__") {
                w.all = true;
            }
            let mut word = String::new();
            for c in q.chars().chain(std::iter::once(' ')) {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    word.push(c);
                } else if !word.is_empty() {
                    w.names.insert(std::mem::take(&mut word));
                }
            }
        }
        w
    }

    /// Everything, whatever the queries say.
    pub fn everything() -> Wanted {
        Wanted {
            all: true,
            names: BTreeSet::new(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.all || self.names.contains(name)
    }

    /// Whether any of the histogram's three series is wanted.
    fn histogram(&self, base: &str) -> bool {
        ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| self.has(&format!("{base}{s}")))
    }

    /// Whether nothing at all is to be written.
    pub fn is_empty(&self) -> bool {
        !self.all && self.names.is_empty()
    }
}

/// A histogram's cumulative state.
#[derive(Debug, Clone)]
struct Hist {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn new(n: usize) -> Hist {
        Hist {
            buckets: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        for (b, le) in self.buckets.iter_mut().zip(bounds) {
            if v <= *le {
                *b += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(
        &self,
        out: &mut String,
        name: &str,
        labels: &str,
        bounds: &[f64],
        w: &Wanted,
        ts: i64,
    ) {
        let bucket = format!("{name}_bucket");
        if w.has(&bucket) {
            for (b, le) in self.buckets.iter().zip(bounds) {
                let _ = writeln!(out, "{bucket}{{{labels},le=\"{le}\"}} {b} {ts}");
            }
            let _ = writeln!(out, "{bucket}{{{labels},le=\"+Inf\"}} {} {ts}", self.count);
        }
        let sum = format!("{name}_sum");
        if w.has(&sum) {
            let _ = writeln!(out, "{sum}{{{labels}}} {} {ts}", self.sum);
        }
        let count = format!("{name}_count");
        if w.has(&count) {
            let _ = writeln!(out, "{count}{{{labels}}} {} {ts}", self.count);
        }
    }
}

/// One ingress series set (a status on one side).
#[derive(Debug, Clone)]
struct IngressAgg {
    labels: String,
    requests: u64,
    response: Hist,
    request: Hist,
    /// The scrape from which the series exist: the one after the first request.
    visible_from: u64,
}

/// One app series set (a status on one pod).
#[derive(Debug, Clone)]
struct AppAgg {
    pod: String,
    labels: String,
    requests: u64,
    duration: Hist,
    visible_from: u64,
}

/// The series writer of one simulated rollout. It replays the platform's log and draws each
/// second's traffic from the [`model`](super::model).
#[derive(Debug, Clone)]
pub struct RolloutSeries {
    id: Identity,
    seed: u64,
    key: u64,
    rate: f64,
    model: LatencyModel,
    world: World,
    /// Events of the log applied so far.
    cursor: usize,
    pending: Vec<Event>,
    /// The last second written (0: none).
    written: u64,
    ingress: BTreeMap<(u16, bool), IngressAgg>,
    app: BTreeMap<(String, u16), AppAgg>,
    cpu: BTreeMap<String, f64>,
}

impl RolloutSeries {
    /// A writer for rollout `key` of the run seeded `seed`, at `rate` requests per second.
    pub fn new(id: Identity, seed: u64, key: u64, rate: f64, model: LatencyModel) -> Self {
        RolloutSeries {
            id,
            seed,
            key,
            rate,
            model,
            world: World::default(),
            cursor: 0,
            pending: Vec::new(),
            written: 0,
            ingress: BTreeMap::new(),
            app: BTreeMap::new(),
            cpu: BTreeMap::new(),
        }
    }

    /// The last second written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// How many events of the log this writer has taken in: pass the log from here.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Writes seconds `written+1 ..= until` to `out`, with `events`, the log's entries from
    /// [`cursor`](Self::cursor) on. Every event at or before `until` must be among them: the
    /// controller is past `until` or blocked at it.
    pub fn write_until(
        &mut self,
        events: Vec<Event>,
        until: u64,
        base_unix: i64,
        wanted: &Wanted,
        out: &mut String,
    ) {
        self.cursor += events.len();
        self.pending.extend(events);
        for k in self.written + 1..=until {
            let mid = k as f64 - 0.5;
            self.apply_until(mid);
            self.traffic(k, mid);
            self.apply_until(k as f64);
            self.scrape(k, base_unix + k as i64, wanted, out);
        }
        self.written = self.written.max(until);
    }

    fn apply_until(&mut self, at: f64) {
        let n = self.pending.iter().take_while(|e| e.at <= at).count();
        for e in self.pending.drain(..n) {
            self.world.apply(&e);
        }
    }

    /// Second `k`'s requests, routed with the state at `at`.
    fn traffic(&mut self, k: u64, at: f64) {
        let Some(services) = self.world.services.clone() else {
            return;
        };
        let mut rng = rng_for(self.seed, self.key, k);
        let n = poisson(&mut rng, self.rate);
        let stable = services.stable.clone();
        let canary = services.canary.clone();
        let canary_ready = canary
            .as_ref()
            .is_some_and(|c| !self.world.ready_pods(c, at).is_empty());
        let to_canary = if canary_ready {
            binomial(&mut rng, n, self.world.weight / 100.0)
        } else {
            0
        };
        for i in 0..n {
            let side_canary = i < to_canary;
            let hash = match (&canary, side_canary) {
                (Some(c), true) => c.clone(),
                _ => stable.clone(),
            };
            let served = self.serve(&mut rng, &hash, at);
            let served = match served {
                Some(s) => Some(s),
                // No ready pod on the stable side: the canary's take the request, if any.
                None if !side_canary => canary.as_ref().and_then(|c| self.serve(&mut rng, c, at)),
                None => None,
            };
            match served {
                Some((pod, req)) => {
                    self.record_ingress(k, side_canary, &req);
                    self.record_app(k, &hash, &pod, &req);
                }
                None => {
                    // Nothing to send it to: nginx answers 503 itself, no upstream time.
                    let req = Request {
                        status: 503,
                        app_s: 0.0,
                        upstream_s: 0.0,
                        request_s: self.model.request_overhead_s,
                    };
                    self.record_ingress(k, false, &req);
                }
            }
        }
    }

    /// A request to one of `hash`'s ready pods (uniformly), as the app answers it.
    fn serve(
        &self,
        rng: &mut rand::rngs::StdRng,
        hash: &RevisionHash,
        at: f64,
    ) -> Option<(String, Request)> {
        use rand::RngExt;
        let pods = self.world.ready_pods(hash, at);
        if pods.is_empty() {
            return None;
        }
        let pod = pods[rng.random_range(0..pods.len())].name.clone();
        let faults = &self.world.revisions.get(hash)?.info.faults;
        Some((pod, self.model.request(rng, faults)))
    }

    fn record_ingress(&mut self, k: u64, canary: bool, req: &Request) {
        let id = &self.id;
        let agg = self
            .ingress
            .entry((req.status, canary))
            .or_insert_with(|| IngressAgg {
                labels: format!(
                    "namespace=\"{}\",ingress=\"{}\",service=\"{}\",status=\"{}\",canary=\"{}\",method=\"GET\",path=\"{}\",job=\"gauntlet-exporter\",instance=\"exporter\"",
                    escape(&id.namespace),
                    escape(&id.ingress),
                    escape(&id.service),
                    req.status,
                    if canary { escape(&id.canary_upstream) } else { String::new() },
                    escape(&id.path),
                ),
                requests: 0,
                response: Hist::new(INGRESS_BUCKETS.len()),
                request: Hist::new(INGRESS_BUCKETS.len()),
                visible_from: k,
            });
        agg.requests += 1;
        if req.status != 503 || req.upstream_s > 0.0 {
            agg.response.observe(&INGRESS_BUCKETS, req.upstream_s);
        }
        agg.request.observe(&INGRESS_BUCKETS, req.request_s);
    }

    fn record_app(&mut self, k: u64, hash: &RevisionHash, pod: &str, req: &Request) {
        *self.cpu.entry(pod.to_string()).or_default() += CPU_PER_REQUEST;
        let key = (pod.to_string(), req.status);
        if !self.app.contains_key(&key) {
            let target = self.target_labels(hash, pod);
            self.app.insert(
                key.clone(),
                AppAgg {
                    pod: pod.to_string(),
                    labels: format!(
                        "{target},method=\"GET\",path=\"/\",status=\"{}\"",
                        req.status
                    ),
                    requests: 0,
                    duration: Hist::new(APP_BUCKETS.len()),
                    visible_from: k,
                },
            );
        }
        if let Some(agg) = self.app.get_mut(&key) {
            agg.requests += 1;
            agg.duration.observe(&APP_BUCKETS, req.app_s);
        }
    }

    /// A pod's target labels, as the local stack's file_sd gives them.
    fn target_labels(&self, hash: &RevisionHash, pod: &str) -> String {
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        if let Some(r) = self.world.revisions.get(hash) {
            for (k, v) in &r.info.labels {
                labels.insert(label_name(k), v.clone());
            }
            labels.insert("container".into(), r.info.container.clone());
        }
        labels.insert("namespace".into(), self.id.namespace.clone());
        labels.insert("pod".into(), pod.to_string());
        labels.insert("job".into(), "kubernetes-pods".into());
        labels.insert("instance".into(), format!("{pod}:8080"));
        labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The samples of scrape `k`.
    fn scrape(&mut self, k: u64, ts: i64, w: &Wanted, out: &mut String) {
        for agg in self.ingress.values().filter(|a| a.visible_from <= k) {
            if w.has("nginx_ingress_controller_requests") {
                let _ = writeln!(
                    out,
                    "nginx_ingress_controller_requests{{{}}} {} {ts}",
                    agg.labels, agg.requests
                );
            }
            if w.histogram("nginx_ingress_controller_response_duration_seconds") {
                agg.response.write(
                    out,
                    "nginx_ingress_controller_response_duration_seconds",
                    &agg.labels,
                    &INGRESS_BUCKETS,
                    w,
                    ts,
                );
            }
            if w.histogram("nginx_ingress_controller_request_duration_seconds") {
                agg.request.write(
                    out,
                    "nginx_ingress_controller_request_duration_seconds",
                    &agg.labels,
                    &INGRESS_BUCKETS,
                    w,
                    ts,
                );
            }
        }
        let live: BTreeSet<&str> = self
            .world
            .revisions
            .values()
            .flat_map(|r| r.pods.iter().map(|p| p.name.as_str()))
            .collect();
        for agg in self
            .app
            .values()
            .filter(|a| a.visible_from <= k && live.contains(a.pod.as_str()))
        {
            if w.has("http_requests_total") {
                let _ = writeln!(
                    out,
                    "http_requests_total{{{}}} {} {ts}",
                    agg.labels, agg.requests
                );
            }
            if w.histogram("http_request_duration_seconds") {
                agg.duration.write(
                    out,
                    "http_request_duration_seconds",
                    &agg.labels,
                    &APP_BUCKETS,
                    w,
                    ts,
                );
            }
        }
        self.pod_series(k as f64, ts, w, out);
    }

    fn pod_series(&self, at: f64, ts: i64, w: &Wanted, out: &mut String) {
        let ns = escape(&self.id.namespace);
        for (hash, r) in &self.world.revisions {
            for p in &r.pods {
                let c = format!(
                    "namespace=\"{ns}\",pod=\"{}\",container=\"{}\",job=\"gauntlet-exporter\",instance=\"exporter\"",
                    escape(&p.name),
                    escape(&r.info.container)
                );
                let ready = u8::from(p.ready(at));
                if w.has("container_memory_working_set_bytes") {
                    // A pod-specific level within ±0.5 MiB, steady: no leak in the grid.
                    let wobble = (super::model::mix(p.name.len() as u64 ^ p.started.to_bits())
                        % 1_048_576) as f64
                        - 524_288.0;
                    let _ = writeln!(
                        out,
                        "container_memory_working_set_bytes{{{c}}} {} {ts}",
                        WORKING_SET + wobble
                    );
                }
                if let Some(limit) = r.info.memory_limit
                    && w.has("container_spec_memory_limit_bytes")
                {
                    let _ = writeln!(out, "container_spec_memory_limit_bytes{{{c}}} {limit} {ts}");
                }
                if w.has("container_cpu_usage_seconds_total") {
                    let cpu = self.cpu.get(&p.name).copied().unwrap_or(0.0);
                    let _ = writeln!(out, "container_cpu_usage_seconds_total{{{c}}} {cpu} {ts}");
                }
                if w.has("kube_pod_container_status_restarts_total") {
                    let _ = writeln!(
                        out,
                        "kube_pod_container_status_restarts_total{{{c}}} 0 {ts}"
                    );
                }
                if w.has("kube_pod_container_status_ready") {
                    let _ = writeln!(out, "kube_pod_container_status_ready{{{c}}} {ready} {ts}");
                }
                if w.has("kube_pod_status_ready") {
                    for (cond, v) in [("true", ready), ("false", 1 - ready)] {
                        let _ = writeln!(
                            out,
                            "kube_pod_status_ready{{namespace=\"{ns}\",pod=\"{}\",condition=\"{cond}\",job=\"gauntlet-exporter\",instance=\"exporter\"}} {v} {ts}",
                            escape(&p.name)
                        );
                    }
                }
                if w.has("up") {
                    let target = self.target_labels(hash, &p.name);
                    let _ = writeln!(out, "up{{{target}}} 1 {ts}");
                }
            }
        }
    }
}

/// A label value in OpenMetrics' escaping.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests;
