//! `gauntlet validate` (and `run`'s checks before it starts) as a user runs it: manifests the
//! real CRDs refuse (exit 2, file and key path), the one warning when Go is missing and the CRDs
//! cannot be read, and the time-scale races of a scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gauntlet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(repo()).env_remove("CI");
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of `fixtures/apps/<fixture>` with `edit` applied to `file`, and `n` scenarios
/// against it.
fn target(
    fixture: &str,
    file: &str,
    edit: impl Fn(String) -> String,
    n: usize,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("fixtures/apps").join(fixture)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(file);
    let t = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(t)).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.path().join(format!("scenario-{i}.yaml")),
            format!(
                "name: s{i}\ntarget: .\nbaseline: {{ version: \"1.0.0\" }}\n\
                 release: {{ version: \"2.0.0\" }}\nload: {{ rate: 40/s }}\ntimeScale: 0.03\n\
                 expect: {{ outcome: promoted, within: 60s }}\n"
            ),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_canary_the_crd_refuses_exits_2_naming_file_and_path() {
    let dir = target(
        "flagger",
        "canary.yaml",
        |t| t.replace("  analysis:\n", "  canaryAnalysis:\n"),
        1,
    );
    let out = gauntlet().arg("validate").arg(dir.path()).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("canary.yaml"), "{err}");
    assert!(
        err.contains("at `spec.canaryAnalysis`: unknown field \"canaryAnalysis\""),
        "{err}"
    );
    assert!(err.contains("did you mean `analysis`?"), "{err}");
    assert!(
        err.contains("at `spec.analysis`: Required value: the API server refuses it (CRD canaries.flagger.app v1beta1, Flagger v1.44.0)"),
        "{err}"
    );
}

#[test]
fn without_go_validation_is_partial_and_says_so_once() {
    let no_go = tempfile::tempdir().unwrap();
    let dir = target("flagger", "canary.yaml", |t| t, 2);
    let out = gauntlet()
        .arg("validate")
        .arg(dir.path())
        .env("PATH", no_go.path())
        .output()
        .unwrap();
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{stdout}"
    );
    let notices = err
        .lines()
        .filter(|l| l.starts_with("warning: validation against the CRDs is partial"))
        .count();
    assert_eq!(notices, 1, "{err}");
    assert!(err.contains("needs `go`"), "{err}");

    // gauntlet's own rules still run: a step weight that is not a number is refused.
    let broken = target(
        "flagger",
        "canary.yaml",
        |t| t.replace("stepWeights: [1, 2, 10, 80]", "stepWeights: [1, two]"),
        1,
    );
    let out = gauntlet()
        .arg("validate")
        .arg(broken.path())
        .env("PATH", no_go.path())
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("spec.analysis.stepWeights[1]"), "{err}");
}

#[test]
fn with_go_no_partial_warning() {
    let out = gauntlet()
        .args(["validate", "suites/argo/healthy-release-promoted.yaml"])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("partial"), "{err}");
}

#[test]
fn a_webhook_timeout_at_0_03_warns_naming_both_and_not_at_1() {
    let out = gauntlet()
        .args(["validate", "suites/flagger/healthy-succeeded.yaml"])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("webhooks[0].timeout"))
        .unwrap_or_else(|| panic!("{err}"));
    for part in [
        "fixtures/apps/flagger/canary.yaml",
        "Canary/sample-app",
        "= 5s runs as 150ms",
        "a webhook's response time = 1s (not scaled)",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(
        err.contains("warning: flagger-healthy-succeeded (suites/flagger/healthy-succeeded.yaml) at time scale 0.03"),
        "{err}"
    );

    let out = gauntlet()
        .args([
            "validate",
            "--time-scale",
            "1",
            "suites/flagger/healthy-succeeded.yaml",
        ])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn run_warns_of_the_races_before_it_starts() {
    // A missing nginx stops the run right after its checks (exit 3), so nothing runs.
    let run = |extra: &[&str]| {
        let out = gauntlet()
            .arg("run")
            .args(extra)
            .arg("suites/flagger/healthy-succeeded.yaml")
            .env("GAUNTLET_NGINX", "/nonexistent/nginx")
            .output()
            .unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        err
    };
    let err = run(&[]);
    assert!(
        err.lines()
            .any(|l| l.contains("webhooks[0].timeout") && l.contains("= 5s runs as 150ms")),
        "{err}"
    );
    let err = run(&["--time-scale", "1"]);
    assert!(!err.contains("runs as"), "{err}");
}
