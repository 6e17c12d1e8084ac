//! Per-version accounting of the load in one-second windows.
//!
//! Every request ends in exactly one [`Counts`] bucket: the version its response named in
//! `X-App-Version` (or [`NO_VERSION`]), in the window during which it *completed*. Windows lie on
//! a one-second grid anchored at the release once the release is marked (before that, at the
//! first request), so `between(0.0, d)` starts exactly at the release. The window that is open
//! when the release is marked is cut there, and the last window is cut at `stop()`; those two
//! are shorter than a second, which [`Window::dur_s`] records.
//!
//! Each window goes to the timeline as a `load`/`window` event when it closes, with the
//! [`Window`] as its data. That data is frozen at emission: a window emitted before the release
//! is marked has its `t_s` on the timeline's pre-release base (the event's own `t_s` is re-based
//! by the timeline; [`LoadStats`] always uses the current base).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::timeline::{Source, Timeline};

/// The version key of requests without an `X-App-Version` header, or without any response.
pub const NO_VERSION: &str = "none";

/// Latency histogram with fixed, shared bucket bounds: 20 buckets per decade (each about 12 %
/// wider than the previous) from 10 µs to 100 s. Values beyond either end land in the first or
/// last bucket. Two histograms merge by adding counts bucket by bucket, so windows, versions and
/// runs combine exactly. Serialized sparsely as `{"<bucket upper bound in µs>": count}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Histogram {
    buckets: BTreeMap<u64, u64>,
}

/// Buckets per decade of [`Histogram`].
const PER_DECADE: u32 = 20;
/// Lowest and highest bucket upper bounds, as powers of ten in µs: 10 µs ..= 100 s.
const FIRST_DECADE: u32 = 1;
const LAST_DECADE: u32 = 8;

/// The upper bounds (µs) of every histogram bucket, ascending and distinct.
fn bounds() -> &'static [u64] {
    static BOUNDS: OnceLock<Vec<u64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        let steps = (LAST_DECADE - FIRST_DECADE) * PER_DECADE;
        let mut v: Vec<u64> = (0..=steps)
            .map(|i| {
                let exp = f64::from(FIRST_DECADE) + f64::from(i) / f64::from(PER_DECADE);
                10f64.powf(exp).round() as u64
            })
            .collect();
        v.dedup();
        v
    })
}

impl Histogram {
    /// Counts one observation.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let b = bounds();
        let i = b.partition_point(|&upper| upper < us).min(b.len() - 1);
        *self.buckets.entry(b[i]).or_default() += 1;
    }

    /// Adds every observation of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (upper, n) in &other.buckets {
            *self.buckets.entry(*upper).or_default() += n;
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The `q` quantile (0 < q <= 1) in milliseconds, interpolated linearly inside its bucket
    /// (so within about 12 % of the true value); `None` without observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let b = bounds();
        let mut below = 0u64;
        for (&upper, &count) in &self.buckets {
            if below + count >= rank {
                let i = b.partition_point(|&x| x < upper);
                let lower = if i == 0 { 0 } else { b[i - 1] };
                let within = (rank - below) as f64 / count as f64;
                let us = lower as f64 + (upper - lower) as f64 * within;
                return Some(us / 1000.0);
            }
            below += count;
        }
        None
    }
}

/// What one version got in one window (or a sum of windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Every request that completed, answered or not (a resent request counts once).
    pub requests: u64,
    /// Answers with status >= 500 plus requests with no (complete) answer.
    pub errors: u64,
    /// Requests with no (complete) answer: connection refused or reset, a timeout (10 s), or a
    /// body cut off midway. Included in `errors`.
    pub transport_errors: u64,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Latency of answered requests (first byte sent to last body byte read).
    pub latency: Histogram,
}

impl Counts {
    /// Counts one answered request.
    pub fn record_answer(&mut self, status: u16, latency: Duration) {
        self.requests += 1;
        if status >= 500 {
            self.errors += 1;
        }
        *self.by_status.entry(status).or_default() += 1;
        self.latency.record(latency);
    }

    /// Counts one request that got no (complete) answer.
    pub fn record_transport_error(&mut self) {
        self.requests += 1;
        self.errors += 1;
        self.transport_errors += 1;
    }

    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.transport_errors += other.transport_errors;
        for (status, n) in &other.by_status {
            *self.by_status.entry(*status).or_default() += n;
        }
        self.latency.merge(&other.latency);
    }

    /// `errors / requests`; 0 without requests.
    pub fn error_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// 95th percentile latency in ms of the answered requests; `None` without any.
    pub fn p95_ms(&self) -> Option<f64> {
        self.latency.quantile_ms(0.95)
    }
}

/// One window of the load, normally one second long; read back from its timeline event by
/// the report's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start of this window in timeline seconds (seconds since the release, negative before
    /// it; before the release is marked, seconds since the timeline was created).
    pub t_s: f64,
    /// Length in seconds: 1.0, except for the window cut at the release, the last window (cut
    /// at `stop()`), and the still-open window of a `snapshot()`.
    pub dur_s: f64,
    pub by_version: BTreeMap<String, Counts>,
}

impl Window {
    /// All versions together.
    pub fn total(&self) -> Counts {
        let mut all = Counts::default();
        for c in self.by_version.values() {
            all.merge(c);
        }
        all
    }

    /// One line for people: `50 requests, 5 errors; 1.0.0: 25/0, 2.0.0: 25/5 requests/errors`.
    pub fn summary(&self) -> String {
        let all = self.total();
        let per: Vec<String> = self
            .by_version
            .iter()
            .map(|(v, c)| format!("{v}: {}/{}", c.requests, c.errors))
            .collect();
        let mut line = format!("{} requests, {} errors", all.requests, all.errors);
        if all.transport_errors > 0 {
            line.push_str(&format!(" ({} without answer)", all.transport_errors));
        }
        if !per.is_empty() {
            line.push_str(&format!("; {} requests/errors", per.join(", ")));
        }
        line
    }
}

/// Everything the load saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadStats {
    /// Consecutive windows, oldest first, from the first request to `stop()` (or to now for a
    /// `snapshot()`).
    pub windows: Vec<Window>,
    /// Requests sent a second time because the connection closed before any response (the
    /// rule of [`crate::load::client`]).
    pub resent: u64,
}

impl LoadStats {
    /// Per version, summed over the windows whose start lies in `[from_s, to_s)`.
    pub fn between(&self, from_s: f64, to_s: f64) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for w in self
            .windows
            .iter()
            .filter(|w| w.t_s >= from_s && w.t_s < to_s)
        {
            for (v, c) in &w.by_version {
                out.entry(v.clone()).or_default().merge(c);
            }
        }
        out
    }

    /// All versions summed over the windows whose start lies in `[from_s, to_s)`.
    pub fn total_between(&self, from_s: f64, to_s: f64) -> Counts {
        let mut all = Counts::default();
        for c in self.between(from_s, to_s).values() {
            all.merge(c);
        }
        all
    }

    /// 95th percentile latency in ms of all answered requests in windows starting in
    /// `[from_s, to_s)`; `None` if none was answered.
    pub fn p95_ms(&self, from_s: f64, to_s: f64) -> Option<f64> {
        self.total_between(from_s, to_s).p95_ms()
    }

    /// Requests per second over the whole run: all requests over the summed window lengths
    /// (first request to stop). 0 before any window.
    pub fn measured_rate(&self) -> f64 {
        let secs: f64 = self.windows.iter().map(|w| w.dur_s).sum();
        if secs <= 0.0 {
            return 0.0;
        }
        let requests: u64 = self
            .windows
            .iter()
            .flat_map(|w| w.by_version.values())
            .map(|c| c.requests)
            .sum();
        requests as f64 / secs
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Answered { status: u16, latency: Duration },
    NoAnswer,
}

const SECOND: Duration = Duration::from_secs(1);

struct Open {
    start: Instant,
    end: Instant,
    by_version: BTreeMap<String, Counts>,
}

struct Closed {
    start: Instant,
    end: Instant,
    by_version: BTreeMap<String, Counts>,
}

/// Collects outcomes into windows and emits each closed window to the timeline.
pub(crate) struct Recorder {
    timeline: Timeline,
    /// The timeline's time base before a release is marked (its creation), when known.
    origin: Option<Instant>,
    /// The release instant the grid is anchored at, once seen.
    anchor: Option<Instant>,
    open: Option<Open>,
    closed: Vec<Closed>,
    resent: u64,
    /// Set by `finish()`: later outcomes (requests in flight at the stop) are not counted.
    finished: bool,
}

impl Recorder {
    pub(crate) fn new(timeline: Timeline) -> Self {
        Recorder {
            timeline,
            origin: None,
            anchor: None,
            open: None,
            closed: Vec::new(),
            resent: 0,
            finished: false,
        }
    }

    /// `origin`: the timeline's base while no release is marked (see [`timeline_origin`]).
    pub(crate) fn set_origin(&mut self, origin: Option<Instant>) {
        self.origin = origin;
    }

    /// Opens the first window at `now` if none is open yet (the first request).
    pub(crate) fn begin(&mut self, now: Instant) {
        if self.open.is_none() && self.closed.is_empty() && !self.finished {
            let release = self.timeline.release();
            let end = match release {
                Some(r) if r <= now => {
                    self.anchor = Some(r);
                    next_grid_point(r, now)
                }
                _ => now + SECOND,
            };
            self.open = Some(Open {
                start: now,
                end,
                by_version: BTreeMap::new(),
            });
        }
    }

    /// Counts one outcome that completed at `at`.
    pub(crate) fn record(&mut self, at: Instant, version: &str, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.begin(at);
        self.advance(at);
        let open = self.open.as_mut().expect("a window is open after begin()");
        let counts = open.by_version.entry(version.to_string()).or_default();
        match outcome {
            Outcome::Answered { status, latency } => counts.record_answer(status, latency),
            Outcome::NoAnswer => counts.record_transport_error(),
        }
    }

    pub(crate) fn count_resend(&mut self) {
        if self.finished {
            return;
        }
        self.resent += 1;
    }

    /// Closes (and emits) every window that ended by `now`, cutting the open window at the
    /// release if one was marked since.
    pub(crate) fn advance(&mut self, now: Instant) {
        if self.open.is_none() {
            return;
        }
        if let Some(r) = self.timeline.release()
            && self.anchor != Some(r)
        {
            self.anchor = Some(r);
            self.roll_until(r.min(now));
            let open = self.open.as_mut().expect("open");
            if r > open.start && r <= now {
                self.close_at(r);
            } else if r <= open.start {
                open.end = next_grid_point(r, open.start);
            }
        }
        self.roll_until(now);
    }

    /// Closes the open window at `now` (the run ended); nothing stays open.
    pub(crate) fn finish(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.advance(now);
        if let Some(open) = self.open.take() {
            let end = now.max(open.start);
            self.push_closed(Closed {
                start: open.start,
                end,
                by_version: open.by_version,
            });
        }
    }

    /// The statistics so far; the open window is included as a partial one ending `now`.
    pub(crate) fn stats(&self, now: Instant) -> LoadStats {
        let base = self.base();
        let mut windows: Vec<Window> = self
            .closed
            .iter()
            .map(|c| window(base, c.start, c.end, &c.by_version))
            .collect();
        if let Some(open) = &self.open {
            let end = now.clamp(open.start, open.end);
            windows.push(window(base, open.start, end, &open.by_version));
        }
        LoadStats {
            windows,
            resent: self.resent,
        }
    }

    /// Where timeline seconds count from right now.
    fn base(&self) -> Option<Instant> {
        self.timeline.release().or(self.origin)
    }

    fn roll_until(&mut self, now: Instant) {
        while let Some(open) = &self.open
            && open.end <= now
        {
            let end = open.end;
            self.close_at(end);
        }
    }

    /// Closes the open window at `end` and opens the next one there.
    fn close_at(&mut self, end: Instant) {
        let open = self.open.take().expect("open");
        let next_end = match self.anchor {
            Some(r) if r <= end => next_grid_point(r, end),
            _ => end + SECOND,
        };
        self.push_closed(Closed {
            start: open.start,
            end,
            by_version: open.by_version,
        });
        self.open = Some(Open {
            start: end,
            end: next_end,
            by_version: BTreeMap::new(),
        });
    }

    fn push_closed(&mut self, closed: Closed) {
        let w = window(self.base(), closed.start, closed.end, &closed.by_version);
        let data = serde_json::to_value(&w).unwrap_or(serde_json::Value::Null);
        self.timeline
            .emit(Source::Load, "window", w.summary(), data);
        self.closed.push(closed);
    }
}

/// The first point `anchor + k s` (k integer) strictly after `t`.
fn next_grid_point(anchor: Instant, t: Instant) -> Instant {
    if t < anchor {
        let behind = (anchor - t).as_secs_f64();
        return anchor - Duration::from_secs(behind.floor() as u64);
    }
    let ahead = (t - anchor).as_secs_f64();
    anchor + Duration::from_secs(ahead.floor() as u64 + 1)
}

fn window(
    base: Option<Instant>,
    start: Instant,
    end: Instant,
    by_version: &BTreeMap<String, Counts>,
) -> Window {
    let base = base.unwrap_or(start);
    Window {
        t_s: signed_secs(start, base),
        dur_s: (end.saturating_duration_since(start)).as_secs_f64(),
        by_version: by_version.clone(),
    }
}

pub(crate) fn signed_secs(at: Instant, base: Instant) -> f64 {
    if at >= base {
        (at - base).as_secs_f64()
    } else {
        -(base - at).as_secs_f64()
    }
}

/// The instant the timeline counts from while no release is marked (its creation), read back
/// from its recorded events (`at - t_s`). `None` when the timeline holds no event yet, or a
/// release is marked (then the release is the base and the origin is not needed).
pub(crate) fn timeline_origin(timeline: &Timeline) -> Option<Instant> {
    if timeline.release().is_some() {
        return None;
    }
    let events = timeline.snapshot();
    if timeline.release().is_some() {
        return None;
    }
    let e = events.last()?;
    if e.t_s >= 0.0 {
        e.at.checked_sub(Duration::from_secs_f64(e.t_s))
    } else {
        e.at.checked_add(Duration::from_secs_f64(-e.t_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn bounds_are_ascending_and_span_10us_to_100s() {
        let b = bounds();
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(b[0], 10);
        assert_eq!(*b.last().unwrap(), 100_000_000);
        // About 12 % apart above the rounding noise of the first buckets.
        for w in b.windows(2).filter(|w| w[0] >= 1000) {
            let ratio = w[1] as f64 / w[0] as f64;
            assert!((1.10..1.14).contains(&ratio), "{w:?}");
        }
    }

    #[test]
    fn quantiles_are_close_and_histograms_merge_exactly() {
        let mut a = Histogram::default();
        for i in 1..=100 {
            a.record(ms(i));
        }
        let p95 = a.quantile_ms(0.95).unwrap();
        assert!((p95 - 95.0).abs() / 95.0 < 0.12, "{p95}");
        let p50 = a.quantile_ms(0.5).unwrap();
        assert!((p50 - 50.0).abs() / 50.0 < 0.12, "{p50}");
        assert_eq!(Histogram::default().quantile_ms(0.95), None);

        let mut b = Histogram::default();
        for i in 101..=200 {
            b.record(ms(i));
        }
        let mut both = a.clone();
        both.merge(&b);
        let mut direct = Histogram::default();
        for i in 1..=200 {
            direct.record(ms(i));
        }
        assert_eq!(both, direct);
        assert_eq!(both.count(), 200);
        // Out of range values are clamped, not lost.
        let mut edge = Histogram::default();
        edge.record(Duration::from_nanos(1));
        edge.record(Duration::from_secs(1000));
        assert_eq!(edge.count(), 2);
    }

    #[test]
    fn counts_classify_and_merge() {
        let mut c = Counts::default();
        c.record_answer(200, ms(5));
        c.record_answer(503, ms(7));
        c.record_transport_error();
        assert_eq!((c.requests, c.errors, c.transport_errors), (3, 2, 1));
        assert_eq!(c.by_status, BTreeMap::from([(200, 1), (503, 1)]));
        assert_eq!(c.latency.count(), 2);
        let mut d = c.clone();
        d.merge(&c);
        assert_eq!((d.requests, d.errors, d.transport_errors), (6, 4, 2));
        assert_eq!(d.by_status[&503], 2);
        assert!((c.error_share() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(Counts::default().error_share(), 0.0);
        assert!(c.p95_ms().unwrap() > 5.0);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["by_status"]["503"], 1);
        assert!(json["latency"].is_object());
    }

    #[test]
    fn grid_points() {
        let a = Instant::now();
        assert_eq!(next_grid_point(a, a), a + SECOND);
        assert_eq!(next_grid_point(a, a + ms(1500)), a + ms(2000));
        assert_eq!(next_grid_point(a, a + ms(2000)), a + ms(3000));
        assert_eq!(next_grid_point(a + ms(2000), a + ms(300)), a + ms(1000));
    }

    fn ok(at: u64) -> Outcome {
        Outcome::Answered {
            status: 200,
            latency: ms(at),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn windows_roll_every_second_and_realign_at_the_release() {
        let tl = Timeline::new();
        tl.emit(Source::Harness, "begin", "test", serde_json::Value::Null);
        let origin = timeline_origin(&tl).unwrap();
        let mut r = Recorder::new(tl.clone());
        r.set_origin(Some(origin));
        tokio::time::advance(ms(500)).await;
        let t0 = Instant::now();
        r.begin(t0);
        r.record(t0 + ms(100), "1.0.0", ok(3));
        r.record(t0 + ms(900), "none", Outcome::NoAnswer);
        // Second window [1 s, 2 s) relative to t0.
        r.record(t0 + ms(1200), "2.0.0", ok(4));
        // The release comes at t0 + 1.6 s: the second window is cut there.
        tokio::time::advance(ms(1600)).await;
        let release = tl.mark_release();
        assert_eq!(release, t0 + ms(1600));
        tokio::time::advance(ms(100)).await;
        r.record(Instant::now(), "2.0.0", ok(5)); // t0 + 1.7 s, first post-release window
        tokio::time::advance(ms(1000)).await;
        r.advance(Instant::now()); // t0 + 2.7 s: the window [1.6, 2.6) closed
        tokio::time::advance(ms(200)).await;
        r.record(Instant::now(), "1.0.0", ok(6)); // release + 1.3 s
        r.finish(Instant::now()); // release + 1.3 s
        r.record(Instant::now(), "1.0.0", ok(1)); // in flight at the stop: not counted
        r.count_resend();

        let stats = r.stats(Instant::now());
        let starts: Vec<f64> = stats.windows.iter().map(|w| w.t_s).collect();
        let durs: Vec<f64> = stats.windows.iter().map(|w| w.dur_s).collect();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&starts, &[-1.6, -0.6, 0.0, 1.0]), "{starts:?}");
        assert!(close(&durs, &[1.0, 0.6, 1.0, 0.3]), "{durs:?}");
        assert_eq!(stats.windows[0].by_version["1.0.0"].requests, 1);
        assert_eq!(stats.windows[0].by_version["none"].transport_errors, 1);
        assert_eq!(stats.windows[1].by_version["2.0.0"].requests, 1);
        assert_eq!(stats.windows[2].by_version["2.0.0"].requests, 1);
        assert_eq!(stats.windows[3].by_version["1.0.0"].requests, 1);

        // between() sums windows by start; the release starts a window of its own.
        let after = stats.between(0.0, 10.0);
        assert_eq!(after["2.0.0"].requests, 1);
        assert_eq!(after["1.0.0"].requests, 1);
        assert!(!after.contains_key("none"));
        let before = stats.between(-10.0, 0.0);
        assert_eq!(before["none"].errors, 1);
        assert_eq!(stats.total_between(-10.0, 10.0).requests, 5);
        assert_eq!(stats.resent, 0);
        assert!((stats.measured_rate() - 5.0 / 2.9).abs() < 1e-6);
        assert!(stats.p95_ms(0.0, 10.0).unwrap() > 4.0);
        assert_eq!(stats.p95_ms(5.0, 10.0), None);

        // Every closed window went to the timeline, re-based like the other events.
        let events: Vec<_> = tl
            .snapshot()
            .into_iter()
            .filter(|e| e.source == Source::Load && e.kind == "window")
            .collect();
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0].message,
            "2 requests, 1 errors (1 without answer); 1.0.0: 1/0, none: 1/1 requests/errors"
        );
        assert_eq!(events[3].data["by_version"]["1.0.0"]["requests"], 1);
        // Windows closed after the release carry release-based starts.
        assert!((events[2].data["t_s"].as_f64().unwrap() - 0.0).abs() < 1e-6);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_seconds_still_make_windows_and_a_snapshot_shows_the_open_one() {
        let tl = Timeline::new();
        tl.mark_release();
        let mut r = Recorder::new(tl.clone());
        tokio::time::advance(ms(250)).await;
        let t0 = Instant::now();
        r.record(t0, "1.0.0", ok(1)); // opens the first window, aligned to the release grid
        tokio::time::advance(ms(3000)).await;
        r.advance(Instant::now()); // 3.25 s
        let s = r.stats(Instant::now());
        let starts: Vec<f64> = s.windows.iter().map(|w| w.t_s).collect();
        assert_eq!(starts.len(), 4, "{starts:?}");
        assert!((starts[0] - 0.25).abs() < 1e-6 && (s.windows[0].dur_s - 0.75).abs() < 1e-6);
        assert!((starts[1] - 1.0).abs() < 1e-6);
        assert!((starts[3] - 3.0).abs() < 1e-6 && (s.windows[3].dur_s - 0.25).abs() < 1e-6);
        assert!(s.windows[2].by_version.is_empty());
        assert!((s.measured_rate() - 1.0 / 3.0).abs() < 1e-6);
    }
}
