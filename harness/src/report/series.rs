//! The per-second story of a scenario, read off its timeline.
//!
//! Everything here is derived from events the run already writes, so a report of schema
//! version 1 (timeline only) can be drawn as well as a fresh one, and the emulated and the real
//! controllers are drawn alike as long as their events agree in name and data.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::model::{
    Marker, MarkerKind, MeasurementPoint, ScenarioReport, Series, TrafficPoint, VersionSecond,
    WeightPoint,
};
use crate::load::Window;
use crate::timeline::{Event, Source};

/// The series of `report`, from its timeline and its decision and budget.
pub fn build(report: &ScenarioReport) -> Series {
    let timeline = &report.timeline;
    let mut markers: Vec<Marker> = timeline.iter().filter_map(marker).collect();
    if let (Some(t), Some(outcome)) = (report.decision_s, &report.outcome) {
        markers.push(Marker {
            t_s: t,
            kind: MarkerKind::Decision,
            label: format!("{outcome} after {t:.1}s"),
        });
    }
    if report.expected.within_s.is_finite() {
        markers.push(Marker {
            t_s: report.expected.within_s,
            kind: MarkerKind::BudgetEnd,
            label: format!("budget of {:.1}s ends", report.expected.within_s),
        });
    }
    if let Some(f) = report.expected.fastest_s.filter(|f| f.is_finite()) {
        markers.push(Marker {
            t_s: f,
            kind: MarkerKind::Fastest,
            label: format!("fastest possible {} at {f:.1}s", report.expected.outcome),
        });
    }
    markers.sort_by(|a, b| a.t_s.total_cmp(&b.t_s).then(a.kind.cmp(&b.kind)));
    Series {
        release_version: timeline
            .iter()
            .find(|e| e.source == Source::Harness && e.kind == "release")
            .and_then(|e| e.data.get("version"))
            .and_then(Value::as_str)
            .map(str::to_string),
        traffic: traffic(timeline),
        weight: timeline.iter().filter_map(weight).collect(),
        measurements: timeline.iter().filter_map(measurement).collect(),
        markers,
    }
}

/// The series a page draws: the stored one, or one rebuilt from the timeline.
pub fn of(report: &ScenarioReport) -> Series {
    report.series.clone().unwrap_or_else(|| build(report))
}

/// The load windows in order, each placed at its start.
///
/// A window's own `t_s` was frozen when it closed: windows that closed before the release
/// count from the timeline's creation, not from the release. Windows are contiguous, so those
/// are placed backwards from the first one that closed after it (the window cut at the release).
fn traffic(timeline: &[Event]) -> Vec<TrafficPoint> {
    let windows: Vec<(f64, Window)> = timeline
        .iter()
        .filter(|e| e.source == Source::Load && e.kind == "window")
        .filter_map(|e| {
            let w: Window = serde_json::from_value(e.data.clone()).ok()?;
            (w.t_s.is_finite() && w.dur_s.is_finite()).then_some((e.t_s, w))
        })
        .collect();
    let mut out: Vec<TrafficPoint> = Vec::with_capacity(windows.len());
    let mut next_start: Option<f64> = None;
    for (emitted, w) in windows.into_iter().rev() {
        let start = if emitted >= 0.0 {
            w.t_s
        } else {
            next_start.unwrap_or(emitted) - w.dur_s
        };
        next_start = Some(start);
        out.push(TrafficPoint {
            t_s: start,
            dur_s: w.dur_s,
            by_version: w
                .by_version
                .iter()
                .map(|(v, c)| {
                    (
                        v.clone(),
                        VersionSecond {
                            requests: c.requests,
                            errors: c.errors,
                            p95_ms: c.p95_ms().filter(|p| p.is_finite()),
                        },
                    )
                })
                .collect(),
        });
    }
    out.reverse();
    out
}

/// The canary's share in percent from a router event, as the router applied it.
fn weight(e: &Event) -> Option<WeightPoint> {
    if e.source != Source::Router || e.kind != "canary-route" {
        return None;
    }
    let w = e.data.get("weight")?.as_f64()?;
    let total = e
        .data
        .pointer("/route/weight_total")
        .and_then(Value::as_f64)
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0);
    Some(WeightPoint {
        t_s: e.t_s,
        weight: (w * 100.0 / total).clamp(0.0, 100.0),
    })
}

fn measurement(e: &Event) -> Option<MeasurementPoint> {
    if e.source != Source::Analysis || e.kind != "measurement" {
        return None;
    }
    let d = &e.data;
    let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
    let num = |k: &str| d.get(k).and_then(Value::as_f64).filter(|v| v.is_finite());
    let value = match d.get("value") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => parse_value(s),
        _ => None,
    }
    .filter(|v| v.is_finite());
    // Flagger's checks of an older report said only whether they passed.
    let phase = text("phase").unwrap_or_else(|| {
        match d.get("passed").and_then(Value::as_bool) {
            Some(true) => "Successful",
            Some(false) => "Failed",
            None => "Unknown",
        }
        .to_string()
    });
    let success = text("success_condition").filter(|c| !c.is_empty());
    let failure = text("failure_condition").filter(|c| !c.is_empty());
    let (mut min, mut max) = (num("min"), num("max"));
    if min.is_none() && max.is_none() {
        (min, max) = condition_bounds(success.as_deref(), failure.as_deref());
    }
    let condition = text("condition").or_else(|| {
        let parts: Vec<String> = [("success", &success), ("failure", &failure)]
            .into_iter()
            .filter_map(|(k, c)| c.as_ref().map(|c| format!("{k}: {c}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    });
    Some(MeasurementPoint {
        t_s: e.t_s,
        metric: text("metric").unwrap_or_else(|| "?".into()),
        run: text("run"),
        value,
        phase,
        condition,
        min,
        max,
        message: text("message")
            .or_else(|| text("reading"))
            .filter(|m| !m.is_empty()),
    })
}

/// Argo Rollouts writes a scalar as `0.25` and a one-element vector as `[0.25]`.
fn parse_value(s: &str) -> Option<f64> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let mut parts = inner.split([',', ' ']).filter(|p| !p.is_empty());
    let first = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    first.parse().ok()
}

/// The bounds a pair of Argo Rollouts conditions put on `result` (or `result[0]`), where each
/// holds a single comparison with a number (guards such as `len(result) == 0` or `isNaN(...)`
/// aside): a success condition `result[0] >= 0.95` allows 0.95 and above, a failure condition
/// `result[0] > 0.05` allows 0.05 and below. Anything more involved gives no line.
pub fn condition_bounds(
    success: Option<&str>,
    failure: Option<&str>,
) -> (Option<f64>, Option<f64>) {
    let (mut min, mut max) = (None, None);
    for (cond, passing) in [(success, true), (failure, false)] {
        let Some(c) = cond else { continue };
        let found = comparisons(c);
        let [(op, bound)] = found.as_slice() else {
            continue;
        };
        // `result OP bound` holds for passing values (success) or failing ones (failure).
        let above = matches!(*op, ">" | ">=");
        if above == passing {
            min = Some(*bound);
        } else {
            max = Some(*bound);
        }
    }
    (min, max)
}

/// Every `result[0] OP number` in `c`, turned around when written `number OP result[0]`.
fn comparisons(c: &str) -> Vec<(&'static str, f64)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let operand = r"\bresult(?:\[0\])?";
        let number = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)";
        Regex::new(&format!(
            r"{operand}\s*(<=|>=|<|>)\s*{number}|{number}\s*(<=|>=|<|>)\s*{operand}"
        ))
        .expect("a valid pattern")
    });
    let flip = |op: &str| match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        _ => "<=",
    };
    let canonical = |op: &str| match op {
        "<" => "<",
        "<=" => "<=",
        ">" => ">",
        _ => ">=",
    };
    re.captures_iter(c)
        .filter_map(|m| {
            if let (Some(op), Some(n)) = (m.get(1), m.get(2)) {
                Some((canonical(op.as_str()), n.as_str().parse().ok()?))
            } else {
                let (n, op) = (m.get(3)?, m.get(4)?);
                Some((flip(op.as_str()), n.as_str().parse().ok()?))
            }
        })
        .collect()
}

fn marker(e: &Event) -> Option<Marker> {
    let kind = match (e.source, e.kind.as_str()) {
        (Source::Harness, "release") => MarkerKind::Release,
        (Source::Harness, "action") => MarkerKind::Action,
        (Source::Controller, "RolloutStepCompleted") => MarkerKind::Step,
        // Flagger's step: the Normal event `Advance <canary> canary weight N`.
        (Source::Controller, _) if e.message.starts_with("Advance ") => MarkerKind::Step,
        (Source::Pod, _) if is_oom(e) => MarkerKind::OomKilled,
        (Source::Pod, "pod-ready") => MarkerKind::PodReady,
        (Source::Pod, "pod-restarted" | "pod-container-finished" | "BackOff") => {
            MarkerKind::PodRestart
        }
        _ => return None,
    };
    Some(Marker {
        t_s: e.t_s,
        kind,
        label: e.message.clone(),
    })
}

fn is_oom(e: &Event) -> bool {
    e.kind.starts_with("OOMKill")
        || e.kind == "oom-killed"
        || e.data
            .pointer("/termination/reason")
            .and_then(Value::as_str)
            == Some("OOMKilled")
        || (e.kind == "pod-container-finished" && e.message.contains("OOMKilled"))
}

/// Every version seen in the traffic, the baseline's first and the release last, so colours
/// and line styles stay the same from one page to the next.
pub fn versions(series: &Series) -> Vec<String> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for p in &series.traffic {
        for (v, c) in &p.by_version {
            *seen.entry(v.clone()).or_default() += c.requests;
        }
    }
    let mut out: Vec<String> = seen.into_keys().collect();
    let release = series.release_version.as_deref();
    out.sort_by_key(|v| {
        (
            Some(v.as_str()) == release,
            v == crate::load::NO_VERSION,
            v.clone(),
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use serde_json::json;

    fn ev(t_s: f64, source: Source, kind: &str, message: &str, data: Value) -> Event {
        let mut e = fixture::event(t_s, source, kind, message);
        e.data = data;
        e
    }

    fn window(t_s: f64, dur_s: f64, v: &str, requests: u64, errors: u64) -> Value {
        json!({"t_s": t_s, "dur_s": dur_s, "by_version": {v: {
            "requests": requests, "errors": errors, "transport_errors": 0,
            "by_status": {"200": requests - errors, "500": errors},
            "latency": {"2000": requests - errors, "50119": errors},
        }}})
    }

    #[test]
    fn windows_closed_before_the_release_are_placed_back_from_the_cut_one() {
        let mut report = fixture::passed();
        report.timeline = vec![
            // Closed before the release: their t_s counted from the timeline's creation.
            ev(
                -2.1,
                Source::Load,
                "window",
                "",
                window(7.0, 1.0, "1.0.0", 10, 0),
            ),
            ev(
                -1.1,
                Source::Load,
                "window",
                "",
                window(8.0, 1.0, "1.0.0", 10, 0),
            ),
            // Cut at the release, emitted after it: counted from the release.
            ev(
                0.01,
                Source::Load,
                "window",
                "",
                window(-0.4, 0.4, "1.0.0", 4, 0),
            ),
            ev(
                1.0,
                Source::Load,
                "window",
                "",
                window(0.0, 1.0, "2.0.0", 10, 3),
            ),
        ];
        let s = build(&report);
        let starts: Vec<f64> = s.traffic.iter().map(|p| p.t_s).collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(starts[0], -2.4) && close(starts[1], -1.4),
            "{starts:?}"
        );
        assert!(
            close(starts[2], -0.4) && close(starts[3], 0.0),
            "{starts:?}"
        );
        let canary = &s.traffic[3].by_version["2.0.0"];
        assert_eq!((canary.requests, canary.errors), (10, 3));
        // 3 of 10 answers in the bucket up to 50.119 ms: the p95 lies in it.
        let p95 = canary.p95_ms.unwrap();
        assert!(p95 > 2.0 && p95 <= 50.119, "{p95}");
    }

    #[test]
    fn measurements_carry_value_phase_and_bounds_from_either_controller() {
        let mut report = fixture::passed();
        report.timeline = vec![
            ev(
                5.0,
                Source::Analysis,
                "measurement",
                "success-rate: Failed 0.7",
                json!({"run": "r-1", "metric": "success-rate", "phase": "Failed",
                       "value": "[0.7]", "message": "",
                       "success_condition": "len(result) == 0 || isNaN(result[0]) || result[0] >= 0.95",
                       "failure_condition": null}),
            ),
            ev(
                6.0,
                Source::Analysis,
                "measurement",
                "request-duration: 612 (fail)",
                json!({"metric": "request-duration", "value": 612.0, "reading": "612",
                       "passed": false, "phase": "Failed", "max": 500.0, "condition": "max 500"}),
            ),
            ev(
                7.0,
                Source::Analysis,
                "measurement",
                "error-rate: Error -",
                json!({"metric": "error-rate", "phase": "Error", "value": null,
                       "message": "no answer"}),
            ),
        ];
        let m = build(&report).measurements;
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].value, Some(0.7));
        assert_eq!(m[0].phase, "Failed");
        assert_eq!((m[0].min, m[0].max), (Some(0.95), None));
        assert_eq!(m[0].run.as_deref(), Some("r-1"));
        assert!(
            m[0].condition
                .as_deref()
                .unwrap()
                .starts_with("success: len(result)")
        );
        assert_eq!((m[1].value, m[1].max), (Some(612.0), Some(500.0)));
        assert_eq!(m[1].condition.as_deref(), Some("max 500"));
        assert_eq!(m[2].value, None);
        assert_eq!(m[2].message.as_deref(), Some("no answer"));
    }

    #[test]
    fn simple_conditions_reduce_to_bounds_and_others_do_not() {
        assert_eq!(
            condition_bounds(None, Some("result[0] > 0.05")),
            (None, Some(0.05))
        );
        assert_eq!(
            condition_bounds(Some("len(result) == 0 || result[0] < 50331648"), None),
            (None, Some(50331648.0))
        );
        assert_eq!(
            condition_bounds(Some("0.9 <= result"), None),
            (Some(0.9), None)
        );
        // Two comparisons in one condition: no single line to draw.
        assert_eq!(
            condition_bounds(Some("result[0] > 0.1 && result[0] < 0.9"), None),
            (None, None)
        );
        assert_eq!(
            condition_bounds(Some("len(result) > 0"), None),
            (None, None)
        );
    }

    #[test]
    fn weights_markers_decision_and_budget() {
        let mut report = fixture::passed();
        report.expected.fastest_s = Some(2.5);
        report.timeline = vec![
            ev(
                0.0,
                Source::Harness,
                "release",
                "release 2.0.0",
                json!({"version": "2.0.0"}),
            ),
            ev(
                0.5,
                Source::Router,
                "canary-route",
                "canary weight 20%",
                json!({"weight": 2, "route": {"weight": 2, "weight_total": 10}}),
            ),
            ev(
                3.0,
                Source::Controller,
                "RolloutStepCompleted",
                "Rollout step 1/4 completed (setWeight: 20)",
                Value::Null,
            ),
            ev(
                4.0,
                Source::Pod,
                "pod-terminated",
                "pod x container terminated: OOMKilled",
                json!({"termination": {"reason": "OOMKilled"}}),
            ),
            ev(
                4.5,
                Source::Pod,
                "pod-restarted",
                "pod x restarted (restart 1)",
                Value::Null,
            ),
            ev(
                6.0,
                Source::Harness,
                "action",
                "action promote",
                json!({"action": "promote"}),
            ),
        ];
        let s = build(&report);
        assert_eq!(s.release_version.as_deref(), Some("2.0.0"));
        assert_eq!(
            s.weight,
            vec![WeightPoint {
                t_s: 0.5,
                weight: 20.0
            }]
        );
        let kinds: Vec<MarkerKind> = s.markers.iter().map(|m| m.kind).collect();
        use MarkerKind::*;
        assert_eq!(
            kinds,
            [
                Release, Fastest, Step, OomKilled, PodRestart, Action, Decision, BudgetEnd
            ]
        );
        assert_eq!(s.markers[6].t_s, 41.25);
        assert_eq!(s.markers[7].t_s, 90.0);
    }

    #[test]
    fn the_release_comes_last_among_versions() {
        let mut s = Series {
            release_version: Some("10.0.0".into()),
            ..Series::default()
        };
        let mut by_version = BTreeMap::new();
        for v in ["10.0.0", "9.0.0", "none"] {
            by_version.insert(v.to_string(), VersionSecond::default());
        }
        s.traffic.push(TrafficPoint {
            t_s: 0.0,
            dur_s: 1.0,
            by_version,
        });
        assert_eq!(versions(&s), ["9.0.0", "none", "10.0.0"]);
    }
}
