//! Scenarios: what a team asserts about its rollout policy. One model, built from a YAML file
//! ([`file`]) or in Rust with the builder methods below; both go through the same checks
//! ([`Scenario::check`], [`budget`]).

pub mod budget;
pub mod discover;
pub mod file;
pub mod races;
pub mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::controller::argo::Decision;
use crate::judge::Finding;

/// What the controller decides: `promoted`, `rolled-back` (an abort, a failed analysis or a
/// missed deadline) or `paused` (waiting for a person).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    Paused,
}

impl From<Decision> for Outcome {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Promoted => Outcome::Promoted,
            Decision::RolledBack => Outcome::RolledBack,
            Decision::Paused => Outcome::Paused,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled-back",
            Outcome::Paused => "paused",
        })
    }
}

/// A fault the release carries; each becomes the sample app's `FAULT_*` environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A share (0..=1) of requests answered with `status`.
    Errors {
        rate: f64,
        status: u16,
    },
    Latency {
        delay: Duration,
        jitter: Duration,
    },
    /// Bytes per second of resident memory that is allocated and never freed.
    MemoryLeak {
        bytes_per_sec: u64,
    },
    /// The process exits with a non-zero code this long after it starts.
    Crash {
        after: Duration,
    },
    /// `/readyz` never answers 200.
    Unready,
}

impl Fault {
    pub fn errors(rate: f64, status: u16) -> Fault {
        Fault::Errors { rate, status }
    }

    /// The sample app's environment for this fault (fixtures/sample-app/README.md).
    pub fn env(&self) -> Vec<(String, String)> {
        let ms = |d: &Duration| format!("{}ms", d.as_millis());
        let kv = |k: &str, v: String| (k.to_string(), v);
        match self {
            Fault::Errors { rate, status } => vec![
                kv("FAULT_ERROR_RATE", rate.to_string()),
                kv("FAULT_ERROR_STATUS", status.to_string()),
            ],
            Fault::Latency { delay, jitter } => vec![
                kv("FAULT_LATENCY", ms(delay)),
                kv("FAULT_LATENCY_JITTER", ms(jitter)),
            ],
            Fault::MemoryLeak { bytes_per_sec } => {
                vec![kv("FAULT_LEAK_RATE", bytes_per_sec.to_string())]
            }
            Fault::Crash { after } => vec![kv("FAULT_CRASH_AFTER", ms(after))],
            Fault::Unready => vec![kv("FAULT_UNREADY", "true".into())],
        }
    }
}

/// What a person (or a pipeline) does to a rollout while it runs: the plugin's operations on
/// Argo, the loadtester's gates on Flagger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    /// Flagger: open the confirm gate (`/gate/open`), letting a confirm-* hook pass.
    OpenGate,
    /// Flagger: close the confirm gate again.
    CloseGate,
    /// Flagger: open the rollback gate (`/rollback/open`): the rollback hook aborts the canary.
    Rollback,
}

impl Action {
    pub const ALL: [(&'static str, Action); 7] = [
        ("promote", Action::Promote),
        ("promote-full", Action::PromoteFull),
        ("abort", Action::Abort),
        ("retry", Action::Retry),
        ("open-gate", Action::OpenGate),
        ("close-gate", Action::CloseGate),
        ("rollback", Action::Rollback),
    ];

    pub fn name(self) -> &'static str {
        Action::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether the controller has this operation at all.
    pub fn applies_to(self, controller: &str) -> bool {
        match self {
            Action::Promote | Action::PromoteFull | Action::Abort | Action::Retry => {
                controller == "argo"
            }
            Action::OpenGate | Action::CloseGate | Action::Rollback => controller == "flagger",
        }
    }
}

/// An action at a time after the release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheduled {
    pub at: Duration,
    pub action: Action,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The scenario file; for a scenario built in Rust, the target folder.
    pub file: PathBuf,
    /// The folder of the user's manifests.
    pub target: PathBuf,
    pub baseline_version: String,
    pub release_version: String,
    pub faults: Vec<Fault>,
    /// Requests per second through the ingress.
    pub rate: f64,
    pub connections: u32,
    pub outcome: Outcome,
    /// From the release to the controller's decision, at [`Scenario::time_scale`] (see
    /// [`Scenario::at_time_scale`]).
    pub within: Duration,
    /// Largest share of failed requests (5xx or no answer) from the release to the decision.
    pub client_error_max: f64,
    /// The factor every duration of the policy is multiplied by; `None` is 1.
    pub time_scale: Option<f64>,
    /// The `timeScale` the scenario was written for, when this run uses another
    /// ([`Scenario::at_time_scale`]); reports show the budget on both clocks.
    pub written_at: Option<f64>,
    pub tags: Vec<String>,
    /// In time order.
    pub actions: Vec<Scheduled>,
    /// The canary weights the router must go through, in order, between the release and the
    /// decision (0 and repeats left out), e.g. Flagger's `stepWeights`.
    pub weights: Option<Vec<u32>>,
    /// The statistical judge's finding the decision must get (`crate::judge`); `None`: the
    /// finding is reported, not checked.
    pub judge: Option<Finding>,
}

/// Defaults a scenario file may leave out.
pub const DEFAULT_CONNECTIONS: u32 = 8;
pub const DEFAULT_CLIENT_ERROR_MAX: f64 = 0.05;

impl Scenario {
    /// A scenario against `target` (builder entry point; the same model as a scenario file).
    pub fn target(target: impl AsRef<Path>) -> Scenario {
        let target = target.as_ref().to_path_buf();
        Scenario {
            name: target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
            description: String::new(),
            file: target.clone(),
            target,
            baseline_version: "1.0.0".into(),
            release_version: "2.0.0".into(),
            faults: Vec::new(),
            rate: 20.0,
            connections: DEFAULT_CONNECTIONS,
            outcome: Outcome::Promoted,
            within: Duration::from_secs(300),
            client_error_max: DEFAULT_CLIENT_ERROR_MAX,
            time_scale: None,
            written_at: None,
            tags: Vec::new(),
            actions: Vec::new(),
            weights: None,
            judge: None,
        }
    }

    /// Schedules `action` at `at` after the release.
    pub fn action(mut self, at: Duration, action: Action) -> Self {
        self.actions.push(Scheduled { at, action });
        self.actions.sort_by_key(|a| a.at);
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn release(mut self, version: &str) -> Self {
        self.release_version = version.into();
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    pub fn expect(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn within(mut self, within: Duration) -> Self {
        self.within = within;
        self
    }

    /// The largest share (0..=1) of failed requests allowed.
    pub fn client_errors(mut self, max: f64) -> Self {
        self.client_error_max = max;
        self
    }

    /// The statistical judge's finding the decision must get (`expect.judge`).
    pub fn judged(mut self, finding: Finding) -> Self {
        self.judge = Some(finding);
        self
    }

    pub fn time_scale(mut self, factor: f64) -> Self {
        self.time_scale = Some(factor);
        self
    }

    /// The scenario run at time scale `factor` instead of its own. Its times — `within` and
    /// each action's `at` — are stated at its own `timeScale` (1 when absent) and scale with
    /// the policy: a budget of 45 s written for a Rollout at 0.25 is 3 min at full speed. This
    /// is what lets one file run on the local backend at any `--time-scale` and on a cluster,
    /// where the real controller keeps the policy's own clock. Slack written for a loaded
    /// machine scales too, which on a cluster is slack for image pulls and scrape intervals.
    ///
    /// A factor that is not a valid time scale is kept as is, for the budget check to refuse.
    pub fn at_time_scale(mut self, factor: f64) -> Scenario {
        let written = self.time_scale.unwrap_or(1.0);
        let valid = |f: f64| f.is_finite() && f > 0.0;
        if !valid(factor) || !valid(written) || factor == written {
            self.time_scale = Some(factor);
            return self;
        }
        let ratio = factor / written;
        let scale =
            |d: Duration| Duration::from_millis((d.as_secs_f64() * ratio * 1e3).round() as u64);
        self.within = scale(self.within);
        for a in &mut self.actions {
            a.at = scale(a.at);
        }
        self.written_at = Some(self.written_at.unwrap_or(written));
        self.time_scale = Some(factor);
        self
    }

    /// `within` as the scenario states it, with its time scale when this run uses another:
    /// `"3m"`, or `"3m (45s at timeScale 0.25)"`.
    pub fn budget_text(&self) -> String {
        // Rescaled budgets land on odd milliseconds; above 10 s they are of no interest.
        let show = |d: Duration| {
            let d = if d >= Duration::from_secs(10) {
                Duration::from_secs(d.as_secs_f64().round() as u64)
            } else {
                d
            };
            humantime::format_duration(d).to_string()
        };
        match self.written_at {
            Some(w) => {
                let f = self.time_scale.unwrap_or(1.0);
                let written = Duration::from_secs_f64(self.within.as_secs_f64() * w / f);
                format!("{} ({} at timeScale {w})", show(self.within), show(written))
            }
            None => show(self.within),
        }
    }

    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = per_second;
        self
    }

    pub fn is_nightly(&self) -> bool {
        self.tags.iter().any(|t| t == "nightly")
    }

    /// The release's environment: its version and every fault.
    pub fn release_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("APP_VERSION".to_string(), self.release_version.clone())];
        env.extend(self.faults.iter().flat_map(Fault::env));
        env
    }

    /// The checks that need nothing but the scenario itself (names, ranges); the policy checks
    /// (target, budget) are [`budget::check`].
    pub fn check(&self) -> Result<(), Vec<ScenarioError>> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, reason: String| {
            errors.push(ScenarioError::new(&self.file, key, reason));
        };
        if self.name.is_empty()
            || self.name.len() > 100
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            bad(
                "name",
                format!(
                    "{:?} must be 1 to 100 of A-Z a-z 0-9 . _ - (it becomes a test and folder name)",
                    self.name
                ),
            );
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 10_000.0) {
            bad(
                "load.rate",
                format!("{} must be above 0 and at most 10000/s", self.rate),
            );
        }
        if self.connections == 0 || self.connections > 1000 {
            bad(
                "load.connections",
                format!("{} must be 1 to 1000", self.connections),
            );
        }
        if !(0.0..=1.0).contains(&self.client_error_max) {
            bad(
                "expect.clientErrors.max",
                format!(
                    "{} is not a share between 0 and 100%",
                    self.client_error_max
                ),
            );
        }
        if self.within.is_zero() {
            bad("expect.within", "must be longer than 0s".into());
        }
        if let Some(f) = self.time_scale
            && let Err(e) = crate::controller::timescale::TimeScale::new(f)
        {
            bad("timeScale", e);
        }
        for fault in &self.faults {
            match fault {
                Fault::Errors { rate, status } => {
                    if !(0.0..=1.0).contains(rate) {
                        bad(
                            "release.faults.errors.rate",
                            format!("{rate} is not a share between 0 and 100%"),
                        );
                    }
                    if !(200..=599).contains(status) {
                        bad(
                            "release.faults.errors.status",
                            format!("{status} is not an HTTP status from 200 to 599"),
                        );
                    }
                }
                Fault::MemoryLeak { bytes_per_sec } if *bytes_per_sec == 0 => bad(
                    "release.faults.memoryLeak.rate",
                    "must be above 0 (e.g. 8MiB/s)".into(),
                ),
                _ => {}
            }
        }
        if self.release_version == self.baseline_version && self.faults.is_empty() {
            bad(
                "release.version",
                format!(
                    "{:?} equals baseline.version and there are no faults: the release would not change the pod template",
                    self.release_version
                ),
            );
        }
        if let Some(want) = self.judge
            && let Err(e) =
                crate::judge::Versions::new(&self.baseline_version, &self.release_version)
        {
            bad(
                "expect.judge",
                format!(
                    "{want} cannot be checked: {e}; the judge tells the canary from the stable by version, so give release.version a name of its own"
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A problem with a scenario: the file, the key and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl ScenarioError {
    pub fn new(file: &Path, key: &str, reason: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)?;
            match schema::doc_link(&self.key) {
                Some(link) => write!(f, " ({link})"),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_become_the_sample_apps_environment() {
        let s = Scenario::target("x")
            .fault(Fault::errors(0.3, 500))
            .fault(Fault::Latency {
                delay: Duration::from_millis(800),
                jitter: Duration::ZERO,
            });
        let env = s.release_env();
        assert!(env.contains(&("APP_VERSION".into(), "2.0.0".into())));
        assert!(env.contains(&("FAULT_ERROR_RATE".into(), "0.3".into())));
        assert!(env.contains(&("FAULT_ERROR_STATUS".into(), "500".into())));
        assert!(env.contains(&("FAULT_LATENCY".into(), "800ms".into())));
    }

    #[test]
    fn bad_values_name_their_key() {
        let s = Scenario::target("x")
            .named("bad name!")
            .rate(0.0)
            .fault(Fault::errors(1.5, 700));
        let keys: Vec<String> = s.check().unwrap_err().into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "name",
                "load.rate",
                "release.faults.errors.rate",
                "release.faults.errors.status"
            ]
        );
    }
}
