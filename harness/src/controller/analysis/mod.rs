//! AnalysisRun semantics of Argo Rollouts v1.9.1 (`analysis/analysis.go`,
//! `utils/analysis/helpers.go`, `utils/evaluate/evaluate.go`), as a state machine driven by time
//! and measurement results.
//!
//! # Brief overview
//!
//! One module per stage, so a rule is found by its name: `policy` (what a run asks for),
//! `provider` (where answers come from), `judgement` (an answer against the conditions, a
//! metric against its limits), `measurement` (what the status keeps), `run` (the state
//! machine), `bounds` (how early a policy can decide).
//!
//! - [`RunPolicy`] / [`MetricPolicy`]: what the AnalysisRun asks for, already resolved (args
//!   substituted with [`render_args`], conditions parsed, `count` made effective). The controller
//!   builds them from the spec; this module never sees YAML.
//! - [`AnalysisRun`]: the status. [`AnalysisRun::due`] and [`AnalysisRun::next_due`] say when to
//!   measure, [`AnalysisRun::record`] takes a result and reassesses metric and run phase,
//!   [`AnalysisRun::terminate`] is what promotion, a skipped step or an abort do to a run.
//! - [`MetricSource`]: the only I/O, kept apart so tests script it under a paused clock;
//!   [`PromClient`] implements it as Argo's Prometheus provider does.
//! - [`decision_bounds`]: how early a policy can possibly decide, for budget checks.
//!
//! Failed, Inconclusive and Error measurements are data in the status, never Rust errors: they are
//! the outcomes the harness exists to observe.
//!
//! Time is [`tokio::time::Instant`] passed in by the caller, so the machine is deterministic and
//! runs under `#[tokio::test(start_paused = true)]`.

mod bounds;
mod judgement;
mod measurement;
mod phase;
mod policy;
mod provider;
mod run;

pub use self::bounds::{DecisionBounds, decision_bounds};
pub use self::judgement::{Judgement, format_value, judge};
pub use self::measurement::{Measurement, MetricResult, Reading};
pub use self::phase::AnalysisPhase;
pub use self::policy::{
    DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_PROMETHEUS_TIMEOUT, ERROR_RETRY_INTERVAL,
    MEASUREMENT_HISTORY_LIMIT, MetricPolicy, RunPolicy, effective_count, render_args, validate,
};
pub use self::provider::{MetricSource, measure_prometheus, metric_value_from_query};
pub use self::run::{AnalysisEvent, AnalysisRun, RunSummary};

#[cfg(test)]
mod tests;
