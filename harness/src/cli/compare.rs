//! `gauntlet compare`: every scenario under the emulated and the real controller, with the same
//! seed and at the policy's own clock, side by side (see [`crate::compare`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use super::run::{choose, connect_real, seed_or_now};
use crate::compare::{Comparison, compare, table};
use crate::exit::Exit;
use crate::report::human::Progress;
use crate::runner::cluster::run_on_cluster;
use crate::runner::{Finished, RunOptions, Status, run_scenario};
use crate::spec::{ControllerKind, Manifests};

/// The options of `gauntlet compare`.
#[derive(Debug, Clone, Default)]
pub struct CompareRequest {
    pub paths: Vec<PathBuf>,
    pub filter: Option<String>,
    pub tag: Option<String>,
    /// Scenarios at once, per tier (both tiers run side by side).
    pub parallel: usize,
    pub seed: Option<u64>,
    pub json: Option<PathBuf>,
    /// Each tier's per-scenario artifacts (`emulated/`, `real/`) and the comparison
    /// (`compare.txt`, `compare.json`) under this folder.
    pub artifacts: Option<PathBuf>,
    /// One page with both tiers' scenarios (`--html`); `report.html` goes into `artifacts`
    /// regardless.
    pub html: Option<PathBuf>,
}

/// The analysis interval of a target's policy: Flagger's `analysis.interval` (default 1m);
/// for Argo Rollouts the shortest `interval` of its AnalysisTemplates' metrics.
pub fn analysis_interval(m: &Manifests) -> Option<Duration> {
    let parse = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| humantime::parse_duration(s).ok())
    };
    match m.controller().ok()? {
        ControllerKind::Flagger => {
            let canary = m.others.iter().find(|o| o.kind == "Canary")?;
            Some(
                parse(canary.value.pointer("/spec/analysis/interval"))
                    .unwrap_or(Duration::from_secs(60)),
            )
        }
        ControllerKind::Argo => m
            .analysis_templates
            .iter()
            .map(|t| &t.raw)
            .chain(m.cluster_analysis_templates.iter().map(|t| &t.raw))
            .flat_map(|t| {
                t.pointer("/spec/metrics")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|metric| parse(metric.get("interval")))
            .min(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Emulated,
    Real,
}

/// `gauntlet compare`.
pub async fn compare_tiers(req: CompareRequest) -> Exit {
    let seed = seed_or_now(req.seed);
    // Both tiers at the policy's own clock: the real controller has no other.
    let chosen = match choose(&req.paths, seed, Some(1.0), &req.filter, &req.tag) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    if let Err(e) = crate::cluster::local::Binaries::locate() {
        eprintln!("error: {e}");
        return Exit::Infra;
    }
    let cluster = match connect_real(&chosen).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Infra;
        }
    };
    let parallel = req.parallel.max(1);
    eprintln!(
        "comparing {} scenario(s) under the emulated and the real controller, {parallel} at a time \
         per tier, seed {seed} (rerun with --seed {seed})",
        chosen.len()
    );
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        let why = crate::cli::up::interrupted().await;
        eprintln!("{why}: stopping");
        let _ = stop_tx.send(true);
    });
    let opts_of = |tier: &str| RunOptions {
        seed,
        artifacts: req.artifacts.as_ref().map(|d| d.join(tier)),
        stop: stop_rx.clone(),
    };
    let tier_opts = [opts_of("emulated"), opts_of("real")];
    let progress = Arc::new(Progress::auto());
    let gates = [
        Arc::new(Semaphore::new(parallel)),
        Arc::new(Semaphore::new(parallel)),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (s, p)) in chosen.iter().cloned().enumerate() {
        for tier in [Tier::Emulated, Tier::Real] {
            let gate = gates[tier as usize].clone();
            let opts = tier_opts[tier as usize].clone();
            let (progress, cluster) = (progress.clone(), cluster.clone());
            let (s, p) = (s.clone(), p.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let label = match tier {
                    Tier::Emulated => "emulated",
                    Tier::Real => "real",
                };
                let line = progress.start(&format!("{} ({label})", s.name));
                let finished: Finished = match tier {
                    Tier::Emulated => run_scenario(&s, &p, &opts, Some(&line)).await,
                    Tier::Real => run_on_cluster(&s, &cluster.target, &opts, Some(&line)).await,
                };
                (i, tier, finished)
            });
        }
    }
    let mut emulated: Vec<Option<Finished>> = (0..chosen.len()).map(|_| None).collect();
    let mut real: Vec<Option<Finished>> = (0..chosen.len()).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((i, Tier::Emulated, f)) => emulated[i] = Some(f),
            Ok((i, Tier::Real, f)) => real[i] = Some(f),
            Err(e) => {
                eprintln!("error: a scenario task failed: {e}");
                return Exit::Infra;
            }
        }
    }
    signals.abort();
    cluster.shutdown().await;

    let mut infra = false;
    let mut comparisons: Vec<Comparison> = Vec::new();
    let mut page = crate::report::model::RunReport {
        schema_version: crate::report::model::SCHEMA_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        backend: "local, emulated and real controllers".into(),
        started_at,
        scenarios: Vec::new(),
    };
    for (i, (s, _)) in chosen.iter().enumerate() {
        let (Some(e), Some(r)) = (emulated[i].take(), real[i].take()) else {
            continue;
        };
        for (f, tier) in [(&e, "emulated"), (&r, "real")] {
            let mut shown = f.report.clone();
            shown.name = format!("{} ({tier})", shown.name);
            page.scenarios.push(shown);
        }
        for f in [&e, &r] {
            if matches!(f.status, Status::Infra | Status::Interrupted) {
                infra = true;
                eprintln!(
                    "{}: could not run: {}",
                    s.name,
                    f.report.failure.clone().unwrap_or_default()
                );
            }
        }
        let interval = crate::spec::load_target(&s.target)
            .ok()
            .and_then(|m| analysis_interval(&m));
        comparisons.push(compare(&e.report, &r.report, interval));
    }
    let summary = format!(
        "{}\n{} scenario(s): {} the same, {} different",
        table(&comparisons),
        comparisons.len(),
        comparisons.len() - differ_count(&comparisons),
        differ_count(&comparisons)
    );
    println!("{summary}");
    let mut exit = if infra {
        Exit::Infra
    } else if differ_count(&comparisons) > 0 {
        Exit::Failed
    } else {
        Exit::Passed
    };
    let doc = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "seed": seed,
        "scenarios": comparisons,
    });
    let json = serde_json::to_string_pretty(&doc).expect("comparisons serialize");
    let mut outputs: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(path) = &req.json {
        outputs.push((path.clone(), &json));
    }
    if let Some(dir) = &req.artifacts {
        outputs.push((dir.join("compare.json"), &json));
        outputs.push((dir.join("compare.txt"), &summary));
    }
    if !super::run::write_pages(&page, req.html.as_deref(), req.artifacts.as_deref()) {
        exit = Exit::Infra;
    }
    for (path, text) in outputs {
        let written = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
            _ => Ok(()),
        }
        .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", path.display());
            exit = Exit::Infra;
        }
    }
    exit
}

fn differ_count(comparisons: &[Comparison]) -> usize {
    comparisons.iter().filter(|c| !c.matches()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_have_their_analysis_intervals() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps");
        let argo = crate::spec::load_target(&root.join("argo")).unwrap();
        assert_eq!(analysis_interval(&argo), Some(Duration::from_secs(10)));
        let flagger = crate::spec::load_target(&root.join("flagger")).unwrap();
        assert_eq!(analysis_interval(&flagger), Some(Duration::from_secs(60)));
    }
}
