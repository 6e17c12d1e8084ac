//! Expectations against what happened. Reads only the timeline and the load statistics, so the
//! same verdict applies to every backend.
//!
//! Beyond outcome, time and error share, two invariants are checked after the decision (once a
//! short grace has passed for requests already in flight and the router's reload): after a
//! rollback no user is served by the release and the canary weight stays 0; after a promotion
//! every user is served by the release.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::Counts;
use crate::report::model::{ClientReport, VersionCount};
use crate::scenario::{Outcome, Scenario};
use crate::timeline::{Event, Source};

/// Requests already sent, and the reload that applies the decision, may still reach the old
/// side this long after the decision.
pub const GRACE: Duration = Duration::from_secs(2);

/// What the run observed.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The decision and its time after the release, in seconds.
    pub decision: Option<(Outcome, f64)>,
    /// The controller's last phase line, for a missing decision.
    pub last_status: String,
    /// How long the harness waited for a decision, in seconds after the release.
    pub waited_s: f64,
    /// From the release to the decision (or to the end of the wait).
    pub client: ClientReport,
    /// Responses per version from `decision + GRACE` to the end of the observation.
    pub after: BTreeMap<String, Counts>,
}

/// The client report from per-version counts.
pub fn client_report(counts: &BTreeMap<String, Counts>, p95_ms: Option<f64>) -> ClientReport {
    let mut r = ClientReport {
        p95_ms: p95_ms.unwrap_or(0.0),
        ..ClientReport::default()
    };
    for (version, c) in counts {
        r.requests += c.requests;
        r.errors += c.errors;
        r.by_version.insert(
            version.clone(),
            VersionCount {
                requests: c.requests,
                errors: c.errors,
            },
        );
    }
    r.error_rate = if r.requests == 0 {
        0.0
    } else {
        r.errors as f64 / r.requests as f64
    };
    r
}

/// Every broken expectation, one line each with the numbers; empty when all hold.
pub fn judge(s: &Scenario, e: &Evidence, timeline: &[Event]) -> Vec<String> {
    let mut failures = Vec::new();
    let within = s.within.as_secs_f64();
    let budget = s.budget_text();
    match e.decision {
        None => failures.push(format!(
            "no decision within {:.1}s of the release (budget {budget}); last status: {}",
            e.waited_s, e.last_status
        )),
        Some((got, at)) => {
            if got != s.outcome {
                failures.push(format!(
                    "expected {}, but the controller {got} after {at:.1}s ({})",
                    s.outcome, e.last_status
                ));
            }
            if at > within {
                failures.push(format!(
                    "decided after {at:.1}s, over the budget of {budget}"
                ));
            }
        }
    }
    let c = &e.client;
    if c.requests == 0 {
        failures.push("no request reached the ingress between the release and the decision".into());
    } else if c.error_rate > s.client_error_max {
        failures.push(format!(
            "client errors {:.2}% ({} of {} requests) over the {:.2}% allowed",
            c.error_rate * 100.0,
            c.errors,
            c.requests,
            s.client_error_max * 100.0
        ));
    }
    if let (Some(want), Some((_, at))) = (&s.weights, e.decision) {
        let went = weight_sequence(timeline, at);
        let want: Vec<u64> = want.iter().map(|w| *w as u64).collect();
        if went != want {
            failures.push(format!(
                "the canary weights went {went:?}, expected {want:?}"
            ));
        }
    }
    if let Some((got, at)) = e.decision
        && got == s.outcome
    {
        let release = s.release_version.as_str();
        let served: u64 = e.after.values().map(|c| c.requests).sum();
        match got {
            Outcome::RolledBack => {
                if let Some(c) = e.after.get(release).filter(|c| c.requests > 0) {
                    failures.push(format!(
                        "after the rollback, {} of {served} responses still came from the release {release}",
                        c.requests
                    ));
                }
                let later: Vec<u64> = weights_after(timeline, at + GRACE.as_secs_f64())
                    .into_iter()
                    .filter(|w| *w > 0)
                    .collect();
                if !later.is_empty() {
                    failures.push(format!(
                        "after the rollback the canary weight rose again to {later:?}"
                    ));
                }
            }
            Outcome::Promoted => {
                let others: u64 = e
                    .after
                    .iter()
                    .filter(|(v, _)| v.as_str() != release && v.as_str() != "none")
                    .map(|(_, c)| c.requests)
                    .sum();
                if others > 0 {
                    failures.push(format!(
                        "after the promotion, {others} of {served} responses came from another version than {release}"
                    ));
                }
            }
            Outcome::Paused => {}
        }
    }
    failures
}

/// The distinct positive canary weights the router applied from the release to the decision,
/// in order, and within [`GRACE`] after it: the pass that decides may also set a weight (Argo
/// Rollouts sets 100 % in the pass that promotes), and the router applies it only after an
/// nginx reload, which can end after the decision was seen. A rollback's weight is 0, so the
/// grace adds nothing to it.
pub fn weight_sequence(timeline: &[Event], decision_s: f64) -> Vec<u64> {
    let mut went: Vec<u64> = Vec::new();
    for w in weights_between(timeline, 0.0, decision_s + GRACE.as_secs_f64()) {
        if w > 0 && went.last() != Some(&w) {
            went.push(w);
        }
    }
    went
}

/// Canary weights the router applied after `t_s`.
fn weights_after(timeline: &[Event], t_s: f64) -> Vec<u64> {
    weights_between(timeline, t_s, f64::INFINITY)
}

/// Canary weights the router applied in `(from_s, to_s]`, in order.
fn weights_between(timeline: &[Event], from_s: f64, to_s: f64) -> Vec<u64> {
    timeline
        .iter()
        .filter(|e| e.source == Source::Router && e.kind == "canary-route")
        .filter(|e| e.t_s > from_s && e.t_s <= to_s)
        .filter_map(|e| e.data.get("weight").and_then(|w| w.as_u64()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Timeline;

    fn counts(requests: u64, errors: u64) -> Counts {
        Counts {
            requests,
            errors,
            ..Counts::default()
        }
    }

    fn scenario(outcome: Outcome) -> Scenario {
        Scenario::target("x")
            .expect(outcome)
            .within(Duration::from_secs(60))
    }

    fn evidence(
        decision: Option<(Outcome, f64)>,
        by: &[(&str, u64, u64)],
        after: &[(&str, u64)],
    ) -> Evidence {
        let by: BTreeMap<String, Counts> = by
            .iter()
            .map(|(v, r, e)| (v.to_string(), counts(*r, *e)))
            .collect();
        Evidence {
            decision,
            last_status: "Degraded: RolloutAborted: ...".into(),
            waited_s: 90.0,
            client: client_report(&by, Some(3.0)),
            after: after
                .iter()
                .map(|(v, r)| (v.to_string(), counts(*r, 0)))
                .collect(),
        }
    }

    #[test]
    fn a_rollback_in_time_with_few_errors_passes() {
        let e = evidence(
            Some((Outcome::RolledBack, 20.0)),
            &[("1.0.0", 900, 0), ("2.0.0", 100, 30)],
            &[("1.0.0", 200)],
        );
        assert_eq!(
            judge(&scenario(Outcome::RolledBack), &e, &[]),
            Vec::<String>::new()
        );
        assert!((e.client.error_rate - 0.03).abs() < 1e-12);
    }

    #[test]
    fn each_broken_expectation_is_reported_with_numbers() {
        let e = evidence(
            Some((Outcome::Promoted, 75.5)),
            &[("1.0.0", 900, 0), ("2.0.0", 100, 90)],
            &[("1.0.0", 5), ("2.0.0", 100)],
        );
        let f = judge(&scenario(Outcome::RolledBack), &e, &[]);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].starts_with("expected rolled-back, but the controller promoted after 75.5s"));
        assert_eq!(f[1], "decided after 75.5s, over the budget of 1m");
        assert_eq!(
            f[2],
            "client errors 9.00% (90 of 1000 requests) over the 5.00% allowed"
        );
    }

    #[test]
    fn the_release_serving_after_a_rollback_breaks_the_invariant() {
        let tl = Timeline::new();
        tl.mark_release();
        let e = evidence(
            Some((Outcome::RolledBack, 0.0)),
            &[("1.0.0", 100, 0)],
            &[("1.0.0", 90), ("2.0.0", 10)],
        );
        let f = judge(&scenario(Outcome::RolledBack), &e, &tl.snapshot());
        assert_eq!(
            f,
            ["after the rollback, 10 of 100 responses still came from the release 2.0.0"]
        );
    }

    #[test]
    fn a_weight_rising_after_a_rollback_breaks_the_invariant() {
        let tl = Timeline::new();
        tl.mark_release();
        tl.emit(
            Source::Router,
            "canary-route",
            "canary weight 20%",
            serde_json::json!({"weight": 20}),
        );
        let e = evidence(
            Some((Outcome::RolledBack, -10.0)),
            &[("1.0.0", 100, 0)],
            &[],
        );
        let f = judge(&scenario(Outcome::RolledBack), &e, &tl.snapshot());
        assert_eq!(
            f,
            ["after the rollback the canary weight rose again to [20]"]
        );
    }

    #[test]
    fn the_weight_sequence_is_checked_when_expected() {
        let tl = Timeline::new();
        tl.mark_release();
        for w in [1, 2, 2, 10, 80, 0] {
            tl.emit(
                Source::Router,
                "canary-route",
                "w",
                serde_json::json!({"weight": w}),
            );
        }
        let e = evidence(Some((Outcome::Promoted, 1e9)), &[("2.0.0", 100, 0)], &[]);
        let mut s = scenario(Outcome::Promoted).within(Duration::from_secs(u64::MAX / 4));
        s.weights = Some(vec![1, 2, 10, 80]);
        assert_eq!(judge(&s, &e, &tl.snapshot()), Vec::<String>::new());
        s.weights = Some(vec![1, 2, 10, 50]);
        assert_eq!(
            judge(&s, &e, &tl.snapshot()),
            ["the canary weights went [1, 2, 10, 80], expected [1, 2, 10, 50]"]
        );
    }

    #[test]
    fn an_old_version_after_promotion_and_a_missing_decision_fail() {
        let e = evidence(
            Some((Outcome::Promoted, 30.0)),
            &[("2.0.0", 100, 0)],
            &[("1.0.0", 3), ("2.0.0", 50)],
        );
        let f = judge(&scenario(Outcome::Promoted), &e, &[]);
        assert_eq!(
            f,
            ["after the promotion, 3 of 53 responses came from another version than 2.0.0"]
        );
        let e = evidence(None, &[("1.0.0", 100, 0)], &[]);
        let f = judge(&scenario(Outcome::Promoted), &e, &[]);
        assert!(
            f[0].starts_with("no decision within 90.0s of the release (budget 1m)"),
            "{f:?}"
        );
    }
}
