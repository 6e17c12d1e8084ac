//! The policy a scenario runs against, and whether its budget can be met at all.
//!
//! From the Rollout alone, the earliest moment (after the release) each outcome can possibly be
//! reached: promotion needs every pause and inline analysis to pass; a rollback needs the first
//! analysis that can fail to fail, or the progress deadline; a pause needs an indefinite pause
//! step or an inconclusive analysis. These are lower bounds (pods start and measurements take
//! no time), so a budget below one can never pass: it is refused before anything starts, with
//! both numbers, rather than failing after minutes of load.

use std::time::Duration;

use super::{Outcome, Scenario, ScenarioError};
use crate::cluster::RevisionHash;
use crate::controller::analysis::{DecisionBounds, decision_bounds};
use crate::controller::argo::from_spec::{Emulated, from_spec};
use crate::controller::argo::runs::run_policy;
use crate::controller::argo::{Hashes, Step};
use crate::controller::timescale::TimeScale;
use crate::target::{self, Workload};

/// A checked scenario's policy.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub policy: Policy,
    pub scale: TimeScale,
    pub fastest: Fastest,
}

/// The emulated controller's policy, by controller.
#[derive(Debug, Clone)]
pub enum Policy {
    Argo(Emulated),
    Flagger(crate::controller::flagger::Emulated),
}

impl Policy {
    pub fn controller(&self) -> &'static str {
        match self {
            Policy::Argo(_) => "argo",
            Policy::Flagger(_) => "flagger",
        }
    }
}

/// The earliest each outcome can come after the release; `None`: the policy never reaches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fastest {
    pub promoted: Option<Duration>,
    pub rolled_back: Option<Duration>,
    pub paused: Option<Duration>,
}

impl Fastest {
    pub fn of(&self, outcome: Outcome) -> Option<Duration> {
        match outcome {
            Outcome::Promoted => self.promoted,
            Outcome::RolledBack => self.rolled_back,
            Outcome::Paused => self.paused,
        }
    }
}

/// Loads the scenario's target and checks its budget, at the scenario's time scale (a run at
/// another one calls [`Scenario::at_time_scale`] first).
pub fn plan(s: &Scenario) -> Result<Plan, Vec<ScenarioError>> {
    let err = |key: &str, reason: String| vec![ScenarioError::new(&s.file, key, reason)];
    let factor = s.time_scale.unwrap_or(1.0);
    let scale = TimeScale::new(factor).map_err(|e| err("timeScale", e))?;
    let manifests =
        crate::spec::load_target(&s.target).map_err(|e| err("target", e.to_string()))?;
    if manifests.controller() == Ok(crate::spec::ControllerKind::Flagger) {
        let (workload, emulated) =
            crate::controller::flagger::target::load_flagger(&s.target, scale)
                .map_err(|e| err("target", e.to_string()))?;
        let (promoted, rolled_back, paused) = crate::controller::flagger::fastest(&emulated.policy);
        let fastest = Fastest {
            promoted,
            rolled_back,
            paused,
        };
        check_budget(s, "flagger", factor, &fastest)?;
        return Ok(Plan {
            workload,
            policy: Policy::Flagger(emulated),
            scale,
            fastest,
        });
    }
    let workload =
        target::argo_workload(&s.target, manifests).map_err(|e| err("target", e.to_string()))?;
    let rollout = &workload.manifests.rollouts[0];
    let emulated = from_spec(&workload.manifests, rollout, scale).map_err(|e| err("target", e))?;
    // Placeholder hashes: budgets do not depend on them.
    let hashes = Hashes {
        stable: RevisionHash("stable".into()),
        latest: RevisionHash("latest".into()),
    };
    let mut bounds = Vec::new();
    for (i, a) in emulated.analyses.iter().enumerate() {
        let policy = run_policy(rollout, a, scale, &format!("analysis-{i}"), &hashes)
            .map_err(|e| err("target", format!("analysis {i}: {e}")))?;
        bounds.push(decision_bounds(&policy));
    }
    let fastest = fastest(&emulated, &bounds);
    check_budget(s, "argo", factor, &fastest)?;
    Ok(Plan {
        workload,
        policy: Policy::Argo(emulated),
        scale,
        fastest,
    })
}

/// The budget against the fastest decision: refused with both numbers when it cannot be met.
fn check_budget(
    s: &Scenario,
    controller: &str,
    factor: f64,
    fastest: &Fastest,
) -> Result<(), Vec<ScenarioError>> {
    let err = |key: &str, reason: String| vec![ScenarioError::new(&s.file, key, reason)];
    let wrong: Vec<ScenarioError> = s
        .actions
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.action.applies_to(controller))
        .map(|(i, a)| {
            ScenarioError::new(
                &s.file,
                &format!("actions[{i}].action"),
                format!("`{}` is not an operation of {controller}", a.action.name()),
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Err(wrong);
    }
    match fastest.of(s.outcome) {
        // Actions (a promote, an opened gate, a rollback hook) can reach what the policy
        // alone cannot.
        None if !s.actions.is_empty() => Ok(()),
        None => Err(err(
            "expect.outcome",
            format!(
                "the policy in {} can never end {}: {}",
                s.target.display(),
                s.outcome,
                never_reason(s.outcome)
            ),
        )),
        Some(min) if s.within < min => Err(err(
            "expect.within",
            format!(
                "{} is shorter than the fastest {} decision the policy allows ({} at time scale {factor}); raise the budget",
                s.budget_text(),
                s.outcome,
                humantime::format_duration(round_ms(min)),
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn never_reason(o: Outcome) -> &'static str {
    match o {
        Outcome::Promoted => {
            "an indefinite pause or an analysis step that never completes stands in the way"
        }
        Outcome::RolledBack => "no analysis can fail and progressDeadlineAbort is off",
        Outcome::Paused => "it has no indefinite pause and no analysis that can be inconclusive",
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Walks the steps, accumulating the least time each can take.
pub fn fastest(e: &Emulated, bounds: &[DecisionBounds]) -> Fastest {
    let p = &e.policy;
    let mut out = Fastest::default();
    let mut t = Some(Duration::ZERO);
    let background = p
        .background
        .as_ref()
        .and_then(|b| bounds.get(b.analysis).map(|bb| (b.starting_step, *bb)));
    let mut background_started = false;
    let start_background = |at: Duration, out: &mut Fastest, bg: &DecisionBounds| {
        out.rolled_back = min_opt(out.rolled_back, bg.earliest_abort().map(|d| at + d));
        out.paused = min_opt(out.paused, bg.inconclusive.map(|d| at + d));
    };
    for (i, step) in p.steps.iter().enumerate() {
        let Some(now) = t else { break };
        if let Some((start, bg)) = &background
            && !background_started
            && i as u32 >= *start
        {
            background_started = true;
            start_background(now, &mut out, bg);
        }
        t = match step {
            Step::SetWeight(_) | Step::SetCanaryScale(_) => Some(now),
            Step::Pause(Some(d)) => Some(now + *d),
            Step::Pause(None) => {
                out.paused = min_opt(out.paused, Some(now));
                None
            }
            Step::Analysis(a) => {
                let b = bounds.get(*a).copied().unwrap_or_default();
                out.rolled_back = min_opt(out.rolled_back, b.earliest_abort().map(|d| now + d));
                out.paused = min_opt(out.paused, b.inconclusive.map(|d| now + d));
                b.successful.map(|d| now + d)
            }
        };
    }
    if let Some(now) = t
        && let Some((_, bg)) = &background
        && !background_started
    {
        // startingStep past the last step: the run starts when all steps are done, just
        // before promotion, and promotion terminates it.
        start_background(now, &mut out, bg);
    }
    out.promoted = t;
    if p.progress_deadline_abort {
        out.rolled_back = min_opt(out.rolled_back, Some(p.progress_deadline));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/apps")
            .join(name)
    }

    #[test]
    fn the_fixture_promotes_after_its_pauses_and_can_roll_back_at_once() {
        let s = Scenario::target(fixture("argo"))
            .expect(Outcome::Promoted)
            .within(Duration::from_secs(60));
        let plan = plan(&s).unwrap();
        assert_eq!(plan.fastest.promoted, Some(Duration::from_secs(60)));
        // Background from step 1 (t=0): the memory and restarts metrics have failureLimit 0,
        // so their first measurement, at once, can fail.
        assert_eq!(plan.fastest.rolled_back, Some(Duration::ZERO));
        // No indefinite pause, no metric with both conditions.
        assert_eq!(plan.fastest.paused, None);
    }

    #[test]
    fn an_impossible_budget_shows_both_numbers() {
        let s = Scenario::target(fixture("argo"))
            .expect(Outcome::Promoted)
            .within(Duration::from_secs(30));
        let e = plan(&s).unwrap_err();
        assert_eq!(e[0].key, "expect.within");
        assert!(e[0].reason.contains("30s is shorter than the fastest promoted decision the policy allows (1m at time scale 1); raise the budget"), "{}", e[0].reason);
        // Run faster, the budget shrinks with the policy: still too short.
        let e = plan(&s.clone().at_time_scale(0.25)).unwrap_err();
        assert!(e[0].reason.contains("7s 500ms (30s at timeScale 1) is shorter than the fastest promoted decision the policy allows (15s at time scale 0.25)"), "{}", e[0].reason);
    }

    #[test]
    fn a_budget_written_at_a_time_scale_holds_at_every_other() {
        let s = Scenario::target(fixture("argo"))
            .expect(Outcome::Promoted)
            .time_scale(0.25)
            .within(Duration::from_secs(45))
            .action(Duration::from_secs(20), crate::scenario::Action::Promote);
        assert!(plan(&s).is_ok());
        // On a cluster the controller keeps the Rollout's own clock: 4 times as long.
        let full = s.clone().at_time_scale(1.0);
        assert_eq!(full.within, Duration::from_secs(180));
        assert_eq!(full.actions[0].at, Duration::from_secs(80));
        assert_eq!(full.budget_text(), "3m (45s at timeScale 0.25)");
        let p = plan(&full).unwrap();
        assert_eq!(p.fastest.promoted, Some(Duration::from_secs(60)));
        // Rescaling again starts from what was written.
        let fast = full.at_time_scale(0.1);
        assert_eq!(fast.within, Duration::from_secs(18));
        assert_eq!(fast.budget_text(), "18s (45s at timeScale 0.25)");
        assert!(plan(&fast).is_ok());
        // Run at its own scale, nothing changes.
        let same = s.clone().at_time_scale(0.25);
        assert_eq!((same.within, same.written_at), (s.within, None));
        assert_eq!(same.budget_text(), "45s");
        // A scale that is no time scale is left for the check to refuse.
        let e = plan(&s.at_time_scale(-1.0)).unwrap_err();
        assert_eq!(e[0].key, "timeScale");
    }

    #[test]
    fn an_outcome_the_policy_cannot_reach_is_refused() {
        let s = Scenario::target(fixture("argo")).expect(Outcome::Paused);
        let e = plan(&s).unwrap_err();
        assert_eq!(e[0].key, "expect.outcome");
        assert!(
            e[0].reason.contains("can never end paused"),
            "{}",
            e[0].reason
        );
    }

    #[test]
    fn the_grey_zone_fixture_can_pause_after_its_initial_delay() {
        let s = Scenario::target(fixture("argo-inconclusive"))
            .expect(Outcome::Paused)
            .within(Duration::from_secs(60));
        let plan = plan(&s).unwrap();
        assert_eq!(plan.fastest.paused, Some(Duration::from_secs(20)));
        // count 3 at 10 s after 20 s, then a 30 s pause.
        assert_eq!(plan.fastest.promoted, Some(Duration::from_secs(70)));
    }
}
