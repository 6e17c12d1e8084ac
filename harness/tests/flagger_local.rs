//! The Flagger emulation on the real local stack: the user's Deployment, Ingress, Canary and
//! MetricTemplates from `fixtures/apps/`, real pods behind a real nginx, Flagger's builtin nginx
//! queries and the templates run unchanged against a real Prometheus, webhooks as real HTTP
//! POSTs to the emulated loadtester, load through the ingress.
//!
//! Every test runs the policy at `--time-scale 0.03`: the one-minute interval ticks every
//! 1.8 s and the `1m` windows shrink to four scrapes (4 s). Each decision gets the policy's own
//! minimum (fastest possible, plus one interval for the release to be noticed) plus a slack:
//! at 1 % of the traffic the first checks commonly find no values yet, and each such failed
//! check repeats the step one interval later, as in Flagger (flagger#1689).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gauntlet::cluster::local::{Binaries, LocalStack};
use gauntlet::controller::argo::Decision;
use gauntlet::controller::driver::{settle, until_decision};
use gauntlet::controller::flagger::target::load_flagger;
use gauntlet::controller::flagger::{FlaggerController, Phase, fastest};
use gauntlet::controller::timescale::TimeScale;
use gauntlet::prom::PromClient;
use gauntlet::target::{self, Workload};
use gauntlet::timeline::{Source, Timeline};

const SCALE: f64 = 0.03;
const RATE: u32 = 100;
const SLACK: Duration = Duration::from_secs(12);

type Ctl = FlaggerController<LocalStack, PromClient>;

/// Given: the target's baseline initialized (the primary serving) and under load.
struct Given {
    ctl: Ctl,
    workload: Workload,
    timeline: Timeline,
    load: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Tally>,
    )>,
}

async fn given(target_dir: &str) -> Given {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(target_dir);
    let scale = TimeScale::new(SCALE).unwrap();
    let (workload, emulated) = load_flagger(&dir, scale).expect("the target loads");
    let timeline = Timeline::new();
    let bins = Binaries::locate().expect("nginx, prometheus and sample-app are installed");
    let mut opts = workload.stack_options(1);
    opts.grace = Duration::from_secs(5);
    let stack = LocalStack::start(&bins, opts, timeline.clone())
        .await
        .expect("the stack starts");
    let prom = stack.prom().clone();
    let mut ctl = FlaggerController::new(emulated.policy, stack, prom, timeline.clone()).unwrap();
    let hash = target::pod_template_hash(&workload.spec);
    ctl.apply_template(hash, workload.pod_template(&workload.spec).unwrap())
        .await
        .unwrap();
    let (d, _) = until_decision(&mut ctl, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the Canary initializes");
    assert_eq!(d, Decision::Promoted);
    assert_eq!(ctl.status().phase, Phase::Initialized);
    let primary = ctl.primary_revision().unwrap().clone();
    ctl.platform()
        .wait_available(&primary, workload.replicas, Duration::from_secs(30))
        .await
        .unwrap();
    let url = format!("{}/", ctl.platform().ingress_url());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let load = tokio::spawn(async move { steady(&url, RATE, stopped).await });
    // Baseline traffic first, so the ingress series exist before the release.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Given {
        ctl,
        workload,
        timeline,
        load: Some((stop, load)),
    }
}

impl Given {
    /// When: a release with version 2.0.0 and these faults is applied.
    async fn release(&mut self, faults: &[(&str, &str)]) {
        let mut env = vec![("APP_VERSION".to_string(), "2.0.0".to_string())];
        env.extend(faults.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let spec = self.workload.with_env(&env);
        self.timeline.mark_release();
        self.ctl
            .apply_template(
                target::pod_template_hash(&spec),
                self.workload.pod_template(&spec).unwrap(),
            )
            .await
            .unwrap();
    }

    /// The earliest each outcome can come after a release: the policy's fastest plus one
    /// interval for the release to be noticed.
    fn minimum(&self, d: Decision) -> Duration {
        let (promoted, rolled_back, paused) = fastest(self.ctl.policy());
        let min = match d {
            Decision::Promoted => promoted,
            Decision::RolledBack => rolled_back,
            Decision::Paused => paused,
        };
        min.unwrap() + self.ctl.policy().interval
    }

    /// Then: the decision, within the minimum plus the slack; prints both for the record.
    async fn decides(&mut self, what: &str, expected: Decision) -> (Decision, Duration) {
        let min = self.minimum(expected);
        let budget = min + SLACK;
        let got = until_decision(&mut self.ctl, budget).await.unwrap();
        let (d, t) = got.unwrap_or_else(|| {
            panic!(
                "{what}: no decision within {budget:?}; {}\n{}",
                self.ctl.status_line(),
                self.events()
            )
        });
        eprintln!(
            "{what}: {d} after {:.1}s (policy minimum {:.1}s at time scale {SCALE})",
            t.as_secs_f64(),
            min.as_secs_f64()
        );
        assert_eq!(d, expected, "{what}\n{}", self.events());
        (d, t)
    }

    /// The controller's event messages since the release.
    fn messages(&self) -> Vec<String> {
        self.timeline
            .snapshot()
            .into_iter()
            .filter(|e| e.source == Source::Controller && e.kind != "phase" && e.t_s >= 0.0)
            .map(|e| e.message)
            .collect()
    }

    fn events(&self) -> String {
        self.timeline
            .snapshot()
            .iter()
            .filter(|e| {
                matches!(
                    e.source,
                    Source::Controller | Source::Analysis | Source::Pod | Source::Router
                )
            })
            .map(|e| format!("{:7.2} {:?} {}: {}", e.t_s, e.source, e.kind, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the load and the stack; returns what the client saw.
    async fn finish(mut self) -> Tally {
        let (stop, load) = self.load.take().unwrap();
        let _ = stop.send(());
        let tally = load.await.unwrap();
        self.ctl.into_platform().shutdown().await;
        tally
    }
}

/// The weights of the "Advance ... canary weight N" events, in order.
fn advanced(messages: &[String]) -> Vec<u32> {
    messages
        .iter()
        .filter_map(|m| m.strip_prefix("Advance sample-app.default canary weight "))
        .map(|w| w.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_release_walks_the_step_weights_and_succeeds() {
    let mut g = given("fixtures/apps/flagger").await;
    g.release(&[]).await;
    g.decides("healthy", Decision::Promoted).await;
    assert_eq!(g.ctl.status().phase, Phase::Succeeded, "{}", g.events());
    let m = g.messages();
    assert_eq!(advanced(&m), [1, 2, 10, 80], "{}", g.events());
    let tail: Vec<&str> = m
        .iter()
        .map(String::as_str)
        .skip_while(|e| !e.starts_with("Copying"))
        .collect();
    assert_eq!(
        tail,
        [
            "Copying sample-app.default template spec to sample-app-primary.default",
            "Routing all traffic to primary",
            "Promotion completed! Scaling down sample-app.default",
        ],
        "{}",
        g.events()
    );
    assert_eq!(g.ctl.weight(), 0);
    // The primary now runs 2.0.0: all traffic through the ingress gets it.
    settle(&mut g.ctl, Duration::from_secs(2)).await.unwrap();
    let url = format!("{}/", g.ctl.platform().ingress_url());
    let after = burst(&url, 20, 4, &[]).await;
    assert_eq!(after.by_version.get("2.0.0"), Some(&20), "{after:?}");
    let t = g.finish().await;
    assert_eq!(t.transport_errors, 0, "{:?}", t.errors);
    assert_eq!(t.by_status.keys().collect::<Vec<_>>(), vec![&200], "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_500s_fail_by_the_success_rate() {
    let mut g = given("fixtures/apps/flagger").await;
    g.release(&[("FAULT_ERROR_RATE", "0.3"), ("FAULT_SEED", "3")])
        .await;
    g.decides("30% 500s", Decision::RolledBack).await;
    let m = g.messages();
    assert!(
        m.iter().any(
            |e| e.starts_with("Halt sample-app.default advancement success rate ")
                && e.ends_with("% < 99%")
        ),
        "{}",
        g.events()
    );
    assert!(
        m.contains(&"Rolling back sample-app.default failed checks threshold reached 5".into()),
        "{}",
        g.events()
    );
    assert_eq!(
        m.last().unwrap(),
        "Canary failed! Scaling down sample-app.default"
    );
    let s = g.ctl.status().clone();
    assert_eq!(
        (s.phase, s.canary_weight, s.failed_checks),
        (Phase::Failed, 0, 0)
    );
    assert_eq!(g.ctl.weight(), 0);
    let t = g.finish().await;
    assert!(t.by_version.get("1.0.0").is_some_and(|n| *n > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_fails_by_the_request_duration() {
    let mut g = given("fixtures/apps/flagger").await;
    g.release(&[("FAULT_LATENCY", "800ms")]).await;
    g.decides("800 ms latency", Decision::RolledBack).await;
    let m = g.messages();
    assert!(
        m.iter().any(
            |e| e.starts_with("Halt sample-app.default advancement request duration ")
                && e.ends_with(" > 500ms")
        ),
        "{}",
        g.events()
    );
    assert!(
        !m.iter().any(|e| e.contains("advancement success rate")),
        "latency alone costs no 5xx: {}",
        g.events()
    );
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_promotion_holds_the_canary_until_the_gate_opens() {
    let mut g = given("fixtures/apps/flagger-gate").await;
    g.release(&[]).await;
    g.decides("gate closed", Decision::Paused).await;
    assert_eq!(g.ctl.status().phase, Phase::WaitingPromotion);
    assert_eq!(g.ctl.weight(), 80, "the router keeps the last weight");
    // Held: a few more ticks change nothing.
    let interval = g.ctl.policy().interval;
    settle(&mut g.ctl, interval * 2).await.unwrap();
    assert_eq!(g.ctl.status().phase, Phase::WaitingPromotion);
    // Someone opens the gate, over HTTP as with the real loadtester.
    let key = g.ctl.gate_key();
    let opened = reqwest::Client::new()
        .post(format!("{}/gate/open", g.ctl.gates().base_url()))
        .json(&serde_json::json!({"name": "sample-app", "namespace": "default"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 202);
    assert!(g.ctl.gates().is_open(&key));
    // Promoting, Finalising, Succeeded: three ticks.
    let budget = interval * 4 + SLACK;
    let (d, _) = loop {
        let got = until_decision(&mut g.ctl, budget).await.unwrap().unwrap();
        if got.0 != Decision::Paused {
            break got;
        }
        settle(&mut g.ctl, Duration::from_millis(200))
            .await
            .unwrap();
    };
    assert_eq!(d, Decision::Promoted, "{}", g.events());
    let m = g.messages();
    assert!(m.contains(&"Confirm-promotion check approve-promotion passed".into()));
    assert!(
        m.contains(
            &"Halt sample-app.default advancement waiting for promotion approval approve-promotion"
                .into()
        )
    );
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_hook_aborts_a_healthy_canary() {
    let mut g = given("fixtures/apps/flagger-gate").await;
    g.release(&[]).await;
    // Wait until the canary gets 2 % of the traffic.
    let interval = g.ctl.policy().interval;
    let deadline = tokio::time::Instant::now() + interval * 8 + SLACK;
    while advanced(&g.messages()).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second step: {}",
            g.events()
        );
        settle(&mut g.ctl, Duration::from_millis(200))
            .await
            .unwrap();
    }
    let key = g.ctl.rollback_key();
    g.ctl.gates().open(&key);
    let (d, _) = until_decision(&mut g.ctl, interval + SLACK)
        .await
        .unwrap()
        .expect("rolled back at the next tick");
    assert_eq!(d, Decision::RolledBack, "{}", g.events());
    let m = g.messages();
    assert!(m.contains(&"Rollback check manual-rollback passed".into()));
    assert!(m.contains(&"Rolling back sample-app.default manual webhook invoked".into()));
    assert_eq!(g.ctl.weight(), 0);
    g.finish().await;
}
