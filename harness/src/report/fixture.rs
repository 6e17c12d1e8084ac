//! A two-scenario run (one pass, one fail) shared by the renderers' tests.

use std::collections::BTreeMap;

use serde_json::json;

use super::model::{
    ClientReport, Expected, RunReport, ScenarioReport, VersionCount, WrittenBudget,
};
use crate::timeline::{Event, Source};

pub(crate) fn event(t_s: f64, source: Source, kind: &str, message: &str) -> Event {
    Event {
        t_s,
        source,
        kind: kind.into(),
        message: message.into(),
        data: serde_json::Value::Null,
        at: tokio::time::Instant::now(),
    }
}

pub(crate) fn passed() -> ScenarioReport {
    let mut by_version = BTreeMap::new();
    by_version.insert(
        "1.0.0".to_string(),
        VersionCount {
            requests: 900,
            errors: 0,
        },
    );
    by_version.insert(
        "2.0.0".to_string(),
        VersionCount {
            requests: 100,
            errors: 21,
        },
    );
    let mut weight = event(12.0, Source::Router, "weight", "canary weight 20");
    weight.data = json!({"weight": 20});
    ScenarioReport {
        name: "argo-rollback-on-500s".into(),
        file: "suites/argo/rollback.yaml".into(),
        controller: "argo".into(),
        passed: true,
        failure: None,
        expected: Expected {
            outcome: "rolled-back".into(),
            within_s: 90.0,
            client_error_max: 0.05,
            time_scale: 1.0,
            written: None,
            fastest_s: None,
        },
        outcome: Some("rolled-back".into()),
        decision_s: Some(41.25),
        elapsed_s: 63.5,
        client: ClientReport {
            requests: 1000,
            errors: 21,
            error_rate: 0.021,
            p95_ms: 12.5,
            by_version,
        },
        series: None,
        judge: None,
        timeline: vec![
            event(-5.0, Source::Harness, "provisioned", "stack up"),
            event(0.0, Source::Harness, "release", "release 2.0.0"),
            weight,
            event(41.25, Source::Controller, "degraded", "rollout aborted"),
        ],
    }
}

pub(crate) fn failed() -> ScenarioReport {
    let timeline = (0..40)
        .map(|i| {
            event(
                f64::from(i),
                Source::Analysis,
                "measurement",
                &format!("success-rate run {i}"),
            )
        })
        .collect();
    ScenarioReport {
        name: "flagger-promote-slow".into(),
        file: "suites/flagger/promote.yaml".into(),
        controller: "flagger".into(),
        passed: false,
        failure: Some(
            "expected promoted within 120s, no decision came\nclient errors 0.4% within 1%".into(),
        ),
        expected: Expected {
            outcome: "promoted".into(),
            within_s: 120.0,
            client_error_max: 0.01,
            time_scale: 0.25,
            written: Some(WrittenBudget {
                within_s: 30.0,
                time_scale: 0.0625,
            }),
            fastest_s: None,
        },
        outcome: None,
        decision_s: None,
        elapsed_s: 180.0,
        client: ClientReport {
            requests: 5000,
            errors: 20,
            error_rate: 0.004,
            p95_ms: 30.0,
            by_version: BTreeMap::new(),
        },
        timeline,
        series: None,
        judge: None,
    }
}

/// A real run of the healthy release rolled back by an over-tight p95 threshold (0.1 ms at
/// 80 requests/s), with the judge's finding on it: a false rollback, and a pass, since the
/// scenario expected the rollback.
pub(crate) fn false_rollback() -> ScenarioReport {
    use crate::judge::{self, Settings, Versions, testdata};
    let run = testdata::run(testdata::OVERTIGHT_80);
    let versions = Versions::new("1.0.0", "2.0.0").expect("two versions");
    let judgement = judge::judge(
        &run.timeline,
        &versions,
        run.outcome,
        run.decision_s,
        &Settings::default(),
    );
    ScenarioReport {
        name: "argo-overtight-p95-false-rollback".into(),
        file: "suites/judge/overtight.yaml".into(),
        outcome: Some("rolled-back".into()),
        decision_s: run.decision_s,
        timeline: run.timeline,
        judge: Some(judgement),
        ..passed()
    }
}

pub(crate) fn run() -> RunReport {
    RunReport {
        schema_version: super::model::SCHEMA_VERSION,
        version: "0.1.0".into(),
        backend: "local".into(),
        started_at: "2025-01-02T03:04:05Z".into(),
        scenarios: vec![passed(), failed()],
    }
}
