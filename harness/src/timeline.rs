//! The one event stream every part of a scenario writes to.
//!
//! The verdict and every report read only the timeline (and the load statistics), so anything a
//! report should show must arrive here as an [`Event`]. Writers hold a cheap clonable
//! [`Timeline`]; readers take an ordered [`Timeline::snapshot`] or [`Timeline::subscribe`] to the
//! live stream. Time is tokio's clock, so tests under `start_paused` see exact instants.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Who wrote an event; the closed set of the JSON report contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Controller,
    Analysis,
    Router,
    Pod,
    Fault,
    Load,
    Harness,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("a unit enum serializes");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the release; negative before it (provisioning, warm-up).
    pub t_s: f64,
    pub source: Source,
    /// A short machine-readable name, e.g. `weight`, `pod-ready`, `oom-killed`.
    pub kind: String,
    /// One line for people; shown in the terminal and in JUnit.
    pub message: String,
    /// Structured details; `null` when there are none.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Only meaningful while the run lives; an event read back from a JSON report gets the
    /// reading's instant, and nothing that draws a report looks at it.
    #[serde(skip, default = "Instant::now")]
    pub at: Instant,
}

struct Inner {
    origin: Instant,
    release: Option<Instant>,
    events: Vec<Event>,
}

/// A clonable handle to one scenario's event stream.
#[derive(Clone)]
pub struct Timeline {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Event>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Timeline {
            inner: Arc::new(Mutex::new(Inner {
                origin: Instant::now(),
                release: None,
                events: Vec::new(),
            })),
            tx,
        }
    }

    /// Marks the release: from now on `t_s` counts from here. Events already recorded are
    /// re-based so that the whole stream shares one origin.
    pub fn mark_release(&self) -> Instant {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.release = Some(now);
        for e in &mut inner.events {
            e.t_s = signed_secs(e.at, now);
        }
        now
    }

    /// The release instant, once marked.
    pub fn release(&self) -> Option<Instant> {
        self.lock().release
    }

    /// Records an event now.
    pub fn emit(
        &self,
        source: Source,
        kind: impl Into<String>,
        message: impl Into<String>,
        data: serde_json::Value,
    ) {
        let at = Instant::now();
        let event = {
            let mut inner = self.lock();
            let base = inner.release.unwrap_or(inner.origin);
            let event = Event {
                t_s: signed_secs(at, base),
                source,
                kind: kind.into(),
                message: message.into(),
                data,
                at,
            };
            inner.events.push(event.clone());
            event
        };
        tracing::debug!(source = %event.source, kind = %event.kind, "{}", event.message);
        let _ = self.tx.send(event);
    }

    /// Every event so far, in the order written.
    pub fn snapshot(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Events written from now on. A slow reader that falls 1024 events behind loses the oldest;
    /// use [`Timeline::snapshot`] for the complete record.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the vector half-written, so a poisoned
        // lock is still a consistent record worth reporting.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn signed_secs(at: Instant, base: Instant) -> f64 {
    if at >= base {
        (at - base).as_secs_f64()
    } else {
        -(base - at).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn times_count_from_the_release_and_earlier_events_go_negative() {
        let tl = Timeline::new();
        tl.emit(
            Source::Harness,
            "provisioned",
            "stack up",
            serde_json::Value::Null,
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        tl.mark_release();
        tokio::time::advance(Duration::from_millis(1500)).await;
        tl.emit(
            Source::Router,
            "weight",
            "canary weight 20",
            serde_json::json!({"weight": 20}),
        );
        let events = tl.snapshot();
        assert_eq!(events.len(), 2);
        assert!((events[0].t_s + 5.0).abs() < 1e-9, "{}", events[0].t_s);
        assert!((events[1].t_s - 1.5).abs() < 1e-9, "{}", events[1].t_s);
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["source"], "router");
        assert!(json.get("at").is_none());
    }

    #[tokio::test]
    async fn subscribers_see_live_events() {
        let tl = Timeline::new();
        let mut rx = tl.subscribe();
        tl.emit(Source::Pod, "ready", "pod ready", serde_json::Value::Null);
        let e = rx.recv().await.unwrap();
        assert_eq!(e.kind, "ready");
    }
}
