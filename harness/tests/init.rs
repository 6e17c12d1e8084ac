//! `gauntlet init` as a user runs it: the suites it writes for the fixtures validate unchanged
//! and pass a real local run; other policy shapes validate; each number follows the policy's own
//! thresholds; what a policy cannot catch is a comment, not a scenario; bad input exits 2 with
//! the file and the fix, and nothing is overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gauntlet::init::sizing::Planned;
use gauntlet::init::{InitError, suite};
use gauntlet::scenario::{Fault, Outcome};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures/apps").join(name)
}

fn gauntlet(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(repo()).env("TMPDIR", tmp).env_remove("CI");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `gauntlet init --target <fixture> --out <out>`, which must succeed.
fn init(tmp: &Path, target: &Path, out: &Path) -> String {
    let o = gauntlet(tmp)
        .args(["init", "--target"])
        .arg(target)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    t
}

fn validate(tmp: &Path, dir: &Path) {
    let o = gauntlet(tmp).arg("validate").arg(dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Every written scenario names the schema written beside it, for editors.
    let schema = std::fs::read_to_string(dir.join(gauntlet::init::SCHEMA_FILE)).unwrap();
    assert_eq!(schema, gauntlet::scenario::schema::text());
    for name in files(dir) {
        let written = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert_eq!(
            written.lines().next(),
            Some(gauntlet::init::SCHEMA_LINE),
            "{name}"
        );
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// A copy of a fixture with `edit` applied to one of its files.
fn edited(name: &str, file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(file);
    let before = std::fs::read_to_string(&path).unwrap();
    let after = edit(before.clone());
    assert_ne!(before, after, "the edit of {file} changed nothing");
    std::fs::write(&path, after).unwrap();
    dir
}

fn scenario<'a>(plan: &'a [Planned], slug: &str) -> &'a Planned {
    plan.iter().find(|p| p.slug == slug).unwrap_or_else(|| {
        panic!(
            "no {slug} in {:?}",
            plan.iter().map(|p| p.slug).collect::<Vec<_>>()
        )
    })
}

const ALL: [&str; 5] = [
    "crash-rolled-back.yaml",
    "errors-rolled-back.yaml",
    "healthy-promoted.yaml",
    "latency-rolled-back.yaml",
    "memory-leak-rolled-back.yaml",
];

/// The acceptance test: both fixtures' suites, written, validated unchanged, then run for real
/// (nginx, Prometheus, the sample app, the emulated controllers), two scenarios at a time. Each
/// scenario's budget has its slack written in its file; the run takes about two and a half
/// minutes.
#[test]
fn the_suites_written_for_the_fixtures_validate_and_pass_a_real_run() {
    let tmp = tempfile::tempdir().unwrap();
    let argo = tmp.path().join("suites/argo");
    let flagger = tmp.path().join("suites/flagger");
    init(tmp.path(), &fixture("argo"), &argo);
    init(tmp.path(), &fixture("flagger"), &flagger);
    assert_eq!(files(&argo), ALL);
    assert_eq!(files(&flagger), ALL);
    validate(tmp.path(), &argo);
    validate(tmp.path(), &flagger);
    let report = tmp.path().join("report.json");
    let o = gauntlet(tmp.path())
        .args(["run", "--parallel", "2", "--seed", "1", "--json"])
        .arg(&report)
        .arg(&argo)
        .arg(&flagger)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("10 scenarios: 10 passed, 0 failed"), "{t}");
}

#[test]
fn the_argo_suite_follows_the_rollouts_numbers() {
    let (facts, plan) = suite(&fixture("argo")).unwrap();
    assert!(plan.gaps.is_empty(), "{:?}", plan.gaps);
    // Promotion takes the two 30 s pauses: 60 s, at 0.25 15 s; the 10 s intervals become 2.5 s.
    assert_eq!(plan.time_scale.value, 0.25);
    assert_eq!(facts.fastest.promoted, Some(Duration::from_secs(15)));
    // 20 % is the smallest weight: 40/s (the floor) already gives the canary 8 requests/s.
    assert_eq!(plan.rate.value, 40.0);
    let s = &plan.scenarios;
    assert_eq!(scenario(s, "healthy-promoted").outcome, Outcome::Promoted);
    assert_eq!(
        scenario(s, "healthy-promoted").within.value,
        Duration::from_secs(45)
    );
    // successCondition result[0] >= 0.95: 5 % errors allowed, three times that is below the
    // 30 % floor.
    let errors = scenario(s, "errors-rolled-back");
    assert_eq!(
        errors.fault.as_ref().unwrap().value,
        Fault::Errors {
            rate: 0.3,
            status: 500
        }
    );
    assert!(
        errors
            .fault
            .as_ref()
            .unwrap()
            .why
            .contains("fails above 5 % errors"),
        "{}",
        errors.fault.as_ref().unwrap().why
    );
    // failureLimit 1 at a 2.5 s interval: the second bad measurement, 2.5 s; 30 s of slack.
    assert_eq!(errors.within.value, Duration::from_secs(35));
    // p95 <= 0.5 s: 1.5 s added.
    assert_eq!(
        scenario(s, "latency-rolled-back")
            .fault
            .as_ref()
            .unwrap()
            .value,
        Fault::Latency {
            delay: Duration::from_millis(1500),
            jitter: Duration::ZERO
        }
    );
    // A 48 MiB bound just below the 64Mi limit: a leak slow enough for the memory metric alone
    // would pass 48 MiB after promotion, so it is fast, and the restarts metric backs it up.
    let leak = scenario(s, "memory-leak-rolled-back");
    assert_eq!(
        leak.fault.as_ref().unwrap().value,
        Fault::MemoryLeak {
            bytes_per_sec: 16 << 20
        }
    );
    assert!(
        leak.description.contains("memory or restarts"),
        "{}",
        leak.description
    );
    // progressDeadlineSeconds 60 with abort: 15 s.
    let crash = scenario(s, "crash-rolled-back");
    assert_eq!(crash.within.value, Duration::from_secs(45));
    assert!(
        crash.within.why.contains("progressDeadlineAbort"),
        "{}",
        crash.within.why
    );
}

#[test]
fn the_flagger_suite_follows_the_canarys_numbers() {
    let (_, plan) = suite(&fixture("flagger")).unwrap();
    assert!(plan.gaps.is_empty(), "{:?}", plan.gaps);
    // Seven 1 m ticks to promote (420 s) and an 11-tick deadline: 0.03 puts them at 12.6 s and
    // 19.8 s; the 1 m interval becomes 1.8 s.
    assert_eq!(plan.time_scale.value, 0.03);
    // 1 % is the smallest weight: 300/s gives the canary 3 requests/s.
    assert_eq!(plan.rate.value, 300.0);
    let s = &plan.scenarios;
    assert_eq!(
        scenario(s, "healthy-promoted")
            .weights
            .as_ref()
            .unwrap()
            .value,
        [1, 2, 10, 80]
    );
    // request-success-rate min 99: 1 % allowed; 30 % (the floor).
    assert_eq!(
        scenario(s, "errors-rolled-back")
            .fault
            .as_ref()
            .unwrap()
            .value,
        Fault::Errors {
            rate: 0.3,
            status: 500
        }
    );
    // request-duration max 500 ms: 1.5 s.
    assert_eq!(
        scenario(s, "latency-rolled-back")
            .fault
            .as_ref()
            .unwrap()
            .value,
        Fault::Latency {
            delay: Duration::from_millis(1500),
            jitter: Duration::ZERO
        }
    );
    for p in s {
        assert!(p.actions.is_empty(), "no gate in this Canary");
    }
}

#[test]
fn thresholds_are_read_from_the_policy_not_assumed() {
    // A looser success rate: 20 % allowed, three times that.
    let argo = edited("argo", "analysis-templates.yaml", |t| {
        t.replace("result[0] >= 0.95", "result[0] >= 0.8")
    });
    let (_, plan) = suite(argo.path()).unwrap();
    assert_eq!(
        scenario(&plan.scenarios, "errors-rolled-back")
            .fault
            .as_ref()
            .unwrap()
            .value,
        Fault::Errors {
            rate: 0.6,
            status: 500
        }
    );
    // A tighter latency bound on the Canary: 300 ms, so 900 ms.
    let flagger = edited("flagger", "canary.yaml", |t| {
        t.replace("max: 500", "max: 300")
    });
    let (_, plan) = suite(flagger.path()).unwrap();
    assert_eq!(
        scenario(&plan.scenarios, "latency-rolled-back")
            .fault
            .as_ref()
            .unwrap()
            .value,
        Fault::Latency {
            delay: Duration::from_millis(900),
            jitter: Duration::ZERO
        }
    );
    // Larger first steps need less load: 5 % of 60/s is 3 requests/s.
    let flagger = edited("flagger", "canary.yaml", |t| {
        t.replace("stepWeights: [1, 2, 10, 80]", "stepWeights: [5, 50]")
    });
    let (_, plan) = suite(flagger.path()).unwrap();
    assert_eq!(plan.rate.value, 60.0);
}

#[test]
fn a_policy_without_a_latency_metric_gets_a_comment_not_a_scenario() {
    let dir = edited("argo", "rollout.yaml", |t| {
        t.replace("          - templateName: p95-latency\n", "")
    });
    let (_, plan) = suite(dir.path()).unwrap();
    assert!(
        plan.scenarios
            .iter()
            .all(|p| p.slug != "latency-rolled-back")
    );
    assert!(
        plan.gaps
            .iter()
            .any(|g| g.contains("A slow release is not caught")
                && g.contains("measures response time")),
        "{:?}",
        plan.gaps
    );
    // The comment is in the first file written, and the suite still validates.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("suite");
    let printed = init(tmp.path(), dir.path(), &out);
    assert!(
        printed.contains("A slow release is not caught"),
        "{printed}"
    );
    let first = std::fs::read_to_string(out.join("healthy-promoted.yaml")).unwrap();
    assert!(
        first.contains("# - A slow release is not caught"),
        "{first}"
    );
    assert!(!out.join("latency-rolled-back.yaml").exists());
    validate(tmp.path(), &out);
}

#[test]
fn without_progress_deadline_abort_a_crash_is_a_comment() {
    let dir = edited("argo", "rollout.yaml", |t| {
        t.replace("  progressDeadlineAbort: true\n", "")
    });
    let (_, plan) = suite(dir.path()).unwrap();
    assert!(plan.scenarios.iter().all(|p| p.slug != "crash-rolled-back"));
    assert!(
        plan.gaps
            .iter()
            .any(|g| g.contains("set spec.progressDeadlineAbort: true")),
        "{:?}",
        plan.gaps
    );
}

#[test]
fn a_query_that_cannot_be_classified_is_named_and_not_relied_on() {
    // The restarts metric becomes a CPU query: no class, and without it the 64Mi limit close
    // above the 48 MiB bound leaves no leak the memory metric alone can catch in time.
    let dir = edited("argo", "analysis-templates.yaml", |t| {
        t.replace(
            "max(kube_pod_container_status_restarts_total{",
            "max(container_cpu_usage_seconds_total{",
        )
    });
    let (_, plan) = suite(dir.path()).unwrap();
    assert!(
        plan.gaps.iter().any(
            |g| g.starts_with("Metric restarts (AnalysisTemplate restarts")
                && g.contains("is not used to size a fault")
        ),
        "{:?}",
        plan.gaps
    );
    assert!(
        plan.scenarios
            .iter()
            .all(|p| p.slug != "memory-leak-rolled-back")
    );
    assert!(
        plan.gaps
            .iter()
            .any(|g| g.starts_with("A memory leak is not sized")
                && g.contains("a restarts metric would catch")),
        "{:?}",
        plan.gaps
    );
}

#[test]
fn a_limit_far_above_the_memory_bound_lets_the_memory_metric_catch_a_leak_alone() {
    let dir = edited("argo", "rollout.yaml", |t| {
        t.replace("              memory: 64Mi", "              memory: 256Mi")
    });
    let (_, plan) = suite(dir.path()).unwrap();
    let leak = scenario(&plan.scenarios, "memory-leak-rolled-back");
    assert_eq!(
        leak.description,
        format!(
            "a release leaking {} is rolled back by metric memory",
            match &leak.fault.as_ref().unwrap().value {
                Fault::MemoryLeak { bytes_per_sec } =>
                    format!("{}/s", gauntlet::init::words::bytes(*bytes_per_sec)),
                other => panic!("{other:?}"),
            }
        )
    );
    assert!(
        leak.fault
            .as_ref()
            .unwrap()
            .why
            .contains("stays below the 256 MiB limit"),
        "{}",
        leak.fault.as_ref().unwrap().why
    );
}

#[test]
fn other_policy_shapes_get_suites_that_validate() {
    let tmp = tempfile::tempdir().unwrap();
    // A grey zone whose query has no data for a release without errors: no healthy scenario,
    // and the first file says why.
    let out = tmp.path().join("inconclusive");
    init(tmp.path(), &fixture("argo-inconclusive"), &out);
    assert_eq!(
        files(&out),
        ["crash-rolled-back.yaml", "errors-rolled-back.yaml"]
    );
    let first = std::fs::read_to_string(out.join("errors-rolled-back.yaml")).unwrap();
    assert!(
        first.contains("# - A healthy release is not promoted by this policy: metric error-share"),
        "{first}"
    );
    validate(tmp.path(), &out);
    // The grey zone fails above 20 %: three times that.
    assert!(
        first.contains("errors: { rate: 60%, status: 500 }"),
        "{first}"
    );
    // A Canary with a confirm-promotion gate on the loadtester: every scenario opens it.
    let out = tmp.path().join("gate");
    init(tmp.path(), &fixture("flagger-gate"), &out);
    validate(tmp.path(), &out);
    for f in files(&out) {
        let t = std::fs::read_to_string(out.join(&f)).unwrap();
        assert!(t.contains("- { at: 0s, action: open-gate }"), "{f}: {t}");
    }
    // A Rollout that waits for a person: the healthy release is expected to wait.
    let out = tmp.path().join("manual");
    init(tmp.path(), &fixture("fidelity-argo-manual"), &out);
    assert_eq!(files(&out), ["healthy-paused.yaml"]);
    validate(tmp.path(), &out);
}

#[test]
fn every_number_in_a_written_file_has_a_comment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    init(tmp.path(), &fixture("flagger"), &out);
    for f in files(&out) {
        let t = std::fs::read_to_string(out.join(&f)).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let key = l.trim_start();
            let numbered = [
                "load:",
                "timeScale:",
                "within:",
                "clientErrors:",
                "weights:",
            ]
            .iter()
            .any(|k| key.starts_with(k))
                || (key.contains("{ ") && lines[..i].iter().any(|p| p.trim() == "faults:"));
            if numbered {
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "{f}: no comment above {l:?}"
                );
            }
        }
        // No message points into gauntlet's own sources or design notes.
        assert!(!t.contains("DESIGN"), "{f}");
        assert!(!t.contains(".rs"), "{f}");
    }
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let target = fixture("argo").canonicalize().unwrap();
    // Without --out: suites/<target folder> under the working directory.
    let run = |force: bool| {
        let mut cmd = gauntlet(tmp.path());
        cmd.current_dir(tmp.path())
            .args(["init", "--target"])
            .arg(&target);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    assert_eq!(run(false).status.code(), Some(0));
    let healthy = tmp.path().join("suites/argo/healthy-promoted.yaml");
    std::fs::write(&healthy, "# mine\n").unwrap();
    let o = run(false);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("healthy-promoted.yaml"), "{t}");
    assert!(t.contains("pass --force"), "{t}");
    assert_eq!(std::fs::read_to_string(&healthy).unwrap(), "# mine\n");
    assert_eq!(run(true).status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&healthy)
            .unwrap()
            .contains("name: rollout-sample-app-healthy-promoted")
    );
}

#[test]
fn bad_targets_exit_2_naming_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = |target: &Path| {
        let o = gauntlet(tmp.path())
            .args(["init", "--target"])
            .arg(target)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (o.status.code(), text(&o))
    };
    // No such folder.
    let (code, t) = run(&tmp.path().join("nowhere"));
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("nowhere: no such file or folder"), "{t}");
    // A folder without a Rollout or a Canary.
    let services = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("argo").join("services.yaml"),
        services.path().join("services.yaml"),
    )
    .unwrap();
    let (code, t) = run(services.path());
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("neither an Argo Rollout"), "{t}");
    assert!(
        t.contains("point --target at the folder of one Rollout"),
        "{t}"
    );
    // A manifest that does not parse.
    let broken = edited("argo", "rollout.yaml", |t| {
        t.replace("  replicas: 2\n", "  replicas: [2\n")
    });
    let (code, t) = run(broken.path());
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("rollout.yaml"), "{t}");
    assert!(t.contains("fix the manifests above"), "{t}");
    assert!(!out.exists(), "nothing is written on bad input");
    // The library says the same without a process.
    assert!(matches!(
        suite(&tmp.path().join("nowhere")),
        Err(InitError::NoTarget(_))
    ));
}
