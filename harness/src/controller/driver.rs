//! Running an emulated controller in real time: a pass whenever work is due (a pause expiring,
//! a measurement, a tick), and at least every [`TICK`] so pod changes (a canary becoming
//! available, a crash) are seen as an informer would deliver them. Measurements run apart from
//! the passes (as in Argo's analysis controller); one that finishes is read by the next pass,
//! within a [`TICK`].

use std::time::Duration;

use tokio::time::Instant;

use super::{Controller, Decision};
use crate::cluster::InfraError;

/// How often a pass runs at the latest: pod state changes are noticed within this.
pub const TICK: Duration = Duration::from_millis(200);

/// Runs passes until the rollout reaches a decision or `within` passes; returns the decision
/// and how long after the call it came.
///
/// # Errors
/// An infrastructure failure of the platform.
pub async fn until_decision<C: Controller>(
    ctl: &mut C,
    within: Duration,
) -> Result<Option<(Decision, Duration)>, InfraError> {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        ctl.reconcile().await?;
        if let Some(d) = ctl.decision() {
            let at = start.elapsed();
            // The passes the decision itself requeues (weight to 0 after an abort or a
            // promotion) run at once in the real controller too; apply them before returning.
            for _ in 0..5 {
                if !ctl.wait_hint(TICK).is_zero() {
                    break;
                }
                ctl.reconcile().await?;
            }
            return Ok(Some((d, at)));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(ctl.wait_hint(TICK).min(deadline - now)).await;
    }
}

/// Keeps running passes for `how_long` (after a decision: the weight returning to 0, the
/// scale-down of the old side).
///
/// # Errors
/// An infrastructure failure of the platform.
pub async fn settle<C: Controller>(ctl: &mut C, how_long: Duration) -> Result<(), InfraError> {
    let deadline = Instant::now() + how_long;
    loop {
        ctl.reconcile().await?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep(ctl.wait_hint(TICK).min(deadline - now)).await;
    }
}
