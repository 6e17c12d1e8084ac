//! The operating characteristic: per grid point, how often the policy rolled back, promoted
//! or paused, and how long it took; then the smallest magnitude caught and the false-rollback
//! rate. Serialized as `gauntlet power --json` writes it (docs/power.md), one entry per point
//! in grid order, so a plot of P(rolled back) against magnitude per fault kind needs nothing
//! else.

use serde::Serialize;

use super::grid::{Fault, FaultKind};
use super::sim::Outcome;
use crate::controller::Decision;

/// The probability a grid point's release must be rolled back with to count as caught.
pub const CAUGHT: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub median: f64,
    pub p95: f64,
}

/// One grid point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub fault: FaultKind,
    /// A share for errors, milliseconds for latency.
    pub magnitude: f64,
    /// `2%`, `+200ms`.
    pub label: String,
    pub runs: usize,
    pub rolled_back: f64,
    pub promoted: f64,
    pub paused: f64,
    /// No decision within the horizon.
    pub undecided: f64,
    /// Wilson's 95 % interval of `rolled_back`.
    pub rolled_back_ci95: [f64; 2],
    /// Seconds from the release to the decision, over the runs that reached one (policy
    /// time when the time scale is 1); null when none did.
    pub decision_s: Option<Quantiles>,
}

/// Smallest magnitudes caught, per kind; null when none of the grid's is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Caught {
    pub errors: Option<f64>,
    pub latency: Option<f64>,
}

/// What was simulated, to read the numbers by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setup {
    pub target: String,
    pub controller: String,
    /// Requests per second offered.
    pub rate: f64,
    pub time_scale: f64,
    pub runs: usize,
    pub seed: u64,
    pub scrape_interval_s: f64,
    /// The horizon after the release, seconds.
    pub within_s: f64,
}

/// How the run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub wall_s: f64,
    /// Remote-write requests: one per measurement that needed new samples.
    pub writes: u64,
    pub queries: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerReport {
    pub setup: Setup,
    pub points: Vec<Point>,
    pub smallest_caught: Caught,
    /// P(rolled back) of the release without a fault; null when the grid has no 0.
    pub false_rollback: Option<f64>,
    pub false_rollback_ci95: Option<[f64; 2]>,
    pub cost: Cost,
}

/// The point of `fault` from its release's outcomes.
pub fn point(fault: &Fault, outcomes: &[Outcome]) -> Point {
    let n = outcomes.len();
    let share = |d: Option<Decision>| {
        if n == 0 {
            0.0
        } else {
            outcomes.iter().filter(|o| o.decision == d).count() as f64 / n as f64
        }
    };
    let rolled = outcomes
        .iter()
        .filter(|o| o.decision == Some(Decision::RolledBack))
        .count();
    let mut times: Vec<f64> = outcomes.iter().filter_map(|o| o.decision_s).collect();
    times.sort_by(f64::total_cmp);
    Point {
        fault: fault.kind(),
        magnitude: fault.magnitude(),
        label: fault.label(),
        runs: n,
        rolled_back: share(Some(Decision::RolledBack)),
        promoted: share(Some(Decision::Promoted)),
        paused: share(Some(Decision::Paused)),
        undecided: share(None),
        rolled_back_ci95: wilson(rolled, n),
        decision_s: (!times.is_empty()).then(|| Quantiles {
            median: quantile(&times, 0.5),
            p95: quantile(&times, 0.95),
        }),
    }
}

/// The smallest magnitude above 0 of each kind rolled back with probability ≥ [`CAUGHT`].
pub fn smallest_caught(points: &[Point]) -> Caught {
    let smallest = |kind: FaultKind| {
        points
            .iter()
            .filter(|p| p.fault == kind && p.magnitude > 0.0 && p.rolled_back >= CAUGHT)
            .map(|p| p.magnitude)
            .min_by(f64::total_cmp)
    };
    Caught {
        errors: smallest(FaultKind::Errors),
        latency: smallest(FaultKind::Latency),
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Wilson's score interval at 95 % for `k` successes in `n` trials: honest at 0 and n, where
/// the normal approximation collapses to a point.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = k as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn o(d: Option<Decision>, s: Option<f64>) -> Outcome {
        Outcome {
            decision: d,
            decision_s: s,
        }
    }

    #[test]
    fn a_point_counts_decisions_and_their_times() {
        let outs = vec![
            o(Some(Decision::RolledBack), Some(10.0)),
            o(Some(Decision::RolledBack), Some(20.0)),
            o(Some(Decision::Promoted), Some(70.0)),
            o(None, None),
        ];
        let p = point(&Fault::Errors(0.05), &outs);
        assert_eq!(
            (p.rolled_back, p.promoted, p.paused, p.undecided),
            (0.5, 0.25, 0.0, 0.25)
        );
        assert_eq!(
            p.decision_s,
            Some(Quantiles {
                median: 20.0,
                p95: 70.0
            })
        );
        assert_eq!(p.label, "5%");
        let none = point(&Fault::Latency(Duration::from_millis(50)), &[o(None, None)]);
        assert_eq!(none.decision_s, None);
        assert_eq!(none.magnitude, 50.0);
    }

    #[test]
    fn the_smallest_caught_magnitude_ignores_zero_and_misses() {
        let mk = |f: Fault, rb: f64| Point {
            rolled_back: rb,
            ..point(&f, &[])
        };
        let pts = vec![
            mk(Fault::Errors(0.0), 1.0),
            mk(Fault::Errors(0.01), 0.5),
            mk(Fault::Errors(0.05), 0.96),
            mk(Fault::Errors(0.1), 1.0),
            mk(Fault::Latency(Duration::from_millis(100)), 0.9),
        ];
        assert_eq!(
            smallest_caught(&pts),
            Caught {
                errors: Some(0.05),
                latency: None
            }
        );
    }

    #[test]
    fn wilson_intervals_stay_inside_zero_and_one() {
        let [lo, hi] = wilson(0, 10);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 1e-3, "{hi}");
        let [lo, hi] = wilson(10, 10);
        assert!(
            (lo - 0.7225).abs() < 1e-3 && (hi - 1.0).abs() < 1e-9,
            "{lo} {hi}"
        );
        let [lo, hi] = wilson(50, 100);
        assert!((lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3);
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }
}
