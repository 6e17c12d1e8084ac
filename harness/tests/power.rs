//! `gauntlet power` on the fixtures: the emulated controller in virtual time against a real
//! Prometheus over synthetic series. Small grids and few runs, so each test takes seconds;
//! the assertions are about behaviour (what a 0 % and a 30 % release come to, the curve's
//! order, reproducibility, the JSON contract, exit codes), never about wall-clock time.
//!
//! Needs prometheus (Debian's prometheus package; .ci/deps installs it).

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

/// Power needs one tool, prometheus (promtool backfilled the blocks of the first design).
#[test]
fn a_missing_prometheus_says_what_to_install_with_exit_3() {
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
        .env("GAUNTLET_PROMETHEUS", "/nonexistent/prometheus")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("install prometheus"), "{stderr}");
}

#[test]
fn html_and_json_are_written_together() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("power.json"), dir.path().join("power.html"));
    let out = gauntlet()
        .args(["power", "fixtures/apps/argo", "--runs", "2", "--seed", "3"])
        .args(["--errors", "0,30%", "--latency", "0,500ms", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    // A plot per fault kind, as inline SVG, and a table row per point of the JSON.
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert_eq!(page.matches("<svg").count(), 2, "{page}");
    assert!(page.contains("id=\"plot-errors\"") && page.contains("id=\"plot-latency\""));
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    for p in points {
        let row = format!("<tr class=\"{}", p["fault"].as_str().unwrap());
        assert!(page.contains(&row), "no row for {p}");
        assert!(page.contains(p["label"].as_str().unwrap()), "no {p}");
    }
    assert_eq!(page.matches("<tr class=").count(), points.len());
    assert!(page.contains("caught: 0.95"));
    assert!(
        !page.contains("http") && !page.contains("src="),
        "the page fetches"
    );
    // No temporary file is left beside it.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["power.html", "power.json"]);
}

#[test]
fn an_unwritable_html_path_is_bad_input_named_before_the_run() {
    let out = gauntlet()
        .args(["power", "fixtures/apps/argo", "--runs", "1", "--html"])
        .arg("/nonexistent/folder/power.html")
        .env("GAUNTLET_PROMETHEUS", "/nonexistent/prometheus")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    // Exit 2 (a bad flag), not 3: the path is checked before anything runs, so the missing
    // prometheus is never reached.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--html") && stderr.contains("/nonexistent/folder/power.html"),
        "{stderr}"
    );
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

/// The `k` range holding 95 % of Binomial(`n`, `p`): [2.5 % quantile, 97.5 % quantile].
fn binomial_range(n: usize, p: f64) -> (usize, usize) {
    let pmf = |k: usize| {
        let mut c = 1.0f64;
        for i in 0..k {
            c = c * (n - i) as f64 / (i + 1) as f64;
        }
        c * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32)
    };
    let (mut cdf, mut lo, mut hi) = (0.0, None, n);
    for k in 0..=n {
        cdf += pmf(k);
        if lo.is_none() && cdf > 0.025 {
            lo = Some(k);
        }
        if cdf >= 0.975 {
            hi = k;
            break;
        }
    }
    (lo.unwrap_or(0), hi)
}

#[test]
fn binomial_ranges_hold_95_percent() {
    assert_eq!(binomial_range(10, 0.0), (0, 0));
    assert_eq!(binomial_range(10, 1.0), (10, 10));
    assert_eq!(binomial_range(10, 0.5), (2, 8));
}

/// Issue 17 item 3: `power`'s probabilities against repeated real local runs of the same
/// releases (`gauntlet run --seed i`, the emulated controller on the local stack: sample-app
/// processes, nginx, Prometheus, real load). Slow (a few minutes per ten runs of a point) and
/// needs the local stack's tools, so ignored:
///
/// ```text
/// cargo build -p sample-app && cargo test --test power -- --ignored --nocapture validate
/// ```
///
/// `GAUNTLET_POWER_VALIDATE_RUNS` (default 10) real runs per point,
/// `GAUNTLET_POWER_VALIDATE_POINTS` (default `0,2%,5%,30%`) error shares, at the suites' time
/// scale 0.25 and 40 requests/s. A point passes when its count of real rollbacks lies in the
/// 95 % range of Binomial(runs, p) for p anywhere in the simulated P(rolled back)'s 95 %
/// interval (200 simulated rollouts). docs/power.md has the numbers of the last run.
#[test]
#[ignore = "slow: real local runs (issue 17 item 3)"]
fn validate_against_real_local_runs() {
    let runs: usize = std::env::var("GAUNTLET_POWER_VALIDATE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let points =
        std::env::var("GAUNTLET_POWER_VALIDATE_POINTS").unwrap_or_else(|_| "0,2%,5%,30%".into());
    let shares = gauntlet::power::grid::parse_errors(&points).unwrap();
    let scale = 0.25;
    let target = repo().join("fixtures/apps/argo");

    // The simulation first: 200 rollouts per point at the scenarios' time scale and rate.
    let mut req = PowerRequest::new(target.clone());
    req.grid = Grid {
        errors: shares.clone(),
        latency: vec![],
    };
    req.scale = gauntlet::controller::timescale::TimeScale::new(scale).unwrap();
    let sim = Power::new(req).unwrap().run(|_| {}).unwrap();

    // One scenario per point; `gauntlet run --seed i` runs them all, i = 1..=runs.
    let dir = tempfile::tempdir().unwrap();
    for (i, share) in shares.iter().enumerate() {
        let faults = if *share > 0.0 {
            format!("  faults:\n    errors: {{ rate: {share} }}\n")
        } else {
            String::new()
        };
        std::fs::write(
            dir.path().join(format!("point-{i}.yaml")),
            format!(
                "name: power-validate-{i}\ntarget: {}\nbaseline: {{ version: \"1.0.0\" }}\n\
                 release:\n  version: \"2.0.0\"\n{faults}load: {{ rate: 40/s, connections: 4 }}\n\
                 timeScale: {scale}\nexpect:\n  outcome: rolled-back\n  within: 60s\n",
                target.display()
            ),
        )
        .unwrap();
    }
    let mut real: Vec<Vec<(Option<String>, Option<f64>)>> = vec![Vec::new(); shares.len()];
    for seed in 1..=runs {
        let json = dir.path().join(format!("run-{seed}.json"));
        let out = gauntlet()
            .arg("run")
            .arg(dir.path())
            .args(["--parallel", "2", "--seed", &seed.to_string(), "--json"])
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "seed {seed}: {}",
            text(&out).1
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for s in v["scenarios"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            let i: usize = name.rsplit('-').next().unwrap().parse().unwrap();
            real[i].push((
                s["outcome"].as_str().map(String::from),
                s["decision_s"].as_f64(),
            ));
        }
    }

    println!(
        "| errors | simulated P(rolled back) (95 % interval) | real rolled back | 95 % range of real count | real median decision | simulated median |"
    );
    println!("|---|---|---|---|---|---|");
    let mut misses = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let p = &sim.points[i];
        let k = real[i]
            .iter()
            .filter(|(o, _)| o.as_deref() == Some("rolled-back"))
            .count();
        let mut times: Vec<f64> = real[i].iter().filter_map(|(_, t)| *t).collect();
        times.sort_by(f64::total_cmp);
        let real_median = times
            .get(times.len().saturating_sub(1) / 2)
            .map_or("-".into(), |t| format!("{t:.1}s"));
        let n = real[i].len();
        let (lo, _) = binomial_range(n, p.rolled_back_ci95[0]);
        let (_, hi) = binomial_range(n, p.rolled_back_ci95[1]);
        println!(
            "| {:.1} % | {:.3} ({:.3}–{:.3}) | {k}/{n} | {lo}–{hi} | {real_median} | {} |",
            share * 100.0,
            p.rolled_back,
            p.rolled_back_ci95[0],
            p.rolled_back_ci95[1],
            p.decision_s
                .map_or("-".into(), |q| format!("{:.1}s", q.median)),
        );
        if !(lo..=hi).contains(&k) {
            misses.push(format!("{share}: {k}/{n} outside {lo}–{hi}"));
        }
    }
    assert!(misses.is_empty(), "{misses:?}");
}
