//! Pod health: did the release's containers end on their own while the stable's kept running?
//!
//! Errors and latency are what users see; a release can also be condemned before users see
//! anything, by a container that crashes or is OOM killed and is restarted behind a
//! load balancer that routes around it (the suites' memory leak and crash loop). Without this
//! metric the judge would call such a rollback false.
//!
//! It is not a statistical test: a server process that exits or is killed for memory is a
//! defect, not noise, and one such end is a regression whatever its rate. Counting rates
//! would need hours of stable pod time to make one canary crash significant (one end in one
//! canary pod against none in two stable pods over the same seconds has an exact p of 1/3).
//! So the class is decided by the ends themselves: `worse` when the release's pods ended on
//! their own and the stable's did not, `better` the other way round, `no-difference` when both
//! or neither did. A release whose fault needs longer than the exposure to show is simply not
//! caught here, as it is not by the controller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Class;
use crate::timeline::{Event, Source};

/// The kinds of pod event that mean a container ended without being asked to: the local
/// stack's `pod-terminated` (the process exited or was OOM killed; a stop gauntlet asked for
/// emits nothing), a container that finished for good under its restart policy, and the
/// kubelet's `BackOff` (restarting a failed container) and OOM events on a cluster.
const ENDS: [&str; 5] = [
    "pod-terminated",
    "pod-container-finished",
    "BackOff",
    "OOMKilling",
    "oom-killed",
];

/// One version's pods during the exposure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pods {
    /// Containers that ended on their own (each exit, kill or back-off counts once).
    pub ends: u64,
    /// The pods with at least one such end.
    pub failing: Vec<String>,
}

/// The pod-health comparison of one exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodHealth {
    #[serde(flatten)]
    pub class: Class,
    pub canary: Pods,
    pub stable: Pods,
    /// One line for people.
    pub summary: String,
}

/// Compares the pod ends of the release (`hash`: its pod-template hash, when the release event
/// gave one; otherwise its pods are those first seen after the release) with the stable's,
/// from the release to `end_s` seconds after it.
pub fn compare(events: &[Event], hash: Option<&str>, from_s: f64, end_s: f64) -> PodHealth {
    let mut first_seen: BTreeMap<&str, f64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.source == Source::Pod) {
        if let Some(pod) = pod_name(e) {
            let t = first_seen.entry(pod).or_insert(e.t_s);
            *t = t.min(e.t_s);
        }
    }
    let infix = hash.map(|h| format!("-{h}-"));
    let is_release = |pod: &str| match &infix {
        Some(infix) => pod.contains(infix.as_str()),
        None => first_seen.get(pod).is_some_and(|t| *t >= 0.0),
    };
    let mut ends: [BTreeMap<&str, u64>; 2] = Default::default();
    for e in events
        .iter()
        .filter(|e| e.source == Source::Pod && e.t_s >= from_s && e.t_s < end_s)
    {
        let Some(pod) = pod_name(e) else { continue };
        if ENDS.contains(&e.kind.as_str()) {
            *ends[usize::from(!is_release(pod))].entry(pod).or_default() += 1;
        }
    }
    let pods = |i: usize| Pods {
        ends: ends[i].values().sum(),
        failing: ends[i].keys().map(|p| p.to_string()).collect(),
    };
    let (canary, stable) = (pods(0), pods(1));
    let class = match (canary.ends > 0, stable.ends > 0) {
        (true, false) => Class::Worse,
        (false, true) => Class::Better,
        _ => Class::NoDifference,
    };
    let side = |p: &Pods| match p.ends {
        0 => "no container ended".to_string(),
        n => format!(
            "{n} container end(s) in {} pod(s) ({})",
            p.failing.len(),
            p.failing.join(", ")
        ),
    };
    let summary = format!(
        "pod health: {class}: canary {}, stable {}",
        side(&canary),
        side(&stable)
    );
    PodHealth {
        class,
        canary,
        stable,
        summary,
    }
}

/// The pod an event is about: `data.pod` (the local stack, and a cluster event's involved Pod).
fn pod_name(e: &Event) -> Option<&str> {
    e.data.get("pod").and_then(Value::as_str)
}

/// The release's pod-template hash, when the timeline's release event names it (the local
/// backend's does; a cluster's controller picks its own).
pub fn release_hash(events: &[Event]) -> Option<&str> {
    events
        .iter()
        .find(|e| e.source == Source::Harness && e.kind == "release")
        .and_then(|e| e.data.get("hash"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_s: f64, kind: &str, pod: &str) -> Event {
        Event {
            t_s,
            source: Source::Pod,
            kind: kind.into(),
            message: String::new(),
            data: serde_json::json!({ "pod": pod }),
            at: tokio::time::Instant::now(),
        }
    }

    /// The suites' memory leak: the canary OOM killed 4 s after the release and restarted,
    /// the two stable pods untouched.
    fn memory_leak() -> Vec<Event> {
        vec![
            ev(-3.5, "pod-created", "app-aaa-1"),
            ev(-3.5, "pod-created", "app-aaa-2"),
            ev(-3.4, "pod-ready", "app-aaa-1"),
            ev(-3.4, "pod-ready", "app-aaa-2"),
            ev(0.1, "pod-created", "app-bbb-1"),
            ev(0.1, "pod-ready", "app-bbb-1"),
            ev(4.2, "pod-unready", "app-bbb-1"),
            ev(4.2, "pod-terminated", "app-bbb-1"),
            ev(14.2, "pod-restarted", "app-bbb-1"),
            ev(18.2, "pod-terminated", "app-bbb-1"),
        ]
    }

    #[test]
    fn a_canary_that_ended_on_its_own_is_worse() {
        let h = compare(&memory_leak(), Some("bbb"), 0.0, 15.9);
        assert_eq!(h.class, Class::Worse);
        assert_eq!(
            (h.canary.ends, h.canary.failing.clone()),
            (1, vec!["app-bbb-1".to_string()])
        );
        assert_eq!(h.stable, Pods::default());
        assert_eq!(
            h.summary,
            "pod health: worse: canary 1 container end(s) in 1 pod(s) (app-bbb-1), stable no container ended"
        );
        // Without the hash, the pods first seen after the release are the release's.
        assert_eq!(compare(&memory_leak(), None, 0.0, 15.9), h);
    }

    #[test]
    fn ends_outside_the_window_or_on_both_sides_do_not_condemn_the_canary() {
        // Before its first end.
        let h = compare(&memory_leak(), Some("bbb"), 0.0, 4.0);
        assert_eq!(h.class, Class::NoDifference);
        assert_eq!(h.canary.ends, 0);
        // The stable crashing too: the environment, not the release.
        let mut both = memory_leak();
        both.push(ev(5.0, "BackOff", "app-aaa-2"));
        assert_eq!(
            compare(&both, Some("bbb"), 0.0, 15.9).class,
            Class::NoDifference
        );
        // Only the stable: better.
        let stable_only = vec![
            ev(-3.0, "pod-ready", "app-aaa-1"),
            ev(2.0, "BackOff", "app-aaa-1"),
        ];
        assert_eq!(compare(&stable_only, None, 0.0, 10.0).class, Class::Better);
        // Nothing at all.
        let none = compare(&[], None, 0.0, f64::INFINITY);
        assert_eq!(none.class, Class::NoDifference);
        assert_eq!(
            none.summary,
            "pod health: no-difference: canary no container ended, stable no container ended"
        );
    }

    #[test]
    fn the_release_hash_comes_from_the_release_event() {
        let mut release = ev(0.0, "release", "");
        release.source = Source::Harness;
        release.data = serde_json::json!({"version": "2.0.0", "hash": "bbb"});
        assert_eq!(release_hash(&[release.clone()]), Some("bbb"));
        release.data = serde_json::json!({"version": "2.0.0"});
        assert_eq!(release_hash(&[release]), None);
    }
}
