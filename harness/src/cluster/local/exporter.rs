//! The in-process metrics exporter: the series a cluster's ingress-nginx, cAdvisor and
//! kube-state-metrics would give Prometheus, so a user's AnalysisTemplate or MetricTemplate runs
//! unchanged.
//!
//! Ingress series come from nginx's JSON access log, tailed as it grows; each line is one
//! request and carries its own labels, set by the router per location the way ingress-nginx
//! labels it (`namespace` and `ingress` = the Ingress of the route, `service` = its Service,
//! `canary` = the canary upstream name `<namespace>-<service>-<port>` when the canary served it,
//! else empty, `path` = the Ingress rule's path). Pod series are read from a [`PodSource`] at
//! scrape time; [`encode_pods`] renders them alone, for a server of their own.

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

/// The content type of what `/metrics` serves.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One container as the pod series describe it.
#[derive(Debug, Clone)]
pub struct PodSample {
    pub namespace: String,
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
    /// The request's path.
    pub path: String,
    pub status: u16,
    /// `stable` or `canary`: which backend the router chose (`default` for its 404).
    pub side: String,
    #[serde(default)]
    pub namespace: String,
    /// The Ingress of the route that served the request; empty when nginx refused the request
    /// before choosing a route.
    #[serde(default)]
    pub ingress: String,
    #[serde(default)]
    pub service: String,
    /// The canary upstream's name when the canary served the request, else empty.
    #[serde(default)]
    pub canary: String,
    /// The Ingress rule's path of the route.
    #[serde(default)]
    pub route: String,
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

fn record(series: &IngressSeries, line: &AccessLine) {
    // A request nginx answered before picking a location (a malformed one) belongs to no
    // Ingress; ingress-nginx's monitor, which runs per location, does not count it either.
    if line.ingress.is_empty() {
        return;
    }
    let labels = IngressLabels {
        namespace: line.namespace.clone(),
        ingress: line.ingress.clone(),
        service: line.service.clone(),
        status: line.status.to_string(),
        canary: line.canary.clone(),
        method: line.method.clone(),
        // ingress-nginx labels the Ingress rule's path, not the request's.
        path: line.route.clone(),
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
    /// Serves on a free loopback port of the host.
    pub async fn start(
        access_log: PathBuf,
        pods: Option<PodSource>,
    ) -> Result<Exporter, InfraError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(InfraError::io("binding the metrics exporter"))?;
        Exporter::start_on(listener, access_log, pods)
    }

    /// Serves on `listener`, which the caller may have bound anywhere (inside a cluster's
    /// network namespace). Without `pods`, only the ingress series.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        access_log: PathBuf,
        pods: Option<PodSource>,
    ) -> Result<Exporter, InfraError> {
        let series = IngressSeries::new();
        let addr = listener
            .local_addr()
            .map_err(InfraError::io("metrics exporter address"))?;
        let state = Arc::new((series.clone(), pods));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    let pods = state.1.as_ref().map(|p| p()).unwrap_or_default();
                    let body = encode(&state.0, &pods);
                    ([(axum::http::header::CONTENT_TYPE, OPENMETRICS)], body)
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let tailer = tokio::spawn(tail(access_log, series.clone()));
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
async fn tail(path: PathBuf, series: IngressSeries) {
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
                        Ok(line) => record(&series, &line),
                        Err(e) => tracing::warn!("unreadable access log line ({e}): {partial}"),
                    }
                    partial.clear();
                }
            }
        }
    }
}

/// The ingress and pod series, in one exposition.
fn encode(series: &IngressSeries, pods: &[PodSample]) -> String {
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
    register_pods(&mut reg, pods);
    finish(&reg)
}

/// The pod series alone (cAdvisor's and kube-state-metrics' names), for a server that serves
/// them without the ingress's.
pub fn encode_pods(pods: &[PodSample]) -> String {
    let mut reg = Registry::default();
    register_pods(&mut reg, pods);
    finish(&reg)
}

fn finish(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}

fn register_pods(reg: &mut Registry, pods: &[PodSample]) {
    let working_set = Family::<ContainerLabels, Gauge<f64, AtomicU64>>::default();
    let limit = Family::<ContainerLabels, Gauge<f64, AtomicU64>>::default();
    let cpu = Family::<ContainerLabels, Counter<f64, AtomicU64>>::default();
    let restarts = Family::<ContainerLabels, Counter>::default();
    let container_ready = Family::<ContainerLabels, Gauge>::default();
    let pod_ready = Family::<PodConditionLabels, Gauge>::default();
    let terminated = Family::<TerminatedLabels, Gauge>::default();
    for p in pods {
        let c = ContainerLabels {
            namespace: p.namespace.clone(),
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
                    namespace: p.namespace.clone(),
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
                    namespace: p.namespace.clone(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> AccessLine {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn access_lines_become_ingress_nginx_series() {
        let s = IngressSeries::new();
        let canary = line(
            r#"{"msec":1.5,"method":"GET","host":"a","path":"/x","status":500,"side":"canary","namespace":"default","ingress":"sample-app","service":"sample-app-stable","canary":"default-sample-app-canary-80","route":"/","upstream":"127.0.0.1:1","upstream_status":"500","request_time":0.012,"upstream_response_time":"0.010","bytes_sent":10,"request_id":"a"}"#,
        );
        let stable = line(
            r#"{"msec":1.5,"method":"GET","host":"a","path":"/","status":200,"side":"stable","namespace":"default","ingress":"sample-app","service":"sample-app-stable","canary":"","route":"/","upstream":"127.0.0.1:2","upstream_status":"200","request_time":0.002,"upstream_response_time":"-","bytes_sent":10,"request_id":"b"}"#,
        );
        record(&s, &canary);
        record(&s, &stable);
        let text = encode(&s, &[]);
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
    fn each_line_is_labelled_by_its_own_route() {
        let s = IngressSeries::new();
        record(
            &s,
            &line(
                r#"{"msec":1,"method":"POST","path":"/api/v1/x","status":201,"side":"stable","namespace":"team-b","ingress":"api","service":"api","canary":"","route":"/api","upstream":"10.0.0.7:8080","request_time":0.1,"upstream_response_time":"0.1"}"#,
            ),
        );
        // Refused before a location was chosen: no Ingress, not counted.
        record(
            &s,
            &line(
                r#"{"msec":1,"method":"GET","path":"/","status":400,"side":"","namespace":"","ingress":"","service":"","canary":"","route":"","upstream":"","request_time":0,"upstream_response_time":""}"#,
            ),
        );
        let text = encode(&s, &[]);
        assert!(
            text.contains(r#"nginx_ingress_controller_requests{namespace="team-b",ingress="api",service="api",status="201",canary="",method="POST",path="/api"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"status="400""#), "{text}");
        assert_eq!(s.lines.get(), 1);
    }

    fn sample() -> PodSample {
        PodSample {
            namespace: "default".into(),
            pod: "sample-app-abc-xyz12".into(),
            container: "sample-app".into(),
            ready: false,
            restarts: 2,
            last_termination: Some(Termination::OOMKilled),
            working_set: Some(1024),
            cpu_seconds: 0.5,
            memory_limit: Some(64 << 20),
        }
    }

    #[test]
    fn pod_series_carry_kubernetes_labels() {
        let text = encode(&IngressSeries::new(), &[sample()]);
        assert!(text.contains(r#"kube_pod_container_status_restarts_total{namespace="default",pod="sample-app-abc-xyz12",container="sample-app"} 2"#), "{text}");
        assert!(text.contains(r#"container_memory_working_set_bytes{namespace="default",pod="sample-app-abc-xyz12",container="sample-app"} 1024"#));
        assert!(text.contains(r#"kube_pod_status_ready{namespace="default",pod="sample-app-abc-xyz12",condition="false"} 1"#));
        assert!(text.contains(r#"reason="OOMKilled"} 1"#));
    }

    #[test]
    fn pod_series_encode_alone_with_their_own_namespace() {
        let text = encode_pods(&[PodSample {
            namespace: "team-a".into(),
            ..sample()
        }]);
        assert!(text.contains(r#"container_cpu_usage_seconds_total{namespace="team-a",pod="sample-app-abc-xyz12",container="sample-app"} 0.5"#), "{text}");
        assert!(!text.contains("nginx_ingress_controller"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[tokio::test]
    async fn serves_on_a_given_listener() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        std::fs::write(
            &log,
            concat!(
                r#"{"msec":1,"method":"GET","path":"/","status":200,"side":"stable","namespace":"n","ingress":"i","service":"s","canary":"","route":"/","upstream":"10.0.0.7:8080","request_time":0.1,"upstream_response_time":"0.1"}"#,
                "\n"
            ),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let exporter = Exporter::start_on(listener, log, None).unwrap();
        let url = format!("http://{}/metrics", exporter.addr());
        let client = reqwest::Client::new();
        // The tailer reads the log on its first tick; wait for its count, not for a time.
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut ticks = tokio::time::interval(Duration::from_millis(20));
            while exporter.lines() == 0 {
                ticks.tick().await;
            }
        })
        .await
        .expect("the tailer reads the log");
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(
            text.contains(r#"nginx_ingress_controller_requests{namespace="n",ingress="i",service="s",status="200",canary="",method="GET",path="/"} 1"#),
            "{text}"
        );
        assert!(!text.contains("kube_pod_status_ready{"), "{text}");
    }

    #[test]
    fn upstream_times_sum_over_retries() {
        let mut l = line(
            r#"{"msec":1,"method":"GET","path":"/","status":200,"side":"stable","upstream":"a, b","upstream_status":"502, 200","request_time":0.1,"upstream_response_time":"0.001, 0.002","bytes_sent":1,"request_id":"c"}"#,
        );
        assert!((l.upstream_seconds().unwrap() - 0.003).abs() < 1e-9);
        l.upstream_response_time = "-".into();
        assert_eq!(l.upstream_seconds(), None);
    }
}
