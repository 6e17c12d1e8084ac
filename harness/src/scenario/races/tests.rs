//! Races of the shipped suites and of variants of their targets.

use std::path::{Path, PathBuf};

use super::*;
use crate::scenario::budget::plan;
use crate::scenario::file;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn races_of(scenario: &Path, time_scale: Option<f64>) -> Vec<Race> {
    let mut s = file::load(scenario, 0).unwrap_or_else(|e| panic!("{e:?}"));
    if let Some(f) = time_scale {
        s = s.at_time_scale(f);
    }
    let p = plan(&s).unwrap_or_else(|e| panic!("{e:?}"));
    races(&s, &p)
}

/// A copy of fixture `fixture` with `edit` applied to `file`, and a scenario against it.
fn variant(
    fixture: &str,
    file: &str,
    edit: impl Fn(String) -> String,
    scenario: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("fixtures/apps").join(fixture)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    let s = dir.path().join("scenario.yaml");
    std::fs::write(
        &s,
        format!(
            "name: variant\ntarget: .\nbaseline: {{ version: \"1.0.0\" }}\n\
             load: {{ rate: 40/s, connections: 4 }}\n{scenario}"
        ),
    )
    .unwrap();
    (dir, s)
}

#[test]
fn a_5s_webhook_timeout_at_0_03_races_the_hook_response() {
    let got = races_of(&repo().join("suites/flagger/healthy-succeeded.yaml"), None);
    let hook = got
        .iter()
        .find(|r| r.part == Part::HookResponse)
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert!(hook.file.ends_with("fixtures/apps/flagger/canary.yaml"));
    assert_eq!(hook.object, "Canary/sample-app");
    assert_eq!(hook.field, "spec.analysis.webhooks[0].timeout (load-test)");
    assert_eq!(hook.written, Duration::from_secs(5));
    assert_eq!(hook.scaled, Duration::from_millis(150));
    assert_eq!(hook.unscaled, HOOK_RESPONSE_ALLOWANCE);
    let text = hook.to_string();
    for part in [
        "canary.yaml",
        "spec.analysis.webhooks[0].timeout",
        "= 5s runs as 150ms",
        "a webhook's response time = 1s (not scaled)",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    // The other Flagger races of that file: the 1.8 s interval against the 5 s query timeout
    // and the 5 s reload wait.
    let parts: Vec<Part> = got.iter().map(|r| r.part).collect();
    assert_eq!(
        parts,
        [Part::QueryTimeout, Part::ReloadWait, Part::HookResponse]
    );
}

#[test]
fn nothing_races_at_time_scale_1() {
    for s in [
        "suites/flagger/healthy-succeeded.yaml",
        "suites/flagger/gate-opened.yaml",
        "suites/argo/errors-rolled-back.yaml",
    ] {
        assert_eq!(races_of(&repo().join(s), Some(1.0)), [], "{s}");
    }
}

#[test]
fn a_deadline_shorter_than_the_readiness_delay_races_it() {
    let (_dir, s) = variant(
        "argo",
        "rollout.yaml",
        |t| {
            t.replace(
                "progressDeadlineSeconds: 60",
                "progressDeadlineSeconds: 300\n  minReadySeconds: 20",
            )
            .replace(
                "            periodSeconds: 1\n",
                "            periodSeconds: 1\n            initialDelaySeconds: 15\n",
            )
        },
        "timeScale: 0.03\nrelease: { version: \"2.0.0\" }\nexpect: { outcome: promoted, within: 60s }\n",
    );
    let got = races_of(&s, None);
    let r = got
        .iter()
        .find(|r| r.part == Part::Availability)
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(r.field, "spec.progressDeadlineSeconds");
    assert_eq!(r.scaled, Duration::from_secs(9));
    // minReadySeconds is on the policy's clock for Argo (the controller gives it to its
    // ReplicaSets): only the probe's delay is unscaled.
    assert_eq!(r.unscaled, Duration::from_secs(15));
    assert!(
        r.against
            .contains("readinessProbe.initialDelaySeconds 15s)"),
        "{}",
        r.against
    );
    assert!(r.file.ends_with("rollout.yaml"));
}

#[test]
fn a_crash_is_counted_only_after_the_back_off() {
    let (_dir, s) = variant(
        "flagger",
        "canary.yaml",
        |t| t,
        "timeScale: 0.03\nrelease: { version: \"2.0.0\", faults: { crash: { after: 5s } } }\n\
         expect: { outcome: rolled-back, within: 60s }\n",
    );
    let got = races_of(&s, None);
    let r = got
        .iter()
        .find(|r| r.part == Part::RestartBackoff)
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(r.unscaled, Duration::from_secs(15));
    assert!(r.scaled < r.unscaled);
    assert!(r.against.contains("crash.after 5s + kubelet back-off 10s"));
}

#[test]
fn argo_error_retries_race_the_scaled_steps() {
    let got = races_of(&repo().join("suites/argo/errors-rolled-back.yaml"), None);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].part, Part::ErrorRetry);
    assert_eq!(got[0].scaled, Duration::from_secs(15));
    assert_eq!(got[0].unscaled, Duration::from_secs(40));
}

#[test]
fn a_policy_that_races_on_a_cluster_too_is_not_reported() {
    // A 500 ms timeout is below the allowance at every scale: not the time scale's doing.
    let (_dir, s) = variant(
        "flagger",
        "canary.yaml",
        |t| t.replace("timeout: 5s", "timeout: 500ms"),
        "timeScale: 0.03\nrelease: { version: \"2.0.0\" }\nexpect: { outcome: promoted, within: 60s }\n",
    );
    let got = races_of(&s, None);
    assert!(
        !got.iter().any(|r| r.part == Part::HookResponse),
        "{got:#?}"
    );
}

#[test]
fn every_part_names_its_code() {
    for p in Part::ALL {
        assert!(p.code().contains(".rs"), "{p:?}");
    }
}
