//! One trial per scenario file in `suites/`, on the local backend: `cargo test --test suites`
//! runs them, `-- --list` lists them, a filter selects by name, and `nightly`-tagged ones are
//! ignored unless `-- --ignored` / `--include-ignored` asks for them, as for any Rust test.
//!
//! `GAUNTLET_SEED` fixes the draws of chaos scenarios (default 0, so CI is reproducible);
//! `GAUNTLET_ARTIFACTS=DIR` keeps each scenario's timeline, logs and metric dumps.

use std::path::{Path, PathBuf};

use gauntlet::cli::run::load_all;
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
    let backend = std::env::var("GAUNTLET_BACKEND").unwrap_or_else(|_| "local".into());
    // On kind, without Docker the trials are reported as ignored with the reason, never as
    // passed; with Docker they fail, pointing at `gauntlet run --backend kind`, until the suites
    // carry budgets for full-speed controllers.
    let kind_skip = (backend == "kind")
        .then(gauntlet::cluster::kind::unavailable)
        .flatten();
    if let Some(reason) = &kind_skip {
        eprintln!("skipped: {reason}");
    }
    let trials = match load_all(&[root], seed, None) {
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
                let ignored = s.is_nightly();
                let kind = s
                    .file
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (artifacts, backend) = (artifacts.clone(), backend.clone());
                Trial::test(s.name.clone(), move || {
                    if backend != "local" {
                        return Err(Failed::from(format!(
                            "GAUNTLET_BACKEND={backend}: these trials run the local backend; on a cluster run `gauntlet run --backend {backend}` (budgets are checked at full speed there)"
                        )));
                    }
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
                    let f = rt.block_on(run_scenario(&s, &plan, &opts, None));
                    let r = &f.report;
                    eprintln!(
                        "{}: {} after {}s (budget {:.0}s), client errors {:.2}% of {} requests",
                        r.name,
                        r.outcome.as_deref().unwrap_or("no decision"),
                        r.decision_s.map_or("-".into(), |t| format!("{t:.1}")),
                        r.expected.within_s,
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
