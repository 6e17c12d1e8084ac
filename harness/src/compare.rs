//! The emulation measured against the real controller: one scenario's report from each tier,
//! side by side, and what differs.
//!
//! Fields compared: whether each tier met the scenario's own expectations, the outcome, the canary weight sequence of the decision
//! ([`weight_sequence`], which `expect.weights` reads too), and
//! the decision time, which may differ by at most one analysis interval (the controllers measure
//! on their own ticks, so a difference below one interval is the same decision at a different
//! phase of the clock). The final phase and message and the client error share are reported but
//! not judged: messages are worded differently, and the error share follows from the weights and
//! the decision time already compared.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::report::model::ScenarioReport;
use crate::timeline::{Event, Source};
use crate::verdict::weight_sequence;

/// What one tier did with a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub outcome: Option<String>,
    /// The controller's last phase and message (Argo `Healthy`, `Degraded: ...`; Flagger's).
    pub phase: Option<String>,
    pub message: Option<String>,
    pub weights: Vec<u64>,
    pub decision_s: Option<f64>,
    pub client_error_rate: f64,
    /// The scenario's own expectations held.
    pub passed: bool,
}

impl Side {
    pub fn of(r: &ScenarioReport) -> Side {
        let decision = r.decision_s.unwrap_or(f64::INFINITY);
        let (phase, message) = last_phase(&r.timeline);
        Side {
            outcome: r.outcome.clone(),
            phase,
            message,
            weights: weight_sequence(&r.timeline, decision),
            decision_s: r.decision_s,
            client_error_rate: r.client.error_rate,
            passed: r.passed,
        }
    }
}

/// A field on which the tiers disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub field: &'static str,
    pub emulated: String,
    pub real: String,
}

/// One scenario under both tiers.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub name: String,
    /// The policy's analysis interval, the unit of the decision time's tolerance.
    pub interval_s: Option<f64>,
    pub emulated: Side,
    pub real: Side,
    /// `real - emulated`, in analysis intervals, when both decided.
    pub decision_delta_intervals: Option<f64>,
    pub mismatches: Vec<Mismatch>,
}

impl Comparison {
    pub fn matches(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Compares the two reports of one scenario; `interval` is its policy's analysis interval.
pub fn compare(
    emulated: &ScenarioReport,
    real: &ScenarioReport,
    interval: Option<Duration>,
) -> Comparison {
    let (e, r) = (Side::of(emulated), Side::of(real));
    let mut mismatches = Vec::new();
    let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "no decision".into());
    // A scenario both tiers fail alike still says the suite is wrong for both.
    if !(e.passed && r.passed) {
        let verdict = |p: bool, rep: &ScenarioReport| {
            if p {
                "met".to_string()
            } else {
                format!("not met: {}", rep.failure.clone().unwrap_or_default())
            }
        };
        mismatches.push(Mismatch {
            field: "expectations",
            emulated: verdict(e.passed, emulated),
            real: verdict(r.passed, real),
        });
    }
    if e.outcome != r.outcome {
        mismatches.push(Mismatch {
            field: "outcome",
            emulated: show(&e.outcome),
            real: show(&r.outcome),
        });
    }
    if e.weights != r.weights {
        mismatches.push(Mismatch {
            field: "weights",
            emulated: format!("{:?}", e.weights),
            real: format!("{:?}", r.weights),
        });
    }
    let interval_s = interval.map(|i| i.as_secs_f64()).filter(|i| *i > 0.0);
    let delta = match (e.decision_s, r.decision_s, interval_s) {
        (Some(a), Some(b), Some(i)) => Some((b - a) / i),
        _ => None,
    };
    if let (Some(d), Some(a), Some(b)) = (delta, e.decision_s, r.decision_s)
        && d.abs() > 1.0
    {
        mismatches.push(Mismatch {
            field: "decision_s",
            emulated: format!("{a:.1}s"),
            real: format!("{b:.1}s ({d:+.1} intervals)"),
        });
    }
    Comparison {
        name: emulated.name.clone(),
        interval_s,
        emulated: e,
        real: r,
        decision_delta_intervals: delta,
        mismatches,
    }
}

/// The controller's last `phase` event: phase and message.
fn last_phase(timeline: &[Event]) -> (Option<String>, Option<String>) {
    timeline
        .iter()
        .rev()
        .find(|e| e.source == Source::Controller && e.kind == "phase")
        .map(|e| {
            let s = |k: &str| e.data.get(k).and_then(Value::as_str).map(String::from);
            (s("phase"), s("message").filter(|m| !m.is_empty()))
        })
        .unwrap_or((None, None))
}

/// The comparisons as a terminal table.
pub fn table(all: &[Comparison]) -> String {
    let mut rows = vec![[
        "SCENARIO".to_string(),
        "OUTCOME (emulated | real)".into(),
        "WEIGHTS (emulated | real)".into(),
        "DECISION (emulated | real, Δ intervals)".into(),
        "CLIENT ERRORS".into(),
        "RESULT".into(),
    ]];
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.1}s"));
    for c in all {
        rows.push([
            c.name.clone(),
            format!("{} | {}", opt(&c.emulated.outcome), opt(&c.real.outcome)),
            format!("{:?} | {:?}", c.emulated.weights, c.real.weights),
            format!(
                "{} | {}{}",
                secs(c.emulated.decision_s),
                secs(c.real.decision_s),
                c.decision_delta_intervals
                    .map_or(String::new(), |d| format!(" ({d:+.1})"))
            ),
            format!(
                "{:.2}% | {:.2}%",
                c.emulated.client_error_rate * 100.0,
                c.real.client_error_rate * 100.0
            ),
            if c.matches() {
                "SAME".into()
            } else {
                format!(
                    "DIFFERS: {}",
                    c.mismatches
                        .iter()
                        .map(|m| m.field)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{ClientReport, Expected};

    fn event(t_s: f64, source: Source, kind: &str, data: Value) -> Event {
        Event {
            t_s,
            source,
            kind: kind.into(),
            message: String::new(),
            data,
            at: tokio::time::Instant::now(),
        }
    }

    fn report(outcome: &str, decision_s: f64, weights: &[u64]) -> ScenarioReport {
        let mut timeline: Vec<Event> = vec![event(
            -3.0,
            Source::Router,
            "canary-route",
            serde_json::json!({"weight": 0}),
        )];
        for (i, w) in weights.iter().enumerate() {
            timeline.push(event(
                1.0 + i as f64,
                Source::Router,
                "canary-route",
                serde_json::json!({"weight": w}),
            ));
        }
        timeline.push(event(
            decision_s,
            Source::Controller,
            "phase",
            serde_json::json!({"phase": "Degraded", "message": "RolloutAborted"}),
        ));
        ScenarioReport {
            name: "s".into(),
            file: "s.yaml".into(),
            controller: "argo".into(),
            passed: true,
            failure: None,
            expected: Expected {
                outcome: outcome.into(),
                within_s: 100.0,
                client_error_max: 0.1,
                time_scale: 1.0,
                written: None,
                fastest_s: None,
            },
            outcome: Some(outcome.into()),
            decision_s: Some(decision_s),
            elapsed_s: decision_s + 5.0,
            client: ClientReport::default(),
            timeline,
            series: None,
            judge: None,
        }
    }

    #[test]
    fn the_same_decision_within_an_interval_matches() {
        let c = compare(
            &report("rolled-back", 20.0, &[20, 20, 50]),
            &report("rolled-back", 27.0, &[20, 50]),
            Some(Duration::from_secs(10)),
        );
        assert!(c.matches(), "{:?}", c.mismatches);
        assert_eq!(c.real.weights, vec![20, 50]);
        assert_eq!(c.real.phase.as_deref(), Some("Degraded"));
        assert!((c.decision_delta_intervals.unwrap() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn each_differing_field_is_named() {
        let c = compare(
            &report("rolled-back", 20.0, &[20]),
            &report("promoted", 45.0, &[20, 50]),
            Some(Duration::from_secs(10)),
        );
        let fields: Vec<&str> = c.mismatches.iter().map(|m| m.field).collect();
        assert_eq!(fields, ["outcome", "weights", "decision_s"]);
        assert!(table(&[c]).contains("DIFFERS: outcome, weights, decision_s"));
    }

    #[test]
    fn a_scenario_both_tiers_fail_alike_is_still_reported() {
        let mut e = report("rolled-back", 20.0, &[20]);
        e.passed = false;
        e.failure = Some("the canary weights went [20], expected [20, 50]".into());
        let c = compare(&e, &report("rolled-back", 20.0, &[20]), None);
        assert_eq!(c.mismatches.len(), 1);
        assert_eq!(c.mismatches[0].field, "expectations");
        assert!(c.mismatches[0].emulated.contains("expected [20, 50]"));
        assert_eq!(c.mismatches[0].real, "met");
    }

    /// Argo Rollouts sets 100 % in the pass that promotes; nginx applies it after a reload,
    /// which may end after the promotion was observed. It belongs to the decision; what the
    /// router applies after the grace does not.
    #[test]
    fn the_deciding_pass_weight_counts_and_later_ones_do_not() {
        let r = report("promoted", 1.5, &[20, 50, 100, 30]);
        assert_eq!(weight_sequence(&r.timeline, 1.5), vec![20, 50, 100]);
    }
}
