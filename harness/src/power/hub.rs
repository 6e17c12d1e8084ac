//! The rounds that close the loop between the simulated controllers and the synthetic data.
//!
//! Every simulated rollout runs ahead on its own virtual clock until it needs data: a
//! measurement at virtual second `t` asks [`Hub::need`] for the samples up to `t`. Until then
//! its controller has done everything it would have done by `t` (weights set, pods scaled:
//! all on the platform's log), and none of it depended on samples it has not read. When every
//! live rollout waits (or has finished), the coordinator writes each waiting rollout's series
//! up to the second it asked for, following its log, backfills them, restarts Prometheus and
//! releases them all ([`Hub::release`]). So the traffic in the data always follows the weights
//! the controller really set, including a weight held after a failed check: the loop is closed
//! exactly, at the cost of one backfill per round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A simulated rollout's number within the whole run.
pub type RolloutId = usize;

#[derive(Debug, Default)]
struct State {
    /// Rollouts neither waiting nor finished.
    running: usize,
    /// Rollouts waiting for data, with the last second each needs.
    waiting: BTreeMap<RolloutId, u64>,
    /// The last second written for each rollout.
    written: BTreeMap<RolloutId, u64>,
    round: u64,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// Why [`Hub::need`] gave up: the run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A rollout starts (before its thread is spawned).
    pub fn enter(&self, id: RolloutId) {
        let mut st = self.lock();
        st.running += 1;
        st.written.insert(id, 0);
    }

    /// A rollout has finished (its result already sent).
    pub fn leave(&self, id: RolloutId) {
        let mut st = self.lock();
        st.running -= 1;
        st.written.remove(&id);
        st.waiting.remove(&id);
        self.changed.notify_all();
    }

    /// Blocks the calling rollout until its samples up to `second` are queryable.
    ///
    /// # Errors
    /// [`Stopped`] when the run is being stopped.
    pub fn need(&self, id: RolloutId, second: u64) -> Result<(), Stopped> {
        let mut st = self.lock();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                // It runs again (to its end): count it as running, as a release would.
                if st.waiting.remove(&id).is_some() {
                    st.running += 1;
                }
                return Err(Stopped);
            }
            if st.written.get(&id).is_some_and(|w| *w >= second) {
                return Ok(());
            }
            if let std::collections::btree_map::Entry::Vacant(e) = st.waiting.entry(id) {
                e.insert(second);
                st.running -= 1;
                self.changed.notify_all();
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Coordinator: waits until no rollout is running, then hands over who waits for what.
    pub fn quiesce(&self) -> BTreeMap<RolloutId, u64> {
        let mut st = self.lock();
        while st.running > 0 && !self.stop.load(Ordering::SeqCst) {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.waiting.clone()
    }

    /// Coordinator: the waiting rollouts' data is written up to `written`; they run again.
    pub fn release(&self, written: &BTreeMap<RolloutId, u64>) {
        let mut st = self.lock();
        for (id, w) in written {
            st.written.insert(*id, *w);
            if st.waiting.remove(id).is_some() {
                st.running += 1;
            }
        }
        st.round += 1;
        self.changed.notify_all();
    }

    /// Rounds served so far.
    pub fn rounds(&self) -> u64 {
        self.lock().round
    }

    /// Stops the run: every waiting rollout gets [`Stopped`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _st = self.lock();
        self.changed.notify_all();
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_round_runs_once_every_rollout_waits_and_releases_them() {
        let hub = Arc::new(Hub::default());
        hub.enter(0);
        hub.enter(1);
        let h = hub.clone();
        let a = std::thread::spawn(move || h.need(0, 10));
        let h = hub.clone();
        let b = std::thread::spawn(move || {
            h.need(1, 5)?;
            h.leave(1);
            Ok::<_, Stopped>(())
        });
        let waiting = hub.quiesce();
        assert_eq!(waiting, BTreeMap::from([(0, 10), (1, 5)]));
        hub.release(&waiting);
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(b.join().unwrap(), Ok(()));
        // Rollout 0 still runs; it asks for data already there without waiting.
        assert_eq!(hub.need(0, 7), Ok(()));
        hub.leave(0);
        assert!(hub.quiesce().is_empty());
        assert_eq!(hub.rounds(), 1);
    }

    #[test]
    fn stopping_frees_the_waiting() {
        let hub = Arc::new(Hub::default());
        hub.enter(3);
        let h = hub.clone();
        let t = std::thread::spawn(move || h.need(3, 1));
        hub.quiesce();
        hub.stop();
        assert_eq!(t.join().unwrap(), Err(Stopped));
        // The stopped rollout runs to its end and leaves like any other.
        hub.leave(3);
        assert!(hub.quiesce().is_empty());
    }
}
