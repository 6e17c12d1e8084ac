//! Queries from the simulated rollouts' threads to Prometheus.
//!
//! A simulated rollout runs on its own paused tokio runtime, whose clock jumps to the next
//! timer whenever the runtime has nothing to do, waiting for a socket included. A real HTTP
//! request there would let the clock run on (and the controller's timeouts fire) while
//! Prometheus answers. So the rollout's thread hands the query to this bridge's own runtime
//! (real time) and blocks until the answer is back: the virtual clock stands still during a
//! query, as a query takes no time in the policy's world. A rollout's samples go the same way
//! (a remote write), just before its query, so they are in the head when the query runs.

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
    client: RwLock<Option<(PromClient, String)>>,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    queries: AtomicU64,
    writes: AtomicU64,
    samples: AtomicU64,
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
            http: reqwest::Client::new(),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            queries: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        })
    }

    /// Points queries and writes at `base` (the started Prometheus).
    pub fn set_base(&self, base: &str) {
        let mut c = self.client.write().unwrap_or_else(|p| p.into_inner());
        *c = Some((PromClient::new(base), format!("{base}/api/v1/write")));
    }

    fn client(&self) -> Option<PromClient> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(c, _)| c.clone())
    }

    fn write_url(&self) -> Option<String> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, u)| u.clone())
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

    /// Remote-write requests sent so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Sends a remote-write request (a [`super::remote::body`] of `samples` samples); blocks
    /// the calling thread until Prometheus has taken it.
    ///
    /// # Errors
    /// Prometheus refused the samples or is unreachable.
    pub fn write(&self, body: Vec<u8>, samples: u64) -> Result<(), String> {
        let Some(url) = self.write_url() else {
            return Err("no Prometheus is running".into());
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.samples.fetch_add(samples, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let permits = self.permits.clone();
        let request = self
            .http
            .post(url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        self.rt.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let answer = match tokio::time::timeout(Duration::from_secs(30), request.send()).await {
                Err(_) => Err("no answer to a remote write within 30 s".to_string()),
                Ok(Err(e)) => Err(format!("remote write to Prometheus: {e}")),
                Ok(Ok(r)) if r.status().is_success() => Ok(()),
                Ok(Ok(r)) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    Err(format!(
                        "Prometheus refused a remote write (HTTP {status}): {}",
                        text.trim()
                    ))
                }
            };
            let _ = tx.send(answer);
        });
        rx.recv()
            .unwrap_or_else(|_| Err("the remote write was dropped".into()))
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
