//! The result of a run, shaped as the JSON report (`--json`, documented in
//! docs/report.md). Every reporter (terminal, JSON, JUnit, artifacts, HTML) renders these
//! types; none looks at the stack or the controller. They read back from JSON too, so that a
//! page can be drawn later from the report CI kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::judge::Judgement;
use crate::timeline::Event;

/// The version of the JSON report's shape. 1 had no `schema_version` key; 2 added it, the
/// per-second `series` and `expected.fastest_s`. Bumped when a key changes meaning or goes
/// away, so that a reader can refuse what it would misread.
pub const SCHEMA_VERSION: u32 = 2;

/// A whole `gauntlet run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`] when written; a report without the key is of version 1.
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// gauntlet's version.
    pub version: String,
    pub backend: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub scenarios: Vec<ScenarioReport>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    /// The scenario file, as given.
    pub file: String,
    /// `argo` or `flagger`.
    pub controller: String,
    pub passed: bool,
    /// Every broken expectation, with the numbers; `None` when passed.
    pub failure: Option<String>,
    pub expected: Expected,
    /// `promoted`, `rolled-back`, `paused`; `None` when no decision came.
    pub outcome: Option<String>,
    /// From the release to the controller's decision, in seconds of wall time.
    pub decision_s: Option<f64>,
    /// The whole scenario, provisioning included.
    pub elapsed_s: f64,
    pub client: ClientReport,
    pub timeline: Vec<Event>,
    /// The run second by second, for plots; built from `timeline` when the scenario ends.
    /// Absent from reports of schema version 1 (then rebuilt from their timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
    /// Was the decision justified by the data: canary against stable over the canary's
    /// exposure (`crate::judge`). `None` when the run did not get to a release (an
    /// infrastructure failure, Ctrl-C before it) or the report predates the judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judgement>,
}

fn schema_v1() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expected {
    pub outcome: String,
    /// The budget of this run, at `time_scale`.
    pub within_s: f64,
    /// A share, 0..=1.
    pub client_error_max: f64,
    /// The time scale of this run (1 on a cluster).
    pub time_scale: f64,
    /// The budget as the file states it, when the file was written for another time scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<WrittenBudget>,
    /// The earliest the policy can reach `outcome` at this time scale (its steps, pauses and
    /// analysis intervals at their shortest); `None` when it never can, or when unknown.
    #[serde(default)]
    pub fastest_s: Option<f64>,
}

/// `expect.within` at the `timeScale` it was written for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrittenBudget {
    pub within_s: f64,
    pub time_scale: f64,
}

/// What the load generator's users saw from the release to the decision (or to the end of the
/// run when no decision came).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    pub requests: u64,
    /// 5xx answers and requests without an answer.
    pub errors: u64,
    pub error_rate: f64,
    /// `null` in JSON when nothing was answered.
    #[serde(deserialize_with = "nan_when_null")]
    pub p95_ms: f64,
    pub by_version: BTreeMap<String, VersionCount>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionCount {
    pub requests: u64,
    pub errors: u64,
}

/// `write_json` turns a NaN into `null`; reading it back restores the NaN.
fn nan_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One scenario second by second (docs/report.md): what the load generator
/// saw per version, the canary weight the router applied, every analysis measurement with what
/// it was judged against, and the moments worth a vertical line. Times are seconds since the
/// release, negative during the warm-up, on the timeline's clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The version released, when the timeline names it; the others are the baseline's.
    #[serde(default)]
    pub release_version: Option<String>,
    /// One entry per load window (one second, shorter at the release and at the end).
    pub traffic: Vec<TrafficPoint>,
    /// The canary's share of traffic in percent, each time the router changed it.
    pub weight: Vec<WeightPoint>,
    pub measurements: Vec<MeasurementPoint>,
    pub markers: Vec<Marker>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// Start of the window.
    pub t_s: f64,
    pub dur_s: f64,
    pub by_version: BTreeMap<String, VersionSecond>,
}

/// One version in one load window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionSecond {
    pub requests: u64,
    /// 5xx answers and requests without an answer.
    pub errors: u64,
    /// `None` when nothing was answered.
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightPoint {
    pub t_s: f64,
    pub weight: f64,
}

/// One analysis measurement as the controller judged it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementPoint {
    pub t_s: f64,
    pub metric: String,
    /// The AnalysisRun (Argo Rollouts); `None` for Flagger's checks.
    #[serde(default)]
    pub run: Option<String>,
    /// `None` when the query gave no number (an error, no values, a vector).
    pub value: Option<f64>,
    /// Argo Rollouts' measurement phase (`Successful`, `Failed`, `Inconclusive`, `Error`);
    /// Flagger's checks read `Successful`, `Failed` or `Error` the same way.
    pub phase: String,
    /// What the value was judged against, in the policy's words: Argo Rollouts' conditions
    /// (`success: ...; failure: ...`), Flagger's threshold range (`min 99`, `max 500`).
    #[serde(default)]
    pub condition: Option<String>,
    /// The values the condition allows, where it reduces to simple bounds (the threshold
    /// lines of the plot); `None` when it does not.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// The measurement's own words (an error, no values found).
    #[serde(default)]
    pub message: Option<String>,
}

/// A moment that every plot of the scenario marks with a vertical line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub t_s: f64,
    pub kind: MarkerKind,
    /// One line for people.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkerKind {
    Release,
    /// The controller completed a step or moved the weight.
    Step,
    /// A scenario action (promote, abort, retry, a gate).
    Action,
    PodReady,
    PodRestart,
    OomKilled,
    /// The controller's decision (`decision_s`).
    Decision,
    /// Where the budget ran out (`expected.within_s`).
    BudgetEnd,
    /// The policy's fastest possible decision (`expected.fastest_s`).
    Fastest,
}
