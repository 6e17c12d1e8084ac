//! `rollout/trafficrouting.go` (`reconcileTrafficRouting`): the weight the Ingress gets.

use super::*;

#[tokio::test(start_paused = true)]
async fn reconcile_traffic_routing_holds_the_last_set_weight_until_the_canary_is_fully_available() {
    let policy = RolloutPolicy::new("app", 4, vec![Step::SetWeight(25)]);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    platform.cap_available("v2", 1);
    run_for(&mut c, secs(5)).await;
    assert_eq!(c.status().current_step_index, Some(1));
    assert_eq!(platform.desired("v2"), 4);
    assert_eq!(
        platform.weights(),
        vec![0, 25],
        "not 100 before the canary is"
    );
    assert_eq!(c.status().phase, Phase::Progressing);
    platform.uncap("v2");
    let (d, _) = drive(&mut c, secs(5)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    // 100 in the pass that promotes, 0 once promoted.
    assert_eq!(platform.weights(), vec![0, 25, 100, 0]);
}

#[tokio::test(start_paused = true)]
async fn reconcile_traffic_routing_keeps_the_current_weight_on_promote_full() {
    let (mut c, platform, tl) =
        deployed(RolloutPolicy::new("app", 3, steps()), Scripts::default()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    assert_eq!(c.status().phase, Phase::Paused);
    platform.cap_available("v2", 1);
    c.operate(Operation::PromoteFull);
    run_for(&mut c, secs(5)).await;
    assert_eq!(platform.desired("v2"), 3);
    assert!(!c.status().fully_promoted());
    assert_eq!(platform.weights(), vec![0, 20]);
    platform.uncap("v2");
    let (d, t) = drive(&mut c, secs(10)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t < secs(1));
    assert_eq!(platform.weights(), vec![0, 20, 0], "no 100 on the way");
    assert!(
        tl.snapshot()
            .iter()
            .any(|e| e.message.ends_with("Full promotion requested"))
    );
}
