//! A simulated rollout's own data, written just before each of its measurements.
//!
//! Data for a rollout up to virtual second `t` depend only on its platform log up to `t`
//! (the weights, revisions and pods its controller set) and on the seeded draws of each second.
//! When the controller measures at `t` it has done everything it would do by `t`, and nothing
//! of it depended on samples it has not read, because every read of the policy is a query. So
//! right before the query the rollout's thread writes its own series up to `t` (following the
//! log second by second) and sends them to Prometheus; the data follow exactly the weights the
//! controller set, a held weight included, and no rollout waits for any other.

use std::sync::{Arc, Mutex};

use super::bridge::Bridge;
use super::platform::Log;
use super::remote;
use super::series::{RolloutSeries, Wanted};

/// The series writer of one rollout with the log it follows.
pub struct Feed {
    writer: RolloutSeries,
    log: Log,
    wanted: Arc<Wanted>,
    base_unix: i64,
}

impl Feed {
    pub fn new(writer: RolloutSeries, log: Log, wanted: Arc<Wanted>, base_unix: i64) -> Feed {
        Feed {
            writer,
            log,
            wanted,
            base_unix,
        }
    }

    /// Makes the rollout's samples up to `second` queryable, writing what is missing.
    ///
    /// # Errors
    /// Prometheus refused or missed the samples.
    pub fn up_to(&mut self, second: u64, bridge: &Bridge) -> Result<(), String> {
        if second <= self.writer.written() {
            return Ok(());
        }
        let events = self.log.since(self.writer.cursor());
        let mut text = String::new();
        self.writer
            .write_until(events, second, self.base_unix, &self.wanted, &mut text);
        if text.is_empty() {
            return Ok(());
        }
        let (body, samples) = remote::body(&text)?;
        bridge.write(body, samples)
    }
}

/// A [`Feed`] shared by the clones of a rollout's metric source (all on its own thread).
pub type SharedFeed = Arc<Mutex<Feed>>;
