//! `runner::cluster::run_on_cluster` end to end without a cluster: the fake API server of
//! `tests/common/fake_api.rs` (with a scripted Argo Rollouts or Flagger writing the statuses),
//! a fake ingress on 127.0.0.1 that answers 200 and records each request's `Host:`, and the
//! real load generator, verdict and report in between.
//!
//! The scripted controllers wait on conditions (the release's generation, a patch or a gate
//! POST arriving, requests reaching the ingress), never on time. A run takes the runner's fixed
//! 3 s warm-up, the script's progress and 5 s of observation after the decision: about 10 s.

#[path = "common/fake_api.rs"]
mod fake_api;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use fake_api::{Fake, argo_controller};
use gauntlet::cluster::kube::render;
use gauntlet::runner::cluster::{
    ClusterLimits, ClusterTarget, run_on_cluster, run_on_cluster_with,
};
use gauntlet::runner::{Finished, RunOptions, Status};
use gauntlet::scenario::{Action, Outcome, Scenario};
use gauntlet::timeline::Source;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The longest a script waits for one thing (the runner's warm-up alone is 3 s).
const STEP: Duration = Duration::from_secs(15);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/apps")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// A fake ingress

#[derive(Clone)]
struct Ingress {
    url: String,
    /// The `Host:` of every request, in order.
    hosts: Arc<Mutex<Vec<String>>>,
    /// The `X-App-Version` it answers with (which side serves users).
    version: Arc<Mutex<String>>,
    /// Requests so far.
    count: Arc<watch::Sender<u64>>,
    /// The PromQL of each range query (the same server plays Prometheus for the artifacts).
    queries: Arc<Mutex<Vec<String>>>,
}

async fn query_range(
    State(ing): State<Ingress>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    ing.queries
        .lock()
        .unwrap()
        .push(q.get("query").cloned().unwrap_or_default());
    axum::Json(
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"canary": ""}, "values": [[1.0, "1"]]}
        ]}}),
    )
}

async fn answer(State(ing): State<Ingress>, headers: HeaderMap) -> impl IntoResponse {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ing.hosts.lock().unwrap().push(host);
    ing.count.send_modify(|n| *n += 1);
    let version = ing.version.lock().unwrap().clone();
    (
        StatusCode::OK,
        [("x-app-version", version.clone())],
        format!("{{\"version\":\"{version}\"}}"),
    )
}

impl Ingress {
    async fn start() -> Ingress {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ing = Ingress {
            url: format!("http://{}", listener.local_addr().unwrap()),
            hosts: Arc::default(),
            version: Arc::new(Mutex::new("1.0.0".into())),
            count: Arc::new(watch::Sender::new(0)),
            queries: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/v1/query_range", axum::routing::get(query_range))
            .fallback(answer)
            .with_state(ing.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ing
    }

    fn requests(&self) -> u64 {
        *self.count.borrow()
    }

    /// Waits until `n` more requests than now have arrived.
    async fn wait_more(&self, n: u64) {
        let want = self.requests() + n;
        let mut rx = self.count.subscribe();
        tokio::time::timeout(STEP, rx.wait_for(|c| *c >= want))
            .await
            .unwrap_or_else(|_| panic!("the ingress did not get {n} more requests"))
            .unwrap();
    }

    fn serve(&self, version: &str) {
        *self.version.lock().unwrap() = version.into();
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

struct Rig {
    fake: Fake,
    ingress: Ingress,
    ns: String,
    _stop: watch::Sender<bool>,
    opts: RunOptions,
    target: ClusterTarget,
}

const SEED: u64 = 7;

async fn rig(scenario: &str) -> Rig {
    let fake = Fake::default();
    let ingress = Ingress::start().await;
    let (stop_tx, stop) = watch::channel(false);
    Rig {
        ns: render::scenario_namespace(scenario, SEED),
        // The fake ingress applies a change at once; a test of ingress-nginx's delay sets it.
        target: ClusterTarget::new("kube", fake.client(), ingress.url.clone(), Duration::ZERO),
        fake,
        ingress,
        _stop: stop_tx,
        opts: RunOptions {
            seed: SEED,
            artifacts: None,
            stop,
        },
    }
}

impl Rig {
    fn rollouts(&self) -> String {
        format!("/apis/argoproj.io/v1alpha1/namespaces/{}/rollouts", self.ns)
    }

    fn canaries(&self) -> String {
        format!("/apis/flagger.app/v1beta1/namespaces/{}/canaries", self.ns)
    }

    fn object(&self, coll: &str) -> Value {
        self.fake.get(coll, "sample-app").expect("applied")
    }

    /// The scenario's namespace was deleted, as the last request.
    fn assert_torn_down(&self) {
        let last = self.fake.requests().pop().unwrap();
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("DELETE", &*format!("/api/v1/namespaces/{}", self.ns))
        );
    }

    /// Every request through the ingress carried the namespace's host.
    fn assert_hosts(&self) {
        let hosts = self.ingress.hosts.lock().unwrap().clone();
        assert!(!hosts.is_empty());
        let want = format!("{}.gauntlet.test", self.ns);
        assert!(hosts.iter().all(|h| *h == want), "{want} vs {hosts:?}");
    }
}

/// Waits until the Rollout in `coll` has the release's generation (2) and returns it.
async fn released_rollout(fake: &Fake, coll: &str) -> Value {
    fake.wait_until(STEP, "the release of the Rollout", |f| {
        f.get(coll, "sample-app")
            .is_some_and(|r| r["metadata"]["generation"] == json!(2))
    })
    .await;
    fake.get(coll, "sample-app").unwrap()
}

fn argo(name: &str) -> Scenario {
    Scenario::target(fixture("argo"))
        .named(name)
        .within(Duration::from_secs(30))
        .rate(25.0)
}

fn phases(f: &Finished) -> Vec<String> {
    f.report
        .timeline
        .iter()
        .filter(|e| e.source == Source::Controller && e.kind == "phase")
        .map(|e| e.message.clone())
        .collect()
}

fn has(f: &Finished, source: Source, kind: &str) -> bool {
    f.report
        .timeline
        .iter()
        .any(|e| e.source == source && e.kind == kind)
}

const ABORTED: &str = "RolloutAborted: Rollout aborted update to revision 2: Metric \"success-rate\" assessed Failed due to failed (2) > failureLimit (1)";

/// Argo Rollouts for a bad release: Progressing at once, aborted once the ingress has served
/// some of the release's traffic.
fn abort_after_some_traffic(r: &Rig) -> tokio::task::JoinHandle<()> {
    let (fake, ingress, coll) = (r.fake.clone(), r.ingress.clone(), r.rollouts());
    tokio::spawn(async move {
        let mut ro = released_rollout(&fake, &coll).await;
        ingress.wait_more(10).await;
        ro["status"]["phase"] = json!("Degraded");
        ro["status"]["message"] = json!(ABORTED);
        ro["status"]["abort"] = json!(true);
        fake.put(&coll, ro);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_release_is_rolled_back_and_reported() {
    let mut r = rig("cr-rollback").await;
    r.fake.lock().controller = Some(Box::new(argo_controller));
    let script = abort_after_some_traffic(&r);
    let artifacts = tempfile::tempdir().unwrap();
    let mut opts = r.opts.clone();
    opts.artifacts = Some(artifacts.path().to_path_buf());
    r.target.prometheus_url = Some(r.ingress.url.clone());
    let s = argo("cr-rollback").expect(Outcome::RolledBack);
    let started = Instant::now();
    let f = run_on_cluster(&s, &r.target, &opts, None).await;
    let took = started.elapsed();
    script.await.unwrap();

    let rep = &f.report;
    assert_eq!(f.status, Status::Passed, "{:?}", rep.failure);
    assert!(rep.passed);
    assert_eq!(rep.controller, "argo");
    assert_eq!(rep.outcome.as_deref(), Some("rolled-back"));
    let decided = rep.decision_s.expect("a decision time");
    assert!(decided > 0.0 && decided < 30.0, "{decided}");
    // The load went through the fake ingress with the namespace's host.
    assert!(rep.client.requests > 0, "{:?}", rep.client);
    assert_eq!(rep.client.errors, 0);
    r.assert_hosts();
    // Release, phases, load summary on the timeline; the release after the warm-up.
    let release = rep
        .timeline
        .iter()
        .find(|e| e.source == Source::Harness && e.kind == "release")
        .expect("the release event");
    assert_eq!(release.data["version"], "2.0.0");
    assert_eq!(
        phases(&f),
        [
            "Healthy".to_string(),
            "Progressing: more replicas need to be updated".into(),
            format!("Degraded: {ABORTED}")
        ]
    );
    assert!(has(&f, Source::Harness, "namespace"));
    assert!(has(&f, Source::Load, "summary"));
    // The release was an apply of generation 2 with the release's version.
    let ro = r.object(&r.rollouts());
    assert_eq!(
        ro.pointer("/spec/template/spec/containers/0/env/0/value"),
        Some(&json!("2.0.0"))
    );
    // Artifacts: the report and the namespace's objects, written before the teardown.
    let folder = artifacts.path().join("cr-rollback");
    assert!(folder.join("timeline.json").is_file());
    let objects = std::fs::read_to_string(folder.join("objects.yaml")).unwrap();
    assert!(objects.contains("kind: Rollout"), "{objects}");
    // Range dumps of the namespace's series from the cluster's Prometheus.
    let queries = r.ingress.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 5, "{queries:?}");
    let sel = format!("namespace=\"{}\"", r.ns);
    assert!(queries.iter().all(|q| q.contains(&sel)), "{queries:?}");
    let dump = std::fs::read_to_string(folder.join("prometheus/ingress-requests.json")).unwrap();
    assert!(dump.contains("nginx_ingress_controller_requests"), "{dump}");
    r.assert_torn_down();
    // Warm-up 3 s + decision + 5 s of observation: about 9 s. Without a decision the runner
    // would wait 45 s (the budget and half again), so this tells the two apart.
    assert!(took < s.within, "{took:?}");
    eprintln!("rolled back after {decided:.2}s, run took {took:.1?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_that_does_not_hold_fails_with_the_reason() {
    let r = rig("cr-wrong-outcome").await;
    r.fake.lock().controller = Some(Box::new(argo_controller));
    let script = abort_after_some_traffic(&r);
    let s = argo("cr-wrong-outcome").expect(Outcome::Promoted);
    let f = run_on_cluster(&s, &r.target, &r.opts, None).await;
    script.await.unwrap();
    assert_eq!(f.status, Status::Failed);
    assert!(!f.report.passed);
    assert_eq!(f.report.outcome.as_deref(), Some("rolled-back"));
    let failure = f.report.failure.clone().unwrap();
    assert!(
        failure.contains("expected promoted, but the controller rolled-back"),
        "{failure}"
    );
    // The controller's last status line, not a debug dump of the judgement.
    assert!(failure.contains("Degraded: RolloutAborted"), "{failure}");
    r.assert_torn_down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_that_never_gets_healthy_is_an_infrastructure_failure() {
    let r = rig("cr-no-baseline").await; // no controller: the Rollout never gets a status
    let s = argo("cr-no-baseline");
    let limits = ClusterLimits {
        provision_within: Duration::from_secs(1),
    };
    let started = Instant::now();
    let f = run_on_cluster_with(&s, &r.target, &r.opts, None, &limits).await;
    // The 1 s limit held, not the default 300 s.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(f.status, Status::Infra);
    let failure = f.report.failure.clone().unwrap();
    assert!(
        failure.starts_with("infrastructure: the baseline of Rollout sample-app was not ready"),
        "{failure}"
    );
    assert_eq!(f.report.decision_s, None);
    // Nothing was released and no load was sent.
    assert!(
        !f.report
            .timeline
            .iter()
            .any(|e| e.kind == "release" || e.kind == "released")
    );
    assert_eq!(r.ingress.requests(), 0);
    r.assert_torn_down();
    assert_eq!(ClusterLimits::default().provision_within.as_secs(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_promote_reaches_the_rollout_as_the_plugins_patch() {
    let r = rig("cr-promote").await;
    r.fake.lock().controller = Some(Box::new(argo_controller));
    let status_path = format!("{}/sample-app/status", r.rollouts());
    // Argo Rollouts: the release's analysis is inconclusive, the Rollout pauses; once the
    // promote patch arrives it goes on and is fully promoted.
    let script = {
        let (fake, ingress, coll, status_path) = (
            r.fake.clone(),
            r.ingress.clone(),
            r.rollouts(),
            status_path.clone(),
        );
        tokio::spawn(async move {
            let mut ro = released_rollout(&fake, &coll).await;
            ro["status"] = json!({"observedGeneration": "2", "phase": "Paused",
                "message": "InconclusiveAnalysisRun", "currentStepIndex": 1,
                "controllerPause": true, "stableRS": "aaaa", "currentPodHash": "bbbb",
                "pauseConditions": [{"reason": "InconclusiveAnalysisRun",
                                     "startTime": "2026-11-29T12:00:00Z"}],
                // Paused by the analysis step's own run (the plugin's `isInconclusive`).
                "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}},
                           "currentStepAnalysisRunStatus":
                               {"name": "sample-app-bbbb-2-1", "status": "Inconclusive"}}});
            fake.put(&coll, ro);
            fake.wait_until(STEP, "the promote patch", |f| {
                f.requests()
                    .iter()
                    .any(|q| q.method == "PATCH" && q.path == status_path)
            })
            .await;
            ingress.wait_more(5).await;
            ingress.serve("2.0.0");
            let mut ro = fake.get(&coll, "sample-app").unwrap();
            ro["status"] = json!({"observedGeneration": "2", "phase": "Healthy",
                "currentStepIndex": 4, "stableRS": "bbbb", "currentPodHash": "bbbb",
                "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}});
            fake.put(&coll, ro);
        })
    };
    let s = argo("cr-promote")
        .expect(Outcome::Promoted)
        .action(Duration::from_secs(1), Action::Promote);
    let f = run_on_cluster(&s, &r.target, &r.opts, None).await;
    script.await.unwrap();
    let rep = &f.report;
    assert_eq!(f.status, Status::Passed, "{:?}", rep.failure);
    assert_eq!(rep.outcome.as_deref(), Some("promoted"));
    // The inconclusive pause was no verdict while the promote was still to come.
    assert!(rep.decision_s.unwrap() > 1.0, "{:?}", rep.decision_s);
    assert!(
        phases(&f).contains(&"Paused: InconclusiveAnalysisRun".to_string()),
        "{:?}",
        phases(&f)
    );
    // The plugin's patch, exactly.
    let patches: Vec<_> = r
        .fake
        .requests()
        .into_iter()
        .filter(|q| q.path == status_path)
        .collect();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(patches[0].method, "PATCH");
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patches[0].body,
        r#"{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":2}}"#
    );
    let action = rep
        .timeline
        .iter()
        .find(|e| e.source == Source::Harness && e.kind == "action")
        .expect("the action on the timeline");
    assert_eq!(action.message, "action promote");
    assert!(action.t_s >= 1.0, "{}", action.t_s);
    r.assert_hosts();
    r.assert_torn_down();
}

fn canary_status(phase: &str, weight: u32, applied: &str, promoted: &str) -> Value {
    json!({"phase": phase, "canaryWeight": weight, "failedChecks": 0, "iterations": 0,
           "lastAppliedSpec": applied, "lastPromotedSpec": promoted,
           "conditions": [{"type": "Promoted", "status": "Unknown", "reason": phase,
                           "message": phase}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_gate_reaches_the_loadtester_and_flagger_promotes() {
    let r = rig("cr-gate").await;
    r.fake.lock().controller = Some(Box::new(|coll: &str, o: &mut Value| {
        if coll.ends_with("/canaries") {
            o["status"] = canary_status("Initialized", 0, "h1", "h1");
        }
    }));
    let deployment = format!("/apis/apps/v1/namespaces/{}/deployments/sample-app", r.ns);
    let gate_open = "/api/v1/namespaces/default/services/flagger-loadtester:80/proxy/gate/open";
    // Flagger: the release goes through its steps, waits at the confirm-promotion gate, and
    // promotes once the gate is open.
    let script = {
        let (fake, ingress, coll) = (r.fake.clone(), r.ingress.clone(), r.canaries());
        let deployment = deployment.clone();
        tokio::spawn(async move {
            fake.wait_until(STEP, "the release of the Deployment", |f| {
                f.requests().iter().any(|q| {
                    q.method == "PATCH"
                        && q.path == deployment
                        && q.content_type.as_deref()
                            == Some("application/strategic-merge-patch+json")
                })
            })
            .await;
            let mut c = fake.get(&coll, "sample-app").unwrap();
            c["status"] = canary_status("Progressing", 10, "h2", "h1");
            fake.put(&coll, c.clone());
            ingress.wait_more(5).await;
            c["status"] = canary_status("WaitingPromotion", 80, "h2", "h1");
            fake.put(&coll, c.clone());
            fake.wait_until(STEP, "the gate POST", |f| {
                f.proxied().iter().any(|q| q.path == gate_open)
            })
            .await;
            ingress.serve("2.0.0");
            c["status"] = canary_status("Promoting", 0, "h2", "h1");
            fake.put(&coll, c.clone());
            c["status"] = canary_status("Succeeded", 0, "h2", "h2");
            fake.put(&coll, c);
        })
    };
    let s = Scenario::target(fixture("flagger-gate"))
        .named("cr-gate")
        .within(Duration::from_secs(30))
        .rate(25.0)
        .expect(Outcome::Promoted)
        .action(Duration::from_secs(2), Action::OpenGate);
    let f = run_on_cluster(&s, &r.target, &r.opts, None).await;
    script.await.unwrap();
    let rep = &f.report;
    assert_eq!(f.status, Status::Passed, "{:?}", rep.failure);
    assert_eq!(rep.controller, "flagger");
    assert_eq!(rep.outcome.as_deref(), Some("promoted"));
    assert!(rep.decision_s.unwrap() > 2.0, "{:?}", rep.decision_s);
    let gates = r.fake.proxied();
    assert_eq!(gates.len(), 1, "{gates:#?}");
    assert_eq!(
        (gates[0].method.as_str(), gates[0].path.as_str()),
        ("POST", gate_open)
    );
    let body: Value = serde_json::from_str(&gates[0].body).unwrap();
    assert_eq!(body, json!({"name": "sample-app", "namespace": r.ns}));
    assert_eq!(
        phases(&f),
        [
            "Initialized: Initialized",
            "Progressing: Progressing",
            "WaitingPromotion: WaitingPromotion",
            "Promoting: Promoting",
            "Succeeded: Succeeded"
        ]
    );
    assert!(has(&f, Source::Harness, "gate"));
    r.assert_hosts();
    r.assert_torn_down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_the_canary_has_no_webhook_for_is_refused_before_the_cluster_is_touched() {
    let r = rig("cr-no-hook").await;
    // fixtures/apps/flagger has a load-test hook only.
    let s = Scenario::target(fixture("flagger"))
        .named("cr-no-hook")
        .within(Duration::from_secs(30))
        .action(Duration::from_secs(2), Action::Rollback);
    let f = run_on_cluster(&s, &r.target, &r.opts, None).await;
    assert_eq!(f.status, Status::Failed);
    let failure = f.report.failure.clone().unwrap();
    assert!(failure.contains("`rollback` webhook"), "{failure}");
    assert!(r.fake.requests().is_empty());
}

/// Argo aborts once the ingress has served some of the release; the ingress (playing
/// ingress-nginx, which applies a change only at its next sync) keeps sending users to the
/// release for `lag` after the abort.
async fn rollback_behind_a_slow_ingress(name: &str, lag: Duration) -> Finished {
    let mut r = rig(name).await;
    r.target.ingress_sync = gauntlet::runner::cluster::INGRESS_NGINX_SYNC;
    r.fake.lock().controller = Some(Box::new(argo_controller));
    let (fake, ingress, coll) = (r.fake.clone(), r.ingress.clone(), r.rollouts());
    let script = tokio::spawn(async move {
        let mut ro = released_rollout(&fake, &coll).await;
        ingress.serve("2.0.0");
        ingress.wait_more(10).await;
        ro["status"]["phase"] = json!("Degraded");
        ro["status"]["message"] = json!(ABORTED);
        ro["status"]["abort"] = json!(true);
        fake.put(&coll, ro);
        // The ingress's delay in applying weight 0 is the behaviour under test.
        tokio::time::sleep(lag).await;
        ingress.serve("1.0.0");
    });
    let s = argo(name).expect(Outcome::RolledBack);
    let f = run_on_cluster(&s, &r.target, &r.opts, None).await;
    script.await.unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_ingress_nginx_applies_at_its_next_sync_is_not_a_broken_rollback() {
    // 3 s: within ingress-nginx's sync bound (3.4 s) beyond the 2 s grace.
    let f = rollback_behind_a_slow_ingress("cr-slow-ingress", Duration::from_secs(3)).await;
    assert_eq!(f.status, Status::Passed, "{:?}", f.report.failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_still_served_after_the_ingress_sync_bound_breaks_the_rollback() {
    // 7 s: past the 5.4 s bound, inside the observation after it.
    let f = rollback_behind_a_slow_ingress("cr-stuck-ingress", Duration::from_secs(7)).await;
    assert_eq!(f.status, Status::Failed);
    let failure = f.report.failure.clone().unwrap_or_default();
    assert!(
        failure.contains("after the rollback") && failure.contains("came from the release 2.0.0"),
        "{failure}"
    );
}
