//! `gauntlet power` on the fixtures: the emulated controller in virtual time against a real
//! Prometheus over synthetic series. Small grids and few runs, so each test takes seconds;
//! the assertions are about behaviour (what a 0 % and a 30 % release come to, the curve's
//! order, reproducibility, the JSON contract, exit codes), never about wall-clock time.
//!
//! Needs promtool and prometheus (Debian's prometheus package; .ci/deps installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gauntlet::power::report::PowerReport;
use gauntlet::power::{Grid, Power, PowerRequest};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gauntlet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(repo());
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(fixture: &str, errors: &[f64], runs: usize, seed: u64) -> PowerReport {
    let mut req = PowerRequest::new(repo().join("fixtures/apps").join(fixture));
    req.runs = runs;
    req.seed = seed;
    req.grid = Grid {
        errors: errors.to_vec(),
        latency: vec![],
    };
    let power = Power::new(req).expect("the fixture is a valid target");
    power.run(|_| {}).expect("the power run completes")
}

fn rolled_back(r: &PowerReport, share: f64) -> f64 {
    r.points
        .iter()
        .find(|p| p.magnitude == share)
        .map(|p| p.rolled_back)
        .expect("the point is in the report")
}

#[test]
fn argo_promotes_a_good_release_and_rolls_back_a_bad_one_reproducibly() {
    let r = run("argo", &[0.0, 0.02, 0.3], 12, 7);
    // No fault: the success rate stays far above 95 %, so a rollback would be a bug.
    assert!(rolled_back(&r, 0.0) <= 1.0 / 12.0, "{r:#?}");
    assert!(r.points[0].promoted >= 11.0 / 12.0, "{r:#?}");
    // 30 % errors against a 95 % success floor: every run is caught.
    assert!(rolled_back(&r, 0.3) >= 11.0 / 12.0, "{r:#?}");
    // The curve rises (2 % is in between, and below 30 %).
    assert!(rolled_back(&r, 0.0) <= rolled_back(&r, 0.02));
    assert!(rolled_back(&r, 0.02) <= rolled_back(&r, 0.3));
    // Decisions come within the policy's own steps: 30 % is caught before promotion would be.
    let caught = r.points[2].decision_s.expect("decided");
    let promoted = r.points[0].decision_s.expect("decided");
    assert!(caught.p95 < promoted.median, "{caught:?} vs {promoted:?}");
    let smallest = if rolled_back(&r, 0.02) >= 0.95 {
        0.02
    } else {
        0.3
    };
    assert_eq!(r.smallest_caught.errors, Some(smallest));
    assert_eq!(r.false_rollback, Some(rolled_back(&r, 0.0)));
    // Seeded: the same seed gives the same outcomes, decision times included.
    let again = run("argo", &[0.0, 0.02, 0.3], 12, 7);
    assert_eq!(r.points, again.points);
}

#[test]
fn flagger_rolls_back_thirty_percent_errors() {
    let r = run("flagger", &[0.0, 0.3], 4, 3);
    assert_eq!(r.setup.controller, "flagger");
    assert_eq!(rolled_back(&r, 0.0), 0.0, "{r:#?}");
    assert_eq!(rolled_back(&r, 0.3), 1.0, "{r:#?}");
}

#[test]
fn the_json_report_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("power.json");
    let out = gauntlet()
        .args([
            "power",
            "fixtures/apps/argo",
            "--runs",
            "3",
            "--errors",
            "0,30%",
        ])
        .args([
            "--latency",
            "0,500ms",
            "--rate",
            "40/s",
            "--seed",
            "5",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("false rollbacks"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "0 and 30 % errors, 0 and 500 ms");
    for p in points {
        assert!(
            matches!(p["fault"].as_str(), Some("errors" | "latency")),
            "{p}"
        );
        assert!(p["magnitude"].is_number(), "{p}");
        assert_eq!(p["runs"], 3);
        let sum: f64 = ["rolled_back", "promoted", "paused", "undecided"]
            .iter()
            .map(|k| p[k].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "{p}");
        assert!(
            p["decision_s"]["median"].is_number() && p["decision_s"]["p95"].is_number(),
            "{p}"
        );
    }
    assert_eq!(points[1]["magnitude"], 0.3);
    assert_eq!(points[3]["magnitude"], 500.0);
    assert!(
        v["smallest_caught"]
            .as_object()
            .unwrap()
            .contains_key("errors")
    );
    assert!(
        v["smallest_caught"]
            .as_object()
            .unwrap()
            .contains_key("latency")
    );
    assert!(v["false_rollback"].is_number());
}

#[test]
fn bad_input_is_refused_with_exit_2() {
    for args in [
        vec!["--errors", "150%"],
        vec!["--latency", "slow"],
        vec!["--rate", "fast"],
        vec!["--runs", "0"],
        vec!["--time-scale", "-1"],
    ] {
        let out = gauntlet()
            .args(["power", "fixtures/apps/argo"])
            .args(&args)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    let out = gauntlet()
        .args(["power", "fixtures/apps/nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
}

#[test]
fn a_missing_promtool_says_what_to_install_with_exit_3() {
    let out = gauntlet()
        .args([
            "power",
            "fixtures/apps/argo",
            "--runs",
            "1",
            "--errors",
            "0",
            "--latency",
            "0",
        ])
        .env("GAUNTLET_PROMTOOL", "/nonexistent/promtool")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("install prometheus"), "{stderr}");
}

#[test]
fn the_horizon_bounds_a_decision_that_never_comes() {
    // Ten seconds after the release is before the fixture's first decision.
    let mut req = PowerRequest::new(repo().join("fixtures/apps/argo"));
    req.runs = 2;
    req.grid = Grid {
        errors: vec![0.0],
        latency: vec![],
    };
    req.within = Duration::from_secs(10);
    let r = Power::new(req).unwrap().run(|_| {}).unwrap();
    assert_eq!(r.points[0].undecided, 1.0, "{r:#?}");
    assert_eq!(r.points[0].decision_s, None);
}
