//! The kube backend without a cluster: golden files of everything gauntlet renders for a
//! cluster, recorded controller objects translated into the timeline and the verdict, and a
//! small fake API server behind `kube::Client::new` that receives the exact requests (server-side
//! apply, promote / abort / retry patches) and serves watches that drop and resume.
//!
//! Golden files live in `tests/golden/`; on a mismatch the test prints a unified diff, and
//! `GAUNTLET_BLESS=1 cargo test --test kube_api` rewrites them (review the diff before
//! committing).

#[path = "common/fake_api.rs"]
mod fake_api;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_api::{Fake, Recorded, applies, argo_controller, split};
use gauntlet::cluster::kind::install;
use gauntlet::cluster::kube::observe::{Judgement, Observed, Observer};
use gauntlet::cluster::kube::render::{self, RenderOptions};
use gauntlet::cluster::kube::{Action, Gate, KubeCluster, KubeOptions};
use gauntlet::controller::Decision;
use gauntlet::spec::{ControllerKind, Manifests};
use gauntlet::timeline::{Source, Timeline};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Golden files

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/apps")
        .join(name)
}

/// Compares `actual` with the golden file `rel`, or rewrites it under `GAUNTLET_BLESS=1`.
fn golden(rel: &str, actual: &str) {
    let path = golden_dir().join(rel);
    if std::env::var("GAUNTLET_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} unreadable ({e}); create it with GAUNTLET_BLESS=1",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual);
        panic!(
            "{} differs from what was rendered (GAUNTLET_BLESS=1 rewrites it):\n{}",
            path.display(),
            diff.unified_diff()
                .context_radius(3)
                .header("golden", "actual")
        );
    }
}

fn yaml(docs: &[Value]) -> String {
    serde_saphyr::to_string_multiple(docs).unwrap()
}

const NS: &str = "gauntlet-demo-000001";

fn render_opts() -> RenderOptions {
    RenderOptions {
        namespace: NS.into(),
        ingress_host: Some(render::ingress_host(NS)),
        image: None,
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn release_env() -> Vec<(String, String)> {
    env(&[
        ("APP_VERSION", "2.0.0"),
        ("FAULT_ERROR_RATE", "0.3"),
        ("FAULT_ERROR_STATUS", "500"),
    ])
}

#[test]
fn golden_namespace() {
    assert_eq!(render::scenario_namespace("demo", 1), NS);
    golden(
        "kube/namespace.yaml",
        &yaml(&[render::namespace_manifest(NS, "demo")]),
    );
}

#[test]
fn golden_argo_target_baseline_and_release() {
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let p = render::prepare(&manifests, &render_opts()).unwrap();
    assert_eq!(p.workload.controller, ControllerKind::Argo);
    assert_eq!(p.workload.watched.kind, "Rollout");
    assert_eq!(p.workload.template_owner, p.workload.watched);
    let kinds: Vec<&str> = p
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    // Templates, Services, Ingress, then the Rollout.
    assert_eq!(kinds.last(), Some(&"Rollout"));
    assert!(
        kinds.iter().position(|k| *k == "AnalysisTemplate")
            < kinds.iter().position(|k| *k == "Service")
    );
    golden(
        "kube/argo-baseline.yaml",
        &yaml(&p.baseline(&env(&[("APP_VERSION", "1.0.0")]))),
    );
    golden(
        "kube/argo-release.yaml",
        &yaml(&[p.release(&release_env()).body().clone()]),
    );
}

#[test]
fn golden_argo_inconclusive_target() {
    let manifests = gauntlet::spec::load_target(&fixture("argo-inconclusive")).unwrap();
    let p = render::prepare(&manifests, &render_opts()).unwrap();
    golden(
        "kube/argo-inconclusive-baseline.yaml",
        &yaml(&p.baseline(&env(&[("APP_VERSION", "1.0.0")]))),
    );
}

#[test]
fn golden_flagger_target_baseline_and_release() {
    // Manifests::load, not load_target: this is a shape test of the kube backend, independent of
    // the Flagger emulation's validation.
    let manifests = Manifests::load(&golden_dir().join("targets/flagger")).unwrap();
    let p = render::prepare(&manifests, &render_opts()).unwrap();
    assert_eq!(p.workload.controller, ControllerKind::Flagger);
    assert_eq!(p.workload.watched.kind, "Canary");
    assert_eq!(p.workload.template_owner.kind, "Deployment");
    golden(
        "kube/flagger-baseline.yaml",
        &yaml(&p.baseline(&env(&[("APP_VERSION", "1.0.0")]))),
    );
    golden(
        "kube/flagger-release.yaml",
        &yaml(&[p.release(&release_env()).body().clone()]),
    );
    // The MetricTemplate referenced in the Canary's own namespace moved with it.
    let canary = p.objects.iter().find(|o| o["kind"] == "Canary").unwrap();
    assert_eq!(
        canary.pointer("/spec/analysis/metrics/1/templateRef/namespace"),
        Some(&json!(NS))
    );
}

/// On a cluster the Flagger fixtures' loadtester runs `hey` against the ingress controller; the
/// rule it must reach answers only the scenario's host, so `hey` has to send it.
#[test]
fn the_loadtesters_hey_sends_the_host_the_ingress_rule_answers() {
    for target in ["flagger", "flagger-gate"] {
        let manifests = Manifests::load(&fixture(target)).unwrap();
        let p = render::prepare(&manifests, &render_opts()).unwrap();
        let ingress = p.objects.iter().find(|o| o["kind"] == "Ingress").unwrap();
        let host = ingress
            .pointer("/spec/rules/0/host")
            .and_then(Value::as_str)
            .unwrap();
        let canary = p.objects.iter().find(|o| o["kind"] == "Canary").unwrap();
        let hey: Vec<&str> = canary
            .pointer("/spec/analysis/webhooks")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(|h| h.pointer("/metadata/cmd").and_then(Value::as_str))
            .filter(|c| c.starts_with("hey "))
            .collect();
        assert!(!hey.is_empty(), "{target}: no hey command");
        for cmd in hey {
            assert!(
                cmd.contains(&format!(" -host {host} ")),
                "{target}: `{cmd}` does not send Host: {host}"
            );
        }
    }
}

#[test]
fn an_image_override_and_server_fields_are_handled() {
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let mut opts = render_opts();
    opts.image = Some("registry.example/sample-app:ci".into());
    let p = render::prepare(&manifests, &opts).unwrap();
    assert_eq!(
        p.template_owner()
            .pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("registry.example/sample-app:ci"))
    );
    let mut dumped = json!({"metadata": {"name": "x", "uid": "u", "resourceVersion": "9",
        "managedFields": [], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "status": {"phase": "Healthy"}});
    render::strip_server_fields(&mut dumped);
    assert_eq!(dumped, json!({"metadata": {"name": "x"}}));
}

#[test]
fn golden_prometheus_manifest_as_applied() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/kind/prometheus.yaml");
    let docs = install::parse_docs(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        names.contains(&"Service/prometheus".to_string()),
        "{names:?}"
    );
    // The address the fixtures' AnalysisTemplates query.
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "prometheus")
        .unwrap();
    assert_eq!(svc["metadata"]["namespace"], "monitoring");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9090);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30090);
    // The scrape config is valid YAML with the four jobs.
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let config: Value =
        serde_saphyr::from_str(cm["data"]["prometheus.yml"].as_str().unwrap()).unwrap();
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        [
            "kubernetes-pods",
            "ingress-nginx",
            "kubelet-cadvisor",
            "kube-state-metrics"
        ]
    );
    golden("kind/prometheus.applied.yaml", &yaml(&docs));
}

#[test]
fn golden_ingress_nginx_with_metrics() {
    let text = std::fs::read_to_string(golden_dir().join("kind/ingress-nginx.input.yaml")).unwrap();
    let mut docs = install::parse_docs(&text).unwrap();
    install::place(&mut docs, "ingress-nginx");
    install::ingress_nginx_with_metrics(&mut docs);
    install::apply_order(&mut docs);
    let args = docs[2]
        .pointer("/spec/template/spec/containers/0/args")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(args.contains(&json!("--enable-metrics=true")));
    assert!(!args.contains(&json!("--enable-metrics=false")));
    golden("kind/ingress-nginx.applied.yaml", &yaml(&docs));
}

#[test]
fn golden_flagger_overlay() {
    let text = std::fs::read_to_string(golden_dir().join("kind/flagger.input.yaml")).unwrap();
    let mut docs = install::parse_docs(&text).unwrap();
    install::flagger_overlay(&mut docs, "flagger-system");
    install::apply_order(&mut docs);
    assert_eq!(docs[0]["kind"], "CustomResourceDefinition");
    let crb = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(crb["subjects"][0]["namespace"], "flagger-system");
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(dep["metadata"]["namespace"], "flagger-system");
    assert_eq!(
        dep.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!(install::FLAGGER_IMAGE))
    );
    golden("kind/flagger.applied.yaml", &yaml(&docs));
}

// ---------------------------------------------------------------------------------------------
// Recorded objects -> timeline + verdict

/// Feeds `recorded/<case>/objects.yaml` to an observer and renders what came out in the shape
/// of `expected.yaml`.
fn translate(case: &str) -> String {
    let dir = golden_dir().join("recorded").join(case);
    let text = std::fs::read_to_string(dir.join("objects.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let controller = if case.starts_with("flagger") {
        ControllerKind::Flagger
    } else {
        ControllerKind::Argo
    };
    let mut o = Observer::new(controller, "sample-app");
    let mut lines = Vec::new();
    let mut decided: Option<(usize, String)> = None;
    for (i, d) in docs.into_iter().enumerate() {
        if d["kind"] == "GauntletRelease" {
            o.arm(d["generation"].as_i64());
            continue;
        }
        let observed = Observed::from_object(d).expect("a watched kind");
        for e in o.observe(&observed) {
            lines.push(format!("{} {}: {}", e.source, e.kind, e.message));
        }
        if o.is_armed() && decided.is_none() {
            match o.judgement() {
                Judgement::Decided(d) => decided = Some((i, d.to_string())),
                Judgement::Invalid(m) => decided = Some((i, format!("invalid ({m})"))),
                Judgement::Pending => {}
            }
        }
    }
    let mut out = String::from(
        "# What the observer writes to the timeline for objects.yaml, one line per event\n\
         # (`<source> <kind>: <message>`), and the verdict with the index (0-based) of the\n\
         # object after which it was first reached. Rewritten by GAUNTLET_BLESS=1.\n",
    );
    match &decided {
        Some((i, d)) => out.push_str(&format!("decision: {d}\ndecidedAt: {i}\n")),
        None => out.push_str("decision: pending\ndecidedAt: null\n"),
    }
    out.push_str("timeline:\n");
    for l in lines {
        out.push_str(&format!("  - {}\n", serde_json::to_string(&l).unwrap()));
    }
    out
}

fn recorded(case: &str) {
    golden(&format!("recorded/{case}/expected.yaml"), &translate(case));
}

#[test]
fn recorded_argo_success_is_promoted() {
    recorded("argo-success");
}

#[test]
fn recorded_argo_analysis_abort_is_rolled_back() {
    recorded("argo-analysis-abort");
}

#[test]
fn recorded_argo_deadline_abort_is_rolled_back() {
    recorded("argo-deadline-abort");
}

#[test]
fn recorded_argo_inconclusive_is_paused() {
    recorded("argo-inconclusive-pause");
}

#[test]
fn recorded_flagger_succeeded_is_promoted() {
    recorded("flagger-succeeded");
}

#[test]
fn recorded_flagger_failed_is_rolled_back() {
    recorded("flagger-failed");
}

#[test]
fn handle_failed_promotion_leaving_all_traffic_on_the_canary_is_promoted() {
    let mut o = Observer::new(ControllerKind::Flagger, "sample-app");
    o.arm(None);
    let canary = |phase: &str, weight: u64| {
        Observed::Target(json!({
            "kind": "Canary", "metadata": {"name": "sample-app", "generation": 2},
            "status": {"phase": phase, "canaryWeight": weight, "lastAppliedSpec": "after"}}))
    };
    o.observe(&canary("Failed", 100));
    assert!(matches!(
        o.judgement(),
        Judgement::Decided(Decision::Promoted)
    ));
    o.observe(&canary("Failed", 0));
    assert!(matches!(
        o.judgement(),
        Judgement::Decided(Decision::RolledBack)
    ));
}

#[test]
fn an_invalid_spec_is_not_a_verdict() {
    let mut o = Observer::new(ControllerKind::Argo, "sample-app");
    o.arm(Some(1));
    o.observe(&Observed::Target(json!({
        "kind": "Rollout", "metadata": {"name": "sample-app", "generation": 1},
        "status": {"observedGeneration": "1", "phase": "Degraded",
                   "message": "InvalidSpec: The Rollout \"sample-app\" is invalid: spec.strategy.canary.steps[0].setHeaderRoute: Invalid value"}})));
    assert!(matches!(o.judgement(), Judgement::Invalid(m) if m.starts_with("InvalidSpec")));
}

// ---------------------------------------------------------------------------------------------
// Against the fake API server (tests/common/fake_api.rs)

const ROLLOUTS: &str = "/apis/argoproj.io/v1alpha1/namespaces/gauntlet-demo-000001/rollouts";

#[tokio::test]
async fn provision_release_and_a_watch_that_drops_reach_the_verdict() {
    let fake = Fake::default();
    fake.lock().controller = Some(Box::new(argo_controller));
    let timeline = Timeline::new();
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let opts = KubeOptions::for_scenario("demo", 1);
    assert_eq!(opts.namespace, NS);
    let mut kc = KubeCluster::new(fake.client(), &manifests, opts, timeline.clone()).unwrap();
    kc.provision(&env(&[("APP_VERSION", "1.0.0")]), Duration::from_secs(10))
        .await
        .unwrap();

    // Every object went out as a server-side apply with our field manager, in order.
    let sent = applies(&fake);
    let expected: Vec<Value> = std::iter::once(render::namespace_manifest(NS, "demo"))
        .chain(kc.prepared().baseline(&env(&[("APP_VERSION", "1.0.0")])))
        .collect();
    assert_eq!(sent.len(), expected.len());
    assert_eq!(sent[0].path, "/api/v1/namespaces/gauntlet-demo-000001");
    for (r, want) in sent.iter().zip(&expected) {
        assert_eq!(
            r.query, "&force=true&fieldManager=gauntlet",
            "{} {}",
            r.method, r.path
        );
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(&body, want, "{}", r.path);
        assert_eq!(r.body, serde_json::to_string(want).unwrap());
    }
    assert_eq!(sent.last().unwrap().path, format!("{ROLLOUTS}/sample-app"));
    assert!(kc.status().baseline_ready);

    // The release: the Rollout with the release's pod template.
    kc.release(&release_env()).await.unwrap();
    let release = applies(&fake).pop().unwrap();
    assert_eq!(release.path, format!("{ROLLOUTS}/sample-app"));
    assert_eq!(release.query, "&force=true&fieldManager=gauntlet");
    let body: Value = serde_json::from_str(&release.body).unwrap();
    assert_eq!(&body, kc.prepared().release(&release_env()).body());

    // Progressing is no verdict; wait until the watch has seen it.
    let mut rx = kc.subscribe();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.line.starts_with("Progressing")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(kc.status().judgement, Judgement::Pending);
    let watches_before = fake
        .requests()
        .iter()
        .filter(|r| r.path == ROLLOUTS && r.param("watch").is_some())
        .count();

    // The connection drops, the first reconnect fails, and meanwhile the controller aborts.
    fake.lock().fail_next_watch.insert(ROLLOUTS.to_string());
    fake.drop_watchers(ROLLOUTS);
    let mut ro = fake.get(ROLLOUTS, "sample-app").unwrap();
    let msg = "RolloutAborted: Rollout aborted update to revision 2: Background analysis phase error/failed: Metric \"success-rate\" assessed Failed due to failed (2) > failureLimit (1)";
    ro["status"]["phase"] = json!("Degraded");
    ro["status"]["message"] = json!(msg);
    ro["status"]["abort"] = json!(true);
    fake.put(ROLLOUTS, ro);

    let decision = kc.wait_decision(Duration::from_secs(20)).await.unwrap();
    assert_eq!(decision, Some(Decision::RolledBack));

    // It resumed: more watch requests, the last from the resourceVersion it had seen.
    let watches: Vec<Recorded> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == ROLLOUTS && r.param("watch").is_some())
        .collect();
    assert!(watches.len() >= watches_before + 2, "{watches:#?}");
    assert!(watches.last().unwrap().param("resourceVersion").is_some());
    let events = timeline.snapshot();
    assert!(
        events
            .iter()
            .any(|e| e.source == Source::Harness && e.kind == "watch-error"),
        "the failed reconnect is on the timeline"
    );
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "phase")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        phases,
        [
            "Healthy",
            "Progressing: more replicas need to be updated",
            &format!("Degraded: {msg}")
        ]
    );

    kc.teardown().await.unwrap();
    let last = fake.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/api/v1/namespaces/gauntlet-demo-000001")
    );
}

#[tokio::test]
async fn a_baseline_that_never_gets_healthy_is_an_infrastructure_error_in_time() {
    let fake = Fake::default(); // no controller: the Rollout never gets a status
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = kc
        .provision(
            &env(&[("APP_VERSION", "1.0.0")]),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.contains("the baseline of Rollout sample-app"), "{e}");
}

/// A Rollout paused at its analysis step; with `InconclusiveAnalysisRun`, by that step's own
/// run.
fn paused_rollout(reason: &str) -> Value {
    let mut ro = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "sample-app", "namespace": NS, "generation": 2},
           "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}]}}},
           "status": {"observedGeneration": "2", "phase": "Paused", "message": reason,
                      "currentStepIndex": 1, "controllerPause": true,
                      "pauseConditions": [{"reason": reason, "startTime": "2026-11-29T12:00:00Z"}],
                      "stableRS": "aaaa", "currentPodHash": "bbbb"}});
    if reason == "InconclusiveAnalysisRun" {
        ro["status"]["canary"] = json!({"currentStepAnalysisRunStatus":
            {"name": "sample-app-bbbb-2-1", "status": "Inconclusive"}});
    }
    ro
}

fn action_patches(fake: &Fake) -> Vec<(String, String, String)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            (r.path, r.query, r.body)
        })
        .collect()
}

#[tokio::test]
async fn promote_abort_retry_send_the_plugins_status_patches() {
    let fake = Fake::default();
    fake.put(ROLLOUTS, paused_rollout("InconclusiveAnalysisRun"));
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    let status = format!("{ROLLOUTS}/sample-app/status");
    kc.act(Action::Promote).await.unwrap();
    assert_eq!(
        action_patches(&fake),
        [(
            status.clone(),
            String::new(),
            r#"{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":2}}"#
                .to_string()
        )]
    );
    kc.act(Action::Abort).await.unwrap();
    kc.act(Action::Retry).await.unwrap();
    let sent = action_patches(&fake);
    assert_eq!(sent[1].2, r#"{"status":{"abort":true}}"#);
    assert_eq!(sent[2].2, r#"{"status":{"abort":false}}"#);
    assert!(sent.iter().all(|(p, _, _)| *p == status));
    // The fake applied them as a merge patch would.
    let ro = fake.get(ROLLOUTS, "sample-app").unwrap();
    assert_eq!(ro["status"]["abort"], json!(false));
    assert!(ro["status"].get("pauseConditions").is_none());
}

#[tokio::test]
async fn without_a_status_subresource_the_patch_goes_to_the_main_resource() {
    let fake = Fake::default();
    fake.lock().no_status_subresource = true;
    fake.put(ROLLOUTS, paused_rollout("CanaryPauseStep"));
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    kc.act(Action::Promote).await.unwrap();
    let body = r#"{"status":{"pauseConditions":null}}"#.to_string();
    assert_eq!(
        action_patches(&fake),
        [
            (
                format!("{ROLLOUTS}/sample-app/status"),
                String::new(),
                body.clone()
            ),
            (format!("{ROLLOUTS}/sample-app"), String::new(), body)
        ]
    );
}

#[tokio::test]
async fn flagger_retry_patches_the_template_and_refuses_promote() {
    let fake = Fake::default();
    let deployments = "/apis/apps/v1/namespaces/gauntlet-demo-000001/deployments";
    fake.put(
        deployments,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sample-app", "namespace": NS},
               "spec": {"template": {"metadata": {"labels": {"app": "sample-app"}}}}}),
    );
    let manifests = Manifests::load(&golden_dir().join("targets/flagger")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    let e = kc.act(Action::Promote).await.unwrap_err().to_string();
    assert!(e.contains("webhooks"), "{e}");
    kc.act(Action::Retry).await.unwrap();
    let r = fake.requests().pop().unwrap();
    assert_eq!(r.path, format!("{deployments}/sample-app"));
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        body.pointer("/spec/template/metadata/annotations/gauntlet.dev~1retry")
            .is_some(),
        "{body}"
    );
}

#[test]
fn the_fake_splits_paths_like_the_api() {
    assert_eq!(
        split("/api/v1/namespaces/ns"),
        ("/api/v1/namespaces".into(), Some("ns".into()), None)
    );
    assert_eq!(
        split(&format!("{ROLLOUTS}/x/status")),
        (ROLLOUTS.into(), Some("x".into()), Some("status".into()))
    );
}

const CANARIES: &str = "/apis/flagger.app/v1beta1/namespaces/gauntlet-demo-000001/canaries";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/gauntlet-demo-000001/deployments";

fn canary_status(phase: &str, applied: &str, promoted: &str) -> Value {
    json!({"phase": phase, "canaryWeight": 0, "failedChecks": 0, "iterations": 0,
           "lastAppliedSpec": applied, "lastPromotedSpec": promoted,
           "conditions": [{"type": "Promoted", "status": "Unknown", "reason": phase, "message": phase}]})
}

#[tokio::test]
async fn flagger_release_is_a_strategic_patch_and_succeeded_is_promoted() {
    let fake = Fake::default();
    fake.lock().controller = Some(Box::new(|coll: &str, o: &mut Value| {
        if coll.ends_with("/canaries") {
            o["status"] = canary_status("Initialized", "h1", "h1");
        }
    }));
    let timeline = Timeline::new();
    let manifests = Manifests::load(&golden_dir().join("targets/flagger")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        timeline.clone(),
    )
    .unwrap();
    kc.provision(&env(&[("APP_VERSION", "1.0.0")]), Duration::from_secs(10))
        .await
        .unwrap();
    kc.release(&release_env()).await.unwrap();
    let r = fake.requests().pop().unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        (
            "PATCH",
            &*format!("{DEPLOYMENTS}/sample-app"),
            "&fieldManager=gauntlet"
        )
    );
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(&body, kc.prepared().release(&release_env()).body());

    // Flagger has not noticed yet: the same Initialized Canary is no verdict.
    let mut c = fake.get(CANARIES, "sample-app").unwrap();
    fake.put(CANARIES, c.clone());
    c["status"] = canary_status("Progressing", "h2", "h1");
    fake.put(CANARIES, c.clone());
    c["status"] = canary_status("Succeeded", "h2", "h2");
    fake.put(CANARIES, c);
    let d = kc.wait_decision(Duration::from_secs(10)).await.unwrap();
    assert_eq!(d, Some(Decision::Promoted));
    let phases: Vec<String> = timeline
        .snapshot()
        .into_iter()
        .filter(|e| e.kind == "phase")
        .map(|e| e.message)
        .collect();
    assert_eq!(
        phases,
        [
            "Initialized: Initialized",
            "Progressing: Progressing",
            "Succeeded: Succeeded"
        ]
    );
}

#[tokio::test]
async fn artifacts_hold_the_objects_events_and_logs() {
    let fake = Fake::default();
    fake.put(ROLLOUTS, paused_rollout("CanaryPauseStep"));
    let pods = "/api/v1/namespaces/gauntlet-demo-000001/pods";
    fake.put(
        pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sample-app-bbbb-x1", "namespace": NS}}),
    );
    fake.put(
        "/api/v1/namespaces/gauntlet-demo-000001/events",
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": "e1", "namespace": NS},
               "involvedObject": {"kind": "Rollout", "name": "sample-app"},
               "reason": "RolloutPaused", "message": "Rollout is paused (CanaryPauseStep)"}),
    );
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let mut kc = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = kc.collect_artifacts(dir.path()).await;
    for (path, result) in &written {
        assert!(result.is_ok(), "{}: {result:?}", path.display());
    }
    let objects = std::fs::read_to_string(dir.path().join("objects.yaml")).unwrap();
    assert!(objects.contains("kind: Rollout"), "{objects}");
    assert!(objects.contains("sample-app-bbbb-x1"), "{objects}");
    let events = std::fs::read_to_string(dir.path().join("events.yaml")).unwrap();
    assert!(events.contains("RolloutPaused"), "{events}");
    assert!(dir.path().join("logs/sample-app-bbbb-x1.log").is_file());
}

#[test]
fn every_fixture_target_can_be_placed_on_a_cluster() {
    // The targets the suites use, whatever their controller: each one prepares, with its
    // workload found (shapes are golden-tested above for argo and the test Flagger target).
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps");
    for entry in std::fs::read_dir(apps).unwrap() {
        let dir = entry.unwrap().path();
        let manifests = Manifests::load(&dir).unwrap();
        let p = render::prepare(&manifests, &render_opts())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(
            p.objects
                .iter()
                .all(|o| o["kind"] == "ClusterAnalysisTemplate"
                    || o["metadata"]["namespace"] == NS),
            "{}",
            dir.display()
        );
        // The sample app's image exists only in the node (`kind load`): with `:latest` the
        // kubelet's default policy is Always, which would pull from Docker Hub and fail.
        for o in &p.objects {
            for c in containers(o) {
                if c["image"] == gauntlet::cluster::kind::SAMPLE_APP_IMAGE {
                    assert!(
                        matches!(
                            c["imagePullPolicy"].as_str(),
                            Some("IfNotPresent" | "Never")
                        ),
                        "{}: container {} of {} pulls its kind-loaded image: {c}",
                        dir.display(),
                        c["name"],
                        o["metadata"]["name"]
                    );
                }
            }
        }
    }
}

/// The containers of a pod template's owner.
fn containers(o: &Value) -> Vec<&Value> {
    o.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Flagger's gates through the API server's service proxy

fn flagger_cluster(fake: &Fake, target: &str) -> KubeCluster {
    flagger_cluster_on(fake, target, Timeline::new())
}

fn flagger_cluster_on(fake: &Fake, target: &str, timeline: Timeline) -> KubeCluster {
    let manifests = Manifests::load(&fixture(target)).unwrap();
    KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        timeline,
    )
    .unwrap()
}

#[tokio::test] // kube::Client::new needs a runtime
async fn the_gate_fixture_resolves_to_the_kind_loadtester() {
    // The kind install puts the loadtester in `default` (cluster/kind/install.rs), where the
    // fixture's webhooks point.
    let kc = flagger_cluster(&Fake::default(), "flagger-gate");
    let call = kc.gate_call(Gate::Open).unwrap();
    assert_eq!(call.hook, "approve-promotion");
    assert_eq!(
        (
            call.service.namespace.as_str(),
            call.service.name.as_str(),
            call.service.port
        ),
        ("default", "flagger-loadtester", 80)
    );
    let rollback = kc.gate_call(Gate::Rollback).unwrap();
    assert_eq!(rollback.hook, "manual-rollback");
    assert_eq!(
        rollback.path,
        "/api/v1/namespaces/default/services/flagger-loadtester:80/proxy/rollback/open"
    );
}

#[tokio::test]
async fn gates_are_posted_to_the_loadtester_through_the_service_proxy() {
    let fake = Fake::default();
    let timeline = Timeline::new();
    let mut kc = flagger_cluster_on(&fake, "flagger-gate", timeline.clone());
    for gate in [Gate::Open, Gate::Close, Gate::Rollback] {
        kc.gate(gate).await.unwrap();
    }
    let sent: Vec<(String, String, Option<String>, Value)> = fake
        .proxied()
        .into_iter()
        .map(|r| {
            (
                r.method,
                r.path,
                r.content_type,
                serde_json::from_str(&r.body).unwrap(),
            )
        })
        .collect();
    let proxy = "/api/v1/namespaces/default/services/flagger-loadtester:80/proxy";
    let body = json!({"name": "sample-app", "namespace": NS});
    let json = Some("application/json".to_string());
    assert_eq!(
        sent,
        [
            (
                "POST".into(),
                format!("{proxy}/gate/open"),
                json.clone(),
                body.clone()
            ),
            (
                "POST".into(),
                format!("{proxy}/gate/close"),
                json.clone(),
                body.clone()
            ),
            ("POST".into(), format!("{proxy}/rollback/open"), json, body),
        ]
    );
    // Exactly these bytes: the loadtester reads `name` and `namespace`.
    assert_eq!(
        fake.proxied()[0].body,
        r#"{"name":"sample-app","namespace":"gauntlet-demo-000001"}"#
    );
    let gates: Vec<String> = timeline
        .snapshot()
        .into_iter()
        .filter(|e| e.source == Source::Harness && e.kind == "gate")
        .map(|e| e.message)
        .collect();
    assert_eq!(gates.len(), 3, "{gates:?}");
    assert!(
        gates[0].starts_with("open-gate: /gate/open on default/flagger-loadtester:80"),
        "{gates:?}"
    );
}

#[tokio::test]
async fn a_gate_the_canary_lacks_or_the_cluster_refuses_is_a_clear_error() {
    let fake = Fake::default();
    // fixtures/apps/flagger has a load-test hook only.
    let mut kc = flagger_cluster(&fake, "flagger");
    let e = kc.gate_call(Gate::Open).unwrap_err();
    assert!(e.contains("`confirm-promotion` webhook"), "{e}");
    let e = kc.gate(Gate::Rollback).await.unwrap_err().to_string();
    assert!(e.contains("`rollback` webhook"), "{e}");
    assert!(fake.proxied().is_empty());

    // Argo has no gates.
    let manifests = gauntlet::spec::load_target(&fixture("argo")).unwrap();
    let argo = KubeCluster::new(
        fake.client(),
        &manifests,
        KubeOptions::for_scenario("demo", 1),
        Timeline::new(),
    )
    .unwrap();
    let e = argo.gate_call(Gate::Open).unwrap_err();
    assert!(e.contains("Rollout sample-app"), "{e}");

    // The API server cannot reach the loadtester.
    fake.lock().proxy_error = Some((
        503,
        "no endpoints available for service \"flagger-loadtester\"".into(),
    ));
    let mut kc = flagger_cluster(&fake, "flagger-gate");
    let e = kc.gate(Gate::Open).await.unwrap_err().to_string();
    assert!(
        e.contains("Service default/flagger-loadtester port 80")
            && e.contains("no endpoints available"),
        "{e}"
    );
}
