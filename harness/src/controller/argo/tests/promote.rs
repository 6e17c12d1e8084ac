//! The kubectl plugin's `promote` (`getPatches`, `isInconclusive`) and what the controller
//! makes of the patches (`syncRolloutStatusCanary`).

use super::*;

#[tokio::test(start_paused = true)]
async fn get_patches_skips_the_current_step_only_when_its_run_is_inconclusive() {
    let policy = with_background(
        RolloutPolicy::new(
            "app",
            2,
            vec![Step::SetWeight(20), Step::Analysis(1), Step::SetWeight(50)],
        ),
        0,
    );
    // The background run pauses the rollout while the step's own run is still measuring; the
    // run that replaces it after the promote never decides.
    let scripts = Scripts::default()
        .analysis(0, vec![at(5, RunPhase::Inconclusive)])
        .run("app-v2-2.1", vec![])
        .analysis(1, vec![(secs(30), RunPhase::Failed, "boom".into())]);
    let (mut c, _, _) = deployed(policy, scripts.clone()).await;
    run_for(&mut c, secs(10)).await;
    assert_eq!(c.status().message, "InconclusiveAnalysisRun");
    assert_eq!(c.status().current_step_index, Some(1));
    c.operate(Operation::Promote);
    run_for(&mut c, secs(1)).await;
    assert_eq!(
        c.status().current_step_index,
        Some(1),
        "the step is not skipped: its run is Running, not Inconclusive"
    );
    assert!(c.status().pause_conditions.is_empty());
    let (d, _) = drive(&mut c, secs(30)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(
        c.status()
            .message
            .ends_with("Step-based analysis phase error/failed: boom"),
        "{}",
        c.status().message
    );
    assert_eq!(scripts.created(), ["app-v2-2", "app-v2-2-1", "app-v2-2.1"]);
}

#[tokio::test(start_paused = true)]
async fn sync_rollout_status_canary_clears_an_abort_on_promote_full() {
    let (mut c, platform, _) =
        deployed(RolloutPolicy::new("app", 3, steps()), Scripts::default()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    c.operate(Operation::Abort);
    c.reconcile().await.unwrap();
    assert_eq!(c.decision(), Some(Decision::RolledBack));
    c.operate(Operation::PromoteFull);
    let t = run_until(&mut c, secs(10), |c| c.status().fully_promoted())
        .await
        .expect("promoted");
    assert!(t < secs(1), "{t:?}");
    c.reconcile().await.unwrap();
    let s = c.status();
    assert!(!s.abort);
    assert_eq!(s.phase, Phase::Healthy);
    assert_eq!(c.decision(), Some(Decision::Promoted));
    assert_eq!(platform.weights(), vec![0, 20, 0]);
}

#[tokio::test(start_paused = true)]
async fn is_inconclusive_reads_only_the_current_step_run() {
    use crate::controller::argo::status::{PauseCondition, RunStatus};
    for (run, index, controller_pause) in [
        (Some("Inconclusive"), 2, false),
        (Some("Running"), 1, true),
        (Some("Successful"), 1, true),
        (None, 1, true),
    ] {
        let policy = RolloutPolicy::new(
            "app",
            1,
            vec![Step::SetWeight(10), Step::Analysis(0), Step::Pause(None)],
        );
        let (mut c, _, _) = deployed(policy, Scripts::default()).await;
        c.status.current_step_index = Some(1);
        c.status.controller_pause = true;
        c.status.pause_conditions = vec![PauseCondition {
            reason: PauseReason::InconclusiveAnalysisRun,
            start_time: 0.0,
            since: Instant::now(),
        }];
        c.status.canary.current_step_analysis_run_status = run.map(|s| RunStatus {
            name: "r".into(),
            status: s.into(),
            message: String::new(),
        });
        c.operate(Operation::Promote);
        let s = c.status();
        assert!(s.pause_conditions.is_empty(), "{run:?}");
        assert_eq!(s.current_step_index, Some(index), "{run:?}");
        assert_eq!(s.controller_pause, controller_pause, "{run:?}");
    }
}
