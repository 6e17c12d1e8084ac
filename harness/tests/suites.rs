//! One trial per scenario file in `suites/`, on the local backend: `cargo test --test suites`
//! runs them, `-- --list` lists them, a filter selects by name, and `nightly`- and
//! `fidelity`-tagged ones are ignored unless `-- --ignored` / `--include-ignored` asks for them, as for any Rust test.
//!
//! `GAUNTLET_BACKEND=kind` runs the same trials on the cluster of `gauntlet up --backend kind`
//! (`GAUNTLET_BACKEND=kube` on the kubeconfig's cluster, `GAUNTLET_CONTEXT` naming the context),
//! with each scenario's times scaled from its `timeScale` to the controller's own clock. Without
//! Docker and kind, the kind trials are reported ignored with the reason, never passed.
//!
//! `GAUNTLET_SEED` fixes the draws of chaos scenarios (default 0, so CI is reproducible);
//! `GAUNTLET_ARTIFACTS=DIR` keeps each scenario's timeline, logs and metric dumps.

use std::path::{Path, PathBuf};

use gauntlet::cli::run::{Backend, connect, load_all};
use gauntlet::runner::cluster::run_on_cluster;
use gauntlet::runner::{RunOptions, Status, run_scenario};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let seed: u64 = std::env::var("GAUNTLET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let artifacts = std::env::var_os("GAUNTLET_ARTIFACTS").map(PathBuf::from);
    let backend = match std::env::var("GAUNTLET_BACKEND").as_deref() {
        Err(_) | Ok("local") => Backend::Local,
        Ok("kind") => Backend::Kind,
        Ok("kube") => Backend::Kube,
        Ok(other) => {
            eprintln!("error: GAUNTLET_BACKEND={other}: expected local, kind or kube");
            std::process::exit(2);
        }
    };
    let context = std::env::var("GAUNTLET_CONTEXT").ok();
    // On kind, without Docker the trials are reported as ignored with the reason, never as
    // passed.
    let kind_skip = (backend == Backend::Kind)
        .then(gauntlet::cluster::kind::unavailable)
        .flatten();
    if let Some(reason) = &kind_skip {
        eprintln!("skipped: {reason}");
    }
    let workspace = root.join("..");
    // A real controller keeps the policy's own clock.
    let time_scale = (backend != Backend::Local).then_some(1.0);
    let trials = match load_all(&[root], seed, time_scale) {
        Err(errors) => {
            // A suite that does not load is one failing trial naming every problem.
            let text = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            vec![Trial::test("suites-load", move || Err(Failed::from(text)))]
        }
        Ok(all) => all
            .into_iter()
            .map(|(s, plan)| {
                // The fidelity suite runs at the policies' own clock under both controllers in
                // `make fidelity` (gauntlet compare); here only with `--include-ignored`.
                let ignored = s.is_nightly() || s.tags.iter().any(|t| t == "fidelity");
                let kind = s
                    .file
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (artifacts, context, workspace) =
                    (artifacts.clone(), context.clone(), workspace.clone());
                Trial::test(s.name.clone(), move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .map_err(|e| Failed::from(e.to_string()))?;
                    let (_keep, stop) = tokio::sync::watch::channel(false);
                    let opts = RunOptions {
                        seed,
                        artifacts,
                        stop,
                    };
                    let f = rt.block_on(async {
                        if backend == Backend::Local {
                            return Ok(run_scenario(&s, &plan, &opts, None).await);
                        }
                        let reach = gauntlet::cli::KubeReach {
                            image: std::env::var("GAUNTLET_IMAGE").ok(),
                            ..Default::default()
                        };
                        let c = connect(
                            backend,
                            context.as_deref(),
                            &reach,
                            &[(s.clone(), plan.clone())],
                            &workspace,
                            opts.artifacts.is_some(),
                        )
                        .await
                        .map_err(|e| Failed::from(e.to_string()))?;
                        Ok::<_, Failed>(run_on_cluster(&s, &c.target, &opts, None).await)
                    })?;
                    let r = &f.report;
                    eprintln!(
                        "{}: {} after {}s (budget {}), client errors {:.2}% of {} requests",
                        r.name,
                        r.outcome.as_deref().unwrap_or("no decision"),
                        r.decision_s.map_or("-".into(), |t| format!("{t:.1}")),
                        s.budget_text(),
                        r.client.error_rate * 100.0,
                        r.client.requests
                    );
                    match f.status {
                        Status::Passed => Ok(()),
                        _ => Err(Failed::from(r.failure.clone().unwrap_or_default())),
                    }
                })
                .with_kind(kind)
                .with_ignored_flag(ignored || kind_skip.is_some())
            })
            .collect(),
    };
    libtest_mimic::run(&args, trials).exit();
}
