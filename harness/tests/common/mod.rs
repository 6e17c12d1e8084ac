//! Shared pieces of the tests that run the real local stack.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gauntlet::cluster::local::{Binaries, LocalStack, StackOptions};
use gauntlet::cluster::{PodTemplate, Probe, RevisionHash};
use gauntlet::timeline::Timeline;

pub fn template(version: &str, env: &[(&str, &str)], memory_limit: Option<u64>) -> PodTemplate {
    let mut all = vec![("APP_VERSION".to_string(), version.to_string())];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    PodTemplate {
        workload: "sample-app".into(),
        container: "sample-app".into(),
        env: all,
        args: vec![],
        labels: BTreeMap::from([("app".to_string(), "sample-app".to_string())]),
        memory_limit,
        readiness: Probe {
            period: Duration::from_millis(500),
            ..Probe::default()
        },
        min_ready: Duration::ZERO,
    }
}

pub async fn start_stack() -> LocalStack {
    let bins = Binaries::locate().expect("nginx, prometheus and sample-app are installed");
    let opts = StackOptions {
        grace: Duration::from_secs(5),
        ..StackOptions::default()
    };
    LocalStack::start(&bins, opts, Timeline::new())
        .await
        .expect("the stack starts")
}

pub fn hash(s: &str) -> RevisionHash {
    RevisionHash(s.into())
}

/// What the client saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_version: BTreeMap<String, u64>,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer at all.
    pub transport_errors: u64,
    /// Requests resent once because a reload closed their idle connection unanswered.
    pub resent: u64,
    pub errors: Vec<String>,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.transport_errors
    }
    pub fn share(&self, version: &str) -> f64 {
        *self.by_version.get(version).unwrap_or(&0) as f64 / self.total().max(1) as f64
    }
    fn add(&mut self, r: Result<(u16, String, bool), String>) {
        match r {
            Ok((status, version, resent)) => {
                self.resent += resent as u64;
                *self.by_status.entry(status).or_default() += 1;
                *self.by_version.entry(version).or_default() += 1;
            }
            Err(e) => {
                self.transport_errors += 1;
                if self.errors.len() < 10 {
                    self.errors.push(e);
                }
            }
        }
    }
    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.by_version {
            *self.by_version.entry(k).or_default() += v;
        }
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.resent += other.resent;
        self.errors.extend(other.errors);
    }
}

async fn one(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String, bool), String> {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let sent = gauntlet::load::client::send(req)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let resp = sent.response;
    let version = resp
        .headers()
        .get("x-app-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, version, sent.resent))
}

/// Sends `n` requests with `concurrency` in flight.
pub async fn burst(url: &str, n: usize, concurrency: usize, headers: &[(&str, &str)]) -> Tally {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_string());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut t = Tally::default();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                t.add(one(&client, &url, &h).await);
            }
            t
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.unwrap());
    }
    total
}

/// Sends requests at `rate` per second until `stop` resolves.
pub async fn steady(url: &str, rate: u32, stop: tokio::sync::oneshot::Receiver<()>) -> Tally {
    let client = reqwest::Client::new();
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let (client, url, tally) = (client.clone(), url.to_string(), tally.clone());
                inflight.spawn(async move {
                    let r = one(&client, &url, &[]).await;
                    tally.lock().unwrap().add(r);
                });
            }
        }
    }
    while inflight.join_next().await.is_some() {}
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
