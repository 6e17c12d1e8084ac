//! `--junit FILE`: CI systems show one row per scenario and the failure text inline, so the
//! failure carries the tail of the timeline — usually enough to see why without the artifacts.

use std::io;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::atomic::write_atomic;
use super::human::event_line;
use super::model::{RunReport, ScenarioReport};
use crate::judge::Judgement;

/// How many of the last timeline events a failure body shows; CI pages truncate long bodies.
const FAILURE_TAIL: usize = 30;

/// Writes one testsuite `gauntlet` with one testcase per scenario, atomically.
pub fn write_junit(path: &Path, report: &RunReport) -> io::Result<()> {
    let xml = to_xml(report)?;
    write_atomic(path, xml.as_bytes())
}

fn to_xml(report: &RunReport) -> io::Result<String> {
    let mut suite = TestSuite::new("gauntlet");
    suite.add_properties([
        Property::new("backend", &report.backend),
        Property::new("gauntlet.version", &report.version),
        Property::new("started_at", &report.started_at),
    ]);
    suite.add_test_cases(report.scenarios.iter().map(test_case));
    suite.set_time(secs(report.scenarios.iter().map(|s| s.elapsed_s).sum()));

    let mut out = Report::new("gauntlet");
    out.add_test_suite(suite);
    out.to_string().map_err(io::Error::other)
}

fn test_case(s: &ScenarioReport) -> TestCase {
    let status = if s.passed {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        let text = s
            .failure
            .clone()
            .unwrap_or_else(|| "the scenario did not meet its expectation".into());
        let tail = s.timeline.len().saturating_sub(FAILURE_TAIL);
        let mut body = format!(
            "{text}\n\nlast {} timeline events:\n",
            s.timeline.len() - tail
        );
        for e in &s.timeline[tail..] {
            body.push_str(&event_line(e));
            body.push('\n');
        }
        st.set_message(text)
            .set_type("expectation")
            .set_description(body);
        st
    };
    let mut tc = TestCase::new(&s.name, status);
    tc.set_classname(&s.controller)
        .set_time(secs(s.elapsed_s))
        .set_system_out(
            s.timeline
                .iter()
                .map(|e| event_line(e) + "\n")
                .collect::<String>(),
        );
    // GitLab and others link a testcase to its source through a `file` attribute.
    tc.extra.insert("file".into(), s.file.as_str().into());
    if let Some(j) = &s.judge {
        tc.add_properties(judge_properties(j));
    }
    tc
}

/// The judge's finding as testcase properties, for CI dashboards that chart them.
fn judge_properties(j: &Judgement) -> [Property; 8] {
    let p_value = |p: Option<f64>| p.map_or_else(|| "-".to_string(), |p| format!("{p:.3e}"));
    [
        Property::new("judge.finding", j.finding.name()),
        Property::new("judge.reason", &j.reason),
        Property::new("judge.error_rate", j.error_rate.class.name()),
        Property::new("judge.error_rate.p_value", p_value(j.error_rate.p_value)),
        Property::new("judge.latency", j.latency.class.name()),
        Property::new("judge.latency.p_value", p_value(j.latency.p_value)),
        Property::new("judge.pods", j.pods.class.name()),
        Property::new("judge.exposure", j.exposure_line()),
    ]
}

/// A report must still be written when a clock misbehaved, so bad durations become zero.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn one_testcase_per_scenario_with_failure_and_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(&path, &fixture::run()).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();

        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(
            xml.contains(r#"<testsuite name="gauntlet" tests="2""#),
            "{xml}"
        );
        assert!(xml.contains(r#"failures="1""#), "{xml}");
        assert!(xml.contains(r#"name="argo-rollback-on-500s""#), "{xml}");
        assert!(xml.contains(r#"classname="flagger""#), "{xml}");
        assert!(
            xml.contains(r#"file="suites/flagger/promote.yaml""#),
            "{xml}"
        );
        assert!(xml.contains(r#"time="63.500""#), "{xml}");
        assert!(
            xml.contains("<failure message=\"expected promoted within 120s"),
            "{xml}"
        );
        assert!(xml.contains("<system-out>"), "{xml}");

        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.failures, 1);
        let failed = &suite.test_cases[1];
        let TestCaseStatus::NonSuccess { description, .. } = &failed.status else {
            panic!("the failed scenario is a failure")
        };
        let body = description.as_ref().unwrap().as_str();
        assert!(body.contains("last 30 timeline events"), "{body}");
        assert!(
            body.contains("analysis measurement: success-rate run 39"),
            "{body}"
        );
        assert!(body.contains("success-rate run 10"), "{body}");
        assert!(!body.contains("success-rate run 9\n"), "{body}");
        let out = failed.system_out.as_ref().unwrap().as_str();
        assert_eq!(out.lines().count(), 40);

        let passed = &suite.test_cases[0];
        assert!(matches!(passed.status, TestCaseStatus::Success { .. }));
        assert!(
            passed
                .system_out
                .as_ref()
                .unwrap()
                .as_str()
                .contains("controller degraded: rollout aborted")
        );
    }

    #[test]
    fn the_judges_finding_is_a_property_of_its_testcase() {
        let mut run = fixture::run();
        run.scenarios.push(fixture::false_rollback());
        let xml = to_xml(&run).unwrap();
        let parsed = Report::deserialize_from_str(&xml).unwrap();
        let cases = &parsed.test_suites[0].test_cases;
        assert!(cases[0].properties.is_empty(), "no judge, no properties");
        let props: std::collections::BTreeMap<&str, &str> = cases[2]
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(props["judge.finding"], "false-rollback", "{xml}");
        assert_eq!(props["judge.reason"], "rolled back, but no metric worse");
        assert_eq!(props["judge.error_rate"], "no-difference");
        assert_eq!(props["judge.latency"], "no-difference");
        assert_eq!(props["judge.pods"], "no-difference");
        assert!(props["judge.latency.p_value"].contains('e'), "{props:?}");
        assert!(
            props["judge.exposure"].starts_with("exposure "),
            "{props:?}"
        );
    }

    #[test]
    fn bad_durations_do_not_stop_the_report() {
        let mut run = fixture::run();
        run.scenarios[0].elapsed_s = f64::NAN;
        run.scenarios[1].elapsed_s = -1.0;
        assert!(to_xml(&run).unwrap().contains("testcase"));
    }
}
