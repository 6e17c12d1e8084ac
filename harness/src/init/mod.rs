//! `gauntlet init`: a starter suite written from the user's own policy.
//!
//! A team that adopts gauntlet has a Rollout or a Canary, not scenarios. Init reads the policy
//! with the same code the emulated controller and `gauntlet validate` use ([`argo`],
//! [`flagger`]), finds each metric's threshold by asking the controller's own judge
//! ([`threshold`]) about values of the class its query measures ([`classify`]), sizes faults,
//! load, time scale and budgets from those facts ([`sizing`]), and writes one commented
//! scenario file per outcome ([`render`], [`write`]). Each file is parsed and checked as
//! `gauntlet validate` would before anything is written, so the suite passes it unchanged.

pub mod argo;
pub mod classify;
pub mod error;
pub mod facts;
pub mod flagger;
pub mod render;
pub mod sizing;
pub mod threshold;
pub mod words;
pub mod write;

use std::path::{Path, PathBuf};

pub use self::error::InitError;
use self::facts::{Controller, PolicyFacts, file_name};
use self::render::{Frame, render};
use self::sizing::{Planned, SuitePlan};
use crate::controller::timescale::TimeScale;
use crate::scenario::{budget, file};
use crate::spec::ControllerKind;

/// What `gauntlet init` was asked.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The folder of the user's manifests (or one file).
    pub target: PathBuf,
    /// Where to write; `None`: `suites/<the target folder's name>`.
    pub out: Option<PathBuf>,
    /// Replace files init writes that exist already.
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub controller: Controller,
    /// `Rollout sample-app`.
    pub object: String,
    pub time_scale: f64,
    pub gaps: Vec<String>,
}

/// The file the written scenarios name as their JSON Schema, written beside them.
pub const SCHEMA_FILE: &str = "scenario.schema.json";
/// The first line of every written scenario: editors with the YAML language server complete
/// and check the file against [`SCHEMA_FILE`].
pub const SCHEMA_LINE: &str = "# yaml-language-server: $schema=scenario.schema.json";

/// Reads the policy under `req.target` and writes its starter suite.
///
/// # Errors
/// See [`InitError`]; nothing is written when any problem is found.
pub fn init(req: &InitRequest) -> Result<Written, InitError> {
    let (facts, plan) = suite(&req.target)?;
    let out = req.out.clone().unwrap_or_else(|| default_out(&req.target));
    let names: Vec<String> = plan
        .scenarios
        .iter()
        .map(|p| format!("{}.yaml", p.slug))
        .collect();
    let existed = out.is_dir();
    let dir = write::prepare(&out, &names, req.force)?;
    let result = render_all(&req.target, &dir, &facts, &plan);
    let texts = match result {
        Ok(t) => t,
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    let mut files = Vec::new();
    for (path, text) in texts {
        write::write(&path, &format!("{SCHEMA_LINE}\n{text}"))?;
        files.push(out.join(path.file_name().unwrap_or_default()));
    }
    // The schema beside the files, so editors check them wherever the suite is moved to.
    write::write(&dir.join(SCHEMA_FILE), &crate::scenario::schema::text())?;
    Ok(Written {
        dir: out,
        files,
        controller: facts.controller,
        object: format!("{} {}", facts.controller.kind(), facts.name),
        time_scale: plan.time_scale.value,
        gaps: plan.gaps,
    })
}

/// The facts at the suite's time scale and the suite planned from them.
///
/// # Errors
/// The target is missing or unusable, or the policy gives nothing to test.
pub fn suite(target: &Path) -> Result<(PolicyFacts, SuitePlan), InitError> {
    let at_one = read(target, TimeScale::default())?;
    let time_scale = sizing::time_scale(&at_one);
    let scale = TimeScale::new(time_scale.value).map_err(|reason| InitError::Unusable {
        file: target.to_path_buf(),
        field: "timeScale".into(),
        reason,
    })?;
    let facts = read(target, scale)?;
    let plan = sizing::plan(&facts, time_scale);
    if plan.scenarios.is_empty() {
        return Err(InitError::Nothing(plan.gaps));
    }
    Ok((facts, plan))
}

/// Reads the policy of a target folder at `scale`.
///
/// # Errors
/// The folder is missing, its manifests do not validate, or it holds no single policy.
pub fn read(target: &Path, scale: TimeScale) -> Result<PolicyFacts, InitError> {
    if !target.exists() {
        return Err(InitError::NoTarget(target.to_path_buf()));
    }
    let manifests = crate::spec::load_target(target).map_err(InitError::Manifests)?;
    match manifests.controller() {
        Ok(ControllerKind::Argo) => argo::read(target, manifests, scale),
        Ok(ControllerKind::Flagger) => flagger::read(target, scale),
        Err(reason) => Err(InitError::Unusable {
            file: target.to_path_buf(),
            field: "kind".into(),
            reason: format!(
                "{reason}; point --target at the folder of one Rollout (with its \
                 AnalysisTemplates) or one Canary (with its Deployment and MetricTemplates)"
            ),
        }),
    }
}

/// `suites/<name of the target folder>`.
fn default_out(target: &Path) -> PathBuf {
    let name = target
        .canonicalize()
        .ok()
        .and_then(|p| p.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "init".into());
    Path::new("suites").join(name)
}

/// Each scenario's path in `dir` (canonical) and text, checked.
fn render_all(
    target: &Path,
    dir: &Path,
    facts: &PolicyFacts,
    plan: &SuitePlan,
) -> Result<Vec<(PathBuf, String)>, InitError> {
    let target_abs = target.canonicalize().map_err(|e| InitError::Unusable {
        file: target.to_path_buf(),
        field: "--target".into(),
        reason: format!("cannot resolve the folder: {e}"),
    })?;
    let target_rel = write::relative(dir, &target_abs).display().to_string();
    let header = vec![format!(
        "Written by `gauntlet init` from the {} {} ({} in {}), to start from: every number \
             says where it came from; change them to what you need, then check the folder with \
             `gauntlet validate`.",
        facts.controller.kind(),
        facts.name,
        file_name(&facts.file),
        target_rel
    )];
    let mut out = Vec::new();
    for (i, p) in plan.scenarios.iter().enumerate() {
        let name = scenario_name(facts, p);
        let gaps: &[String] = if i == 0 { &plan.gaps } else { &[] };
        let text = render(
            p,
            &Frame {
                name: &name,
                target: &target_rel,
                header: &header,
                gaps,
                suite: plan,
            },
        );
        let path = dir.join(format!("{}.yaml", p.slug));
        verify(&path, &text, p, plan)?;
        out.push((path, text));
    }
    Ok(out)
}

/// `rollout-sample-app-errors-rolled-back`: unique across policies and outcomes, so suites
/// of several policies run together.
fn scenario_name(facts: &PolicyFacts, p: &Planned) -> String {
    let raw = format!(
        "{}-{}-{}",
        facts.controller.kind().to_ascii_lowercase(),
        facts.name,
        p.slug
    );
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let keep = clean.len().min(100);
    clean[..keep].to_string()
}

/// The text read back by the scenario loader and checked as `gauntlet validate` checks it,
/// with the numbers that were planned.
fn verify(path: &Path, text: &str, p: &Planned, plan: &SuitePlan) -> Result<(), InitError> {
    let bad = |problems: Vec<String>| InitError::Generated {
        file: path.to_path_buf(),
        problems,
    };
    let strings = |e: Vec<crate::scenario::ScenarioError>| -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    };
    let s = file::parse(path, text, 0).map_err(|e| bad(strings(e)))?;
    budget::plan(&s).map_err(|e| bad(strings(e)))?;
    let mut differs = Vec::new();
    if s.outcome != p.outcome {
        differs.push(format!("outcome {} read back as {}", p.outcome, s.outcome));
    }
    if s.within != p.within.value {
        differs.push(format!(
            "within {:?} read back as {:?}",
            p.within.value, s.within
        ));
    }
    if s.time_scale != Some(plan.time_scale.value) {
        differs.push(format!("timeScale read back as {:?}", s.time_scale));
    }
    if (s.rate - plan.rate.value).abs() > 1e-9 || s.connections != p.connections.value {
        differs.push(format!("load read back as {}/s, {}", s.rate, s.connections));
    }
    let faults: Vec<_> = p.fault.iter().map(|f| f.value.clone()).collect();
    if s.faults != faults {
        differs.push(format!("faults {faults:?} read back as {:?}", s.faults));
    }
    if (s.client_error_max - p.client_errors.value).abs() > 1e-9 {
        differs.push(format!("clientErrors read back as {}", s.client_error_max));
    }
    if differs.is_empty() {
        Ok(())
    } else {
        Err(bad(differs))
    }
}
