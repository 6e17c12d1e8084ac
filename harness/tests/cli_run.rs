//! `gauntlet run` as a user runs it: exit codes for a broken expectation (1, the judge's
//! included), a malformed file
//! (2), a dying Prometheus (3), and Ctrl-C; reports and artifacts written in every case.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gauntlet(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(repo()).env("TMPDIR", tmp).env_remove("CI");
    cmd
}

/// A scenario file in `dir` against the Argo fixture.
fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let target = repo().join("fixtures/apps/argo").canonicalize().unwrap();
    let text = format!(
        "name: {name}\ntarget: {}\nbaseline: {{ version: \"1.0.0\" }}\nload: {{ rate: 40/s, connections: 4 }}\ntimeScale: 0.25\n{body}",
        target.display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "gauntlet did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads stderr lines until one contains `needle` (or the process ends); keeps draining the
/// rest in the background so the child never blocks on a full pipe.
fn wait_for_line(child: &mut Child, needle: &str, within: Duration) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return seen;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {within:?}: {seen:#?}");
}

/// Children of `parent` whose command line contains `needle`.
fn children_matching(parent: u32, needle: &str) -> Vec<u32> {
    gauntlet::cluster::local::process::children_of(parent)
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(needle)
        })
        .collect()
}

const HEALTHY: &str =
    "release: { version: \"2.0.0\" }\nexpect: { outcome: promoted, within: 45s }\n";

#[test]
fn a_wrong_expectation_exits_1_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(
        tmp.path(),
        "expects-promotion-of-500s",
        "release: { version: \"2.0.0\", faults: { errors: { rate: 30% } } }\nexpect: { outcome: promoted, within: 45s, clientErrors: { max: 50% }, judge: false-rollback }\n",
    );
    let json = tmp.path().join("r.json");
    let out = gauntlet(tmp.path())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("expected promoted, but the controller rolled-back after"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let s = &report["scenarios"][0];
    assert_eq!(s["passed"], false);
    assert_eq!(s["outcome"], "rolled-back");
    assert!(s["failure"].as_str().unwrap().contains("expected promoted"));
    // The judge disagrees with the file's expectation too: 30 % errors justify the rollback.
    assert_eq!(s["judge"]["finding"], "justified", "{}", s["judge"]);
    assert_eq!(s["judge"]["error_rate"]["class"], "worse");
    assert!(
        stdout.contains(
            "the judge found justified (rolled back, and error rate worse), expected false-rollback"
        ),
        "{stdout}"
    );
}

#[test]
fn a_malformed_file_exits_2_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(
        tmp.path(),
        "typo",
        "release: { version: \"2.0.0\" }\nexpect: { outcome: promoted, whithin: 45s }\n",
    );
    let out = gauntlet(tmp.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.yaml") && err.contains("whithin"),
        "{err}"
    );

    let short = scenario(
        tmp.path(),
        "too-short",
        "release: { version: \"2.0.0\" }\nexpect: { outcome: promoted, within: 5s }\n",
    );
    let out = gauntlet(tmp.path())
        .arg("validate")
        .arg(&short)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expect.within: 5s is shorter than the fastest promoted decision the policy allows (15s at time scale 0.25)"),
        "{err}"
    );
}

#[test]
fn a_dying_prometheus_exits_3_and_still_writes_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "prometheus-dies", HEALTHY);
    let artifacts = tmp.path().join("artifacts");
    let mut child = gauntlet(tmp.path())
        .arg("run")
        .arg(&file)
        .arg("--artifacts")
        .arg(&artifacts)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "step 1/4", Duration::from_secs(60));
    let prom = children_matching(child.id(), "--config.file=");
    assert_eq!(prom.len(), 1, "one Prometheus child: {prom:?}");
    kill(Pid::from_raw(prom[0] as i32), Signal::SIGKILL).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 3);
    let dir = artifacts.join("prometheus-dies");
    let timeline: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("timeline.json")).unwrap()).unwrap();
    assert!(
        timeline["failure"]
            .as_str()
            .unwrap()
            .contains("infrastructure: "),
        "{}",
        timeline["failure"]
    );
    assert!(dir.join("access.log").exists());
    assert!(dir.join("README.txt").exists());
}

#[test]
fn ctrl_c_stops_the_run_writes_reports_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = scenario(tmp.path(), "interrupted", HEALTHY);
    let (json, artifacts) = (tmp.path().join("r.json"), tmp.path().join("artifacts"));
    let mut child = gauntlet(tmp.path())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .arg(&json)
        .arg("--artifacts")
        .arg(&artifacts)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "step 1/4", Duration::from_secs(60));
    let children: Vec<u32> = children_matching(child.id(), "");
    assert!(
        children.len() >= 4,
        "nginx, Prometheus and pods run: {children:?}"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 3);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["scenarios"][0]["failure"], "interrupted");
    assert!(artifacts.join("interrupted/timeline.json").exists());
    let alive: Vec<_> = children
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(alive.is_empty(), "children still alive: {alive:?}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gauntlet-"))
        .collect();
    assert!(left.is_empty(), "temp folders left: {left:?}");
}

#[test]
fn on_kind_budgets_scale_to_full_speed_and_a_missing_docker_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    // Written for timeScale 0.25 (the pauses take 15 s): real controllers take the full 60 s,
    // and the 45 s budget stretches with them to 3 min.
    let fast = scenario(tmp.path(), "fast-budget", HEALTHY);
    let out = gauntlet(tmp.path())
        .args(["validate", "--backend", "kind"])
        .arg(&fast)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "expects promoted within 3m (45s at timeScale 0.25); fastest possible: promoted 60.0s"
        ),
        "{text}"
    );
    // A budget too short at its own time scale is too short at every other.
    let short = scenario(
        tmp.path(),
        "short-budget",
        "release: { version: \"2.0.0\" }\nexpect: { outcome: promoted, within: 10s }\n",
    );
    let out = gauntlet(tmp.path())
        .args(["run", "--backend", "kind"])
        .arg(&short)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expect.within: 40s (10s at timeScale 0.25) is shorter than the fastest promoted decision the policy allows (1m at time scale 1)"),
        "{err}"
    );

    if gauntlet::cluster::kind::unavailable().is_none() {
        eprintln!("skipped the Docker half: Docker and kind are usable here");
        return;
    }
    let out = gauntlet(tmp.path())
        .args(["run", "--backend", "kind"])
        .arg(&fast)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Docker"), "{err}");
}
