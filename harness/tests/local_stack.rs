//! The local stack against the real nginx, Prometheus and sample-app processes.

mod common;

use std::time::Duration;

use common::*;
use gauntlet::cluster::local::memlimit::Mechanism;
use gauntlet::cluster::{CanaryRoute, Platform, Services, Termination};

const STABLE: &str = "1.0.0";
const CANARY: &str = "2.0.0";

/// A stack with a stable revision of 2 pods and a canary revision of 1, both available.
async fn two_versions(canary_env: &[(&str, &str)]) -> gauntlet::cluster::local::LocalStack {
    let mut stack = start_stack().await;
    stack
        .create_revision(hash("aaaa"), template(STABLE, &[], None))
        .await
        .unwrap();
    stack
        .create_revision(hash("bbbb"), template(CANARY, canary_env, None))
        .await
        .unwrap();
    stack.scale(&hash("aaaa"), 2).await.unwrap();
    stack.scale(&hash("bbbb"), 1).await.unwrap();
    stack
        .set_services(Services {
            stable: hash("aaaa"),
            canary: Some(hash("bbbb")),
        })
        .await
        .unwrap();
    let within = Duration::from_secs(30);
    stack
        .wait_available(&hash("aaaa"), 2, within)
        .await
        .unwrap();
    stack
        .wait_available(&hash("bbbb"), 1, within)
        .await
        .unwrap();
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_lands_within_three_points() {
    let mut stack = two_versions(&[]).await;
    let url = format!("{}/", stack.ingress_url());
    for weight in [0u32, 10, 50, 100] {
        stack
            .set_canary_route(CanaryRoute::weight(weight))
            .await
            .unwrap();
        // 4,000 requests: at 50 % the binomial standard deviation is 0.8 points, so a 3-point
        // band is 3.8 deviations wide.
        let t = burst(&url, 4000, 16, &[]).await;
        assert_eq!(t.transport_errors, 0, "{:?}", t.errors);
        assert_eq!(t.by_status.get(&200), Some(&4000), "{t:?}");
        let got = t.share(CANARY) * 100.0;
        assert!(
            (got - weight as f64).abs() <= 3.0,
            "weight {weight}: canary got {got:.2} % of 4000 requests"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_cookie_overrides_route_as_ingress_nginx() {
    let mut stack = two_versions(&[]).await;
    let url = format!("{}/", stack.ingress_url());
    let route = |weight| CanaryRoute {
        by_header: Some("X-Canary".into()),
        by_cookie: Some("canary".into()),
        ..CanaryRoute::weight(weight)
    };
    stack.set_canary_route(route(0)).await.unwrap();
    let t = burst(&url, 200, 4, &[("X-Canary", "always")]).await;
    assert_eq!(t.share(CANARY), 1.0, "header always: {t:?}");
    let t = burst(&url, 200, 4, &[("Cookie", "canary=always")]).await;
    assert_eq!(t.share(CANARY), 1.0, "cookie always: {t:?}");
    let t = burst(&url, 200, 4, &[("X-Canary", "maybe")]).await;
    assert_eq!(
        t.share(CANARY),
        0.0,
        "other header values fall through to weight 0: {t:?}"
    );

    stack.set_canary_route(route(100)).await.unwrap();
    let t = burst(&url, 200, 4, &[("X-Canary", "never")]).await;
    assert_eq!(t.share(STABLE), 1.0, "header never: {t:?}");
    let t = burst(&url, 200, 4, &[("Cookie", "canary=never")]).await;
    assert_eq!(t.share(STABLE), 1.0, "cookie never: {t:?}");
    // The header is consulted before the cookie.
    let t = burst(
        &url,
        200,
        4,
        &[("X-Canary", "never"), ("Cookie", "canary=always")],
    )
    .await;
    assert_eq!(t.share(STABLE), 1.0, "header beats cookie: {t:?}");
    let t = burst(&url, 200, 4, &[]).await;
    assert_eq!(t.share(CANARY), 1.0, "no override: weight 100: {t:?}");

    // canary-by-header-value: only the exact value routes to the canary.
    stack
        .set_canary_route(CanaryRoute {
            by_header: Some("X-Canary".into()),
            by_header_value: Some("v2".into()),
            ..CanaryRoute::weight(0)
        })
        .await
        .unwrap();
    let t = burst(&url, 100, 4, &[("X-Canary", "v2")]).await;
    assert_eq!(t.share(CANARY), 1.0, "{t:?}");
    let t = burst(&url, 100, 4, &[("X-Canary", "always")]).await;
    assert_eq!(t.share(STABLE), 1.0, "{t:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_steady_load_lose_no_request() {
    let mut stack = two_versions(&[]).await;
    let url = format!("{}/", stack.ingress_url());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let load = tokio::spawn({
        let url = url.clone();
        async move { steady(&url, 200, stopped).await }
    });
    let reloads_before = stack.reloads().await;
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    for i in 0..20u32 {
        ticker.tick().await;
        let weight = [10, 90, 30, 70, 50][i as usize % 5];
        stack
            .set_canary_route(CanaryRoute::weight(weight))
            .await
            .unwrap();
    }
    ticker.tick().await;
    let _ = stop.send(());
    let t = load.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let reloads = stack.reloads().await - reloads_before;
    eprintln!(
        "reload test: {} requests in {secs:.1}s ({:.0}/s), {reloads} reloads, {} resent, statuses {:?}, versions {:?}",
        t.total(),
        t.total() as f64 / secs,
        t.resent,
        t.by_status,
        t.by_version
    );
    assert_eq!(reloads, 20);
    assert_eq!(t.transport_errors, 0, "{:?}", t.errors);
    assert_eq!(t.by_status.len(), 1, "{:?}", t.by_status);
    assert!(t.by_status[&200] > 3000, "{t:?}");
    assert!(t.share(CANARY) > 0.2 && t.share(STABLE) > 0.2, "{t:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_canary_error_ratio_matches_the_client() {
    let mut stack = two_versions(&[("FAULT_ERROR_RATE", "0.3"), ("FAULT_SEED", "7")]).await;
    stack
        .set_canary_route(CanaryRoute::weight(50))
        .await
        .unwrap();
    let url = format!("{}/", stack.ingress_url());
    let t = burst(&url, 2000, 8, &[]).await;
    assert_eq!(t.transport_errors, 0);
    let canary_total = t.by_version[CANARY] as f64;
    let canary_5xx = *t.by_status.get(&500).unwrap_or(&0) as f64;
    assert!(canary_5xx > 0.0);
    let prom = stack.prom().clone();
    // Wait until Prometheus has scraped every request the client made.
    eventually(
        Duration::from_secs(20),
        "Prometheus to see all requests",
        || {
            let prom = prom.clone();
            async move {
                let v = prom
                    .query("sum(nginx_ingress_controller_requests)")
                    .await
                    .ok()?
                    .values();
                (v.first() == Some(&2000.0)).then_some(())
            }
        },
    )
    .await;
    let q = r#"sum(nginx_ingress_controller_requests{namespace="default",ingress="sample-app",canary!="",status=~"5.*"})
             / sum(nginx_ingress_controller_requests{namespace="default",ingress="sample-app",canary!=""})"#;
    let ratio = prom.query(q).await.unwrap().values()[0];
    let client = canary_5xx / canary_total;
    assert!(
        (ratio - client).abs() < 1e-9,
        "PromQL says {ratio}, the client saw {client}"
    );
    // The pods' own series carry Kubernetes labels too.
    // A pod target's first scrape can trail the exporter's by up to one interval.
    eventually(Duration::from_secs(10), "three pods scraped", || {
        let prom = prom.clone();
        async move {
            let v = prom
                .query(r#"count(http_requests_total{namespace="default",container="sample-app",app="sample-app"}) by (pod)"#)
                .await
                .ok()?
                .values();
            (v.len() == 3).then_some(())
        }
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_pod_is_oom_killed_recorded_and_restarted() {
    let mut stack = start_stack().await;
    if std::env::var_os("GAUNTLET_NO_CGROUP").is_none()
        && std::path::Path::new("/sys/fs/cgroup/memory").exists()
    {
        assert_eq!(stack.memory_mechanism(), Mechanism::CgroupV1);
    }
    eprintln!("memory limits by {}", stack.memory_mechanism());
    stack
        .create_revision(
            hash("leak"),
            template(CANARY, &[("FAULT_LEAK_RATE", "16MiB/s")], Some(64 << 20)),
        )
        .await
        .unwrap();
    stack.scale(&hash("leak"), 1).await.unwrap();
    let pod = eventually(Duration::from_secs(30), "an OOM kill", || {
        let pods = stack.pods();
        async move {
            pods.into_iter()
                .find(|p| p.last_termination == Some(Termination::OOMKilled))
        }
    })
    .await;
    assert_eq!(pod.restarts, 0, "killed, not yet restarted");
    // kubelet's back-off is 10 s before the first restart.
    let pod = eventually(Duration::from_secs(30), "the restart", || {
        let pods = stack.pods();
        async move { pods.into_iter().find(|p| p.restarts >= 1 && p.running) }
    })
    .await;
    let prom = stack.prom().clone();
    let q = format!(
        r#"kube_pod_container_status_restarts_total{{namespace="default",pod="{}",container="sample-app"}}"#,
        pod.name
    );
    eventually(
        Duration::from_secs(20),
        "the restart counter to rise",
        || {
            let (prom, q) = (prom.clone(), q.clone());
            async move {
                let v = prom.query(&q).await.ok()?.values();
                v.first().is_some_and(|r| *r >= 1.0).then_some(())
            }
        },
    )
    .await;
    let reason = prom
        .query(r#"kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}"#)
        .await
        .unwrap()
        .values();
    assert_eq!(reason, vec![1.0]);
    let events = stack.timeline().snapshot();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "pod-terminated" && e.message.contains("OOMKilled"))
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stack_leaves_no_process_cgroup_or_folder() {
    for graceful in [false, true] {
        let mut stack = start_stack().await;
        stack
            .create_revision(hash("aaaa"), template(STABLE, &[], Some(64 << 20)))
            .await
            .unwrap();
        stack.scale(&hash("aaaa"), 2).await.unwrap();
        stack
            .wait_available(&hash("aaaa"), 2, Duration::from_secs(30))
            .await
            .unwrap();
        let pids = stack.pids();
        assert_eq!(pids.len(), 4, "nginx, prometheus and two pods: {pids:?}");
        let dir = stack.dir().to_path_buf();
        let cgroup = stack.cgroup_path();
        if graceful {
            stack.shutdown().await;
        } else {
            drop(stack);
        }
        for pid in pids {
            assert!(!alive(pid), "pid {pid} survived (graceful: {graceful})");
        }
        assert!(!dir.exists(), "{} survived", dir.display());
        if let Some(c) = cgroup {
            assert!(!c.exists(), "{} survived", c.display());
        }
    }
}

/// Alive means running: a zombie is dead and only waits for its parent.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}
