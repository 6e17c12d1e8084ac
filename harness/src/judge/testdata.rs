//! Real timelines for tests: trimmed copies of the `timeline.json` that `gauntlet run
//! --artifacts` wrote for the suites' scenarios on the local backend, kept under
//! `harness/tests/data/judge/` (only the load windows, the release event and, in the newer
//! ones, the pod events), read here for the judge's tests and the reporters'.

use serde_json::Value;

use super::Decision;
use crate::timeline::Event;

/// The healthy release rolled back by a p95 threshold of 0.1 ms at 80 requests/s.
pub(crate) const OVERTIGHT_80: &str =
    include_str!("../../tests/data/judge/argo-healthy-overtight-80.json");

pub(crate) struct Run {
    pub outcome: Option<Decision>,
    pub decision_s: Option<f64>,
    pub timeline: Vec<Event>,
}

pub(crate) fn run(json: &str) -> Run {
    let v: Value = serde_json::from_str(json).expect("fixture JSON");
    let timeline = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| Event {
            t_s: e["t_s"].as_f64().expect("t_s"),
            source: serde_json::from_value(e["source"].clone()).expect("source"),
            kind: e["kind"].as_str().unwrap_or_default().to_string(),
            message: String::new(),
            data: e["data"].clone(),
            at: tokio::time::Instant::now(),
        })
        .collect();
    Run {
        outcome: v["outcome"].as_str().map(|o| o.parse().expect("outcome")),
        decision_s: v["decision_s"].as_f64(),
        timeline,
    }
}
