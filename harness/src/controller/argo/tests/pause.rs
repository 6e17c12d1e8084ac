//! `rollout/pause.go`, `rollout/context.go` (`haltProgress`) and `rollout/sync.go`
//! (`checkPausedConditions`): what a pause condition stops, and what it does not.

use super::*;

/// The fixture's steps with a background analysis from step 0 that ends Inconclusive at 5 s.
fn inconclusive_background(replicas: u32, steps: Vec<Step>) -> (RolloutPolicy, Scripts) {
    let policy = with_background(RolloutPolicy::new("app", replicas, steps), 0);
    let scripts = Scripts::default().analysis(0, vec![at(5, RunPhase::Inconclusive)]);
    (policy, scripts)
}

#[tokio::test(start_paused = true)]
async fn reconcile_background_analysis_run_only_pauses_on_inconclusive() {
    let (policy, scripts) = inconclusive_background(2, steps());
    let (mut c, platform, _) = deployed(policy, scripts).await;
    run_for(&mut c, secs(29)).await;
    assert!(has_pause(&c, PauseReason::InconclusiveAnalysisRun));
    assert!(has_pause(&c, PauseReason::CanaryPauseStep));
    assert_eq!(c.status().current_step_index, Some(1));
    // The timed pause still expires at 30 s; the 50 % step's single canary pod is already
    // there, so it completes and the weight rises; the last pause, reached while the
    // controller holds the rollout paused, completes at once.
    run_for(&mut c, secs(2)).await;
    let s = c.status();
    assert_eq!(s.current_step_index, Some(4));
    assert_eq!(platform.weights(), vec![0, 20, 50]);
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(s.message, "InconclusiveAnalysisRun");
    assert!(!has_pause(&c, PauseReason::CanaryPauseStep));
    // The canary may not scale to full while paused: no promotion with 2 replicas.
    assert_eq!(platform.desired("v2"), 1);
    assert_eq!(s.stable_rs, "v1");
}

#[tokio::test(start_paused = true)]
async fn should_full_promote_promotes_a_single_replica_canary_during_an_inconclusive_pause() {
    let (policy, scripts) = inconclusive_background(1, steps());
    let (mut c, platform, _) = deployed(policy, scripts).await;
    let t = run_until(&mut c, secs(120), |c| c.status().fully_promoted())
        .await
        .expect("promoted");
    assert!(t >= secs(30) && t < secs(31), "{t:?}");
    c.reconcile().await.unwrap();
    assert_eq!(c.decision(), Some(Decision::Promoted));
    assert!(c.status().pause_conditions.is_empty());
    assert_eq!(platform.weights(), vec![0, 20, 50, 100, 0]);
}

#[tokio::test(start_paused = true)]
async fn halt_progress_stops_replica_set_scaling_on_an_inconclusive_pause() {
    let (policy, scripts) = inconclusive_background(
        4,
        vec![
            Step::SetWeight(25),
            Step::Pause(Some(secs(10))),
            Step::SetWeight(50),
            Step::Pause(None),
        ],
    );
    let (mut c, platform, _) = deployed(policy, scripts).await;
    run_for(&mut c, secs(60)).await;
    // The pause expired; the 50 % step needs a second canary pod that is never created.
    assert_eq!(c.status().current_step_index, Some(2));
    assert_eq!(platform.desired("v2"), 1);
    assert_eq!(platform.weights(), vec![0, 25]);
    assert_eq!(c.decision(), Some(Decision::Paused));
}

#[tokio::test(start_paused = true)]
async fn check_paused_conditions_resets_the_progress_deadline_on_resume() {
    let mut policy = with_background(RolloutPolicy::new("app", 2, steps()), 0);
    policy.progress_deadline = secs(60);
    policy.progress_deadline_abort = true;
    // The run that replaces the inconclusive one after the resume never decides.
    let scripts = Scripts::default()
        .analysis(0, vec![at(10, RunPhase::Inconclusive)])
        .run("app-v2-2.1", vec![]);
    let (mut c, platform, _) = deployed(policy, scripts).await;
    platform.break_revision("v2");
    run_for(&mut c, secs(600)).await;
    assert_eq!(c.status().message, "InconclusiveAnalysisRun");
    assert!(!c.status().abort, "no deadline while paused");
    c.operate(Operation::Promote);
    run_for(&mut c, secs(30)).await;
    assert!(
        !c.status().abort,
        "the resume starts a new deadline: {}",
        c.status().message
    );
    let t = run_until(&mut c, secs(60), |c| c.status().abort)
        .await
        .expect("aborted by the deadline");
    assert!(t >= secs(29) && t < secs(31), "{t:?}");
    assert!(
        c.status().message.ends_with("has timed out progressing."),
        "{}",
        c.status().message
    );
}
