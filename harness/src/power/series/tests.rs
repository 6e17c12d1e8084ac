//! The writer's output read back: OpenMetrics lines with the local stack's names and labels,
//! counters that follow the controller's weights, and promtool accepting the text.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::cluster::Services;
use crate::power::model::Faults;
use crate::power::platform::{Change, RevisionInfo};

fn identity() -> Identity {
    Identity {
        namespace: "power-0-0".into(),
        ingress: "sample-app".into(),
        service: "sample-app-stable".into(),
        canary_upstream: "power-0-0-sample-app-canary-80".into(),
        path: "/".into(),
    }
}

fn info(faults: Faults) -> RevisionInfo {
    RevisionInfo {
        workload: "sample-app".into(),
        container: "sample-app".into(),
        labels: BTreeMap::from([("app".to_string(), "sample-app".to_string())]),
        faults,
        memory_limit: Some(64 << 20),
        min_ready: Duration::ZERO,
    }
}

fn ev(at: f64, change: Change) -> Event {
    Event { at, change }
}

/// Stable `s` serving from 0; canary `c` (all requests failing) from 0 at `weight` from 2 s.
fn events(weight: f64) -> Vec<Event> {
    let s = RevisionHash("s".into());
    let c = RevisionHash("c".into());
    let failing = Faults {
        error_share: 1.0,
        error_status: 500,
        ..Faults::default()
    };
    vec![
        ev(0.0, Change::Revision(s.clone(), info(Faults::default()))),
        ev(0.0, Change::Scale(s.clone(), 2)),
        ev(0.0, Change::Revision(c.clone(), info(failing))),
        ev(0.0, Change::Scale(c.clone(), 1)),
        ev(
            0.0,
            Change::Services(Services {
                stable: s,
                canary: Some(c),
            }),
        ),
        ev(2.0, Change::Weight(weight)),
    ]
}

/// One parsed sample: name, labels, value, timestamp.
type Sample = (String, BTreeMap<String, String>, f64, i64);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, rest) = l.rsplit_once('}').expect("a label set");
            let (name, labels) = series.split_once('{').expect("a name");
            let labels = labels
                .split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            let mut f = rest.split_whitespace();
            let value = f.next().unwrap().parse().unwrap();
            let ts = f.next().unwrap().parse().unwrap();
            (name.to_string(), labels, value, ts)
        })
        .collect()
}

fn write(weight: f64, until: u64, wanted: &Wanted) -> String {
    let mut w = RolloutSeries::new(identity(), 7, 1, 50.0, LatencyModel::default());
    let mut out = String::new();
    w.write_until(events(weight), until, 1000, wanted, &mut out);
    assert_eq!(w.written(), until);
    out
}

fn requests(samples: &[Sample], canary: bool, status: &str, ts: i64) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _, t)| {
            n == "nginx_ingress_controller_requests"
                && *t == ts
                && l["status"] == status
                && (l["canary"].is_empty() != canary)
        })
        .map(|s| s.2)
        .sum()
}

#[test]
fn the_canarys_share_follows_the_weight_it_was_given() {
    let samples = parse(&write(40.0, 60, &Wanted::everything()));
    // Before the weight, nothing reached the canary: its series do not exist yet.
    assert_eq!(requests(&samples, true, "500", 1002), 0.0);
    let canary = requests(&samples, true, "500", 1060);
    let stable = requests(&samples, false, "200", 1060);
    assert_eq!(
        requests(&samples, true, "200", 1060),
        0.0,
        "all canary answers fail"
    );
    // 58 s at 40 % of 50/s: 1160 expected on the canary, ~5 standard deviations of slack.
    assert!((canary - 1160.0).abs() < 200.0, "canary {canary}");
    assert!(stable > 1500.0, "stable {stable}");
    // The labels are ingress-nginx's, in the rollout's own namespace.
    let (_, l, _, _) = samples
        .iter()
        .find(|(n, l, _, _)| n == "nginx_ingress_controller_requests" && !l["canary"].is_empty())
        .unwrap();
    assert_eq!(l["namespace"], "power-0-0");
    assert_eq!(l["ingress"], "sample-app");
    assert_eq!(l["canary"], "power-0-0-sample-app-canary-80");
    assert_eq!(l["path"], "/");
    // Counters never go down.
    let mut last = BTreeMap::new();
    for (n, l, v, _) in &samples {
        let key = format!("{n}{l:?}");
        if let Some(prev) = last.insert(key, *v) {
            assert!(*v >= prev || n.contains("memory"), "{n} {l:?} went down");
        }
    }
}

#[test]
fn pods_and_the_apps_own_histogram_carry_their_labels() {
    let samples = parse(&write(50.0, 10, &Wanted::everything()));
    let pods: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|(n, ..)| n == "container_memory_working_set_bytes")
        .map(|(_, l, ..)| l["pod"].as_str())
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(
        pods.iter()
            .all(|p| p.starts_with("sample-app-s-") || p.starts_with("sample-app-c-"))
    );
    let bucket = samples
        .iter()
        .find(|(n, l, ..)| n == "http_request_duration_seconds_bucket" && l["le"] == "+Inf")
        .unwrap();
    assert_eq!(bucket.1["namespace"], "power-0-0");
    assert_eq!(bucket.1["app"], "sample-app");
    assert_eq!(bucket.1["container"], "sample-app");
    assert!(samples.iter().any(
        |(n, l, v, _)| n == "kube_pod_container_status_restarts_total"
            && l["container"] == "sample-app"
            && *v == 0.0
    ));
}

#[test]
fn only_the_names_the_queries_spell_are_written() {
    let wanted = Wanted::from_queries([
        r#"sum(rate(nginx_ingress_controller_requests{namespace="x",canary!=""}[30s]))"#,
        r#"max(container_memory_working_set_bytes{namespace="x"})"#,
    ]);
    assert!(wanted.has("nginx_ingress_controller_requests"));
    assert!(!wanted.has("http_request_duration_seconds_bucket"));
    let names: std::collections::BTreeSet<String> = parse(&write(50.0, 5, &wanted))
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(
        names,
        [
            "container_memory_working_set_bytes",
            "nginx_ingress_controller_requests"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert!(Wanted::from_queries([r#"{__name__=~"x.*"}"#]).has("anything"));
}

#[test]
fn writing_in_two_rounds_gives_the_same_samples_as_in_one() {
    let wanted = Wanted::everything();
    let whole = write(30.0, 20, &wanted);
    let mut w = RolloutSeries::new(identity(), 7, 1, 50.0, LatencyModel::default());
    let all = events(30.0);
    let mut parts = String::new();
    w.write_until(all[..5].to_vec(), 1, 1000, &wanted, &mut parts);
    assert_eq!(w.cursor(), 5);
    w.write_until(all[5..].to_vec(), 20, 1000, &wanted, &mut parts);
    assert_eq!(whole, parts);
}

/// promtool, where installed (CI installs it: .ci/deps), turns the text into a block.
#[test]
fn promtool_accepts_the_text() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
    else {
        eprintln!("promtool is not installed; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.om");
    std::fs::write(&input, write(20.0, 30, &Wanted::everything()) + "# EOF\n").unwrap();
    let out = std::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(dir.path().join("blocks"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(crate::power::tsdb::has_block(&dir.path().join("blocks")));
}
