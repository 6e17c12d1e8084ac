//! The judge on real timelines: trimmed copies of the `timeline.json` that `gauntlet run
//! --artifacts` wrote for the suites' scenarios on the local backend (emulated controllers,
//! time scale 0.25), kept under `harness/tests/data/judge/`. Only the load windows and the
//! release event are kept.

use serde_json::Value;

use super::*;
use crate::timeline::Source;

struct Run {
    outcome: Option<Decision>,
    decision_s: Option<f64>,
    timeline: Vec<Event>,
}

fn run(json: &str) -> Run {
    let v: Value = serde_json::from_str(json).expect("fixture JSON");
    let timeline = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| Event {
            t_s: e["t_s"].as_f64().expect("t_s"),
            source: match e["source"].as_str() {
                Some("load") => Source::Load,
                _ => Source::Harness,
            },
            kind: e["kind"].as_str().unwrap_or_default().to_string(),
            message: String::new(),
            data: e["data"].clone(),
            at: tokio::time::Instant::now(),
        })
        .collect();
    Run {
        outcome: v["outcome"].as_str().map(|o| o.parse().expect("outcome")),
        decision_s: v["decision_s"].as_f64(),
        timeline,
    }
}

macro_rules! fixture {
    ($name:literal) => {
        run(include_str!(concat!(
            "../../tests/data/judge/",
            $name,
            ".json"
        )))
    };
}

fn versions() -> Versions {
    Versions::new("1.0.0", "2.0.0").unwrap()
}

fn judged(r: &Run, decision: Option<Decision>, end_s: Option<f64>) -> Judgement {
    let j = judge(
        &r.timeline,
        &versions(),
        decision,
        end_s,
        &Settings::default(),
    );
    for line in j.lines() {
        println!("{line}");
    }
    j
}

fn as_run(r: &Run) -> Judgement {
    judged(r, r.outcome, r.decision_s)
}

fn shortfall(c: &Class) -> &Shortfall {
    match c {
        Class::NotEnoughData(s) => s,
        other => panic!("expected not-enough-data, got {other}"),
    }
}

#[test]
fn the_500s_rollbacks_are_justified_by_the_error_rate() {
    let j = as_run(&fixture!("argo-500s-rolled-back"));
    assert_eq!(j.finding, Finding::Justified);
    assert_eq!(j.error_rate.class, Class::Worse);
    assert_eq!(
        (j.error_rate.canary.errors, j.error_rate.canary.requests),
        (16, 65)
    );
    assert_eq!(
        (j.error_rate.stable.errors, j.error_rate.stable.requests),
        (0, 295)
    );
    assert!(j.error_rate.p_value.unwrap() < 1e-12);
    let [low, _] = j.error_rate.difference_interval.unwrap();
    assert!(low > 0.10, "{low}");
    // The 500s are answered as fast as the 200s.
    assert_eq!(j.latency.class, Class::NoDifference);

    let j = as_run(&fixture!("flagger-500s-failed"));
    assert_eq!(j.finding, Finding::Justified);
    assert_eq!(j.error_rate.class, Class::Worse);
    // A fresh canary process is 0.17 ms slower than the warm stable: significant, but under
    // the 1 ms floor.
    assert!(j.latency.p_value.unwrap() < 0.02);
    assert!(j.latency.shift_ms.unwrap() < 1.0);
    assert_eq!(j.latency.class, Class::NoDifference);
}

#[test]
fn the_latency_rollbacks_are_justified_by_the_latency() {
    let j = as_run(&fixture!("argo-latency-rolled-back"));
    assert_eq!(j.finding, Finding::Justified);
    assert_eq!(j.latency.class, Class::Worse);
    assert!(j.latency.ratio.unwrap() > 500.0);
    assert!(j.latency.shift_ms.unwrap() > 700.0);
    assert!(j.latency.p_value.unwrap() < 1e-20);
    // 0 errors in 60 canary requests cannot rule out 5 points more: the finding rests on the
    // latency alone.
    let s = shortfall(&j.error_rate.class);
    assert_eq!((s.canary_seen, s.canary_needed), (60, Some(75)));

    // Six canary requests, all 800 ms slower, are enough.
    let j = as_run(&fixture!("flagger-latency-failed"));
    assert_eq!(j.finding, Finding::Justified);
    assert_eq!(j.latency.class, Class::Worse);
    assert_eq!(j.latency.canary.samples, 6);
    assert!(j.latency.p_value.unwrap() < 1e-4);
}

#[test]
fn the_healthy_promotions_are_justified() {
    for r in [
        fixture!("argo-healthy-release-promoted"),
        fixture!("flagger-healthy-succeeded"),
    ] {
        let j = as_run(&r);
        assert_eq!(j.finding, Finding::Justified, "{}", j.reason);
        assert_eq!(j.error_rate.class, Class::NoDifference);
        assert_eq!(j.latency.class, Class::NoDifference);
    }
}

/// The healthy release, rolled back by a p95 threshold of 0.1 ms that no request meets (the
/// argo fixture's `p95-latency` tightened), at 80 requests/s: a false rollback.
#[test]
fn an_over_tight_threshold_is_a_false_rollback() {
    let j = as_run(&fixture!("argo-healthy-overtight-80"));
    assert_eq!(j.decision, Some(Decision::RolledBack));
    assert_eq!(j.finding, Finding::FalseRollback, "{}", j.reason);
    assert_eq!(j.reason, "rolled back, but no metric worse");
    assert_eq!(
        j.failure(Finding::Justified).as_deref(),
        Some(
            "the judge found false-rollback (rolled back, but no metric worse), expected justified"
        )
    );
    assert_eq!(j.failure(Finding::FalseRollback), None);

    // The same at 40 requests/s: the rollback came after 5.7 s, with 52 canary requests, too
    // few to rule out 5 points more errors.
    let j = as_run(&fixture!("argo-healthy-overtight-40"));
    assert_eq!(j.finding, Finding::Inconclusive, "{}", j.reason);
    assert_eq!(j.latency.class, Class::NoDifference);
    let s = shortfall(&j.error_rate.class);
    assert_eq!(s.canary_seen, 52);
    assert!((70..=100).contains(&s.canary_needed.unwrap()), "{s:?}");
    assert!(s.exposure_needed_s.unwrap() > 5.7, "{s:?}");

    // And the healthy promotion's timeline with a rollback put at its decision.
    let r = fixture!("argo-healthy-release-promoted");
    let j = judged(&r, Some(Decision::RolledBack), r.decision_s);
    assert_eq!(j.finding, Finding::FalseRollback);
}

#[test]
fn promoting_a_regression_is_a_missed_regression() {
    for r in [
        fixture!("argo-500s-rolled-back"),
        fixture!("argo-latency-rolled-back"),
    ] {
        let j = judged(&r, Some(Decision::Promoted), r.decision_s);
        assert_eq!(j.finding, Finding::MissedRegression, "{}", j.reason);
        assert!(j.reason.starts_with("promoted, but "), "{}", j.reason);
    }
}

#[test]
fn too_little_canary_traffic_is_not_enough_data() {
    // The healthy release rolled back 2.5 s after the release: three windows of canary traffic.
    let r = fixture!("argo-healthy-release-promoted");
    let j = judged(&r, Some(Decision::RolledBack), Some(2.5));
    assert_eq!(j.finding, Finding::Inconclusive);
    let s = shortfall(&j.error_rate.class);
    assert_eq!(s.canary_seen, 19);
    let needed = s.canary_needed.unwrap();
    assert!((50..=90).contains(&needed), "{s:?}");
    assert!(s.exposure_needed_s.unwrap() > 10.0, "{s:?}");
    assert!(
        j.error_rate.summary.contains("needs about"),
        "{}",
        j.error_rate.summary
    );
}

#[test]
fn a_pause_or_no_decision_is_inconclusive_with_a_hint() {
    let r = fixture!("argo-latency-rolled-back");
    let j = judged(&r, Some(Decision::Paused), r.decision_s);
    assert_eq!(j.finding, Finding::Inconclusive);
    assert!(
        j.reason.ends_with("the data supports a rollback"),
        "{}",
        j.reason
    );

    let r = fixture!("argo-healthy-release-promoted");
    let j = judged(&r, None, None);
    assert_eq!(j.finding, Finding::Inconclusive);
    assert!(j.reason.starts_with("no decision"), "{}", j.reason);
    assert!(
        j.reason.ends_with("the data supports a promotion"),
        "{}",
        j.reason
    );
    // To the end of the run: the promoted canary's later windows count.
    assert!(j.exposure.canary.requests > 205);
}

#[test]
fn an_empty_timeline_judges_without_failing() {
    let j = judge(
        &[],
        &versions(),
        Some(Decision::Promoted),
        Some(10.0),
        &Settings::default(),
    );
    assert_eq!(j.finding, Finding::Inconclusive);
    assert_eq!(shortfall(&j.error_rate.class).canary_needed, None);
    assert_eq!(shortfall(&j.latency.class).canary_needed, None);
    assert_eq!(j.lines()[3], "the canary 2.0.0 answered no request");
    serde_json::to_string(&j).unwrap();
}

#[test]
fn serializes_for_the_report() {
    let j = as_run(&fixture!("argo-500s-rolled-back"));
    let v = serde_json::to_value(&j).unwrap();
    assert_eq!(v["finding"], "justified");
    assert_eq!(v["decision"], "rolled-back");
    assert_eq!(v["error_rate"]["class"], "worse");
    assert_eq!(v["error_rate"]["canary"]["errors"], 16);
    assert_eq!(v["latency"]["class"], "no-difference");
    assert_eq!(v["settings"]["confidence"], 0.98);
    assert_eq!(v["versions"]["canary"], "2.0.0");
    assert_eq!(v["exposure"]["canary"]["requests"], 65);
    assert!(v["exposure"]["canary"].get("latencies").is_none());
}

#[test]
fn judges_a_scenario_report() {
    let r = fixture!("argo-latency-rolled-back");
    let mut report = ScenarioReport {
        name: "argo-latency-rolled-back".into(),
        file: "suites/argo/latency-rolled-back.yaml".into(),
        controller: "argo".into(),
        passed: true,
        failure: None,
        expected: crate::report::model::Expected {
            outcome: "rolled-back".into(),
            within_s: 30.0,
            client_error_max: 0.01,
            time_scale: 0.25,
            written: None,
            fastest_s: None,
        },
        outcome: Some("rolled-back".into()),
        decision_s: r.decision_s,
        elapsed_s: 40.0,
        client: Default::default(),
        timeline: r.timeline.clone(),
        series: None,
    };
    let j = judge_report(&report, &versions(), &Settings::default()).unwrap();
    assert_eq!(j, as_run(&r));
    report.outcome = None;
    let j = judge_report(&report, &versions(), &Settings::default()).unwrap();
    assert_eq!((j.decision, j.finding), (None, Finding::Inconclusive));
    report.outcome = Some("aborted".into());
    assert!(judge_report(&report, &versions(), &Settings::default()).is_err());
}
