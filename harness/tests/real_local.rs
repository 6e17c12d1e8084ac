//! The real tier of the local backend (`--controller real`): a Kubernetes control plane built
//! from the pinned Go modules, gauntlet's node, the real Argo Rollouts and Flagger.
//!
//! Needs what the real tier needs: root (network namespaces, cgroups), iproute2 and iptables,
//! nginx and Prometheus, and the control plane's binaries (built on first use with Go, or
//! `GAUNTLET_CONTROLPLANE_BIN`). The first test builds them if needed (minutes, once).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet::cluster::kube::{KubeCluster, KubeOptions};
use gauntlet::cluster::local::Binaries;
use gauntlet::cluster::local::controlplane;
use gauntlet::cluster::local::real::{RealCluster, RealOptions};
use gauntlet::spec::ControllerKind;
use gauntlet::timeline::Timeline;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::wait::await_condition;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real tier cannot run without root: say so plainly rather than fail obscurely.
fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the real tier needs root (network namespaces, cgroups); run the tests as root"
    );
}

async fn start(kinds: Vec<ControllerKind>) -> RealCluster {
    let bins = Binaries::locate().expect("nginx, Prometheus and the sample app");
    let cp = controlplane::binaries()
        .await
        .expect("the control plane's binaries");
    RealCluster::start(RealOptions {
        controllers: kinds,
        bins,
        controlplane: cp,
        timeline: Timeline::new(),
        progress: std::sync::Arc::new(|l: &str| eprintln!("{l}")),
        backoff: Default::default(),
    })
    .await
    .unwrap_or_else(|e| panic!("the cluster did not start: {e}"))
}

/// Applies a fixture target into `namespace` with its own ingress host, as the kube backend
/// does, and waits for the controller's baseline.
async fn baseline(cluster: &RealCluster, fixture: &str, namespace: &str) -> KubeCluster {
    let manifests = gauntlet::spec::load_target(&root().join(fixture)).unwrap();
    cluster.publish_for(&manifests).await.unwrap();
    let opts = KubeOptions {
        scenario: fixture.into(),
        namespace: namespace.into(),
        ingress_host: Some(format!("{namespace}.gauntlet.test")),
        image: None,
        keep_namespace: true,
    };
    let mut kc = KubeCluster::new(cluster.client(), &manifests, opts, Timeline::new()).unwrap();
    if let Err(e) = kc.provision(&[], Duration::from_secs(180)).await {
        dump_logs(cluster);
        panic!("{fixture}: the baseline was not in place: {e}");
    }
    kc
}

fn dump_logs(cluster: &RealCluster) {
    for f in std::fs::read_dir(cluster.logs())
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        eprintln!(
            "== {}\n{}",
            f.path().display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// GETs `/` through the ingress with `Host: host`; the answer's `X-App-Version` and body.
async fn through_ingress(ingress: &str, host: &str) -> (Option<String>, String) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .get(format!("{ingress}/"))
            .header("Host", host)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            let v = r
                .headers()
                .get("x-app-version")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            return (v, r.text().await.unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "{host}: no successful answer through the ingress within 30s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `status.phase` of the watched Rollout or Canary.
async fn phase(cluster: &RealCluster, kc: &KubeCluster, plural: &str, group: &str) -> String {
    let version = if group == "argoproj.io" {
        "v1alpha1"
    } else {
        "v1beta1"
    };
    let kind = if plural == "rollouts" {
        "Rollout"
    } else {
        "Canary"
    };
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), kc.namespace(), &ar);
    let o = api.get("sample-app").await.unwrap();
    o.data["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn pod(name: &str, image: &str, env: &[(&str, &str)], memory: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "app",
                "image": image,
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                "resources": {"limits": {"memory": memory}},
            }],
        },
    }))
    .unwrap()
}

fn container(p: Option<&Pod>) -> Value {
    p.and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| serde_json::to_value(c).unwrap())
        .unwrap_or(Value::Null)
}

async fn await_pod(api: &Api<Pod>, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Pod {
    let within = Duration::from_secs(120);
    let got = tokio::time::timeout(
        within,
        await_condition(api.clone(), name, |p: Option<&Pod>| f(&container(p))),
    )
    .await;
    match got {
        Ok(Ok(Some(p))) => p,
        other => {
            let now = api.get(name).await.ok();
            panic!(
                "pod {name}: {what} not seen within {within:?} ({:?}); status now: {}",
                other.err(),
                serde_json::to_string_pretty(&now.and_then(|p| p.status)).unwrap()
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_controllers_bring_up_their_baselines_and_the_node_reports_pods_as_a_kubelet() {
    require_root();
    let started = Instant::now();
    let mut cluster = start(vec![ControllerKind::Argo, ControllerKind::Flagger]).await;
    eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());

    // Argo Rollouts: the Rollout Healthy, served through the ingress by its pods.
    let t = Instant::now();
    let argo = baseline(&cluster, "fixtures/apps/argo", "argo").await;
    eprintln!("argo baseline Healthy in {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(
        phase(&cluster, &argo, "rollouts", "argoproj.io").await,
        "Healthy"
    );
    let (version, body) = through_ingress(cluster.ingress_url(), "argo.gauntlet.test").await;
    assert_eq!(version.as_deref(), Some("1.0.0"), "{body}");
    assert!(body.contains("\"hostname\":\"sample-app-"), "{body}");

    // Flagger: the Canary Initialized, the primary serving through the apex Service.
    let t = Instant::now();
    let flagger = baseline(&cluster, "fixtures/apps/flagger", "flagger").await;
    eprintln!(
        "flagger baseline Initialized in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        phase(&cluster, &flagger, "canaries", "flagger.app").await,
        "Initialized"
    );
    let (version, body) = through_ingress(cluster.ingress_url(), "flagger.gauntlet.test").await;
    assert_eq!(version.as_deref(), Some("1.0.0"), "{body}");
    assert!(body.contains("sample-app-primary-"), "{body}");

    // Prometheus found the pods and the ingress through the API, with a cluster's labels.
    let prom = cluster.prom().clone();
    let series = |q: &'static str| {
        let prom = prom.clone();
        async move {
            matches!(prom.query(q).await, Ok(gauntlet::prom::QueryValue::Vector(v)) if !v.is_empty())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for q in [
        r#"container_memory_working_set_bytes{namespace="argo",container="sample-app"}"#,
        r#"http_requests_total{namespace="argo",app="sample-app"}"#,
        r#"nginx_ingress_controller_requests{namespace="argo",ingress="sample-app"}"#,
    ] {
        while !series(q).await {
            assert!(Instant::now() < deadline, "Prometheus has no {q}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The node as a kubelet: a killed container restarts, counted.
    let client = cluster.client();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    api.create(
        &pp,
        &pod("crasher", "gauntlet/sample-app:latest", &[], "64Mi"),
    )
    .await
    .unwrap();
    let p = await_pod(&api, "crasher", "Ready", |c| c["ready"] == true).await;
    let pid: i32 = container(Some(&p))["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("gauntlet://"))
        .and_then(|p| p.parse().ok())
        .expect("containerID gauntlet://<pid>");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let p = await_pod(&api, "crasher", "a restart", |c| {
        c["restartCount"].as_u64() >= Some(1) && c["state"]["running"].is_object()
    })
    .await;
    let c = container(Some(&p));
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 137, "{c:#}");
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error", "{c:#}");

    // A container over its memory limit is OOM-killed by its cgroup, and says so.
    api.create(
        &pp,
        &pod(
            "leaker",
            "gauntlet/sample-app:latest",
            &[("FAULT_LEAK_RATE", "16MiB/s")],
            "32Mi",
        ),
    )
    .await
    .unwrap();
    let p = await_pod(&api, "leaker", "OOMKilled", |c| {
        c["lastState"]["terminated"]["reason"] == "OOMKilled"
    })
    .await;
    assert_eq!(
        container(Some(&p))["lastState"]["terminated"]["exitCode"],
        137
    );

    // An image the node cannot run waits, with the image named.
    api.create(&pp, &pod("unrunnable", "nginx:1.27", &[], "64Mi"))
        .await
        .unwrap();
    let p = await_pod(&api, "unrunnable", "a waiting reason", |c| {
        c["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;
    let c = container(Some(&p));
    let message = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("\"nginx:1.27\""), "{message}");
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // A release the API server refuses (here a ValidatingAdmissionPolicy, as a cluster's policy
    // engine would) is an infrastructure failure that quotes the API server.
    refused_release_is_infrastructure_with_the_servers_message(&cluster).await;

    cluster.check_alive().await.unwrap();
    let dir = cluster.dir().to_path_buf();
    let pids = cluster.pids();
    let t = Instant::now();
    cluster.shutdown().await;
    eprintln!("shut down in {:.1}s", t.elapsed().as_secs_f64());
    assert!(!dir.exists(), "{} left behind", dir.display());
    let alive: Vec<_> = pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    drop((argo, flagger));
}

/// Processes of the system whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(needle).then(|| format!("{pid}: {c}"))
        })
        .collect()
}

/// The two tests that run `gauntlet up` take turns, so that at most two clusters (theirs and
/// the first test's) share the two cores.
static UP_ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `gauntlet up --backend local --controller real --target fixtures/apps/argo` with `TMPDIR`
/// set to `tmp`, once it has printed its endpoints (`ingress`, `prometheus`, `kubeconfig`,
/// `namespace`).
fn up_real(
    tmp: &Path,
) -> (
    std::process::Child,
    std::collections::BTreeMap<String, String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .current_dir(root())
        .args([
            "up",
            "--backend",
            "local",
            "--controller",
            "real",
            "--target",
            "fixtures/apps/argo",
        ])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = std::collections::BTreeMap::new();
    while printed.len() < 4 {
        let line = lines
            .next()
            .expect("gauntlet up ended before printing its endpoints")
            .unwrap();
        if let Some((k, v)) = line.split_once(": ") {
            printed.insert(k.to_string(), v.to_string());
        }
    }
    (child, printed)
}

/// The folders in `tmp`.
fn folders(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn up_with_the_real_controller_serves_the_plugin_and_leaves_nothing_after_sigint() {
    require_root();
    let _turn = UP_ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, printed) = up_real(tmp.path());
    let kubeconfig = printed["kubeconfig"].clone();
    let namespace = printed["namespace"].clone();
    assert!(Path::new(&kubeconfig).is_file());

    // The plugin users know, built from the pinned module, against the admin kubeconfig.
    let bins = gauntlet::cluster::local::controlplane::build::ensure(&mut |_| {}).unwrap();
    let out = Command::new(&bins.kubectl_argo_rollouts)
        .args([
            "get",
            "rollout",
            "sample-app",
            "-n",
            &namespace,
            "--kubeconfig",
            &kubeconfig,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Healthy"), "{text}");
    if let Ok(out) = Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "get", "rollouts", "-A"])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("sample-app"), "{text}");
    } else {
        eprintln!("kubectl is not installed: only the plugin was checked");
    }

    let found = folders(tmp.path());
    assert_eq!(
        found.len(),
        1,
        "the cluster's folder is in TMPDIR: {found:?}"
    );
    let marker = found[0].display().to_string();
    assert!(!processes_mentioning(&marker).is_empty());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "gauntlet did not stop within 90s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let left = folders(tmp.path());
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        processes_mentioning(&marker).is_empty(),
        "processes left: {:?}",
        processes_mentioning(&marker)
    );
}

#[test]
fn down_removes_what_a_sigkilled_up_left_behind() {
    require_root();
    let _turn = UP_ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, _) = up_real(tmp.path());
    let found = folders(tmp.path());
    assert_eq!(found.len(), 1, "{found:?}");
    let marker = found[0].display().to_string();
    let cgroup = std::fs::read_to_string(found[0].join("gauntlet-cgroup")).ok();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // What a killed gauntlet cannot clean: its folder, its cgroups (and any grandchild, such
    // as an nginx worker, that outlived its parent).
    assert!(found[0].exists());

    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["down", "--backend", "local"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("removed {marker}")), "{err}");
    assert!(folders(tmp.path()).is_empty());
    if let Some(cg) = cgroup {
        assert!(!Path::new(cg.trim()).exists(), "cgroup {cg} left");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            processes_mentioning(&marker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn refused_release_is_infrastructure_with_the_servers_message(cluster: &RealCluster) {
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: { name: no-version-9 }
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [argoproj.io]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE]
        resources: [rollouts]
  validations:
    - expression: "!object.spec.template.spec.containers.exists(c, has(c.env) && c.env.exists(e, e.name == 'APP_VERSION' && e.value == '9.9.9'))"
      message: "version 9.9.9 is banned on this cluster"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: { name: no-version-9 }
spec:
  policyName: no-version-9
  validationActions: [Deny]
"#;
    let mut resolver = gauntlet::cluster::kube::resources::Resolver::new(cluster.client());
    for o in serde_saphyr::from_multiple::<Value>(policy).unwrap() {
        resolver.apply(&o).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("banned.yaml");
    std::fs::write(
        &file,
        format!(
            "name: banned-release\ntarget: {}\nbaseline: {{ version: \"1.0.0\" }}\n\
             release: {{ version: \"9.9.9\" }}\nload: {{ rate: 10/s, connections: 2 }}\n\
             expect: {{ outcome: promoted, within: 5m }}\n",
            root().join("fixtures/apps/argo").display()
        ),
    )
    .unwrap();
    let s = gauntlet::scenario::file::load(&file, 1).unwrap();
    let target = gauntlet::runner::cluster::ClusterTarget::new(
        "local",
        cluster.client(),
        cluster.ingress_url().to_string(),
        Duration::ZERO,
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = gauntlet::runner::RunOptions {
        seed: 1,
        artifacts: None,
        stop,
    };
    // The policy applies once it is in the API server's informer: a dry-run create of a Rollout
    // it refuses says when.
    let probe: Value = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "p"}}, "template": {
            "metadata": {"labels": {"app": "p"}},
            "spec": {"containers": [{"name": "a", "image": "x",
                "env": [{"name": "APP_VERSION", "value": "9.9.9"}]}]}},
            "strategy": {"canary": {}}},
    }))
    .unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    );
    let rollouts: Api<DynamicObject> = Api::namespaced_with(cluster.client(), "default", &ar);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    while rollouts
        .create(&pp, &serde_json::from_value(probe.clone()).unwrap())
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the admission policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let f = gauntlet::runner::cluster::run_on_cluster(&s, &target, &opts, None).await;
    let failure = f.report.failure.clone().unwrap_or_default();
    assert_eq!(f.status, gauntlet::runner::Status::Infra, "{failure}");
    assert!(
        failure.contains("version 9.9.9 is banned on this cluster"),
        "{failure}"
    );
    assert!(failure.contains("release"), "{failure}");
}

/// `gauntlet compare --artifacts`: both tiers' scenario artifacts and the comparison itself
/// land in the folder, and the JSON holds both sides of the scenario as they were observed.
#[test]
fn compare_writes_each_tiers_artifacts_and_the_comparison() {
    require_root();
    let _turn = UP_ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .current_dir(root())
        .args([
            "compare",
            "suites/fidelity/argo-promote.yaml",
            "--seed",
            "3",
        ])
        .arg("--artifacts")
        .arg(&out)
        .env("TMPDIR", tmp.path())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let code = run.status.code();
    // 0: the same, 1: a difference; anything else means a tier could not run.
    assert!(matches!(code, Some(0 | 1)), "compare exited {code:?}");
    let text = std::fs::read_to_string(out.join("compare.txt")).unwrap();
    assert!(
        text.contains("fidelity-argo-promote") && text.contains("1 scenario(s)"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains(&text));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let c = &doc["scenarios"][0];
    assert_eq!(c["name"], "fidelity-argo-promote");
    assert_eq!(doc["seed"], 3);
    for tier in ["emulated", "real"] {
        assert!(c[tier]["outcome"].is_string(), "{tier}: {c}");
        let timeline = out.join(tier).join("fidelity-argo-promote/timeline.json");
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&timeline).unwrap()).unwrap();
        assert_eq!(report["outcome"], c[tier]["outcome"], "{tier}");
    }
    assert_eq!(
        c["mismatches"].as_array().unwrap().is_empty(),
        code == Some(0)
    );
}

/// A client of the cluster behind `kubeconfig`.
async fn client_of(kubeconfig: &str) -> kube::Client {
    let k = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(k, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The pod template of a fixture's workload, as a Pod in `namespace`.
fn pod_of_fixture(fixture: &Path, namespace: &str) -> Pod {
    let m = gauntlet::spec::load_target(fixture).unwrap();
    let prepared = gauntlet::cluster::kube::render::prepare(
        &m,
        &gauntlet::cluster::kube::RenderOptions {
            namespace: namespace.into(),
            ..Default::default()
        },
    )
    .unwrap();
    let template = prepared.template_owner()["spec"]["template"].clone();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restricted-check", "namespace": namespace},
        "spec": template["spec"],
    }))
    .unwrap()
}

/// `gauntlet` with the local control plane's kubeconfig, as a user of `--backend kube` would
/// run it against a staging cluster.
fn gauntlet_on(kubeconfig: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .current_dir(root())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap()
}

/// The kube backend against a real API server with the real Argo Rollouts (the local control
/// plane of `gauntlet up --controller real`, the nearest thing to a staging cluster here):
/// the sample app passes the `restricted` Pod Security Standard, a run without an image the
/// cluster can pull or without the CRDs it needs is refused before it starts, a scenario runs
/// through a given ingress address, and `down --backend kube` removes only gauntlet's stale
/// scenario namespaces.
#[test]
fn the_kube_backend_runs_on_a_real_api_server_as_on_staging() {
    require_root();
    let _turn = UP_ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, printed) = up_real(tmp.path());
    let kubeconfig = printed["kubeconfig"].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = client_of(&kubeconfig).await;
        // Every fixture's pod passes `restricted`; without its securityContext it would not
        // (the API server's PodSecurity admission is on, so this can fail).
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let restricted = serde_json::from_value(json!({
            "metadata": {"name": "restricted-check",
                         "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
        }))
        .unwrap();
        namespaces
            .create(&PostParams::default(), &restricted)
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "restricted-check");
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/apps"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        fixtures.sort();
        assert!(fixtures.len() >= 10, "{fixtures:?}");
        for f in &fixtures {
            let pod = pod_of_fixture(f, "restricted-check");
            if let Err(e) = pods.create(&dry, &pod).await {
                panic!("{}: refused in a restricted namespace: {e}", f.display());
            }
        }
        let mut bare = pod_of_fixture(&root().join("fixtures/apps/argo"), "restricted-check");
        let spec = bare.spec.as_mut().unwrap();
        spec.security_context = None;
        spec.containers[0].security_context = None;
        let refused = pods.create(&dry, &bare).await.unwrap_err().to_string();
        assert!(refused.contains("violates PodSecurity"), "{refused}");

        // A killed run's scenario namespace (labelled, annotated) and someone else's.
        for (name, labels, annotations) in [
            (
                "gauntlet-killed-run-000001",
                json!({"app.kubernetes.io/managed-by": "gauntlet"}),
                json!({"gauntlet.dev/scenario": "killed-run"}),
            ),
            (
                "not-a-scenario",
                json!({"app.kubernetes.io/managed-by": "gauntlet"}),
                json!({}),
            ),
        ] {
            let ns = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels, "annotations": annotations}
            }))
            .unwrap();
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
        }
    });

    // A run that needs an image the cluster can pull says so before it starts.
    let scenario = "suites/argo/errors-rolled-back.yaml";
    let out = gauntlet_on(&kubeconfig, &["run", "--backend", "kube", scenario]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--image REF") && err.contains("argo-500s-rolled-back"),
        "{err}"
    );
    // A Flagger target on a cluster with only Argo Rollouts: what is missing, and nothing
    // installed.
    let out = gauntlet_on(
        &kubeconfig,
        &[
            "run",
            "--backend",
            "kube",
            "--image",
            "gauntlet/sample-app:latest",
            "--ingress-url",
            &printed["ingress"],
            "suites/flagger/errors-failed.yaml",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("canaries.flagger.app") && err.contains("installs nothing"),
        "{err}"
    );
    // The scenario itself, through the given ingress address: no port-forward.
    let t = Instant::now();
    let out = gauntlet_on(
        &kubeconfig,
        &[
            "run",
            "--backend",
            "kube",
            "--image",
            "gauntlet/sample-app:latest",
            "--ingress-url",
            &printed["ingress"],
            "--prometheus-url",
            &printed["prometheus"],
            "--seed",
            "5",
            scenario,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(text.contains("argo-500s-rolled-back"), "{text}");
    eprintln!(
        "{scenario} on --backend kube: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // `down --backend kube`: the killed run's namespace goes, the other stays.
    let out = gauntlet_on(
        &kubeconfig,
        &["down", "--backend", "kube", "--older-than", "0s"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("gauntlet-killed-run-000001"), "{err}");
    // Not the namespace `up` deployed its baseline into, though gauntlet labelled it.
    assert!(!err.contains("namespace default"), "{err}");
    rt.block_on(async {
        let client = client_of(&kubeconfig).await;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
        let killed = namespaces
            .get_opt("gauntlet-killed-run-000001")
            .await
            .unwrap();
        assert!(killed.is_none_or(|n| n.metadata.deletion_timestamp.is_some()));
        let other = namespaces.get("not-a-scenario").await.unwrap();
        assert!(other.metadata.deletion_timestamp.is_none());
    });

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "gauntlet up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
