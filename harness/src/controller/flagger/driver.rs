//! Running the scheduler in real time: a pass whenever a tick is due, and at least every
//! [`TICK`] so the Deployment controller's part (a primary's rollout, readiness, deadlines)
//! follows the pods as an informer would.

use std::time::Duration;

use tokio::time::Instant;

use super::FlaggerController;
use crate::cluster::{InfraError, Platform};
use crate::controller::analysis::MetricSource;
use crate::controller::argo::Decision;

/// How often a pass runs at the latest.
pub const TICK: Duration = Duration::from_millis(200);

/// Runs passes until the Canary reaches a decision or `within` passes; returns the decision
/// and how long after the call it came.
///
/// # Errors
/// An infrastructure failure of the platform.
pub async fn until_decision<P: Platform, M: MetricSource + Clone>(
    ctl: &mut FlaggerController<P, M>,
    within: Duration,
) -> Result<Option<(Decision, Duration)>, InfraError> {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        ctl.reconcile().await?;
        if let Some(d) = ctl.decision() {
            return Ok(Some((d, start.elapsed())));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(ctl.wait_hint(TICK).min(deadline - now)).await;
    }
}

/// Keeps running passes for `how_long` (after a decision: ticks still come, e.g. the
/// analysis of a canary waiting for promotion).
///
/// # Errors
/// An infrastructure failure of the platform.
pub async fn settle<P: Platform, M: MetricSource + Clone>(
    ctl: &mut FlaggerController<P, M>,
    how_long: Duration,
) -> Result<(), InfraError> {
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
