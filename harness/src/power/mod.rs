//! `gauntlet power`: the policy's operating characteristic without running the app.
//!
//! For each fault magnitude of a [`Grid`] the user's own Rollout or Canary is run N times by
//! the emulated controller ([`sim`]) in virtual time, and every query it makes is answered by a
//! real Prometheus over synthetic series ([`series`], drawn from the [`model`]) that Prometheus
//! takes in through its remote-write receiver ([`tsdb`], [`remote`]). The loop between the
//! controller's weights and the data is closed by each rollout writing its own series up to
//! each measurement ([`feed`]); [`report`] turns the outcomes into P(rolled back),
//! P(promoted), P(paused) and decision times per point. docs/power.md explains the method and
//! its limits.

pub mod bridge;
pub mod feed;
pub mod grid;
pub mod html;
pub mod model;
pub mod platform;
pub mod remote;
pub mod report;
pub mod series;
pub mod sim;
pub mod tsdb;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use self::bridge::Bridge;
use self::feed::Feed;
pub use self::grid::{Fault, FaultKind, Grid};
use self::model::LatencyModel;
use self::platform::Log;
pub use self::report::PowerReport;
use self::series::{RolloutSeries, Wanted};
use self::sim::{Outcome, Run, Target};
use crate::controller::timescale::TimeScale;

/// Where the synthetic samples sit: 2024-01-01T00:00:00Z, plus each rollout's virtual
/// seconds. A fixed date keeps runs reproducible byte for byte.
pub const BASE_UNIX: i64 = 1_704_067_200;

/// Why a power run did not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// Bad input: the target, the grid, a flag (exit 2).
    #[error("{0}")]
    Input(String),
    /// prometheus is not installed (exit 3).
    #[error("`{0}` was not found: install prometheus (Debian's prometheus package; .ci/deps does)")]
    MissingTool(&'static str),
    /// The machinery failed: Prometheus, a thread (exit 3).
    #[error("{0}")]
    Infra(String),
    /// A simulated rollout could not run the policy (exit 3).
    #[error("simulated rollout {namespace}: {reason}")]
    Rollout { namespace: String, reason: String },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct PowerRequest {
    /// A target folder (or file) of manifests, as a scenario's `target`.
    pub target: PathBuf,
    /// Requests per second offered through the ingress.
    pub rate: f64,
    /// Simulated rollouts per grid point.
    pub runs: usize,
    pub grid: Grid,
    pub seed: u64,
    pub scale: TimeScale,
    /// The longest a decision is waited for after the release, in virtual time.
    pub within: Duration,
    /// Rollouts simulated at once (threads): enough to keep the cores busy while some wait for
    /// Prometheus.
    pub parallel: usize,
    pub model: LatencyModel,
}

impl PowerRequest {
    /// The defaults of the CLI for `target`.
    pub fn new(target: PathBuf) -> PowerRequest {
        PowerRequest {
            target,
            rate: 40.0,
            runs: 200,
            grid: Grid::default(),
            seed: 1,
            scale: TimeScale::default(),
            within: Duration::from_secs(3600),
            parallel: 400,
            model: LatencyModel::default(),
        }
    }

    /// Checks the numbers that are not checked by their types.
    ///
    /// # Errors
    /// The first bad one, named as its flag.
    pub fn check(&self) -> Result<(), PowerError> {
        let bad = |s: &str| Err(PowerError::Input(s.into()));
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0) {
            return bad("--rate must be above 0 and at most 100000 requests per second");
        }
        if self.runs == 0 || self.runs > 100_000 {
            return bad("--runs must be from 1 to 100000");
        }
        if self.parallel == 0 || self.parallel > 4000 {
            return bad("--parallel must be from 1 to 4000");
        }
        if self.within.is_zero() || self.within > Duration::from_secs(7 * 24 * 3600) {
            return bad("--within must be above 0 and at most a week");
        }
        if self.grid.points().is_empty() {
            return bad("the grid is empty");
        }
        Ok(())
    }
}

/// Where a run is, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub queries: u64,
}

/// A simulated rollout's number within the whole run.
pub type RolloutId = usize;

/// Asks a run to stop (Ctrl-C, a failed rollout): rollouts end at their next pass or query.
#[derive(Debug, Default)]
pub struct Stop(AtomicBool);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A prepared run; [`Power::stopper`] lets another thread stop it (Ctrl-C).
pub struct Power {
    req: PowerRequest,
    target: Target,
    stop: Arc<Stop>,
}

/// The namespace of simulated rollout `run` of release `release`.
fn namespace(release: usize, run: usize) -> String {
    format!("power-{release}-{run}")
}

impl Power {
    /// Loads the target and checks that its queries can tell simulated rollouts apart.
    ///
    /// # Errors
    /// [`PowerError::Input`] for a bad request or target.
    pub fn new(req: PowerRequest) -> Result<Power, PowerError> {
        req.check()?;
        let target = Target::load(&req.target, req.scale).map_err(PowerError::Input)?;
        let p = Power {
            req,
            target,
            stop: Arc::new(Stop::default()),
        };
        p.check_queries()?;
        Ok(p)
    }

    /// Every query must name something of the rollout's own (its namespace or a pod-template
    /// hash): one TSDB holds every simulated rollout, and a query that cannot tell them apart
    /// would read them all.
    fn check_queries(&self) -> Result<(), PowerError> {
        let ns = namespace(0, 0);
        let (stable, latest) = self.target.hashes(&ns, &Fault::Errors(0.0));
        let queries = self.target.queries(&ns).map_err(PowerError::Input)?;
        for q in &queries {
            if !(q.contains(&ns) || q.contains(&stable.0) || q.contains(&latest.0)) {
                return Err(PowerError::Input(format!(
                    "the query `{}` names neither the namespace nor a pod-template hash of the \
                     rollout ({{{{args.namespace}}}}, {{{{ namespace }}}}, podTemplateHashValue); \
                     power simulates every rollout in one Prometheus and needs one of them to \
                     tell the rollouts apart",
                    q.split_whitespace().collect::<Vec<_>>().join(" ")
                )));
            }
        }
        Ok(())
    }

    /// Stops the run from another thread: running rollouts end, the run returns
    /// [`PowerError::Interrupted`].
    pub fn stopper(&self) -> Arc<Stop> {
        self.stop.clone()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs the grid. Blocks; call from a thread of its own that lives until it returns (the
    /// Prometheus it starts dies with the thread).
    ///
    /// # Errors
    /// See [`PowerError`].
    pub fn run(&self, mut progress: impl FnMut(Progress)) -> Result<PowerReport, PowerError> {
        let started = Instant::now();
        let req = &self.req;
        let target = Arc::new(self.target.clone());
        let releases = req.grid.releases();
        let ns0 = namespace(0, 0);
        let queries = self.target.queries(&ns0).map_err(PowerError::Input)?;
        let wanted = Arc::new(Wanted::from_queries(queries.iter().map(String::as_str)));

        let mut tsdb = tsdb::Tsdb::new()?;
        let bridge = Arc::new(Bridge::new()?);
        bridge.set_base(&tsdb.start()?);
        tsdb::wait_ready(&mut tsdb, Duration::from_secs(30), || bridge.ready())?;

        let mut queue: VecDeque<(usize, usize)> = (0..req.runs)
            .flat_map(|run| (0..releases.len()).map(move |rel| (rel, run)))
            .collect();
        let total = queue.len();
        let (tx, rx) = mpsc::channel::<(RolloutId, Result<Outcome, String>)>();
        let mut live: BTreeMap<RolloutId, (usize, String)> = BTreeMap::new();
        let mut threads = Vec::new();
        let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); releases.len()];
        let mut next_id: RolloutId = 0;
        let mut done = 0;
        let mut failure: Option<PowerError> = None;
        progress(Progress {
            done,
            total,
            queries: 0,
        });

        loop {
            while failure.is_none() && !self.stop.stopped() && live.len() < req.parallel {
                let Some((rel, run)) = queue.pop_front() else {
                    break;
                };
                let id = next_id;
                next_id += 1;
                let ns = namespace(rel, run);
                let log = Log::default();
                let key = ((rel as u64) << 32) | run as u64;
                let writer = RolloutSeries::new(
                    self.target.identity(&ns),
                    req.seed,
                    key,
                    req.rate,
                    req.model,
                );
                let sim_run = Run {
                    id,
                    namespace: ns.clone(),
                    fault: releases[rel],
                    stop: self.stop.clone(),
                    bridge: bridge.clone(),
                    feed: Arc::new(Mutex::new(Feed::new(
                        writer,
                        log.clone(),
                        wanted.clone(),
                        BASE_UNIX,
                    ))),
                    log,
                    base_unix: BASE_UNIX,
                    within: req.within,
                    tick: crate::controller::driver::TICK,
                };
                let (t, tx) = (target.clone(), tx.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("power-{id}"))
                    .stack_size(8 << 20)
                    .spawn(move || {
                        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            sim::simulate(&t, sim_run)
                        }))
                        .unwrap_or_else(|_| Err("the simulation panicked".into()));
                        let _ = tx.send((id, res));
                    });
                match spawned {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        failure = Some(PowerError::Infra(format!("starting a thread: {e}")));
                        self.stop.stop();
                        break;
                    }
                }
                live.insert(id, (rel, ns));
            }
            if live.is_empty() {
                break;
            }
            // A short timeout only so that a Ctrl-C is noticed while every rollout computes.
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((id, res)) => {
                    if let Some((rel, ns)) = live.remove(&id) {
                        match res {
                            Ok(o) => outcomes[rel].push(o),
                            Err(reason) if failure.is_none() && !self.stop.stopped() => {
                                // A dead Prometheus explains itself better than a failed query.
                                failure = Some(match tsdb.check_alive() {
                                    Err(e) => e,
                                    Ok(()) => PowerError::Rollout {
                                        namespace: ns,
                                        reason,
                                    },
                                });
                                self.stop.stop();
                            }
                            Err(_) => {}
                        }
                        done += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if self.stop.stopped() && failure.is_none() {
                failure = Some(PowerError::Interrupted);
            }
            progress(Progress {
                done,
                total,
                queries: bridge.queries(),
            });
        }
        drop(tx);
        for t in threads {
            let _ = t.join();
        }
        tsdb.stop();
        if let Some(e) = failure {
            return Err(e);
        }

        let by_release: Vec<(Fault, Vec<Outcome>)> =
            releases.iter().copied().zip(outcomes).collect();
        let outcomes_of = |f: &Fault| -> Vec<Outcome> {
            by_release
                .iter()
                .find(|(r, _)| (r.is_none() && f.is_none()) || r == f)
                .map(|(_, o)| o.clone())
                .unwrap_or_default()
        };
        let points: Vec<report::Point> = req
            .grid
            .points()
            .iter()
            .map(|f| report::point(f, &outcomes_of(f)))
            .collect();
        let zero = points.iter().find(|p| p.magnitude == 0.0);
        Ok(PowerReport {
            setup: report::Setup {
                target: req.target.display().to_string(),
                controller: match self.target.kind {
                    crate::spec::ControllerKind::Argo => "argo".into(),
                    crate::spec::ControllerKind::Flagger => "flagger".into(),
                },
                rate: req.rate,
                time_scale: req.scale.factor(),
                runs: req.runs,
                seed: req.seed,
                scrape_interval_s: 1.0,
                within_s: req.within.as_secs_f64(),
            },
            smallest_caught: report::smallest_caught(&points),
            false_rollback: zero.map(|p| p.rolled_back),
            false_rollback_ci95: zero.map(|p| p.rolled_back_ci95),
            points,
            cost: report::Cost {
                wall_s: started.elapsed().as_secs_f64(),
                writes: bridge.writes(),
                queries: bridge.queries(),
                samples: bridge.samples(),
            },
        })
    }
}
