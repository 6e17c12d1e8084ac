//! The in-process metrics exporter: the series a cluster's ingress-nginx, cAdvisor and
//! kube-state-metrics would give Prometheus, so a user's AnalysisTemplate or MetricTemplate runs
//! unchanged.
//!
//! Ingress series come from nginx's JSON access log, tailed as it grows; each line is one
//! request, labelled the way ingress-nginx labels it (`ingress` = the user's Ingress, `canary` =
//! the canary upstream name `<namespace>-<service>-<port>` when the canary served it, else
//! empty). Pod series are read from the pod supervisors at scrape time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::task::JoinHandle;

use crate::cluster::{InfraError, Termination};

/// ingress-nginx's default histogram buckets.
const INGRESS_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngressLabels {
    namespace: String,
    ingress: String,
    service: String,
    status: String,
    canary: String,
    method: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodConditionLabels {
    namespace: String,
    pod: String,
    condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TerminatedLabels {
    namespace: String,
    pod: String,
    container: String,
    reason: String,
}

/// How the Ingress and Services are named, for the labels.
#[derive(Debug, Clone)]
pub struct IngressNames {
    pub namespace: String,
    pub ingress: String,
    /// The Service the Ingress routes to (the stable one).
    pub service: String,
    /// ingress-nginx's upstream name for the canary backend, `<namespace>-<service>-<port>`.
    pub canary_upstream: String,
}

/// One container as the pod series describe it.
#[derive(Debug, Clone)]
pub struct PodSample {
    pub pod: String,
    pub container: String,
    pub ready: bool,
    pub restarts: u32,
    pub last_termination: Option<Termination>,
    pub working_set: Option<u64>,
    pub cpu_seconds: f64,
    pub memory_limit: Option<u64>,
}

pub type PodSource = Arc<dyn Fn() -> Vec<PodSample> + Send + Sync>;

#[derive(Clone)]
struct IngressSeries {
    /// Gauge-typed on purpose: ingress-nginx names this counter without the `_total` suffix
    /// (its client_golang predates the rule) and users' queries spell it that way, while
    /// prometheus-client appends `_total` to every counter. `rate()` treats both types alike.
    requests: Family<IngressLabels, Gauge>,
    response_duration: Family<IngressLabels, Histogram>,
    request_duration: Family<IngressLabels, Histogram>,
    lines: Counter,
}

impl IngressSeries {
    fn new() -> Self {
        let hist = || Histogram::new(INGRESS_BUCKETS);
        IngressSeries {
            requests: Family::default(),
            response_duration: Family::new_with_constructor(hist),
            request_duration: Family::new_with_constructor(hist),
            lines: Counter::default(),
        }
    }
}

/// One line of the router's access log.
#[derive(Debug, Deserialize)]
pub struct AccessLine {
    pub msec: f64,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `stable` or `canary`: which backend the router chose.
    pub side: String,
    pub upstream: String,
    pub request_time: f64,
    pub upstream_response_time: String,
}

impl AccessLine {
    /// The upstream's response time; nginx lists one per attempt (`"0.001, 0.002"`) and `-`
    /// when none answered.
    pub fn upstream_seconds(&self) -> Option<f64> {
        let times: Vec<f64> = self
            .upstream_response_time
            .split([',', ':'])
            .filter_map(|t| t.trim().parse().ok())
            .collect();
        (!times.is_empty()).then(|| times.iter().sum())
    }
}

fn record(series: &IngressSeries, names: &IngressNames, line: &AccessLine) {
    let labels = IngressLabels {
        namespace: names.namespace.clone(),
        ingress: names.ingress.clone(),
        service: names.service.clone(),
        status: line.status.to_string(),
        canary: if line.side == "canary" {
            names.canary_upstream.clone()
        } else {
            String::new()
        },
        method: line.method.clone(),
        // ingress-nginx labels the Ingress rule's path, not the request's.
        path: "/".into(),
    };
    series.requests.get_or_create(&labels).inc();
    series
        .request_duration
        .get_or_create(&labels)
        .observe(line.request_time);
    if let Some(t) = line.upstream_seconds() {
        series.response_duration.get_or_create(&labels).observe(t);
    }
    series.lines.inc();
}

/// The running exporter: a `/metrics` server and the access-log tailer.
pub struct Exporter {
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
    tailer: JoinHandle<()>,
    series: IngressSeries,
}

impl Exporter {
    pub async fn start(
        names: IngressNames,
        access_log: PathBuf,
        pods: PodSource,
    ) -> Result<Exporter, InfraError> {
        let series = IngressSeries::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(InfraError::io("binding the metrics exporter"))?;
        let addr = listener
            .local_addr()
            .map_err(InfraError::io("metrics exporter address"))?;
        let state = Arc::new((series.clone(), names.clone(), pods));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    let body = encode(&state.0, &state.1, &(state.2)());
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let tailer = tokio::spawn(tail(access_log, series.clone(), names));
        Ok(Exporter {
            addr,
            server,
            tailer,
            series,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Access-log lines counted so far.
    pub fn lines(&self) -> u64 {
        self.series.lines.get()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
        self.tailer.abort();
    }
}

/// Follows the access log: reads what was appended, then waits a tick. The log is written by
/// nginx and read here only, so polling at a tenth of the scrape interval is cheap and keeps the
/// series within one scrape of the truth.
async fn tail(path: PathBuf, series: IngressSeries, names: IngressNames) {
    let mut pos = 0u64;
    let mut partial = String::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            continue;
        };
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or replaced
        }
        if len == pos || file.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
            continue;
        }
        let mut reader = BufReader::new(file);
        loop {
            let mut buf = String::new();
            match reader.read_line(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pos += n as u64;
                    partial.push_str(&buf);
                    if !partial.ends_with('\n') {
                        continue; // nginx is still writing this line
                    }
                    match serde_json::from_str::<AccessLine>(partial.trim()) {
                        Ok(line) => record(&series, &names, &line),
                        Err(e) => tracing::warn!("unreadable access log line ({e}): {partial}"),
                    }
                    partial.clear();
                }
            }
        }
    }
}

fn encode(series: &IngressSeries, names: &IngressNames, pods: &[PodSample]) -> String {
    let mut reg = Registry::default();
    reg.register(
        "nginx_ingress_controller_requests",
        "The total number of client requests",
        series.requests.clone(),
    );
    reg.register(
        "nginx_ingress_controller_response_duration_seconds",
        "The time spent on receiving the response from the upstream server",
        series.response_duration.clone(),
    );
    reg.register(
        "nginx_ingress_controller_request_duration_seconds",
        "The request processing time",
        series.request_duration.clone(),
    );

    let working_set = Family::<ContainerLabels, Gauge<f64, AtomicU64>>::default();
    let limit = Family::<ContainerLabels, Gauge<f64, AtomicU64>>::default();
    let cpu = Family::<ContainerLabels, Counter<f64, AtomicU64>>::default();
    let restarts = Family::<ContainerLabels, Counter>::default();
    let container_ready = Family::<ContainerLabels, Gauge>::default();
    let pod_ready = Family::<PodConditionLabels, Gauge>::default();
    let terminated = Family::<TerminatedLabels, Gauge>::default();
    for p in pods {
        let c = ContainerLabels {
            namespace: names.namespace.clone(),
            pod: p.pod.clone(),
            container: p.container.clone(),
        };
        if let Some(ws) = p.working_set {
            working_set.get_or_create(&c).set(ws as f64);
        }
        if let Some(l) = p.memory_limit {
            limit.get_or_create(&c).set(l as f64);
        }
        cpu.get_or_create(&c).inc_by(p.cpu_seconds);
        restarts.get_or_create(&c).inc_by(p.restarts as u64);
        container_ready.get_or_create(&c).set(p.ready as i64);
        for (cond, v) in [("true", p.ready), ("false", !p.ready)] {
            pod_ready
                .get_or_create(&PodConditionLabels {
                    namespace: names.namespace.clone(),
                    pod: p.pod.clone(),
                    condition: cond.into(),
                })
                .set(v as i64);
        }
        if let Some(t) = &p.last_termination {
            let reason = match t {
                Termination::OOMKilled => "OOMKilled",
                Termination::Error { .. } => "Error",
                Termination::Completed => "Completed",
            };
            terminated
                .get_or_create(&TerminatedLabels {
                    namespace: names.namespace.clone(),
                    pod: p.pod.clone(),
                    container: p.container.clone(),
                    reason: reason.into(),
                })
                .set(1);
        }
    }
    reg.register(
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        working_set,
    );
    reg.register(
        "container_spec_memory_limit_bytes",
        "Memory limit of the container in bytes",
        limit,
    );
    reg.register(
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed in seconds",
        cpu,
    );
    reg.register(
        "kube_pod_container_status_restarts",
        "The number of container restarts per container",
        restarts,
    );
    reg.register(
        "kube_pod_container_status_ready",
        "Describes whether the containers readiness check succeeded",
        container_ready,
    );
    reg.register(
        "kube_pod_status_ready",
        "Describes whether the pod is ready to serve requests",
        pod_ready,
    );
    reg.register(
        "kube_pod_container_status_last_terminated_reason",
        "Describes the last reason the container was in terminated state",
        terminated,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> IngressNames {
        IngressNames {
            namespace: "default".into(),
            ingress: "sample-app".into(),
            service: "sample-app-stable".into(),
            canary_upstream: "default-sample-app-canary-80".into(),
        }
    }

    #[test]
    fn access_lines_become_ingress_nginx_series() {
        let s = IngressSeries::new();
        let canary: AccessLine = serde_json::from_str(
            r#"{"msec":1.5,"method":"GET","path":"/x","status":500,"side":"canary","upstream":"127.0.0.1:1","upstream_status":"500","request_time":0.012,"upstream_response_time":"0.010","bytes_sent":10,"request_id":"a"}"#,
        )
        .unwrap();
        let stable: AccessLine = serde_json::from_str(
            r#"{"msec":1.5,"method":"GET","path":"/","status":200,"side":"stable","upstream":"127.0.0.1:2","upstream_status":"200","request_time":0.002,"upstream_response_time":"-","bytes_sent":10,"request_id":"b"}"#,
        )
        .unwrap();
        record(&s, &names(), &canary);
        record(&s, &names(), &stable);
        let text = encode(&s, &names(), &[]);
        assert!(
            text.contains(r#"nginx_ingress_controller_requests{namespace="default",ingress="sample-app",service="sample-app-stable",status="500",canary="default-sample-app-canary-80",method="GET",path="/"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"status="200",canary="",method="GET""#));
        // No upstream answered the stable request: no response-duration observation.
        assert!(text.contains(r#"nginx_ingress_controller_response_duration_seconds_count{namespace="default",ingress="sample-app",service="sample-app-stable",status="500""#));
        assert!(!text.contains(r#"nginx_ingress_controller_response_duration_seconds_count{namespace="default",ingress="sample-app",service="sample-app-stable",status="200""#));
    }

    #[test]
    fn pod_series_carry_kubernetes_labels() {
        let text = encode(
            &IngressSeries::new(),
            &names(),
            &[PodSample {
                pod: "sample-app-abc-xyz12".into(),
                container: "sample-app".into(),
                ready: false,
                restarts: 2,
                last_termination: Some(Termination::OOMKilled),
                working_set: Some(1024),
                cpu_seconds: 0.5,
                memory_limit: Some(64 << 20),
            }],
        );
        assert!(text.contains(r#"kube_pod_container_status_restarts_total{namespace="default",pod="sample-app-abc-xyz12",container="sample-app"} 2"#), "{text}");
        assert!(text.contains(r#"container_memory_working_set_bytes{namespace="default",pod="sample-app-abc-xyz12",container="sample-app"} 1024"#));
        assert!(text.contains(r#"kube_pod_status_ready{namespace="default",pod="sample-app-abc-xyz12",condition="false"} 1"#));
        assert!(text.contains(r#"reason="OOMKilled"} 1"#));
    }

    #[test]
    fn upstream_times_sum_over_retries() {
        let mut l: AccessLine = serde_json::from_str(
            r#"{"msec":1,"method":"GET","path":"/","status":200,"side":"stable","upstream":"a, b","upstream_status":"502, 200","request_time":0.1,"upstream_response_time":"0.001, 0.002","bytes_sent":1,"request_id":"c"}"#,
        )
        .unwrap();
        assert!((l.upstream_seconds().unwrap() - 0.003).abs() < 1e-9);
        l.upstream_response_time = "-".into();
        assert_eq!(l.upstream_seconds(), None);
    }
}
