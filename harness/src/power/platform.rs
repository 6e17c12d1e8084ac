//! The [`Platform`] a simulated rollout's controller acts on: no processes, only a record.
//!
//! Every verb (a revision created, scaled, the Services or the canary weight set) is logged
//! with its virtual time, and the same log is replayed by the series writer
//! ([`super::series`]), so the traffic a second sees follows exactly what the controller had
//! done by then. Pods start at once and are ready [`READY_AFTER`] later (the fixtures' 1 s
//! readiness probe), available `minReadySeconds` after that; nothing crashes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::model::Faults;
use crate::cluster::{
    CanaryRoute, InfraError, Platform, PodStatus, PodTemplate, ReplicaCounts, RevisionHash,
    Services,
};

/// How long a new pod takes to become ready.
pub const READY_AFTER: Duration = Duration::from_secs(1);

/// What the series need to know of a revision's pod template.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    /// Pods are `<workload>-<hash>-<suffix>`.
    pub workload: String,
    pub container: String,
    pub labels: BTreeMap<String, String>,
    pub faults: Faults,
    pub memory_limit: Option<u64>,
    pub min_ready: Duration,
}

impl RevisionInfo {
    fn of(t: &PodTemplate) -> RevisionInfo {
        RevisionInfo {
            workload: t.workload.clone(),
            container: t.container.clone(),
            labels: t.labels.clone(),
            faults: Faults::from_env(&t.env),
            memory_limit: t.memory_limit,
            min_ready: t.min_ready,
        }
    }
}

/// One verb of the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Revision(RevisionHash, RevisionInfo),
    Scale(RevisionHash, u32),
    Services(Services),
    /// The canary's share of unpinned traffic, percent.
    Weight(f64),
}

/// A change at a virtual time (seconds since the rollout's start).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: f64,
    pub change: Change,
}

/// The log a rollout's platform writes and its series writer reads.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    pub fn push(&self, at: f64, change: Change) {
        self.lock().push(Event { at, change });
    }

    /// The events from index `from` on.
    pub fn since(&self, from: usize) -> Vec<Event> {
        self.lock()
            .get(from..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        // A panic elsewhere while pushing leaves a whole Vec; keep reading it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pod: its name and when it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub name: String,
    pub started: f64,
}

impl Pod {
    pub fn ready(&self, at: f64) -> bool {
        at >= self.started + READY_AFTER.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct Revision {
    pub info: RevisionInfo,
    pub pods: Vec<Pod>,
    next_pod: u32,
}

/// The state the log describes: revisions and their pods, where the Services point, the
/// weight. Both the platform (now) and the series writer (second by second) keep one.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub revisions: BTreeMap<RevisionHash, Revision>,
    pub services: Option<Services>,
    pub weight: f64,
}

impl World {
    pub fn apply(&mut self, e: &Event) {
        match &e.change {
            Change::Revision(hash, info) => {
                self.revisions
                    .entry(hash.clone())
                    .or_insert_with(|| Revision {
                        info: info.clone(),
                        pods: Vec::new(),
                        next_pod: 0,
                    });
            }
            Change::Scale(hash, n) => {
                if let Some(r) = self.revisions.get_mut(hash) {
                    let n = *n as usize;
                    while r.pods.len() > n {
                        r.pods.pop();
                    }
                    while r.pods.len() < n {
                        let name =
                            format!("{}-{}-{}", r.info.workload, hash, pod_suffix(r.next_pod));
                        r.next_pod += 1;
                        r.pods.push(Pod {
                            name,
                            started: e.at,
                        });
                    }
                }
            }
            Change::Services(s) => self.services = Some(s.clone()),
            Change::Weight(w) => self.weight = *w,
        }
    }

    /// The ready pods of `hash` at `at`.
    pub fn ready_pods(&self, hash: &RevisionHash, at: f64) -> Vec<&Pod> {
        self.revisions
            .get(hash)
            .map(|r| r.pods.iter().filter(|p| p.ready(at)).collect())
            .unwrap_or_default()
    }

    fn counts(&self, hash: &RevisionHash, desired: u32, at: f64) -> ReplicaCounts {
        let Some(r) = self.revisions.get(hash) else {
            return ReplicaCounts::default();
        };
        let min_ready = r.info.min_ready.as_secs_f64();
        ReplicaCounts {
            desired,
            current: r.pods.len() as u32,
            ready: r.pods.iter().filter(|p| p.ready(at)).count() as u32,
            available: r.pods.iter().filter(|p| p.ready(at - min_ready)).count() as u32,
        }
    }
}

/// A pod name's random-looking tail: five characters of Kubernetes' alphabet.
fn pod_suffix(i: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = super::model::mix(u64::from(i)) as usize;
    (0..5)
        .map(|_| {
            let c = ALPHABET[n % ALPHABET.len()] as char;
            n /= ALPHABET.len();
            c
        })
        .collect()
}

/// The simulated platform; see the module doc.
pub struct VirtualPlatform {
    start: Instant,
    log: Log,
    world: World,
    desired: BTreeMap<RevisionHash, u32>,
}

impl VirtualPlatform {
    /// A platform whose clock starts now (call inside the rollout's paused runtime).
    pub fn new(log: Log) -> VirtualPlatform {
        VirtualPlatform {
            start: Instant::now(),
            log,
            world: World::default(),
            desired: BTreeMap::new(),
        }
    }

    /// Virtual seconds since the rollout's start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn record(&mut self, change: Change) {
        let e = Event {
            at: self.now(),
            change,
        };
        self.world.apply(&e);
        self.log.push(e.at, e.change);
    }
}

impl Platform for VirtualPlatform {
    async fn create_revision(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        self.record(Change::Revision(hash, RevisionInfo::of(&template)));
        Ok(())
    }

    async fn scale(&mut self, hash: &RevisionHash, replicas: u32) -> Result<(), InfraError> {
        if !self.world.revisions.contains_key(hash) {
            return Err(InfraError::UnknownRevision(hash.clone()));
        }
        if self.desired.get(hash) != Some(&replicas) {
            self.desired.insert(hash.clone(), replicas);
            self.record(Change::Scale(hash.clone(), replicas));
        }
        Ok(())
    }

    async fn set_services(&mut self, services: Services) -> Result<(), InfraError> {
        if self.world.services.as_ref() != Some(&services) {
            self.record(Change::Services(services));
        }
        Ok(())
    }

    async fn set_canary_route(&mut self, route: CanaryRoute) -> Result<(), InfraError> {
        let w = route.percent();
        if self.world.weight != w {
            self.record(Change::Weight(w));
        }
        Ok(())
    }

    fn replica_counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        let desired = self.desired.get(hash).copied().unwrap_or(0);
        self.world.counts(hash, desired, self.now())
    }

    fn pods(&self) -> Vec<PodStatus> {
        let now = self.now();
        self.world
            .revisions
            .iter()
            .flat_map(|(hash, r)| {
                let min_ready = r.info.min_ready.as_secs_f64();
                r.pods.iter().map(move |p| PodStatus {
                    name: p.name.clone(),
                    revision: hash.clone(),
                    port: None,
                    pid: None,
                    running: true,
                    ready: p.ready(now),
                    available: p.ready(now - min_ready),
                    restarts: 0,
                    last_termination: None,
                    backing_off: false,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplate {
        PodTemplate {
            workload: "app".into(),
            container: "c".into(),
            env: vec![("FAULT_ERROR_RATE".into(), "0.1".into())],
            args: vec![],
            labels: BTreeMap::new(),
            memory_limit: None,
            readiness: Default::default(),
            min_ready: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pods_become_ready_then_available_on_the_virtual_clock() {
        let log = Log::default();
        let mut p = VirtualPlatform::new(log.clone());
        let h = RevisionHash("abc".into());
        p.create_revision(h.clone(), template()).await.unwrap();
        p.scale(&h, 2).await.unwrap();
        assert_eq!(p.replica_counts(&h).ready, 0);
        tokio::time::sleep(READY_AFTER).await;
        let c = p.replica_counts(&h);
        assert_eq!((c.desired, c.current, c.ready, c.available), (2, 2, 2, 0));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(p.replica_counts(&h).available, 2);
        p.set_canary_route(CanaryRoute::weight(20)).await.unwrap();
        let events = log.since(0);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].change, Change::Weight(20.0));
        assert_eq!(events[2].at, 3.0);
        let Change::Revision(_, info) = &events[0].change else {
            panic!("{events:?}")
        };
        assert_eq!(info.faults.error_share, 0.1);
        let pods = p.pods();
        assert!(pods[0].name.starts_with("app-abc-") && pods[0].name.len() == 13);
        assert_ne!(pods[0].name, pods[1].name);
    }
}
