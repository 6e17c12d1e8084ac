//! `rollout/replicaset.go` (`reconcileNewReplicaSet`, `shouldDelayScaleDownOnAbort`),
//! `utils/replicaset/canary.go` (`AtDesiredReplicaCountsForCanary`, `GetCurrentSetWeight`,
//! `UseSetCanaryScale`) and `rollout/sync.go` (`createDesiredReplicaSet`).

use std::path::Path;

use super::*;
use crate::controller::argo::from_spec::from_spec;
use crate::controller::timescale::TimeScale;

#[tokio::test(start_paused = true)]
async fn get_current_set_weight_is_zero_after_abort_so_a_zero_abort_delay_scales_the_canary_down() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.abort_scale_down_delay = None;
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1);
    c.operate(Operation::Abort);
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 0, "no delay to wait for");
    assert_eq!(
        platform.canary_service(),
        Some(RevisionHash("v1".into())),
        "the canary Service selects the stable pods"
    );
    tokio::time::sleep(secs(600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 0);
}

#[tokio::test(start_paused = true)]
async fn use_set_canary_scale_keeps_the_first_steps_scale_after_an_abort_with_zero_delay() {
    let mut policy = RolloutPolicy::new(
        "app",
        4,
        vec![
            Step::SetCanaryScale(CanaryScale::Replicas(1)),
            Step::SetWeight(50),
            Step::SetCanaryScale(CanaryScale::MatchTrafficWeight),
            Step::Pause(None),
        ],
    );
    policy.abort_scale_down_delay = None;
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    run_for(&mut c, secs(5)).await;
    assert_eq!(c.status().current_step_index, Some(3));
    assert_eq!(platform.desired("v2"), 2);
    c.operate(Operation::Abort);
    run_for(&mut c, secs(600)).await;
    // Back at step 0, whose setCanaryScale still applies.
    assert_eq!(platform.desired("v2"), 1);
}

#[tokio::test(start_paused = true)]
async fn at_desired_replica_counts_for_canary_needs_the_stable_pods_created_not_available() {
    let policy = RolloutPolicy::new("app", 2, vec![Step::SetWeight(20), Step::Pause(None)]);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    // One of the two stable pods is not ready: still enough for the other 80 % of traffic.
    platform.pin("v1", 2, 1);
    run_for(&mut c, secs(5)).await;
    assert_eq!(c.status().current_step_index, Some(1));
    assert_eq!(c.status().message, "CanaryPauseStep");
    assert_eq!(platform.weights(), vec![0, 20]);
}

#[tokio::test(start_paused = true)]
async fn at_desired_replica_counts_for_canary_needs_exactly_the_desired_canary_pods_available() {
    let policy = RolloutPolicy::new(
        "app",
        4,
        vec![Step::SetWeight(50), Step::SetWeight(25), Step::Pause(None)],
    );
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().current_step_index, Some(1));
    // Scaled from 2 to 1, the second pod still counts until it has terminated.
    platform.pin("v2", 2, 2);
    run_for(&mut c, secs(5)).await;
    assert_eq!(platform.desired("v2"), 1);
    assert_eq!(c.status().current_step_index, Some(1));
    assert_eq!(platform.weights(), vec![0, 50]);
    platform.unpin("v2");
    run_for(&mut c, secs(1)).await;
    assert_eq!(c.status().current_step_index, Some(2));
    assert_eq!(platform.weights(), vec![0, 50, 25]);
}

#[tokio::test(start_paused = true)]
async fn create_desired_replica_set_takes_min_ready_seconds_from_the_rollout_on_the_policy_clock() {
    let mut m = crate::spec::load_target(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo"),
    )
    .unwrap();
    m.rollouts[0].object.spec.min_ready_seconds = Some(20);
    let rollout = m.rollouts[0].clone();
    let scale = TimeScale::new(0.25).unwrap();
    let e = from_spec(&m, &rollout, scale).unwrap();
    assert_eq!(e.policy.progress_deadline, secs(15));
    let tpl = crate::cluster::local::template::from_k8s(
        rollout.object.name(),
        &rollout.object.spec.template,
        rollout.object.min_ready(),
    )
    .unwrap();
    assert_eq!(tpl.min_ready, secs(20), "the template as written");
    let platform = FakePlatform::default();
    let mut c = ArgoController::new(
        e.policy,
        platform.clone(),
        Scripts::default(),
        Timeline::new(),
    );
    c.apply_template(RevisionHash("v1".into()), tpl)
        .await
        .unwrap();
    let created = platform.template("v1").unwrap();
    assert_eq!(
        created.min_ready,
        secs(5),
        "minReadySeconds 20 at time scale 0.25, on the deadline's clock"
    );
}
