use serde_json::{Value, json};

use super::*;
use crate::report::fixture;
use crate::report::model::RunReport;
use crate::timeline::{Event, Source};

fn ev(t_s: f64, source: Source, kind: &str, message: &str, data: Value) -> Event {
    let mut e = fixture::event(t_s, source, kind, message);
    e.data = data;
    e
}

fn window(t_s: f64, versions: &[(&str, u64, u64)]) -> Event {
    let by_version: serde_json::Map<String, Value> = versions
        .iter()
        .map(|(v, requests, errors)| {
            (
                v.to_string(),
                json!({"requests": requests, "errors": errors, "transport_errors": 0,
                       "by_status": {}, "latency": {"3162": requests - errors, "10000": errors}}),
            )
        })
        .collect();
    ev(
        t_s + 1.0,
        Source::Load,
        "window",
        "",
        json!({"t_s": t_s, "dur_s": 1.0, "by_version": by_version}),
    )
}

/// A rollback after failed measurements, as a run of the 500s scenario writes it.
fn rolled_back() -> ScenarioReport {
    let mut s = fixture::passed();
    s.name = "argo <500s> & \"friends\"".into();
    s.passed = false;
    s.failure = Some("client errors 12.0% above 10.0%; decision after 41.2s".into());
    s.expected.fastest_s = Some(2.5);
    let mut timeline = vec![
        ev(
            0.0,
            Source::Harness,
            "release",
            "release 2.0.0",
            json!({"version": "2.0.0"}),
        ),
        ev(
            0.2,
            Source::Router,
            "canary-route",
            "canary weight 20%",
            json!({"weight": 20}),
        ),
        ev(
            0.3,
            Source::Controller,
            "RolloutStepCompleted",
            "Rollout step 1/4 completed",
            Value::Null,
        ),
        ev(
            6.0,
            Source::Pod,
            "pod-restarted",
            "pod app-2 restarted (restart 1)",
            Value::Null,
        ),
        ev(
            7.0,
            Source::Pod,
            "pod-terminated",
            "pod app-2 container terminated: OOMKilled",
            json!({"termination": {"reason": "OOMKilled"}}),
        ),
        ev(
            41.3,
            Source::Router,
            "canary-route",
            "canary weight 0%",
            json!({"weight": 0}),
        ),
    ];
    for (i, (phase, value)) in [
        ("Successful", "0.99"),
        ("Failed", "0.7"),
        ("Failed", "0.69"),
    ]
    .into_iter()
    .enumerate()
    {
        timeline.push(ev(
            5.0 + 10.0 * i as f64,
            Source::Analysis,
            "measurement",
            "success-rate",
            json!({"run": "app-2", "metric": "success-rate", "phase": phase, "value": value,
                   "success_condition": "result[0] >= 0.95"}),
        ));
    }
    for t in -3..45 {
        let t = f64::from(t);
        let v: &[(&str, u64, u64)] = if t < 0.0 {
            &[("1.0.0", 40, 0)]
        } else {
            &[("1.0.0", 32, 0), ("2.0.0", 8, 3)]
        };
        timeline.push(window(t, v));
    }
    timeline.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    s.timeline = timeline;
    s.series = Some(series::build(&s));
    s
}

fn run() -> RunReport {
    RunReport {
        scenarios: vec![fixture::passed(), rolled_back()],
        ..fixture::run()
    }
}

/// The `<figure>` of a panel, by its id.
fn figure<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no panel {id}"));
    let end = page[start..].find("</figure>").unwrap();
    &page[start..start + end]
}

#[test]
fn the_summary_links_every_scenario_and_says_how_it_went() {
    let page = render(&run()).unwrap();
    assert!(page.contains("<table id=\"summary\""), "{page}");
    assert_eq!(page.matches("<tr id=\"row-").count(), 2);
    assert!(page.contains("<a href=\"#s1-argo-rollback-on-500s\">argo-rollback-on-500s</a>"));
    let failed_row = &page[page.find("id=\"row-s2-").unwrap()..];
    let failed_row = &failed_row[..failed_row.find("</tr>").unwrap()];
    assert!(
        failed_row.contains("rolled-back → rolled-back"),
        "{failed_row}"
    );
    assert!(failed_row.contains("41.2s of 90.0s"), "{failed_row}");
    assert!(
        failed_row.contains("+38.8s vs fastest 2.5s"),
        "{failed_row}"
    );
    assert!(failed_row.contains("FAIL"), "{failed_row}");
}

#[test]
fn a_failed_scenario_opens_with_its_failure_in_words() {
    let page = render(&run()).unwrap();
    let section = &page[page.find("<section id=\"s2-").unwrap()..];
    let failure = section.find("class=\"failure\"").unwrap();
    assert!(failure < section.find("<figure").unwrap());
    assert!(section.contains("<li>client errors 12.0% above 10.0%</li>"));
    assert!(section.contains("<li>decision after 41.2s</li>"));
    let passed =
        &page[page.find("<section id=\"s1-").unwrap()..page.find("<section id=\"s2-").unwrap()];
    assert!(!passed.contains("class=\"failure\""));
}

#[test]
fn every_panel_is_a_plot_with_its_series() {
    let page = render(&run()).unwrap();
    let id = "s2-argo--500s-----friends";
    for (panel, series) in [
        ("weight", vec!["weight"]),
        ("requests", vec!["requests-1.0.0", "requests-2.0.0"]),
        ("errors", vec!["errors-1.0.0", "errors-2.0.0"]),
        ("latency", vec!["latency-1.0.0", "latency-2.0.0"]),
        ("metric-0", vec!["passed", "failed", "threshold-min"]),
    ] {
        let f = figure(&page, &format!("{id}-{panel}"));
        assert_eq!(f.matches("<svg").count(), 1, "{panel}");
        assert!(
            f.contains("<polyline") || f.contains("<circle"),
            "{panel}: nothing drawn"
        );
        for s in series {
            assert!(
                f.contains(&format!("data-series=\"{s}\"")),
                "{panel} lacks {s}"
            );
        }
    }
    assert!(figure(&page, &format!("{id}-metric-0")).contains("Analysis: success-rate (app-2)"));
    for marker in [
        "release",
        "step",
        "pod-restart",
        "oom-killed",
        "decision",
        "budget-end",
        "fastest",
    ] {
        assert!(
            page.contains(&format!("data-marker=\"{marker}\"")),
            "no {marker} marker"
        );
    }
}

#[test]
fn names_are_escaped_and_nothing_is_fetched() {
    let page = render(&run()).unwrap();
    assert!(page.contains("argo &lt;500s&gt; &amp; &quot;friends&quot;"));
    assert!(!page.contains("<500s>"));
    for needle in ["http://", "https://", " src=", "url(", "@import", "<link"] {
        assert!(!page.contains(needle), "the page names {needle}");
    }
    for href in page.split("href=\"").skip(1) {
        assert!(
            href.starts_with('#'),
            "a link out of the page: {}",
            &href[..40.min(href.len())]
        );
    }
}

#[test]
fn the_page_from_the_json_file_is_the_page_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let report = run();
    crate::report::write_json(&json, &report).unwrap();
    let from_file = render(&read_report(&json).unwrap()).unwrap();
    assert_eq!(render_via_json(&report).unwrap(), from_file);
    let html = dir.path().join("r.html");
    write_html(&html, &report).unwrap();
    assert_eq!(std::fs::read_to_string(&html).unwrap(), from_file);
}

#[test]
fn a_report_of_schema_1_is_drawn_from_its_timeline() {
    let mut v = serde_json::to_value(run()).unwrap();
    v.as_object_mut().unwrap().remove("schema_version");
    for s in v["scenarios"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        s.remove("series");
        s["expected"].as_object_mut().unwrap().remove("fastest_s");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let old = read_report(&path).unwrap();
    assert_eq!(old.schema_version, 1);
    let page = render(&old).unwrap();
    let f = figure(&page, "s2-argo--500s-----friends-requests");
    assert!(f.contains("data-series=\"requests-2.0.0\""));
    assert!(page.contains("no fastest known"));
}

#[test]
fn unreadable_malformed_and_newer_reports_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let e = read_report(&missing).unwrap_err();
    assert!(matches!(e, ReadError::Io { .. }));
    assert!(e.to_string().contains("missing.json"), "{e}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"scenarios\": [").unwrap();
    let e = read_report(&bad).unwrap_err();
    assert!(matches!(e, ReadError::Malformed { .. }));
    assert!(e.to_string().contains("bad.json"), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");

    let newer = dir.path().join("newer.json");
    std::fs::write(&newer, "{\"schema_version\": 99, \"whatever\": true}").unwrap();
    let e = read_report(&newer).unwrap_err();
    assert!(matches!(e, ReadError::TooNew { found: 99, .. }), "{e}");
}

#[test]
fn values_at_the_ends_of_f64_still_give_a_page() {
    let mut s = rolled_back();
    s.decision_s = Some(1e300);
    s.expected.within_s = f64::MAX;
    let series = s.series.as_mut().unwrap();
    series.measurements[0].value = Some(f64::MAX);
    series.measurements[1].value = Some(-f64::MAX);
    series.measurements[1].min = Some(f64::MIN_POSITIVE);
    series.weight[0].t_s = -1e300;
    series.traffic[0].dur_s = 0.0;
    let page = render(&RunReport {
        scenarios: vec![s],
        ..fixture::run()
    })
    .unwrap();
    assert!(page.contains("data-panel=\"metric-0\""));
}

#[test]
fn the_judges_finding_stands_beside_the_decision() {
    let mut report = run();
    report.scenarios.push(fixture::false_rollback());
    // Drawn from the JSON, as `gauntlet report` would: the judgement reads back.
    let page = render_via_json(&report).unwrap();
    let row = &page[page.find("id=\"row-s3-").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("<td class=\"judge-cell dispute\">false-rollback</td>"),
        "{row}"
    );
    let first = &page[page.find("id=\"row-s1-").unwrap()..];
    let first = &first[..first.find("</tr>").unwrap()];
    assert!(
        first.contains("<td class=\"judge-cell \">-</td>"),
        "{first}"
    );

    let section = &page[page.find("<section id=\"s3-").unwrap()..];
    let judge = &section[section.find("<div class=\"judge dispute\"").unwrap()..];
    let judge = &judge[..judge.find("</table>").unwrap()];
    assert!(judge.contains("data-finding=\"false-rollback\""), "{judge}");
    assert!(
        judge
            .contains("rolled back, but no metric worse. Canary against stable at 98 % confidence"),
        "{judge}"
    );
    for metric in ["error-rate", "latency", "pods"] {
        let m = &judge[judge.find(&format!("data-metric=\"{metric}\"")).unwrap()..];
        assert!(
            m.starts_with(&format!("data-metric=\"{metric}\"><td>"))
                && m.contains("class-no-difference"),
            "{m}"
        );
    }
    assert!(
        !page[..page.find("<section id=\"s3-").unwrap()].contains("<div class=\"judge"),
        "the scenarios without a judgement have no judge block"
    );
}
