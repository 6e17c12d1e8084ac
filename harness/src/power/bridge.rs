//! Queries from the simulated rollouts' threads to Prometheus.
//!
//! A simulated rollout runs on its own paused tokio runtime, whose clock jumps to the next
//! timer whenever the runtime has nothing to do, waiting for a socket included. A real HTTP
//! request there would let the clock run on (and the controller's timeouts fire) while
//! Prometheus answers. So the rollout's thread hands the query to this bridge's own runtime
//! (real time) and blocks until the answer is back: the virtual clock stands still during a
//! query, as a query takes no time in the policy's world.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::PowerError;
use crate::prom::{PromClient, PromError, QueryValue};

/// At most this many queries in flight at once: Prometheus serves 20 concurrently by default.
const IN_FLIGHT: usize = 16;

pub struct Bridge {
    rt: tokio::runtime::Runtime,
    client: RwLock<Option<PromClient>>,
    permits: Arc<Semaphore>,
    queries: AtomicU64,
}

impl Bridge {
    /// # Errors
    /// The runtime cannot start.
    pub fn new() -> Result<Bridge, PowerError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("power-http")
            .enable_all()
            .build()
            .map_err(|e| PowerError::Infra(format!("starting the HTTP runtime: {e}")))?;
        Ok(Bridge {
            rt,
            client: RwLock::new(None),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            queries: AtomicU64::new(0),
        })
    }

    /// Points later queries at `base` (a restarted Prometheus).
    pub fn set_base(&self, base: &str) {
        let mut c = self.client.write().unwrap_or_else(|p| p.into_inner());
        *c = Some(PromClient::new(base));
    }

    fn client(&self) -> Option<PromClient> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the current server answers `/-/ready`. Call from outside any runtime.
    pub fn ready(&self) -> bool {
        match self.client() {
            Some(c) => self.rt.block_on(c.ready()),
            None => false,
        }
    }

    /// Queries sent so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// An instant query at unix time `time`; blocks the calling thread until the answer.
    ///
    /// # Errors
    /// The query's error, or Prometheus unreachable.
    pub fn query_at(&self, query: &str, time: f64) -> Result<QueryValue, PromError> {
        let Some(client) = self.client() else {
            return Err(PromError::Decode("no Prometheus is running".into()));
        };
        self.queries.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let permits = self.permits.clone();
        let query = query.to_string();
        self.rt.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let answer =
                tokio::time::timeout(Duration::from_secs(30), client.query_at(&query, time))
                    .await
                    .unwrap_or_else(|_| Err(PromError::Decode("no answer within 30 s".into())));
            let _ = tx.send(answer);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(PromError::Decode("the query was dropped".into())))
    }
}
