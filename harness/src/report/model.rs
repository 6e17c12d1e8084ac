//! The result of a run, shaped as the JSON report (`--json`). Every reporter (terminal,
//! JSON, JUnit, artifacts) renders these types; none looks at the stack or the controller.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::timeline::Event;

/// A whole `gauntlet run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// gauntlet's version.
    pub version: String,
    pub backend: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub scenarios: Vec<ScenarioReport>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub outcome: String,
    /// The budget of this run, at `time_scale`.
    pub within_s: f64,
    /// A share, 0..=1.
    pub client_error_max: f64,
    /// The time scale of this run (1 on a cluster).
    pub time_scale: f64,
    /// The budget as the file states it, when the file was written for another time scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<WrittenBudget>,
}

/// `expect.within` at the `timeScale` it was written for.
#[derive(Debug, Clone, Serialize)]
pub struct WrittenBudget {
    pub within_s: f64,
    pub time_scale: f64,
}

/// What the load generator's users saw from the release to the decision (or to the end of the
/// run when no decision came).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientReport {
    pub requests: u64,
    /// 5xx answers and requests without an answer.
    pub errors: u64,
    pub error_rate: f64,
    pub p95_ms: f64,
    pub by_version: BTreeMap<String, VersionCount>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionCount {
    pub requests: u64,
    pub errors: u64,
}
