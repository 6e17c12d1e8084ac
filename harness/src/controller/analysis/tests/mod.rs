//! The AnalysisRun stages under a paused clock, one module per stage; the helpers script the
//! provider's answers.

mod bounds;
mod judgement;
mod policy;
mod provider;
mod run;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::judgement::limit_breach;
use super::*;
use crate::controller::expr::{Condition, MetricValue};
use crate::prom::QueryValue;

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn cond(src: &str) -> Option<Condition> {
    Some(Condition::parse(src).expect("test condition parses"))
}

/// A metric whose query is its name, so the script answers per metric.
pub(super) fn metric(name: &str) -> MetricPolicy {
    MetricPolicy::new(name, name)
}

pub(super) fn success_rate(name: &str) -> MetricPolicy {
    MetricPolicy {
        success: cond("result[0] >= 0.95"),
        ..metric(name)
    }
}

pub(super) fn two_sided(name: &str) -> MetricPolicy {
    MetricPolicy {
        success: cond("result[0] >= 0.95"),
        failure: cond("result[0] < 0.95"),
        ..metric(name)
    }
}

pub(super) fn start(metrics: Vec<MetricPolicy>) -> AnalysisRun {
    AnalysisRun::new(
        RunPolicy {
            name: "ar".into(),
            metrics,
        },
        Instant::now(),
    )
}

pub(super) fn vec1(x: f64) -> Result<MetricValue, String> {
    Ok(MetricValue::Vector(vec![x]))
}

pub(super) fn no_series() -> Result<MetricValue, String> {
    Ok(MetricValue::Vector(vec![]))
}

/// Answers each query from its list in order, repeating the last answer, and remembers when
/// (since its creation) it was asked.
pub(super) struct Script {
    pub(super) start: Instant,
    pub(super) latency: Duration,
    pub(super) answers: Mutex<HashMap<String, VecDeque<Result<MetricValue, String>>>>,
    pub(super) calls: Mutex<Vec<(String, Duration)>>,
}

impl Script {
    pub(super) fn new() -> Script {
        Script {
            start: Instant::now(),
            latency: Duration::ZERO,
            answers: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn answer(self, query: &str, answers: Vec<Result<MetricValue, String>>) -> Script {
        self.answers
            .lock()
            .expect("script lock")
            .insert(query.to_string(), answers.into());
        self
    }

    /// Offsets of the calls for `query`.
    pub(super) fn calls(&self, query: &str) -> Vec<Duration> {
        self.calls
            .lock()
            .expect("script lock")
            .iter()
            .filter(|(q, _)| q == query)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl MetricSource for Script {
    async fn measure(&self, query: &str, _timeout: Duration) -> Result<MetricValue, String> {
        let asked = Instant::now() - self.start;
        self.calls
            .lock()
            .expect("script lock")
            .push((query.to_string(), asked));
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut answers = self.answers.lock().expect("script lock");
        match answers.get_mut(query) {
            Some(q) if q.len() > 1 => q.pop_front().expect("non-empty"),
            Some(q) => q
                .front()
                .cloned()
                .unwrap_or_else(|| Err("nothing scripted".into())),
            None => Err(format!("nothing scripted for {query}")),
        }
    }
}

pub(super) fn took(run: &AnalysisRun) -> Duration {
    run.completed_at().expect("run completed") - run.started_at()
}

pub(super) fn reasons(events: &[AnalysisEvent]) -> Vec<String> {
    events.iter().map(AnalysisEvent::reason).collect()
}
