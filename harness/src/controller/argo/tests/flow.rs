//! Whole releases: the steps walked, analyses judged, operations applied, deadlines kept.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_initial_deploy_is_promoted_without_steps() {
    let platform = FakePlatform::default();
    let mut c = ArgoController::new(
        RolloutPolicy::new("app", 5, steps()),
        platform.clone(),
        Scripts::default(),
        Timeline::new(),
    );
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().message, "more replicas need to be updated");
    c.reconcile().await.unwrap();
    let s = c.status();
    assert_eq!(s.phase, Phase::Healthy);
    assert_eq!(s.current_step_index, Some(4));
    assert_eq!(s.stable_rs, "v1");
    assert_eq!(platform.desired("v1"), 5);
    assert_eq!(platform.weights(), vec![0]);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_release_walks_the_steps_and_is_promoted() {
    let (mut c, platform, tl) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    let (d, t) = drive(&mut c, secs(600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    // Two 30 s pauses are the only waits.
    assert!(t >= secs(60) && t < secs(61), "{t:?}");
    let s = c.status();
    assert_eq!(s.stable_rs, s.current_pod_hash);
    assert_eq!(s.current_step_index, Some(4));
    assert!(s.message.is_empty());
    // Weights: 20, 50, then 100 once all steps are done, 0 after promotion.
    assert_eq!(platform.weights(), vec![0, 20, 50, 100, 0]);
    let r = reasons(&tl);
    let completed = r.iter().filter(|k| *k == "RolloutStepCompleted").count();
    assert_eq!(completed, 4);
    let last = r.iter().rev().find(|k| *k != "TrafficWeightUpdated");
    assert_eq!(last.unwrap(), "RolloutCompleted");
    // The old stable is scaled down only after scaleDownDelaySeconds.
    assert_eq!(platform.desired("v1"), 5);
    tokio::time::sleep(secs(31)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v1"), 0);
    assert_eq!(platform.desired("v2"), 5);
}

#[tokio::test(start_paused = true)]
async fn canary_replicas_follow_the_set_weight() {
    let (mut c, platform, _) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1, "ceil(5 * 20 / 100)");
    tokio::time::sleep(secs(1)).await;
    // Pass 2 sees the canary available and completes the step; pass 3 enters the pause.
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Paused);
    assert_eq!(c.status().message, "CanaryPauseStep");
    tokio::time::sleep(secs(31)).await;
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 3, "ceil(5 * 50 / 100)");
}

#[tokio::test(start_paused = true)]
async fn the_weight_stays_at_the_previous_step_until_the_canary_is_available() {
    let (mut c, platform, _) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    platform.break_revision("v2");
    for _ in 0..5 {
        c.reconcile().await.unwrap();
        tokio::time::sleep(secs(1)).await;
    }
    assert_eq!(platform.weights(), vec![0]);
    assert_eq!(c.status().current_step_index, Some(0));
    assert_eq!(c.status().message, "more replicas need to be updated");
}

#[tokio::test(start_paused = true)]
async fn an_indefinite_pause_waits_for_promote() {
    let policy = RolloutPolicy::new("app", 2, vec![Step::SetWeight(50), Step::Pause(None)]);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Paused);
    tokio::time::sleep(secs(3600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(
        c.status().phase,
        Phase::Paused,
        "no timeout on an indefinite pause"
    );
    c.operate(Operation::Promote);
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(platform.weights(), vec![0, 50, 100, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_analysis_aborts_with_the_real_message() {
    let mut scripts = Scripts::default();
    let msg = r#"Metric "success-rate" assessed Failed due to failed (1) > failureLimit (0)"#;
    scripts
        .by_analysis
        .insert(0, vec![(secs(20), RunPhase::Failed, msg.to_string())]);
    let policy = RolloutPolicy::new(
        "app",
        2,
        vec![Step::SetWeight(20), Step::Analysis(0), Step::SetWeight(50)],
    );
    let (mut c, platform, tl) = deployed(policy, scripts.clone()).await;
    let (d, t) = drive(&mut c, secs(120)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(t >= secs(20) && t < secs(21), "{t:?}");
    let s = c.status();
    assert_eq!(
        s.message,
        format!(
            "RolloutAborted: Rollout aborted update to revision 2: Step-based analysis phase error/failed: {msg}"
        )
    );
    assert!(s.abort);
    assert_eq!(s.current_step_index, Some(0));
    assert_eq!(s.stable_rs, "v1");
    // Weight 0 on the pass right after the abort.
    c.reconcile().await.unwrap();
    assert_eq!(platform.weights().last(), Some(&0));
    assert_eq!(c.status().canary.weights.as_ref().unwrap().canary.weight, 0);
    assert_eq!(scripts.created.lock().unwrap().as_slice(), ["app-v2-2-1"]);
    // The canary is scaled down abortScaleDownDelaySeconds later, not before.
    assert_eq!(platform.desired("v2"), 1);
    tokio::time::sleep(secs(29)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1);
    tokio::time::sleep(secs(2)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 0);
    assert!(reasons(&tl).contains(&"RolloutAborted".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_analysis_aborts_and_an_error_does_too() {
    for phase in [RunPhase::Failed, RunPhase::Error] {
        let mut scripts = Scripts::default();
        scripts
            .by_analysis
            .insert(0, vec![(secs(15), phase, "boom".into())]);
        let mut policy = RolloutPolicy::new("app", 2, steps());
        policy.background = Some(Background {
            analysis: 0,
            starting_step: 1,
        });
        let (mut c, _, _) = deployed(policy, scripts.clone()).await;
        let (d, _) = drive(&mut c, secs(120)).await.unwrap();
        assert_eq!(d, Decision::RolledBack);
        assert!(
            c.status()
                .message
                .ends_with("Background analysis phase error/failed: boom"),
            "{}",
            c.status().message
        );
        assert_eq!(scripts.created.lock().unwrap().as_slice(), ["app-v2-2"]);
    }
}

#[tokio::test(start_paused = true)]
async fn the_background_run_starts_at_its_starting_step_and_is_cancelled_after_promotion() {
    let scripts = Scripts::default();
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.background = Some(Background {
        analysis: 0,
        starting_step: 2,
    });
    let (mut c, _, tl) = deployed(policy, scripts.clone()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    assert_eq!(c.status().current_step_index, Some(1));
    assert!(scripts.created().is_empty(), "not before step 2");
    let (d, _) = drive(&mut c, secs(120)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(scripts.created(), ["app-v2-2"]);
    // `reconcileBackgroundAnalysisRun` holds no run once fully promoted: the run is cancelled
    // (ending Successful, "Run Terminated") and the status no longer names it.
    assert_eq!(
        c.status().canary.current_background_analysis_run_status,
        None
    );
    assert!(
        tl.snapshot()
            .iter()
            .any(|e| e.kind == "AnalysisRunSuccessful" && e.message.contains("app-v2-2")),
        "{:?}",
        tl.snapshot()
    );
}

#[tokio::test(start_paused = true)]
async fn an_inconclusive_run_pauses_and_promote_skips_the_step() {
    let mut scripts = Scripts::default();
    scripts
        .by_analysis
        .insert(0, vec![(secs(5), RunPhase::Inconclusive, String::new())]);
    let policy = RolloutPolicy::new("app", 2, vec![Step::SetWeight(20), Step::Analysis(0)]);
    let (mut c, _, _) = deployed(policy, scripts).await;
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Paused);
    assert_eq!(c.status().message, "InconclusiveAnalysisRun");
    assert!(c.status().controller_pause);
    // No deadline while paused.
    tokio::time::sleep(secs(3600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Paused);
    c.operate(Operation::Promote);
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
}

#[tokio::test(start_paused = true)]
async fn abort_then_retry_restarts_from_step_zero_with_new_runs() {
    let scripts = Scripts::default();
    let policy = RolloutPolicy::new(
        "app",
        2,
        vec![
            Step::SetWeight(20),
            Step::Analysis(0),
            Step::Pause(Some(secs(5))),
        ],
    );
    let (mut c, platform, _) = deployed(policy, scripts.clone()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    c.operate(Operation::Abort);
    c.reconcile().await.unwrap();
    assert_eq!(c.decision(), Some(Decision::RolledBack));
    assert_eq!(
        c.status().message,
        "RolloutAborted: Rollout aborted update to revision 2"
    );
    assert_eq!(platform.weights().last(), Some(&0));
    c.operate(Operation::Retry);
    c.reconcile().await.unwrap();
    assert!(!c.status().abort);
    assert_eq!(c.status().phase, Phase::Progressing);
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    let created = scripts.created.lock().unwrap().clone();
    assert_eq!(created, vec!["app-v2-2-1", "app-v2-2-1.1"]);
    assert_eq!(platform.weights().last(), Some(&20));
}

#[tokio::test(start_paused = true)]
async fn a_canary_that_never_becomes_available_times_out_and_aborts() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.progress_deadline = secs(60);
    policy.progress_deadline_abort = true;
    let (mut c, platform, tl) = deployed(policy, Scripts::default()).await;
    platform.break_revision("v2");
    let (d, t) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(t >= secs(60) && t < secs(61), "{t:?}");
    // The pass that times out is Degraded by the condition and adds the abort; the next one
    // sets the aborted condition, whose message no longer carries the reason (upstream keeps
    // an abort's message only in the pass that adds it). The event does.
    assert_eq!(
        c.status().message,
        "RolloutAborted: Rollout aborted update to revision 2"
    );
    assert!(c.status().abort);
    assert!(tl.snapshot().iter().any(|e| e.kind == "RolloutAborted"
        && e.message == r#"ReplicaSet "app-v2" has timed out progressing."#));
}

#[tokio::test(start_paused = true)]
async fn without_deadline_abort_the_timeout_only_degrades() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.progress_deadline = secs(60);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    platform.break_revision("v2");
    let (d, _) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(!c.status().abort);
    assert_eq!(
        c.status().message,
        r#"ProgressDeadlineExceeded: ReplicaSet "app-v2" has timed out progressing."#
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_not_checked_during_a_pause_step() {
    let mut policy = RolloutPolicy::new(
        "app",
        2,
        vec![Step::Pause(Some(secs(120))), Step::SetWeight(50)],
    );
    policy.progress_deadline = secs(30);
    policy.progress_deadline_abort = true;
    let (mut c, _, _) = deployed(policy, Scripts::default()).await;
    let (d, t) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t >= secs(120));
}

#[tokio::test(start_paused = true)]
async fn reverting_to_the_stable_template_skips_the_steps() {
    let (mut c, _, tl) = deployed(RolloutPolicy::new("app", 2, steps()), Scripts::default()).await;
    c.reconcile().await.unwrap();
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    let (d, t) = drive(&mut c, secs(10)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t < secs(1));
    assert!(reasons(&tl).contains(&"SkipSteps".to_string()));
}
