//! AnalysisRuns that really measure: the merged templates of a Rollout turned into
//! [`AnalysisRun`]s when the engine asks for one, measured against the stack's Prometheus.
//!
//! The template's `provider.prometheus.address` names an in-cluster Prometheus; on the local
//! backend every query goes to the stack's own Prometheus instead (docs/fidelity.md). Range
//! windows in the query are scaled with `--time-scale` ([`TimeScale::promql`]).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Hashes, Run, RunFactory, RunPhase};
use crate::controller::analysis::{
    AnalysisPhase, AnalysisRun, MEASUREMENT_HISTORY_LIMIT, MetricPolicy, MetricSource, Reading,
    RunPolicy, effective_count, validate,
};
use crate::controller::expr::Condition;
use crate::controller::timescale::TimeScale;
use crate::spec::Manifest;
use crate::spec::argo::{MergedAnalysis, ResolvedMetric, Rollout};
use crate::timeline::{Source, Timeline};

/// Creates live runs of a Rollout's analyses.
#[derive(Clone)]
pub struct AnalysisRuns<S> {
    rollout: Manifest<Rollout>,
    analyses: Vec<MergedAnalysis>,
    source: S,
    scale: TimeScale,
    timeline: Timeline,
}

impl<S: MetricSource + Clone> AnalysisRuns<S> {
    pub fn new(
        rollout: Manifest<Rollout>,
        analyses: Vec<MergedAnalysis>,
        source: S,
        scale: TimeScale,
        timeline: Timeline,
    ) -> Self {
        AnalysisRuns {
            rollout,
            analyses,
            source,
            scale,
            timeline,
        }
    }
}

/// The policy of a run of `analysis`: args resolved with the ReplicaSets' hashes, conditions
/// parsed, durations and query windows scaled. Also what budgets are computed from.
///
/// # Errors
/// Argo's AnalysisRun error text for args or a spec that do not resolve.
pub fn run_policy(
    rollout: &Manifest<Rollout>,
    analysis: &MergedAnalysis,
    scale: TimeScale,
    name: &str,
    h: &Hashes,
) -> Result<RunPolicy, String> {
    let args: BTreeMap<String, String> = analysis
        .arg_values(rollout, &h.stable.0, &h.latest.0)
        .map_err(|e| format!("Unable to resolve metric arguments: {e}"))?;
    let metrics = analysis
        .resolve(&args)?
        .into_iter()
        .map(|m| metric_policy(analysis, scale, m))
        .collect::<Result<Vec<_>, String>>()?;
    let policy = RunPolicy {
        name: name.to_string(),
        metrics,
    };
    validate(&policy).map_err(|e| format!("Analysis spec invalid: {e}"))?;
    Ok(policy)
}

fn metric_policy(
    analysis: &MergedAnalysis,
    scale: TimeScale,
    m: ResolvedMetric,
) -> Result<MetricPolicy, String> {
    let parse = |c: &Option<String>| -> Result<Option<Condition>, String> {
        c.as_deref()
            .map(|src| Condition::parse(src).map_err(|e| format!("metric {:?}: {e}", m.name)))
            .transpose()
    };
    Ok(MetricPolicy {
        count: effective_count(Some(m.count), m.interval),
        interval: m.interval.map(|d| scale.duration(d)),
        initial_delay: scale.duration(m.initial_delay),
        failure_limit: m.failure_limit,
        inconclusive_limit: m.inconclusive_limit,
        consecutive_error_limit: m.consecutive_error_limit,
        consecutive_success_limit: m.consecutive_success_limit,
        success: parse(&m.success_condition)?,
        failure: parse(&m.failure_condition)?,
        query: scale.promql(&m.prometheus.query),
        timeout: m.prometheus.timeout,
        dry_run: analysis.is_dry_run(&m.name),
        // `garbageCollectMeasurements` applies a rule's limit only when it is above 0.
        measurement_limit: analysis
            .measurement_limit(&m.name)
            .filter(|l| *l > 0)
            .map_or(MEASUREMENT_HISTORY_LIMIT, |l| l as usize),
        name: m.name,
    })
}

impl<S: MetricSource + Clone + Send + Sync + 'static> RunFactory for AnalysisRuns<S> {
    type Run = LiveRun<S>;

    fn create(&self, analysis: usize, name: &str, hashes: &Hashes) -> Result<LiveRun<S>, String> {
        let merged = self
            .analyses
            .get(analysis)
            .ok_or_else(|| format!("no analysis number {analysis}"))?;
        let now = Instant::now();
        // A run whose args or spec do not resolve exists, in phase Error, as Argo creates it.
        let run = match run_policy(&self.rollout, merged, self.scale, name, hashes) {
            Ok(policy) => AnalysisRun::new(policy, now),
            Err(e) => AnalysisRun::errored(
                RunPolicy {
                    name: name.to_string(),
                    metrics: vec![],
                },
                e,
                now,
            ),
        };
        Ok(LiveRun {
            run,
            source: self.source.clone(),
            timeline: self.timeline.clone(),
            in_flight: None,
        })
    }
}

/// One AnalysisRun and where its measurements come from.
///
/// Argo measures in its analysis controller, apart from the rollout controller: one reconcile
/// of a run starts every due measurement at once, each in its own goroutine, waits for all of
/// them and records them together (`runMeasurements`). The rollout pass only reads the run's
/// status. Here a batch of due measurements runs as a task of its own, and
/// [`Run::advance`] never waits for it: a slow query (the provider's timeout is up to 30 s)
/// delays that run's next measurement, as in Argo, never a pause expiring or an abort.
pub struct LiveRun<S> {
    run: AnalysisRun,
    source: S,
    timeline: Timeline,
    /// The batch being measured, if any; its readings are recorded once all have finished.
    in_flight: Option<JoinHandle<Vec<Reading>>>,
}

impl<S> LiveRun<S> {
    pub fn analysis(&self) -> &AnalysisRun {
        &self.run
    }

    /// Whether a batch of measurements is still being taken.
    pub fn measuring(&self) -> bool {
        self.in_flight.is_some()
    }

    fn publish(&self, events: Vec<crate::controller::analysis::AnalysisEvent>) {
        for e in events {
            self.timeline.emit(
                Source::Analysis,
                e.reason(),
                format!("{}: {}", self.run.policy().name, e.message()),
                serde_json::json!({"run": self.run.policy().name, "warning": e.is_warning()}),
            );
        }
    }

    /// Records a finished batch and puts each measurement on the timeline.
    fn record(&mut self, readings: Vec<Reading>) {
        let measured: Vec<usize> = readings.iter().map(|r| r.metric).collect();
        let events = self.run.record_all(readings);
        for metric in measured {
            let policy = &self.run.policy().metrics[metric];
            let name = &policy.name;
            let condition = |c: &Option<crate::controller::expr::Condition>| {
                c.as_ref().map(|c| c.source().to_string())
            };
            if let Some(m) = self.run.result(metric).and_then(|r| r.last_measurement()) {
                self.timeline.emit(
                    Source::Analysis,
                    "measurement",
                    format!(
                        "{name}: {} {}{}",
                        m.phase,
                        m.value.as_deref().unwrap_or("-"),
                        if m.message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", m.message)
                        }
                    ),
                    serde_json::json!({
                        "run": self.run.policy().name,
                        "metric": name,
                        "phase": m.phase.as_str(),
                        "value": m.value,
                        "message": m.message,
                        // What the value was judged against, for the report's threshold lines.
                        "success_condition": condition(&policy.success),
                        "failure_condition": condition(&policy.failure),
                    }),
                );
            }
        }
        self.publish(events);
    }
}

impl<S> Drop for LiveRun<S> {
    /// A run the rollout no longer holds stops querying.
    fn drop(&mut self) {
        if let Some(batch) = self.in_flight.take() {
            batch.abort();
        }
    }
}

impl<S: MetricSource + Clone + Send + Sync + 'static> LiveRun<S> {
    /// Starts every measurement due now, concurrently, as one task that ends when all have.
    fn start_batch(&mut self) {
        let due = self.run.due(Instant::now());
        if due.is_empty() {
            return;
        }
        let queries: Vec<(usize, String, Duration)> = due
            .into_iter()
            .map(|i| {
                let m = &self.run.policy().metrics[i];
                (i, m.query.clone(), m.timeout)
            })
            .collect();
        let source = self.source.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let started: Vec<_> = queries
                .into_iter()
                .map(|(metric, query, timeout)| {
                    let source = source.clone();
                    let started_at = Instant::now();
                    let task = tokio::spawn(async move { source.measure(&query, timeout).await });
                    (metric, started_at, task)
                })
                .collect();
            let mut readings = Vec::with_capacity(started.len());
            for (metric, started_at, task) in started {
                let outcome = task
                    .await
                    .unwrap_or_else(|e| Err(format!("the measurement did not complete: {e}")));
                readings.push(Reading {
                    metric,
                    outcome,
                    started_at,
                    finished_at: Instant::now(),
                });
            }
            readings
        }));
    }
}

impl<S: MetricSource + Clone + Send + Sync + 'static> Run for LiveRun<S> {
    /// Records the batch in flight once it has finished, then starts the next due one; never
    /// waits for a query.
    async fn advance(&mut self) {
        if let Some(batch) = &self.in_flight {
            if !batch.is_finished() {
                return;
            }
            if let Some(batch) = self.in_flight.take() {
                match batch.await {
                    Ok(readings) => self.record(readings),
                    Err(e) => {
                        tracing::warn!("measurements of {} were lost: {e}", self.run.policy().name)
                    }
                }
            }
        }
        self.start_batch();
    }

    fn phase(&self) -> RunPhase {
        match self.run.phase() {
            AnalysisPhase::Pending => RunPhase::Pending,
            AnalysisPhase::Running => RunPhase::Running,
            AnalysisPhase::Successful => RunPhase::Successful,
            AnalysisPhase::Failed => RunPhase::Failed,
            AnalysisPhase::Error => RunPhase::Error,
            AnalysisPhase::Inconclusive => RunPhase::Inconclusive,
        }
    }

    fn message(&self) -> String {
        self.run.message().to_string()
    }

    /// `spec.terminate`: a batch still in flight is dropped (Argo records it, but a run ended
    /// by promotion or abort no longer decides anything).
    fn terminate(&mut self) {
        if let Some(batch) = self.in_flight.take() {
            batch.abort();
        }
        let events = self.run.terminate(Instant::now());
        self.publish(events);
    }

    /// While a batch is in flight nothing new is due: the driver's regular passes pick up its
    /// end.
    fn next_due(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        self.run.next_due()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::cluster::RevisionHash;
    use crate::controller::argo::from_spec::from_spec;
    use crate::controller::expr::MetricValue;

    /// A scripted answer for queries containing the key.
    type Answer = (String, Result<MetricValue, String>);

    /// Answers every query from a script keyed by a substring of the query; records queries.
    #[derive(Clone, Default)]
    struct Scripted {
        answers: Arc<Mutex<Vec<Answer>>>,
        asked: Arc<Mutex<Vec<String>>>,
    }

    impl MetricSource for Scripted {
        async fn measure(&self, query: &str, _: Duration) -> Result<MetricValue, String> {
            self.asked.lock().unwrap().push(query.to_string());
            self.answers
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| query.contains(k.as_str()))
                .map(|(_, v)| v.clone())
                .unwrap_or(Ok(MetricValue::Vector(vec![])))
        }
    }

    fn factory<S: MetricSource + Clone>(scale: f64, source: S) -> AnalysisRuns<S> {
        let m = crate::spec::load_target(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo"),
        )
        .unwrap();
        let scale = TimeScale::new(scale).unwrap();
        let e = from_spec(&m, &m.rollouts[0], scale).unwrap();
        AnalysisRuns::new(
            m.rollouts[0].clone(),
            e.analyses,
            source,
            scale,
            Timeline::new(),
        )
    }

    /// Advances the run until the batch it starts has been recorded (scripted answers are
    /// instant: a few yields let the measuring tasks finish without moving the clock).
    async fn measure<S: MetricSource + Clone + Send + Sync + 'static>(run: &mut LiveRun<S>) {
        run.advance().await;
        for _ in 0..100 {
            if !run.measuring() {
                return;
            }
            tokio::task::yield_now().await;
            run.advance().await;
        }
        panic!("the scripted measurements did not finish");
    }

    fn hashes() -> Hashes {
        Hashes {
            stable: RevisionHash("stablehash".into()),
            latest: RevisionHash("canaryhash".into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn args_are_substituted_and_windows_scaled() {
        let source = Scripted::default();
        let f = factory(0.5, source.clone());
        let mut run = f.create(0, "sample-app-canaryhash-2", &hashes()).unwrap();
        assert_eq!(run.phase(), RunPhase::Running);
        measure(&mut run).await;
        let asked = source.asked.lock().unwrap().clone();
        assert_eq!(
            asked.len(),
            4,
            "all four metrics measure at once: {asked:?}"
        );
        assert!(
            asked[0].contains(r#"namespace="default",ingress="sample-app""#),
            "{}",
            asked[0]
        );
        assert!(
            asked[0].contains("[15s]"),
            "30s scaled by 0.5: {}",
            asked[0]
        );
        assert!(
            asked[1].contains(r#"pod=~"sample-app-canaryhash-.*""#),
            "{}",
            asked[1]
        );
        // Interval 10 s × 0.5.
        assert_eq!(
            run.next_due(),
            Some(Instant::now() + Duration::from_secs(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_success_rate_fails_the_run_on_the_second_bad_window() {
        let source = Scripted::default();
        source
            .answers
            .lock()
            .unwrap()
            .push(("status!~".into(), Ok(MetricValue::Vector(vec![0.7]))));
        let f = factory(1.0, source);
        let mut run = f.create(0, "r", &hashes()).unwrap();
        measure(&mut run).await;
        assert_eq!(
            run.phase(),
            RunPhase::Running,
            "failureLimit 1 tolerates one"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        measure(&mut run).await;
        assert_eq!(run.phase(), RunPhase::Failed);
        assert_eq!(
            run.message(),
            r#"Metric "success-rate" assessed Failed due to failed (2) > failureLimit (1)"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn termination_ends_a_healthy_background_run_successful() {
        let f = factory(1.0, Scripted::default());
        let mut run = f.create(0, "r", &hashes()).unwrap();
        measure(&mut run).await;
        run.terminate();
        assert_eq!(run.phase(), RunPhase::Successful);
        assert_eq!(run.next_due(), None);
    }

    /// Answers after `delay`, with no series.
    #[derive(Clone)]
    struct Slow(Duration);

    impl MetricSource for Slow {
        async fn measure(&self, _: &str, _: Duration) -> Result<MetricValue, String> {
            tokio::time::sleep(self.0).await;
            Ok(MetricValue::Vector(vec![]))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_measurements_start_together_and_advance_never_waits_for_them() {
        let f = factory(1.0, Slow(Duration::from_secs(30)));
        let mut run = f.create(0, "r", &hashes()).unwrap();
        let t0 = Instant::now();
        run.advance().await;
        assert_eq!(Instant::now(), t0, "advance returned without waiting");
        assert!(run.measuring());
        assert_eq!(
            run.next_due(),
            None,
            "nothing new starts while a batch is out"
        );
        tokio::time::sleep(Duration::from_secs(29)).await;
        run.advance().await;
        assert!(run.measuring());
        tokio::time::sleep(Duration::from_secs(1)).await;
        measure(&mut run).await;
        // All four measured in parallel: they finished together, 30 s after they started.
        for m in run.analysis().results() {
            let last = m.last_measurement().unwrap();
            assert_eq!(last.finished_at - last.started_at, Duration::from_secs(30));
            assert_eq!(last.started_at, t0);
        }
        // The next batch is due one interval (10 s) after the previous one finished.
        assert_eq!(run.next_due(), Some(t0 + Duration::from_secs(40)));
    }

    #[tokio::test(start_paused = true)]
    async fn measurement_retention_limits_the_history_of_its_metric() {
        let mut f = factory(1.0, Scripted::default());
        f.analyses[0]
            .measurement_retention
            .push(crate::spec::argo::MeasurementRetention {
                metric_name: "success".into(),
                limit: 2,
            });
        let mut run = f.create(0, "r", &hashes()).unwrap();
        for _ in 0..3 {
            measure(&mut run).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let results = run.analysis().results();
        assert_eq!(results[0].name, "success-rate");
        assert_eq!(results[0].measurements.len(), 2);
        assert_eq!(results[0].count, 3);
        assert_eq!(results[1].measurements.len(), 3, "other metrics keep 10");
    }
}
