//! `--json FILE`: the machine-readable contract CI scripts read. The shape lives in
//! [`super::model`]; this module only decides how it reaches the disk.

use std::io;
use std::path::Path;

use super::atomic::write_atomic;
use super::model::RunReport;

/// Writes the report as pretty JSON, atomically, so a CI step polling the file never parses half
/// a report. Non-finite numbers (a NaN p95 of a run without requests) become `null`.
pub fn write_json(path: &Path, report: &RunReport) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use serde_json::Value;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    fn sorted(mut k: Vec<&str>) -> Vec<&str> {
        k.sort_unstable();
        k
    }

    #[test]
    fn output_has_exactly_the_design_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let mut run = fixture::run();
        run.scenarios[0].expected.fastest_s = Some(2.5);
        run.scenarios[0].series = Some(crate::report::series::build(&run.scenarios[0]));
        write_json(&path, &run).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n  \"version\""), "pretty-printed: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();

        assert_eq!(
            keys(&v),
            sorted(vec![
                "schema_version",
                "version",
                "backend",
                "started_at",
                "scenarios"
            ])
        );
        assert_eq!(v["schema_version"], 2);
        assert_eq!(v["backend"], "local");
        assert_eq!(v["started_at"], "2025-01-02T03:04:05Z");

        let s = &v["scenarios"][0];
        assert_eq!(
            keys(s),
            sorted(vec![
                "name",
                "file",
                "controller",
                "passed",
                "failure",
                "expected",
                "outcome",
                "decision_s",
                "elapsed_s",
                "client",
                "timeline",
                "series",
            ])
        );
        assert_eq!(s["passed"], true);
        assert!(s["failure"].is_null());
        assert_eq!(
            keys(&s["expected"]),
            sorted(vec![
                "outcome",
                "within_s",
                "client_error_max",
                "time_scale",
                "fastest_s",
            ])
        );
        assert_eq!(s["expected"]["fastest_s"], 2.5);
        assert_eq!(
            keys(&s["series"]),
            sorted(vec![
                "release_version",
                "traffic",
                "weight",
                "measurements",
                "markers"
            ])
        );
        let kinds: Vec<&str> = s["series"]["markers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["release", "fastest", "decision", "budget-end"]);
        assert_eq!(s["expected"]["client_error_max"], 0.05);
        // Beyond the first version of the contract: a budget rescaled from the file's timeScale shows both clocks.
        let rescaled = &v["scenarios"][1]["expected"];
        assert_eq!(rescaled["within_s"], 120.0);
        assert_eq!(rescaled["time_scale"], 0.25);
        assert_eq!(rescaled["written"]["within_s"], 30.0);
        assert_eq!(rescaled["written"]["time_scale"], 0.0625);
        assert_eq!(s["outcome"], "rolled-back");
        assert_eq!(s["decision_s"], 41.25);
        assert_eq!(
            keys(&s["client"]),
            sorted(vec![
                "requests",
                "errors",
                "error_rate",
                "p95_ms",
                "by_version"
            ])
        );
        assert_eq!(
            keys(&s["client"]["by_version"]["2.0.0"]),
            sorted(vec!["requests", "errors"])
        );
        assert_eq!(s["client"]["by_version"]["2.0.0"]["errors"], 21);

        let events = s["timeline"].as_array().unwrap();
        assert_eq!(events.len(), 4);
        for e in events {
            assert_eq!(
                keys(e),
                sorted(vec!["t_s", "source", "kind", "message", "data"])
            );
        }
        assert_eq!(events[0]["t_s"], -5.0);
        assert_eq!(events[0]["source"], "harness");
        assert_eq!(events[2]["source"], "router");
        assert_eq!(events[2]["data"]["weight"], 20);
        assert_eq!(events[3]["source"], "controller");

        let f = &v["scenarios"][1];
        assert_eq!(f["passed"], false);
        assert!(f["outcome"].is_null());
        assert!(f["decision_s"].is_null());
        assert!(f["failure"].as_str().unwrap().contains("no decision"));
        assert_eq!(f["client"]["by_version"], serde_json::json!({}));
    }

    #[test]
    fn every_source_is_spelled_lowercase() {
        use crate::timeline::Source::*;
        let all = [Controller, Analysis, Router, Pod, Fault, Load, Harness];
        let names: Vec<Value> = all
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "controller",
                "analysis",
                "router",
                "pod",
                "fault",
                "load",
                "harness"
            ]
            .map(Value::from)
        );
    }

    #[test]
    fn non_finite_numbers_still_make_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut run = fixture::run();
        run.scenarios[0].client.p95_ms = f64::NAN;
        write_json(&path, &run).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v["scenarios"][0]["client"]["p95_ms"].is_null());
    }
}
