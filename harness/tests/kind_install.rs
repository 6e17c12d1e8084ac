//! The kind backend's install waits, against a real API server: the local real control plane
//! (its kube-controller-manager runs the job, ttl-after-finished and garbage collector
//! controllers) and gauntlet's node, which runs Jobs' pods to completion under their
//! `restartPolicy`.
//!
//! Needs root and the control plane's binaries (`GAUNTLET_CONTROLPLANE_BIN`, or built with Go on
//! first use), as `real_local.rs` does.

use std::time::{Duration, Instant};

use gauntlet::cluster::kind::install;
use gauntlet::cluster::kube::resources::Resolver;
use gauntlet::cluster::local::Binaries;
use gauntlet::cluster::local::controlplane;
use gauntlet::cluster::local::real::{RealCluster, RealOptions};
use gauntlet::timeline::Timeline;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

/// The real tier cannot run without root: say so plainly rather than fail obscurely.
fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the real tier needs root (network namespaces, cgroups); run the tests as root"
    );
}

async fn start() -> RealCluster {
    let bins = Binaries::locate().expect("nginx, Prometheus and the sample app");
    let cp = controlplane::binaries()
        .await
        .expect("the control plane's binaries");
    RealCluster::start(RealOptions {
        controllers: Vec::new(),
        bins,
        controlplane: cp,
        timeline: Timeline::new(),
        progress: std::sync::Arc::new(|l: &str| eprintln!("{l}")),
        backoff: Default::default(),
    })
    .await
    .unwrap_or_else(|e| panic!("the cluster did not start: {e}"))
}

const NS: &str = "kind-install";

/// A Job as ingress-nginx's admission Jobs are: one pod, `restartPolicy` `policy`, deleted by
/// its TTL as soon as it finishes. The sample app's `--version` prints and exits 0 at once.
fn job(name: &str, policy: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "ttlSecondsAfterFinished": 0,
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": policy,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": "gauntlet/sample-app:latest", "args": args}],
            }},
        },
    })
}

/// A Deployment that becomes available only after its readiness probe's initial delay: waited
/// for before a Job listed after it, it gives that Job the time to finish and be deleted.
fn slow_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "slow", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "slow"}},
            "template": {
                "metadata": {"labels": {"app": "slow"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "app",
                        "image": "gauntlet/sample-app:latest",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": "http"},
                            "initialDelaySeconds": 15,
                            "periodSeconds": 1,
                        },
                    }],
                },
            },
        },
    })
}

async fn await_within<T>(
    within: Duration,
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(within, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {within:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_its_ttl_deletes_after_completing_counts_as_installed() {
    require_root();
    let cluster = start().await;
    let client = cluster.client();
    let mut resolver = Resolver::new(client.clone());
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});

    // As in ingress-nginx's manifest: the controller's Deployment comes before the admission
    // Jobs, which finish (and are deleted) long before the Deployment is available.
    let within = Duration::from_secs(120);
    let started = Instant::now();
    let applied = install::apply_and_wait(
        &mut resolver,
        "ttl-test",
        vec![
            namespace,
            slow_deployment(),
            job("admission-create", "OnFailure", &["--version"]),
        ],
        within,
    )
    .await;
    let took = started.elapsed();
    if let Err(e) = &applied {
        let now = pods.list(&ListParams::default()).await.ok();
        panic!(
            "the wait failed after {took:?}: {e}; pods now: {}",
            serde_json::to_string_pretty(&now.map(|l| l.items)).unwrap()
        );
    }
    assert!(
        took < Duration::from_secs(90),
        "done well within its deadline of {within:?}: took {took:?}"
    );

    // The TTL path: the Job completed and the ttl-after-finished controller deleted it.
    let gone = await_within(
        Duration::from_secs(60),
        "the Job deleted by its TTL",
        await_condition(jobs.clone(), "admission-create", |j: Option<&Job>| {
            j.is_none()
        }),
    )
    .await;
    assert!(gone.is_ok(), "{gone:?}");
    assert!(jobs.get_opt("admission-create").await.unwrap().is_none());

    // Waiting for a Job that is already gone returns at once, where a wait for `Complete`
    // waited until its deadline.
    let t = Instant::now();
    install::wait_job(
        jobs.clone(),
        "admission-create",
        None,
        Duration::from_secs(30),
        "the gone Job",
    )
    .await
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Under `Never` a failing container is not restarted: the pod fails with its exit code,
    // and the Job with it (backoffLimit 0): the wait says so instead of running out its time.
    let failing = job("fails", "Never", &["--no-such-option"]);
    resolver.apply(&failing).await.unwrap();
    let e = install::wait_job(
        jobs.clone(),
        "fails",
        None,
        Duration::from_secs(90),
        "Job fails finished",
    )
    .await;
    // Its TTL may delete it before the watch sees it failed; then only the pod tells.
    if let Err(e) = &e {
        assert!(e.to_string().contains("the Job failed"), "{e}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_runs_never_and_on_failure_pods_to_their_end() {
    require_root();
    let cluster = start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let pod = |name: &str, policy: &str, args: &[&str]| -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": policy,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": "gauntlet/sample-app:latest", "args": args}],
            },
        }))
        .unwrap()
    };
    // Pods are admitted once the namespace's default ServiceAccount exists.
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client(), "default");
    await_within(
        Duration::from_secs(60),
        "the default ServiceAccount",
        await_condition(accounts, "default", |a: Option<&ServiceAccount>| {
            a.is_some()
        }),
    )
    .await
    .unwrap();
    let pp = PostParams::default();
    pods.create(&pp, &pod("ok-never", "Never", &["--version"]))
        .await
        .unwrap();
    pods.create(&pp, &pod("bad-never", "Never", &["--no-such-option"]))
        .await
        .unwrap();
    pods.create(&pp, &pod("ok-onfailure", "OnFailure", &["--version"]))
        .await
        .unwrap();
    pods.create(
        &pp,
        &pod("bad-onfailure", "OnFailure", &["--no-such-option"]),
    )
    .await
    .unwrap();
    let terminal = |p: Option<&Pod>| {
        matches!(
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    };
    let within = Duration::from_secs(90);
    let mut seen = std::collections::BTreeMap::new();
    for name in ["ok-never", "bad-never", "ok-onfailure"] {
        let p = await_within(
            within,
            &format!("pod {name} Succeeded or Failed"),
            await_condition(pods.clone(), name, terminal),
        )
        .await
        .unwrap()
        .unwrap();
        let status = serde_json::to_value(p.status.unwrap()).unwrap();
        seen.insert(name, status);
    }
    let check = |name: &str, phase: &str, reason: &str, code: i64| {
        let s = &seen[name];
        assert_eq!(s["phase"], phase, "{name}: {s:#}");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["terminated"]["reason"], reason, "{name}: {s:#}");
        assert_eq!(c["state"]["terminated"]["exitCode"], code, "{name}: {s:#}");
        assert_eq!(c["ready"], false, "{name}: {s:#}");
        assert_eq!(c["restartCount"], 0, "{name}: {s:#}");
    };
    check("ok-never", "Succeeded", "Completed", 0);
    check("bad-never", "Failed", "Error", 2);
    check("ok-onfailure", "Succeeded", "Completed", 0);

    // OnFailure restarts a failed container (after the kubelet's 10 s back-off): never
    // terminal, its restarts counted.
    let restarted = await_within(
        Duration::from_secs(60),
        "pod bad-onfailure restarted",
        await_condition(pods.clone(), "bad-onfailure", |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.restart_count >= 1)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let s = serde_json::to_value(restarted.status.unwrap()).unwrap();
    assert_eq!(s["phase"], "Running", "{s:#}");
    cluster.shutdown().await;
}
