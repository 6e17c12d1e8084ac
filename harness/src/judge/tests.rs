//! The judge on real timelines: trimmed copies of the `timeline.json` that `gauntlet run
//! --artifacts` wrote for the suites' scenarios on the local backend (emulated controllers,
//! time scale 0.25), kept under `harness/tests/data/judge/`. Only the load windows and the
//! release event are kept.

use super::testdata::{Run, run};
use super::*;

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

/// The suites' memory leak and crash loop: rolled back for a canary that was OOM killed or
/// kept exiting, before users saw errors (the crash loop's canary never answered at all).
#[test]
fn a_canary_that_crashed_justifies_the_rollback() {
    let j = as_run(&fixture!("argo-memory-leak-rolled-back"));
    assert_eq!(j.finding, Finding::Justified, "{}", j.reason);
    assert_eq!(j.reason, "rolled back, and pod health worse");
    assert_eq!(j.error_rate.class, Class::NoDifference);
    assert_eq!(j.pods.class, Class::Worse);
    assert_eq!(j.pods.canary.failing.len(), 1);
    assert_eq!(j.pods.stable.ends, 0);

    let j = as_run(&fixture!("argo-crash-loop-rolled-back"));
    assert_eq!(j.finding, Finding::Justified, "{}", j.reason);
    assert_eq!(j.pods.class, Class::Worse);
    assert!(j.pods.canary.ends >= 2, "{:?}", j.pods);
    assert_eq!(j.exposure.canary.requests, 0);

    // Judged before the first crash (the memory leak's canary is OOM killed 4.2 s in), the
    // rollback would have no reason the judge can see.
    let r = fixture!("argo-memory-leak-rolled-back");
    let j = judged(&r, Some(Decision::RolledBack), Some(4.0));
    assert_eq!(j.pods.class, Class::NoDifference);
    assert_ne!(j.finding, Finding::Justified, "{}", j.reason);
}

/// A healthy Flagger release held at its gate: two seconds of machine load (5 ms for every
/// request) came just as the canary took 80 % of the traffic. Pooled over the exposure the
/// canary looks 1.8x slower; compared second by second, it is not.
#[test]
fn machine_load_that_comes_with_the_canarys_share_is_not_a_regression() {
    let r = fixture!("flagger-gate-waiting-paused");
    let j = as_run(&r);
    assert_eq!(
        j.latency.class,
        Class::NoDifference,
        "{}",
        j.latency.summary
    );
    assert!(j.latency.ratio.unwrap() < 1.25, "{:?}", j.latency.ratio);
    assert_eq!(j.finding, Finding::Inconclusive);
    assert!(
        j.reason.ends_with("the data supports a promotion"),
        "{}",
        j.reason
    );

    // The same requests in one stratum: the pooled comparison the judge does not make.
    let x = &j.exposure;
    let pooled = mann_whitney::compare(
        &x.canary.latencies,
        &x.stable.latencies,
        &[(x.canary.latencies.clone(), x.stable.latencies.clone())],
        None,
        &Settings::default(),
    );
    assert_eq!(pooled.class, Class::Worse, "{}", pooled.summary);
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
    assert_eq!(j.lines()[4], "the canary 2.0.0 answered no request");
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

/// A report read back (`gauntlet report RUN.json --html`) shows the judgement the run made:
/// every class, a shortfall and the settings survive JSON; settings the builders refuse do not.
#[test]
fn reads_back_from_the_report() {
    let r = fixture!("argo-latency-rolled-back");
    for j in [
        as_run(&r),
        as_run(&fixture!("argo-healthy-overtight-40")),
        judged(&r, None, None),
    ] {
        let text = serde_json::to_string(&j).unwrap();
        let back: Judgement = serde_json::from_str(&text).unwrap();
        // Everything but the histograms and the windows, which the report leaves out.
        let mut expected = j.clone();
        expected.exposure.canary.latencies = Default::default();
        expected.exposure.stable.latencies = Default::default();
        expected.exposure.strata.clear();
        assert_eq!(back, expected, "{text}");
    }
    let mut v = serde_json::to_value(as_run(&r)).unwrap();
    v["settings"]["confidence"] = 1.5.into();
    let e = serde_json::from_value::<Judgement>(v.clone()).unwrap_err();
    assert!(e.to_string().contains("confidence 1.5"), "{e}");
    v["settings"]["confidence"] = 0.98.into();
    v["settings"]["latency_margin"] = 0.5.into();
    let e = serde_json::from_value::<Judgement>(v.clone()).unwrap_err();
    assert!(e.to_string().contains("latency margin 0.5"), "{e}");
    v["settings"]["latency_margin"] = 1.25.into();
    v["versions"]["canary"] = "1.0.0".into();
    let e = serde_json::from_value::<Judgement>(v).unwrap_err();
    assert!(e.to_string().contains("both 1.0.0"), "{e}");
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
        judge: None,
    };
    let j = judge_report(&report, &versions(), &Settings::default()).unwrap();
    assert_eq!(j, as_run(&r));
    report.outcome = None;
    let j = judge_report(&report, &versions(), &Settings::default()).unwrap();
    assert_eq!((j.decision, j.finding), (None, Finding::Inconclusive));
    report.outcome = Some("aborted".into());
    assert!(judge_report(&report, &versions(), &Settings::default()).is_err());
}
