//! The samples the judge compares, read back from the timeline's `load`/`window` events.
//!
//! Every second the load generator emits the requests that completed in that window, per
//! version (`crate::load::stats::Window`): requests, errors (5xx and requests without a
//! complete answer) and a latency histogram of the answered ones, keyed by bucket upper bound
//! in microseconds (20 buckets a decade, each about 12 % wider than the one before).
//!
//! The canary is compared with the stable version *over the same windows*: from the first
//! window with a canary request to the decision (or the end of the run). Both sides see
//! the same machine load, the same ingress and the same time of the run, so what differs is the
//! version; the stable's windows before the canary existed are left out for the same reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JudgeError;
use crate::timeline::{Event, Source};

/// The stable version (the scenario's `baseline.version`) and the canary (its
/// `release.version`): two different, non-empty names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VersionNames")]
pub struct Versions {
    stable: String,
    canary: String,
}

impl Versions {
    pub fn new(stable: impl Into<String>, canary: impl Into<String>) -> Result<Self, JudgeError> {
        let (stable, canary) = (stable.into(), canary.into());
        if stable.is_empty() || canary.is_empty() {
            return Err(JudgeError::EmptyVersion);
        }
        if stable == canary {
            return Err(JudgeError::SameVersion(stable));
        }
        Ok(Versions { stable, canary })
    }

    pub fn stable(&self) -> &str {
        &self.stable
    }

    pub fn canary(&self) -> &str {
        &self.canary
    }
}

/// [`Versions`] as a report states them, checked on the way in.
#[derive(Deserialize)]
struct VersionNames {
    stable: String,
    canary: String,
}

impl TryFrom<VersionNames> for Versions {
    type Error = JudgeError;

    fn try_from(v: VersionNames) -> Result<Self, Self::Error> {
        Versions::new(v.stable, v.canary)
    }
}

/// A latency histogram as the load generator writes it: bucket upper bound (µs) → count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    buckets: BTreeMap<u64, u64>,
}

/// Width of one bucket as a ratio: 20 buckets a decade.
const BUCKET_RATIO_LOG10: f64 = 0.05;

impl Latencies {
    /// From `(upper bound in µs, count)` pairs; zero counts are dropped.
    pub fn from_buckets(buckets: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut out = Latencies::default();
        for (upper, n) in buckets {
            out.add(upper, n);
        }
        out
    }

    fn add(&mut self, upper_us: u64, n: u64) {
        if n > 0 {
            let slot = self.buckets.entry(upper_us).or_default();
            *slot = slot.saturating_add(n);
        }
    }

    fn merge(&mut self, other: &Latencies) {
        for (&upper, &n) in &other.buckets {
            self.add(upper, n);
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// `(representative latency in ms, count)`, fastest first. A bucket stands for its
    /// geometric middle: the buckets are log-spaced, so that is where a request in it lies on
    /// average, and ratios between buckets stay exact powers of the bucket width.
    pub fn points_ms(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .map(|(&upper, &n)| {
                let ms = upper.max(1) as f64 / 1000.0;
                (ms / 10f64.powf(BUCKET_RATIO_LOG10 / 2.0), n)
            })
            .collect()
    }

    /// The `q` quantile in ms, interpolated linearly inside its bucket as
    /// `crate::load::Histogram::quantile_ms` does (within a bucket width, ~12 %); `None`
    /// without observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut below = 0u64;
        for (&upper, &count) in &self.buckets {
            if below + count >= rank {
                let lower = upper as f64 / 10f64.powf(BUCKET_RATIO_LOG10);
                let within = (rank - below) as f64 / count as f64;
                return Some((lower + (upper as f64 - lower) * within) / 1000.0);
            }
            below += count;
        }
        None
    }
}

/// What one version got during the exposure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub requests: u64,
    /// 5xx answers plus requests without a complete answer; never more than `requests`.
    pub errors: u64,
    /// Answered requests, each with a latency.
    pub latency_samples: u64,
    #[serde(skip)]
    pub latencies: Latencies,
}

impl Group {
    fn add(&mut self, c: &WindowCounts) {
        self.requests = self.requests.saturating_add(c.requests);
        self.errors = self.errors.saturating_add(c.errors.min(c.requests));
        let lat = c.latencies();
        self.latency_samples = self.latency_samples.saturating_add(lat.count());
        self.latencies.merge(&lat);
    }
}

/// The canary's exposure and what both versions got during it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Start of the first window (seconds after the release) with a canary request; `None`
    /// when there was none.
    pub from_s: Option<f64>,
    /// Where the exposure ends: the decision, or the end of the last window.
    pub to_s: Option<f64>,
    /// Summed length of the windows taken, for request rates.
    pub seconds: f64,
    pub windows: usize,
    pub canary: Group,
    pub stable: Group,
    /// Requests of neither version in the same windows, mostly `none`: requests that got no
    /// answer, so no version header. They cannot be attributed and stay out of the tests.
    pub unattributed_requests: u64,
    /// `load`/`window` events whose data could not be read.
    pub skipped_windows: usize,
    /// Per window in which both versions answered: the canary's latencies and the stable's,
    /// for the latency test, which compares requests of the same second only.
    #[serde(skip)]
    pub strata: Vec<(Latencies, Latencies)>,
}

impl Exposure {
    /// Reads the exposure off a timeline. `end_s` is where it ends in seconds after the
    /// release (the decision), `None` for the end of the run. A window belongs to the exposure
    /// when it *starts* in `[from_s, end_s)`, as `crate::load::LoadStats::between` counts, so
    /// the judge sees what the report's client numbers see.
    pub fn from_timeline(events: &[Event], versions: &Versions, end_s: Option<f64>) -> Self {
        let end = end_s.filter(|e| !e.is_nan()).unwrap_or(f64::INFINITY);
        let mut skipped = 0;
        let mut windows: Vec<(f64, WindowData)> = Vec::new();
        for e in events
            .iter()
            .filter(|e| e.source == Source::Load && e.kind == "window")
        {
            match WindowData::read(e) {
                Some(Placed::After(start, w)) => windows.push((start, w)),
                Some(Placed::Before) => {}
                None => skipped += 1,
            }
        }
        windows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out = Exposure {
            skipped_windows: skipped,
            ..Exposure::default()
        };
        let first = windows.iter().find(|(start, w)| {
            *start < end
                && w.by_version
                    .get(versions.canary())
                    .is_some_and(|c| c.requests > 0)
        });
        let Some(&(from, _)) = first else {
            return out;
        };
        out.from_s = Some(from);
        let mut last_end = from;
        for (start, w) in windows.iter().filter(|(s, _)| *s >= from && *s < end) {
            out.windows += 1;
            out.seconds += w.dur_s;
            last_end = last_end.max(start + w.dur_s);
            let mut stratum = (Latencies::default(), Latencies::default());
            for (version, c) in &w.by_version {
                if version == versions.canary() {
                    out.canary.add(c);
                    stratum.0 = c.latencies();
                } else if version == versions.stable() {
                    out.stable.add(c);
                    stratum.1 = c.latencies();
                } else {
                    out.unattributed_requests =
                        out.unattributed_requests.saturating_add(c.requests);
                }
            }
            if stratum.0.count() > 0 && stratum.1.count() > 0 {
                out.strata.push(stratum);
            }
        }
        out.to_s = Some(if end.is_finite() { end } else { last_end });
        out
    }

    /// The canary's requests per second over the exposure; `None` without any.
    pub fn canary_rate(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.canary.requests > 0)
            .then(|| self.canary.requests as f64 / self.seconds)
    }

    /// The canary's answered requests per second over the exposure; `None` without any.
    pub fn canary_answer_rate(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.canary.latency_samples > 0)
            .then(|| self.canary.latency_samples as f64 / self.seconds)
    }
}

/// The part of `crate::load::stats::Window` the judge reads.
#[derive(Debug, Deserialize)]
struct WindowData {
    t_s: f64,
    dur_s: f64,
    #[serde(default)]
    by_version: BTreeMap<String, WindowCounts>,
}

#[derive(Debug, Deserialize)]
struct WindowCounts {
    #[serde(default)]
    requests: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    latency: BTreeMap<String, u64>,
}

impl WindowCounts {
    /// Keys that are not bucket bounds are ignored.
    fn latencies(&self) -> Latencies {
        Latencies::from_buckets(
            self.latency
                .iter()
                .filter_map(|(k, n)| k.parse::<u64>().ok().map(|upper| (upper, *n))),
        )
    }
}

enum Placed {
    /// Starts at this many seconds after the release.
    After(f64, WindowData),
    Before,
}

impl WindowData {
    /// Where a window lies. Its data is frozen when it closes: a window that closed before the
    /// release was marked counts from the timeline's creation, not from the release, so only
    /// the event's own (re-based) time tells that it came before. A window emitted after the
    /// release starts at its `t_s`, which cannot lie after its emission; one starting before 0
    /// was cut at the release.
    fn read(e: &Event) -> Option<Placed> {
        let w: WindowData = serde_json::from_value(e.data.clone()).ok()?;
        if !w.t_s.is_finite() || !w.dur_s.is_finite() || w.dur_s < 0.0 || !e.t_s.is_finite() {
            return None;
        }
        if e.t_s < 0.0 || w.t_s < 0.0 || w.t_s > e.t_s + 1e-6 {
            return Some(Placed::Before);
        }
        Some(Placed::After(w.t_s, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Counts;
    use serde_json::json;
    use std::time::Duration;

    fn window(at: f64, start: f64, dur: f64, by_version: serde_json::Value) -> Event {
        Event {
            t_s: at,
            source: Source::Load,
            kind: "window".into(),
            message: String::new(),
            data: json!({"t_s": start, "dur_s": dur, "by_version": by_version}),
            at: tokio::time::Instant::now(),
        }
    }

    fn counts(requests: u64, errors: u64, latency: serde_json::Value) -> serde_json::Value {
        json!({"requests": requests, "errors": errors, "transport_errors": 0, "by_status": {}, "latency": latency})
    }

    fn versions() -> Versions {
        Versions::new("1.0.0", "2.0.0").unwrap()
    }

    #[test]
    fn versions_must_differ_and_be_named() {
        assert!(Versions::new("1", "1").is_err());
        assert!(Versions::new("", "1").is_err());
        assert!(Versions::new("1", "").is_err());
        let v = versions();
        assert_eq!((v.stable(), v.canary()), ("1.0.0", "2.0.0"));
    }

    #[test]
    fn the_exposure_runs_from_the_canarys_first_window_to_the_decision() {
        let events = vec![
            // Closed before the release: its t_s counts from the timeline's creation.
            window(
                -0.5,
                3.2,
                1.0,
                json!({"1.0.0": counts(40, 0, json!({"1000": 40}))}),
            ),
            // Cut at the release.
            window(
                0.001,
                -0.3,
                0.3,
                json!({"1.0.0": counts(12, 0, json!({"1000": 12}))}),
            ),
            window(
                1.0,
                0.0,
                1.0,
                json!({"1.0.0": counts(40, 0, json!({"1000": 40}))}),
            ),
            window(
                2.0,
                1.0,
                1.0,
                json!({
                    "1.0.0": counts(30, 0, json!({"1000": 30})),
                    "2.0.0": counts(10, 4, json!({"1122": 6, "1259": 4})),
                    "none": counts(2, 2, json!({})),
                }),
            ),
            window(
                3.0,
                2.0,
                1.0,
                json!({
                    "1.0.0": counts(32, 1, json!({"1000": 31})),
                    "2.0.0": counts(8, 2, json!({"1122": 8})),
                }),
            ),
            // Starts after the decision at 2.5 s.
            window(
                4.0,
                3.0,
                1.0,
                json!({"1.0.0": counts(40, 0, json!({"1000": 40}))}),
            ),
            // Unreadable.
            Event {
                data: json!("garbage"),
                ..window(5.0, 4.0, 1.0, json!({}))
            },
        ];
        let x = Exposure::from_timeline(&events, &versions(), Some(2.5));
        assert_eq!(x.from_s, Some(1.0));
        assert_eq!(x.to_s, Some(2.5));
        assert_eq!((x.windows, x.seconds), (2, 2.0));
        assert_eq!(
            (x.canary.requests, x.canary.errors, x.canary.latency_samples),
            (18, 6, 18)
        );
        assert_eq!(
            (x.stable.requests, x.stable.errors, x.stable.latency_samples),
            (62, 1, 61)
        );
        assert_eq!(x.unattributed_requests, 2);
        assert_eq!(x.skipped_windows, 1);
        assert_eq!(x.canary_rate(), Some(9.0));

        // Without a decision, to the end of the run.
        let x = Exposure::from_timeline(&events, &versions(), None);
        assert_eq!((x.windows, x.to_s), (3, Some(4.0)));
        assert_eq!(x.stable.requests, 102);
    }

    #[test]
    fn no_canary_no_exposure_and_nothing_breaks() {
        let x = Exposure::from_timeline(&[], &versions(), None);
        assert_eq!(x, Exposure::default());
        assert_eq!(x.canary_rate(), None);
        let events = vec![
            window(
                1.0,
                0.0,
                1.0,
                json!({"1.0.0": counts(40, 0, json!({"1000": 40}))}),
            ),
            window(f64::NAN, 0.0, 1.0, json!({})),
            window(2.0, 1.0, -1.0, json!({})),
            window(
                3.0,
                2.0,
                1.0,
                json!({"2.0.0": counts(3, 9, json!({"x": 1, "1000": 3}))}),
            ),
        ];
        let x = Exposure::from_timeline(&events, &versions(), Some(f64::NAN));
        assert_eq!(x.skipped_windows, 2);
        // Errors never exceed requests; unreadable buckets are ignored.
        assert_eq!(
            (x.canary.requests, x.canary.errors, x.canary.latency_samples),
            (3, 3, 3)
        );
        let x = Exposure::from_timeline(&events, &versions(), Some(1.5));
        assert_eq!(x.from_s, None);
    }

    /// The bucket keys the load generator writes are the ones read here, and the quantiles agree
    /// with the load generator's own.
    #[test]
    fn reads_the_load_generators_histograms() {
        let mut c = Counts::default();
        for ms in [1u64, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144] {
            c.record_answer(200, Duration::from_millis(ms));
        }
        let json = serde_json::to_value(&c).unwrap();
        let parsed: WindowCounts = serde_json::from_value(json).unwrap();
        let lat = parsed.latencies();
        assert_eq!(lat.count(), 11);
        for q in [0.1, 0.5, 0.95, 1.0] {
            let ours = lat.quantile_ms(q).unwrap();
            let theirs = c.latency.quantile_ms(q).unwrap();
            assert!(
                (ours - theirs).abs() / theirs < 0.01,
                "q {q}: {ours} vs {theirs}"
            );
        }
        // Each point lies inside its bucket, near the geometric middle.
        for ((ms, _), upper) in lat.points_ms().iter().zip(lat.buckets.keys()) {
            let upper_ms = *upper as f64 / 1000.0;
            assert!(*ms < upper_ms && *ms > upper_ms / 1.13, "{ms} {upper_ms}");
        }
        assert_eq!(Latencies::default().quantile_ms(0.5), None);
    }
}
