//! `rollout/analysis.go` (`reconcileStepBasedAnalysisRun`, `reconcileBackgroundAnalysisRun`)
//! and the analysis controller's `runMeasurements`: which run is judged when.

use std::path::Path;

use super::*;
use crate::controller::analysis::MetricSource;
use crate::controller::argo::from_spec::from_spec;
use crate::controller::argo::runs::AnalysisRuns;
use crate::controller::expr::MetricValue;
use crate::controller::timescale::TimeScale;

fn step_analysis(replicas: u32) -> RolloutPolicy {
    with_background(
        RolloutPolicy::new(
            "app",
            replicas,
            vec![Step::SetWeight(20), Step::Analysis(1), Step::SetWeight(50)],
        ),
        0,
    )
}

#[tokio::test(start_paused = true)]
async fn reconcile_step_based_analysis_run_returns_early_while_paused() {
    let scripts = Scripts::default()
        .analysis(0, vec![at(5, RunPhase::Inconclusive)])
        .analysis(1, vec![(secs(10), RunPhase::Failed, "boom".into())]);
    let (mut c, _, _) = deployed(step_analysis(2), scripts).await;
    run_for(&mut c, secs(20)).await;
    let s = c.status();
    assert!(!s.abort, "{}", s.message);
    assert_eq!(s.message, "InconclusiveAnalysisRun");
    assert_eq!(s.current_step_index, Some(1));
    let step = s.canary.current_step_analysis_run_status.clone().unwrap();
    assert_eq!(step.status, "Failed");
}

#[tokio::test(start_paused = true)]
async fn reconcile_background_analysis_run_returns_early_during_an_inconclusive_pause() {
    let scripts = Scripts::default()
        .analysis(0, vec![(secs(10), RunPhase::Failed, "boom".into())])
        .analysis(1, vec![at(5, RunPhase::Inconclusive)]);
    let (mut c, _, _) = deployed(step_analysis(2), scripts).await;
    run_for(&mut c, secs(20)).await;
    let s = c.status();
    assert!(!s.abort, "{}", s.message);
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(s.message, "InconclusiveAnalysisRun");
    let bg = s
        .canary
        .current_background_analysis_run_status
        .clone()
        .unwrap();
    assert_eq!(bg.status, "Failed");
    assert_eq!(c.decision(), Some(Decision::Paused));
}

#[tokio::test(start_paused = true)]
async fn sync_rollout_status_canary_clears_the_step_run_status_when_the_step_completes() {
    let policy = RolloutPolicy::new(
        "app",
        2,
        vec![Step::SetWeight(20), Step::Analysis(0), Step::Pause(None)],
    );
    let scripts = Scripts::default().analysis(0, vec![at(2, RunPhase::Successful)]);
    let (mut c, _, _) = deployed(policy, scripts).await;
    run_for(&mut c, secs(5)).await;
    let s = c.status();
    assert_eq!(s.current_step_index, Some(2));
    assert_eq!(s.message, "CanaryPauseStep");
    assert_eq!(s.canary.current_step_analysis_run_status, None);
}

/// Answers every query with no series, 30 s later (the Prometheus provider's default timeout).
#[derive(Clone)]
struct Slow;

impl MetricSource for Slow {
    async fn measure(&self, _: &str, _: Duration) -> Result<MetricValue, String> {
        tokio::time::sleep(secs(30)).await;
        Ok(MetricValue::Vector(vec![]))
    }
}

#[tokio::test(start_paused = true)]
async fn run_measurements_in_parallel_never_delay_the_rollout_pass() {
    let m = crate::spec::load_target(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo"),
    )
    .unwrap();
    let scale = TimeScale::default();
    let e = from_spec(&m, &m.rollouts[0], scale).unwrap();
    let runs = AnalysisRuns::new(
        m.rollouts[0].clone(),
        e.analyses,
        Slow,
        scale,
        Timeline::new(),
    );
    // 20 %, a 30 s pause, 50 %, a 30 s pause; four background metrics from step 1 on.
    let (mut c, _, _) = deployed_with(e.policy, runs).await;
    let t = run_until(&mut c, secs(300), |c| {
        c.status().current_step_index == Some(2)
    })
    .await
    .expect("the first pause ends");
    assert!(t >= secs(30) && t < secs(31), "{t:?}");
}
